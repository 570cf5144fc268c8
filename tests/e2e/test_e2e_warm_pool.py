"""The runner's warm sandbox pool (issue 10 §4; docs/CONTRACTS.md "Sandbox
pool"): a run the pool serves sees exactly what a freshly provisioned one
sees (environment, open files, processes, mounts, root, capabilities,
seccomp, user namespace, exec events), its events say it was pooled, two
pooled runs never share a sandbox (network namespace, id, cgroup), and the
pooled sandbox is gone from the node after its run.

Fresh runs come from a definition the pool cannot serve (a non-default pids
limit: pool.h), on the same stack. The probe is the host's python3 (the
node root has /usr)."""

import json
import os
import pathlib
import subprocess
import time
import uuid

import pytest

import conftest as c

PROBE = r'''
import json, os
out = {}
out["env"] = dict(os.environ)
out["fds"] = sorted(os.listdir("/proc/self/fd"))
out["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
out["pid"] = os.getpid()
with open("/proc/self/mountinfo") as f:
    out["mounts"] = sorted((l.split()[4], l.split(" - ")[1].split()[0]) for l in f)
out["netns"] = os.readlink("/proc/self/ns/net")
with open("/proc/self/cgroup") as f:
    out["cgroup"] = f.read()
with open("/proc/self/status") as f:
    st = dict(l.split(":\t", 1) for l in f.read().splitlines() if ":\t" in l)
out["status"] = {k: st[k].strip() for k in ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb", "NoNewPrivs",
                                             "Seccomp", "Uid", "Gid")}
with open("/proc/self/uid_map") as f:
    out["uid_map"] = f.read().split()
out["root"] = sorted(os.listdir("/"))
out["workspace"] = sorted(os.listdir("/workspace"))
out["tmp"] = sorted(os.listdir("/tmp"))
out["cwd"] = os.getcwd()
out["ppid"] = os.getppid()
print("PROBE " + json.dumps(out))
'''


def _runner_env():
    return c.read_env_file(c.state_dir() / "env" / "runner-agent.env")


@pytest.fixture(scope="module")
def pool_on():
    n = int(_runner_env().get("PADDOCK_RUNNER_WARM_POOL", "0") or 0)
    if n < 1:
        pytest.skip("the stack's runner-agent runs without a warm pool (PADDOCK_RUNNER_WARM_POOL=0)")
    return n


def _crun_root():
    return pathlib.Path(_runner_env()["PADDOCK_RUNNER_STATE_DIR"]) / "crun"


def _wait_pool_ready(timeout=60):
    """Until the node holds a created (prepared, unclaimed) sandbox."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = subprocess.run(["crun", "--root", str(_crun_root()), "list"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
        if any(line.split()[2:3] == ["created"] for line in r.stdout.splitlines()[1:]):
            return
        time.sleep(0.1)
    pytest.fail("the warm pool prepared no sandbox within %d s" % timeout)


def _probe(res):
    out = res.output("stdout")
    line = next((l for l in out.splitlines() if l.startswith("PROBE ")), None)
    assert line, f"no probe output; stdout {out!r} stderr {res.output('stderr')!r}"
    return json.loads(line[len("PROBE "):])


def _running(res):
    ev = [e for e in res.events if e.get("kind") == "status" and e["data"].get("status") == "running"]
    assert len(ev) == 1, f"expected one running event, got {res.statuses}"
    return ev[0]["data"]


@pytest.fixture(scope="module")
def probes(pool_on, runs, endpoints, admin_token):
    """Two pooled runs and one fresh one in between."""
    spec = c.command_spec(["/usr/bin/python3", "-c", PROBE])
    fresh_spec = c.command_spec(["/usr/bin/python3", "-c", PROBE])
    fresh_spec["limits"]["pids"] = 511
    pooled_def = runs.create_sandbox(spec)
    pooled_v = runs.publish(pooled_def)
    fresh_def = runs.create_sandbox(fresh_spec)
    fresh_v = runs.publish(fresh_def)
    out = {}
    for name, (sid, v) in (("a", (pooled_def, pooled_v)), ("fresh", (fresh_def, fresh_v)),
                           ("b", (pooled_def, pooled_v))):
        if name != "fresh":
            _wait_pool_ready()
        rid = runs.launch(sid, v)
        res = c.wait_terminal(endpoints, admin_token, rid)
        assert res.terminal == "succeeded", f"{name}: {res.statuses} {res.output()!r}"
        out[name] = (rid, res, _probe(res), _running(res))
    return out


def test_events_say_pooled(probes):
    for name in ("a", "b"):
        rid, _, _, running = probes[name]
        assert running.get("sandbox", {}).get("pooled") is True, f"{name}: running event {running}"
        assert running["sandbox"]["id"] != rid, "a pooled sandbox is named after itself, not the run"
    _, _, _, running = probes["fresh"]
    assert running.get("sandbox", {}).get("pooled") is False, f"fresh: running event {running}"


def test_pooled_run_sees_what_a_fresh_one_sees(probes):
    _, _, a, _ = probes["a"]
    _, _, fresh, _ = probes["fresh"]
    for key in ("env", "fds", "pids", "pid", "mounts", "status", "root", "workspace", "tmp", "cwd", "ppid"):
        assert a[key] == fresh[key], f"{key}: pooled {a[key]!r} != fresh {fresh[key]!r}"
    # a user namespace of the same size, on a host range of its own (agent.h)
    assert a["uid_map"][0] == "0" and a["uid_map"][2] == fresh["uid_map"][2] == "65536", a["uid_map"]
    assert int(a["uid_map"][1]) >= 100000 and a["uid_map"][1] != fresh["uid_map"][1], (a["uid_map"], fresh["uid_map"])
    # nothing of the pool's preparation: no extra descriptor (its init's
    # memfd and pipe), the command is pid 1 itself
    assert a["fds"] == ["0", "1", "2", "3"], a["fds"]  # 3: the listing's own directory
    assert a["pid"] == 1 and a["pids"] == [1], (a["pid"], a["pids"])
    assert not any("pool" in k.lower() or "pool" in v.lower() for k, v in a["env"].items()), a["env"]
    assert a["status"]["CapEff"] == "0000000000000000" and a["status"]["NoNewPrivs"] == "1", a["status"]
    assert a["status"]["Seccomp"] == "2", a["status"]


def test_exec_events_are_the_runs_only(probes):
    def execs(res):
        return [(e["data"].get("path"), e["data"].get("argv")) for e in res.of_kind("exec")]
    _, a_res, _, _ = probes["a"]
    _, fresh_res, _, _ = probes["fresh"]
    assert execs(a_res) == execs(fresh_res), (execs(a_res), execs(fresh_res))
    assert execs(a_res) and execs(a_res)[0][0] == "/usr/bin/python3", execs(a_res)
    # the pool's init (exec'd by crun as /proc/self/fd/3, a memfd) is no event
    for e in a_res.of_kind("exec"):
        for f in ("path", "exe", "exe_confirmed"):
            v = e["data"].get(f) or ""
            assert not v.startswith("/proc/self/fd") and "memfd" not in v, e["data"]


def test_two_runs_never_share_a_sandbox(probes):
    _, _, a, ra = probes["a"]
    _, _, b, rb = probes["b"]
    assert ra["sandbox"]["id"] != rb["sandbox"]["id"]
    assert a["netns"] != b["netns"], (a["netns"], b["netns"])


def test_pooled_sandbox_left_nothing(probes):
    for name in ("a", "b"):
        rid, res, _, running = probes[name]
        c.assert_node_clean(rid, res)
        left = c.node_leftovers(running["sandbox"]["id"])
        assert not left, f"{name}: pooled sandbox {running['sandbox']['id']} left {left}"
        gone = res.of_kind("destroyed")[-1]["data"]["verified_gone"]
        assert set(gone) >= {"container", "mounts", "netns", "cgroup", "processes", "workspace"}, gone


def test_env_secret_reaches_only_its_run(pool_on, api, runs, team_id, endpoints, admin_token):
    """Secrets reach a pooled sandbox only at claim (through its init's pipe),
    and only the run they belong to."""
    name = f"E2E_POOL_{uuid.uuid4().hex[:8].upper()}"
    value = f"pool-secret-{uuid.uuid4().hex}"
    api.ok("PUT", f"/v1/teams/{team_id}/secrets/{name}", json={"value": value}, expect=(200, 201, 204))
    with_secret = c.command_spec(["/usr/bin/python3", "-c", PROBE])
    with_secret["secrets"] = [{"name": name, "as": {"env": "POOL_SECRET"}}]
    _wait_pool_ready()
    rid = runs.start(with_secret)
    res = c.wait_terminal(endpoints, admin_token, rid)
    assert res.terminal == "succeeded", (res.statuses, res.output()[-2000:])
    assert _running(res)["sandbox"]["pooled"] is True
    assert _probe(res)["env"].get("POOL_SECRET") == value
    _wait_pool_ready()
    rid2 = runs.start(c.command_spec(["/usr/bin/python3", "-c", PROBE]))
    res2 = c.wait_terminal(endpoints, admin_token, rid2)
    assert _running(res2)["sandbox"]["pooled"] is True
    env2 = _probe(res2)["env"]
    assert "POOL_SECRET" not in env2 and value not in json.dumps(env2), env2


def test_missing_command_fails_in_the_init(pool_on, runs, endpoints, admin_token):
    """crun refuses a fresh sandbox whose command is missing before it starts;
    a pooled one started already, so its init says it and exits 127."""
    _wait_pool_ready()
    rid = runs.start(c.command_spec(["/no/such/program", "x"]))
    res = c.wait_terminal(endpoints, admin_token, rid)
    assert _running(res)["sandbox"]["pooled"] is True
    assert res.terminal == "failed", res.statuses
    end = [e for e in res.events if e.get("kind") == "status" and e["data"].get("status") == "failed"][-1]["data"]
    assert end.get("exit_code") == 127, end
    assert "paddock: exec /no/such/program: No such file or directory" in res.output("stderr"), res.output()
    assert not res.of_kind("exec"), res.of_kind("exec")  # nothing started
    c.assert_node_clean(rid, res)
    assert not c.node_leftovers(_running(res)["sandbox"]["id"])


def _waiting_inits():
    """{sandbox id: init pid} of the prepared sandboxes waiting for a run
    (`crun list`: NAME PID STATUS ..., the container named paddock-<id>)."""
    r = subprocess.run(["crun", "--root", str(_crun_root()), "list"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True, check=True)
    out = {}
    for line in r.stdout.splitlines()[1:]:
        f = line.split()
        if len(f) >= 3 and f[2] == "created" and f[0].startswith("paddock-"):
            out[f[0][len("paddock-"):]] = int(f[1])
    return out


def test_dead_pooled_init_falls_back_to_fresh(pool_on, runs, endpoints, admin_token):
    """A pooled sandbox whose init died while waiting is not handed to a run
    (whose start would fail on the init's exec fifo): the run is provisioned
    fresh and succeeds, and the dead sandbox is removed from the node."""
    _wait_pool_ready()
    waiting = _waiting_inits()
    assert waiting, "no waiting pooled sandbox"
    for pid in waiting.values():
        os.kill(pid, 9)
    rid = runs.start(c.command_spec(["/bin/true"]))
    res = c.wait_terminal(endpoints, admin_token, rid)
    assert res.terminal == "succeeded", (res.statuses, res.output()[-2000:])
    running = _running(res)
    assert running.get("sandbox", {}).get("pooled") is False, running
    c.assert_node_clean(rid, res)
    for sid in waiting:
        assert not c.node_leftovers(sid), f"dead pooled sandbox {sid} left {c.node_leftovers(sid)}"
    # and the pool prepares a live one again
    _wait_pool_ready()
    assert not set(_waiting_inits()) & set(waiting)
