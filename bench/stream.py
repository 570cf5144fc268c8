#!/usr/bin/python3
"""Event emitted by the runner -> received by websocket viewers of
/v1/runs/{id}/stream (issue 10 point 4), against a running local stack.

For each (rate, viewers) case one command run creates distinct files at the
given rate of file_access events (each file: one `create` and one `write`
event; distinct names, so coalescing never merges them), while V viewers,
each its own process (bench/stream_viewer.c, a C client that takes the
receive time first and scans only "kind" and "ts"), are connected to the run's stream before the first
file is made. Latency of an event = the viewer's receive time - the event's
`ts` (set by the runner-agent when it emits the event; same host clock).
Prints p50/p99/max per case next to the issue's reference and target.

Only loopback traffic (endpoints.env of $PADDOCK_STATE_DIR, default .paddock).
  BENCH_CASES="1000:1,1000:5,10000:1,10000:5"   rate:viewers pairs
  BENCH_EVENTS=15000                             events per case (stay below
                                                 the runner's PADDOCK_RUN_MAX_FILE_EVENTS)
"""
import os
import statistics
import subprocess
import sys
import time
import urllib.parse

from benchlib import login, pct

CASES = [tuple(int(x) for x in c.split(":"))
         for c in os.environ.get("BENCH_CASES", "1000:1,1000:5,10000:1,10000:5").split(",")]
EVENTS = int(os.environ.get("BENCH_EVENTS", "15000"))

# runs in the sandbox: distinct files at `rate` events/s (2 events per file),
# paced in 10 ms ticks, after a pause that lets the viewers connect
MAKER = r"""
import os, sys, time
rate, events = int(sys.argv[1]), int(sys.argv[2])
files = events // 2
per_tick = max(1, rate // 2 // 100)
time.sleep(2)
t0 = time.monotonic(); i = 0
while i < files:
    for _ in range(min(per_tick, files - i)):
        with open("f%d" % i, "w") as f:
            f.write("x")
        i += 1
    due = t0 + i * 2.0 / rate
    d = due - time.monotonic()
    if d > 0:
        time.sleep(d)
print("made %d files in %.2f s" % (files, time.monotonic() - t0))
"""


def viewer_binary():
    """The C viewer (bench/stream_viewer.c): $BENCH_VIEWER, else the one in
    $PADDOCK_BUILD_DIR (default build/)."""
    if os.environ.get("BENCH_VIEWER"):
        return os.environ["BENCH_VIEWER"]
    build = os.environ.get("PADDOCK_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "build"))
    return os.path.join(build, "services", "api", "paddock-stream-viewer")


def start_viewer(api, token, rid, want):
    """Starts one C viewer of the run's stream; returns it once connected.
    Its stdout is one latency (us) per file_access event."""
    u = urllib.parse.urlsplit(api)
    p = subprocess.Popen([viewer_binary(), u.hostname, str(u.port), "/v1/runs/%s/stream?after=0" % rid, str(want)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, PADDOCK_TOKEN=token))
    line = p.stderr.readline()
    if line.strip() != "ready":
        raise RuntimeError("viewer did not connect: %s" % line.strip())
    return p


def main():
    api, s, token, team = login()
    print("Paddock event -> websocket latency, %d file_access events per case; load average %s" % (
        EVENTS, " ".join(open("/proc/loadavg").read().split()[:3])))
    for rate, viewers in CASES:
        sb = s.post(api + "/v1/sandboxes", json={
            "name": "bench-stream-%d" % time.time_ns(), "team": team,
            "spec": {"agent": {"type": "command",
                               "command": ["python3", "-c", MAKER, str(rate), str(EVENTS)]},
                     "limits": {"timeout_s": 300, "disk_mb": 512}}})
        sb.raise_for_status()
        sid = sb.json()["id"]
        v = s.post(api + "/v1/sandboxes/%s/versions" % sid).json()["version"]
        r = s.post(api + "/v1/runs", json={"sandbox": sid, "version": v, "team": team})
        r.raise_for_status()
        rid = r.json()["id"]
        procs = [start_viewer(api, token, rid, EVENTS) for _ in range(viewers)]
        lats = []
        for p in procs:
            out, _ = p.communicate(timeout=600)
            lats.append([int(x) / 1000.0 for x in out.split()])
        all_lat = [x for lat in lats for x in lat]
        if os.environ.get("BENCH_TRACE"):
            # latency along the run (seq order), to tell a backlog from a stall
            lat = lats[0]
            print("  max latency per 500 events:", [round(max(lat[i:i + 500])) for i in range(0, len(lat), 500)])
        if not all_lat:
            print("%6d ev/s, %d viewer(s): no samples (run %s)" % (rate, viewers, rid))
            continue
        print("%6d ev/s, %d viewer(s): n=%d p50=%.1f ms p99=%.1f ms max=%.1f ms  (run %s)" % (
            rate, viewers, len(all_lat), statistics.median(all_lat), pct(all_lat, 99), max(all_lat), rid))
    print("reference (issue 10): 1 viewer p99 154 ms at ~1,200 ev/s; p50 1.04 s / p99 1.57 s at ~4,600 ev/s; "
          "target p99 <= 50 ms at 10k ev/s with several viewers")
    print("load average after: %s" % " ".join(open("/proc/loadavg").read().split()[:3]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
