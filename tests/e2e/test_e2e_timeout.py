"""limits.timeout_s is enforced: a command that would sleep two minutes ends
`timed_out` a couple of seconds after its limit, and the node is left clean."""

import time

from conftest import all_events, assert_node_clean, command_spec, wait_run_status, wait_terminal


def test_timeout_enforced(endpoints, admin_token, api, runs):
    run_id = runs.start(command_spec(["/bin/sh", "-c", "echo sleeping; exec sleep 120"], timeout_s=2))
    started = time.monotonic()
    # Far below the 120 s the command would take; generous above the 2 s limit.
    res = wait_terminal(endpoints, admin_token, run_id, timeout=30)
    elapsed = time.monotonic() - started
    print(f"run {run_id} ended {res.terminal} {elapsed:.1f} s after launch")

    assert res.terminal == "timed_out", f"statuses: {res.statuses}"
    assert "running" in res.statuses
    assert_node_clean(run_id, res)

    run = wait_run_status(api, run_id)
    assert run["status"] == "timed_out", run
    # The history shows the same ending.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        events = all_events(api, run_id)
        if events and events[-1]["kind"] == "status" and events[-1]["data"].get("status") == "timed_out":
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"history does not end with timed_out: {[e['kind'] for e in events]}")
