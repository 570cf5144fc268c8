#!/usr/bin/python3
"""Launch latency against a running local stack (./dev up).

For N runs of a trivial command sandbox, measures from POST /v1/runs to
  * the first event of the run received on its websocket, and
  * the `running` status event (the agent process is running in its sandbox),
and prints median, p99 and spread next to the TARGETS.md figures. Reads
endpoints.env and credentials from $PADDOCK_STATE_DIR (default .paddock).
Traffic goes only to the loopback stack.
"""
import json
import os
import statistics
import sys
import time

import websocket

from benchlib import login, pct

N = int(os.environ.get("BENCH_RUNS", "20"))


def main():
    api, s, token, team = login()
    sb = s.post(api + "/v1/sandboxes", json={"name": "bench-%d" % time.time_ns(), "team": team,
                "spec": {"agent": {"type": "command", "command": ["/bin/true"]},
                         "limits": {"timeout_s": 60}}})
    sb.raise_for_status()
    sid = sb.json()["id"]
    v = s.post(api + "/v1/sandboxes/%s/versions" % sid).json()["version"]

    first, running = [], []
    ws_url = api.replace("http://", "ws://")
    # one warm-up run (first use of topics and connections) is not counted
    for i in range(N + 1):
        t0 = time.monotonic()
        r = s.post(api + "/v1/runs", json={"sandbox": sid, "version": v, "team": team})
        r.raise_for_status()
        rid = r.json()["id"]
        ws = websocket.create_connection("%s/v1/runs/%s/stream?after=0" % (ws_url, rid),
                                         header=["Authorization: Bearer " + token], timeout=60)
        t_first = t_running = None
        while True:
            try:
                msg = ws.recv()
            except websocket.WebSocketConnectionClosedException:
                break
            if not msg:
                break
            ev = json.loads(msg)
            now = time.monotonic()
            if t_first is None:
                t_first = now - t0
            if ev["kind"] == "status" and ev["data"].get("status") == "running" and t_running is None:
                t_running = now - t0
        ws.close()
        if i == 0:
            continue
        if t_first is not None:
            first.append(t_first * 1000)
        if t_running is not None:
            running.append(t_running * 1000)

    def show(name, vals, target):
        if not vals:
            print("%-44s no samples" % name)
            return
        print("%-44s n=%d p50=%.1f ms p99=%.1f ms min=%.1f max=%.1f  (target %s)" % (
            name, len(vals), statistics.median(vals), pct(vals, 99), min(vals), max(vals), target))

    print("Paddock launch latency, %d sequential runs of /bin/true (after 1 warm-up run)" % N)
    show("POST /v1/runs -> first event on websocket", first, "-")
    show("POST /v1/runs -> agent process running", running, "p50 <= 50 ms, p99 <= 150 ms")
    print("reference: bare `crun run` here p50 8.5 ms; Daytona 110 ms; E2B 440 ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
