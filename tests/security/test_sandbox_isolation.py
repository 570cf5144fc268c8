"""Inside a sandbox: the agent runs as an unprivileged uid of its own user
namespace, without capabilities, under a seccomp profile that refuses what an
agent never needs, with masked and read-only kernel interfaces, a read-only
root and loopback as its only interface. One run executes a probe (the host's
/usr/bin/python3 with ctypes) that reports every check as JSON; each test
asserts one of them."""

import json

import pytest

import conftest as c

PROBE = r'''
import ctypes, errno, json, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
out = {}

def sc(name, nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_ulong(a) if isinstance(a, int) else a for a in args])
    out[name] = {"ret": r, "errno": ctypes.get_errno()}

buf = ctypes.create_string_buffer(256)
tgt = b"/tmp"
sc("mount", 165, ctypes.c_char_p(b"none"), ctypes.c_char_p(tgt), ctypes.c_char_p(b"tmpfs"), 0, 0)
sc("umount2", 166, ctypes.c_char_p(b"/workspace"), 2)
sc("unshare_user", 272, 0x10000000)
sc("unshare_net", 272, 0x40000000)
sc("unshare_mnt", 272, 0x00020000)
sc("clone_newuser", 56, 0x10000000 | 17, 0, 0, 0, 0)
sc("clone3", 435, 0, 0)
sc("ptrace_traceme", 101, 0, 0, 0, 0)
sc("ptrace_attach_1", 101, 16, 1, 0, 0)
sc("keyctl", 250, 0, 0xfffffffd, 0, 0, 0)
sc("add_key", 248, ctypes.c_char_p(b"user"), ctypes.c_char_p(b"k"), ctypes.c_char_p(b"v"), 1, 0xfffffffd)
sc("io_uring_setup", 425, 8, buf)
sc("perf_event_open", 298, buf, 0, 0xffffffff, 0xffffffff, 0)
sc("bpf", 321, 0, buf, 64)
sc("userfaultfd", 323, 0)
sc("setns", 308, 0, 0)
sc("init_module", 175, buf, 0, ctypes.c_char_p(b""))
sc("kexec_load", 246, 0, 0, 0, 0)
sc("settimeofday", 164, buf, 0)
sc("chroot", 161, ctypes.c_char_p(b"/tmp"))
sc("mknod_chr", 133, ctypes.c_char_p(b"/tmp/null2"), 0o20666, 0x103)
sc("mknod_fifo", 133, ctypes.c_char_p(b"/tmp/fifo"), 0o10666, 0)
sc("personality_noaslr", 135, 0x0040000)

with open("/proc/self/status") as f:
    st = dict(l.split(":\t", 1) for l in f.read().splitlines() if ":\t" in l)
out["uid"] = os.getuid(); out["euid"] = os.geteuid(); out["gid"] = os.getgid()
out["cap_eff"] = st["CapEff"].strip(); out["cap_prm"] = st["CapPrm"].strip(); out["cap_bnd"] = st["CapBnd"].strip()
out["no_new_privs"] = st.get("NoNewPrivs", "").strip()
out["seccomp"] = st.get("Seccomp", "").strip()
with open("/proc/self/uid_map") as f:
    out["uid_map"] = f.read().split()

def try_write(path, data=b"x"):
    try:
        with open(path, "wb") as f:
            f.write(data)
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))

out["write_proc_sys"] = try_write("/proc/sys/kernel/hostname", b"evil")
out["write_sysrq"] = try_write("/proc/sysrq-trigger", b"h")
out["write_etc"] = try_write("/etc/paddock-probe")
out["write_etc_passwd"] = try_write("/etc/passwd")
out["write_usr"] = try_write("/usr/bin/paddock-probe")
out["write_root"] = try_write("/paddock-probe")
out["write_workspace"] = try_write("/workspace/probe.txt", b"hello")
out["write_tmp"] = try_write("/tmp/probe.txt", b"hello")
try:
    with open("/proc/kcore", "rb") as f:
        out["kcore"] = len(f.read(64))
except OSError as e:
    out["kcore"] = errno.errorcode.get(e.errno, str(e.errno))
try:
    with open("/proc/keys") as f:
        out["proc_keys"] = f.read()
except OSError as e:
    out["proc_keys"] = errno.errorcode.get(e.errno)
out["net_ifaces"] = sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:])
out["sys_class_net"] = sorted(os.listdir("/sys/class/net")) if os.path.isdir("/sys/class/net") else []
out["pids_visible"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
print("PROBE " + json.dumps(out))
'''


@pytest.fixture(scope="module")
def probe(endpoints, admin_token, runs):
    s = c.spec(["/usr/bin/python3", "/workspace/probe.py"], timeout_s=60,
               files=[{"path": "probe.py", "content": PROBE, "mode": "0644"}])
    run_id, res = c.run_to_end(endpoints, admin_token, runs, s)
    text = res.output("stdout")
    line = [l for l in text.splitlines() if l.startswith("PROBE ")]
    assert line, f"run {run_id} ({res.terminal}) printed no probe result: {res.output()[:2000]}"
    assert res.terminal == "succeeded", f"probe run ended {res.terminal}: {c.terminal_event(res)}"
    out = json.loads(line[-1][len("PROBE "):])
    out["_run_id"], out["_res"] = run_id, res
    return out


def test_runs_as_unprivileged_uid_in_own_user_namespace(probe):
    assert probe["uid"] == 1000 and probe["euid"] == 1000 and probe["gid"] == 1000, probe
    # container 0 is an unprivileged host uid, never host root
    inside, host, size = (int(x) for x in probe["uid_map"][:3])
    assert inside == 0 and host >= 100000 and size <= 65536, probe["uid_map"]


def test_no_capabilities_no_new_privs_seccomp(probe):
    assert int(probe["cap_eff"], 16) == 0, probe["cap_eff"]
    assert int(probe["cap_prm"], 16) == 0
    assert int(probe["cap_bnd"], 16) == 0
    assert probe["no_new_privs"] == "1"
    assert probe["seccomp"] == "2", "seccomp filter mode expected"


@pytest.mark.parametrize("name", [
    "mount", "umount2", "unshare_user", "unshare_net", "unshare_mnt", "clone_newuser", "ptrace_traceme",
    "ptrace_attach_1", "keyctl", "add_key", "io_uring_setup", "perf_event_open", "bpf", "userfaultfd",
    "setns", "init_module", "kexec_load", "settimeofday", "chroot", "mknod_chr", "personality_noaslr"])
def test_denied_syscalls_fail_with_eperm(probe, name):
    r = probe[name]
    assert r["ret"] == -1 and r["errno"] == 1, f"{name}: {r} (expected EPERM from the seccomp profile)"


def test_clone3_is_enosys_so_libc_falls_back(probe):
    assert probe["clone3"] == {"ret": -1, "errno": 38}, probe["clone3"]


def test_harmless_calls_still_work(probe):
    assert probe["mknod_fifo"]["ret"] == 0, probe["mknod_fifo"]
    assert probe["write_workspace"] == "ok" and probe["write_tmp"] == "ok", probe


@pytest.mark.parametrize("key", ["write_proc_sys", "write_sysrq", "write_etc", "write_etc_passwd", "write_usr",
                                 "write_root"])
def test_read_only_paths(probe, key):
    assert probe[key] in ("EROFS", "EACCES", "EPERM", "ENOENT"), f"{key}: {probe[key]}"
    assert probe[key] != "ok"


def test_kernel_interfaces_masked(probe):
    # masked with /dev/null: readable, empty
    assert probe["kcore"] in (0, "EACCES", "EPERM", "ENOENT"), probe["kcore"]
    assert probe["proc_keys"] in ("", "EACCES", "EPERM", "ENOENT"), probe["proc_keys"]


def test_only_loopback_and_own_processes(probe):
    assert probe["net_ifaces"] == ["lo"], probe["net_ifaces"]
    assert probe["sys_class_net"] in ([], ["lo"]), probe["sys_class_net"]
    # a pid namespace of its own: the probe is pid 1 or close to it
    assert max(probe["pids_visible"]) < 100 and 1 in probe["pids_visible"], probe["pids_visible"]


def test_node_clean_after_probe(probe):
    e2e = c.e2e
    e2e.assert_node_clean(probe["_run_id"], probe["_res"])
    gone = probe["_res"].of_kind("destroyed")[-1]["data"]["verified_gone"]
    for item in ("container", "mounts", "netns", "cgroup", "processes", "workspace"):
        assert item in gone, f"{item} not verified gone: {gone}"
