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

import psycopg
import pytest

from conftest import (BUS_DOMAIN, Tail, Upstream, all_events, command_spec, egress_profile, pb_fields, unique_name,
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


# ---------------------------------------------------------------- the approval queue, with a real runner

PROBE_ASK = r"""
import sys, time, urllib.request, urllib.error
port, name = int(sys.argv[1]), sys.argv[2]
print("PROBE start", flush=True)
try:
    with urllib.request.urlopen("http://%s:%d/asked" % (name, port), timeout=150) as r:
        print("GET asked", r.status, flush=True)
except urllib.error.HTTPError as e:
    print("GET asked", e.code, flush=True)
"""


@pytest.fixture
def upstream():
    up = Upstream(0)
    yield up
    up.close()


def _ask_run(api, runs, upstream, tail, ask_timeout_s=200):
    """A run whose egress proxy asks for the upstream's name (egress unknown:
    ask; its address allowed by a profile so an approval can grant it).
    Returns (run id, the pending approval as GET /v1/approvals lists it)."""
    spec = command_spec([PY, "-c", PROBE_ASK, str(upstream.port), upstream.name], timeout_s=240)
    spec["egress"] = {"profiles": [egress_profile(api, [upstream.hostport])], "unknown": "ask"}
    spec["policy"] = {"rules": [], "ask_timeout_s": ask_timeout_s}
    run_id = runs.start(spec)

    def pending():
        items = api.ok("GET", "/v1/approvals?status=pending", expect=(200,))["items"]
        return [a for a in items if a["run"] == run_id]
    appr = wait_for("the run's pending approval", pending, timeout=90)[0]
    return run_id, appr


def _notices(tail, approval_id, status):
    msgs = tail.until(lambda ms: any(notice_of(v)["approval_id"] == approval_id and notice_of(v)["status"] == status
                                     for _, v, _ in ms), timeout=60)
    return [(k, notice_of(v), v, h) for k, v, h in msgs if notice_of(v)["approval_id"] == approval_id]


def test_approval_queue_context_notice_and_decision(api, endpoints, admin_token, runs, upstream, second_approver,
                                                    team_id, tenant_id, tmp_path):
    tail = Tail(endpoints.need("PADDOCK_KAFKA_BOOTSTRAP"), "paddock.approvals")
    try:
        run_id, appr = _ask_run(api, runs, upstream, tail)
        aid = appr["id"]
        # what: every field the runner sent, but approval_id, deadline and timeout_s
        assert appr["kind"] == "egress" and appr["status"] == "pending", appr
        assert appr["what"] == {"kind": "egress", "host": upstream.name, "port": upstream.port}, appr["what"]
        # run_summary: what the approver must know about whose run it is
        run = api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))
        assert appr["run_summary"] == {"sandbox": run["sandbox"], "sandbox_name": run["sandbox_name"],
                                       "version": run["version"],
                                       "launched_by": {"id": run["launched_by"]["id"],
                                                       "username": run["launched_by"]["username"]}}, appr
        # context: the run's events before the request, oldest first, from its history
        one = wait_for("context in the approval",
                       lambda: (lambda a: a if a["context"] else None)(
                           second_approver[0].ok("GET", f"/v1/approvals/{aid}", expect=(200,))), timeout=30)
        ctx = one["context"]
        req_seq = [e["seq"] for e in all_events(api, run_id) if e["kind"] == "approval_requested"][0]
        seqs = [e["seq"] for e in ctx]
        assert seqs == sorted(seqs) and all(s < req_seq for s in seqs) and len(ctx) <= 20, seqs
        assert seqs[-1] == req_seq - 1, (seqs, req_seq)
        assert ctx[0]["kind"] == "status" and ctx[0]["data"]["status"] == "provisioning", ctx[0]
        assert "exec" in [e["kind"] for e in ctx], ctx
        assert all(set(e) >= {"seq", "kind", "ts", "data"} for e in ctx)
        # the CLI shows the approver the same
        from cli_support import Cli
        cli = Cli(tmp_path / "cfg", endpoints.api)
        out = cli.ok("approvals", "show", aid, env={"PADDOCK_TOKEN": second_approver[0].token})
        assert f"launched by {run['launched_by']['username']}" in out and "context (the run's last" in out, out
        assert f"{upstream.name}" in out, out
        listed = cli.ok("approvals", "list", "--status", "cancelled", env={"PADDOCK_TOKEN": second_approver[0].token})
        assert aid not in listed

        # the notice of the pending approval, signed by the api, keyed by the run
        notes = _notices(tail, aid, "pending")
        key, n, value, headers = notes[0]
        assert key == run_id and n["run_id"] == run_id and n["run_id_env"] == run_id, n
        assert n["tenant_id"] == tenant_id and n["team_id"] == team_id and n["kind"] == "egress", n
        assert n["what"] == appr["what"] and n["deadline"] and n["decided_by"] == "", n
        verify_api_signature(endpoints, "paddock.approvals", value, headers)

        # four eyes: the launcher's own decision is refused, nothing announced
        r = api.post(f"/v1/approvals/{aid}/decision", json={"decision": "approve"})
        assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text
        decided = second_approver[0].ok("POST", f"/v1/approvals/{aid}/decision",
                                        json={"decision": "approve", "comment": "looks fine"}, expect=(200,))
        assert decided["status"] == "approved" and decided["context"] == ctx, decided
        notes = _notices(tail, aid, "approved")
        n = [x for _, x, _, _ in notes if x["status"] == "approved"][0]
        assert n["decided_by"].startswith("user:") and n["comment"] == "looks fine", n
        res = wait_terminal(endpoints, admin_token, run_id, timeout=200)
        assert res.terminal == "succeeded" and "GET asked 200" in res.output(), res.output()
        # the runner confirming the decision (approval_decided) is no second notice
        time.sleep(2)
        tail.until(lambda ms: True, timeout=5)
        statuses = [x["status"] for _, x, _, _ in _notices(tail, aid, "approved")]
        assert statuses.count("pending") == 1 and statuses.count("approved") == 1, statuses

        run = api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))
        assert run["policy"]["approvals"] == {"pending": 0, "approved": 1, "denied": 0, "expired": 0,
                                              "cancelled": 0}, run["policy"]
    finally:
        tail.close()


def test_run_ended_while_pending_cancels_the_approval(api, endpoints, admin_token, runs, upstream, second_approver):
    tail = Tail(endpoints.need("PADDOCK_KAFKA_BOOTSTRAP"), "paddock.approvals")
    try:
        run_id, appr = _ask_run(api, runs, upstream, tail)
        aid = appr["id"]
        run = wait_for("awaiting_approval", lambda: (lambda x: x if x["status"] == "awaiting_approval" else None)(
            api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))), timeout=30)
        assert run["policy"]["approvals"]["pending"] == 1, run["policy"]
        api.ok("POST", f"/v1/runs/{run_id}/cancel", json={"reason": "not today"}, expect=(202,))
        res = wait_terminal(endpoints, admin_token, run_id, timeout=120)
        assert res.terminal == "cancelled", res.terminal
        one = wait_for("the approval cancelled", lambda: (lambda a: a if a["status"] == "cancelled" else None)(
            api.ok("GET", f"/v1/approvals/{aid}", expect=(200,))), timeout=30)
        assert one["decided_by"] == "run_ended" and one["decided_at"], one
        assert aid in [a["id"] for a in api.ok("GET", "/v1/approvals?status=cancelled", expect=(200,))["items"]]
        notes = _notices(tail, aid, "cancelled")
        assert [n["status"] for _, n, _, _ in notes] == ["pending", "cancelled"], notes
        assert notes[-1][1]["decided_by"] == "run_ended"
        # nothing left to decide
        r = second_approver[0].post(f"/v1/approvals/{aid}/decision", json={"decision": "approve"})
        assert r.status_code == 409, r.text
        run = api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))
        assert run["policy"]["approvals"] == {"pending": 0, "approved": 0, "denied": 0, "expired": 0,
                                              "cancelled": 1}, run["policy"]
    finally:
        tail.close()


def test_undecided_approval_expires_at_the_policy_deadline(api, endpoints, admin_token, runs, upstream):
    """spec.policy.ask_timeout_s is the run's one deadline for asks, the
    proxy's egress asks included: past it the runner denies, the approval
    reads expired and an expired notice follows the pending one."""
    tail = Tail(endpoints.need("PADDOCK_KAFKA_BOOTSTRAP"), "paddock.approvals")
    try:
        run_id, appr = _ask_run(api, runs, upstream, tail, ask_timeout_s=4)
        aid = appr["id"]
        notes = _notices(tail, aid, "expired")
        assert [n["status"] for _, n, _, _ in notes] == ["pending", "expired"], notes
        assert notes[-1][1]["decided_by"] == "timeout", notes[-1][1]
        res = wait_terminal(endpoints, admin_token, run_id, timeout=120)
        assert "GET asked 403" in res.output(), res.output()
        one = api.ok("GET", f"/v1/approvals/{aid}", expect=(200,))
        assert one["status"] == "expired" and one["decided_by"] == "timeout", one
        run = api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))
        assert run["policy"]["approvals"]["expired"] == 1, run["policy"]
    finally:
        tail.close()


def test_run_policy_decision_counters(api, runs, endpoints, admin_token):
    """GET /v1/runs/{id} shows the run's policy counters: none for a run
    whose rules never matched. The decisions are counted by evidence as it
    stores them (e2e.ingest test_policy_decisions_counted_once_as_stored)."""
    run_id = runs.start(_spec({"rules": [{"match": {"command": "git push*"}, "action": "ask"}]}))
    wait_terminal(endpoints, admin_token, run_id, timeout=120)
    run = api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))
    assert run["policy"] == {"decisions": {"allow": 0, "ask": 0, "deny": 0},
                             "approvals": {"pending": 0, "approved": 0, "denied": 0, "expired": 0, "cancelled": 0}}
    # lists do not carry it
    listed = api.ok("GET", f"/v1/runs?limit=5", expect=(200,))["items"]
    assert all("policy" not in r for r in listed)
