"""Policy at the api (issue 12 §1 and §4; docs/CONTRACTS.md "Policy engine",
"The approval queue"): spec.policy accepted and checked by the engine, the
catalog kind policy-packs, the effective policy and the run snapshot's
policy_json, the approval queue's what/context/run_summary and lifecycle
(cancelled when the run ends), the paddock.approvals notices (signed by the
api) and a run's policy counters.

The approvals here are real: a command run in the stack asks its egress proxy
for a name no rule allows under `egress.unknown: ask` (an upstream of the
stack's test network, as tests/e2e/test_e2e_egress.py does). No packet leaves
this machine.
"""

import base64
import json
import time
import uuid

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition

from conftest import (BUS_DOMAIN, Upstream, all_events, command_spec, egress_profile, pb_fields, unique_name,
                      wait_for, wait_terminal)

PY = "/usr/bin/python3"


# ---------------------------------------------------------------- helpers

def _spec(policy=None, **extra):
    spec = command_spec(["/bin/true"])
    if policy is not None:
        spec["policy"] = policy
    spec.update(extra)
    return spec


def _create(api, team_id, spec):
    return api.post("/v1/sandboxes", json={"name": unique_name("pol"), "team": team_id, "spec": spec})


def _pack(api, rules, approve=True, description=None):
    body = {"rules": rules}
    if description:
        body["description"] = description
    item = api.ok("POST", "/v1/catalog/policy-packs", json={"name": unique_name("pack"), "body": body},
                  expect=(201,))
    if approve:
        api.ok("POST", f"/v1/catalog/policy-packs/{item['id']}/approve",
               json={"content_sha256": item["content_sha256"]}, expect=(200,))
    return item


@pytest.fixture(scope="module")
def pg(endpoints):
    with psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True) as conn:
        yield conn


class Tail:
    """Reads a topic from its end at creation: what was produced after."""

    def __init__(self, bootstrap, topic):
        self.topic = topic
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": "e2e-policy-" + uuid.uuid4().hex,
                           "enable.auto.commit": False})
        md = self.c.list_topics(topic, timeout=10).topics[topic]
        tps = []
        for p in md.partitions:
            _, high = self.c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            tps.append(TopicPartition(topic, p, high))
        self.c.assign(tps)
        self.msgs = []   # (key, value, headers)

    def until(self, done, timeout=60):
        deadline = time.monotonic() + timeout
        while not done(self.msgs):
            assert time.monotonic() < deadline, f"not seen on {self.topic} in {timeout}s; have {len(self.msgs)}"
            m = self.c.poll(0.5)
            if m is None or m.error():
                continue
            self.msgs.append(((m.key() or b"").decode(), m.value() or b"", dict(m.headers() or [])))
        return self.msgs

    def close(self):
        self.c.close()


def notice_of(value):
    """An ApprovalNotice (proto/paddock/v1/approvals.proto) as a dict."""
    f = pb_fields(value)
    s = lambda n: f.get(n, [b""])[0].decode()  # noqa: E731
    env = pb_fields(f[1][0])
    return {"message_id": env[7][0].decode(), "tenant_id": env[1][0].decode(), "run_id_env": env[2][0].decode(),
            "approval_id": s(2), "run_id": s(3), "team_id": s(4), "kind": s(5), "what": json.loads(s(6) or "null"),
            "rule": s(7), "deadline": s(8), "status": s(9), "decided_by": s(10), "comment": s(11)}


def verify_api_signature(endpoints, topic, value, headers):
    """The record is signed by the api's bus key (docs/CONTRACTS.md "Signed
    messages on the bus"): checked against the trusted-keys file."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    assert headers.get("paddock-signer") == b"api", headers.keys()
    keys = {}
    with open(endpoints.need("PADDOCK_TRUSTED_KEYS")) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2 and not line.startswith("#"):
                keys[parts[0]] = parts[1]
    pub = Ed25519PublicKey.from_public_bytes(base64.b64decode(keys["api"]))
    pub.verify(headers["paddock-sig"], BUS_DOMAIN + topic.encode() + b"\0" + value)  # raises if bad


# ---------------------------------------------------------------- spec.policy validation

BAD_POLICIES = [
    ({"rules": [{"match": {"tool": "Bash"}, "action": "maybe"}]}, "spec.policy.rules[0].action"),
    ({"rules": [{"match": {"tool": "Bash"}, "action": "allow"}, {"match": {}, "action": "deny"}]},
     "spec.policy.rules[1].match"),
    ({"rules": [{"match": {"colour": "red"}, "action": "deny"}]}, "spec.policy.rules[0].match.colour"),
    ({"rules": [{"match": {"path": "a[b"}, "action": "deny"}]}, "spec.policy.rules[0].match.path"),
    ({"rules": [{"match": {"command": ""}, "action": "deny"}]}, "spec.policy.rules[0].match.command"),
    ({"rules": [{"match": {"tool": "Bash"}, "action": "deny", "source": "x"}]}, "spec.policy.rules[0].source"),
    ({"rules": "deny everything"}, "spec.policy.rules"),
    ({"rules": [], "ask_timeout_s": 0}, "spec.policy.ask_timeout_s"),
    ({"rules": [], "ask_timeout_s": 86401}, "spec.policy.ask_timeout_s"),
    ({"rules": [], "packs": "p"}, "spec.policy.packs"),
    ({"rules": [], "colour": 1}, "spec.policy.colour"),
    ({}, "spec.policy.rules"),
]


@pytest.mark.parametrize("policy,field", BAD_POLICIES)
def test_bad_policy_is_400_naming_the_field(api, team_id, policy, field):
    r = _create(api, team_id, _spec(policy))
    assert r.status_code == 400, r.text
    assert field in r.json()["detail"], r.json()
    assert r.json()["code"] in ("invalid_field", "unknown_field", "missing_field"), r.json()


def test_policy_accepted_and_packs_resolved(api, team_id, runs):
    # accepted at create, draft and publish (no longer "unsupported")
    rules = [{"match": {"tool": "Bash", "command": "git push*"}, "action": "ask"},
             {"match": {"path": "**/.env"}, "action": "deny"},
             {"match": {"host": "*.example.com"}, "action": "allow"}]
    sb = runs.create_sandbox(_spec({"rules": rules, "ask_timeout_s": 120}))
    v = runs.publish(sb)
    pol = api.ok("GET", f"/v1/sandboxes/{sb}/versions/{v}/effective-policy", expect=(200,))
    assert pol["policy"] == {"rules": [dict(r, source=f"spec.policy.rules[{i}]") for i, r in enumerate(rules)],
                             "packs": [], "ask_timeout_s": 120}, pol["policy"]
    # one deadline for every ask of the run, egress included
    assert pol["egress"]["ask_timeout_s"] == 120

    # unknown and unapproved packs are refused, naming the field; nothing stored
    r = _create(api, team_id, _spec({"rules": [], "packs": [unique_name("nosuch")]}))
    assert r.status_code == 400 and "spec.policy.packs[0]" in r.json()["detail"], r.text
    assert "no policy-packs catalog item" in r.json()["detail"], r.text
    draft = _pack(api, [{"match": {"command": "rm -rf*"}, "action": "deny"}], approve=False)
    r = _create(api, team_id, _spec({"rules": [], "packs": [draft["id"]]}))
    assert r.status_code == 400 and "spec.policy.packs[0]" in r.json()["detail"], r.text
    assert "is not approved" in r.json()["detail"], r.text


def test_effective_policy_order_and_sources(api, runs):
    p1 = _pack(api, [{"match": {"command": "rm -rf*"}, "action": "deny"},
                     {"match": {"tool": "Write"}, "action": "ask"}], description="no destruction")
    p2 = _pack(api, [{"match": {"mcp_server": "github", "mcp_tool": "merge*"}, "action": "ask"}])
    own = [{"match": {"tool": "Read"}, "action": "allow"}]
    # packs by id and by name, in the listed order (p2 first)
    sb = runs.create_sandbox(_spec({"rules": own, "packs": [p2["name"], p1["id"]]}))
    v = runs.publish(sb)
    pol = api.ok("GET", f"/v1/sandboxes/{sb}/versions/{v}/effective-policy", expect=(200,))["policy"]
    assert [r["source"] for r in pol["rules"]] == [
        "spec.policy.rules[0]", f"pack:{p2['id']}.rules[0]", f"pack:{p1['id']}.rules[0]",
        f"pack:{p1['id']}.rules[1]"], pol
    assert pol["rules"][1]["match"] == {"mcp_server": "github", "mcp_tool": "merge*"}
    assert pol["rules"][2]["action"] == "deny"
    assert pol["packs"] == [{"id": p2["id"], "name": p2["name"]}, {"id": p1["id"], "name": p1["name"]}]
    assert pol["ask_timeout_s"] == 300  # the default

    # a pack changed after publishing goes back to draft: the policy of that
    # version no longer resolves (409), until it is approved again
    api.ok("PATCH", f"/v1/catalog/policy-packs/{p1['id']}",
           json={"body": {"rules": [{"match": {"command": "rm *"}, "action": "deny"}]}}, expect=(200,))
    r = api.get(f"/v1/sandboxes/{sb}/versions/{v}/effective-policy")
    assert r.status_code == 409 and "spec.policy.packs[1]" in r.json()["detail"], r.text


def test_policy_packs_catalog(api, endpoints, team_id, second_approver):
    # body checked by the engine, naming body.rules[i]...
    for body, field in [({"rules": [{"match": {"tool": "Bash"}, "action": "nope"}]}, "body.rules[0].action"),
                        ({"rules": [{"match": {"shell": "x"}, "action": "deny"}]}, "body.rules[0].match.shell"),
                        ({"rules": []}, "body.rules"),
                        ({"description": "x"}, "body.rules"),
                        ({"rules": [{"match": {"tool": "X"}, "action": "deny"}], "extra": 1}, "body.extra")]:
        r = api.post("/v1/catalog/policy-packs", json={"name": unique_name("bad"), "body": body})
        assert r.status_code == 400 and field in r.json()["detail"], (body, r.text)
    item = _pack(api, [{"match": {"path": "**/.env"}, "action": "deny"}], approve=False)
    assert item["kind"] == "policy-packs" and item["state"] == "draft"
    # approved by security_admin (or tenant_admin) only: an approver may not
    r = second_approver[0].post(f"/v1/catalog/policy-packs/{item['id']}/approve",
                                json={"content_sha256": item["content_sha256"]})
    assert r.status_code == 403, r.text
    # the approval names the content it reviewed: a changed item is 409
    changed = api.ok("PATCH", f"/v1/catalog/policy-packs/{item['id']}",
                     json={"body": {"rules": [{"match": {"path": "**/.env*"}, "action": "deny"}]}}, expect=(200,))
    assert changed["content_sha256"] != item["content_sha256"]
    r = api.post(f"/v1/catalog/policy-packs/{item['id']}/approve", json={"content_sha256": item["content_sha256"]})
    assert r.status_code == 409, r.text
    ok = api.ok("POST", f"/v1/catalog/policy-packs/{item['id']}/approve",
                json={"content_sha256": changed["content_sha256"]}, expect=(200,))
    assert ok["state"] == "approved"
    listed = api.ok("GET", "/v1/catalog/policy-packs", expect=(200,))["items"]
    assert item["id"] in [i["id"] for i in listed]


def test_cli_catalog_policy_packs(api, endpoints, tmp_path):
    from cli_support import Cli
    cli = Cli(tmp_path / "cfg", endpoints.api)
    body = tmp_path / "pack.json"
    body.write_text(json.dumps({"rules": [{"match": {"command": "curl*"}, "action": "ask"}]}))
    name = unique_name("clipack")
    item_id = cli.ok("catalog", "create", "policy-pack", "--file", body, "--name", name,
                     env={"PADDOCK_TOKEN": api.token}).strip()
    item = cli.json("catalog", "show", "policy-packs", item_id, env={"PADDOCK_TOKEN": api.token})
    assert item["kind"] == "policy-packs" and item["name"] == name and item["body"]["rules"][0]["action"] == "ask"


# ---------------------------------------------------------------- snapshot

def test_snapshot_policy_json(api, runs, endpoints, admin_token):
    """The run's SandboxSnapshot.policy_json is the effective rules (policy_resolve):
    read back from the RunRequested the api queued for the scheduler."""
    tail = Tail(endpoints.need("PADDOCK_KAFKA_BOOTSTRAP"), "paddock.runs.requested")
    try:
        pack = _pack(api, [{"match": {"command": "git push*"}, "action": "ask"}])
        spec = _spec({"rules": [{"match": {"path": "**/.env"}, "action": "deny"}], "packs": [pack["id"]],
                      "ask_timeout_s": 45})
        run_id = runs.start(spec)
        msgs = tail.until(lambda ms: any(k == run_id for k, _, _ in ms))
        value = [v for k, v, _ in msgs if k == run_id][0]
        snap = pb_fields(pb_fields(value)[4][0])  # RunRequested.sandbox
        pj = json.loads(snap[21][0])
        assert pj == {"rules": [{"match": {"path": "**/.env"}, "action": "deny", "source": "spec.policy.rules[0]"},
                                {"match": {"command": "git push*"}, "action": "ask",
                                 "source": f"pack:{pack['id']}.rules[0]"}],
                      "ask_timeout_s": 45}, pj
        res = wait_terminal(endpoints, admin_token, run_id, timeout=120)
        # the runner accepted it (a policy_json it cannot read fails the run)
        assert res.terminal == "succeeded", res.output()
    finally:
        tail.close()
