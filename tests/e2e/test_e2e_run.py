"""A governed run from login to evidence, through every real component:
api (HTTP + websocket), scheduler, runner-agent (crun), evidence (PostgreSQL,
S3), billing, and the Kafka topics between them."""

import datetime
import hashlib
import time
import uuid

import boto3
import botocore.config
import psycopg
import pytest
import requests
from confluent_kafka import Consumer, KafkaException

from conftest import (all_events, pb_fields, run_events_of, assert_loopback_url, command_spec, node_leftovers, run_sandbox_id, wait_events_recorded,
                      wait_run_status, wait_terminal, watch)

MANAGED_PATH = "managed/config.txt"
MANAGED_CONTENT = "original managed line\n"
NEW_FILE = "created.txt"
NEW_MARKER = "e2e-new-file-marker"
SCRIPT = f"""
echo e2e-stdout-marker
echo e2e-stderr-marker >&2
printf 'new file content %s\\n' {NEW_MARKER} > {NEW_FILE}
echo appended-by-run >> {MANAGED_PATH}
"""


@pytest.fixture(scope="module")
def finished(endpoints, admin_token, runs):
    spec = command_spec(["/bin/sh", "-c", SCRIPT],
                        files=[{"path": MANAGED_PATH, "content": MANAGED_CONTENT, "mode": "0644"}])
    run_id = runs.start(spec)
    result = wait_terminal(endpoints, admin_token, run_id, timeout=120)
    # Checked right away: by the terminal status the node must already be clean.
    leftovers = node_leftovers(run_id)
    sandbox_id = run_sandbox_id(result)
    if sandbox_id and sandbox_id != run_id:
        leftovers += node_leftovers(sandbox_id)
    return {"id": run_id, "stream": result, "leftovers": leftovers}


def _key(ev):
    return (ev["seq"], ev["kind"], ev.get("actor"), ev.get("data"))


def _ts(ev):
    return datetime.datetime.fromisoformat(ev["ts"].replace("Z", "+00:00"))


def test_stream_statuses_and_output(finished):
    res = finished["stream"]
    core = [s for s in res.statuses if s in ("provisioning", "running", "succeeded")]
    assert core == ["provisioning", "running", "succeeded"], f"statuses seen: {res.statuses}"
    assert res.terminal == "succeeded"
    assert res.events[-1]["kind"] == "status" and res.events[-1]["data"]["status"] == "succeeded", \
        "the terminal status must be the last event"
    assert "e2e-stdout-marker" in res.output("stdout"), res.output()
    assert "e2e-stderr-marker" in res.output("stderr"), res.output()
    assert res.close_code in (None, 1000), f"stream closed with {res.close_code}"
    for ev in res.events:
        assert ev["run"] == finished["id"]
        assert ev["kind"] and ev["actor"] and isinstance(ev["data"], dict) and ev["ts"]


def test_stream_seq_contiguous(finished):
    seqs = [e["seq"] for e in finished["stream"].events]
    assert seqs == list(range(1, len(seqs) + 1)), f"stream seqs: {seqs}"


def test_history_matches_stream(api, finished):
    streamed = finished["stream"].events
    history = wait_events_recorded(api, finished["id"], len(streamed))
    seqs = [e["seq"] for e in history]
    assert seqs == list(range(1, len(history) + 1)), f"history seqs not contiguous from 1: {seqs}"
    assert len(set(seqs)) == len(seqs), "an event appears twice in history"
    assert [_key(e) for e in history] == [_key(e) for e in streamed]
    assert [_ts(e) for e in history] == [_ts(e) for e in streamed]


def test_history_pages(api, finished):
    """Small pages must give the same events, each once."""
    events, after = [], 0
    for _ in range(1000):
        page = api.ok("GET", f"/v1/runs/{finished['id']}/events", params={"after": after, "limit": 2},
                      expect=(200,))
        assert len(page["items"]) <= 2
        events += page["items"]
        if not page.get("next_cursor"):
            break
        after = int(page["next_cursor"])
    assert [e["seq"] for e in events] == [e["seq"] for e in all_events(api, finished["id"])]


def test_stream_replay_after(endpoints, admin_token, finished):
    streamed = finished["stream"].events
    k = len(streamed) // 2
    replay = watch(endpoints, admin_token, finished["id"], after=k, timeout=60)
    assert [e["seq"] for e in replay.events] == [e["seq"] for e in streamed if e["seq"] > k]
    assert [_key(e) for e in replay.events] == [_key(e) for e in streamed[k:]]


def test_run_resource(api, finished):
    run = wait_run_status(api, finished["id"])
    assert run["id"] == finished["id"]
    assert run["status"] == "succeeded"
    assert run.get("exit_code") in (0, None)
    assert run.get("ended_at")


def _diff_manifest_entry(api, run_id, timeout=30):
    deadline = time.monotonic() + timeout
    items = []
    while time.monotonic() < deadline:
        items = api.ok("GET", f"/v1/runs/{run_id}/artifacts", expect=(200,)).get("items", [])
        for a in items:
            if a.get("kind") == "diff":
                return a
        time.sleep(1)
    pytest.fail(f"no diff artifact in the manifest within {timeout} s: {items}")


def test_diff_artifact(endpoints, api, tenant_id, finished):
    run_id = finished["id"]
    entry = _diff_manifest_entry(api, run_id)
    assert entry["name"] == "workspace.diff", entry
    assert len(entry["sha256"]) == 64

    assert_loopback_url(endpoints.need("PADDOCK_S3_ENDPOINT"))
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoints.need("PADDOCK_S3_ENDPOINT"),
        aws_access_key_id=endpoints.need("PADDOCK_S3_ACCESS_KEY"),
        aws_secret_access_key=endpoints.need("PADDOCK_S3_SECRET_KEY"),
        region_name=endpoints.env.get("PADDOCK_S3_REGION") or "us-east-1",
        config=botocore.config.Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    key = f"tenants/{tenant_id}/runs/{run_id}/workspace.diff"
    body = s3.get_object(Bucket=endpoints.need("PADDOCK_S3_BUCKET"), Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == entry["sha256"]
    assert len(body) == entry["size"]
    text = body.decode("utf-8", "replace")
    assert NEW_FILE in text and NEW_MARKER in text, text[:2000]
    assert "appended-by-run" in text, "the edit of the managed file is missing from the diff"

    r = api.get(f"/v1/runs/{run_id}/artifacts/workspace.diff", allow_redirects=False)
    assert r.status_code == 302, f"{r.status_code} {r.text[:300]}"
    location = r.headers["Location"]
    assert_loopback_url(location)
    d = requests.get(location, timeout=30)
    assert d.status_code == 200, d.text[:300]
    assert d.content == body


def test_usage_recorded(endpoints, finished):
    dsn = endpoints.need("PADDOCK_PG_DSN")
    row = None
    deadline = time.monotonic() + 30
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT run_id, runtime_seconds, tenant_id FROM billing.run_usage "
                               "WHERE run_id = %s", (finished["id"],)).fetchone()
            if row:
                break
            time.sleep(1)
    assert row, f"no billing.run_usage row for run {finished['id']} within 30 s"
    assert row[1] is not None and row[1] >= 0


def test_node_clean(finished):
    assert not finished["leftovers"], f"left on the node at the terminal status: {finished['leftovers']}"
    destroyed = finished["stream"].of_kind("destroyed")
    assert destroyed, "no destroyed event"
    gone = destroyed[-1]["data"].get("verified_gone")
    assert isinstance(gone, list) and gone, destroyed[-1]
    # The destroyed event comes before the terminal status (CONTRACTS.md event order).
    assert destroyed[-1]["seq"] < finished["stream"].events[-1]["seq"]


# ---- Kafka: the run's events on paddock.runs.events, read by an independent consumer


def _records_of_run(endpoints, topic, run_id, done, timeout, read_on=0.0):
    """The records keyed run_id on topic, read from its start by a consumer
    group of their own, until done() (then read_on seconds more: nothing else
    of the run may follow) or timeout seconds."""
    consumer = Consumer({
        "bootstrap.servers": endpoints.need("PADDOCK_KAFKA_BOOTSTRAP"),
        "group.id": f"paddock-e2e-{uuid.uuid4()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
    })
    try:
        consumer.subscribe([topic])
        until = time.monotonic() + timeout
        while time.monotonic() < until:
            if done():
                if not read_on:
                    return
                until = min(until, time.monotonic() + read_on)
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().fatal():
                    raise KafkaException(msg.error())
                continue
            if (msg.key() or b"").decode(errors="replace") == run_id:
                yield msg
    finally:
        consumer.close()


def test_kafka_events(endpoints, finished):
    run_id = finished["id"]
    expected = {e["seq"] for e in finished["stream"].events}
    seen, kinds = set(), {}
    for msg in _records_of_run(endpoints, "paddock.runs.events", run_id, lambda: expected <= seen, 60):
        # a record is a RunEventBatch of the run's events, seqs contiguous
        seqs = []
        for raw in run_events_of(msg.value()):
            ev = pb_fields(raw)
            env = pb_fields(ev[1][0])
            assert env[2][0].decode() == run_id, "message key and envelope run id differ"
            seq = env.get(3, [0])[0]
            seqs.append(seq)
            seen.add(seq)
            kinds[seq] = ev.get(2, [b""])[0].decode()
        assert seqs and seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"a record's seqs: {seqs}"
    assert expected <= seen, f"missing seqs on Kafka: {sorted(expected - seen)} (seen {sorted(seen)})"
    stream_kinds = {e["seq"]: e["kind"] for e in finished["stream"].events}
    assert {s: kinds[s] for s in expected} == stream_kinds


# ---- Kafka: the control-relevant events also on paddock.runs.status (docs/CONTRACTS.md)

# usage: the model totals the api keeps on the run (at most one a second per run)
CONTROL_KINDS = ("status", "approval_requested", "approval_decided", "usage")


def test_kafka_status_copies(endpoints, api, finished):
    """Every status and usage event of the run (and nothing else of it) is also on the
    low-volume topic the scheduler and the api's status consumer read, with the
    run's seq, signed by the run's node."""
    run_id = finished["id"]
    node = api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))["node"]
    expected = {(e["seq"], e["kind"]) for e in finished["stream"].events if e["kind"] in CONTROL_KINDS}
    assert len(expected) >= 3, finished["stream"].statuses
    seen, signers = set(), set()
    for msg in _records_of_run(endpoints, "paddock.runs.status", run_id, lambda: expected <= seen, 30, read_on=2):
        ev = pb_fields(msg.value())
        env = pb_fields(ev[1][0])
        assert env[2][0].decode() == run_id, "message key and envelope run id differ"
        seen.add((env.get(3, [0])[0], ev.get(2, [b""])[0].decode()))
        signers.add(dict(msg.headers() or []).get("paddock-signer", b"").decode())
    assert seen == expected, f"on paddock.runs.status: {sorted(seen)}, expected {sorted(expected)}"
    assert signers == {f"node:{node}"}, signers
