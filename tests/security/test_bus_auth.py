"""Authenticated messages on the bus (issue 9 §2, docs/CONTRACTS.md "Signed
messages on the bus"). A plain Kafka client (confluent_kafka) with no
service key forges what the platform's producers say: a provisioning event
with its own run key for a live run that has a secret, status and terminal
events, a cancel, approval decisions, an audit record, a heartbeat for
another node. Each is refused (unsigned, forged signature, unknown signer,
a signer not allowed on the topic, or an enrolled node speaking about what
is not its own), changes nothing observable, and shows in the consuming
service's paddock_bus_refused_total{reason}. Only loopback traffic."""

import base64
import json
import pathlib
import re
import time
import uuid

import pytest
import requests
from confluent_kafka import Consumer, KafkaException

import conftest as c

e2e = c.e2e
EVENTS = "paddock.runs.events"
# statuses and approvals act where the api and the scheduler read them: the
# status topic (the node's copies of those events, docs/CONTRACTS.md)
STATUS = "paddock.runs.status"
CONTROL = "paddock.runs.control"
AUDIT = "paddock.audit"
NODES = "paddock.nodes"
pb_field, pb_fields, pb_varint = e2e.pb_field, e2e.pb_fields, e2e.pb_varint


def _s(num, text):
    return pb_field(num, 2, text.encode() if isinstance(text, str) else text)


def envelope(tenant, run_id="", seq=0, producer="forger/1"):
    return (_s(1, tenant) + (_s(2, run_id) if run_id else b"") + (pb_field(3, 0, pb_varint(seq)) if seq else b"")
            + pb_field(4, 0, pb_varint(int(time.time() * 1e6))) + _s(5, producer) + pb_field(6, 0, pb_varint(1))
            + _s(7, str(uuid.uuid4())))


def run_event(tenant, team, run_id, seq, kind, data, status="", terminal=False):
    out = _s(1, envelope(tenant, run_id, seq)) + _s(2, kind) + _s(3, "platform") + _s(4, json.dumps(data)) \
        + _s(5, team)
    if status:
        out += _s(6, status)
    if terminal:
        out += pb_field(7, 0, pb_varint(1))
    return out  # one RunEvent: a record of the status topic (the firehose takes a RunEventBatch of them)


def control_cancel(tenant, run_id, node):
    cancel = _s(1, "user:forger") + _s(2, "forged cancel")
    return _s(1, envelope(tenant, run_id)) + _s(2, node) + _s(3, cancel)


def control_approval(tenant, run_id, node, approval_id):
    dec = _s(1, approval_id) + pb_field(2, 0, pb_varint(1)) + _s(3, "user:forger")
    return _s(1, envelope(tenant, run_id)) + _s(2, node) + _s(4, dec)


def audit_record(tenant, marker):
    return (_s(1, envelope(tenant)) + _s(2, "user:forger") + _s(3, marker) + _s(4, "run") + _s(5, str(uuid.uuid4()))
            + _s(7, "success") + _s(9, "{}"))


def produce(endpoints, topic, key, value, signer=None, headers=None):
    """Produces one record: unsigned, signed by signer (a BusSigner), or with
    the given headers as they are."""
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": endpoints.need("PADDOCK_KAFKA_BOOTSTRAP")})
    if signer is not None:
        headers = signer.headers(topic, value)
    p.produce(topic, key=key.encode(), value=value, headers=headers)
    assert p.flush(15) == 0, f"record not delivered to {topic}"


# ---------------------------------------------------------------- metrics

REFUSED = re.compile(r'^paddock_bus_refused_total\{reason="([a-z_]+)"\} (\d+)$', re.M)


def refused(endpoints, service):
    """{reason: count} of one scrape of the service's /metrics."""
    var = "PADDOCK_API_OPS_URL" if service == "api" else f"PADDOCK_{service.upper().replace('-', '_')}_OPS_URL"
    text = requests.get(endpoints.need(var) + "/metrics", timeout=10).text
    return {m.group(1): int(m.group(2)) for m in REFUSED.finditer(text)}


class RefusalWatch:
    """Waits for a service's refusal count of a reason to grow past what it
    was (the api's workers share the counters)."""

    def __init__(self, endpoints, service):
        self.endpoints, self.service = endpoints, service
        self.before = refused(endpoints, service)

    def wait(self, reason, timeout=30):
        def grew():
            n = refused(self.endpoints, self.service).get(reason, 0)
            if n > self.before.get(reason, 0):
                self.before[reason] = n
                return True
            return False
        e2e.wait_for(f"{self.service} to count a refusal ({reason})", grew, timeout=timeout, pause=0.3)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def rogue_node(endpoints):
    """A node the operator enrolled, which is not assigned the runs it lies about."""
    return e2e.enroll_test_node(endpoints, "bus-rogue-" + uuid.uuid4().hex[:8])


@pytest.fixture(scope="module")
def outsider():
    """A key nobody enrolled, claiming to be the api."""
    return e2e.BusSigner("api")


def assigned_node_signer(endpoints):
    """The local node's own key (a compromised assigned node)."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    path = pathlib.Path(endpoints.need("PADDOCK_RUNNER_STATE_DIR")) / "node.key"
    node_id = e2e.read_env_file(pathlib.Path(endpoints.need("PADDOCK_STATE_DIR")) / "env" / "runner-agent.env")[
        "PADDOCK_NODE_ID"]
    return e2e.BusSigner(f"node:{node_id}", load_pem_private_key(path.read_bytes(), None)), node_id


def x25519():
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    priv = X25519PrivateKey.generate()
    return priv, base64.b64encode(priv.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def sealed_for(endpoints, run_id, timeout=5):
    """Every SealedSecrets (field 5 of RunControl) for run_id on runs.control so far."""
    cons = Consumer({"bootstrap.servers": endpoints.need("PADDOCK_KAFKA_BOOTSTRAP"),
                     "group.id": f"bus-auth-{uuid.uuid4()}", "auto.offset.reset": "earliest",
                     "enable.auto.commit": False, "session.timeout.ms": 6000})
    cons.subscribe([CONTROL])
    out, idle_until = [], time.monotonic() + timeout
    try:
        while time.monotonic() < idle_until:
            m = cons.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().fatal():
                    raise KafkaException(m.error())
                continue
            idle_until = time.monotonic() + 2  # read to the end
            if (m.key() or b"").decode(errors="replace") != run_id:
                continue
            f = pb_fields(m.value())
            if 5 in f:
                out.append(pb_fields(f[5][0]))
    finally:
        cons.close()
    return out


def open_sealed(private_key, run_id, fields):
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


def wait_status(api, run_id, status, timeout=60):
    return e2e.wait_for(f"run {run_id} {status}",
                        lambda: (r := api.ok("GET", f"/v1/runs/{run_id}"))["status"] == status and r,
                        timeout=timeout, pause=0.3)


# ---------------------------------------------------------------- tests


def test_forged_messages_about_a_live_run_change_nothing(endpoints, admin_token, api, runs, team_id, tenant_id,
                                                          rogue_node, outsider):
    """A live run with a secret: forged provisioning keys never get a bundle,
    forged status, terminal and cancel messages leave it running, and it
    ends with its real secret."""
    name, value = "BUS_" + uuid.uuid4().hex[:10].upper(), "bus-secret-" + uuid.uuid4().hex
    api.ok("PUT", f"/v1/teams/{team_id}/secrets/{name}", json={"value": value}, expect=(201,))
    # runs ~12 s, then succeeds only if it holds the real secret
    spec = c.spec(["/bin/sh", "-c", f'i=0; while [ $i -lt 24 ]; do sleep 0.5; i=$((i+1)); done; '
                                    f'test "$BUS_SECRET" = "{value}"'], timeout_s=120)
    spec["secrets"] = [{"name": name, "as": {"env": "BUS_SECRET"}}]
    run_id = runs.start(spec)
    run = wait_status(api, run_id, "running")
    node = run.get("node") or run.get("node_id") or ""
    seq = 1000
    # a stream open meanwhile: nothing forged may show live either
    import threading
    streamed = {}
    reader = threading.Thread(target=lambda: streamed.setdefault(
        "res", e2e.watch(endpoints, admin_token, run_id, timeout=120)), daemon=True)
    reader.start()
    time.sleep(1)

    watch = {s: RefusalWatch(endpoints, s) for s in ("api", "scheduler", "runner-agent")}
    priv, pub = x25519()
    forged_prov = run_event(tenant_id, team_id, run_id, seq, "status",
                            {"status": "provisioning", "public_key": pub}, status="provisioning")
    # unsigned; signed by a key nobody enrolled; by an enrolled node the run is not assigned to
    produce(endpoints, STATUS, run_id, forged_prov)
    watch["api"].wait("unsigned")
    produce(endpoints, STATUS, run_id, forged_prov, signer=e2e.BusSigner("node:" + (node or "local-node-1")))
    watch["api"].wait("bad_signature")
    produce(endpoints, STATUS, run_id, forged_prov, signer=rogue_node)
    watch["api"].wait("wrong_subject")
    # a signature copied from another record does not fit this one
    other = run_event(tenant_id, team_id, run_id, seq + 1, "status", {"status": "running"}, status="running")
    produce(endpoints, STATUS, run_id, forged_prov, headers=rogue_node.headers(STATUS, other))

    # a terminal status and a cancel: refused where they would act (the
    # status topic; on the firehose it would reach the live stream)
    forged_end = run_event(tenant_id, team_id, run_id, seq + 2, "status", {"status": "failed", "reason": "forged"},
                           status="failed", terminal=True)
    produce(endpoints, STATUS, run_id, forged_end, signer=rogue_node)
    watch["scheduler"].wait("wrong_subject")
    produce(endpoints, EVENTS, run_id, e2e.run_event_batch(forged_end), signer=rogue_node)
    # seq 0 is a platform verdict: only the scheduler may say it
    verdict = run_event(tenant_id, team_id, run_id, 0, "status", {"status": "failed", "reason": "forged verdict"},
                        status="failed", terminal=True)
    produce(endpoints, STATUS, run_id, verdict, signer=rogue_node)
    watch["scheduler"].wait("wrong_subject")
    produce(endpoints, CONTROL, run_id, control_cancel(tenant_id, run_id, node))
    watch["runner-agent"].wait("unsigned")
    produce(endpoints, CONTROL, run_id, control_cancel(tenant_id, run_id, node), signer=outsider)
    watch["runner-agent"].wait("bad_signature")
    produce(endpoints, CONTROL, run_id, control_cancel(tenant_id, run_id, node), signer=rogue_node)
    watch["runner-agent"].wait("not_allowed")

    assert api.ok("GET", f"/v1/runs/{run_id}")["status"] == "running", "a forged message changed the run"
    res = e2e.wait_terminal(endpoints, admin_token, run_id, timeout=120)
    assert res.terminal == "succeeded", f"the run did not get its real secret: {res.statuses}"
    reader.join(130)
    live = streamed["res"]
    assert live.terminal == "succeeded", live.statuses
    assert not [e for e in live.events if e.get("seq", 0) >= seq], "a forged event reached the live stream"

    bundles = sealed_for(endpoints, run_id)
    assert len(bundles) >= 1, "the run's real secrets were never sealed"
    for b in bundles:
        with pytest.raises(Exception):
            open_sealed(priv, run_id, b)
    api.ok("DELETE", f"/v1/teams/{team_id}/secrets/{name}", expect=(204,))


def test_second_run_key_from_the_assigned_node_is_refused(endpoints, admin_token, api, runs, team_id, tenant_id):
    """Exactly one run key: even the run's own node (its key stolen, or lying)
    cannot get the secrets sealed to a second key."""
    name, value = "BUS_" + uuid.uuid4().hex[:10].upper(), "bus-secret-" + uuid.uuid4().hex
    api.ok("PUT", f"/v1/teams/{team_id}/secrets/{name}", json={"value": value}, expect=(201,))
    spec = c.spec(["/bin/sh", "-c", "sleep 8"], timeout_s=120)
    spec["secrets"] = [{"name": name, "as": {"env": "BUS_SECRET"}}]
    run_id = runs.start(spec)
    wait_status(api, run_id, "running")
    before = len(sealed_for(endpoints, run_id))
    assert before >= 1
    signer, _ = assigned_node_signer(endpoints)
    watch = RefusalWatch(endpoints, "api")
    priv, pub = x25519()
    # a later seq than anything the run has said, so the transition itself applies
    produce(endpoints, STATUS, run_id, run_event(tenant_id, team_id, run_id, 500, "status",
                                                 {"status": "provisioning", "public_key": pub},
                                                 status="provisioning"), signer=signer)
    watch.wait("wrong_subject")
    bundles = sealed_for(endpoints, run_id)
    assert len(bundles) == before, "a second run key triggered a second sealing"
    for b in bundles:
        with pytest.raises(Exception):
            open_sealed(priv, run_id, b)
    e2e.wait_terminal(endpoints, admin_token, run_id, timeout=120)
    api.ok("DELETE", f"/v1/teams/{team_id}/secrets/{name}", expect=(204,))


def _approvals(api, status="pending"):
    return {a["id"]: a for a in api.ok("GET", "/v1/approvals", params={"status": status, "limit": 1000})["items"]}


def test_forged_approval_decisions_change_nothing(endpoints, api, me, team_id, tenant_id, runs, rogue_node,
                                                   outsider):
    """An approval its run's node asked for stays pending when another node
    reports it decided; a forged decision on runs.control never reaches the node."""
    sb = runs.create_sandbox(c.spec(["/bin/true"], timeout_s=30))
    version = runs.publish(sb)
    node_id = "bus-owner-" + uuid.uuid4().hex[:8]
    owner = e2e.enroll_test_node(endpoints, node_id)
    run_id = str(uuid.uuid4())
    import psycopg
    with psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True) as conn:
        conn.execute("INSERT INTO api.runs (id, tenant_id, team_id, sandbox_id, version, status, created_by, node_id) "
                     "VALUES (%s, %s, %s, %s, %s, 'running', %s, %s)",
                     (run_id, tenant_id, team_id, sb, version, me["user"]["id"], node_id))
    approval_id = str(uuid.uuid4())
    deadline = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 600))
    owner.produce(endpoints, STATUS, run_id, run_event(tenant_id, team_id, run_id, 5, "approval_requested",
                                                       {"approval_id": approval_id, "kind": "egress",
                                                        "host": "api.example.com", "port": 443,
                                                        "deadline": deadline, "rule": "egress.unknown=ask"}))
    e2e.wait_for("the approval to be listed", lambda: _approvals(api).get(approval_id), timeout=30, pause=0.3)

    watch = RefusalWatch(endpoints, "api")
    decided = run_event(tenant_id, team_id, run_id, 6, "approval_decided",
                        {"approval_id": approval_id, "decision": "approve", "by": "user:forger"})
    produce(endpoints, STATUS, run_id, decided, signer=rogue_node)
    watch.wait("wrong_subject")
    produce(endpoints, STATUS, run_id, decided)
    watch.wait("unsigned")
    runner = RefusalWatch(endpoints, "runner-agent")
    produce(endpoints, CONTROL, run_id, control_approval(tenant_id, run_id, "", approval_id), signer=outsider)
    runner.wait("bad_signature")
    a = _approvals(api).get(approval_id)
    assert a and a["status"] == "pending", a
    assert api.ok("GET", f"/v1/runs/{run_id}")["status"] == "awaiting_approval"


def test_forged_audit_record_and_heartbeat_change_nothing(endpoints, api, tenant_id, rogue_node, outsider):
    """Only the api writes the audit chain; a node heartbeats only for itself."""
    evidence = RefusalWatch(endpoints, "evidence")
    marker = "forged." + uuid.uuid4().hex[:12]
    produce(endpoints, AUDIT, tenant_id, audit_record(tenant_id, marker))
    evidence.wait("unsigned")
    produce(endpoints, AUDIT, tenant_id, audit_record(tenant_id, marker), signer=rogue_node)
    evidence.wait("not_allowed")
    produce(endpoints, AUDIT, tenant_id, audit_record(tenant_id, marker), signer=outsider)
    evidence.wait("bad_signature")

    _, node_id = assigned_node_signer(endpoints)
    scheduler = RefusalWatch(endpoints, "scheduler")
    produce(endpoints, NODES, node_id, e2e.node_heartbeat(node_id, slots=0, version="forged-version"),
            signer=rogue_node)
    scheduler.wait("wrong_subject")
    produce(endpoints, NODES, node_id, e2e.node_heartbeat(node_id, slots=0, version="forged-version"))
    scheduler.wait("unsigned")

    time.sleep(3)  # the real node heartbeats meanwhile; nothing forged may show
    items = api.ok("GET", "/v1/audit?limit=1000", expect=(200,))["items"]
    assert not [i for i in items if i.get("action") == marker], "a forged audit record entered the chain"
    assert api.ok("GET", "/v1/audit/verify", expect=(200,)).get("ok", True)
    nodes = api.ok("GET", "/v1/nodes")["items"]
    mine = [n for n in nodes if n.get("id", n.get("node_id")) == node_id]
    assert mine and mine[0].get("version") != "forged-version", mine


def test_run_history_verifies_offline_against_the_node_key(endpoints, admin_token, api, runs):
    """The session history is signed at its source: every event of a run
    carries its signer's Ed25519 signature over the record as produced, which
    verifies against the node's enrolled key from GET /v1/nodes."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    # a burst of 60 file events within milliseconds: several share a record
    # however loaded the machine (a record waits 5 ms for more; a short run's
    # few events, each ~10 ms apart under load, may each travel alone)
    burst = "echo signed history; i=0; while [ $i -lt 30 ]; do echo x > f$i; i=$((i+1)); done"
    run_id, res = c.run_to_end(endpoints, admin_token, runs, c.spec(["/bin/sh", "-c", burst]))
    assert res.terminal == "succeeded", res.statuses
    # the stream says succeeded before evidence has stored the history
    e2e.wait_history_complete(api, run_id)
    n = len(e2e.all_events(api, run_id))
    node = api.ok("GET", f"/v1/runs/{run_id}")["node"]
    keys = {x["id"]: x["public_key"] for x in api.ok("GET", "/v1/nodes")["items"]}
    assert keys.get(node), f"node {node} shows no enrolled key: {keys}"
    pub = Ed25519PublicKey.from_public_bytes(base64.b64decode(keys[node]))

    r = api.get(f"/v1/runs/{run_id}/events", params={"include": "signature", "limit": 1000})
    assert r.status_code == 200, r.text[:300]
    body = r.json()
    events, records = body["items"], body["records"]
    assert len(events) == n and n >= 3, (len(events), n)
    # events travel in signed records (RunEventBatch, issue 10): each record is
    # stored once, every event names the one it came in
    assert len(records) < len(events), "every event in a record of its own: not batched"
    for rec in records.values():
        assert rec["signer"] == f"node:{node}", rec
        value = base64.b64decode(rec["signed_value"])
        pub.verify(base64.b64decode(rec["signature"]), e2e.bus_signed_bytes(EVENTS, value))
        with pytest.raises(InvalidSignature):
            pub.verify(base64.b64decode(rec["signature"]), e2e.bus_signed_bytes(EVENTS, value + b"\0"))
    for ev in events:
        assert ev["signer"] == f"node:{node}", ev
        value = base64.b64decode(records[ev["record"]]["signed_value"])
        signed = {}
        for raw in e2e.run_events_of(value):
            env = pb_fields(pb_fields(raw)[1][0])
            assert env[2][0].decode() == run_id, "the signed record is about another run"
            signed[env[3][0]] = pb_fields(raw)[2][0].decode()
        assert signed.get(ev["seq"]) == ev["kind"], f"event {ev['seq']} is not in its signed record"
    # plain listings stay as they were
    plain = api.ok("GET", f"/v1/runs/{run_id}/events")["items"][0]
    assert "signature" not in plain
    r = api.get(f"/v1/runs/{run_id}/events", params={"include": "everything"})
    assert r.status_code == 400 and "include" in r.json().get("detail", r.text), r.text[:300]
