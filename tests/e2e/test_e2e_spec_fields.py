"""Spec fields of the execution plane: egress, secrets and limits are validated
field by field (the problem's detail names the JSON path), and a valid spec
reaches the run's snapshot on paddock.runs.requested exactly as CONTRACTS.md
"Egress rules" says (rules in order, normalized, unknown/ask_timeout_s)."""

import json
import struct
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException

from conftest import command_spec, egress_profile, unique_name
from conftest import pb_fields


def _spec(**fields):
    s = command_spec(["/bin/true"], timeout_s=30)
    for k, v in fields.items():
        if k == "limits":
            s["limits"].update(v)
        else:
            s[k] = v
    return s


def _env(name, var):
    return {"name": name, "as": {"env": var}}


def _hdr(name, host, header):
    return {"name": name, "as": {"header": {"host": host, "name": header}}}


BAD = [
    ("egress-profiles-unknown", {"egress": {"profiles": ["p1"]}}, "invalid_field", "spec.egress.profiles[0]"),
    ("egress-unknown-field", {"egress": {"bogus": 1}}, "unknown_field", "spec.egress.bogus"),
    ("egress-not-object", {"egress": ["a"]}, "invalid_field", "spec.egress"),
    ("egress-ip-shortform", {"egress": {"allow": ["example.com", "127.1"]}}, "invalid_field", "spec.egress.allow[1]"),
    ("egress-hex-ip", {"egress": {"allow": ["0x7f.0.0.1"]}}, "invalid_field", "spec.egress.allow[0]"),
    ("egress-host-bits", {"egress": {"allow": ["10.1.2.3/8"]}}, "invalid_field", "spec.egress.allow[0]"),
    ("egress-zero-prefix", {"egress": {"allow": ["0.0.0.0/0"]}}, "invalid_field", "spec.egress.allow[0]"),
    ("egress-port-zero", {"egress": {"allow": ["example.com:0"]}}, "invalid_field", "spec.egress.allow[0]"),
    ("egress-port-big", {"egress": {"allow": ["[::1]:65536"]}}, "invalid_field", "spec.egress.allow[0]"),
    ("egress-broad-wildcard", {"egress": {"allow": ["*.com"]}}, "invalid_field", "spec.egress.allow[0]"),
    ("egress-not-string", {"egress": {"allow": [443]}}, "invalid_field", "spec.egress.allow[0]"),
    ("egress-unknown-allow", {"egress": {"unknown": "allow"}}, "invalid_field", "spec.egress.unknown"),
    ("secret-name", {"secrets": [_env("lower", "X")]}, "invalid_field", "spec.secrets[0].name"),
    ("secret-missing-as", {"secrets": [{"name": "A"}]}, "missing_field", "spec.secrets[0].as"),
    ("secret-empty-as", {"secrets": [{"name": "A", "as": {}}]}, "invalid_field", "spec.secrets[0].as"),
    ("secret-both", {"secrets": [{"name": "A", "as": {"env": "X", "header": {}}}]}, "invalid_field",
     "spec.secrets[0].as"),
    ("secret-env-name", {"secrets": [_env("A", "1X")]}, "invalid_field", "spec.secrets[0].as.env"),
    ("secret-env-reserved", {"secrets": [_env("A", "LD_PRELOAD")]}, "invalid_field", "spec.secrets[0].as.env"),
    ("secret-env-proxy", {"secrets": [_env("A", "https_proxy")]}, "invalid_field", "spec.secrets[0].as.env"),
    ("secret-header-name", {"secrets": [_hdr("A", "api.example.com", "x api key")]}, "invalid_field",
     "spec.secrets[0].as.header.name"),
    ("secret-header-framing", {"secrets": [_hdr("A", "api.example.com", "Content-Length")]}, "invalid_field",
     "spec.secrets[0].as.header.name"),
    ("secret-header-wildcard", {"secrets": [_hdr("A", "*.example.com", "x-key")]}, "invalid_field",
     "spec.secrets[0].as.header.host"),
    ("secret-header-ip", {"secrets": [_hdr("A", "127.0.0.1", "x-key")]}, "invalid_field",
     "spec.secrets[0].as.header.host"),
    ("secret-header-missing-origin", {"secrets": [{"name": "A", "as": {"header": {"name": "x-key"}}}]},
     "missing_field", "spec.secrets[0].as.header.origin"),
    ("secret-header-origin-http", {"secrets": [{"name": "A", "as": {"header": {"origin": "http://api.example.com",
                                                                               "name": "x-key"}}}]},
     "invalid_field", "spec.secrets[0].as.header.origin"),
    ("secret-dup-origin-host", {"secrets": [_hdr("A", "api.example.com", "X-Key"),
                                            {"name": "B", "as": {"header": {"origin": "https://api.example.com:443",
                                                                            "name": "x-key"}}}]},
     "invalid_field", "spec.secrets[1].as"),
    ("secret-dup-env", {"secrets": [_env("A", "TOKEN"), _env("B", "TOKEN")]}, "invalid_field",
     "spec.secrets[1].as"),
    ("secret-dup-header", {"secrets": [_hdr("A", "api.example.com", "X-Key"), _hdr("B", "API.example.com", "x-key")]},
     "invalid_field", "spec.secrets[1].as"),
    ("secret-unknown-field", {"secrets": [{"name": "A", "as": {"env": "X"}, "x": 1}]}, "unknown_field",
     "spec.secrets[0].x"),
    ("limits-cpus-small", {"limits": {"cpus": 0.05}}, "invalid_field", "spec.limits.cpus"),
    ("limits-cpus-big", {"limits": {"cpus": 65}}, "invalid_field", "spec.limits.cpus"),
    ("limits-memory", {"limits": {"memory_mb": 32}}, "invalid_field", "spec.limits.memory_mb"),
    ("limits-disk", {"limits": {"disk_mb": "lots"}}, "invalid_field", "spec.limits.disk_mb"),
    ("limits-pids", {"limits": {"pids": 100000}}, "invalid_field", "spec.limits.pids"),
    ("limits-pids-float", {"limits": {"pids": 64.5}}, "invalid_field", "spec.limits.pids"),
    # documented fields runs do not enforce yet: validated in full, then
    # refused as unsupported (never silently accepted)
    # max_tokens, max_cost_usd, agent.model and the agent CLIs are enforced
    # now (issue 11; accepted cases: test_e2e_models.py)
    ("limits-max-tokens-zero", {"limits": {"max_tokens": 0}}, "invalid_field", "spec.limits.max_tokens"),
    ("limits-max-cost-negative", {"limits": {"max_cost_usd": -1}}, "invalid_field", "spec.limits.max_cost_usd"),
    ("limits-max-cost-string", {"limits": {"max_cost_usd": "25"}}, "invalid_field", "spec.limits.max_cost_usd"),
    ("agent-model", {"agent": {"type": "command", "command": ["true"], "model": "claude-sonnet-4"}}, "invalid_field",
     "spec.agent.model"),
    ("agent-model-bad", {"agent": {"type": "command", "command": ["true"], "model": "a b"}}, "invalid_field",
     "spec.agent.model"),
    ("agent-claude-code", {"agent": {"type": "claude-code"}}, "missing_field", "spec.models is required"),
    ("agent-codex", {"agent": {"type": "codex", "model": "gpt-5"}}, "missing_field", "spec.models is required"),
    ("agent-type-bad", {"agent": {"type": "cursor", "command": ["true"]}}, "invalid_field", "spec.agent.type"),
    ("connectors-unknown", {"connectors": ["no-such-connector"]}, "invalid_field", "spec.connectors[0]"),
    ("connectors-not-array", {"connectors": "github-mcp"}, "invalid_field", "spec.connectors"),
    ("connectors-dup", {"connectors": ["a", "a"]}, "invalid_field", "spec.connectors[1]"),
    # spec.policy is enforced now (issue 12): its rules are checked by the
    # policy engine, whose error names the field (accepted cases:
    # test_e2e_policy_api.py); paths may be absolute (outside the workspace)
    ("policy-action-bad", {"policy": {"rules": [{"match": {"tool": "Bash"}, "action": "maybe"}]}}, "invalid_field",
     "spec.policy.rules[0].action"),
    ("policy-action-missing", {"policy": {"rules": [{"match": {"tool": "Bash"}}]}}, "invalid_field",
     "spec.policy.rules[0].action"),
    ("policy-match-empty", {"policy": {"rules": [{"match": {}, "action": "deny"}]}}, "invalid_field",
     "spec.policy.rules[0].match"),
    ("policy-match-unknown", {"policy": {"rules": [{"match": {"hostname": "x"}, "action": "deny"}]}},
     "invalid_field", "spec.policy.rules[0].match.hostname"),
    ("policy-glob-unclosed", {"policy": {"rules": [{"match": {"command": "rm [a"}, "action": "deny"}]}},
     "invalid_field", "spec.policy.rules[0].match.command"),
    ("policy-rule-unknown", {"policy": {"rules": [{"match": {"tool": "Bash"}, "action": "deny", "why": "x"}]}},
     "invalid_field", "spec.policy.rules[0].why"),
    ("policy-rules-missing", {"policy": {}}, "missing_field", "spec.policy.rules"),
    ("policy-rules-not-array", {"policy": {"rules": {}}}, "invalid_field", "spec.policy.rules"),
    ("policy-ask-timeout", {"policy": {"rules": [], "ask_timeout_s": 1.5}}, "invalid_field",
     "spec.policy.ask_timeout_s"),
    ("policy-pack-unknown", {"policy": {"rules": [], "packs": ["no-such-pack"]}}, "invalid_field",
     "spec.policy.packs[0]"),
    ("artifacts", {"artifacts": {"paths": ["dist/**"]}}, "unsupported", "spec.artifacts"),
    ("artifacts-absolute", {"artifacts": {"paths": ["/dist"]}}, "invalid_field", "spec.artifacts.paths[0]"),
    ("artifacts-unknown", {"artifacts": {"paths": [], "keep": True}}, "unknown_field", "spec.artifacts.keep"),
    ("retention-zero", {"retention_days": 0}, "invalid_field", "spec.retention_days"),
    ("retention-float", {"retention_days": 1.5}, "invalid_field", "spec.retention_days"),
    ("retention-huge", {"retention_days": 100000}, "invalid_field", "spec.retention_days"),
    # a real error elsewhere is reported before a valid unsupported field
    ("unsupported-after-error", {"artifacts": {"paths": ["dist/**"]}, "limits": {"pids": 1}}, "invalid_field",
     "spec.limits.pids"),
]


@pytest.mark.parametrize("case", [c[0] for c in BAD])
def test_spec_field_refused(api, team_id, case):
    _, fields, code, path = next(c for c in BAD if c[0] == case)
    r = api.post("/v1/sandboxes", json={"name": unique_name("e2e-invalid"), "team": team_id, "spec": _spec(**fields)})
    assert r.status_code == 400, r.text[:300]
    p = r.json()
    assert p["code"] == code, p
    assert path in p["detail"], f"detail {p['detail']!r} does not name {path!r}"


def test_spec_connectors_are_for_agent_clis(api, team_id):
    """Connectors are the MCP servers of an agent CLI (docs/CONTRACTS.md "MCP
    connectors"): one that is not approved is refused as such; a command agent
    naming an approved one is refused naming spec.connectors (test_e2e_mcp
    covers the CLIs)."""
    name = unique_name("mcp").replace("-", "_")
    item = api.ok("POST", "/v1/catalog/connectors",
                  json={"name": name, "body": {"transport": "stdio", "command": ["mcp-server"]}}, expect=(201,))
    spec = _spec(connectors=[name])
    r = api.post("/v1/sandboxes", json={"name": unique_name("e2e-mcp"), "team": team_id, "spec": spec})
    assert r.status_code == 400 and "spec.connectors[0]" in r.json()["detail"] and \
        "not approved" in r.json()["detail"], r.text
    api.ok("POST", f"/v1/catalog/connectors/{item['id']}/approve", json={"content_sha256": item["content_sha256"]},
           expect=(200,))
    r = api.post("/v1/sandboxes", json={"name": unique_name("e2e-mcp"), "team": team_id, "spec": spec})
    assert r.status_code == 400 and r.json()["code"] == "invalid_field" and "spec.connectors" in r.json()["detail"] and \
        "agent type command" in r.json()["detail"], r.text


def test_spec_fields_reach_snapshot(endpoints, api, runs, team_id):
    names = ["E2E_SNAP_" + uuid.uuid4().hex[:8].upper() for _ in range(2)]
    for n in names:
        api.ok("PUT", f"/v1/teams/{team_id}/secrets/{n}", json={"value": "v-" + n}, expect=(201,))
    # inline rules name public addresses only; private ranges come from an approved profile
    allow = ["api.example.com", "*.Example.ORG:8443", "93.184.216.34:8080", "[2606:2800:220:1::1]:8080",
             "8.8.0.0/16", "2606:2800::/32", "[2606:4700::/32]:5432", "1.1.1.1"]
    prof = egress_profile(api, ["10.0.0.0/8", "[fd00::/16]:5432"])
    spec = _spec(egress={"allow": allow, "profiles": [prof], "unknown": "ask"},
                 secrets=[_env(names[0], "MY_TOKEN"), _hdr(names[1], "api.example.com", "x-api-key")],
                 limits={"cpus": 0.5, "memory_mb": 256, "disk_mb": 64, "pids": 64})
    consumer = Consumer({"bootstrap.servers": endpoints.need("PADDOCK_KAFKA_BOOTSTRAP"),
                         "group.id": f"paddock-e2e-snap-{uuid.uuid4()}", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "session.timeout.ms": 6000})
    try:
        consumer.subscribe(["paddock.runs.requested"])
        run_id = runs.start(spec)
        snap = None
        deadline = time.monotonic() + 30
        while snap is None and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                if msg is not None and msg.error().fatal():
                    raise KafkaException(msg.error())
                continue
            if (msg.key() or b"").decode() == run_id:
                snap = pb_fields(pb_fields(msg.value())[4][0])
    finally:
        consumer.close()
    assert snap, f"no RunRequested for {run_id}"
    lim = pb_fields(snap[6][0])
    assert lim[1][0] == 30 and struct.unpack("<d", lim[2][0])[0] == 0.5
    assert (lim[3][0], lim[4][0], lim[5][0]) == (256, 64, 64)
    eg = pb_fields(snap[10][0])
    rules = [(pb_fields(r)[1][0].decode(), pb_fields(r).get(2, [0])[0], pb_fields(r)[3][0].decode())
             for r in eg[1]]
    assert rules == [("api.example.com", 0, "allow"), ("*.example.org", 8443, "allow"),
                     ("93.184.216.34", 8080, "allow"), ("2606:2800:220:1::1", 8080, "allow"),
                     ("8.8.0.0/16", 0, "allow"), ("2606:2800::/32", 0, "allow"), ("2606:4700::/32", 5432, "allow"),
                     ("1.1.1.1", 0, "allow"), ("10.0.0.0/8", 0, f"profile:{prof}"),
                     ("fd00::/16", 5432, f"profile:{prof}")]
    assert eg[2][0] == b"ask" and eg[3][0] == 300
    refs = [{k: v[0].decode() if isinstance(v[0], bytes) else v[0] for k, v in pb_fields(s).items()}
            for s in snap[11]]
    # a header binding carries its https origin: host + port (the older host form is port 443)
    assert refs == [{1: names[0], 2: "MY_TOKEN"}, {1: names[1], 3: "api.example.com", 4: "x-api-key", 5: 443}]
    # the published spec is kept verbatim next to the resolved fields
    assert json.loads(snap[8][0])["egress"]["allow"] == allow


def test_spec_default_egress(endpoints, api, runs):
    """Without egress in the spec the snapshot still carries a policy: deny."""
    consumer = Consumer({"bootstrap.servers": endpoints.need("PADDOCK_KAFKA_BOOTSTRAP"),
                         "group.id": f"paddock-e2e-snap-{uuid.uuid4()}", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "session.timeout.ms": 6000})
    try:
        consumer.subscribe(["paddock.runs.requested"])
        run_id = runs.start(_spec())
        snap, deadline = None, time.monotonic() + 30
        while snap is None and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error() and (msg.key() or b"").decode() == run_id:
                snap = pb_fields(pb_fields(msg.value())[4][0])
    finally:
        consumer.close()
    assert snap, f"no RunRequested for {run_id}"
    eg = pb_fields(snap[10][0])
    assert 1 not in eg and eg[2][0] == b"deny" and eg[3][0] == 300
