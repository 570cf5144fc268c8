"""The sandbox has no network beyond its own loopback: it cannot reach the
host's loopback services (IPv4 or IPv6), sees only `lo`, has no route besides
loopback, and cannot resolve names. All probes aim at loopback or at the
reserved .invalid TLD, so no packet can leave this machine."""

import select
import socket

import pytest

from conftest import assert_node_clean, command_spec, wait_terminal

PROBE = r"""
import os, socket, sys

def connect(family, addr, port):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect((addr, port))
        print("CONNECT %s %d ok" % (addr, port))
    except Exception as e:
        print("CONNECT %s %d failed %s" % (addr, port, type(e).__name__))
    finally:
        s.close()

connect(socket.AF_INET, "127.0.0.1", int(sys.argv[1]))
try:
    connect(socket.AF_INET6, "::1", int(sys.argv[2]))
except OSError as e:
    print("CONNECT ::1 %s failed %s" % (sys.argv[2], type(e).__name__))

# /proc/net is always the reader's network namespace; /sys/class/net only if
# sysfs was mounted from inside it, so it is reported but not relied on.
ifaces = sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:])
print("IFACES " + ",".join(ifaces))
if os.path.isdir("/sys/class/net"):
    print("SYSFS-IFACES " + ",".join(sorted(os.listdir("/sys/class/net"))))

for path, col in (("/proc/net/route", 0), ("/proc/net/ipv6_route", -1)):
    try:
        lines = open(path).read().splitlines()
    except OSError as e:
        print("ROUTES %s unreadable %s" % (path, type(e).__name__))
        continue
    if path.endswith("/route"):
        lines = lines[1:]
    for l in lines:
        if l.split():
            print("ROUTE %s %s" % (path, l.split()[col]))

try:
    socket.getaddrinfo("paddock-e2e.example.invalid", 80)
    print("DNS ok")
except OSError as e:
    print("DNS failed %s" % type(e).__name__)
print("PROBE done")
"""


def _listener(family, addr):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, 0))
    s.listen(8)
    s.setblocking(False)
    return s


def test_sandbox_has_no_network(endpoints, admin_token, runs):
    l4 = _listener(socket.AF_INET, "127.0.0.1")
    try:
        l6 = _listener(socket.AF_INET6, "::1")
    except OSError:
        l6 = None  # no IPv6 on this host: probe a port nobody listens on
    port4 = l4.getsockname()[1]
    port6 = l6.getsockname()[1] if l6 else port4
    try:
        spec = command_spec(["/usr/bin/python3", "-c", PROBE, str(port4), str(port6)], timeout_s=60)
        run_id = runs.start(spec)
        res = wait_terminal(endpoints, admin_token, run_id, timeout=120)

        # The host listeners must not have seen a single connection.
        for lst in (l4, l6):
            if lst is None:
                continue
            readable, _, _ = select.select([lst], [], [], 0)
            assert not readable, f"host listener {lst.getsockname()} accepted a connection from the sandbox"
    finally:
        l4.close()
        if l6:
            l6.close()

    out = res.output("stdout")
    print(f"run {run_id} ({res.terminal}) probe output:\n{res.output()}")
    lines = out.splitlines()
    assert "PROBE done" in lines, f"the probe did not finish; output:\n{res.output()}"

    assert f"CONNECT 127.0.0.1 {port4} ok" not in lines, out
    assert any(l.startswith(f"CONNECT 127.0.0.1 {port4} failed") for l in lines), out
    assert f"CONNECT ::1 {port6} ok" not in lines, out
    assert any(l.startswith(f"CONNECT ::1 {port6} failed") for l in lines), out

    ifaces = [l.split(" ", 1)[1] for l in lines if l.startswith("IFACES ")]
    assert ifaces == ["lo"], f"interfaces inside the sandbox: {ifaces}"

    routes = [l.split() for l in lines if l.startswith("ROUTE ")]
    non_lo = [r for r in routes if r[2] != "lo"]
    assert not non_lo, f"routes other than loopback: {non_lo}"

    assert "DNS ok" not in lines, out
    assert any(l.startswith("DNS failed") for l in lines), out

    assert res.terminal in ("succeeded", "failed"), res.statuses
    assert_node_clean(run_id, res)


@pytest.mark.parametrize("addr", ["127.0.0.2", "2130706433", "0177.0.0.1", "::ffff:127.0.0.1"])
def test_loopback_spellings_do_not_reach_host(endpoints, admin_token, runs, addr):
    """Other spellings of the host's loopback from inside the sandbox reach, at
    most, the sandbox's own loopback, never the host listener."""
    lst = _listener(socket.AF_INET, "127.0.0.1")
    port = lst.getsockname()[1]
    script = (
        "import socket, sys\n"
        "a, p = sys.argv[1], int(sys.argv[2])\n"
        "try:\n"
        "    socket.create_connection((a, p), timeout=3).close(); print('REACHED')\n"
        "except Exception as e:\n"
        "    print('BLOCKED', type(e).__name__)\n"
    )
    try:
        run_id = runs.start(command_spec(["/usr/bin/python3", "-c", script, addr, str(port)], timeout_s=30))
        res = wait_terminal(endpoints, admin_token, run_id, timeout=90)
        readable, _, _ = select.select([lst], [], [], 0)
        assert not readable, f"the host listener saw a connection for {addr}"
    finally:
        lst.close()
    assert "REACHED" not in res.output("stdout"), res.output()
    assert "BLOCKED" in res.output("stdout"), res.output()
    assert_node_clean(run_id, res)
