"""Large transfers through the egress proxy's relay arrive intact, both ways.

The proxy relays every connection's bytes in its event loop (splice through a
pipe per direction for CONNECT tunnels, framed buffers for plain HTTP;
docs/CONTRACTS.md "Egress proxy", issue 10 §4). A command agent in a real
sandbox uploads and downloads 32 MiB through a plain-HTTP request and through
a CONNECT tunnel to an HTTP server of this test in the stack's test upstream
network (198.18.0.0/15, reached through an approved egress profile's IP rule);
every byte is compared by sha256 at the other end. No packet leaves this
machine. The thread bound under a connection flood is
tests/unit/runner/test_proxy_loop.c.
"""

import hashlib
import http.server
import random

from conftest import TestNetHTTPServer, all_events, command_spec, egress_profile, wait_for, wait_terminal

PY = "/usr/bin/python3"
SIZE = 32 << 20
UP_SEED, DOWN_SEED = 11, 12


def payload(seed):
    return random.Random(seed).randbytes(SIZE)


def bulk_handler():
    down = payload(DOWN_SEED)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            left, h = int(self.headers["Content-Length"]), hashlib.sha256()
            while left:
                chunk = self.rfile.read(min(left, 1 << 20))
                if not chunk:
                    break
                h.update(chunk)
                left -= len(chunk)
            body = h.hexdigest().encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(down)))
            self.end_headers()
            self.wfile.write(down)

        def log_message(self, *a):
            pass

    return Handler


# Runs inside the sandbox: HTTP/1.0-style requests by hand (the upstream
# closes after each answer), once through the proxy in absolute form and once
# inside a CONNECT tunnel (an allowed IP literal may carry anything).
PROBE = r"""
import hashlib, random, socket, sys
host, port, size, up_seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
up = random.Random(up_seed).randbytes(size)
print("SENT", hashlib.sha256(up).hexdigest(), flush=True)

def answer(s):
    buf = bytearray()
    while True:
        b = s.recv(1 << 20)
        if not b:
            break
        buf += b
    head, _, body = bytes(buf).partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), body

def exchange(mode, method, path, body):
    s = socket.create_connection(("127.0.0.1", 3128), timeout=120)
    target = "%s:%d" % (host, port)
    if mode == "tunnel":
        s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        assert head.startswith(b"HTTP/1.1 200"), head
        line = "%s %s HTTP/1.1\r\n" % (method, path)
    else:
        line = "%s http://%s%s HTTP/1.1\r\n" % (method, target, path)
    s.sendall((line + "Host: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (target, len(body))).encode())
    if body:
        s.sendall(body)
    status, got = answer(s)
    s.close()
    return status, got

for mode in ("plain", "tunnel"):
    status, got = exchange(mode, "POST", "/upload", up)
    print("UP", mode, status, got.decode(errors="replace"), flush=True)
    status, got = exchange(mode, "GET", "/download", b"")
    print("DOWN", mode, status, len(got), hashlib.sha256(got).hexdigest(), flush=True)
print("PROBE done")
"""


def test_large_transfer_intact_both_directions(endpoints, admin_token, api, runs):
    up = TestNetHTTPServer(bulk_handler(), index=0)
    try:
        prof = egress_profile(api, [up.hostport])
        spec = command_spec([PY, "-c", PROBE, up.host, str(up.port), str(SIZE), str(UP_SEED)], timeout_s=300)
        spec["egress"] = {"profiles": [prof], "unknown": "deny"}
        run_id = runs.start(spec)
        res = wait_terminal(endpoints, admin_token, run_id, timeout=400)
    finally:
        up.server.shutdown()
    out = res.output()
    assert res.terminal == "succeeded", f"{res.terminal}: {out}"
    sent = hashlib.sha256(payload(UP_SEED)).hexdigest()
    down = hashlib.sha256(payload(DOWN_SEED)).hexdigest()
    assert f"SENT {sent}" in out, out
    for mode in ("plain", "tunnel"):
        assert f"UP {mode} HTTP/1.0 200 OK {sent}" in out, out
        assert f"DOWN {mode} HTTP/1.0 200 OK {SIZE} {down}" in out, out

    # one allowed egress event per request, counting every byte
    def events():
        eg = [e["data"] for e in all_events(api, run_id) if e["kind"] == "egress"]
        return eg if len(eg) >= 4 else None
    eg = wait_for("the four egress events", events)
    assert all(d["decision"] == "allow" and d["host"] == up.host and d["port"] == up.port for d in eg), eg
    plain = sorted((d for d in eg if d["method"] != "CONNECT"), key=lambda d: d["method"])
    tunnels = sorted((d for d in eg if d["method"] == "CONNECT"), key=lambda d: d["bytes_up"])
    assert [d["method"] for d in plain] == ["GET", "POST"], eg
    assert plain[0]["bytes_down"] > SIZE and plain[1]["bytes_up"] > SIZE, plain
    assert len(tunnels) == 2 and tunnels[0]["bytes_down"] > SIZE and tunnels[1]["bytes_up"] > SIZE, tunnels
