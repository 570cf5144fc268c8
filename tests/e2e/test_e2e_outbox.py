"""One outbox for everything the api sends (issue 10 §2; CONTRACTS.md "The
api's outbox").

* A crash between COMMIT and the broker loses nothing: with the Kafka mock
  stalled (SIGSTOP), a launch, a cancel of that queued run, an approval
  decision and a cancel of a running run are each answered at once and
  committed in api.outbox; every api worker is then killed (SIGKILL) and
  replaced by its supervisor; once the broker is back every effect reaches
  its topic, a run's commands in the order they were decided, and the
  outbox drains.
* A decision whose transaction does not commit is never sent: deciding an
  approval of a run that has ended fails its last check (409) and rolls
  back, and its RunControl never reaches paddock.runs.control, although a
  later command does.
"""

import os
import signal
import time
import uuid

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition

from conftest import command_spec, pb_fields, state_dir, wait_for, wait_run_status

REQUESTED = "paddock.runs.requested"
CONTROL = "paddock.runs.control"
APPROVALS = "paddock.approvals"


@pytest.fixture(scope="module")
def pg(endpoints):
    with psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True) as conn:
        yield conn


class Tail:
    """Reads a topic from its end at creation: what was produced after."""

    def __init__(self, bootstrap, topic):
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": "e2e-outbox-" + uuid.uuid4().hex,
                           "enable.auto.commit": False})
        parts = self.c.list_topics(topic, timeout=10).topics[topic].partitions
        tps = []
        for p in parts:
            _, high = self.c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            tps.append(TopicPartition(topic, p, high))
        self.c.assign(tps)
        self.msgs = []   # (key, partition, offset, value)

    def until(self, done, timeout=60):
        deadline = time.monotonic() + timeout
        while not done(self.msgs):
            assert time.monotonic() < deadline, f"not seen in {timeout}s; have {[(m[0], m[2]) for m in self.msgs]}"
            m = self.c.poll(0.5)
            if m is None or m.error():
                continue
            self.msgs.append(((m.key() or b"").decode(), m.partition(), m.offset(), m.value() or b""))
        return self.msgs

    def close(self):
        self.c.close()


def control_of(value):
    """(message_id, action, detail) of a RunControl: action "cancel"
    (detail: reason), "approval" (detail: approval id) or "secrets"."""
    f = pb_fields(value)
    env = pb_fields(f[1][0])
    msgid = env[7][0].decode()
    if 3 in f:
        return msgid, "cancel", pb_fields(f[3][0]).get(2, [b""])[0].decode()
    if 4 in f:
        return msgid, "approval", pb_fields(f[4][0])[1][0].decode()
    return msgid, "secrets", ""


def distinct(entries):
    """entries in order of first appearance, redeliveries (same message id) dropped."""
    seen, out = set(), []
    for e in entries:
        if e[0] not in seen:
            seen.add(e[0])
            out.append(e)
    return out


def pending_approval(pg, run_id, team_id, tenant_id):
    """An approval the run's runner asked for (as the status consumer records
    an approval_requested event)."""
    aid = "apr-e2e-" + uuid.uuid4().hex[:12]
    pg.execute("INSERT INTO api.approvals (id, run_id, tenant_id, team_id, kind, what, deadline) "
               "VALUES (%s, %s, %s, %s, 'egress', '{}', now() + interval '10 minutes')",
               (aid, run_id, tenant_id, team_id))
    return aid


def api_workers():
    pid = int((state_dir() / "pids" / "api.pid").read_text().split()[0])
    kids = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            kids += [int(x) for x in f.read().split()]
    return pid, kids


def test_effects_survive_a_crash_between_commit_and_produce(endpoints, api, runs, team_id, tenant_id,
                                                             second_approver, pg):
    pidfile = state_dir() / "pids" / "kafka-mock.pid"
    if not pidfile.is_file():
        pytest.skip("no kafka-mock pid file: not the local stack")
    kafka_pid = int(pidfile.read_text().split()[0])
    bootstrap = endpoints.need("PADDOCK_KAFKA_BOOTSTRAP")
    sb = runs.create_sandbox(command_spec(["/bin/sleep", "300"], timeout_s=240))
    version = runs.publish(sb)
    run_a = runs.launch(sb, version)
    wait_for("run A running", lambda: api.ok("GET", f"/v1/runs/{run_a}", expect=(200,))["status"] == "running",
             timeout=90)
    approval = pending_approval(pg, run_a, team_id, tenant_id)
    requested, control = Tail(bootstrap, REQUESTED), Tail(bootstrap, CONTROL)
    _, old_workers = api_workers()
    assert old_workers, "no api worker processes"

    os.kill(kafka_pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        run_b = runs.launch(sb, version)
        cancel_b = api.ok("POST", f"/v1/runs/{run_b}/cancel", json={"reason": "outbox-e2e b"}, expect=(202,))
        second_approver[0].ok("POST", f"/v1/approvals/{approval}/decision", json={"decision": "approve"},
                              expect=(200,))
        api.ok("POST", f"/v1/runs/{run_a}/cancel", json={"reason": "outbox-e2e a"}, expect=(202,))
        took = time.monotonic() - t0
        queued = pg.execute("SELECT topic, key FROM api.outbox WHERE tenant_id = %s AND key IN (%s, %s) ORDER BY id",
                            (tenant_id, run_a, run_b)).fetchall()
        # the crash: every worker dies with its relay mid-produce; the supervisor replaces them
        for w in old_workers:
            os.kill(w, signal.SIGKILL)
        wait_for("replaced api workers",
                 lambda: (lambda ws: len(ws) == len(old_workers) and not set(ws) & set(old_workers))(api_workers()[1]),
                 timeout=30)
    finally:
        os.kill(kafka_pid, signal.SIGCONT)
    assert took < 4, f"writes waited {took:.1f}s for the stalled broker"
    assert cancel_b["status"] == "cancelled", cancel_b
    # the decision's notice for integrations (paddock.approvals) is queued with it
    assert queued == [(REQUESTED, run_b), (CONTROL, run_b), (APPROVALS, run_a), (CONTROL, run_a), (CONTROL, run_a)], \
        queued

    try:
        got = requested.until(lambda ms: any(k == run_b for k, *_ in ms), timeout=90)
        reqs = distinct([(pb_fields(pb_fields(v)[1][0])[7][0].decode(),) for k, _, _, v in got if k == run_b])
        assert len(reqs) == 1, reqs

        def both(ms):
            a = [control_of(v) for k, _, _, v in ms if k == run_a]
            b = [control_of(v) for k, _, _, v in ms if k == run_b]
            return len(distinct(a)) >= 2 and len(distinct(b)) >= 1
        got = control.until(both, timeout=90)
        a = distinct([control_of(v) for k, _, _, v in sorted(got, key=lambda m: (m[1], m[2])) if k == run_a])
        b = distinct([control_of(v) for k, _, _, v in got if k == run_b])
        # one key, one partition: the decision before the cancel that followed it
        assert [(x[1], x[2]) for x in a] == [("approval", approval), ("cancel", "outbox-e2e a")], a
        assert [(x[1], x[2]) for x in b] == [("cancel", "outbox-e2e b")], b
    finally:
        requested.close()
        control.close()
    assert wait_run_status(api, run_a, timeout=90)["status"] == "cancelled"
    assert api.ok("GET", f"/v1/runs/{run_b}", expect=(200,))["status"] == "cancelled"
    wait_for("the outbox drained", lambda: pg.execute("SELECT count(*) FROM api.outbox WHERE key IN (%s, %s)",
                                                       (run_a, run_b)).fetchone()[0] == 0, timeout=60)


def test_decision_whose_transaction_fails_is_never_sent(endpoints, api, runs, team_id, tenant_id,
                                                       second_approver, pg):
    bootstrap = endpoints.need("PADDOCK_KAFKA_BOOTSTRAP")
    run_c = runs.start(command_spec(["/bin/true"], timeout_s=60))
    assert wait_run_status(api, run_c, timeout=90)["status"] == "succeeded"
    approval = pending_approval(pg, run_c, team_id, tenant_id)
    control = Tail(bootstrap, CONTROL)
    try:
        r = second_approver[0].post(f"/v1/approvals/{approval}/decision", json={"decision": "approve"})
        assert r.status_code == 409 and r.json()["code"] == "conflict", r.text
        assert "already ended" in r.json()["detail"], r.text
        # rolled back: still pending, nothing queued, nothing audited as decided
        assert api.ok("GET", f"/v1/approvals/{approval}", expect=(200,))["status"] == "pending"
        assert pg.execute("SELECT count(*) FROM api.outbox WHERE key = %s", (run_c,)).fetchone()[0] == 0
        # a later command of the same relay: once it is out, the decision would have been too
        run_d = runs.start(command_spec(["/bin/sleep", "300"], timeout_s=60))
        api.ok("POST", f"/v1/runs/{run_d}/cancel", json={"reason": "outbox-e2e marker"}, expect=(202,))
        got = control.until(lambda ms: any(k == run_d for k, *_ in ms), timeout=60)
        sent = [control_of(v) for _, _, _, v in got]
        assert not [s for s in sent if s[1] == "approval" and s[2] == approval], sent
        assert not [k for k, *_ in got if k == run_c], got
    finally:
        control.close()
