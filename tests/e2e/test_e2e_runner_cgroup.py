"""Every sandbox's cgroup is made under PADDOCK_RUNNER_CGROUP_PARENT (issue
16; docs/CONTRACTS.md "Runner cgroup parent"): on a Kubernetes node the
cgroup the node reserves for the runs, so the kubelet accounts them. The
local stack sets the parent to paddock/runs; a run's cgroup must be
<hierarchy>/paddock/runs/<run id> in every hierarchy it is in, and gone
after the run."""

import os

from conftest import _cgroup_dirs_named, assert_node_clean, command_spec, read_env_file, state_dir, wait_for, \
    wait_terminal


def test_run_cgroup_lives_under_the_parent(endpoints, admin_token, runs):
    parent = read_env_file(state_dir() / "env" / "runner-agent.env").get("PADDOCK_RUNNER_CGROUP_PARENT")
    assert parent == "paddock/runs", parent
    run_id = runs.start(command_spec(["/bin/sleep", "6"], timeout_s=60))
    dirs = wait_for(f"run {run_id}'s cgroup", lambda: _cgroup_dirs_named(run_id, max_depth=6), timeout=90, pause=0.2)
    for d in dirs:
        assert os.path.dirname(d).endswith("/" + parent), f"{d} is not under .../{parent}"
    # nothing of the run directly under the hierarchies' roots or the old fixed parent
    for d in dirs:
        rel = d.split("/sys/fs/cgroup/", 1)[1]
        assert f"{parent}/{run_id}" in rel, rel
    res = wait_terminal(endpoints, admin_token, run_id)
    assert res.terminal == "succeeded", res.statuses
    assert_node_clean(run_id, res)
