#!/usr/bin/python3
"""The chaos suite (issue 15 §1, docs/CONTRACTS.md "Chaos suite"): drives runs
through the public API while a fault injector, bounded in time and count,
breaks the local stack's parts one at a time; then stops the faults, waits
for the stack to settle and checks that nothing was lost:

* every run is terminal (a run may end failed, cancelled or timed_out under
  faults: only a run that never ends is lost);
* every run's stored events are contiguous from seq 1 with no duplicate, and
  the history holds the run's terminal status;
* every succeeded run's artifacts download with their manifest's sha256 and
  size;
* usage is counted once per run (GET /v1/usage group_by=sandbox: each run has
  a sandbox of its own);
* the tenant's audit chain verifies (GET /v1/audit/verify);
* no sandbox, network namespace, cgroup or mount of the runs is left on the
  node;
* every service's /readyz is ready at the end (the stall check of
  kafka/consume_loop.h included).

Faults (each logged with its time): SIGKILL of a service (api, scheduler,
runner-agent, evidence, billing), then `deploy/local/stack.sh up`, which starts
what is not running (the restart is the stack's); SIGSTOP of the Kafka mock
(every broker) for a few seconds, then SIGCONT; a broker down and up, and
request errors, through the mock's fault API (PADDOCK_KAFKA_MOCK_CONTROL);
PostgreSQL stopped (pg_ctl, as the stack stops it) and started by the stack;
RGW killed and started by the stack.

Runs against the stack of endpoints.env (exported), restores it in any case
(SIGCONT, fault API reset, stack.sh up, every /readyz ready) and prints the
figures. Exit status: 0 nothing lost, 1 something lost, 2 the suite could not
run. It asserts invariants, never timings. Every address it contacts is
loopback or the stack's test upstream network namespace.
"""

import argparse
import collections
import hashlib
import os
import pathlib
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
import uuid

import requests

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))
import conftest  # noqa: E402  (the e2e helpers: Api, Upstream, node checks, OpenAPI validation)
from conftest import (TERMINAL, Api, Upstream, assert_loopback_url, login, node_leftovers,  # noqa: E402
                      read_env_file, state_dir, unique_name)

REPO = HERE.parents[1]
STACK = REPO / "deploy" / "local" / "stack.sh"
PY = "/usr/bin/python3"
SERVICES = ("api", "scheduler", "runner-agent", "evidence", "billing")
FAULT_KINDS = tuple(f"kill:{s}" for s in SERVICES) + (
    "kafka:freeze", "kafka:broker-down", "kafka:request-errors", "postgresql:restart", "rgw:restart")

T0 = time.monotonic()


def now():
    return time.monotonic() - T0


def say(msg):
    print(f"[chaos {now():7.1f}s] {msg}", flush=True)


# ---------------------------------------------------------------- the stack


class Stack:
    """The local stack of endpoints.env: its pids, its restarts, its faults."""

    def __init__(self):
        self.state = state_dir()
        self.env = dict(os.environ)
        self.lock = threading.Lock()  # one stack.sh at a time
        data = self.state / "data-dir"
        self.data = pathlib.Path(data.read_text().strip()) if data.exists() else self.state
        control = self.env.get("PADDOCK_KAFKA_MOCK_CONTROL", "")
        if not control:
            raise SystemExit("PADDOCK_KAFKA_MOCK_CONTROL is not set: the stack's endpoints.env predates "
                             "the Kafka mock's fault API (restart the stack)")
        host, _, port = control.rpartition(":")
        assert_loopback_url(f"http://{host}:{port}/")
        self.control = (host, int(port))

    def pid(self, part):
        try:
            return int((self.state / "pids" / f"{part}.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def alive(self, pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    def up(self):
        """stack.sh up: starts whatever is not running (the lead's rule: the
        restart after a fault is the stack's)."""
        with self.lock:
            env = dict(self.env)
            r = subprocess.run(["bash", str(STACK), "up"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, timeout=900)
            if r.returncode != 0:
                say(f"stack.sh up failed ({r.returncode}): {r.stdout[-1500:]}")
                return False
            fresh = read_env_file(self.state / "endpoints.env")
            self.env.update(fresh)
            os.environ.update(fresh)
            return True

    def kill(self, part, sig=signal.SIGKILL):
        pid = self.pid(part)
        if not pid or not self.alive(pid):
            return None
        os.kill(pid, sig)
        if sig == signal.SIGKILL:
            for _ in range(200):
                if not self.alive(pid):
                    break
                time.sleep(0.05)
        return pid

    def mock(self, line):
        """One command of the Kafka mock's fault API; its answer line."""
        with socket.create_connection(self.control, timeout=10) as s:
            s.sendall(line.encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
        answer = buf.decode().strip()
        if not answer.startswith("ok"):
            raise RuntimeError(f"fault API: {line!r} -> {answer!r}")
        return answer

    def pg_stop(self):
        pg_bin = sorted(pathlib.Path("/usr/lib/postgresql").glob("*/bin"),
                        key=lambda p: [int(x) for x in p.parent.name.split(".") if x.isdigit()])[-1]
        with self.lock:
            subprocess.run(["runuser", "-u", "postgres", "--", str(pg_bin / "pg_ctl"), "-D",
                            str(self.data / "pg" / "data"), "-m", "fast", "-w", "-t", "60", "stop"],
                           cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)

    def readiness(self):
        """{service: None when ready, else why} over every /readyz."""
        urls = {"api": self.env.get("PADDOCK_API_OPS_URL") or self.env["PADDOCK_API_URL"]}
        for s in SERVICES[1:]:
            u = self.env.get(f"PADDOCK_{s.upper().replace('-', '_')}_OPS_URL")
            if u:
                urls[s] = u
        out = {}
        for s, u in urls.items():
            assert_loopback_url(u)
            try:
                r = requests.get(u.rstrip("/") + "/readyz", timeout=10)
                out[s] = None if r.status_code == 200 else f"{r.status_code} {r.text.strip()[:300]}"
            except requests.RequestException as e:
                out[s] = f"unreachable: {type(e).__name__}"
        return out

    def restore(self):
        """Ends every fault: the mock resumed and reset, every part started,
        and waits (up to 10 min) for every /readyz to be ready. Returns the
        readiness seen last."""
        pid = self.pid("kafka-mock")
        if pid and self.alive(pid):
            os.kill(pid, signal.SIGCONT)
        try:
            self.mock("reset")
        except (OSError, RuntimeError) as e:
            say(f"restore: fault API reset failed: {e}")
        self.up()
        deadline = time.monotonic() + 600
        ready = self.readiness()
        while any(ready.values()) and time.monotonic() < deadline:
            time.sleep(2)
            if any(v and v.startswith("unreachable") for v in ready.values()):
                self.up()
            ready = self.readiness()
        return ready


# ---------------------------------------------------------------- faults


class Injector(threading.Thread):
    """Every `interval` seconds (jittered), one fault, until `duration`
    seconds or `count` faults; each kind of FAULT_KINDS comes at least once
    when count allows (a shuffled cycle of all kinds, repeated)."""

    def __init__(self, stack, rng, count, duration, interval):
        super().__init__(daemon=True)
        self.stack, self.rng = stack, rng
        self.count, self.duration, self.interval = count, duration, interval
        self.log = []  # (seconds since start, kind, detail)
        self.stop = threading.Event()
        self.error = None
        # stack.sh up takes half a minute or more: restarts run on a thread of
        # their own so that faults keep their pace (a fault may land while
        # the stack is still starting what the last one stopped)
        self.want_up = threading.Event()
        self.restarter = threading.Thread(target=self._restarts, daemon=True)
        self.restarter.start()

    def _restarts(self):
        while not (self.stop.is_set() and not self.want_up.is_set()):
            if self.want_up.wait(1):
                self.want_up.clear()
                self.stack.up()

    def note(self, kind, detail):
        self.log.append((now(), kind, detail))
        say(f"FAULT {kind}: {detail}")

    def run(self):
        try:
            self._run()
        except Exception as e:  # noqa: BLE001 - reported as a suite error
            self.error = e
            traceback.print_exc()

    def _run(self):
        end = time.monotonic() + self.duration
        plan = []
        done = 0
        while done < self.count and time.monotonic() < end and not self.stop.is_set():
            if not plan:
                plan = list(FAULT_KINDS)
                self.rng.shuffle(plan)
            kind = plan.pop()
            self.inject(kind)
            done += 1
            self.stop.wait(self.interval * self.rng.uniform(0.6, 1.4))

    def inject(self, kind):
        st = self.stack
        what, _, arg = kind.partition(":")
        if what == "kill":
            pid = st.kill(arg)
            self.note(kind, f"SIGKILL pid {pid}; restarted by stack.sh up")
            self.want_up.set()
        elif kind == "kafka:freeze":
            secs = self.rng.uniform(3, 10)
            pid = st.kill("kafka-mock", signal.SIGSTOP)
            self.note(kind, f"SIGSTOP pid {pid} (all brokers) for {secs:.1f} s")
            time.sleep(secs)
            if pid:
                os.kill(pid, signal.SIGCONT)
            say(f"       kafka:freeze: SIGCONT pid {pid}")
        elif kind == "kafka:broker-down":
            broker = self.rng.choice(st.mock("brokers").split()[1:])
            secs = self.rng.uniform(3, 10)
            st.mock(f"down {broker}")
            self.note(kind, f"broker {broker} down for {secs:.1f} s")
            time.sleep(secs)
            st.mock(f"up {broker}")
            say(f"       kafka:broker-down: broker {broker} up")
        elif kind == "kafka:request-errors":
            # Fetch, OffsetCommit, JoinGroup, Heartbeat: retriable errors
            # (NOT_LEADER_OR_FOLLOWER 6, COORDINATOR_NOT_AVAILABLE 15). Not
            # Produce: the mock checks idempotent sequences only for
            # transactional producers, so it appends a batch whose
            # predecessor it failed, and librdkafka then counts the failed
            # one delivered (docs/CONTRACTS.md "Chaos suite")
            key, code = self.rng.choice([(1, 6), (8, 15), (11, 15), (12, 15)])
            n = self.rng.randint(3, 20)
            st.mock(f"errors {key} {code} {n}")
            self.note(kind, f"next {n} requests of API key {key} fail with error {code}")
        elif kind == "postgresql:restart":
            st.pg_stop()
            self.note(kind, "pg_ctl stop -m fast; started by stack.sh up")
            self.want_up.set()
        elif kind == "rgw:restart":
            pid = st.kill("radosgw")
            self.note(kind, f"SIGKILL radosgw pid {pid}; restarted by stack.sh up")
            self.want_up.set()
        else:
            raise ValueError(kind)


# ---------------------------------------------------------------- runs

SHORT = r"""
import sys, time
n = int(sys.argv[1])
for i in range(n):
    print("chaos line", i, flush=True)
    time.sleep(0.2)
with open("chaos-%s.txt" % sys.argv[2], "w") as f:
    f.write("chaos artifact %s\n" % sys.argv[2] * 50)
print("done", flush=True)
"""

EGRESS = r"""
import sys, urllib.request, urllib.error
port, name = int(sys.argv[1]), sys.argv[2]
try:
    with urllib.request.urlopen("http://%s:%d/chaos" % (name, port), timeout=150) as r:
        print("GET", r.status)
except Exception as e:
    print("GET failed", e)
"""


def retrying(what, fn, timeout=180):
    """fn() until it answers without a transport error or a 5xx (the api may
    be down or restarting): faults make a call fail, never the suite."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            r = fn()
            if r.status_code < 500 and r.status_code != 429:
                return r
            last = f"{r.status_code} {r.text[:200]}"
        except requests.RequestException as e:
            last = f"{type(e).__name__}: {e}"
        time.sleep(1)
    raise RuntimeError(f"{what}: no answer within {timeout} s ({last})")


class Driver:
    """Launches the runs: mixed lengths, some cancelled, some holding egress
    that an approver grants or denies; each call retried through faults (a
    launch with the same Idempotency-Key, so a lost answer never makes two
    runs)."""

    def __init__(self, api, approver, team, upstream, profile, rng, total, parallel):
        self.api, self.approver, self.team = api, approver, team
        self.up, self.profile, self.rng = upstream, profile, rng
        self.total, self.parallel = total, parallel
        self.runs = {}  # run id -> {"kind", "sandbox"}
        self.errors = []
        self.lock = threading.Lock()

    def ok(self, api, method, path, expect, **kw):
        r = retrying(f"{method} {path}", lambda: api.request(method, path, **kw))
        if r.status_code not in expect:
            raise RuntimeError(f"{method} {path} -> {r.status_code}: {r.text[:300]}")
        return r.json() if r.content else None

    def spec(self, i, kind):
        if kind == "egress":
            argv = [PY, "-c", EGRESS, str(self.up.port), self.up.name]
            spec = {"agent": {"type": "command", "command": argv}, "limits": {"timeout_s": 240}}
            spec["egress"] = {"profiles": [self.profile], "unknown": "ask"}
            return spec
        lines = {"short": 3, "medium": 40, "long": 150, "cancel": 600}[kind]
        argv = [PY, "-c", SHORT, str(lines), str(i)]
        return {"agent": {"type": "command", "command": argv}, "limits": {"timeout_s": 240}}

    def launch(self, i, kind):
        name = unique_name(f"chaos-{kind}")
        sb = self.ok(self.api, "POST", "/v1/sandboxes", (200, 201),
                     json={"name": name, "team": self.team, "spec": self.spec(i, kind)})
        v = self.ok(self.api, "POST", f"/v1/sandboxes/{sb['id']}/versions", (200, 201))
        key = str(uuid.uuid4())
        run = self.ok(self.api, "POST", "/v1/runs", (200, 201, 202),
                      json={"sandbox": sb["id"], "version": v["version"], "team": self.team},
                      headers={"Idempotency-Key": key})
        with self.lock:
            self.runs[run["id"]] = {"kind": kind, "sandbox": sb["id"], "i": i}
        return run["id"]

    def status(self, run_id):
        return self.ok(self.api, "GET", f"/v1/runs/{run_id}", (200,)).get("status")

    def follow(self, run_id, kind):
        """Cancels a `cancel` run once it runs; decides an `egress` run's
        approval; returns when the run is terminal or after 300 s (the
        settle phase then decides)."""
        deadline = time.monotonic() + 300
        decided = False
        cancelled = False
        while time.monotonic() < deadline:
            st = self.status(run_id)
            if st in TERMINAL:
                return
            if kind == "cancel" and not cancelled and st in ("running", "provisioning"):
                time.sleep(self.rng.uniform(0.5, 3))
                self.ok(self.api, "POST", f"/v1/runs/{run_id}/cancel", (200, 202, 204, 409))
                cancelled = True
            if kind == "egress" and not decided:
                page = self.ok(self.approver, "GET", "/v1/approvals", (200,), params={"status": "pending"})
                for a in page.get("items", []):
                    if a.get("run_id") == run_id or a.get("run") == run_id:
                        decision = "approve" if self.runs[run_id]["i"] % 2 == 0 else "deny"
                        self.ok(self.approver, "POST", f"/v1/approvals/{a['id']}/decision",
                                (200, 201, 202, 204, 409), json={"decision": decision})
                        decided = True
            time.sleep(1)

    def one(self, i, kind):
        try:
            run_id = self.launch(i, kind)
            self.follow(run_id, kind)
        except Exception as e:  # noqa: BLE001 - a launch that never got in is a figure, not a crash
            with self.lock:
                self.errors.append(f"run {i} ({kind}): {e}")
            say(f"driver: run {i} ({kind}): {e}")

    def drive(self):
        kinds = (["short"] * 4 + ["medium"] * 2 + ["long"] + ["cancel"] + ["egress"] * 2)
        sem = threading.Semaphore(self.parallel)
        threads = []
        for i in range(self.total):
            kind = kinds[i % len(kinds)]
            sem.acquire()

            def body(i=i, kind=kind):
                try:
                    self.one(i, kind)
                finally:
                    sem.release()

            t = threading.Thread(target=body, daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join()


# ---------------------------------------------------------------- invariants


def events_of(api, run_id):
    out, after = [], 0
    while True:
        r = retrying("events", lambda: api.get(f"/v1/runs/{run_id}/events", params={"after": after, "limit": 1000}))
        page = r.json()
        items = page.get("items", [])
        out += items
        cur = page.get("next_cursor")
        if not items or not cur or int(cur) <= after:
            return out
        after = int(cur)


def settle(api, stack, run_ids, timeout):
    """Waits until every run is terminal and nothing moves (two passes, 10 s
    apart, with the same statuses, event counts and usage), up to timeout
    seconds. Returns {run id: (status, events)} of the last pass."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        snap = {}
        for rid in run_ids:
            st = retrying("run", lambda: api.get(f"/v1/runs/{rid}")).json().get("status")
            snap[rid] = (st, len(events_of(api, rid)))
        terminal = all(s in TERMINAL for s, _ in snap.values())
        if terminal and snap == last:
            return snap
        if time.monotonic() > deadline:
            return snap
        last = snap
        time.sleep(10)


def check(api, team, driver, since):
    """Every invariant over every run; returns [(invariant, run id, detail)]."""
    lost = []
    usage = retrying("usage", lambda: api.get("/v1/usage", params={"team": team, "group_by": "sandbox",
                                                                     "from": since})).json()
    per_sandbox = {}
    for it in usage.get("items", []):
        sid = it.get("sandbox") or it.get("sandbox_id")
        per_sandbox[sid] = per_sandbox.get(sid, 0) + int(it.get("runs", 0))
    for rid, info in sorted(driver.runs.items()):
        run = retrying("run", lambda: api.get(f"/v1/runs/{rid}")).json()
        st = run.get("status")
        if st not in TERMINAL:
            lost.append(("stuck", rid, f"status {st}"))
        evs = events_of(api, rid)
        seqs = [e["seq"] for e in evs]
        dups = sorted(s for s, n in collections.Counter(seqs).items() if n > 1)
        if dups:
            lost.append(("duplicate", rid, f"seq {dups[:10]}"))
        want = list(range(1, max(seqs) + 1)) if seqs else []
        gaps = sorted(set(want) - set(seqs))
        if gaps or (seqs and min(seqs) != 1):
            lost.append(("gap", rid, f"missing seq {gaps[:10]} of {len(want)}"))
        ended = [e for e in evs if e["kind"] == "status" and (e.get("data") or {}).get("status") in TERMINAL]
        if st in TERMINAL and not ended:
            lost.append(("gap", rid, f"history lacks the terminal status {st} ({len(evs)} events)"))
        if st == "succeeded":
            arts = retrying("artifacts", lambda: api.get(f"/v1/runs/{rid}/artifacts")).json().get("items", [])
            if info["kind"] != "egress" and not arts:
                lost.append(("missing artifact", rid, "succeeded without artifacts"))
            for a in arts:
                r = retrying("artifact", lambda: api.get(f"/v1/runs/{rid}/artifacts/{a['name']}",
                                                         allow_redirects=False))
                body = None
                if r.status_code == 302:
                    loc = r.headers["Location"]
                    assert_loopback_url(loc)
                    d = retrying("download", lambda: requests.get(loc, timeout=60))
                    body = d.content if d.status_code == 200 else None
                elif r.status_code == 200:
                    body = r.content
                if body is None:
                    lost.append(("missing artifact", rid, f"{a['name']}: {r.status_code}"))
                elif hashlib.sha256(body).hexdigest() != a.get("sha256") or len(body) != a.get("size"):
                    lost.append(("missing artifact", rid, f"{a['name']}: sha256/size differ from the manifest"))
        n_usage = per_sandbox.get(info["sandbox"], 0)
        if n_usage > 1:
            lost.append(("double usage", rid, f"usage counts {n_usage} runs"))
        if st == "succeeded" and n_usage == 0:
            lost.append(("missing usage", rid, "succeeded run has no usage"))
        left = node_leftovers(rid)
        # a run the warm pool served used its sandbox's own id (CONTRACTS.md "Sandbox pool")
        for e in evs:
            sb = (e.get("data") or {}).get("sandbox") if e["kind"] == "status" else None
            if isinstance(sb, dict) and sb.get("id") and sb["id"] != rid:
                left += node_leftovers(sb["id"])
        if left:
            lost.append(("leftover", rid, "; ".join(left[:5])))
    v = retrying("audit verify", lambda: api.get("/v1/audit/verify")).json()
    if v.get("ok") is not True:
        lost.append(("broken chain", "-", str(v)[:300]))
    lost += node_wide_leftovers(set(driver.runs))
    return lost


def node_wide_leftovers(run_ids):
    """Containers of the runner's crun root and network namespaces that name
    one of the runs (node_leftovers looks at each run's own paths)."""
    out = []
    sd = os.environ.get("PADDOCK_RUNNER_STATE_DIR")
    if sd:
        r = subprocess.run(["crun", "--root", str(pathlib.Path(sd) / "crun"), "list", "-q"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for name in r.stdout.split():
            rid = name.removeprefix("paddock-")
            if rid in run_ids:
                out.append(("leftover", rid, f"crun container {name}"))
    r = subprocess.run(["ip", "netns", "list"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        for rid in run_ids:
            if rid in name:
                out.append(("leftover", rid, f"netns {name}"))
    return out


def zombie_children(pid):
    """{(pid, start time)} of the zombie children of a process: the runner-agent
    is the node's child subreaper and reaps orphaned zombies aged 60 s every
    10 s (services/runner-agent/orphans.h), so one seen twice 80 s apart is a
    leak."""
    out = set()
    if not pid:
        return out
    for d in pathlib.Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            f = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if f[0] == "Z" and int(f[1]) == pid:
            out.add((int(d.name), int(f[19])))
    return out


def readyz_truth(stack, api, team, timeout=240):
    """/readyz tells the truth (kafka/consume_loop.h): with every Fetch of the
    cluster failing (fault API), the consumers stop progressing while the api
    keeps producing audit records (a sandbox created every few seconds) that
    evidence must store; evidence's /readyz must turn 503 naming the stalled
    consumer within PADDOCK_READY_STALL_S (+ a lag check), then ready again
    once fetching works. Returns (why it said, readiness after) or raises."""
    stack.mock("errors 1 6 100000")  # Fetch: NOT_LEADER_OR_FOLLOWER, for minutes
    why = None
    try:
        deadline = time.monotonic() + timeout
        i = 0
        while time.monotonic() < deadline and not why:
            if i % 3 == 0:
                retrying("sandbox", lambda: api.post("/v1/sandboxes", json={
                    "name": unique_name("chaos-readyz"), "team": team,
                    "spec": conftest.command_spec(["/bin/true"])}))
            i += 1
            r = stack.readiness().get("evidence")
            if r and "stalled" in r:
                why = r
            else:
                time.sleep(2)
    finally:
        stack.mock("clear 1")
    deadline = time.monotonic() + 180
    after = stack.readiness().get("evidence")
    while after and time.monotonic() < deadline:
        time.sleep(2)
        after = stack.readiness().get("evidence")
    return why, after


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--parallel", type=int, default=8, help="runs in flight at once")
    ap.add_argument("--faults", type=int, default=60, help="most faults injected")
    ap.add_argument("--duration", type=float, default=900, help="most seconds of injection")
    ap.add_argument("--interval", type=float, default=6, help="mean seconds between faults")
    ap.add_argument("--settle", type=float, default=600, help="most seconds to settle")
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    say(f"seed {seed}: {a.runs} runs, at most {a.faults} faults over at most {a.duration:.0f} s")

    if not os.environ.get("PADDOCK_API_URL"):
        print("chaos: PADDOCK_API_URL is not set: export the stack's endpoints.env", file=sys.stderr)
        return 2
    stack = Stack()
    creds = read_env_file(state_dir() / "credentials")
    for k in ("PADDOCK_TENANT", "PADDOCK_USER", "PADDOCK_PASSWORD"):
        creds[k] = os.environ.get(k) or creds.get(k)
    base = os.environ["PADDOCK_API_URL"].rstrip("/")
    assert_loopback_url(base)
    upstream = None
    injector = None
    driver = None
    lost, figures = [], {}
    rc = 2
    try:
        ready = stack.restore()
        if any(ready.values()):
            print(f"chaos: the stack is not ready before the faults: {ready}", file=sys.stderr)
            return 2
        r = login(conftest.Endpoints(os.environ), creds["PADDOCK_TENANT"], creds["PADDOCK_USER"],
                  creds["PADDOCK_PASSWORD"])
        assert r.status_code == 200, r.text[:300]
        api = Api(base, r.json()["token"])
        me = api.ok("GET", "/v1/me", expect=(200,))
        teams = me.get("teams") or []
        team = teams[0] if isinstance(teams[0], str) else (teams[0].get("id") or teams[0].get("team_id"))
        pw = uuid.uuid4().hex
        u = api.ok("POST", "/v1/users", json={"username": unique_name("chaos-approver"), "password": pw},
                   expect=(201,))
        api.ok("PUT", f"/v1/teams/{team}/members/{u['id']}", json={"roles": ["approver", "viewer"]}, expect=(200,))
        r = login(conftest.Endpoints(os.environ), creds["PADDOCK_TENANT"], u["username"], pw)
        approver = Api(base, r.json()["token"])
        upstream = Upstream(0)
        profile = conftest.egress_profile(api, [upstream.hostport])
        since = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400))

        driver = Driver(api, approver, team, upstream, profile, rng, a.runs, a.parallel)
        injector = Injector(stack, rng, a.faults, a.duration, a.interval)
        t_start = now()
        injector.start()
        driver.drive()
        injector.stop.set()
        injector.join()
        injector.restarter.join()
        t_faults_end = now()
        say("faults stopped; restoring the stack")
        ready = stack.restore()
        snap = settle(api, stack, list(driver.runs), a.settle)
        ready = stack.readiness()
        t_settled = now()
        say("settled; checking the invariants")
        lost = check(api, team, driver, since)
        zombies_at_check = zombie_children(stack.pid("runner-agent")), time.monotonic()
        say("readyz truth: freezing every consumer's fetches")
        why, after = readyz_truth(stack, api, team)
        figures_readyz = f"said: {why}; after: {after or 'ready'}"
        say(f"readyz truth: {figures_readyz}")
        if not why:
            lost.append(("readyz lied", "evidence", "ready while its consumer could not fetch and had lag"))
        if after:
            lost.append(("not ready", "evidence", f"after fetching resumed: {after}"))
        for s, why in ready.items():
            if why:
                lost.append(("not ready", s, why))
        time.sleep(max(0.0, 80 - (time.monotonic() - zombies_at_check[1])))
        for zpid, _ in zombies_at_check[0] & zombie_children(stack.pid("runner-agent")):
            lost.append(("leftover", "runner-agent", f"zombie child {zpid} not reaped in 80 s"))
        statuses = collections.Counter(st for st, _ in snap.values())
        figures = {
            "runs": len(driver.runs),
            "runs by kind": dict(collections.Counter(i["kind"] for i in driver.runs.values())),
            "runs by status": dict(statuses),
            "launches that never got in": len(driver.errors),
            "faults": len(injector.log),
            "faults by kind": dict(collections.Counter(k for _, k, _ in injector.log)),
            "driving (s)": round(t_faults_end - t_start, 1),
            "time to settle (s)": round(t_settled - t_faults_end, 1),
            "readyz truth": figures_readyz,
        }
        missing = set(FAULT_KINDS) - {k for _, k, _ in injector.log}
        if injector.error:
            lost.append(("injector failed", "-", repr(injector.error)))
        if missing and a.faults >= len(FAULT_KINDS):
            lost.append(("fault kind not injected", "-", ", ".join(sorted(missing))))
        rc = 1 if lost else 0
    finally:
        if injector:
            injector.stop.set()
        say("restoring the stack (finally)")
        ready = stack.restore()
        if upstream:
            upstream.close()
        if any(ready.values()):
            lost.append(("stack not restored", "-", str(ready)))
            rc = max(rc, 1)

    print("\n==== chaos figures ====")
    for k, v in figures.items():
        print(f"{k:28} {v}")
    if injector:
        print("fault log:")
        for t, k, d in injector.log:
            print(f"  {t:7.1f}s  {k:22} {d}")
    if driver and driver.errors:
        print("launch errors:")
        for e in driver.errors[:20]:
            print(f"  {e}")
    undescribed = list(dict.fromkeys(conftest._take_openapi_violations()))
    if undescribed:
        print(f"responses not described by openapi.yaml ({len(undescribed)}):")
        for u in undescribed[:20]:
            print(f"  {u}")
    print(f"lost                         {len(lost)}")
    for inv, rid, detail in lost:
        print(f"  LOST {inv}: run {rid}: {detail}")
    print("==== end of figures ====")
    return rc


if __name__ == "__main__":
    sys.exit(main())
