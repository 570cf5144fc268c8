"""The event pipeline at agent scale (issue 10): a run's history is stored in
batches, shown complete before its terminal status is, holds exactly one
terminal status, and places a platform verdict (env.seq 0) after the run's
last stored event."""
import json
import os
import time
import uuid

import psycopg
import pytest

from conftest import (BusSigner, all_events, command_spec, enroll_test_node, pb_field, pb_fields, pb_varint,
                      run_event_batch, wait_for, wait_history_complete)

EVENTS = "paddock.runs.events"
STATUS = "paddock.runs.status"
CONTROL_KINDS = {b"status", b"approval_requested", b"approval_decided"}
TERMINAL = {"succeeded", "failed", "cancelled", "timed_out", "limit_exceeded", "rejected"}


def _s(num, text):
    return pb_field(num, 2, text.encode() if isinstance(text, str) else text)


def _event(tenant, team, run_id, seq, kind, data, status="", terminal=False, actor="platform"):
    env = (_s(1, tenant) + _s(2, run_id) + (pb_field(3, 0, pb_varint(seq)) if seq else b"")
           + pb_field(4, 0, pb_varint(int(time.time() * 1e6))) + _s(5, "e2e-ingest") + pb_field(6, 0, pb_varint(1))
           + _s(7, str(uuid.uuid4())))
    # bytes: the data text as is, JSON or not
    out = (_s(1, env) + _s(2, kind) + _s(3, actor) + _s(4, data if isinstance(data, bytes) else json.dumps(data))
           + _s(5, team))
    if status:
        out += _s(6, status)
    if terminal:
        out += pb_field(7, 0, pb_varint(1))
    return out


def _send(signer, endpoints, run_id, *events):
    """As a runner-agent sends: one RunEventBatch record on the firehose, then
    a copy of each control-relevant event on paddock.runs.status (which the
    api's status consumer reads; docs/CONTRACTS.md)."""
    signer.produce(endpoints, EVENTS, run_id, run_event_batch(*events))
    for e in events:
        if pb_fields(e).get(2, [b""])[0] in CONTROL_KINDS:
            signer.produce(endpoints, STATUS, run_id, e)


@pytest.fixture(scope="module")
def ingest_node(endpoints):
    return enroll_test_node(endpoints, "e2e-ingest-node")


@pytest.fixture(scope="module")
def plain_sandbox(runs):
    sb = runs.create_sandbox(command_spec(["/bin/true"], timeout_s=30))
    return sb, runs.publish(sb)


def _fake_run(endpoints, tenant_id, team_id, sandbox, me, node="e2e-ingest-node"):
    """A run assigned (for the scheduler's view and the api) to the test's own
    node, so the test reports it as that node would; no real run is touched."""
    sb, version = sandbox
    run_id = str(uuid.uuid4())
    with psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True) as pg:
        pg.execute("INSERT INTO api.runs (id, tenant_id, team_id, sandbox_id, version, status, created_by, node_id)"
                   " VALUES (%s, %s, %s, %s, %s, 'scheduled', %s, %s)",
                   (run_id, tenant_id, team_id, sb, version, me["user"]["id"], node))
        pg.execute("INSERT INTO scheduler.runs (run_id, tenant_id, team_id, state, node_id, finished_at)"
                   " VALUES (%s, %s, %s, 'finished', %s, now())", (run_id, tenant_id, team_id, node))
    return run_id


def _scheduler_signer(endpoints):
    """The scheduler's own bus key (the stack's secrets/bus-scheduler.key): a
    platform verdict is the scheduler's to sign."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    path = os.path.join(endpoints.need("PADDOCK_STATE_DIR"), "secrets", "bus-scheduler.key")
    with open(path, "rb") as f:
        return BusSigner("scheduler", key=load_pem_private_key(f.read(), None))


def test_terminal_shown_only_once_history_is_stored(api, runs):
    """A command agent creating 20,000 files (what an install does): the api
    shows the run terminal only once every event of it is stored, and then
    the history is contiguous 1..N with N the terminal event's seq."""
    script = 'i=0; while [ $i -lt 20000 ]; do : > "f$i"; i=$((i+1)); done; echo made'
    run_id = runs.start(command_spec(["/bin/sh", "-c", script], timeout_s=300))
    deadline = time.monotonic() + 300
    complete_before_terminal = []
    while True:
        assert time.monotonic() < deadline, "the run never ended"
        run = api.ok("GET", f"/v1/runs/{run_id}")
        hist = run["history"]
        if run["status"] in TERMINAL:
            break
        if hist["complete"]:
            complete_before_terminal.append(run)
        time.sleep(0.2)
    assert not complete_before_terminal, complete_before_terminal[:1]
    assert run["status"] == "succeeded", run
    # the first answer showing the end already has the whole history behind it
    assert hist["complete"] is True, hist
    assert hist["events_total"] == hist["events_stored"] and hist["events_lost"] == 0, hist
    events = all_events(api, run_id)
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, hist["events_total"] + 1)), "history is not contiguous 1..N"
    assert len(events) > 20000, len(events)
    last = events[-1]
    assert last["kind"] == "status" and last["data"]["status"] == "succeeded", last
    assert sum(1 for e in events if e["kind"] == "file_access") >= 19000
    # listed by status: the run is among the succeeded ones
    listed = api.ok("GET", "/v1/runs", params={"status": "succeeded", "limit": 50})["items"]
    assert any(r["id"] == run_id and r["history"]["complete"] for r in listed)


def test_history_incomplete_hides_terminal_status(endpoints, api, me, team_id, tenant_id, plain_sandbox,
                                                  ingest_node):
    """A terminal status whose earlier events are not stored yet is not shown:
    the run shows running with how much is stored, until the gap is filled."""
    run_id = _fake_run(endpoints, tenant_id, team_id, plain_sandbox, me)
    ev = lambda seq, kind, data, **kw: _event(tenant_id, team_id, run_id, seq, kind, data, **kw)  # noqa: E731
    _send(ingest_node, endpoints, run_id,
        ev(1, "status", {"status": "provisioning"}, status="provisioning"),
        ev(2, "status", {"status": "running"}, status="running"))
    # seq 3 is "late"; the terminal (4) arrives first
    _send(ingest_node, endpoints, run_id,
        ev(4, "status", {"status": "succeeded", "exit_code": 0}, status="succeeded", terminal=True))
    run = wait_for("the terminal event stored", lambda: (lambda r: r if r["history"]["events_total"] == 4 else None)(
        api.ok("GET", f"/v1/runs/{run_id}")), timeout=60, pause=0.3)
    assert run["status"] == "running" and run["history"]["complete"] is False, run
    assert run["history"]["events_stored"] == 3 and run["ended_at"] is None and run["exit_code"] is None, run
    _send(ingest_node, endpoints, run_id,
        ev(3, "output", {"stream": "stdout", "text": "late\n"}, actor="agent"))
    run = wait_history_complete(api, run_id)
    assert run["status"] == "succeeded" and run["history"]["events_stored"] == 4, run


def test_second_terminal_event_is_stored_superseded(endpoints, api, me, team_id, tenant_id, plain_sandbox,
                                                    ingest_node):
    """Exactly one terminal status per run: a later terminal event is kept as
    evidence of what was said, marked superseded by the first, and the run's
    status does not move."""
    run_id = _fake_run(endpoints, tenant_id, team_id, plain_sandbox, me)
    ev = lambda seq, kind, data, **kw: _event(tenant_id, team_id, run_id, seq, kind, data, **kw)  # noqa: E731
    _send(ingest_node, endpoints, run_id,
        ev(1, "status", {"status": "provisioning"}, status="provisioning"),
        ev(2, "status", {"status": "running"}, status="running"),
        ev(3, "status", {"status": "succeeded", "exit_code": 0}, status="succeeded", terminal=True))
    run = wait_history_complete(api, run_id)
    assert run["status"] == "succeeded", run
    _send(ingest_node, endpoints, run_id,
        ev(4, "status", {"status": "failed", "reason": "said twice"}, status="failed", terminal=True))
    events = wait_for("the second terminal event stored", lambda: (lambda e: e if len(e) == 4 else None)(
        all_events(api, run_id)), timeout=60, pause=0.3)
    second = events[3]
    assert second["data"]["status"] == "failed", second
    assert second["data"]["superseded"] == {"by_seq": 3, "status": "succeeded"}, second
    run = api.ok("GET", f"/v1/runs/{run_id}")
    assert run["status"] == "succeeded" and run["history"]["events_total"] == 3, run


def test_platform_verdict_lands_after_the_last_stored_event(endpoints, api, me, team_id, tenant_id, plain_sandbox,
                                                             ingest_node):
    """A platform verdict (env.seq 0, signed by the scheduler) is stored at the
    run's highest stored seq + 1, once however often it is delivered, and is
    the run's terminal status; a node event with that seq afterwards is a
    duplicate."""
    run_id = _fake_run(endpoints, tenant_id, team_id, plain_sandbox, me)
    ev = lambda seq, kind, data, **kw: _event(tenant_id, team_id, run_id, seq, kind, data, **kw)  # noqa: E731
    _send(ingest_node, endpoints, run_id,
        ev(1, "status", {"status": "provisioning"}, status="provisioning"),
        ev(2, "status", {"status": "running"}, status="running"),
        ev(3, "output", {"stream": "stdout", "text": "x\n"}, actor="agent"))
    wait_for("three events stored", lambda: len(all_events(api, run_id)) == 3, timeout=60, pause=0.3)
    verdict = ev(0, "status", {"status": "failed", "reason": "node stopped heartbeating"}, status="failed",
                 terminal=True)
    sched = _scheduler_signer(endpoints)
    _send(sched, endpoints, run_id, verdict)
    sched.produce(endpoints, EVENTS, run_id, run_event_batch(verdict))  # redelivered: the same signed bytes
    run = wait_history_complete(api, run_id)
    assert run["status"] == "failed" and run["history"]["events_total"] == 4, run
    _send(ingest_node, endpoints, run_id,
        ev(4, "output", {"stream": "stdout", "text": "late\n"}, actor="agent"))
    _send(ingest_node, endpoints, run_id,
        ev(5, "output", {"stream": "stdout", "text": "marker\n"}, actor="agent"))
    events = wait_for("the marker stored", lambda: (lambda e: e if e[-1]["seq"] == 5 else None)(
        all_events(api, run_id)), timeout=60, pause=0.3)
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    assert events[3]["kind"] == "status" and events[3]["data"]["status"] == "failed", events[3]
    assert events[3]["actor"] == "platform"
    assert sum(1 for e in events if e["kind"] == "status" and e["data"].get("status") == "failed") == 1


def test_copy_escapes_survive_the_batch_store(endpoints, api, me, team_id, tenant_id, plain_sandbox, ingest_node):
    """Evidence stages events as COPY text (escaped in spans since the ingest
    profile): backslashes, tabs, newlines and carriage returns in the actor
    and in the data (JSON escapes are backslashes), long values and a large
    record all come back from the api exactly as the node sent them."""
    run_id = _fake_run(endpoints, tenant_id, team_id, plain_sandbox, me)
    ev = lambda seq, kind, data, **kw: _event(tenant_id, team_id, run_id, seq, kind, data, **kw)  # noqa: E731
    tricky = "tab\there\nnew line\\back\\\\slashes\rcr \\N \\x00 end"
    long_text = ("x\t\\y\n" * 3000) + "tail"
    events = [ev(1, "output", {"stream": "stdout", "text": tricky}, actor="agent\t\\n\nrow"),
              ev(2, "output", {"stream": "stdout", "text": long_text}, actor="agent"),
              ev(3, "output", {"stream": "stdout", "text": "\\"}, actor="\\")]
    events += [ev(s, "file_access", {"path": f"a\\b\t{s}", "mode": "create"}, actor="agent") for s in range(4, 1004)]
    _send(ingest_node, endpoints, run_id, *events)
    got = wait_for("1003 events stored", lambda: (lambda e: e if len(e) == 1003 else None)(all_events(api, run_id)),
                   timeout=90, pause=0.5)
    assert got[0]["data"]["text"] == tricky and got[0]["actor"] == "agent\t\\n\nrow", got[0]
    assert got[1]["data"]["text"] == long_text
    assert got[2]["data"]["text"] == "\\" and got[2]["actor"] == "\\"
    assert [e["data"]["path"] for e in got[3:]] == [f"a\\b\t{s}" for s in range(4, 1004)]


def test_data_postgresql_refuses_as_jsonb_is_kept_as_raw_text(endpoints, api, me, team_id, tenant_id,
                                                               plain_sandbox, ingest_node):
    """Event data that looks like a JSON object is sent to PostgreSQL as
    jsonb unchecked (the fast path); when PostgreSQL refuses it (not JSON, or
    a \\u0000 escape jsonb cannot hold) the round is stored again with every
    event's data checked: what is not a JSON object is kept as {"raw": text},
    the round's other events as sent, each once."""
    run_id = _fake_run(endpoints, tenant_id, team_id, plain_sandbox, me)
    raw_before = _evidence_metric(endpoints, "paddock_evidence_events_invalid_data_total")
    nul = b'{"a": "\\u0000"}'
    ev = lambda seq, data: _event(tenant_id, team_id, run_id, seq, "output", data, actor="agent")  # noqa: E731
    _send(ingest_node, endpoints, run_id, ev(1, nul), ev(2, b"{not json}"), ev(3, {"ok": "\u00e9"}))
    got = wait_for("3 events stored", lambda: (lambda e: e if len(e) == 3 else None)(all_events(api, run_id)),
                   timeout=60, pause=0.5)
    assert [e["data"] for e in got] == [{"raw": nul.decode()}, {"raw": "{not json}"}, {"ok": "\u00e9"}], got
    assert _evidence_metric(endpoints, "paddock_evidence_events_invalid_data_total") >= raw_before + 2
    assert _stored_seqs(endpoints, run_id)[1] == (3, 3)


def _evidence_metric(endpoints, name):
    import requests
    text = requests.get(endpoints.need("PADDOCK_EVIDENCE_OPS_URL") + "/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"evidence exports no {name}")


def _stored_seqs(endpoints, run_id):
    """(seq, count) of the run's stored events, read as the schema owner."""
    with psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True) as pg:
        rows = pg.execute("SELECT seq, count(*) FROM evidence.run_events WHERE run_id = %s GROUP BY seq ORDER BY seq",
                          (run_id,)).fetchall()
        hist = pg.execute("SELECT events_stored, max_seq FROM evidence.run_history WHERE run_id = %s",
                          (run_id,)).fetchone()
    return rows, hist


def test_redelivered_and_overlapping_seqs_are_stored_once(endpoints, api, me, team_id, tenant_id, plain_sandbox,
                                                          ingest_node):
    """Evidence stores a round with a plain insert when every seq is above
    the run's stored maximum (the fast path). A record whose seqs are all
    stored already (other bytes, so another signature), and one mixing stored
    and new seqs, go the conflict-checked way: each (run, seq) once, and the
    history counts each once."""
    run_id = _fake_run(endpoints, tenant_id, team_id, plain_sandbox, me)
    ev = lambda seq, text: _event(tenant_id, team_id, run_id, seq, "output",  # noqa: E731
                                  {"stream": "stdout", "text": text}, actor="agent")
    fast_before = _evidence_metric(endpoints, "paddock_evidence_event_batches_fast_total")
    _send(ingest_node, endpoints, run_id, *[ev(s, f"first {s}") for s in range(1, 11)])
    wait_for("seqs 1..10 stored", lambda: _stored_seqs(endpoints, run_id)[1] == (10, 10), timeout=60, pause=0.3)
    assert _evidence_metric(endpoints, "paddock_evidence_event_batches_fast_total") > fast_before
    # the same seqs again in a record of their own (a node resending them)
    _send(ingest_node, endpoints, run_id, *[ev(s, f"again {s}") for s in range(1, 11)])
    # stored and new seqs in one record
    _send(ingest_node, endpoints, run_id, *[ev(s, f"mixed {s}") for s in range(6, 16)])
    wait_for("seqs 1..15 stored", lambda: _stored_seqs(endpoints, run_id)[1] == (15, 15), timeout=60, pause=0.3)
    rows, hist = _stored_seqs(endpoints, run_id)
    assert rows == [(s, 1) for s in range(1, 16)], rows
    events = all_events(api, run_id)
    assert [e["data"]["text"] for e in events] == [f"first {s}" for s in range(1, 11)] + \
        [f"mixed {s}" for s in range(11, 16)]


def test_policy_decisions_counted_once_as_stored(endpoints, api, me, team_id, tenant_id, plain_sandbox,
                                               ingest_node):
    """GET /v1/runs/{id}'s policy.decisions are the run's stored
    policy_decision events by action, counted by evidence in the transaction
    that stores them (evidence migration 0013): a fast round, then a record
    redelivered with stored and new seqs (conflict-checked), count each event
    once; an action other than allow/ask/deny, or data that is not JSON, is
    stored and not counted."""
    run_id = _fake_run(endpoints, tenant_id, team_id, plain_sandbox, me)
    dec = lambda seq, action: _event(tenant_id, team_id, run_id, seq, "policy_decision",  # noqa: E731
                                     {"level": "exec", "action": action, "rule": "spec.policy.rules[0]"})
    out = lambda seq: _event(tenant_id, team_id, run_id, seq, "output",  # noqa: E731
                             {"stream": "stdout", "text": f"line {seq}"}, actor="agent")
    # 4 and 5 are sent again below as a node resends them: the same bytes
    # (each event's ts and message id too, so the SIEM feed's record of
    # each stays one content: e2e.siem)
    d4, d5 = dec(4, "allow"), dec(5, "ask")
    _send(ingest_node, endpoints, run_id, dec(1, "allow"), dec(2, "deny"), out(3), d4, d5)
    wait_for("seqs 1..5 stored", lambda: _stored_seqs(endpoints, run_id)[1] == (5, 5), timeout=60, pause=0.3)
    run = api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))
    assert run["policy"]["decisions"] == {"allow": 2, "ask": 1, "deny": 1}, run["policy"]
    # 4 and 5 again in another record, with 6..9 new
    odd = _event(tenant_id, team_id, run_id, 8, "policy_decision", b"not json")
    _send(ingest_node, endpoints, run_id, d4, d5, dec(6, "deny"), dec(7, "audit"), odd, dec(9, "ask"))
    wait_for("seqs 1..9 stored", lambda: _stored_seqs(endpoints, run_id)[1] == (9, 9), timeout=60, pause=0.3)
    run = api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))
    assert run["policy"]["decisions"] == {"allow": 2, "ask": 2, "deny": 2}, run["policy"]
    stored = [e for e in all_events(api, run_id) if e["kind"] == "policy_decision"]
    assert len(stored) == 8, stored
    counted = {a: sum(1 for e in stored if e["data"].get("action") == a) for a in ("allow", "ask", "deny")}
    assert counted == run["policy"]["decisions"], (counted, run["policy"])


def test_fast_round_refused_by_the_key_is_stored_again_checked(endpoints, api, me, team_id, tenant_id, plain_sandbox,
                                                               ingest_node):
    """The fast path trusts evidence.run_history's max_seq; the primary key
    is its safety net. Here another writer (standing in for a second
    consumer of the partition during a rebalance, which commits its events
    and history in one transaction) stored seqs 1..5 of a run without
    evidence's history having seen them when evidence read it: the test holds
    that transaction open, evidence's plain insert of 1..10 waits on the key,
    fails once the writer commits, and the round is stored again
    conflict-checked: each seq once, the writer's rows kept, the history
    right."""
    run_id = _fake_run(endpoints, tenant_id, team_id, plain_sandbox, me)
    ev = lambda seq, text: _event(tenant_id, team_id, run_id, seq, "output",  # noqa: E731
                                  {"stream": "stdout", "text": text}, actor="agent")
    fallback_before = _evidence_metric(endpoints, "paddock_evidence_event_batches_fast_fallback_total")
    dsn = endpoints.need("PADDOCK_PG_DSN")
    with psycopg.connect(dsn) as other, psycopg.connect(dsn, autocommit=True) as watch:
        with other.transaction():
            for s in range(1, 6):
                other.execute("INSERT INTO evidence.run_events (run_id, seq, tenant_id, team_id, ts, kind, actor, data)"
                              " VALUES (%s, %s, %s, %s, now(), 'output', 'agent', %s)",
                              (run_id, s, tenant_id, team_id, json.dumps({"stream": "stdout", "text": f"other {s}"})))
            other.execute("INSERT INTO evidence.run_history (run_id, tenant_id, events_stored, max_seq)"
                          " VALUES (%s, %s, 5, 5)", (run_id, tenant_id))
            _send(ingest_node, endpoints, run_id, *[ev(s, f"evidence {s}") for s in range(1, 11)])
            # evidence's insert is waiting for this transaction
            # (pg_locks: pg_stat_activity hides other roles' wait events)
            wait_for("evidence to wait on the held rows", lambda: watch.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE a.usename = 'paddock_evidence' AND NOT l.granted").fetchone()[0] > 0, timeout=60, pause=0.2)
    wait_for("seqs 1..10 stored", lambda: _stored_seqs(endpoints, run_id)[1] == (10, 10), timeout=60, pause=0.3)
    rows, hist = _stored_seqs(endpoints, run_id)
    assert rows == [(s, 1) for s in range(1, 11)], rows
    texts = [e["data"]["text"] for e in all_events(api, run_id)]
    assert texts == [f"other {s}" for s in range(1, 6)] + [f"evidence {s}" for s in range(6, 11)], texts
    assert _evidence_metric(endpoints, "paddock_evidence_event_batches_fast_fallback_total") == fallback_before + 1


def test_round_of_several_transactions_keeps_every_check(endpoints, me, team_id, tenant_id, plain_sandbox,
                                                         ingest_node):
    """A poll round larger than PADDOCK_EVIDENCE_ROUND_MAX_EVENTS (10000) is
    stored in several transactions, each one's records decoded while
    PostgreSQL inserts the one before (issue 10 §4). The checks hold across
    them: a record delivered twice in the round (the same bytes, in a later
    transaction) is stored once, a record of a run that is not this node's
    is refused, an undecodable record is skipped, and every other event of
    the run is stored exactly once."""
    from confluent_kafka import Producer
    run_id = _fake_run(endpoints, tenant_id, team_id, plain_sandbox, me)
    foreign = _fake_run(endpoints, tenant_id, team_id, plain_sandbox, me, node="e2e-ingest-other-node")

    def record(run, first, n=1000):
        return run_event_batch(*[_event(tenant_id, team_id, run, s, "file_access",
                                        {"path": f"node_modules/p{s}/index.js", "mode": "create"}, actor="agent")
                                 for s in range(first, first + n)])

    ours = [record(run_id, 1 + 1000 * k) for k in range(13)]
    values = ours[:6] + [record(foreign, 1), b"\x0f\x0f\x0f"] + ours[6:12] + [ours[0], ours[12]]
    skipped_before = _evidence_metric(endpoints, "paddock_evidence_messages_skipped_total")
    # one producer, one flush: the records reach evidence together, in order
    # (one key: one partition), as a backlog does
    p = Producer({"bootstrap.servers": endpoints.need("PADDOCK_KAFKA_BOOTSTRAP"), "linger.ms": 200,
                  "compression.type": "zstd"})
    for v in values:
        p.produce(EVENTS, key=run_id.encode(), value=v, headers=ingest_node.headers(EVENTS, v))
    assert p.flush(30) == 0
    wait_for("seqs 1..13000 stored", lambda: _stored_seqs(endpoints, run_id)[1] == (13000, 13000), timeout=120,
             pause=0.5)
    with psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True) as pg:
        n, distinct, lo, hi = pg.execute("SELECT count(*), count(DISTINCT seq), min(seq), max(seq)"
                                         " FROM evidence.run_events WHERE run_id = %s", (run_id,)).fetchone()
        records = pg.execute("SELECT count(*) FROM evidence.signed_records WHERE run_id = %s", (run_id,)).fetchone()[0]
        stray = pg.execute("SELECT count(*) FROM evidence.run_events WHERE run_id = %s", (foreign,)).fetchone()[0]
    assert (n, distinct, lo, hi) == (13000, 13000, 1, 13000)
    assert records == 13, records  # the record delivered twice is kept once
    assert stray == 0, "a node stored events of a run that is not its own"
    assert _evidence_metric(endpoints, "paddock_evidence_messages_skipped_total") >= skipped_before + 1
