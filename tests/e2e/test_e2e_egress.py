"""Egress through the runner-agent's proxy and sealed secrets, end to end.

A sandbox reaches the outside only through the egress proxy the runner-agent
serves on 127.0.0.1:3128 inside its network namespace. Every upstream here is
an HTTP server of this test in the stack's test upstream network (a network
namespace, 198.18.0.0/15: conftest Upstream), reached through an approved
catalog egress profile (non-public addresses need one: docs/CONTRACTS.md); names
used are the test network's .test names (/etc/hosts) and the reserved
`.invalid` TLD (refused before any resolution). No packet leaves this machine.
The platform egress floor itself is tests/security/test_egress_floor.py.
"""

import hashlib
import ipaddress
import json
import os
import pathlib
import subprocess
import time
import uuid

import pytest

from conftest import TERMINAL, Upstream, all_events, command_spec, egress_profile, unique_name, wait_terminal

PY = "/usr/bin/python3"


@pytest.fixture
def upstreams():
    a, b = Upstream(0), Upstream(1)
    yield a, b
    a.close()
    b.close()


def egress_events(api, run_id, expect=1, timeout=30):
    """The stored history once it holds `expect` egress events and the run's
    terminal status: the stream shows the end before evidence has stored it
    all, and the callers read events that come late in a run (destroyed)."""
    deadline = time.monotonic() + timeout
    while True:
        evs = all_events(api, run_id)
        eg = [e for e in evs if e["kind"] == "egress"]
        ended = any(e["kind"] == "status" and e["data"].get("status") in TERMINAL for e in evs)
        if (len(eg) >= expect and ended) or time.monotonic() > deadline:
            return evs, eg
        time.sleep(0.5)


def run_probe(runs, endpoints, admin_token, probe, args, egress, secrets=None, timeout_s=90):
    spec = command_spec([PY, "-c", probe] + [str(a) for a in args], timeout_s=timeout_s)
    spec["egress"] = egress
    if secrets:
        spec["secrets"] = secrets
    run_id = runs.start(spec)
    res = wait_terminal(endpoints, admin_token, run_id, timeout=timeout_s + 60)
    return run_id, res


# Runs inside the sandbox: urllib honours http_proxy; CONNECT is spoken by hand.
PROBE_POLICY = r"""
import socket, sys, urllib.request, urllib.error
h1, p1, name2, p2 = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
spellings = sys.argv[5:]

def get(url):
    try:
        with urllib.request.urlopen(url, timeout=20) as r:
            print("GET", url, r.status, r.read().decode().strip())
    except urllib.error.HTTPError as e:
        print("GET", url, e.code, e.headers.get("X-Paddock-Egress"))
    except Exception as e:
        print("GET", url, "error", type(e).__name__, e)

def connect(target):
    s = socket.create_connection(("127.0.0.1", 3128), timeout=20)
    s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode())
    line = s.recv(4096).split(b"\r\n")[0].decode()
    print("CONNECT", target, line)
    s.close()

print("PROXY", __import__("os").environ.get("http_proxy"), repr(__import__("os").environ.get("NO_PROXY")))
get("http://%s:%d/allowed" % (h1, p1))
get("http://blocked.example.invalid/nope")
for t in spellings:
    connect("%s:%d" % (t, p2))
get("http://%s:%d/rebind" % (name2, p2))
print("PROBE done")
"""


def spellings_of(addr):
    """Other spellings of an IPv4 address that inet_aton() and browsers
    accept: one number, octal, hex, IPv4-mapped IPv6, a 2-part short form."""
    n = int(ipaddress.IPv4Address(addr))
    a = [int(x) for x in addr.split(".")]
    return [str(n), ".".join("0%o" % x for x in a), "0x%08x" % n, f"[::ffff:{addr}]",
            f"{a[0]}.{n & 0xffffff}"]


def test_egress_allow_deny_literals_rebinding(endpoints, admin_token, api, runs, upstreams):
    up1, up2 = upstreams
    # up1 through an approved profile; up2 only by name, inline: its address is
    # not public (198.18.0.0/15), and an inline rule never reaches such an address
    prof = egress_profile(api, [up1.hostport])
    spellings = spellings_of(up2.host)
    run_id, res = run_probe(runs, endpoints, admin_token, PROBE_POLICY,
                            [up1.host, up1.port, up2.name, up2.port] + spellings,
                            {"allow": [up2.nameport], "profiles": [prof], "unknown": "deny"})
    out = res.output()
    assert res.terminal == "succeeded", f"{res.terminal}: {out}"
    assert "PROXY http://127.0.0.1:3128 ''" in out, out
    assert f"GET http://{up1.hostport}/allowed 200 upstream says hello" in out, out
    assert "GET http://blocked.example.invalid/nope 403 deny" in out, out
    for spelling in spellings:
        assert f"CONNECT {spelling}:{up2.port} HTTP/1.1 403 Forbidden" in out, out
    assert f"GET http://{up2.nameport}/rebind 403 deny" in out, out
    assert up1.paths() == ["/allowed"], up1.requests
    assert up2.paths() == [], f"the second upstream was reached: {up2.requests}"

    _, eg = egress_events(api, run_id, expect=8)
    by = {}
    for e in eg:
        d = e["data"]
        by.setdefault((d["host"], d["port"]), []).append(d)
    allowed = by[(up1.host, up1.port)][0]
    assert allowed["decision"] == "allow" and allowed["method"] == "GET" and allowed["path"] == "/allowed"
    assert allowed["rule"] == up1.hostport and allowed["bytes_down"] > 0 and allowed["bytes_up"] > 0
    assert "duration_ms" in allowed and "sni" in allowed
    blocked = by[("blocked.example.invalid", 80)][0]
    assert blocked["decision"] == "deny" and blocked["rule"] == "unknown", blocked
    for host in spellings:
        d = by[(host.strip("[]"), up2.port)][0]
        assert d["decision"] == "deny" and d["method"] == "CONNECT" and "IP literal" in d["reason"], d
        assert "approved egress profile" in d["reason"], d
    rebind = by[(up2.name, up2.port)][0]
    assert rebind["decision"] == "deny" and "rebinding" in rebind["reason"], rebind
    assert f"reserved address {up2.host} is not in an IP rule of an approved egress profile" in rebind["reason"], rebind
    assert rebind["rule"] == up2.nameport, rebind


PROBE_SECRETS = r"""
import hashlib, os, socket, ssl, sys, urllib.error, urllib.request
p1, env_name, name1 = int(sys.argv[1]), sys.argv[2], sys.argv[3]

def tls_via_connect(target, sni):
    s = socket.create_connection(("127.0.0.1", 3128), timeout=20)
    s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode())
    print("CONNECT", target, s.recv(4096).split(b"\r\n")[0].decode())
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        ctx.wrap_socket(s, server_hostname=sni).close()
        print("TLS", sni, "handshake ok")
    except Exception as e:
        print("TLS", sni, "failed", type(e).__name__)

v = os.environ.get(env_name)
print("ENV", env_name, hashlib.sha256(v.encode()).hexdigest() if v else None)
print("ENVKEYS", ",".join(sorted(k for k in os.environ if k.startswith("E2E") or k.startswith("MY_"))))
req = urllib.request.Request("http://%s:%d/hdr" % (name1, p1), headers={"X-Api-Key": "from-the-agent"})
try:
    with urllib.request.urlopen(req, timeout=20) as r:
        print("GET hdr", r.status)
except urllib.error.HTTPError as e:
    print("GET hdr", e.code)
tls_via_connect("%s:%d" % (name1, p1), "evil.example")
tls_via_connect("%s:%d" % (name1, p1), name1)
print("PROBE done")
"""


def _grep_kafka(needles, bootstrap):
    """Every message of every topic from the beginning up to the end offsets
    seen at the start (heartbeats keep arriving), raw bytes."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "e2e-egress-" + uuid.uuid4().hex,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    found, count = [], 0
    try:
        md = c.list_topics(timeout=10)
        todo = {}
        for t, tm in md.topics.items():
            if t.startswith("__"):
                continue
            for p in tm.partitions:
                lo, hi = c.get_watermark_offsets(TopicPartition(t, p), timeout=10)
                if hi > lo:
                    todo[(t, p)] = hi
        c.assign([TopicPartition(t, p, 0) for (t, p) in todo])
        deadline = time.monotonic() + 120
        while todo and time.monotonic() < deadline:
            for m in c.consume(1000, timeout=1.0):
                if m.error():
                    continue
                count += 1
                blob = (m.value() or b"") + (m.key() or b"")
                for n in needles:
                    if n in blob:
                        found.append((m.topic(), n))
                key = (m.topic(), m.partition())
                if key in todo and m.offset() + 1 >= todo[key]:
                    del todo[key]
        assert not todo, f"could not read every Kafka partition to its end: {todo}"
    finally:
        c.close()
    return found, count


def test_secrets_env_header_and_sni(endpoints, admin_token, api, runs, team_id, upstreams):
    up1, _ = upstreams
    tag = uuid.uuid4().hex[:8].upper()
    env_secret = "envsecret-" + uuid.uuid4().hex
    hdr_secret = "hdrsecret-" + uuid.uuid4().hex
    env_name, hdr_name = f"E2E_ENV_{tag}", f"E2E_HDR_{tag}"
    api.ok("PUT", f"/v1/teams/{team_id}/secrets/{env_name}", json={"value": env_secret}, expect=(200, 201, 204))
    api.ok("PUT", f"/v1/teams/{team_id}/secrets/{hdr_name}", json={"value": hdr_secret}, expect=(200, 201, 204))

    prof = egress_profile(api, [up1.hostport])
    run_id, res = run_probe(
        runs, endpoints, admin_token, PROBE_SECRETS, [up1.port, "MY_TOKEN", up1.name],
        {"allow": [up1.nameport], "profiles": [prof], "unknown": "deny"},
        secrets=[{"name": env_name, "as": {"env": "MY_TOKEN"}},
                 {"name": hdr_name, "as": {"header": {"host": up1.name, "name": "X-Api-Key"}}}])
    out = res.output()
    assert res.terminal == "succeeded", f"{res.terminal}: {out}"
    assert f"ENV MY_TOKEN {hashlib.sha256(env_secret.encode()).hexdigest()}" in out, out
    assert "ENVKEYS MY_TOKEN\n" in out, f"the header secret must not be in the env: {out}"
    # the header's origin is https://localhost:443: plain HTTP to another port of that host is
    # refused, the secret is never sent in clear (its delivery over the proxy's own TLS:
    # tests/security/test_egress_bounds.py)
    assert "GET hdr 403" in out, out
    assert not [r for r in up1.requests if r["path"] == "/hdr"], up1.requests
    # domain fronting: SNI differs from the CONNECT host
    assert "TLS evil.example failed" in out, out

    evs, eg = egress_events(api, run_id, expect=3)
    fronting = [e["data"] for e in eg if e["data"].get("sni") == "evil.example"]
    assert fronting and fronting[0]["decision"] == "deny" and "domain fronting" in fronting[0]["reason"], eg
    good_sni = [e["data"] for e in eg if e["data"].get("sni") == up1.name]
    assert good_sni and good_sni[0]["decision"] == "allow", eg
    prov = [e for e in evs if e["kind"] == "status" and e["data"].get("status") == "provisioning"]
    assert prov and prov[0]["data"].get("public_key"), prov
    destroyed = [e for e in evs if e["kind"] == "destroyed"]
    assert destroyed and "keys" in destroyed[0]["data"]["verified_gone"], destroyed

    # the values are nowhere in clear
    needles = [env_secret.encode(), hdr_secret.encode()]
    for e in evs:
        blob = json.dumps(e).encode()
        assert not any(n in blob for n in needles), e
    state = pathlib.Path(os.environ["PADDOCK_STATE_DIR"])
    for f in (state / "logs").rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert not any(n in data for n in needles), f"secret in clear in {f}"
    runner_dir = pathlib.Path(os.environ["PADDOCK_RUNNER_STATE_DIR"])
    for f in runner_dir.rglob("*"):
        if f.is_file() and not f.is_symlink() and "rootfs" not in f.parts:
            try:
                data = f.read_bytes()
            except OSError:
                continue
            assert not any(n in data for n in needles), f"secret in clear in {f}"

    dsn = os.environ["PADDOCK_PG_DSN"]
    dump = subprocess.run(["pg_dump", "--data-only", dsn], capture_output=True, timeout=120)
    assert dump.returncode == 0, dump.stderr[:500]
    assert len(dump.stdout) > 1000
    assert not any(n in dump.stdout for n in needles), "secret in clear in PostgreSQL"

    import boto3
    s3 = boto3.client("s3", endpoint_url=os.environ["PADDOCK_S3_ENDPOINT"],
                      aws_access_key_id=os.environ["PADDOCK_S3_ACCESS_KEY"],
                      aws_secret_access_key=os.environ["PADDOCK_S3_SECRET_KEY"],
                      region_name=os.environ.get("PADDOCK_S3_REGION", "us-east-1"))
    bucket = os.environ["PADDOCK_S3_BUCKET"]
    n_obj = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            n_obj += 1
            assert not any(n in body for n in needles), f"secret in clear in s3://{bucket}/{o['Key']}"

    found, count = _grep_kafka(needles, os.environ["PADDOCK_KAFKA_BOOTSTRAP"])
    assert count > 0
    assert not found, f"secret in clear in Kafka: {found}"


PROBE_ASK = r"""
import sys, time, urllib.request, urllib.error
p1, name1 = int(sys.argv[1]), sys.argv[2]
t0 = time.monotonic()
try:
    with urllib.request.urlopen("http://%s:%d/asked" % (name1, p1), timeout=120) as r:
        print("GET asked", r.status, "after %.1f s" % (time.monotonic() - t0))
except urllib.error.HTTPError as e:
    print("GET asked", e.code)
with urllib.request.urlopen("http://%s:%d/again" % (name1, p1), timeout=20) as r:
    print("GET again", r.status)
print("PROBE done")
"""


def test_egress_ask_waits_for_approval(endpoints, admin_token, api, runs, upstreams, second_approver):
    up1, _ = upstreams
    # the name matches no rule, so it is asked for; its address is in a
    # profile's range, so an approval can grant it
    spec = command_spec([PY, "-c", PROBE_ASK, str(up1.port), up1.name], timeout_s=120)
    spec["egress"] = {"profiles": [egress_profile(api, [up1.hostport])], "unknown": "ask"}
    run_id = runs.start(spec)

    deadline = time.monotonic() + 60
    req = None
    while time.monotonic() < deadline and not req:
        for e in all_events(api, run_id):
            if e["kind"] == "approval_requested":
                req = e["data"]
        time.sleep(0.5)
    assert req, "no approval_requested event"
    assert req["kind"] == "egress" and req["host"] == up1.name and req["port"] == up1.port, req
    assert req.get("deadline") and req.get("approval_id")
    time.sleep(1.0)
    assert "/asked" not in up1.paths(), "the request went through before the approval"
    # four eyes: the launcher may not decide, another approver does
    r = api.post(f"/v1/approvals/{req['approval_id']}/decision", json={"decision": "approve"})
    assert r.status_code == 403 and r.json()["code"] == "forbidden" and "four eyes" in r.json()["detail"], r.text
    second_approver[0].ok("POST", f"/v1/approvals/{req['approval_id']}/decision", json={"decision": "approve"},
                          expect=(200, 201, 202, 204))

    res = wait_terminal(endpoints, admin_token, run_id, timeout=150)
    out = res.output()
    assert res.terminal == "succeeded", f"{res.terminal}: {out}"
    assert "GET asked 200" in out and "GET again 200" in out, out
    assert up1.paths() == ["/asked", "/again"], up1.requests
    evs, eg = egress_events(api, run_id, expect=2)
    decided = [e["data"] for e in evs if e["kind"] == "approval_decided"]
    assert decided and decided[0]["decision"] == "approve" and decided[0]["approval_id"] == req["approval_id"], decided
    assert [e["data"]["decision"] for e in eg] == ["allow", "allow"], eg
    assert all(e["data"]["rule"] == f"approval:{req['approval_id']}" for e in eg), eg
    # only one approval for the destination
    assert len([e for e in evs if e["kind"] == "approval_requested"]) == 1
