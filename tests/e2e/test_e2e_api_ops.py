"""The api's ops port and its websocket pings (issue 16; docs/CONTRACTS.md
"The api's ops port" and "Websocket pings").

* /metrics is served on PADDOCK_OPS_ADDR, never on the public port, and one
  scrape shows the SUM over the api's worker processes (each counts in its
  own slot of a shared mapping).
* Idle streams are pinged every PADDOCK_STREAM_PING_S; a client that answers
  no ping is dropped.
* An idle kept-alive HTTP connection outlives libwebsockets' 5 s default
  ("HTTP keep-alive").

Both run against a replica of the stack's api started here (its env file,
with its own ports, 2 workers and a 1 s ping): a second api on the same
PostgreSQL and Kafka is what a second Kubernetes replica is, and its counters
see only this test's requests.
"""

import http.client
import os
import re
import signal
import socket
import subprocess
import time
import urllib.parse
import uuid

import psycopg
import pytest
import requests
import websocket

from conftest import api_binary, command_spec, openapi_undescribed_path, read_env_file, state_dir, wait_for

WORKERS = 2
PING_S = 1


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric(text, name):
    m = re.search(rf"^{re.escape(name)} (\d+)$", text, re.M)
    assert m, f"{name} not in /metrics:\n{text[:2000]}"
    return int(m.group(1))


@pytest.fixture(scope="module")
def replica(endpoints):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PADDOCK_")}
    env.update(read_env_file(state_dir() / "env" / "api.env"))
    port, ops_port = free_port(), free_port()
    env.update({"PADDOCK_API_ADDR": f"127.0.0.1:{port}", "PADDOCK_OPS_ADDR": f"127.0.0.1:{ops_port}",
                "PADDOCK_API_WORKERS": str(WORKERS), "PADDOCK_STREAM_PING_S": str(PING_S)})
    log = open(state_dir() / "logs" / "api-ops-replica.log", "ab")
    proc = subprocess.Popen([str(api_binary())], env=env, stdout=log, stderr=log)
    base, ops = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{ops_port}"

    def ready(url):
        try:
            return requests.get(url + "/readyz", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for("the replica's ops port", lambda: proc.poll() is None and ready(ops), timeout=90)
        wait_for("the replica's public port", lambda: ready(base), timeout=90)
        yield {"base": base, "ops": ops, "ws": f"ws://127.0.0.1:{port}", "pid": proc.pid}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def workers_of(pid):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_metrics_are_summed_over_workers(replica):
    assert len(workers_of(replica["pid"])) == WORKERS
    before = metric(requests.get(replica["ops"] + "/metrics", timeout=10).text, "paddock_api_http_requests_total")
    n = 40
    for _ in range(n):
        # a new connection each: SO_REUSEPORT spreads them over the workers
        with requests.Session() as s:
            assert s.get(replica["base"] + "/healthz", timeout=10, headers={"Connection": "close"}).status_code == 200
    # scrapes are not requests of the public API: they do not count
    for _ in range(3):
        r = requests.get(replica["ops"] + "/metrics", timeout=10)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain"), r.headers
        assert metric(r.text, "paddock_api_http_requests_total") - before == n


@pytest.mark.parametrize("where", ["stack", "replica"])
def test_idle_keepalive_connection_still_answers(replica, endpoints, where):
    """A kept-alive connection idle for longer than libwebsockets' default 5 s
    (and than the replica's 1 s ping interval, which is for websockets) still
    serves the next request on the same socket (CONTRACTS "HTTP keep-alive")."""
    base = urllib.parse.urlparse(endpoints.api if where == "stack" else replica["base"])
    conn = http.client.HTTPConnection(base.hostname, base.port, timeout=10)
    try:
        conn.request("GET", "/healthz")
        first = conn.getresponse()
        first.read()
        assert first.status == 200 and first.getheader("Connection", "").lower() != "close"
        local = conn.sock.getsockname()
        time.sleep(6.5)
        conn.request("GET", "/healthz")  # http.client never reconnects on its own
        again = conn.getresponse()
        again.read()
        assert again.status == 200
        assert conn.sock.getsockname() == local
    finally:
        conn.close()


def test_public_port_has_no_metrics(replica, endpoints):
    for base in (replica["base"], endpoints.api):
        with openapi_undescribed_path():
            r = requests.get(base + "/metrics", timeout=10)
        assert r.status_code == 404, (base, r.status_code, r.text[:200])
    # the stack's api too: its ops port is another port, and answers
    ops = endpoints.need("PADDOCK_API_OPS_URL").rstrip("/")
    assert ops != endpoints.api.rstrip("/")
    r = requests.get(ops + "/metrics", timeout=10)
    assert r.status_code == 200 and "# TYPE paddock_api_http_requests_total counter" in r.text
    for path in ("/healthz", "/readyz"):
        assert requests.get(ops + path, timeout=10).json()["status"] in ("ok", "ready")


# ---------------------------------------------------------------- pings


@pytest.fixture(scope="module")
def idle_run(endpoints, runs, me, team_id, tenant_id):
    """A running run without events, never scheduled: its stream stays idle."""
    sb = runs.create_sandbox(command_spec(["/bin/true"], timeout_s=30))
    version = runs.publish(sb)
    run_id = str(uuid.uuid4())
    with psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO api.runs (id, tenant_id, team_id, sandbox_id, version, status, created_by, node_id) "
            "VALUES (%s, %s, %s, %s, %s, 'running', %s, 'e2e-node')",
            (run_id, tenant_id, team_id, sb, version, me["user"]["id"]))
    return run_id


def open_stream(replica, run_id, token):
    return websocket.create_connection(f"{replica['ws']}/v1/runs/{run_id}/stream",
                                       header=[f"Authorization: Bearer {token}"], timeout=30)


def sessions(replica):
    return metric(requests.get(replica["ops"] + "/metrics", timeout=10).text, "paddock_api_stream_sessions")


def test_idle_stream_is_pinged_and_survives(replica, idle_run, admin_token):
    ws = open_stream(replica, idle_run, admin_token)
    pings, other = [], []
    try:
        deadline = time.monotonic() + 6 * PING_S
        while time.monotonic() < deadline:
            ws.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                # answers each ping with a pong, as every websocket client does
                frame = ws.recv_data_frame(control_frame=True)[1]
            except websocket.WebSocketTimeoutException:
                continue
            if frame.opcode == websocket.ABNF.OPCODE_PING:
                pings.append(time.monotonic())
            else:
                other.append(frame.opcode)
        assert websocket.ABNF.OPCODE_CLOSE not in other, other
        assert len(pings) >= 3, f"{len(pings)} pings in {6 * PING_S} s of an idle stream (ping every {PING_S} s)"
        assert ws.connected
        assert sessions(replica) >= 1
    finally:
        ws.close()


def test_client_that_stops_answering_is_dropped(replica, idle_run, admin_token):
    ws = open_stream(replica, idle_run, admin_token)
    ws.pong = lambda *a, **kw: None  # reads the pings, answers none
    wait_for("the stream session to count", lambda: sessions(replica) >= 1, timeout=10)
    closed = False
    deadline = time.monotonic() + 10 * PING_S + 10
    try:
        while time.monotonic() < deadline and not closed:
            ws.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                frame = ws.recv_data_frame(control_frame=True)[1]
                closed = frame.opcode == websocket.ABNF.OPCODE_CLOSE
            except websocket.WebSocketTimeoutException:
                continue
            except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
                closed = True
    finally:
        ws.close()
    assert closed, f"a client answering no ping was still connected after {10 * PING_S + 10} s"
    wait_for("the dropped session to be gone", lambda: sessions(replica) == 0, timeout=10)
