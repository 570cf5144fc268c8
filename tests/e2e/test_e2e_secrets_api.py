"""Team secrets, sealing to a run, cancel and approvals through the public API.

* Secrets are write-only: no response ever carries a value, PostgreSQL holds
  only ciphertext, bad names and oversized values are refused.
* A `provisioning` status event carrying a run's X25519 public key makes the api
  seal the run's secrets to it (RunControl{secrets} on paddock.runs.control);
  the test opens the bundle with its own private key when python3-cryptography
  is available, proving the value arrives intact and only sealed.
* Cancel: 202 and RunControl{cancel} for a live run, queued runs end at once,
  finished runs answer 409.
* Approvals: an approval_requested event creates a pending approval (run shows
  awaiting_approval); a decision is recorded once, produces
  RunControl{approval}; a second one, or one past the deadline, is 409.

Events the runner-agent would emit are produced here for runs that exist only
in the api's table (inserted with psycopg, never scheduled), so no real run's
event sequence is disturbed.
"""

import base64
import json
import os
import secrets
import time
import uuid

import psycopg
import pytest
from confluent_kafka import Consumer, KafkaException

from conftest import (REPO, TERMINAL, command_spec, enroll_test_node, pb_fields, pb_varint, run_event_batch, wait_for,
                      wait_run_status)

CONTROL = "paddock.runs.control"
# the api reads run statuses and approvals from the status topic (the node's
# copies of those events; docs/CONTRACTS.md), never from the firehose
STATUS = "paddock.runs.status"


# ---------------------------------------------------------------- protobuf wire helpers


def _pb_str(num, s):
    b = s.encode() if isinstance(s, str) else s
    return pb_varint(num << 3 | 2) + pb_varint(len(b)) + b


def _pb_int(num, n):
    return pb_varint(num << 3) + pb_varint(n)


def _run_event(tenant, team, run_id, seq, kind, data, status="", terminal=False, producer="runner-agent/e2e-test"):
    env = (_pb_str(1, tenant) + _pb_str(2, run_id) + _pb_int(3, seq) + _pb_int(4, int(time.time() * 1e6))
           + _pb_str(5, producer) + _pb_int(6, 1) + _pb_str(7, str(uuid.uuid4())))
    msg = _pb_str(1, env) + _pb_str(2, kind) + _pb_str(3, "platform") + _pb_str(4, json.dumps(data)) + _pb_str(5, team)
    if status:
        msg += _pb_str(6, status)
    if terminal:
        msg += _pb_int(7, 1)
    return msg


@pytest.fixture(scope="module")
def e2e_node(endpoints):
    """The test plays the runner node "e2e-node" of its fake runs: enrolled
    with a key of its own, it signs what it reports (docs/CONTRACTS.md)."""
    return enroll_test_node(endpoints, "e2e-node")


def _produce_event(node, endpoints, run_id, value):
    node.produce(endpoints, STATUS, run_id, value)


class ControlWatcher:
    """Reads paddock.runs.control from the beginning, keeping the messages keyed
    by the runs of interest."""

    def __init__(self, endpoints):
        self.c = Consumer({
            "bootstrap.servers": endpoints.need("PADDOCK_KAFKA_BOOTSTRAP"),
            "group.id": f"paddock-e2e-control-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        })
        self.c.subscribe([CONTROL])
        self.seen = []  # (key, fields, raw)

    def wait(self, run_id, action, timeout=30):
        """The first RunControl for run_id with oneof field `action` (3 cancel,
        4 approval, 5 secrets): (RunControl fields, action fields, raw bytes)."""
        deadline = time.monotonic() + timeout
        while True:
            for key, f, raw in self.seen:
                if key == run_id and action in f:
                    return f, pb_fields(f[action][0]), raw
            if time.monotonic() > deadline:
                pytest.fail(f"no RunControl field {action} for run {run_id} on {CONTROL} within {timeout} s; "
                            f"seen {[(k, sorted(f)) for k, f, _ in self.seen if k == run_id]}")
            msg = self.c.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                if msg.error().fatal():
                    raise KafkaException(msg.error())
                continue
            raw = msg.value()
            self.seen.append(((msg.key() or b"").decode(errors="replace"), pb_fields(raw), raw))

    def all_for(self, run_id, settle=5):
        """Every RunControl for run_id seen once the topic was quiet for settle s."""
        quiet_until = time.monotonic() + settle
        while time.monotonic() < quiet_until:
            msg = self.c.poll(0.5)
            if msg is None or msg.error():
                continue
            quiet_until = time.monotonic() + settle
            raw = msg.value()
            self.seen.append(((msg.key() or b"").decode(errors="replace"), pb_fields(raw), raw))
        return [f for key, f, _ in self.seen if key == run_id]

    def close(self):
        self.c.close()


@pytest.fixture(scope="module")
def control(endpoints):
    w = ControlWatcher(endpoints)
    yield w
    w.close()


def _pg(endpoints):
    return psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True)


def _fake_run(endpoints, tenant_id, team_id, sandbox_id, version, user_id, status="running", node="e2e-node"):
    """A run row the scheduler never saw: events for it disturb no real run."""
    run_id = str(uuid.uuid4())
    with _pg(endpoints) as conn:
        conn.execute(
            "INSERT INTO api.runs (id, tenant_id, team_id, sandbox_id, version, status, created_by, node_id) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (run_id, tenant_id, team_id, sandbox_id, version, status, user_id, node))
    return run_id


def _secret_name():
    return "E2E_" + uuid.uuid4().hex[:12].upper()


# ---------------------------------------------------------------- secrets: write-only


def test_secret_write_only(api, team_id):
    name, value = _secret_name(), "s3cr3t-" + secrets.token_hex(16)
    r = api.request("PUT", f"/v1/teams/{team_id}/secrets/{name}", json={"value": value})
    assert r.status_code == 201, r.text[:300]
    assert value not in r.text
    r = api.request("PUT", f"/v1/teams/{team_id}/secrets/{name}", json={"value": value + "-v2"})
    assert r.status_code == 204, r.text[:300]
    assert not r.content
    r = api.get(f"/v1/teams/{team_id}/secrets")
    assert r.status_code == 200, r.text[:300]
    assert value not in r.text
    items = {i["name"]: i for i in r.json()["items"]}
    assert name in items
    assert set(items[name]) == {"name", "team", "created_at", "updated_at", "updated_by"}
    assert items[name]["updated_at"] >= items[name]["created_at"]
    # the team may be named instead of its id, like elsewhere
    r = api.request("DELETE", f"/v1/teams/{team_id}/secrets/{name}")
    assert r.status_code == 204, r.text[:300]
    r = api.request("DELETE", f"/v1/teams/{team_id}/secrets/{name}")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    assert name not in {i["name"] for i in api.ok("GET", f"/v1/teams/{team_id}/secrets")["items"]}


@pytest.mark.parametrize("bad", ["lower_case", "1STARTS_WITH_DIGIT", "HAS-DASH", "A" * 65])
def test_secret_bad_name(api, team_id, bad):
    r = api.request("PUT", f"/v1/teams/{team_id}/secrets/{bad}", json={"value": "x"})
    assert r.status_code == 400, r.text[:300]
    p = r.json()
    assert p["code"] == "invalid_field" and "name" in p["detail"]


def test_secret_bad_value(api, team_id):
    name = _secret_name()
    for body, code in (({}, "missing_field"), ({"value": 42}, "invalid_field"), ({"value": ""}, "invalid_field"),
                       ({"value": "x", "other": 1}, "unknown_field")):
        r = api.request("PUT", f"/v1/teams/{team_id}/secrets/{name}", json=body)
        assert r.status_code == 400 and r.json()["code"] == code, (body, r.text[:300])
    marker = "TOO-LARGE-" + secrets.token_hex(8)
    big = marker + "A" * (64 * 1024)
    r = api.request("PUT", f"/v1/teams/{team_id}/secrets/{name}", json={"value": big})
    assert r.status_code in (400, 413), r.text[:300]
    assert marker not in r.text, "the error echoes the value"
    assert name not in {i["name"] for i in api.ok("GET", f"/v1/teams/{team_id}/secrets")["items"]}


def test_secret_unknown_team(api):
    r = api.request("PUT", f"/v1/teams/{uuid.uuid4()}/secrets/E2E_X", json={"value": "x"})
    assert r.status_code == 404, r.text[:300]
    assert api.get(f"/v1/teams/{uuid.uuid4()}/secrets").status_code == 404


def test_secret_only_ciphertext_in_postgres(endpoints, api, team_id, tenant_id):
    name, value = _secret_name(), "pg-plain-" + secrets.token_hex(16)
    api.ok("PUT", f"/v1/teams/{team_id}/secrets/{name}", json={"value": value}, expect=(201,))
    with _pg(endpoints) as conn:
        sealed, = conn.execute("SELECT sealed FROM api.team_secrets WHERE team_id = %s AND name = %s",
                               (team_id, name)).fetchone()
        wrapped, = conn.execute("SELECT wrapped_key FROM api.tenant_keys WHERE tenant_id = %s",
                                (tenant_id,)).fetchone()
        # the whole schema as text: the value appears nowhere
        dump = conn.execute("SELECT string_agg(t::text, '|') FROM api.team_secrets t").fetchone()[0]
    sealed = bytes(sealed)
    assert value.encode() not in sealed and value not in dump
    assert sealed[0] == 0x01 and len(sealed) == len(value) + 29, "not a secretbox v1 blob of the value"
    assert len(bytes(wrapped)) == 61 and bytes(wrapped)[0] == 0x81, "the data key is not stored wrapped"
    # a second write of the same value gives another ciphertext (random nonce)
    api.ok("PUT", f"/v1/teams/{team_id}/secrets/{name}", json={"value": value}, expect=(204,))
    with _pg(endpoints) as conn:
        again, = conn.execute("SELECT sealed FROM api.team_secrets WHERE team_id = %s AND name = %s",
                              (team_id, name)).fetchone()
    assert bytes(again) != sealed
    api.ok("DELETE", f"/v1/teams/{team_id}/secrets/{name}", expect=(204,))


# ---------------------------------------------------------------- sealing to a run


def _open_sealed(private_key, run_id, fields):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    eph, nonce, ct = fields[1][0], fields[2][0], fields[3][0]
    shared = private_key.exchange(X25519PublicKey.from_public_bytes(eph))
    mine = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=eph + mine, info=b"paddock-seal-v1").derive(shared)
    return AESGCM(key).decrypt(nonce, ct, b"paddock-secrets:" + run_id.encode())


def test_launch_refuses_unset_secret(api, runs, team_id):
    spec = command_spec(["/bin/true"], timeout_s=30)
    spec["secrets"] = [{"name": _secret_name(), "as": {"env": "TOKEN"}}]
    sb = runs.create_sandbox(spec)
    version = runs.publish(sb)
    r = api.post("/v1/runs", json={"sandbox": sb, "version": version, "team": team_id})
    assert r.status_code == 409 and r.json()["code"] == "conflict", r.text[:300]
    assert "secrets[0]" in r.json()["detail"]


def test_secrets_sealed_to_run_key(e2e_node, endpoints, api, runs, me, team_id, tenant_id, control):
    env_name, hdr_name = _secret_name(), _secret_name()
    env_value, hdr_value = "env-" + secrets.token_hex(12), "hdr-" + secrets.token_hex(12)
    api.ok("PUT", f"/v1/teams/{team_id}/secrets/{env_name}", json={"value": env_value}, expect=(201,))
    api.ok("PUT", f"/v1/teams/{team_id}/secrets/{hdr_name}", json={"value": hdr_value}, expect=(201,))
    spec = command_spec(["/bin/true"], timeout_s=30)
    spec["secrets"] = [{"name": env_name, "as": {"env": "MY_TOKEN"}},
                       {"name": hdr_name, "as": {"header": {"host": "api.example.com", "name": "x-api-key"}}},
                       {"name": env_name, "as": {"env": "SAME_AGAIN"}}]
    sb = runs.create_sandbox(spec)
    version = runs.publish(sb)
    run_id = _fake_run(endpoints, tenant_id, team_id, sb, version, me["user"]["id"], status="scheduled")

    try:
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
        priv = X25519PrivateKey.generate()
        pub = priv.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    except ImportError:  # python3-cryptography absent: check the message, not the plaintext
        priv, pub = None, os.urandom(32)
    _produce_event(e2e_node, endpoints, run_id, _run_event(tenant_id, team_id, run_id, 1, "status",
                                                 {"status": "provisioning",
                                                  "public_key": base64.b64encode(pub).decode()},
                                                 status="provisioning"))
    rc, sealed, raw = control.wait(run_id, 5)
    assert rc[2][0] == b"e2e-node", "RunControl not addressed to the run's node"
    assert set(sealed) == {1, 2, 3} and len(sealed[1][0]) == 32 and len(sealed[2][0]) == 12
    for v in (env_value, hdr_value):
        assert v.encode() not in raw, "a secret value travels in clear on Kafka"
    if priv is not None:
        bundle = pb_fields(_open_sealed(priv, run_id, sealed))
        got = {}
        for item in bundle[1]:
            f = pb_fields(item)
            got[f[1][0].decode()] = f[2][0].decode()
        assert got == {env_name: env_value, hdr_name: hdr_value}, "each referenced secret once, intact"
        # the same bundle is bound to its run: another run id does not open it
        with pytest.raises(Exception):
            _open_sealed(priv, str(uuid.uuid4()), sealed)
    wait_for("provisioning status", lambda: api.ok("GET", f"/v1/runs/{run_id}")["status"] == "provisioning",
             timeout=30, pause=0.3)

    # a secret deleted after launch: the run is cancelled with the reason
    api.ok("DELETE", f"/v1/teams/{team_id}/secrets/{hdr_name}", expect=(204,))
    run2 = _fake_run(endpoints, tenant_id, team_id, sb, version, me["user"]["id"], status="scheduled")
    _produce_event(e2e_node, endpoints, run2, _run_event(tenant_id, team_id, run2, 1, "status",
                                               {"status": "provisioning",
                                                "public_key": base64.b64encode(pub).decode()},
                                               status="provisioning"))
    rc2, cancel, _ = control.wait(run2, 3)
    assert cancel[2][0].decode() == f"secret {hdr_name} is not set"
    assert not any(k == run2 and 5 in f for k, f, _ in control.seen), "sealed despite a missing secret"
    api.ok("DELETE", f"/v1/teams/{team_id}/secrets/{env_name}", expect=(204,))


# ---------------------------------------------------------------- cancel


@pytest.fixture(scope="module")
def plain_sandbox(runs):
    sb = runs.create_sandbox(command_spec(["/bin/true"], timeout_s=30))
    return sb, runs.publish(sb)


def test_cancel_running_run(endpoints, api, runs, admin_token, control):
    run_id = runs.start(command_spec(["/bin/sleep", "300"], timeout_s=30))
    wait_for("the run to start", lambda: api.ok("GET", f"/v1/runs/{run_id}")["status"] in {"running"} | TERMINAL,
             timeout=90, pause=0.3)
    r = api.post(f"/v1/runs/{run_id}/cancel", json={"reason": "e2e cancel"})
    assert r.status_code == 202, r.text[:300]
    assert r.json()["id"] == run_id and r.json()["status"] in ("running", "provisioning", "scheduled")
    rc, cancel, _ = control.wait(run_id, 3)
    node = api.ok("GET", f"/v1/runs/{run_id}")["node"]
    assert rc[2][0].decode() == node
    assert cancel[2][0].decode() == "e2e cancel"
    assert cancel[1][0].decode().startswith("user:")
    # The runner-agent side (its paddock.runs.control consumer) ends the run;
    # "auto" expects it when the tree has it. A stack running an older
    # runner-agent binary sets PADDOCK_E2E_RUNNER_CONTROL=0.
    want = os.environ.get("PADDOCK_E2E_RUNNER_CONTROL", "auto")
    strict = want == "1" or (want == "auto" and (REPO / "services/runner-agent/control.c").exists())
    run = wait_run_status(api, run_id, timeout=60)
    if strict:
        assert run["status"] == "cancelled", run


def test_cancel_queued_run(endpoints, api, me, team_id, tenant_id, plain_sandbox, control):
    run_id = _fake_run(endpoints, tenant_id, team_id, *plain_sandbox, me["user"]["id"], status="queued", node=None)
    r = api.post(f"/v1/runs/{run_id}/cancel")
    assert r.status_code == 202, r.text[:300]
    assert r.json() == {"id": run_id, "status": "cancelled"}
    run = api.ok("GET", f"/v1/runs/{run_id}")
    assert run["status"] == "cancelled" and run["ended_at"] and run["reason"]
    rc, _, _ = control.wait(run_id, 3)
    assert rc.get(2, [b""])[0] == b"", "a queued run's cancel goes to every node"
    r = api.post(f"/v1/runs/{run_id}/cancel")
    assert r.status_code == 409 and r.json()["code"] == "conflict"


def test_cancel_finished_and_unknown(endpoints, api, me, team_id, tenant_id, plain_sandbox):
    run_id = _fake_run(endpoints, tenant_id, team_id, *plain_sandbox, me["user"]["id"], status="succeeded")
    r = api.post(f"/v1/runs/{run_id}/cancel")
    assert r.status_code == 409 and r.json()["code"] == "conflict", r.text[:300]
    r = api.post(f"/v1/runs/{uuid.uuid4()}/cancel")
    assert r.status_code == 404
    r = api.post(f"/v1/runs/{run_id}/cancel", json={"bogus": 1})
    assert r.status_code == 400 and r.json()["code"] == "unknown_field"


def test_cancel_of_a_run_that_ends_meanwhile_sends_no_cancel(endpoints, api, me, team_id, tenant_id, plain_sandbox,
                                                             control):
    """A run has one terminal status (docs/CONTRACTS.md): a cancel racing the
    run's end (here its status row is being ended, and locked, when the
    cancel arrives) answers 409 once the end is applied, and no cancel goes
    to the node, which would otherwise report a second end ("failed, then
    cancelled")."""
    import threading
    run_id = _fake_run(endpoints, tenant_id, team_id, *plain_sandbox, me["user"]["id"], status="running")
    answer = {}
    with psycopg.connect(endpoints.need("PADDOCK_PG_DSN")) as ender, _pg(endpoints) as watcher:
        # what the status consumer does with the run's terminal status, held open
        ender.execute("UPDATE api.runs SET status = 'failed', reason = 'node e2e-node stopped heartbeating',"
                      " ended_at = now() WHERE id = %s", (run_id,))
        t = threading.Thread(target=lambda: answer.setdefault("r", api.post(f"/v1/runs/{run_id}/cancel")),
                             daemon=True)
        t.start()
        deadline = time.monotonic() + 30
        while t.is_alive() and not watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                (ender.info.backend_pid,)).fetchone()[0]:
            assert time.monotonic() < deadline, "the cancel neither waited for the run's row nor answered"
            time.sleep(0.1)
        ender.commit()
    t.join(30)
    r = answer["r"]
    assert r.status_code == 409 and r.json()["code"] == "conflict", r.text[:300]
    assert "failed" in r.json()["detail"], r.text[:300]
    assert not control.all_for(run_id), "a cancel went out for a run that had ended"
    # the row as ended (the api shows the end once evidence holds the run's
    # history, which this fake run has none of)
    with _pg(endpoints) as pg:
        row = pg.execute("SELECT status, reason FROM api.runs WHERE id = %s", (run_id,)).fetchone()
    assert row == ("failed", "node e2e-node stopped heartbeating"), row


def _scheduler_signer(endpoints):
    """The scheduler's own bus key (the local stack's, read as its operator):
    what a platform verdict is signed with."""
    import pathlib
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from conftest import BusSigner
    path = pathlib.Path(endpoints.need("PADDOCK_STATE_DIR")) / "secrets" / "bus-scheduler.key"
    return BusSigner("scheduler", load_pem_private_key(path.read_bytes(), None))


def _produce_applied(endpoints, signer, topic, run_id, value, group="paddock-api-status", timeout=30):
    """Produces one signed record and waits until the consumer group committed
    past it, i.e. the consumer has applied (or refused) it."""
    from confluent_kafka import Producer, TopicPartition
    p = Producer({"bootstrap.servers": endpoints.need("PADDOCK_KAFKA_BOOTSTRAP")})
    where = {}
    p.produce(topic, key=run_id.encode(), value=value, headers=signer.headers(topic, value),
              on_delivery=lambda err, msg: where.update(err=err, partition=msg.partition(), offset=msg.offset()))
    assert p.flush(15) == 0 and not where.get("err"), f"record not delivered to {topic}: {where}"
    c = Consumer({"bootstrap.servers": endpoints.need("PADDOCK_KAFKA_BOOTSTRAP"), "group.id": group,
                  "enable.auto.commit": False})
    try:
        tp = TopicPartition(topic, where["partition"])
        wait_for(f"{group} to commit past offset {where['offset']} of {topic}",
                 lambda: c.committed([tp], timeout=10)[0].offset > where["offset"], timeout=timeout, pause=0.3)
    finally:
        c.close()


def test_platform_verdict_wins_and_a_late_node_terminal_changes_nothing(e2e_node, endpoints, api, me, team_id,
                                                                        tenant_id, plain_sandbox):
    """The first terminal status wins (docs/CONTRACTS.md): the scheduler's
    verdict (seq 0, "append") ends a running run; the node's own terminal
    status arriving after it (the node came back) changes nothing, and a
    node cannot send a verdict of its own."""
    run_id = _fake_run(endpoints, tenant_id, team_id, *plain_sandbox, me["user"]["id"], status="running")
    _produce_applied(endpoints, e2e_node, STATUS, run_id,
                     _run_event(tenant_id, team_id, run_id, 0, "status", {"status": "failed", "reason": "forged"},
                                status="failed", terminal=True))
    with _pg(endpoints) as pg:  # the row itself: the api would hide an end without its history anyway
        row = pg.execute("SELECT status FROM api.runs WHERE id = %s", (run_id,)).fetchone()
    assert row == ("running",), "a node's seq-0 event was taken for a verdict"

    reason = "node e2e-node stopped heartbeating"
    verdict = _run_event(tenant_id, team_id, run_id, 0, "status", {"status": "failed", "reason": reason},
                         status="failed", terminal=True, producer="scheduler/e2e")
    # as the scheduler sends it: to the history first (evidence appends it),
    # then to the status topic; the api shows the end once the history has it
    _scheduler_signer(endpoints).produce(endpoints, "paddock.runs.events", run_id, run_event_batch(verdict))
    _produce_applied(endpoints, _scheduler_signer(endpoints), STATUS, run_id, verdict)
    ended = wait_for("the verdict shown", lambda: (lambda r: r if r["status"] != "running" else None)(
        api.ok("GET", f"/v1/runs/{run_id}")), timeout=30, pause=0.3)
    assert ended["status"] == "failed" and ended["reason"] == reason and ended["ended_at"], ended

    _produce_applied(endpoints, e2e_node, STATUS, run_id,
                     _run_event(tenant_id, team_id, run_id, 40, "status",
                                {"status": "succeeded", "exit_code": 0}, status="succeeded", terminal=True))
    _produce_applied(endpoints, e2e_node, STATUS, run_id,
                     _run_event(tenant_id, team_id, run_id, 41, "status",
                                {"status": "cancelled", "reason": "cancelled by platform"}, status="cancelled",
                                terminal=True))
    assert api.ok("GET", f"/v1/runs/{run_id}") == ended


# ---------------------------------------------------------------- approvals


def _approvals(api, status="pending"):
    return {a["id"]: a for a in api.ok("GET", "/v1/approvals", params={"status": status, "limit": 1000})["items"]}


def test_approval_flow(e2e_node, endpoints, api, me, team_id, tenant_id, plain_sandbox, control, second_approver):
    run_id = _fake_run(endpoints, tenant_id, team_id, *plain_sandbox, me["user"]["id"], status="running")
    approval_id = str(uuid.uuid4())
    deadline = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 600))
    _produce_event(e2e_node, endpoints, run_id, _run_event(tenant_id, team_id, run_id, 5, "approval_requested",
                                                 {"approval_id": approval_id, "kind": "egress",
                                                  "host": "api.example.com", "port": 443, "deadline": deadline,
                                                  "rule": "egress.unknown=ask"}))
    a = wait_for("the approval to be listed", lambda: _approvals(api).get(approval_id), timeout=30, pause=0.3)
    assert a["run"] == run_id and a["team"] == team_id and a["kind"] == "egress"
    # what: every field of the request but approval_id, deadline and timeout_s (issue 12 §4)
    assert a["what"] == {"kind": "egress", "host": "api.example.com", "port": 443, "rule": "egress.unknown=ask"}
    assert a["status"] == "pending"
    assert a["rule"] == "egress.unknown=ask" and a["deadline"].startswith(deadline[:16])
    assert api.ok("GET", f"/v1/runs/{run_id}")["status"] == "awaiting_approval"

    for body, code in (({}, "missing_field"), ({"decision": "maybe"}, "invalid_field"),
                       ({"decision": "approve", "x": 1}, "unknown_field")):
        r = api.post(f"/v1/approvals/{approval_id}/decision", json=body)
        assert r.status_code == 400 and r.json()["code"] == code, r.text[:300]

    # four eyes: the run's launcher (me) may not decide it, whatever its roles; nothing changes
    r = api.post(f"/v1/approvals/{approval_id}/decision", json={"decision": "approve", "comment": "mine"})
    assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text[:300]
    assert "launched" in r.json()["detail"] and "four eyes" in r.json()["detail"], r.text[:300]
    assert _approvals(api)[approval_id]["status"] == "pending"
    approver, _, _ = second_approver
    approver_id = approver.ok("GET", "/v1/me", expect=(200,))["user"]["id"]
    r = approver.post(f"/v1/approvals/{approval_id}/decision", json={"decision": "approve", "comment": "ok for e2e"})
    assert r.status_code == 200, r.text[:300]
    d = r.json()
    assert d["status"] == "approved" and d["decided_by"] == f"user:{approver_id}" and d["decided_at"]
    assert d["comment"] == "ok for e2e"
    rc, dec, _ = control.wait(run_id, 4)
    assert rc[2][0] == b"e2e-node"
    assert dec[1][0].decode() == approval_id and dec.get(2, [0])[0] == 1
    assert dec[3][0].decode() == f"user:{approver_id}" and dec[4][0].decode() == "ok for e2e"

    r = approver.post(f"/v1/approvals/{approval_id}/decision", json={"decision": "deny"})
    assert r.status_code == 409 and r.json()["code"] == "conflict", r.text[:300]
    assert approval_id not in _approvals(api)
    assert approval_id in _approvals(api, "approved")

    # the runner reports what it applied: the run is running again
    _produce_event(e2e_node, endpoints, run_id, _run_event(tenant_id, team_id, run_id, 6, "approval_decided",
                                                 {"approval_id": approval_id, "decision": "approve",
                                                  "by": f"user:{me['user']['id']}"}))
    wait_for("running again", lambda: api.ok("GET", f"/v1/runs/{run_id}")["status"] == "running", timeout=30,
             pause=0.3)


def test_approval_expired_and_unknown(e2e_node, endpoints, api, me, team_id, tenant_id, plain_sandbox):
    r = api.post(f"/v1/approvals/{uuid.uuid4()}/decision", json={"decision": "approve"})
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    run_id = _fake_run(endpoints, tenant_id, team_id, *plain_sandbox, me["user"]["id"], status="running")
    approval_id = str(uuid.uuid4())
    _produce_event(e2e_node, endpoints, run_id, _run_event(tenant_id, team_id, run_id, 3, "approval_requested",
                                                 {"approval_id": approval_id, "kind": "egress", "host": "x.example",
                                                  "port": 443, "deadline": time.time() - 5}))
    a = wait_for("the expired approval", lambda: _approvals(api, "expired").get(approval_id), timeout=30,
                 pause=0.3)
    assert a["status"] == "expired"
    r = api.post(f"/v1/approvals/{approval_id}/decision", json={"decision": "approve"})
    assert r.status_code == 409 and r.json()["code"] == "conflict", r.text[:300]
    r = api.get("/v1/approvals", params={"status": "bogus"})
    assert r.status_code == 400
