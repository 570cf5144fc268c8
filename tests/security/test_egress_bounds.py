"""The egress proxy's bounds and header secrets (issue 9 §3, §4).

* A header secret names an https origin: the agent asks the proxy in plain
  HTTP, the proxy opens TLS to the origin itself (certificate verified against
  the stack's test CA, PADDOCK_EGRESS_CA_BUNDLE), adds the header and relays the
  answer. A wrong CA or a wrong name fails closed; TRACE and other ports of
  that host are refused, so the value is never sent in clear.
* Each run is charged a budget of connections: a run that opens 10,000
  connections is refused past it (429, aggregated egress events) while a
  concurrent run's egress still works; everything is released at the end.
* Chunked request bodies are framed: bytes after the last chunk (a smuggled
  second request) never reach the upstream.

Every upstream lives in the stack's test upstream network namespace
(198.18.0.0/15, conftest TestNetHTTPServer) and is allowed through an approved
catalog egress profile. Certificates are made here with the openssl CLI.
"""

import http.server
import os
import pathlib
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import uuid

import pytest
import requests

import conftest as c

e2e = c.e2e

PY = "/usr/bin/python3"


# ---------------------------------------------------------------- helpers

approved_profile = e2e.egress_profile


def start_probe(runs, probe, args, profile, secrets=None, timeout_s=240):
    spec = e2e.command_spec([PY, "-c", probe] + [str(a) for a in args], timeout_s=timeout_s)
    spec["egress"] = {"profiles": [profile], "unknown": "deny"}
    if secrets:
        spec["secrets"] = secrets
    return runs.start(spec)


def egress_of(api, run_id):
    return [e["data"] for e in e2e.all_events(api, run_id) if e["kind"] == "egress"]


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_ca(d, name):
    key, crt = d / f"{name}.key", d / f"{name}.crt"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(crt),
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    return crt, key


def make_leaf(d, name, ip, ca_crt, ca_key):
    """A server certificate for IP address ip signed by ca; (cert, key) paths."""
    key, csr, crt, ext = (d / f"{name}.key", d / f"{name}.csr", d / f"{name}.crt", d / f"{name}.ext")
    ext.write_text(f"subjectAltName=IP:{ip}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-subj", f"/CN={ip}", "-keyout", str(key), "-out", str(csr))
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-set_serial",
            str(int(uuid.uuid4().int % 2**60)), "-days", "2", "-extfile", str(ext), "-out", str(crt))
    return crt, key


class Recording(e2e.TestNetHTTPServer):
    """An HTTP(S) server in the test upstream network recording each request
    (path, headers, method); over TLS when cert is given. /slow holds its
    answer until release()."""

    __test__ = False

    def __init__(self, index, cert=None, key=None):
        self.requests = []
        self.released = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self):
                outer.requests.append({"method": self.command, "path": self.path,
                                       "headers": list(self.headers.items())})
                if self.path.startswith("/slow"):
                    outer.released.wait(240)
                body = b"upstream says hello\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_TRACE = _any

            def log_message(self, *a):
                pass

        super().__init__(Handler, index=index)
        self.server.daemon_threads = True
        if cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(cert), str(key))
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)

    def release(self):
        self.released.set()

    def close(self):
        self.released.set()
        super().close()


class RawRecorder:
    """A TCP server in the test upstream network recording the raw bytes of
    each connection: it reads until the peer is quiet for 2 s, then answers
    one fixed response and closes."""

    def __init__(self, index):
        self.host = e2e.test_upstream_addrs()[index]
        self.sock = e2e.in_test_netns(lambda: socket.create_server((self.host, 0)))
        self.port = self.sock.getsockname()[1]
        self.conns = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def _one(self, c):
        data = b""
        c.settimeout(2)
        try:
            while True:
                b = c.recv(65536)
                if not b:
                    break
                data += b
        except socket.timeout:
            pass
        self.conns.append(data)
        try:
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
        except OSError:
            pass
        c.close()

    def close(self):
        self.sock.close()


# ---------------------------------------------------------------- header secrets over TLS

PROBE_HEADER = r"""
import socket, sys
good, plain_port, bad_ca, bad_name = sys.argv[1:5]

def raw(method, target, extra=""):
    s = socket.create_connection(("127.0.0.1", 3128), timeout=30)
    host = target.split("/")[2]
    s.sendall(("%s %s HTTP/1.1\r\nHost: %s\r\nX-Api-Key: from-the-agent\r\nConnection: close\r\n%s\r\n"
               % (method, target, host, extra)).encode())
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    print("RESULT", method, target, head.split(b"\r\n")[0].decode(), "|", body.decode(errors="replace").strip())

ip = good.split(":")[0]
raw("GET", "http://%s/hdr" % good)                        # the origin's port, named
raw("GET", "http://%s/noport" % ip)                       # no port: the origin's
raw("TRACE", "http://%s/trace" % good)
raw("GET", "http://%s:%s/clear" % (ip, plain_port))       # another port of that host
raw("GET", "http://%s/badca" % bad_ca)
raw("GET", "http://%s/badname" % bad_name)
print("PROBE done")
"""


@pytest.fixture(scope="module")
def tls_world(endpoints, admin_token, api, runs, team_id):
    addrs = e2e.test_upstream_addrs()
    ca_crt, ca_key = os.environ.get("PADDOCK_TEST_CA_CERT"), os.environ.get("PADDOCK_TEST_CA_KEY")
    assert ca_crt and ca_key, "PADDOCK_TEST_CA_CERT/KEY not set: endpoints.env of an older stack.sh?"
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="paddock-tls-"))
    other_ca = make_ca(tmp, "other-ca")
    good = Recording(0, *make_leaf(tmp, "good", addrs[0], ca_crt, ca_key))
    plain = Recording(0)                                       # same host, plain HTTP, another port
    bad_ca = Recording(1, *make_leaf(tmp, "badca", addrs[1], *other_ca))
    bad_name = Recording(2, *make_leaf(tmp, "badname", addrs[3], ca_crt, ca_key))  # a cert for another IP
    servers = (good, plain, bad_ca, bad_name)
    try:
        profile = approved_profile(api, [s.hostport for s in servers])
        secret = "tlssecret-" + uuid.uuid4().hex
        name = f"E2E_TLS_{uuid.uuid4().hex[:8].upper()}"
        api.ok("PUT", f"/v1/teams/{team_id}/secrets/{name}", json={"value": secret}, expect=(200, 201, 204))
        bindings = [{"name": name, "as": {"header": {"origin": f"https://{s.hostport}", "name": "X-Api-Key"}}}
                    for s in (good, bad_ca, bad_name)]
        run_id = start_probe(runs, PROBE_HEADER,
                             [good.hostport, plain.port, bad_ca.hostport, bad_name.hostport], profile,
                             secrets=bindings, timeout_s=120)
        res = e2e.wait_terminal(endpoints, admin_token, run_id, timeout=240)
        out = res.output()
        lines = {tuple(l.split(" ")[1:3]): l for l in out.splitlines() if l.startswith("RESULT ")}
        yield {"out": out, "lines": lines, "res": res, "run": run_id, "secret": secret, "good": good,
               "plain": plain, "bad_ca": bad_ca, "bad_name": bad_name,
               "events": e2e.wait_for("the probe's egress events", lambda: (lambda eg: eg if len(eg) >= 6 else None)(
                   egress_of(api, run_id)), timeout=60)}
    finally:
        for s in servers:
            s.close()
        shutil.rmtree(tmp, ignore_errors=True)


def line(w, method, target):
    got = w["lines"].get((method, target))
    assert got, f"no result for {method} {target}: {w['out']}"
    return got


def event(w, path):
    evs = [e for e in w["events"] if e.get("path") == path]
    assert len(evs) == 1, (path, w["events"])
    return evs[0]


def test_header_secret_sent_only_over_verified_tls(tls_world):
    w = tls_world
    assert w["res"].terminal == "succeeded", w["out"]
    assert " 200 OK | upstream says hello" in line(w, "GET", f"http://{w['good'].hostport}/hdr"), w["out"]
    got = [r for r in w["good"].requests if r["path"] in ("/hdr", "/noport")]
    assert [r["path"] for r in got] == ["/hdr", "/noport"], w["good"].requests
    for r in got:
        # the TLS-only upstream got the secret, replacing the agent's own value
        assert [v for k, v in r["headers"] if k.lower() == "x-api-key"] == [w["secret"]], r
        assert dict((k.lower(), v) for k, v in r["headers"])["host"] == w["good"].hostport, r
    ev = event(w, "/hdr")
    assert ev["decision"] == "allow" and ev["tls"] is True and ev["secret_headers"] == ["X-Api-Key"], ev
    assert ev["port"] == w["good"].port
    assert w["secret"] not in w["out"]
    assert all(w["secret"] not in repr(e) for e in w["events"])


def test_header_origin_trace_refused(tls_world):
    w = tls_world
    assert "HTTP/1.1 403" in line(w, "TRACE", f"http://{w['good'].hostport}/trace"), w["out"]
    assert not [r for r in w["good"].requests if r["method"] == "TRACE"], w["good"].requests
    ev = event(w, "/trace")
    assert ev["decision"] == "deny" and "TRACE" in ev["reason"], ev


def test_header_origin_other_port_refused(tls_world):
    w = tls_world
    host = w["good"].host
    assert "HTTP/1.1 403" in line(w, "GET", f"http://{host}:{w['plain'].port}/clear"), w["out"]
    assert w["plain"].requests == [], "a plain-text request reached the secret's host on another port"
    ev = event(w, "/clear")
    assert ev["decision"] == "deny" and "never sent in clear" in ev["reason"], ev


@pytest.mark.parametrize("which,path,why", [("bad_ca", "/badca", "unable to get local issuer certificate"),
                                            ("bad_name", "/badname", "IP address mismatch")])
def test_header_origin_bad_certificate_fails_closed(tls_world, which, path, why):
    w = tls_world
    srv = w[which]
    assert "HTTP/1.1 502" in line(w, "GET", f"http://{srv.hostport}{path}"), w["out"]
    assert srv.requests == [], f"{which}: a request went over a TLS connection that failed verification"
    ev = event(w, path)
    assert "certificate verification failed" in ev["reason"] and why in ev["reason"], ev
    assert not ev.get("secret_headers"), ev


@pytest.mark.parametrize("header,field", [
    ({"origin": "http://api.example.com", "name": "X-K"}, "spec.secrets[0].as.header.origin"),
    ({"origin": "https://api.example.com/v1", "name": "X-K"}, "spec.secrets[0].as.header.origin"),
    ({"origin": "https://user@api.example.com", "name": "X-K"}, "spec.secrets[0].as.header.origin"),
    ({"origin": "https://*.example.com", "name": "X-K"}, "spec.secrets[0].as.header.origin"),
    ({"origin": "https://api.example.com:0", "name": "X-K"}, "spec.secrets[0].as.header.origin"),
    ({"origin": "https://2001:db8::1", "name": "X-K"}, "spec.secrets[0].as.header.origin"),
    ({"origin": "https://a.example", "host": "a.example", "name": "X-K"}, "spec.secrets[0].as.header.origin"),
    ({"name": "X-K"}, "spec.secrets[0].as.header.origin"),
])
def test_header_origin_validated(api, team_id, header, field):
    spec = e2e.command_spec(["/bin/true"])
    spec["secrets"] = [{"name": "ANY_SECRET", "as": {"header": header}}]
    r = api.post("/v1/sandboxes", json={"name": e2e.unique_name("origin"), "team": team_id, "spec": spec})
    assert r.status_code == 400 and field in r.json()["detail"], r.text


def test_header_origin_forms_accepted_and_duplicates_refused(api, team_id):
    spec = e2e.command_spec(["/bin/true"])
    spec["secrets"] = [{"name": "ANY_SECRET", "as": {"header": {"origin": "https://API.example.com:443/", "name": "X-K"}}},
                       {"name": "ANY_SECRET", "as": {"header": {"origin": "https://[2001:db8::1]:8443", "name": "X-K"}}},
                       {"name": "ANY_SECRET", "as": {"header": {"origin": "https://198.51.100.7", "name": "X-K"}}}]
    r = api.post("/v1/sandboxes", json={"name": e2e.unique_name("origin"), "team": team_id, "spec": spec})
    assert r.status_code == 201, r.text
    # the older host form is https://host:443: the same destination as the first
    spec["secrets"].append({"name": "ANY_SECRET", "as": {"header": {"host": "api.example.com", "name": "x-k"}}})
    r = api.post("/v1/sandboxes", json={"name": e2e.unique_name("origin"), "team": team_id, "spec": spec})
    assert r.status_code == 400 and "spec.secrets[3].as repeats" in r.json()["detail"], r.text


# ---------------------------------------------------------------- budgets

FLOOD = 10000
CHILDREN = 10   # the sandbox's RLIMIT_NOFILE is 1024: 1,000 connections per process

PROBE_FLOOD = r"""
import os, select, socket, sys, time
target = sys.argv[1]
n_child, per_child = int(sys.argv[2]), int(sys.argv[3])

def child(i):
    socks, refused, errors = [], 0, 0
    req = ("GET http://%s/slow/%d HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, i, target)).encode()
    for k in range(per_child):
        try:
            s = socket.create_connection(("127.0.0.1", 3128), timeout=30)
            s.sendall(req)
            socks.append(s)
        except OSError:
            errors += 1
    # answered (429) or closed now: refused; silent: held by the proxy, waiting for /slow
    time.sleep(5)
    p = select.poll()
    for s in socks:
        p.register(s, select.POLLIN)
    ready = {fd for fd, ev in p.poll(0)}
    held, codes = [], {}
    for s in socks:
        if s.fileno() in ready:
            try:
                line = s.recv(200).split(b"\r\n")[0].decode(errors="replace")
            except OSError as e:
                line = type(e).__name__
            code = line.split(" ")[1] if line.startswith("HTTP/") else line or "closed"
            codes[code] = codes.get(code, 0) + 1
            refused += 1
            s.close()
        else:
            held.append(s)
    print("CHILD", i, "opened", len(socks), "errors", errors, "refused", refused, "held", len(held),
          "codes", ",".join("%s=%d" % kv for kv in sorted(codes.items())), flush=True)
    # hold until the upstream answers /slow (the test releases it)
    answered = 0
    for s in held:
        s.settimeout(300)
        try:
            if s.recv(200).split(b"\r\n")[0].endswith(b" 200 OK"):
                answered += 1
        except OSError:
            pass
    print("CHILD", i, "answered", answered, flush=True)

pids = []
for i in range(n_child):
    pid = os.fork()
    if pid == 0:
        try:
            child(i)
        finally:
            os._exit(0)
    pids.append(pid)
for pid in pids:
    os.waitpid(pid, 0)
print("FLOOD done", flush=True)
"""

PROBE_FETCH = r"""
import sys, urllib.request
with urllib.request.urlopen("http://%s/b" % sys.argv[1], timeout=60) as r:
    print("FETCH", r.status, r.read().decode().strip())
"""


def runner_metrics():
    url = os.environ.get("PADDOCK_RUNNER_AGENT_OPS_URL")
    assert url, "PADDOCK_RUNNER_AGENT_OPS_URL not set"
    r = requests.get(url + "/metrics", timeout=10)
    assert r.status_code == 200
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(\w+) ([0-9.e+-]+)$", r.text, re.M)}


def run_status(api, run_id):
    return api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))["status"]


def output_of(api, run_id):
    return "".join(e["data"].get("text", "") for e in e2e.all_events(api, run_id) if e["kind"] == "output")


def test_run_flooding_its_proxy_is_bounded_and_others_still_work(endpoints, admin_token, api, runs):
    up = Recording(3)
    try:
        profile = approved_profile(api, [up.hostport])
        before = runner_metrics()
        a = start_probe(runs, PROBE_FLOOD, [up.hostport, CHILDREN, FLOOD // CHILDREN], profile, timeout_s=400)
        # every child has opened its connections and classified them
        e2e.wait_for("the flood to be in place", lambda: output_of(api, a).count(" held ") >= CHILDREN
                     or run_status(api, a) in e2e.TERMINAL, timeout=300, pause=2)
        out_a = output_of(api, a)
        assert out_a.count(" held ") == CHILDREN, out_a
        held = sum(int(m) for m in re.findall(r" held (\d+)", out_a))
        refused = sum(int(m) for m in re.findall(r" refused (\d+)", out_a))
        errors = sum(int(m) for m in re.findall(r" errors (\d+)", out_a))
        assert held + refused + errors == FLOOD, out_a
        assert 0 < held <= 256, out_a           # PADDOCK_EGRESS_RUN_MAX_CONNS, default 256
        assert "429=" in out_a, out_a            # refused with a reason, not just dropped
        # the node is healthy, and another run's egress works while A holds its budget
        ops = os.environ["PADDOCK_RUNNER_AGENT_OPS_URL"]
        assert requests.get(ops + "/healthz", timeout=10).status_code == 200
        assert requests.get(ops + "/readyz", timeout=30).status_code == 200
        b = start_probe(runs, PROBE_FETCH, [up.hostport], profile, timeout_s=120)
        res_b = e2e.wait_terminal(endpoints, admin_token, b, timeout=240)
        assert res_b.terminal == "succeeded" and "FETCH 200 upstream says hello" in res_b.output(), res_b.output()
        assert run_status(api, a) not in e2e.TERMINAL, "the flood ended before run B was done"
        mid = runner_metrics()
        assert mid["paddock_runner_egress_connections"] >= held, mid
        assert mid["paddock_runner_egress_refused_total"] - before.get("paddock_runner_egress_refused_total", 0) \
            >= refused - errors, mid
        # A's held requests reached the upstream and finish once it answers
        # (decisions run in the proxy's fixed worker pool: the last few may
        # still be connecting when the client already counts them held)
        slow = lambda: len([r for r in up.requests if r["path"].startswith("/slow")])  # noqa: E731
        e2e.wait_for(f"{held} held requests at the upstream", lambda: slow() >= held, timeout=60, pause=0.5)
        assert slow() == held
        up.release()
        res_a = e2e.wait_terminal(endpoints, admin_token, a, timeout=400)
        out_a = res_a.output()
        assert res_a.terminal == "succeeded" and "FLOOD done" in out_a, out_a
        answered = sum(int(m) for m in re.findall(r" answered (\d+)", out_a))
        assert answered == held, out_a
        # the refusals are aggregated: a few events, each with its count
        # (the last one is sent when the run's proxy stops; evidence may trail the run's end)
        def counted():
            eg = egress_of(api, a)
            budget = [e for e in eg if e.get("rule") == "budget"]
            return (eg, budget) if sum(e["refused"] for e in budget) >= refused - errors else None
        eg, budget = e2e.wait_for("every refusal to be counted in egress events", counted, timeout=90, pause=2)
        assert len(budget) <= 60, f"{len(budget)} budget events for {refused} refusals"
        assert all(e["decision"] == "deny" and "budget of this run exhausted" in e["reason"] for e in budget), budget
        assert len(eg) < 1000, f"{len(eg)} egress events for one flood"
        # everything is released when the runs end
        e2e.wait_for("the proxy's connections to be released",
                     lambda: runner_metrics()["paddock_runner_egress_connections"] == 0, timeout=60)
        assert requests.get(ops + "/healthz", timeout=10).status_code == 200
    finally:
        up.close()


# ---------------------------------------------------------------- chunked bodies

PROBE_CHUNKED = r"""
import socket, sys
target, unallowed = sys.argv[1], sys.argv[2]

def send(name, raw):
    s = socket.create_connection(("127.0.0.1", 3128), timeout=30)
    s.sendall(raw)
    s.shutdown(socket.SHUT_WR)
    data = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    except OSError:
        pass
    s.close()
    print("RESULT", name, data.split(b"\r\n")[0].decode(errors="replace"), "|", data.rsplit(b"\r\n", 1)[-1].decode(errors="replace").strip(), flush=True)

head = "POST http://%s/%%s HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n" % (target, target)
smuggled = "GET http://%s/smuggled HTTP/1.1\r\nHost: %s\r\n\r\n" % (unallowed, unallowed)
send("smuggle", ((head % "first") + "5\r\nhello\r\n0\r\n\r\n" + smuggled).encode())
send("badsize", ((head % "badsize") + "5x\r\nhello\r\n0\r\n\r\n").encode())
send("badsize2", ((head % "badsize2") + "-1\r\nhello\r\n0\r\n\r\n").encode())
send("both", ("POST http://%s/both HTTP/1.1\r\nHost: %s\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" % (target, target)).encode())
send("split", ((head % "split") + "3\r\nabc\r\n").encode()[:-1])  # incomplete: client then closes
print("PROBE done")
"""


def test_chunked_body_framed_nothing_smuggled(endpoints, admin_token, api, runs):
    rec = RawRecorder(0)
    addrs = e2e.test_upstream_addrs()
    try:
        profile = approved_profile(api, [f"{rec.host}:{rec.port}"])
        run_id = start_probe(runs, PROBE_CHUNKED, [f"{rec.host}:{rec.port}", f"{addrs[4]}:{rec.port}"], profile,
                             timeout_s=120)
        res = e2e.wait_terminal(endpoints, admin_token, run_id, timeout=240)
        out = res.output()
        assert res.terminal == "succeeded" and "PROBE done" in out, out
        results = {l.split(" ")[1]: l for l in out.splitlines() if l.startswith("RESULT ")}
        assert "HTTP/1.1 200 OK" in results["smuggle"], out
        # the upstream saw exactly one request: the head and the chunked body, nothing after its last chunk
        firsts = [c for c in rec.conns if b"/first" in c]
        assert len(firsts) == 1, rec.conns
        raw = firsts[0]
        assert raw.endswith(b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), raw
        assert raw.count(b" HTTP/1.1\r\n") == 1 and b"smuggled" not in raw, raw
        assert not any(b"smuggled" in c for c in rec.conns), rec.conns
        for name in ("badsize", "badsize2", "both"):
            assert "HTTP/1.1 400" in results[name], (name, out)
            assert not any(f"/{name}".encode() in c for c in rec.conns), (name, rec.conns)
        eg = egress_of(api, run_id)
        first = [e for e in eg if e.get("path") == "/first"]
        assert len(first) == 1 and first[0]["decision"] == "allow", eg
        assert "not forwarded" in first[0]["reason"], first[0]
        # the smuggled request was never sent anywhere (no event of its own: the connection was closed)
        assert not [e for e in eg if e.get("path") == "/smuggled" and e["decision"] == "allow"], eg
        bad = [e for e in eg if e.get("path") in ("/badsize", "/badsize2")]
        assert len(bad) == 2 and all(e["decision"] == "deny" and "chunk" in e["reason"] for e in bad), bad
        split = [e for e in eg if e.get("path") == "/split"]
        assert split and "before the request body ended" in split[0]["reason"], eg
    finally:
        rec.close()


# ---------------------------------------------------------------- settings

def runner_binary():
    p = e2e.api_binary().parent.parent / "runner-agent" / "paddock-runner-agent"
    assert p.is_file(), p
    return p


@pytest.mark.parametrize("content,why", [(None, "cannot load the CA certificates"),
                                         ("not a certificate\n", "cannot load the CA certificates")])
def test_unusable_ca_bundle_is_a_configuration_error(tmp_path, content, why):
    """The runner-agent refuses to start (exit 78) with a CA bundle it cannot use, rather than
    trusting nothing or everything."""
    bundle = tmp_path / "ca.pem"
    if content is not None:
        bundle.write_text(content)
    env = {"PATH": "/usr/bin:/bin", "PADDOCK_KAFKA_BOOTSTRAP": "127.0.0.1:9",
           "PADDOCK_RUNNER_STATE_DIR": str(tmp_path / "state"), "PADDOCK_EGRESS_CA_BUNDLE": str(bundle),
           "ASAN_OPTIONS": "detect_leaks=0"}
    p = subprocess.run([str(runner_binary())], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 78, (p.returncode, p.stderr[-2000:])
    assert "PADDOCK_EGRESS_CA_BUNDLE" in p.stderr and why in p.stderr, p.stderr[-2000:]
    assert not (tmp_path / "state").exists()


def test_egress_settings_in_help():
    out = subprocess.run([str(runner_binary()), "--help"], capture_output=True, text=True, timeout=30).stdout
    for name in ("PADDOCK_EGRESS_RUN_MAX_CONNS", "PADDOCK_EGRESS_RUN_MAX_FDS", "PADDOCK_EGRESS_RUN_MAX_BUFFER_MB",
                 "PADDOCK_EGRESS_NODE_MAX_CONNS", "PADDOCK_EGRESS_IDLE_TIMEOUT_S", "PADDOCK_EGRESS_MAX_BODY_MB",
                 "PADDOCK_EGRESS_CA_BUNDLE"):
        assert name in out, out
