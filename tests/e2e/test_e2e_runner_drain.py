"""The runner's local drain, what the DaemonSet's preStop runs (issue 16;
docs/CONTRACTS.md "Node drain"): `paddock-runner-agent drain` makes the
node offer no slot (nothing new is placed there), lets the running run
finish, and the agent stops once idle; a new agent takes runs again. The
test restarts the stack's runner-agent with stack.sh up afterwards."""

import pathlib
import subprocess

import pytest

from conftest import (command_spec, read_env_file, stack_build_dir, stack_pid, stack_up, state_dir, wait_for,
                      wait_run_status)

NODE = "local-node-1"


def agent_pid():
    return stack_pid("runner-agent")


def node(api):
    return {n["id"]: n for n in api.ok("GET", "/v1/nodes", expect=(200,))["items"]}[NODE]


@pytest.fixture
def runner_back_up():
    yield
    sd = read_env_file(state_dir() / "env" / "runner-agent.env")["PADDOCK_RUNNER_STATE_DIR"]
    pathlib.Path(sd, "draining").unlink(missing_ok=True)
    if agent_pid() is None:
        stack_up()


def test_local_drain_finishes_runs_then_stops(endpoints, api, runs, runner_back_up):
    pid = agent_pid()
    assert pid, "the stack's runner-agent is not running"
    sb = runs.create_sandbox(command_spec(["/bin/sleep", "8"], timeout_s=60))
    version = runs.publish(sb)
    first = runs.launch(sb, version)
    wait_for("the first run to run", lambda: api.ok("GET", f"/v1/runs/{first}", expect=(200,))["status"] == "running",
             timeout=90, pause=0.3)

    env = {"PATH": "/usr/bin:/bin", "PADDOCK_RUNNER_STATE_DIR": endpoints.need("PADDOCK_RUNNER_STATE_DIR")}
    drain = subprocess.Popen([str(stack_build_dir() / "services/runner-agent/paddock-runner-agent"), "drain",
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
