"""Socket families (issue 9 point 4): the sandbox's seccomp profile lets an
agent open only AF_UNIX, AF_INET, AF_INET6 and NETLINK_ROUTE sockets; every
other family (AF_PACKET, AF_VSOCK, AF_ALG, AF_BLUETOOTH, AF_KEY, other
netlink protocols, a family number beyond today's kernels) fails with
EAFNOSUPPORT, through socket() and socketpair() alike. One run executes a
probe (the host's python3 calling libc directly, so no library falls back on
its own) that reports the errno of each attempt."""

import json

import pytest

import conftest as c

PROBE = r'''
import ctypes, json
libc = ctypes.CDLL(None, use_errno=True)
out = {}

def sock(name, domain, type_, proto=0):
    ctypes.set_errno(0)
    fd = libc.socket(domain, type_, proto)
    out[name] = 0 if fd >= 0 else ctypes.get_errno()
    if fd >= 0:
        libc.close(fd)

def pair(name, domain, type_):
    sv = (ctypes.c_int * 2)()
    ctypes.set_errno(0)
    r = libc.socketpair(domain, type_, 0, sv)
    out[name] = 0 if r == 0 else ctypes.get_errno()
    if r == 0:
        libc.close(sv[0]); libc.close(sv[1])

STREAM, DGRAM, RAW = 1, 2, 3
sock("unix", 1, STREAM)
sock("inet", 2, STREAM)
sock("inet_dgram", 2, DGRAM)
sock("inet6", 10, STREAM)
sock("netlink_route", 16, RAW, 0)
sock("netlink_audit", 16, RAW, 9)
sock("netlink_kobject_uevent", 16, RAW, 15)
sock("netlink_generic", 16, RAW, 16)
sock("packet", 17, RAW)
sock("key", 15, RAW, 2)
sock("appletalk", 5, DGRAM)
sock("bluetooth", 31, RAW)
sock("alg", 38, 5)
sock("vsock", 40, STREAM)
sock("xdp", 44, RAW)
sock("unspec", 0, STREAM)
sock("beyond_af_max", 60, STREAM)
sock("negative", -1, STREAM)
pair("pair_unix", 1, STREAM)
pair("pair_vsock", 40, STREAM)
pair("pair_alg", 38, 5)
pair("pair_netlink", 16, RAW)
print("PROBE " + json.dumps(out))
'''

EAFNOSUPPORT = 97

FORBIDDEN = ["netlink_audit", "netlink_kobject_uevent", "netlink_generic", "packet", "key", "appletalk",
             "bluetooth", "alg", "vsock", "xdp", "unspec", "beyond_af_max", "negative",
             "pair_vsock", "pair_alg", "pair_netlink"]


@pytest.fixture(scope="module")
def probe(endpoints, admin_token, runs):
    s = c.spec(["/usr/bin/python3", "/workspace/probe.py"], timeout_s=60,
               files=[{"path": "probe.py", "content": PROBE, "mode": "0644"}])
    run_id, res = c.run_to_end(endpoints, admin_token, runs, s)
    line = [l for l in res.output("stdout").splitlines() if l.startswith("PROBE ")]
    assert line, f"run {run_id} ({res.terminal}) printed no probe result: {res.output()[:2000]}"
    assert res.terminal == "succeeded", f"probe run ended {res.terminal}: {c.terminal_event(res)}"
    return json.loads(line[-1][len("PROBE "):])


@pytest.mark.parametrize("name", FORBIDDEN)
def test_forbidden_family_fails_with_eafnosupport(probe, name):
    assert probe[name] == EAFNOSUPPORT, f"{name}: errno {probe[name]} (expected EAFNOSUPPORT): {probe}"


@pytest.mark.parametrize("name", ["unix", "inet", "inet_dgram", "inet6", "netlink_route", "pair_unix"])
def test_needed_family_works(probe, name):
    assert probe[name] == 0, f"{name}: errno {probe[name]}: {probe}"
