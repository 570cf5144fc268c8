"""The SIEM feed (issue 14 §5; docs/CONTRACTS.md "SIEM feed: run events").

paddock.siem.ocsf carries, besides every audit record, a run's lifecycle
(queued, provisioning, running, ended with its status), its policy decisions,
its approvals (requested, decided), and through the audit records its
reviews, legal holds (set, lifted) and its retention deletion. Every record
read from the topic validates against the JSON Schema of the OCSF 1.1.0
class it claims (docs/ocsf/1.1.0, python jsonschema) and has type_uid =
class_uid * 100 + activity_id; a record delivered again is the same record
(one metadata.uid, one content). The reader is a consumer group of its own
reading from the beginning, as a SIEM would.
"""

import json
import pathlib
import time
import uuid

import jsonschema
import pytest
from confluent_kafka import Consumer

from conftest import (all_events, command_spec, enroll_test_node, pb_fields, unique_name, wait_for,
                      wait_history_complete, wait_terminal)
from test_e2e_ingest import _event, _evidence_metric, _fake_run, _send, _stored_seqs, plain_sandbox  # noqa: F401
from test_e2e_policy_platform import PUSH, _events
from test_e2e_retention import DAY, clock, wait_deleted  # noqa: F401

SIEM_TOPIC = "paddock.siem.ocsf"
SCHEMA_DIR = pathlib.Path(__file__).resolve().parents[2] / "docs" / "ocsf" / "1.1.0"
CLASSES = {6003: "api_activity", 3002: "authentication", 6002: "application_lifecycle", 2004: "detection_finding"}


def _validators():
    store, out = {}, {}
    for p in SCHEMA_DIR.glob("*.schema.json"):
        s = json.loads(p.read_text())
        store[s["$id"]] = s
    for uid, name in CLASSES.items():
        s = store[next(k for k in store if k.endswith(f"/{name}.schema.json"))]
        resolver = jsonschema.RefResolver.from_schema(s, store=store)
        out[uid] = jsonschema.Draft7Validator(s, resolver=resolver)
    return out


def ocsf_problems(validators, rec):
    """What is wrong with one OCSF record: [] when it validates."""
    v = validators.get(rec.get("class_uid"))
    if v is None:
        return [f"class_uid {rec.get('class_uid')!r} has no schema in {SCHEMA_DIR}"]
    errs = [f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in v.iter_errors(rec)]
    if isinstance(rec.get("type_uid"), int) and rec["type_uid"] != rec["class_uid"] * 100 + rec.get("activity_id", -1):
        errs.append(f"type_uid {rec['type_uid']} != class_uid * 100 + activity_id")
    return errs


class Siem:
    """A SIEM's consumer: its own group, from the beginning of the topic."""

    def __init__(self, bootstrap):
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": "e2e-siem-" + uuid.uuid4().hex,
                           "auto.offset.reset": "earliest", "enable.auto.commit": False})
        self.c.subscribe([SIEM_TOPIC])
        self.records = []   # (message id of the SiemRecord, raw ocsf_json, parsed)

    def drain(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            m = self.c.poll(0.5)
            if m is None or m.error():
                continue
            f = pb_fields(m.value() or b"")
            env = pb_fields(f[1][0]) if 1 in f else {}
            raw = f[2][0].decode() if 2 in f else ""
            self.records.append(((env.get(7) or [b""])[0].decode(), raw, json.loads(raw) if raw else {}))

    def until(self, what, pred, timeout=120):
        deadline = time.monotonic() + timeout
        while True:
            got = [r for _, _, r in self.records if pred(r)]
            if got:
                return got
            assert time.monotonic() < deadline, f"not on {SIEM_TOPIC} in {timeout}s: {what}"
            self.drain(1.0)

    def close(self):
        self.c.close()


@pytest.fixture(scope="module")
def validators():
    return _validators()


def test_schemas_refuse_a_wrong_record(validators):
    """The schema files can fail: a required attribute missing, a wrong type."""
    good = {"class_uid": 2004, "category_uid": 2, "activity_id": 1, "type_uid": 200401, "time": 1, "severity_id": 1,
            "metadata": {"product": {"vendor_name": "Paddock"}, "version": "1.1.0"}, "action_id": 2,
            "finding_info": {"uid": "f", "title": "t"}}
    assert ocsf_problems(validators, good) == []
    for broken in ({k: v for k, v in good.items() if k != "finding_info"},
                   dict(good, time="yesterday"),
                   dict(good, metadata={"version": "1.1.0"}),
                   dict(good, type_uid=200402),
                   dict(good, class_uid=9999)):
        assert ocsf_problems(validators, broken), broken
    api = {"class_uid": 6003, "category_uid": 6, "activity_id": 1, "type_uid": 600301, "time": 1, "severity_id": 1,
           "metadata": {"product": {"vendor_name": "Paddock"}, "version": "1.1.0"}, "actor": {"user": {"uid": "u"}},
           "api": {"operation": "x"}}
    assert any("src_endpoint" in p for p in ocsf_problems(validators, api))


def test_feed_carries_only_what_the_store_holds(endpoints, api, me, team_id, tenant_id, plain_sandbox):  # noqa: F811
    """For each (run, seq) the feed carries only the event the evidence store
    holds (docs/CONTRACTS.md "SIEM feed: run events"). The run's node sends
    record A (seqs 1-3), then B: 2-3 with another content and 4 new; then A
    again byte for byte (found stored by its signature), B again, and C: A's
    seq 3 and B's 4 byte for byte (a node resending them in another record)
    and 5 new. The feed has, per uid, A's content for 1-3 (published again
    with each redelivery: at-least-once), B's for 4, C's for 5, never B's 2-3
    (each counted as withheld), and the store shows what the feed says."""
    node = enroll_test_node(endpoints, "e2e-siem-node")
    run_id = _fake_run(endpoints, tenant_id, team_id, plain_sandbox, me, node="e2e-siem-node")

    def dec(seq, action, rule):
        return _event(tenant_id, team_id, run_id, seq, "policy_decision",
                      {"level": "exec", "action": action, "rule": rule})

    a = [dec(s, "allow", "record a") for s in (1, 2, 3)]
    b = [dec(s, "deny", "record b") for s in (2, 3, 4)]
    c = [a[2], b[2], dec(5, "ask", "record c")]
    withheld = _evidence_metric(endpoints, "paddock_evidence_siem_run_events_withheld_total")
    _send(node, endpoints, run_id, *a)
    wait_for("seqs 1..3 stored", lambda: _stored_seqs(endpoints, run_id)[1] == (3, 3), timeout=60, pause=0.3)
    _send(node, endpoints, run_id, *b)
    wait_for("seq 4 stored", lambda: _stored_seqs(endpoints, run_id)[1] == (4, 4), timeout=60, pause=0.3)
    _send(node, endpoints, run_id, *a)
    _send(node, endpoints, run_id, *b)
    _send(node, endpoints, run_id, *c)
    wait_for("seq 5 stored", lambda: _stored_seqs(endpoints, run_id)[1] == (5, 5), timeout=60, pause=0.3)
    assert _stored_seqs(endpoints, run_id)[0] == [(s, 1) for s in range(1, 6)]

    siem = Siem(endpoints.need("PADDOCK_KAFKA_BOOTSTRAP"))
    try:
        siem.until("seq 5", lambda r: r.get("metadata", {}).get("uid") == f"{run_id}:5")
        # B and A again were published before C (one partition per tenant, in order)
        siem.drain(2.0)
        feed = {}
        for _, raw, rec in siem.records:
            if rec.get("unmapped", {}).get("run_id") == run_id:
                feed.setdefault(rec["metadata"]["uid"], []).append((raw, rec))
    finally:
        siem.close()
    assert sorted(feed) == sorted(f"{run_id}:{s}" for s in range(1, 6)), sorted(feed)
    assert all(len({raw for raw, _ in v}) == 1 for v in feed.values()), \
        [sorted({raw for raw, _ in v}) for v in feed.values() if len({raw for raw, _ in v}) > 1]
    content = {int(uid.split(":")[1]): v[0][1] for uid, v in feed.items()}
    rules = {s: rec["unmapped"]["data"]["rule"] for s, rec in content.items()}
    assert rules == {1: "record a", 2: "record a", 3: "record a", 4: "record b", 5: "record c"}, rules
    # the redeliveries and C's resent 3 and 4 reached the feed, B's 2-3 never did
    counts = {int(uid.split(":")[1]): len(v) for uid, v in feed.items()}
    assert counts[1] >= 2 and counts[2] >= 2 and counts[3] >= 3 and counts[4] >= 3, counts
    assert _evidence_metric(endpoints, "paddock_evidence_siem_run_events_withheld_total") >= withheld + 4
    stored = {e["seq"]: e for e in all_events(api, run_id)}
    assert sorted(stored) == [1, 2, 3, 4, 5], sorted(stored)
    for seq, rec in content.items():
        assert (stored[seq]["kind"], stored[seq]["data"]) == (rec["unmapped"]["kind"], rec["unmapped"]["data"]), \
            (seq, stored[seq], rec["unmapped"])


def _reviewer(endpoints, credentials, api, team_id):
    import secrets
    from conftest import Api, login
    pw = secrets.token_hex(12)
    u = api.ok("POST", "/v1/users", json={"username": unique_name("siem-rv"), "password": pw}, expect=(201,))
    api.ok("PUT", f"/v1/teams/{team_id}/members/{u['id']}", json={"roles": ["approver", "reviewer", "viewer"]},
           expect=(200,))
    r = login(endpoints, credentials["PADDOCK_TENANT"], u["username"], pw)
    assert r.status_code == 200, r.text[:300]
    return Api(endpoints.api, r.json()["token"])


def test_a_siem_finds_a_whole_run(endpoints, credentials, admin_token, api, runs, team_id, clock, validators):  # noqa: F811
    other = _reviewer(endpoints, credentials, api, team_id)
    spec = command_spec(["sh", "-c", "cat .env; echo cat=$?; " + PUSH], timeout_s=150,
                        files=[{"path": ".env", "content": "X=1\n", "mode": "0644"}])
    spec["policy"] = {"rules": [{"match": {"path": "**/.env"}, "action": "deny"},
                                {"match": {"command": "git push*"}, "action": "ask"}], "ask_timeout_s": 120}
    spec["retention_days"] = 1
    run_id = runs.start(spec)
    req = wait_for("the exec approval request",
                   lambda: _events(api, run_id, "approval_requested", lambda d: d.get("kind") == "exec", timeout=0),
                   timeout=90)[0]
    other.ok("POST", f"/v1/approvals/{req['approval_id']}/decision", json={"decision": "approve"},
             expect=(200, 201, 202, 204))
    res = wait_terminal(endpoints, admin_token, run_id, timeout=150)
    assert res.terminal == "succeeded", res.statuses
    wait_history_complete(api, run_id)
    other.ok("POST", f"/v1/runs/{run_id}/reviews", json={"outcome": "approve", "comment": "siem"}, expect=(201,))
    api.ok("PUT", f"/v1/holds/run/{run_id}", json={"reason": "siem test"}, expect=(201,))
    api.ok("DELETE", f"/v1/holds/run/{run_id}", expect=(200, 204))
    clock.set(3 * DAY)
    wait_deleted(api, run_id, timeout=120)

    siem = Siem(endpoints.need("PADDOCK_KAFKA_BOOTSTRAP"))
    try:
        def of_run(r):
            return (r.get("unmapped", {}).get("run_id") == run_id or r.get("app", {}).get("uid") == run_id
                    or any(x.get("uid") == run_id for x in r.get("resources", [])))

        def lifecycle(detail):
            return lambda r: of_run(r) and r["class_uid"] == 6002 and r.get("status_detail") == detail

        queued = siem.until("queued", lifecycle("queued"))[0]
        assert queued["activity_id"] == 99 and queued["activity_name"] == "Queue", queued
        assert siem.until("provisioning", lifecycle("provisioning"))[0]["activity_name"] == "Install"
        assert siem.until("running", lifecycle("running"))[0]["activity_name"] == "Start"
        end = siem.until("ended", lifecycle("succeeded"))[0]
        assert end["activity_name"] == "Stop" and end["status"] == "Success", end

        deny = siem.until("the .env deny", lambda r: of_run(r) and r["class_uid"] == 2004 and
                          r["finding_info"]["types"] == ["policy_decision"] and r["action_id"] == 2 and
                          r["unmapped"]["data"].get("level") == "file")[0]
        assert deny["disposition"] == "Blocked" and deny["finding_info"]["analytic"]["name"] == "spec.policy.rules[0]"
        opened = siem.until("approval requested", lambda r: of_run(r) and r["class_uid"] == 2004 and
                            r["activity_id"] == 1 and r["finding_info"]["uid"] == req["approval_id"])[0]
        assert opened["finding_info"]["types"] == ["approval_requested"], opened
        closed = siem.until("approval decided", lambda r: of_run(r) and r["class_uid"] == 2004 and
                            r["activity_id"] == 3 and r["finding_info"]["uid"] == req["approval_id"])[0]
        assert closed["action"] == "Allowed" and closed["disposition"] == "Approved", closed

        def api_op(op):
            return lambda r: of_run(r) and r["class_uid"] == 6003 and r["api"]["operation"] == op

        for op in ("run.launch", "approval.decide", "run.review", "legal_hold.set", "legal_hold.lift", "run.delete"):
            siem.until(op, api_op(op) if op != "approval.decide" else
                       lambda r: r["class_uid"] == 6003 and r["api"]["operation"] == op and
                       any(x.get("uid") == req["approval_id"] for x in r.get("resources", [])))
        deletion = siem.until("deletion", api_op("run.delete"))[0]
        assert deletion["activity_id"] == 4 and deletion["src_endpoint"].get("svc_name"), deletion

        # every record on the feed validates against its class; one uid, one content
        siem.drain(2.0)
        bad, by_uid = [], {}
        for msgid, raw, rec in siem.records:
            p = ocsf_problems(validators, rec)
            if p:
                bad.append((raw[:300], p))
            uid = rec.get("metadata", {}).get("uid")
            assert uid, raw[:300]
            by_uid.setdefault(uid, set()).add(raw)
        assert not bad, f"{len(bad)} of {len(siem.records)} records do not validate, first: {bad[:3]}"
        assert all(len(v) == 1 for v in by_uid.values()), \
            [v for v in by_uid.values() if len(v) > 1][:2]
    finally:
        siem.close()
