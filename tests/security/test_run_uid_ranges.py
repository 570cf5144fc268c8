"""Each concurrent run has a host uid/gid range of its own (issue 9 point 4):
two runs on the node at the same time map their container ids to different
host ranges, so the sandbox user of one is a stranger to the other. Shown
from the host: a process with run B's host uid cannot signal run A's agent,
cannot read its /proc/<pid>/environ nor its workspace file, while A's own
host uid can signal it and read the file (the control, so the test can fail:
with one shared range, as before, B's uid was A's)."""

import os
import subprocess
import time

import pytest

import conftest as c

SCRIPT = ("cat /proc/self/uid_map /proc/self/gid_map; echo secret > /workspace/secret; "
          "chmod 600 /workspace/secret; echo ready; exec sleep 60")


def host_range(text):
    lines = [l.split() for l in text.splitlines() if len(l.split()) == 3 and l.split()[0] == "0"]
    assert len(lines) >= 2, f"no uid_map/gid_map in the output: {text!r}"
    return int(lines[0][1]), int(lines[1][1])


def sleeping_pid(api, run_id):
    """Host pid of the run's `sleep` once its exec event is recorded."""
    def find():
        for e in c.e2e.all_events(api, run_id):
            if e["kind"] == "exec" and e["data"].get("argv") == ["sleep", "60"]:
                return e["data"]["pid"]
        return None
    return c.e2e.wait_for(f"the sleep of run {run_id}", find, timeout=60)


def run_output(api, run_id):
    return "".join(e["data"].get("text", "") for e in c.e2e.all_events(api, run_id) if e["kind"] == "output")


def as_uid(uid, gid, *argv, pass_fds=()):
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--", *argv],
                          capture_output=True, text=True, timeout=30, pass_fds=pass_fds)


def test_concurrent_runs_have_distinct_host_ranges(endpoints, admin_token, api, runs):
    a = runs.start(c.spec(["/bin/sh", "-c", SCRIPT], timeout_s=90))
    b = runs.start(c.spec(["/bin/sh", "-c", SCRIPT], timeout_s=90))
    try:
        pid_a, pid_b = sleeping_pid(api, a), sleeping_pid(api, b)
        c.e2e.wait_for("both outputs", lambda: "ready" in run_output(api, a) and "ready" in run_output(api, b))
        uid_a, gid_a = host_range(run_output(api, a))
        uid_b, gid_b = host_range(run_output(api, b))
        print(f"run {a}: host uid base {uid_a}, pid {pid_a}; run {b}: host uid base {uid_b}, pid {pid_b}")
        assert uid_a != uid_b and gid_a != gid_b, (uid_a, uid_b)
        assert abs(uid_a - uid_b) >= 65536, "the ranges overlap"
        # the sandbox user (container uid 1000) as the host sees it
        agent_a, agent_b = (uid_a + 1000, gid_a + 1000), (uid_b + 1000, gid_b + 1000)
        with open(f"/proc/{pid_a}/status") as f:
            uids = [l.split()[1:] for l in f if l.startswith("Uid:")][0]
        assert int(uids[0]) == agent_a[0], uids

        # A's workspace handed over as an open directory (the run dir above it
        # is root's 0700): only the file's own mode and owner decide
        ws = os.open(os.path.join(os.environ["PADDOCK_RUNNER_STATE_DIR"], "runs", c.sandbox_id(api, a), "workspace"),
                     os.O_RDONLY | os.O_DIRECTORY)
        try:
            # the control: A's own host uid reaches its process and file
            own = as_uid(*agent_a, "sh", "-c", f"kill -0 {pid_a} && cat /proc/self/fd/{ws}/secret", pass_fds=(ws,))
            assert own.returncode == 0 and own.stdout.strip() == "secret", own
            # B's host uid reaches nothing of A
            sig = as_uid(*agent_b, "kill", "-0", str(pid_a))
            assert sig.returncode != 0 and "not permitted" in sig.stderr, sig
            f = as_uid(*agent_b, "cat", f"/proc/self/fd/{ws}/secret", pass_fds=(ws,))
            assert f.returncode != 0 and "denied" in f.stderr, f
            env = as_uid(*agent_b, "cat", f"/proc/{pid_a}/environ")
            assert env.returncode != 0 and "denied" in env.stderr, env
        finally:
            os.close(ws)
    finally:
        for r in (a, b):
            api.request("POST", f"/v1/runs/{r}/cancel", json={"reason": "test done"})
    for r in (a, b):
        c.e2e.wait_run_status(api, r, timeout=60)
