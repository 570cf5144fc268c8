#!/usr/bin/python3
"""Idle CPU of whole local stacks, side by side over the same window.

For each state dir of BENCH_STATES (comma-separated; default
$PADDOCK_STATE_DIR), the CPU each stack process used (its pid file in
<state>/pids/ with every descendant, children that exited included:
bench/stream.py stack_cpu) over BENCH_SECONDS (60) with no run going, in
ms of CPU per second (10 = 1% of one core), per service and in total. Two
stacks measured together (an old and a new build) share the machine's load,
so their ratio means more than either figure. Issue 10 §4: a shorter fetch
wait on the launch path must not cost a core idle.
"""
import os
import sys
import time

from stream import stack_cpu


def cpu_of(state):
    os.environ["PADDOCK_STATE_DIR"] = state  # stack_cpu reads the state dir from it
    return stack_cpu()


def main():
    states = [s for s in os.environ.get("BENCH_STATES", os.environ.get("PADDOCK_STATE_DIR", ".paddock")).split(",") if s]
    seconds = float(os.environ.get("BENCH_SECONDS", "60"))
    before = {s: cpu_of(s) for s in states}
    t0 = time.monotonic()
    time.sleep(seconds)
    after = {s: cpu_of(s) for s in states}
    dt = time.monotonic() - t0
    with open("/proc/loadavg") as f:
        print("idle CPU over %.0f s, ms of CPU per s (10 = 1%% of a core); loadavg %s" % (dt, f.read().strip()))
    names = sorted({n for s in states for n in after[s]})
    print("%-14s" % "" + "".join("%14s" % os.path.basename(os.path.normpath(s)) for s in states))
    for n in names:
        print("%-14s" % n + "".join("%14.1f" % ((after[s].get(n, 0) - before[s].get(n, 0)) * 1000 / dt)
                                    for s in states))
    print("%-14s" % "total" + "".join("%14.1f" % (sum(after[s].get(n, 0) - before[s].get(n, 0) for n in names)
                                                  * 1000 / dt) for s in states))
    return 0


if __name__ == "__main__":
    sys.exit(main())
