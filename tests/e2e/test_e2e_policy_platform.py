"""The run policy at the platform (issue 12 §3, §7; docs/CONTRACTS.md "Policy
engine", levels exec, file and egress): a rogue `command` agent that has no
hooks at all is still stopped where it cannot lie, and each attempt is an
event.

* file: a `**/.env` deny rule (in the definition or in an approved policy
  pack) refuses the open for every process of the sandbox (cat, python), by
  fanotify permission events; other files read as usual.
* exec: a `git push*` deny rule refuses git under another name
  (`cp $(command -v git) /tmp/g && /tmp/g push`), by the content of the
  executed file; an `ask` holds the push until an approver decides through the
  API (approved: it ran), or denies it at the deadline.
* egress: a host rule decides in the proxy before the allowlist (deny → 403
  naming the rule); a python socket connecting straight to an address outside
  the sandbox fails and is an `egress` event "direct": true.

Remotes are local bare repositories; the only outside address is the stack's
own test upstream network (a network namespace of the stack)."""

import time

import pytest

from conftest import (Upstream, all_events, command_spec, egress_profile, unique_name, wait_for, wait_terminal)

PY = "/usr/bin/python3"


def _pack(api, rules):
    item = api.ok("POST", "/v1/catalog/policy-packs", json={"name": unique_name("pack"), "body": {"rules": rules}},
                  expect=(201,))
    api.ok("POST", f"/v1/catalog/policy-packs/{item['id']}/approve",
           json={"content_sha256": item["content_sha256"]}, expect=(200,))
    return item


def _run(endpoints, admin_token, runs, spec, timeout=120):
    run_id = runs.start(spec)
    res = wait_terminal(endpoints, admin_token, run_id, timeout=timeout)
    return run_id, res


def _events(api, run_id, kind, pred=lambda d: True, expect=1, timeout=30):
    """The run's stored events of kind whose data satisfies pred (waiting for
    at least expect of them)."""
    deadline = time.monotonic() + timeout
    while True:
        got = [e["data"] for e in all_events(api, run_id) if e["kind"] == kind and pred(e["data"])]
        if len(got) >= expect or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


# ---------------------------------------------------------------- file

ENV_SECRET = "TOKEN=do-not-read-me-4711"
READ_ENV = (
    "cat .env; echo cat=$?; "
    f"{PY} -c \"open('.env').read()\" 2>/dev/null; echo py=$?; "
    "cat sub/.env; echo sub=$?; "
    "(echo X=1 > /tmp/.env) 2>/dev/null; echo tmp=$?; "
    "cat ok.txt"
)


def _env_files():
    return [{"path": ".env", "content": ENV_SECRET + "\n", "mode": "0644"},
            {"path": "sub/.env", "content": ENV_SECRET + "\n", "mode": "0644"},
            {"path": "ok.txt", "content": "plain text ok\n", "mode": "0644"}]


def _assert_env_refused(api, run_id, res, source):
    out = res.output()
    assert res.terminal == "succeeded", f"{res.terminal}: {out}"
    assert "cat=1" in out and "py=1" in out and "sub=1" in out, out
    assert "tmp=" in out and "tmp=0" not in out, out  # the shell's redirection failed (dash: 2)
    assert "Operation not permitted" in out, out
    assert "plain text ok" in out, out
    assert ENV_SECRET not in out, out
    dec = _events(api, run_id, "policy_decision", lambda d: d.get("level") == "file", expect=3)
    paths = {d["path"] for d in dec}
    # workspace-relative inside /workspace, absolute elsewhere
    assert {".env", "sub/.env", "/tmp/.env"} <= paths, dec
    for d in dec:
        assert d["action"] == "deny" and d["rule"] == source, d
        assert d["pid"] > 0, d


@pytest.mark.parametrize("image", [None, "debian-python"])
def test_env_read_refused_for_every_process(endpoints, admin_token, api, runs, image):
    # the node's /usr skeleton and a catalog image as the sandbox's root
    spec = command_spec(["sh", "-c", READ_ENV], files=_env_files())
    if image:
        spec["image"] = image
    spec["policy"] = {"rules": [{"match": {"path": "**/.env"}, "action": "deny"}]}
    run_id, res = _run(endpoints, admin_token, runs, spec)
    _assert_env_refused(api, run_id, res, "spec.policy.rules[0]")


def test_env_read_refused_by_a_pack(endpoints, admin_token, api, runs):
    pack = _pack(api, [{"match": {"path": "**/.env"}, "action": "deny"}])
    spec = command_spec(["sh", "-c", READ_ENV], files=_env_files())
    spec["policy"] = {"rules": [], "packs": [pack["id"]]}
    run_id, res = _run(endpoints, admin_token, runs, spec)
    _assert_env_refused(api, run_id, res, f"pack:{pack['id']}.rules[0]")


def test_without_a_path_rule_nothing_is_refused(endpoints, admin_token, api, runs):
    # the control: the same agent, a policy without path rules, reads .env
    spec = command_spec(["sh", "-c", READ_ENV], files=_env_files())
    spec["policy"] = {"rules": [{"match": {"command": "rm -rf /*"}, "action": "deny"}]}
    run_id, res = _run(endpoints, admin_token, runs, spec)
    out = res.output()
    assert res.terminal == "succeeded" and "cat=0" in out and "py=0" in out and ENV_SECRET in out, out
    assert "tmp=0" in out, out


def test_path_rule_covers_the_sandbox_root(endpoints, admin_token, api, runs):
    # outside the workspace too: the sandbox's own mounts (/usr here)
    script = "cat /usr/bin/git >/dev/null; echo cat=$?; git --version; echo git=$?; echo done"
    spec = command_spec(["sh", "-c", script])
    spec["policy"] = {"rules": [{"match": {"path": "/usr/bin/git"}, "action": "deny"}]}
    run_id, res = _run(endpoints, admin_token, runs, spec)
    out = res.output()
    assert res.terminal == "succeeded", f"{res.terminal}: {out}"
    assert "cat=1" in out and "git=126" in out and "done" in out, out
    dec = _events(api, run_id, "policy_decision", lambda d: d.get("level") == "file", expect=2)
    assert dec and all(d["path"] == "/usr/bin/git" and d["action"] == "deny" for d in dec), dec


def test_file_ask_held_per_path_until_approved(endpoints, admin_token, api, runs, second_approver):
    script = "cat secret.txt; echo cat=$?; cat secret.txt >/dev/null; echo again=$?; cat ok.txt"
    files = [{"path": "secret.txt", "content": "the-approved-secret\n", "mode": "0644"},
             {"path": "ok.txt", "content": "plain text ok\n", "mode": "0644"}]
    spec = command_spec(["sh", "-c", script], files=files, timeout_s=150)
    spec["policy"] = {"rules": [{"match": {"path": "secret.txt"}, "action": "ask"}], "ask_timeout_s": 120}
    run_id = runs.start(spec)
    req = wait_for("the file approval request",
                   lambda: _events(api, run_id, "approval_requested", lambda d: d.get("kind") == "file", timeout=0),
                   timeout=90)[0]
    assert req["path"] == "secret.txt" and req["pid"] > 0 and req["rule"] == "spec.policy.rules[0]", req
    time.sleep(1.0)
    assert not [e for e in all_events(api, run_id) if e["kind"] == "output"], "the read went on before the decision"
    second_approver[0].ok("POST", f"/v1/approvals/{req['approval_id']}/decision", json={"decision": "approve"},
                          expect=(200, 201, 202, 204))
    res = wait_terminal(endpoints, admin_token, run_id, timeout=120)
    out = res.output()
    assert res.terminal == "succeeded", f"{res.terminal}: {out}"
    assert "the-approved-secret" in out and "cat=0" in out and "again=0" in out and "plain text ok" in out, out
    # one approval for the path and run
    assert len(_events(api, run_id, "approval_requested")) == 1


# ---------------------------------------------------------------- exec

# a local bare remote and a clone with one commit; git under another name pushes
PUSH = (
    "set -u; cd /tmp; git init -q --bare remote.git; git init -q w; cd w; "
    "git -c user.email=a@example.invalid -c user.name=a commit -q --allow-empty -m one; "
    "cp \"$(command -v git)\" /tmp/g; "
    "/tmp/g push -q /tmp/remote.git HEAD:refs/heads/main; echo push=$?; "
    "echo refs=$(git ls-remote /tmp/remote.git | wc -l)"
)


def test_renamed_git_push_refused(endpoints, admin_token, api, runs):
    spec = command_spec(["sh", "-c", PUSH])
    spec["policy"] = {"rules": [{"match": {"command": "git push*"}, "action": "deny"}]}
    run_id, res = _run(endpoints, admin_token, runs, spec)
    out = res.output()
    assert res.terminal == "succeeded", f"{res.terminal}: {out}"
    assert "push=126" in out and "refs=0" in out, out
    dec = _events(api, run_id, "policy_decision", lambda d: d.get("level") == "exec")
    assert dec and dec[0]["action"] == "deny" and dec[0]["rule"] == "spec.policy.rules[0]", dec
    assert dec[0]["program"] == "git" and dec[0]["command"].startswith("git push"), dec
    assert dec[0]["command_given"].startswith("/tmp/g push"), dec
    ex = _events(api, run_id, "exec", lambda d: d.get("path") == "/tmp/g")
    assert ex and ex[0]["denied"] is True and ex[0]["rule"] == "spec.policy.rules[0]", ex
    # git's other commands (init, commit, ls-remote) ran
    assert any(d.get("argv", [None])[1:2] == ["ls-remote"] and not d.get("denied")
               for d in _events(api, run_id, "exec")), "ls-remote did not run"


def _exec_ask(api, run_id):
    reqs = wait_for("the exec approval request",
                    lambda: _events(api, run_id, "approval_requested", lambda d: d.get("kind") == "exec",
                                    timeout=0), timeout=90)
    return reqs[0]


def test_exec_ask_approved_runs(endpoints, admin_token, api, runs, second_approver):
    spec = command_spec(["sh", "-c", PUSH], timeout_s=150)
    spec["policy"] = {"rules": [{"match": {"command": "git push*"}, "action": "ask"}], "ask_timeout_s": 120}
    run_id = runs.start(spec)
    req = _exec_ask(api, run_id)
    assert req["command"].startswith("git push") and req["program"] == "git" and req["pid"] > 0, req
    assert req["rule"] == "spec.policy.rules[0]", req
    # held, not refused: the run waits, nothing was pushed yet
    time.sleep(1.0)
    assert not [e for e in all_events(api, run_id) if e["kind"] == "output" and "push=" in e["data"].get("text", "")]
    t0 = time.monotonic()
    second_approver[0].ok("POST", f"/v1/approvals/{req['approval_id']}/decision", json={"decision": "approve"},
                          expect=(200, 201, 202, 204))
    res = wait_terminal(endpoints, admin_token, run_id, timeout=120)
    out = res.output()
    assert res.terminal == "succeeded", f"{res.terminal}: {out}"
    assert "push=0" in out and "refs=1" in out, out
    decided = _events(api, run_id, "approval_decided", lambda d: d.get("approval_id") == req["approval_id"])
    assert decided and decided[0]["decision"] == "approve", decided
    print(f"exec approval: decision → run end {time.monotonic() - t0:.2f} s")


def test_exec_ask_undecided_denied_at_deadline(endpoints, admin_token, api, runs):
    spec = command_spec(["sh", "-c", PUSH], timeout_s=90)
    spec["policy"] = {"rules": [{"match": {"command": "git push*"}, "action": "ask"}], "ask_timeout_s": 3}
    run_id, res = _run(endpoints, admin_token, runs, spec)
    out = res.output()
    assert res.terminal == "succeeded", f"{res.terminal}: {out}"
    assert "push=126" in out and "refs=0" in out, out
    decided = _events(api, run_id, "approval_decided")
    assert decided and decided[0]["decision"] == "deny" and decided[0]["by"] == "timeout", decided
    ex = _events(api, run_id, "exec", lambda d: d.get("path") == "/tmp/g")
    assert ex and ex[0]["denied"] is True and ex[0]["by"] == "timeout", ex


# ---------------------------------------------------------------- egress

DIRECT = r"""
import socket, sys
s = socket.socket()
s.settimeout(10)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("direct connected")
except OSError as e:
    print("direct refused", e.errno)
"""

VIA_PROXY = r"""
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen("http://%s:%s/via-proxy" % (sys.argv[1], sys.argv[2]), timeout=30)
    print("proxy status 200")
except urllib.error.HTTPError as e:
    print("proxy status", e.code, e.read().decode()[:300])
"""


def test_direct_socket_fails_and_is_an_event(endpoints, admin_token, api, runs):
    up = Upstream(0)
    try:
        spec = command_spec([PY, "-c", DIRECT, up.host, str(up.port)])
        run_id, res = _run(endpoints, admin_token, runs, spec)
        out = res.output()
        assert res.terminal == "succeeded", f"{res.terminal}: {out}"
        assert "direct refused 101" in out, out  # ENETUNREACH
        assert up.requests == []
        eg = _events(api, run_id, "egress", lambda d: d.get("direct"))
        assert eg and eg[0]["host"] == up.host and eg[0]["port"] == up.port, eg
        assert eg[0]["decision"] == "deny" and eg[0]["pid"] > 0, eg
    finally:
        up.close()


def test_host_rule_decides_before_the_allowlist(endpoints, admin_token, api, runs):
    up = Upstream(0)
    try:
        spec = command_spec([PY, "-c", VIA_PROXY, up.name, str(up.port)])
        # the allowlist would allow it; the policy denies it
        spec["egress"] = {"profiles": [egress_profile(api, [up.hostport])], "allow": [up.nameport]}
        spec["policy"] = {"rules": [{"match": {"host": up.name}, "action": "deny"}]}
        run_id, res = _run(endpoints, admin_token, runs, spec)
        out = res.output()
        assert res.terminal == "succeeded", f"{res.terminal}: {out}"
        assert "proxy status 403" in out and "spec.policy.rules[0]" in out, out
        assert up.requests == []
        eg = _events(api, run_id, "egress", lambda d: d.get("host") == up.name)
        assert eg and eg[0]["decision"] == "deny" and eg[0]["rule"] == "spec.policy.rules[0]", eg
        dec = _events(api, run_id, "policy_decision", lambda d: d.get("level") == "egress")
        assert dec and dec[0]["host"] == up.name and dec[0]["action"] == "deny", dec
    finally:
        up.close()


OPENS = r"""
import os, time
open("f.txt", "w").write("x")
t0 = time.monotonic()
for _ in range(10000):
    os.close(os.open("f.txt", os.O_RDONLY))
print("opens_ms=%.1f" % ((time.monotonic() - t0) * 1000))
"""


def test_open_cost_figures(endpoints, admin_token, api, runs):
    # a figure, not a check of speed (STYLE.md): 10,000 opens in the sandbox
    # without a path rule (no permission group) and with one that never matches
    figures = {}
    for label, policy in (("without", {"rules": []}),
                          ("with", {"rules": [{"match": {"path": "**/.env"}, "action": "deny"}]})):
        spec = command_spec([PY, "-c", OPENS])
        spec["policy"] = policy
        _, res = _run(endpoints, admin_token, runs, spec)
        out = res.output()
        assert res.terminal == "succeeded" and "opens_ms=" in out, out
        figures[label] = float(out.split("opens_ms=")[1].split()[0])
    print(f"10,000 opens in the sandbox: {figures['without']:.0f} ms without a path rule, "
          f"{figures['with']:.0f} ms with one ({(figures['with'] - figures['without']) / 10:.0f} us per open)")


def test_host_rule_ask_uses_the_proxy_approval(endpoints, admin_token, api, runs, second_approver):
    up = Upstream(0)
    try:
        spec = command_spec([PY, "-c", VIA_PROXY, up.name, str(up.port)], timeout_s=150)
        # the allowlist allows it; the policy asks first
        spec["egress"] = {"profiles": [egress_profile(api, [up.hostport])], "allow": [up.nameport]}
        spec["policy"] = {"rules": [{"match": {"host": up.name}, "action": "ask"}], "ask_timeout_s": 120}
        run_id = runs.start(spec)
        req = wait_for("the egress approval request",
                       lambda: _events(api, run_id, "approval_requested", lambda d: d.get("kind") == "egress",
                                       timeout=0), timeout=90)[0]
        assert req["host"] == up.name and req["rule"] == "spec.policy.rules[0]", req
        time.sleep(1.0)
        assert up.requests == [], "the request went through before the approval"
        second_approver[0].ok("POST", f"/v1/approvals/{req['approval_id']}/decision", json={"decision": "approve"},
                              expect=(200, 201, 202, 204))
        res = wait_terminal(endpoints, admin_token, run_id, timeout=120)
        out = res.output()
        assert res.terminal == "succeeded" and "proxy status 200" in out, f"{res.terminal}: {out}"
        assert up.paths() == ["/via-proxy"]
    finally:
        up.close()
