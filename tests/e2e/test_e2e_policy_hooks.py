"""Policy at the agent's own hook (issue 12 §2 and §7; docs/CONTRACTS.md
"Hook bridge"): the real Claude Code and Codex CLIs in the node-agents image,
against the model simulator, with the static paddock-hook as their
PreToolUse/PostToolUse hook talking to the runner-agent's hook server.

A definition with `{"match": {"tool": "Bash", "command": "git push*"},
"action": "ask"}` and `{"match": {"path": "**/.env"}, "action": "deny"}`:
* a `git push` to a bare repo inside the workspace waits for a person; the
  launcher's own decision is refused (403); approved by an approver (another
  user) it runs (the bare repo has the commit), denied it does not; left
  undecided it is denied at the deadline (ask_timeout_s);
* a read of .env is denied at the hook for Claude (Read) and Codex (a shell
  `cat .env`), the policy_decision event naming the rule, even after the
  agent tried to rewrite its hook config (read-only) or to switch hooks off
  in the workspace's .claude/settings.local.json;
* the approval's latency (decision POST -> the approved command's exec) is
  printed.

Time: about 1.5 minutes (six CLI runs, one waiting for a 6 s deadline), plus
PADDOCK_AGENT_STALL_S + 8 s when the stack sets it below 60 (./dev test: 15)."""

import json
import os
import pathlib
import secrets
import signal
import time
import uuid

import pytest

from conftest import all_events, unique_name, wait_for, wait_terminal
from test_e2e_agents import (CLAUDE_MODEL, CODEX_MODEL, IMAGE, PRICES, USAGE, USAGE_OPENAI, agents_image,  # noqa: F401
                             template)
from test_e2e_models import ModelSim, _body, _item

POLICY_RULES = [{"match": {"tool": "Bash", "command": "git push*"}, "action": "ask"},
                {"match": {"path": "**/.env"}, "action": "deny"}]
DOTENV = "PADDOCK_E2E_DOTENV=" + secrets.token_hex(12)
FILES = [{"path": "notes.txt", "content": "remember the milk\n"}, {"path": ".env", "content": DOTENV + "\n"}]
# a repo with one commit and a bare remote inside the workspace (never a network host)
SETUP = ("git init -q -b main . && git -c user.email=a@example.invalid -c user.name=agent commit -q --allow-empty "
         "-m one && git init -q --bare /workspace/remote.git && git remote add origin /workspace/remote.git && "
         "echo setup-ok")


def pushed(ref):
    return f"echo PUSHED-{ref}=$(git --git-dir=/workspace/remote.git rev-parse -q --verify {ref} || echo none)"


class PolicyAgent:
    """A CLI definition with the policy above (test_e2e_agents.Agent's, plus
    spec.policy and a .env in the workspace)."""

    def __init__(self, api, team_id, tmp, kind, script, template, ask_timeout_s=300, rules=POLICY_RULES):
        self.api, self.kind = api, kind
        provider = "anthropic" if kind == "claude-code" else "openai"
        model = CLAUDE_MODEL if kind == "claude-code" else CODEX_MODEL
        key = "sk-e2e-hooks-" + secrets.token_hex(16)
        key_name = "E2E_HOOK_KEY_" + uuid.uuid4().hex[:10].upper()
        api.ok("PUT", f"/v1/teams/{team_id}/secrets/{key_name}", json={"value": key}, expect=(200, 201, 204))
        self.sim = ModelSim(tmp, 3, script)
        item = _item(api, _body(upstream=self.sim.upstream, provider=provider, key_secret=key_name,
                                models=[{"id": model, "usd_per_mtok": dict(PRICES)}]))
        spec = {"agent": {"type": kind, "model": model}, "image": IMAGE, "models": [item["id"]], "files": FILES,
                "limits": {"timeout_s": 240, "memory_mb": 2048}, "prompt": {"template": template},
                "policy": {"rules": rules, "ask_timeout_s": ask_timeout_s}}
        sb = api.ok("POST", "/v1/sandboxes", json={"name": unique_name("hooks-" + kind), "team": team_id,
                                                   "spec": spec}, expect=(201,))
        self.sandbox = sb["id"]
        self.version = api.ok("POST", f"/v1/sandboxes/{self.sandbox}/versions", expect=(201,))["version"]

    def launch(self):
        r = self.api.post("/v1/runs", json={"sandbox": self.sandbox, "version": self.version,
                                            "prompt_vars": {"task": "push the work, then read .env"}},
                          headers={"Idempotency-Key": str(uuid.uuid4())})
        assert r.status_code == 202, r.text
        return r.json()["id"]

    def close(self):
        self.sim.close()


def _claude(calls):
    turns = [{"tool_calls": [c], "usage": USAGE[0]} for c in calls]
    return {"anthropic": turns + [{"text": "All done.", "usage": USAGE[4]}]}


def _codex(cmds):
    turns = [{"tool_calls": [{"name": "exec_command", "arguments": {"cmd": c}}], "usage": USAGE_OPENAI[0]}
             for c in cmds]
    return {"openai": turns + [{"text": "All done.", "usage": USAGE_OPENAI[4]}]}


def bash(cmd):
    return {"name": "Bash", "input": {"command": cmd, "description": "step"}}


def _pending(api, run_id, after=()):
    def one():
        items = api.ok("GET", "/v1/approvals?status=pending", expect=(200,))["items"]
        mine = [a for a in items if a["run"] == run_id and a["id"] not in after]
        return mine[0] if mine else None
    return wait_for(f"a pending approval of run {run_id}", one, timeout=120)


def _of(events, kind):
    return [e for e in events if e["kind"] == kind]


def _results(events):
    """Every tool call's result text: the CLI's stream (tool_call) and the
    hook's PostToolUse (tool_result)."""
    return " ".join(json.dumps(e["data"].get("result")) for e in events if e["kind"] in ("tool_call", "tool_result"))


def _ts(e):
    from datetime import datetime
    return datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).timestamp()


def test_claude_git_push_ask_approve_deny_and_dotenv(endpoints, api, team_id, agents_image, template, tmp_path,
                                                     second_approver):
    approver = second_approver[0]
    script = _claude([bash(SETUP),
                      bash("git push origin main"),                        # asked: approved
                      bash(pushed("main")),
                      bash("git push origin main:other"),                  # asked: denied
                      bash(pushed("other")),
                      # the agent tries to take its hooks away: read-only config, and
                      # workspace settings cannot switch off --settings' hooks
                      bash("echo '{}' > ~/.claude/settings.json; echo rc1=$?; "
                           "echo '{}' > ~/.claude/paddock-settings.json; echo rc2=$?; mkdir -p .claude && "
                           "echo '{\"disableAllHooks\": true}' > .claude/settings.local.json; echo rc3=$?"),
                      {"name": "Read", "input": {"file_path": "/workspace/.env"}}])
    agent = PolicyAgent(api, team_id, tmp_path, "claude-code", script, template)
    try:
        run_id = agent.launch()
        first = _pending(api, run_id)
        assert first["kind"] == "tool", first
        assert first["what"]["command"] == "git push origin main" and first["what"]["tool"] == "Bash", first
        assert first["rule"] == "spec.policy.rules[0]", first
        run = api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))
        assert run["status"] == "awaiting_approval", run["status"]
        # four eyes: the launcher may not decide
        r = api.post(f"/v1/approvals/{first['id']}/decision", json={"decision": "approve"})
        assert r.status_code == 403, r.text
        t_decide = time.time()
        approver.ok("POST", f"/v1/approvals/{first['id']}/decision", json={"decision": "approve", "comment": "ok"},
                    expect=(200,))
        second = _pending(api, run_id, after=(first["id"],))
        assert second["what"]["command"] == "git push origin main:other", second
        approver.ok("POST", f"/v1/approvals/{second['id']}/decision", json={"decision": "deny", "comment": "no"},
                    expect=(200,))
        res = wait_terminal(endpoints, api.token, run_id, timeout=240)
        assert res.terminal == "succeeded", (res.statuses, res.output()[-3000:])
        events = all_events(api, run_id)
        text = _results(events)
        # approved: the push ran and the bare repo has the commit; denied: it did not
        assert "PUSHED-main=none" not in text and "PUSHED-main=" in text, text[:3000]
        assert "PUSHED-other=none" in text, text[:3000]
        # the hook config could not be rewritten
        assert "rc1=0" not in text and "rc2=0" not in text, text[:3000]
        # the .env read was denied at the hook, naming the rule; its content never showed
        assert DOTENV not in json.dumps(events)
        decisions = [e["data"] for e in _of(events, "policy_decision") if e["data"].get("level") == "hook"]
        env_d = [d for d in decisions if d.get("tool") == "Read"]
        assert env_d and env_d[0]["action"] == "deny" and env_d[0]["rule"] == "spec.policy.rules[1]", decisions
        assert env_d[0]["path"] == ".env", env_d
        assert {d["action"] for d in decisions if d.get("command", "").startswith("git push")} == {"ask"}, decisions
        # every tool call was decided at the hook, one event each
        calls = _of(events, "tool_call")
        assert len(decisions) == len(calls) == 7, (decisions, [c["data"] for c in calls])
        decided = [e["data"] for e in _of(events, "approval_decided")]
        assert [d["decision"] for d in decided] == ["approve", "deny"], decided
        # PostToolUse completed the calls that ran, with the hook's decision
        results = [e["data"] for e in _of(events, "tool_result")]
        approved = [r for r in results if (r.get("decision") or {}).get("approval_id") == first["id"]]
        assert approved and approved[0]["decision"]["action"] == "allow", results
        # latency an approval adds: decision POST -> the approved git push's exec
        push_exec = [e for e in _of(events, "exec")
                     if "push" in (e["data"].get("argv") or []) and "main:other" not in (e["data"].get("argv") or [])]
        assert push_exec, [e["data"].get("argv") for e in _of(events, "exec")][:40]
        print(f"\napproval latency: decision POST -> git push exec {1000 * (_ts(push_exec[0]) - t_decide):.0f} ms; "
              f"approval_decided event -> exec "
              f"{1000 * (_ts(push_exec[0]) - _ts(_of(events, 'approval_decided')[0])):.0f} ms")
    finally:
        agent.close()


def test_claude_git_push_undecided_is_denied_at_the_deadline(endpoints, api, team_id, agents_image, template,
                                                             tmp_path):
    script = _claude([bash(SETUP), bash("git push origin main"), bash(pushed("main"))])
    agent = PolicyAgent(api, team_id, tmp_path, "claude-code", script, template, ask_timeout_s=6)
    try:
        run_id = agent.launch()
        res = wait_terminal(endpoints, api.token, run_id, timeout=240)
        assert res.terminal == "succeeded", (res.statuses, res.output()[-3000:])
        events = all_events(api, run_id)
        decided = [e["data"] for e in _of(events, "approval_decided")]
        assert [(d["decision"], d["by"]) for d in decided] == [("deny", "timeout")], decided
        assert "PUSHED-main=none" in _results(events)
        appr = api.ok("GET", f"/v1/approvals/{decided[0]['approval_id']}", expect=(200,))
        assert appr["status"] in ("expired", "denied"), appr
    finally:
        agent.close()


def test_codex_dotenv_denied_at_the_hook(endpoints, api, team_id, agents_image, template, tmp_path):
    script = _codex(["echo codex-start",
                     "echo '{}' > \"$CODEX_HOME/hooks.json\"; echo rc=$?",
                     "cat .env"])
    agent = PolicyAgent(api, team_id, tmp_path, "codex", script, template)
    try:
        run_id = agent.launch()
        res = wait_terminal(endpoints, api.token, run_id, timeout=240)
        assert res.terminal == "succeeded", (res.statuses, res.output()[-3000:])
        events = all_events(api, run_id)
        assert DOTENV not in json.dumps(events), "the .env content reached an event"
        assert "rc=0" not in _results(events)
        decisions = [e["data"] for e in _of(events, "policy_decision") if e["data"].get("level") == "hook"]
        env_d = [d for d in decisions if d.get("command") == "cat .env"]
        assert env_d and env_d[0]["action"] == "deny" and env_d[0]["rule"] == "spec.policy.rules[1]", decisions
        assert env_d[0]["path"] == ".env" and env_d[0]["cli"] == "codex", env_d
        assert [d["action"] for d in decisions if d.get("command") == "echo codex-start"] == ["allow"], decisions
        # Codex's PostToolUse completes the calls that ran (tool_result with the hook's decision)
        results = [e["data"] for e in _of(events, "tool_result")]
        started = [r for r in results if "codex-start" in json.dumps(r.get("result"))]
        assert started and started[0]["cli"] == "codex" and started[0]["decision"]["action"] == "allow", results
        assert not any("cat .env" in json.dumps(r) for r in results), results
    finally:
        agent.close()


def test_claude_without_a_runner_answer_the_tool_does_not_run(endpoints, api, team_id, agents_image, template,
                                                              tmp_path):
    """Fail closed with the real CLI: the agent's Bash call removes nothing
    (the socket dir is read-only) and a call whose hook gets no answer is
    denied (exit 2): here the hook is run by hand against a missing socket."""
    script = _claude([bash("rm -f /paddock/run/hook.sock; echo rm=$?; "
                           "echo '{\"tool_name\":\"Bash\",\"tool_input\":{\"command\":\"true\"}}' | "
                           "/paddock/bin/paddock-hook --socket /tmp/none.sock claude-code PreToolUse; echo hook=$?"),
                      bash("echo still-hooked")])
    agent = PolicyAgent(api, team_id, tmp_path, "claude-code", script, template)
    try:
        run_id = agent.launch()
        res = wait_terminal(endpoints, api.token, run_id, timeout=240)
        assert res.terminal == "succeeded", (res.statuses, res.output()[-3000:])
        events = all_events(api, run_id)
        text = _results(events)
        assert "rm=0" not in text and "hook=2" in text and "still-hooked" in text, text[:3000]
        decisions = [e["data"] for e in _of(events, "policy_decision") if e["data"].get("level") == "hook"]
        assert len(decisions) == 2, decisions
    finally:
        agent.close()


def test_claude_hook_killed_while_waiting_the_tool_does_not_run(endpoints, api, team_id, agents_image, template,
                                                                tmp_path):
    """The agent kills its own hook while it waits for a person: Claude then
    sees a hook error, not an allow, and the call still does not run
    (docs/CONTRACTS.md "Hook bridge": only the hook's explicit allow lets a
    Claude tool run)."""
    killer = ("setsid sh -c 'sleep 3; pkill -KILL -x paddock-hook; "
              "echo killed > /tmp/killed' >/dev/null 2>&1 < /dev/null & echo armed")
    script = _claude([bash(SETUP), bash(killer), bash("git push origin main"), bash("cat /tmp/killed; " + pushed("main"))])
    agent = PolicyAgent(api, team_id, tmp_path, "claude-code", script, template)
    try:
        run_id = agent.launch()
        res = wait_terminal(endpoints, api.token, run_id, timeout=240)
        assert res.terminal == "succeeded", (res.statuses, res.output()[-3000:])
        events = all_events(api, run_id)
        text = _results(events)
        assert "killed" in text and "PUSHED-main=none" in text, text[:4000]
    finally:
        agent.close()


def test_claude_waiting_for_a_person_is_not_a_stall(endpoints, api, team_id, agents_image, template, tmp_path,
                                                    second_approver):
    """The CLI prints nothing while its hook waits for an approval: the stall
    timer (PADDOCK_AGENT_STALL_S) does not run meanwhile, so an approval given
    after longer than the stall still lets the run finish its work."""
    from test_e2e_agents import _stall_s
    stall = _stall_s()
    if not stall or stall > 60:
        pytest.skip("the stack's PADDOCK_AGENT_STALL_S is not set below 60 s (./dev test sets 15 through "
                    "PADDOCK_SERVICE_ENV)")
    script = _claude([bash(SETUP), bash("git push origin main"), bash(pushed("main"))])
    agent = PolicyAgent(api, team_id, tmp_path, "claude-code", script, template)
    try:
        run_id = agent.launch()
        appr = _pending(api, run_id)
        time.sleep(stall + 8)
        assert api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))["status"] == "awaiting_approval"
        second_approver[0].ok("POST", f"/v1/approvals/{appr['id']}/decision", json={"decision": "approve"},
                              expect=(200,))
        res = wait_terminal(endpoints, api.token, run_id, timeout=240)
        assert res.terminal == "succeeded", (res.statuses, res.of_kind("status")[-1]["data"])
        text = _results(all_events(api, run_id))
        assert "PUSHED-main=" in text and "PUSHED-main=none" not in text, text[:3000]
    finally:
        agent.close()


def _hook_pids(run_id):
    """The paddock-hook processes of the run's sandbox, seen from the node."""
    pids = []
    for d in pathlib.Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes()
            cg = (d / "cgroup").read_text()
        except OSError:
            continue
        if b"paddock-hook" in cmd and b"PreToolUse" in cmd and run_id in cg:
            pids.append(int(d.name))
    return pids


def test_codex_tool_run_after_its_hook_was_killed_ends_the_run(endpoints, api, team_id, agents_image, template,
                                                               tmp_path):
    """Codex fails OPEN when its hook dies (no setting of 0.171 makes a
    missing hook a deny), so a tool-only rule cannot be held by Codex alone:
    the hook server sees the call's PostToolUse without its allow, records a
    violation and the runner stops the run (docs/CONTRACTS.md "Hook bridge").
    The hook is killed from the node while it waits for a person, as a crash
    or a hostile parallel call would."""
    rules = [{"match": {"tool": "Bash"}, "action": "ask"}]
    script = _codex(["echo HELD-RAN > held.txt; echo held-done", "echo second-call"])
    agent = PolicyAgent(api, team_id, tmp_path, "codex", script, template, ask_timeout_s=120, rules=rules)
    try:
        run_id = agent.launch()
        pending = _pending(api, run_id)
        assert pending["what"]["kind"] == "tool", pending
        pids = wait_for("the waiting hook process", lambda: _hook_pids(run_id), timeout=30)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        res = wait_terminal(endpoints, api.token, run_id, timeout=180)
        assert res.terminal == "failed", (res.statuses, res.output()[-2000:])
        # the history (evidence) may trail the stream a little
        def ended():
            events = all_events(api, run_id)
            return events if any(e["data"].get("status") == "failed" for e in _of(events, "status")) else None
        events = wait_for("the run's terminal event in its history", ended)
        end = [e["data"] for e in _of(events, "status") if e["data"].get("status") == "failed"]
        assert end and "never allowed" in end[-1].get("reason", "") and "run stopped" in end[-1]["reason"], end
        v = [e["data"] for e in _of(events, "policy_decision") if e["data"].get("violation")]
        assert len(v) == 1 and v[0]["violation"] == "ran_without_allow" and v[0]["action"] == "deny", v
        assert v[0]["cli"] == "codex" and v[0]["tool"] == "Bash" and v[0].get("hook_decision") is None, v
        # the run stopped: the model's next call never ran
        assert "second-call" not in _results(events)
        # the person's approval went with the run
        appr = api.ok("GET", f"/v1/approvals/{pending['id']}", expect=(200,))
        assert appr["status"] == "cancelled", appr
    finally:
        agent.close()
