"""The README's first command works from a clone anywhere (issue 8).

`git clone`s this checkout into a fresh temporary directory of mode 0700 (like
root's home) whose path holds spaces, runs the real `./dev up` there (preflight,
install, which is a no-op when the packages are present, a real build, a whole
stack of its own with random ports, the governed demo run) and checks:

* the demo run succeeded, so PostgreSQL (user postgres) and the sandboxes
  (unprivileged uids of a user namespace) reached their files although the
  clone is out of their reach: that data went to the stack's own directory
  under /var/lib/paddock/stacks, named in .paddock/data-dir;
* `./dev status` reports every part ready and exits 0; after this stack's
  Kafka mock is stopped, the api's and the scheduler's /readyz answer 503
  naming kafka and why, and `./dev status` says so and exits 1;
* no directory of the user's changed mode (the clone's directories, the 0700
  directory and its parents);

then `./dev down`, and `./dev purge` removes the stack's data, also when
something failed. It never touches the suite's own stack: other state dir,
other ports, its own Kafka mock, its own CLI session.
"""

import hashlib
import os
import pathlib
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time

import pytest
import requests

import openapi_check
from conftest import read_env_file

REPO = pathlib.Path(__file__).resolve().parents[2]
STACKS = pathlib.Path("/var/lib/paddock/stacks")
PARTS = ("postgres", "kafka-mock", "ceph-mon", "ceph-osd", "radosgw",
         "api", "scheduler", "runner-agent", "evidence", "billing")


class Dev:
    """Runs ./dev commands in the clone as a user would, from a shell without
    the suite's PADDOCK_* settings; everything they print goes to one log."""

    def __init__(self, clone, top):
        self.clone = clone
        self.log = top / "dev.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PADDOCK_")}
        # the demo logs in with the CLI: a session of its own, not the user's
        self.env["PADDOCK_CONFIG_DIR"] = str(top / "cli-config")
        self.env["JOBS"] = "2"

    def __call__(self, *args, timeout=600):
        t0 = time.monotonic()
        with open(self.log, "a") as log:
            log.write(f"\n$ ./dev {' '.join(args)}\n")
            log.flush()
            p = subprocess.run(["./dev", *args], cwd=self.clone, env=self.env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, timeout=timeout)
            log.write(p.stdout)
            log.write(f"[exit {p.returncode} after {time.monotonic() - t0:.0f} s]\n")
        return p.returncode, p.stdout

    def tail(self, n=60):
        try:
            return "".join(self.log.read_text().splitlines(keepends=True)[-n:])
        except OSError:
            return "(no log)"


def dir_modes(*roots, parents_of=None):
    """{directory: mode} of every directory under roots, and of parents_of and its ancestors."""
    out = {}
    for root in roots:
        for d, _, _ in os.walk(root):
            out[d] = stat.S_IMODE(os.lstat(d).st_mode)
    if parents_of:
        p = pathlib.Path(parents_of)
        for d in [p, *p.parents]:
            out[str(d)] = stat.S_IMODE(os.lstat(d).st_mode)
    return out


def status_table(out):
    """{part: (state, detail)} from `./dev status`."""
    rows = {}
    for line in out.splitlines():
        fields = line.split()
        if fields and fields[0] in PARTS:
            state = " ".join(fields[1:3]) if fields[1] in ("not",) else fields[1]
            rows[fields[0]] = (state, line)
    return rows


def wait_gone(pid, secs=30):
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    raise AssertionError(f"pid {pid} did not exit within {secs} s")


def test_up_from_a_0700_clone_with_spaces():
    # the clone has what is committed in this checkout (HEAD), not its uncommitted changes
    if subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip(f"{REPO} is not a git checkout: there is nothing to clone")
    top = pathlib.Path(tempfile.mkdtemp(prefix="paddock clone "))  # mode 0700, a space in it
    assert stat.S_IMODE(os.stat(top).st_mode) == 0o700
    clone = top / "pad dock"
    state = clone / ".paddock"
    dev = Dev(clone, top)
    data_dir = STACKS / hashlib.sha256(str(state).encode()).hexdigest()[:12]
    try:
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=300)
        modes = dir_modes(clone, parents_of=top)

        rc, out = dev("up", timeout=2400)
        assert rc == 0, f"./dev up failed (exit {rc}):\n{dev.tail()}"
        assert "==> demo run " in out and " succeeded" in out, dev.tail()
        # the dashboard was built and its URL printed (issue 13; docs/CONTRACTS.md "Dashboard")
        dash = re.search(r"^The dashboard: (http://127\.0\.0\.1:[0-9]+/) ", out, re.M)
        assert dash, dev.tail()
        page = requests.get(dash.group(1), timeout=30)
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html"), page.text[:300]

        # the data of PostgreSQL and the sandboxes lives outside the clone
        recorded = pathlib.Path((state / "data-dir").read_text().strip())
        assert recorded == data_dir, (recorded, data_dir)
        assert (data_dir / "pg" / "data" / "PG_VERSION").is_file()
        assert (data_dir / "owner").read_text().strip() == str(state)
        endpoints = read_env_file(state / "endpoints.env")
        assert endpoints["PADDOCK_STATE_DIR"] == str(state)
        assert endpoints["PADDOCK_RUNNER_STATE_DIR"] == str(data_dir / "runner")
        # the api's ops endpoints have a port of their own (/metrics is only there)
        api = endpoints["PADDOCK_API_OPS_URL"]
        assert api.startswith("http://127.0.0.1:") and api != endpoints["PADDOCK_API_URL"], endpoints

        rc, out = dev("status", timeout=300)
        rows = status_table(out)
        assert rc == 0 and set(rows) == set(PARTS) and all(s == "ready" for s, _ in rows.values()), out

        # readiness names the dependency that is gone, and why
        kafka_pid = int((state / "pids" / "kafka-mock.pid").read_text().split()[0])
        os.kill(kafka_pid, signal.SIGTERM)
        wait_gone(kafka_pid)
        spec = openapi_check.Spec()
        for base in (api, endpoints["PADDOCK_SCHEDULER_OPS_URL"]):
            r = requests.get(base + "/readyz", timeout=60)
            assert r.status_code == 503, (base, r.status_code, r.text)
            assert r.headers["Content-Type"].startswith("application/json")
            body = r.json()
            assert body["status"] == "not_ready" and body["dependency"] == "kafka", body
            assert "no broker answered" in body["reason"], body
        problems = spec.check("GET", "/readyz", 503, r.headers["Content-Type"], r.content)
        assert not problems, problems
        r = requests.get(api + "/readyz", timeout=60)
        assert not spec.check("GET", "/readyz", r.status_code, r.headers["Content-Type"], r.content)

        rc, out = dev("status", timeout=300)
        rows = status_table(out)
        assert rc == 1, out
        assert rows["kafka-mock"][0] == "down", out
        assert rows["scheduler"][0] == "not ready" and "kafka: no broker answered" in rows["scheduler"][1], out
        assert rows["postgres"][0] == "ready", out

        rc, out = dev("down", timeout=600)
        assert rc == 0, dev.tail()
        assert data_dir.is_dir(), "down must keep the data"

        after = dir_modes(clone, parents_of=top)
        changed = {d: (oct(m), oct(after.get(d, 0))) for d, m in modes.items() if after.get(d) != m}
        assert not changed, f"directories of the user's changed mode: {changed}"
    finally:
        try:
            if clone.exists():
                dev("purge", timeout=900)
        finally:
            leftovers(state, data_dir)
            shutil.rmtree(top, ignore_errors=True)
    assert not data_dir.exists(), f"./dev purge left {data_dir}"
    assert not top.exists()


def leftovers(state, data_dir):
    """When purge could not run or failed: stop what this stack started and
    delete its data dir, so a failed test leaves nothing behind."""
    for pidfile in (state / "pids").glob("*.pid") if (state / "pids").is_dir() else ():
        try:
            pid = int(pidfile.read_text().split()[0])
            os.kill(pid, signal.SIGKILL)
        except (ValueError, OSError):
            pass
    pg = data_dir / "pg" / "data" / "postmaster.pid"
    if pg.exists():
        try:
            os.kill(int(pg.read_text().split()[0]), signal.SIGKILL)
        except (ValueError, OSError):
            pass
    if data_dir.exists() and data_dir.parent == STACKS:
        for line in reversed(pathlib.Path("/proc/self/mounts").read_text().splitlines()):
            target = line.split()[1]
            if target.startswith(str(data_dir) + "/"):
                subprocess.run(["umount", "-l", target], check=False)
        shutil.rmtree(data_dir, ignore_errors=True)
