"""POST /v1/runs/{id}/cancel stops a running run: the runner-agent kills the
sandbox within a second of the control message reaching the node (it reports
the measured delay), ends the run `cancelled` naming who asked, and still
destroys everything."""

import json
import time

import websocket

import conftest as c


def wait_running(endpoints, token, run_id, timeout=60):
    ws = websocket.create_connection(c.e2e.stream_url(endpoints, run_id),
                                     header=[f"Authorization: Bearer {token}"], timeout=timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ev = json.loads(ws.recv())
            if ev.get("kind") == "status" and ev["data"].get("status") == "running":
                return ev
            assert not ev.get("terminal"), f"run ended before running: {ev}"
    finally:
        ws.close()
    raise AssertionError(f"run {run_id} not running within {timeout} s")


def test_cancel_running_run(endpoints, admin_token, api, runs, me):
    run_id = runs.start(c.spec(["/bin/sleep", "300"], timeout_s=600))
    wait_running(endpoints, admin_token, run_id)
    asked = time.monotonic()
    api.ok("POST", f"/v1/runs/{run_id}/cancel", json={"reason": "security suite cancel"},
           expect=(200, 202))
    res = c.e2e.wait_terminal(endpoints, admin_token, run_id, timeout=60)
    elapsed = time.monotonic() - asked
    term = c.terminal_event(res)
    assert res.terminal == "cancelled", term
    assert term["data"].get("requested_by"), term
    assert "security suite cancel" in term["data"].get("reason", ""), term
    delay = term["data"].get("cancel_delay_ms")
    print(f"cancel: terminal {elapsed:.2f} s after the request, node-side kill delay {delay} ms")
    assert delay is not None and delay < 1000, term
    assert elapsed < 15, f"cancel took {elapsed:.1f} s end to end"
    c.e2e.assert_node_clean(run_id, res)
    run = c.e2e.wait_run_status(api, run_id)
    assert run["status"] == "cancelled", run
