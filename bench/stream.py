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

Where the time goes, per case:
  * CPU per event of each stack process ($PADDOCK_STATE_DIR/pids/*.pid with
    every descendant: postgres backends; the runner-agent's descendants, the
    run's sandbox, apart as "sandbox") and of the viewers, from
    /proc/<pid>/stat before and after (utime+stime, plus what exited children
    left in cutime/cstime), after the stack's idle CPU per second;
  * with the stack's api at PADDOCK_LOG_LEVEL=debug, the hops the api logs as
    "stream timings" (services/api/fanout.c): event ts -> the record's Kafka
    CreateTime (the runner's batching and produce), CreateTime -> the fan-out
    (Kafka), fan-out -> websocket write (lws loop); the rest of the total is
    the socket and the viewer. Per hop: events, mean, and p99 of the worst
    one-second window.

Only loopback traffic (endpoints.env of $PADDOCK_STATE_DIR, default .paddock).
  BENCH_CASES="1000:1,1000:5,10000:1,10000:5"   rate:viewers pairs
  BENCH_EVENTS=15000                             events per case (stay below
                                                 the runner's PADDOCK_RUN_MAX_FILE_EVENTS)
  BENCH_IDLE_S=3                                 seconds of idle stack CPU measured first
"""
import glob
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import urllib.parse

from benchlib import login, pct, state_dir

CASES = [tuple(int(x) for x in c.split(":"))
         for c in os.environ.get("BENCH_CASES", "1000:1,1000:5,10000:1,10000:5").split(",")]
EVENTS = int(os.environ.get("BENCH_EVENTS", "15000"))
IDLE_S = float(os.environ.get("BENCH_IDLE_S", "3"))

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


CLK_TCK = os.sysconf("SC_CLK_TCK")
HOPS = ["runner_to_kafka", "kafka_to_fanout", "fanout_to_write"]  # along the path


def proc_stat():
    """{pid: (ppid, utime+stime, cutime+cstime) in seconds} of every process."""
    out = {}
    for d in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(d) as f:
                st = f.read()
        except OSError:
            continue
        f = st[st.rindex(")") + 2:].split()
        out[int(d.split("/")[2])] = (int(f[1]), (int(f[11]) + int(f[12])) / CLK_TCK,
                                     (int(f[13]) + int(f[14])) / CLK_TCK)
    return out


def stack_cpu():
    """CPU seconds used so far by each stack service: its process, its live
    descendants and the children they reaped. The runner-agent's descendants
    are the runs' sandboxes (crun, the bench's file maker): counted apart as
    "sandbox", so that "runner-agent" is the agent's own event path."""
    st = proc_stat()
    kids = {}
    for pid, (ppid, _, _) in st.items():
        kids.setdefault(ppid, []).append(pid)
    out = {}
    for pf in glob.glob(os.path.join(state_dir(), "pids", "*.pid")):
        try:
            root = int(open(pf).read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        name = os.path.basename(pf)[:-4]
        total, todo = 0.0, [root]
        while todo:
            p = todo.pop()
            if p in st:
                total += st[p][1] + st[p][2]
                todo.extend(kids.get(p, []))
        if name == "runner-agent" and root in st:
            out["sandbox"] = total - st[root][1]
            total = st[root][1]
        out[name] = total
    return out


def api_log_offset():
    try:
        return os.path.getsize(os.path.join(state_dir(), "logs", "api.log"))
    except OSError:
        return None


def hop_timings(offset):
    """The api's "stream timings" lines written since offset, per hop:
    (events, mean ms, worst window's p99 ms)."""
    hops = {}
    if offset is None:
        return hops
    with open(os.path.join(state_dir(), "logs", "api.log"), errors="replace") as f:
        f.seek(offset)
        for line in f:
            if '"stream timings"' not in line:
                continue
            try:
                o = json.loads(line)
            except ValueError:
                continue
            n, s, p99 = hops.get(o["hop"], (0, 0.0, 0.0))
            hops[o["hop"]] = (n + o["n"], s + o["mean_ms"] * o["n"], max(p99, o["p99_ms"]))
    return {k: (n, s / n, p99) for k, (n, s, p99) in hops.items() if n}


def main():
    api, s, token, team = login()
    print("Paddock event -> websocket latency, %d file_access events per case; load average %s" % (
        EVENTS, " ".join(open("/proc/loadavg").read().split()[:3])))
    # what the stack burns with no run (consumers' fetch waits, heartbeats):
    # part of every case's CPU per event, which lasts several seconds
    idle0 = stack_cpu()
    time.sleep(IDLE_S)
    idle1 = stack_cpu()
    idle = {k: (idle1[k] - idle0[k]) / IDLE_S for k in idle1 if k in idle0}
    print("    idle CPU ms/s (%.0f s before the cases): " % IDLE_S + ", ".join(
        "%s %.0f" % (k, v * 1e3) for k, v in sorted(idle.items(), key=lambda kv: -kv[1]) if v > 0))
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
        cpu0, kids0, log0 = stack_cpu(), resource.getrusage(resource.RUSAGE_CHILDREN), api_log_offset()
        t0 = time.monotonic()
        procs = [start_viewer(api, token, rid, EVENTS) for _ in range(viewers)]
        lats = []
        for p in procs:
            out, _ = p.communicate(timeout=600)
            lats.append([int(x) / 1000.0 for x in out.split()])
        time.sleep(1.5)  # the api's last timings line (once a second)
        cpu1, kids1 = stack_cpu(), resource.getrusage(resource.RUSAGE_CHILDREN)
        took = time.monotonic() - t0
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
        # CPU per event (the case's run includes its launch and a 2 s pause)
        cpu = {k: cpu1[k] - cpu0[k] for k in cpu1 if k in cpu0}
        cpu["viewers"] = (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
        print("    CPU us/event over %.1f s, all / net of idle: " % took + ", ".join(
            "%s %.1f/%.1f" % (k, v * 1e6 / EVENTS, (v - idle.get(k, 0.0) * took) * 1e6 / EVENTS)
            for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]) if v > 0))
        hops = hop_timings(log0)
        if hops:
            print("    hops (events, mean ms, worst-second p99 ms): " + ", ".join(
                "%s %d %.1f %.0f" % (k, n, m, p) for k, (n, m, p) in sorted(hops.items(), key=lambda kv: HOPS.index(kv[0]) if kv[0] in HOPS else 9)))
    print("reference (issue 10): 1 viewer p99 154 ms at ~1,200 ev/s; p50 1.04 s / p99 1.57 s at ~4,600 ev/s; "
          "target p99 <= 50 ms at 10k ev/s with several viewers")
    print("load average after: %s" % " ".join(open("/proc/loadavg").read().split()[:3]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
