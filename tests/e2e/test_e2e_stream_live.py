"""The run stream live (issue 10 §4 and its leftover 8): a platform verdict
(env.seq 0, signed by the scheduler, stored by evidence at the run's highest
seq + 1) reaches a viewer that is already watching as it happens, with its
stored seq, and the stream then ends; every message is one event.

The run is reported by the test's own enrolled node and the verdict signed
with the scheduler's key (as tests/e2e/test_e2e_ingest.py does), so the
moment the verdict is sent is known to the test."""
import json
import time

import pytest
import websocket

from conftest import all_events, command_spec, enroll_test_node, stream_url, wait_for
from test_e2e_ingest import _event, _fake_run, _scheduler_signer, _send

NODE = "e2e-stream-node"
# The stream's idle safety poll is once a second (stream.c IDLE_POLL_US):
# a verdict sent just after one poll reached a viewer only at the next, ~0.9 s
# later, when it was read from history only. Pushed live, it takes evidence's
# lag (tens of ms on an idle stack) plus at most a few 10-40 ms history reads.
LIVE_WITHIN_S = 0.6


@pytest.fixture(scope="module")
def stream_node(endpoints):
    return enroll_test_node(endpoints, NODE)


@pytest.fixture(scope="module")
def plain_sandbox(runs):
    sb = runs.create_sandbox(command_spec(["/bin/true"], timeout_s=30))
    return sb, runs.publish(sb)


def _recv(ws, timeout):
    """(opcode, text or close code, receive time) of the next frame."""
    ws.settimeout(timeout)
    opcode, data = ws.recv_data(control_frame=True)
    at = time.monotonic()
    if opcode == websocket.ABNF.OPCODE_CLOSE:
        return opcode, int.from_bytes(data[:2], "big") if len(data) >= 2 else None, at
    return opcode, data.decode(), at


def _verdict_latency(endpoints, api, admin_token, me, team_id, tenant_id, sandbox, node):
    """One fake run: a node reports two statuses and dies, the viewer already
    watches, the scheduler's verdict is sent just after the session's idle
    history poll. Checks what the viewer saw; returns seconds from sending
    the verdict to the viewer receiving it."""
    run_id = _fake_run(endpoints, tenant_id, team_id, sandbox, me, node=NODE)
    ev = lambda seq, kind, data, **kw: _event(tenant_id, team_id, run_id, seq, kind, data, **kw)  # noqa: E731
    _send(node, endpoints, run_id,
          ev(1, "status", {"status": "provisioning"}, status="provisioning"),
          ev(2, "status", {"status": "running"}, status="running"))
    wait_for("two events stored", lambda: len(all_events(api, run_id)) == 2, timeout=60, pause=0.3)

    ws = websocket.create_connection(stream_url(endpoints, run_id, 0),
                                     header=[f"Authorization: Bearer {admin_token}"], timeout=30)
    try:
        seen = []
        for _ in range(2):
            opcode, text, at = _recv(ws, 30)
            assert opcode == websocket.ABNF.OPCODE_TEXT, (opcode, text)
            seen.append(json.loads(text))
        assert [e["seq"] for e in seen] == [1, 2], seen
        # the session's idle poll runs 1 s after it sent seq 2: send just after it
        time.sleep(max(0.0, at + 1.15 - time.monotonic()))
        sched = _scheduler_signer(endpoints)
        sent = time.monotonic()
        _send(sched, endpoints, run_id,
              ev(0, "status", {"status": "failed", "reason": "node stopped heartbeating"}, status="failed",
                 terminal=True))
        opcode, text, got = _recv(ws, 30)
        assert opcode == websocket.ABNF.OPCODE_TEXT, (opcode, text)
        verdict = json.loads(text)
        assert verdict["seq"] == 3 and verdict["kind"] == "status" and verdict["actor"] == "platform", verdict
        assert verdict["data"]["status"] == "failed" and verdict["run"] == run_id, verdict
        assert set(verdict) == {"run", "seq", "ts", "kind", "actor", "data"}, verdict
        # the terminal status ends the stream: a normal close, nothing after it
        opcode, code, _ = _recv(ws, 30)
        assert opcode == websocket.ABNF.OPCODE_CLOSE and code == 1000, (opcode, code)
    finally:
        ws.close()
    stored = all_events(api, run_id)
    assert [e["seq"] for e in stored] == [1, 2, 3] and stored[2]["data"]["status"] == "failed", stored
    return got - sent


def test_platform_verdict_is_pushed_live(endpoints, api, admin_token, me, team_id, tenant_id, plain_sandbox,
                                         stream_node):
    """A node reports two statuses and then dies: the scheduler's verdict
    reaches a viewer already watching with the seq evidence stored it at (3),
    in the same format as every other event, then the stream closes normally
    (the viewer saw 1, 2, 3: no gap, no duplicate); and it arrives within
    LIVE_WITHIN_S of being sent, not at the stream's next idle history poll
    (~0.85 s later at the least). Evidence's lag is part of that time: on a
    very busy machine one attempt may exceed it, so up to three are made; read
    from history only, every attempt would."""
    lat = []
    for _ in range(3):
        lat.append(_verdict_latency(endpoints, api, admin_token, me, team_id, tenant_id, plain_sandbox, stream_node))
        if lat[-1] < LIVE_WITHIN_S:
            break
    assert min(lat) < LIVE_WITHIN_S, f"the verdict reached the viewer {[round(x, 3) for x in lat]} s after it was sent"
