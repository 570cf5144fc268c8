#!/usr/bin/python3
"""Launch latency against a running local stack (./dev up).

For N runs of a trivial command sandbox, measures from POST /v1/runs to
  * the first event of the run received on its websocket, and
  * the `running` status event (the agent process is running in its sandbox),
and prints median, p99 and spread next to the TARGETS.md figures, then where
the time went, hop by hop:
  * from the CreateTime of each run's records on paddock.runs.requested (the
    api's outbox relay produced it), paddock.runs.assigned (the scheduler
    placed it) and paddock.runs.status (the runner-agent's `provisioning` and
    `running` status events), read with a consumer of its own from the end of
    each topic (timestamps in ms, one machine's clock);
  * inside the runner-agent, the phases of its "agent running" log line
    (logs/runner-agent.log of the state dir: accept, provisioning event, dirs,
    netns, egress, bundle, capture, crun, exec, running event).
With BENCH_POOL=compare, runs alternate between a definition the runner's
warm pool serves and one it cannot (PADDOCK_RUNNER_WARM_POOL, pool.h), and
the figures are printed per class (pooled, fresh), as each run's `running`
event says.
Reads endpoints.env and credentials from $PADDOCK_STATE_DIR (default .paddock).
Traffic goes only to the loopback stack.
"""
import json
import os
import statistics
import sys
import time

import websocket
from confluent_kafka import Consumer, TopicPartition, OFFSET_END

from benchlib import load_env, login, pct, state_dir

N = int(os.environ.get("BENCH_RUNS", "20"))
TOPICS = ("paddock.runs.requested", "paddock.runs.assigned", "paddock.runs.status")
# RunEvent.status (field 6) as protobuf writes it: tag 0x32, length, text
STATUS_MARK = {s: b"\x32" + bytes([len(s)]) + s.encode() for s in ("provisioning", "running")}


class Records:
    """CreateTime (ms) of each run's records on the launch path's topics."""

    def __init__(self, bootstrap):
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-launch-%d" % time.time_ns(),
                           "enable.auto.commit": False, "fetch.wait.max.ms": 5})
        parts = []
        md = self.c.list_topics(timeout=10)
        for t in TOPICS:
            parts += [TopicPartition(t, p, OFFSET_END) for p in md.topics[t].partitions]
        self.c.assign(parts)
        self.pending = []

    def drain(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            m = self.c.poll(0.05)
            if m is not None and not m.error():
                self.pending.append((m.topic(), m.key() or b"", m.value() or b"", m.timestamp()[1]))

    def of_run(self, rid, t0_ms):
        """{hop: ms} for run rid: requested and status records carry the run
        id as key; an assignment (keyed by node) is the first after t0."""
        out = {}
        key = rid.encode()
        for topic, k, v, ts in self.pending:
            if topic == "paddock.runs.requested" and k == key:
                out.setdefault("requested", ts)
            elif topic == "paddock.runs.assigned" and key in v and ts >= t0_ms:
                out.setdefault("assigned", ts)
            elif topic == "paddock.runs.status" and k == key:
                for s, mark in STATUS_MARK.items():
                    if mark in v:
                        out.setdefault(s, ts)
        return out


def runner_phases(rid):
    """The phases of the runner-agent's "agent running" line for run rid."""
    try:
        with open(os.path.join(state_dir(), "logs", "runner-agent.log"), errors="replace") as f:
            for line in f:
                if rid in line and '"agent running"' in line:
                    d = json.loads(line)
                    return {k: float(v) for k, v in d.items() if k.endswith("_ms")}
    except (OSError, ValueError):
        pass
    return {}


def make_sandbox(api, s, team, limits):
    sb = s.post(api + "/v1/sandboxes", json={"name": "bench-%d" % time.time_ns(), "team": team,
                "spec": {"agent": {"type": "command", "command": ["/bin/true"]},
                         "limits": limits}})
    sb.raise_for_status()
    sid = sb.json()["id"]
    return sid, s.post(api + "/v1/sandboxes/%s/versions" % sid).json()["version"]


class Samples:
    """One class of runs (pooled or fresh sandbox): their figures."""

    def __init__(self):
        self.first, self.running, self.hops, self.phases = [], [], {}, {}


def main():
    api, s, token, team = login()
    env = load_env(os.path.join(state_dir(), "endpoints.env"))
    rec = Records(env["PADDOCK_KAFKA_BOOTSTRAP"])
    # BENCH_POOL=compare: every other run from a definition the warm pool
    # cannot serve (a non-default pids limit: pool.h), so pooled and fresh
    # launches interleave on the same stack under the same load; each run is
    # counted as what its `running` event says (sandbox.pooled)
    compare = os.environ.get("BENCH_POOL") == "compare"
    defs = [make_sandbox(api, s, team, {"timeout_s": 60})]
    if compare:
        defs.append(make_sandbox(api, s, team, {"timeout_s": 60, "pids": 511}))

    by_kind = {}  # "pooled" | "fresh" -> Samples
    ws_url = api.replace("http://", "ws://")
    # one warm-up run per definition (first use of topics and connections) is not counted
    for i in range(N + len(defs)):
        sid, v = defs[i % len(defs)]
        rec.drain(0.2)
        rec.pending = []
        t0_wall = time.time()
        t0 = time.monotonic()
        r = s.post(api + "/v1/runs", json={"sandbox": sid, "version": v, "team": team})
        r.raise_for_status()
        rid = r.json()["id"]
        ws = websocket.create_connection("%s/v1/runs/%s/stream?after=0" % (ws_url, rid),
                                         header=["Authorization: Bearer " + token], timeout=60)
        t_first = t_running = None
        pooled = False
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
                pooled = bool((ev["data"].get("sandbox") or {}).get("pooled"))
        ws.close()
        if i < len(defs):
            continue
        k = by_kind.setdefault("pooled" if pooled else "fresh", Samples())
        if t_first is not None:
            k.first.append(t_first * 1000)
        if t_running is None:
            continue
        k.running.append(t_running * 1000)
        rec.drain(0.3)
        ts = rec.of_run(rid, int(t0_wall * 1000) - 1)
        marks = [("POST -> runs.requested (api tx, outbox relay)", t0_wall * 1000, ts.get("requested")),
                 ("runs.requested -> runs.assigned (scheduler)", ts.get("requested"), ts.get("assigned")),
                 ("runs.assigned -> provisioning status (runner)", ts.get("assigned"), ts.get("provisioning")),
                 ("provisioning -> running status (sandbox)", ts.get("provisioning"), ts.get("running")),
                 ("running status -> websocket (fan-out)", ts.get("running"), (t0_wall + t_running) * 1000)]
        for name, a, b in marks:
            if a is not None and b is not None:
                k.hops.setdefault(name, []).append(b - a)
        for ph, ms in runner_phases(rid).items():
            k.phases.setdefault(ph, []).append(ms)

    def show(name, vals, target):
        if not vals:
            print("%-48s no samples" % name)
            return
        print("%-48s n=%d p50=%.1f ms p99=%.1f ms min=%.1f max=%.1f  (target %s)" % (
            name, len(vals), statistics.median(vals), pct(vals, 99), min(vals), max(vals), target))

    def show_hop(name, vals):
        print("  %-52s p50 %6.1f ms  p99 %6.1f ms" % (name, statistics.median(vals), pct(vals, 99)))

    print("Paddock launch latency, %d sequential runs of /bin/true (after %d warm-up run%s)%s" % (
        N, len(defs), "s" if len(defs) > 1 else "", ", pooled and fresh sandboxes interleaved" if compare else ""))
    with open("/proc/loadavg") as f:
        print("loadavg at the end:", f.read().strip(), "(a shared machine: compare the classes, not runs of other days)")
    for kind, k in sorted(by_kind.items()):
        print("== %s sandbox (%d runs)" % (kind, len(k.running)))
        show("POST /v1/runs -> first event on websocket", k.first, "-")
        show("POST /v1/runs -> agent process running", k.running, "p50 <= 50 ms, p99 <= 150 ms")
        print("per hop (Kafka record CreateTime, ms resolution):")
        for name, vals in k.hops.items():
            show_hop(name, vals)
        if k.phases:
            print("inside the runner-agent (its \"agent running\" log line, from the assignment's arrival):")
            for ph, vals in k.phases.items():
                show_hop(ph[:-3], vals)
    print("reference: bare `crun run` here p50 8.5 ms; Daytona 110 ms; E2B 440 ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
