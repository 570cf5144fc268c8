"""Every sandbox's cgroup is made under PADDOCK_RUNNER_CGROUP_PARENT (issue
16; docs/CONTRACTS.md "Runner cgroup parent"): on a Kubernetes node the
cgroup the node reserves for the runs, so the kubelet accounts them. The
local stack sets the parent to paddock/runs; a run's cgroup must be
<hierarchy>/paddock/runs/<sandbox id> in every hierarchy it is in (the run
id, or a warm-pool sandbox's own id: its running event names it), and gone
after the run."""

import os

from conftest import _cgroup_dirs_named, all_events, assert_node_clean, command_spec, read_env_file, state_dir, \
    wait_for, wait_terminal


def _sandbox_of(api, run_id):
    """The sandbox id the run's running status event names, once stored."""
    for e in all_events(api, run_id):
        if e["kind"] == "status" and e["data"].get("status") == "running":
            return (e["data"].get("sandbox") or {}).get("id") or run_id
    return None


def test_run_cgroup_lives_under_the_parent(endpoints, admin_token, api, runs):
    parent = read_env_file(state_dir() / "env" / "runner-agent.env").get("PADDOCK_RUNNER_CGROUP_PARENT")
    assert parent == "paddock/runs", parent
    run_id = runs.start(command_spec(["/bin/sleep", "6"], timeout_s=60))
    sandbox = wait_for(f"run {run_id} running", lambda: _sandbox_of(api, run_id), timeout=90, pause=0.2)
    dirs = wait_for(f"run {run_id}'s cgroup", lambda: _cgroup_dirs_named(sandbox, max_depth=6), timeout=90, pause=0.2)
    for d in dirs:
        assert os.path.dirname(d).endswith("/" + parent), f"{d} is not under .../{parent}"
    # nothing of the run directly under the hierarchies' roots or the old fixed parent
    for d in dirs:
        rel = d.split("/sys/fs/cgroup/", 1)[1]
        assert f"{parent}/{sandbox}" in rel, rel
    res = wait_terminal(endpoints, admin_token, run_id)
    assert res.terminal == "succeeded", res.statuses
    assert_node_clean(run_id, res)
