"""Sandboxes after the first on a node get the seccomp program crun compiled
for the same profile before, as the annotation run.oci.seccomp_bpf_data with an
empty rule list (services/runner-agent/seccomp.h), instead of crun compiling the
150 rules again at every start. This checks that the program is given, that
crun loaded exactly it, and that a sandbox started from it is as confined as
one started from the rules: filter mode, the denied calls, clone3 ENOSYS, the
socket families, and the exec notify listener (the command's exec event)."""

import base64
import json
import os
import pathlib
import time

import conftest as c

PROBE = r'''
import ctypes, json, os, socket, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
out = {}
def sc(name, nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_ulong(a) for a in args])
    out[name] = [r, ctypes.get_errno()]
sc("unshare_user", 272, 0x10000000)
sc("clone3", 435, 0, 0)
sc("ptrace_traceme", 101, 0, 0, 0, 0)
sc("keyctl", 250, 0, 0xfffffffd, 0, 0, 0)
try:
    socket.socket(17, socket.SOCK_RAW)  # AF_PACKET
    out["af_packet"] = 0
except OSError as e:
    out["af_packet"] = e.errno
st = dict(l.split(":\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\t" in l)
out["seccomp"] = st.get("Seccomp", "").strip()
print("PROBE " + json.dumps(out), flush=True)
os.system("/bin/true")
# alive while the test reads the node's crun state of this sandbox
for _ in range(150):
    if os.path.exists("/workspace/done"):
        break
    time.sleep(0.1)
'''


def crun_state(sandbox_id):
    sd = os.environ.get("PADDOCK_RUNNER_STATE_DIR")
    assert sd, "PADDOCK_RUNNER_STATE_DIR is not set: export the local stack's endpoints.env"
    return pathlib.Path(sd) / "crun" / f"paddock-{sandbox_id}"


def probe_run(endpoints, admin_token, api, runs):
    s = c.spec(["/usr/bin/python3", "/workspace/probe.py"], timeout_s=60,
               files=[{"path": "probe.py", "content": PROBE, "mode": "0644"}])
    run_id = runs.start(s)
    sid = c.sandbox_id(api, run_id)  # the run id, or a pooled sandbox's
    state = crun_state(sid)
    deadline = time.monotonic() + 60
    bpf = state / "seccomp.bpf"  # crun creates it, then writes the program
    while not (bpf.exists() and bpf.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    config = json.loads((state / "config.json").read_text())
    program = (state / "seccomp.bpf").read_bytes()
    (state.parent.parent / "runs" / sid / "workspace" / "done").write_text("")  # the probe may end
    res = c.e2e.wait_terminal(endpoints, admin_token, run_id, timeout=120)
    assert res.terminal == "succeeded", (c.terminal_event(res), res.output()[-2000:])
    line = [l for l in res.output("stdout").splitlines() if l.startswith("PROBE ")]
    assert line, res.output()[-2000:]
    last = max(e["seq"] for e in res.events)
    events = c.e2e.wait_events_recorded(api, run_id, last)
    return sid, config, program, json.loads(line[-1][len("PROBE "):]), events


def assert_confined(out, events):
    assert out["seccomp"] == "2", out
    assert out["unshare_user"] == [-1, 1], out      # EPERM
    assert out["clone3"] == [-1, 38], out           # ENOSYS
    assert out["ptrace_traceme"] == [-1, 1], out
    assert out["keyctl"] == [-1, 1], out
    assert out["af_packet"] == 97, out              # EAFNOSUPPORT
    execs = [e["data"] for e in events if e["kind"] == "exec"]
    assert any(x["path"] == "/bin/true" for x in execs), execs


def test_later_sandboxes_get_the_compiled_program_and_stay_confined(endpoints, admin_token, api, runs):
    # one sandbox started on this node (now or before): the program is known
    first_id, first_cfg, first_prog, first_out, first_ev = probe_run(endpoints, admin_token, api, runs)
    assert_confined(first_out, first_ev)
    assert first_cfg["linux"]["seccomp"]["listenerPath"].endswith(f"/{first_id}/capture-exec.sock")

    sid, cfg, prog, out, ev = probe_run(endpoints, admin_token, api, runs)
    sc = cfg["linux"]["seccomp"]
    ann = (cfg.get("annotations") or {}).get("run.oci.seccomp_bpf_data")
    assert ann, "the second sandbox's bundle carries no compiled seccomp program"
    assert sc["syscalls"] == [], "rules given again next to the compiled program"
    # its own listener, same default and architectures
    assert sc["listenerPath"].endswith(f"/{sid}/capture-exec.sock"), sc
    assert sc["defaultAction"] == first_cfg["linux"]["seccomp"]["defaultAction"]
    assert sc["architectures"] == first_cfg["linux"]["seccomp"]["architectures"]
    # crun loaded exactly that program, the one it compiled for the first
    assert base64.b64decode(ann) == prog
    assert prog == first_prog
    assert len(prog) % 8 == 0 and len(prog) > 8 * 100
    assert_confined(out, ev)
