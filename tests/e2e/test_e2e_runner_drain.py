"""The runner's local drain, what the DaemonSet's preStop runs (issue 16;
docs/CONTRACTS.md "Node drain"): `paddock-runner-agent drain` makes the
node offer no slot (nothing new is placed there), lets the running run
finish, and the agent stops once idle; a new agent takes runs again. The
test restarts the stack's runner-agent with stack.sh up afterwards."""

import os
import pathlib
import subprocess

import pytest

from conftest import REPO, command_spec, read_env_file, state_dir, wait_for, wait_run_status

NODE = "local-node-1"


def build_dir():
    if os.environ.get("PADDOCK_BUILD_DIR"):
        return pathlib.Path(os.environ["PADDOCK_BUILD_DIR"])
    return pathlib.Path(os.environ["PADDOCK_CLI"]).resolve().parent.parent


def agent_pid():
    try:
        pid = int((state_dir() / "pids" / "runner-agent.pid").read_text().split()[0])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def node(api):
    return {n["id"]: n for n in api.ok("GET", "/v1/nodes", expect=(200,))["items"]}[NODE]


@pytest.fixture
def runner_back_up():
    yield
    sd = read_env_file(state_dir() / "env" / "runner-agent.env")["PADDOCK_RUNNER_STATE_DIR"]
    pathlib.Path(sd, "draining").unlink(missing_ok=True)
    if agent_pid() is None:
        env = dict(os.environ, PADDOCK_STATE_DIR=str(state_dir()), PADDOCK_BUILD_DIR=str(build_dir()))
        env.setdefault("PADDOCK_SERVICE_ENV", "ASAN_OPTIONS=detect_leaks=0")
        r = subprocess.run([str(REPO / "deploy/local/stack.sh"), "up"], env=env, capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]


def test_local_drain_finishes_runs_then_stops(endpoints, api, runs, runner_back_up):
    pid = agent_pid()
    assert pid, "the stack's runner-agent is not running"
    sb = runs.create_sandbox(command_spec(["/bin/sleep", "8"], timeout_s=60))
    version = runs.publish(sb)
    first = runs.launch(sb, version)
    wait_for("the first run to run", lambda: api.ok("GET", f"/v1/runs/{first}", expect=(200,))["status"] == "running",
             timeout=90, pause=0.3)

    env = {"PATH": "/usr/bin:/bin", "PADDOCK_RUNNER_STATE_DIR": endpoints.need("PADDOCK_RUNNER_STATE_DIR")}
    drain = subprocess.Popen([str(build_dir() / "services/runner-agent/paddock-runner-agent"), "drain",
                              "--timeout-s", "180"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        # the next heartbeat offers no slot: nothing new is placed there
        wait_for("the node to offer no slot", lambda: node(api)["capacity"]["slots"] == 0, timeout=30, pause=0.3)
        second = runs.launch(sb, version)
        done = wait_run_status(api, first, timeout=120)
        assert done["status"] == "succeeded", done  # finished, not cancelled
        out, err = drain.communicate(timeout=120)
        assert drain.returncode == 0, err
        wait_for("the drained agent to stop", lambda: agent_pid() is None, timeout=60)
        log = (state_dir() / "logs" / "runner-agent.log").read_text()
        assert "drained: no run left, stopping" in log
        assert api.ok("GET", f"/v1/runs/{second}", expect=(200,))["status"] == "queued"
    finally:
        if drain.poll() is None:
            drain.kill()
            drain.wait()
