"""Shared fixtures of the end-to-end suite.

The suite runs against a running local stack (`make up`, or `make test`, which
starts it and exports $PADDOCK_STATE_DIR/endpoints.env). Without one it fails
loudly: a silently skipped e2e suite proves nothing.

Only real clients are used: requests (HTTP), websocket-client, boto3 (S3),
confluent_kafka (Kafka), psycopg (PostgreSQL). All traffic goes to loopback.
"""

import http.server
import io
import ipaddress
import json
import os
import pathlib
import random
import re
import secrets
import subprocess
import tarfile
import time
import urllib.parse
import uuid

import contextlib
import ctypes
import sys
import threading

import pytest
import requests
import requests.adapters
import websocket
from confluent_kafka import Consumer, TopicPartition

# tests/security loads this file by path, without tests/e2e on sys.path
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import openapi_check  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]
TERMINAL = {"succeeded", "failed", "cancelled", "timed_out", "limit_exceeded", "rejected"}
HTTP_TIMEOUT = 30


# ---------------------------------------------------------------- OpenAPI validation
#
# Every response of the api made through `requests` anywhere in the suite (one
# hop at a time, redirects included) is validated against
# services/api/openapi.yaml; violations fail the test at teardown, and any left
# over at the end of the session fail the session. Responses to deliberately
# malformed requests are validated too: errors must be problem+json as the spec
# says. The one escape hatch, `openapi_undescribed_path()`, lets a test probe a
# path or method that is deliberately not an endpoint; the answer must still be
# a Problem.

_OPENAPI = openapi_check.Spec()
_openapi_violations = []
_openapi_lock = threading.Lock()
_openapi_local = threading.local()
_adapter_send = requests.adapters.HTTPAdapter.send


def _api_base():
    base = os.environ.get("PADDOCK_API_URL", "").rstrip("/")
    return base or None


@contextlib.contextmanager
def openapi_undescribed_path():
    """Requests made inside may go to paths or methods the spec does not describe."""
    old = getattr(_openapi_local, "undescribed", False)
    _openapi_local.undescribed = True
    try:
        yield
    finally:
        _openapi_local.undescribed = old


def _validating_send(self, request, *args, **kwargs):
    resp = _adapter_send(self, request, *args, **kwargs)
    base = _api_base()
    if not base or not request.url.startswith(base + "/"):
        return resp
    try:
        body = resp.content  # cached: later reads (iter_content too) see the same bytes
    except Exception as e:  # noqa: BLE001 - a broken body is the test's own failure to see
        body = None
        problems = [f"{request.method} {request.url}: body could not be read: {e}"]
    else:
        # the path below the base URL ("/v1/...?query"), as the spec's paths are written
        problems = _OPENAPI.check(request.method, request.url[len(base):], resp.status_code, resp.headers.get("Content-Type"), body,
                                  allow_undescribed_path=getattr(_openapi_local, "undescribed", False))
    if problems:
        with _openapi_lock:
            _openapi_violations.extend(problems)
    return resp


requests.adapters.HTTPAdapter.send = _validating_send


def _take_openapi_violations():
    with _openapi_lock:
        out = list(_openapi_violations)
        _openapi_violations.clear()
    return out


@pytest.fixture(autouse=True)
def openapi_responses():
    """Fails the test (at teardown) if a response of the api it caused, or
    of a fixture set up for it, is not what openapi.yaml describes."""
    yield
    problems = _take_openapi_violations()
    if problems:
        uniq = list(dict.fromkeys(problems))
        pytest.fail("responses not described by services/api/openapi.yaml:\n  " + "\n  ".join(uniq[:40]),
                    pytrace=False)


def pytest_sessionfinish(session, exitstatus):
    problems = _take_openapi_violations()
    if problems:
        uniq = list(dict.fromkeys(problems))
        print("\nresponses not described by services/api/openapi.yaml (fixture teardown):\n  "
              + "\n  ".join(uniq[:40]))
        session.exitstatus = 1


# ---------------------------------------------------------------- endpoints


def state_dir():
    d = os.environ.get("PADDOCK_STATE_DIR") or os.environ.get("PADDOCK_E2E_DEFAULT_STATE_DIR")
    return pathlib.Path(d) if d else REPO / ".paddock"


def read_env_file(path):
    """Parses a shell KEY=value file (optional `export`, optional quotes)."""
    out = {}
    try:
        text = pathlib.Path(path).read_text()
    except OSError:
        return out
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):]
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key.strip()] = value
    return out


def assert_loopback_url(url):
    """Every address the suite talks to must be loopback (network safety rule)."""
    host = urllib.parse.urlsplit(url).hostname
    assert host, f"no host in URL {url!r}"
    if host == "localhost":
        return
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        pytest.fail(f"refusing to contact non-loopback host {host!r} ({url})", pytrace=False)
    assert addr.is_loopback, f"refusing to contact non-loopback address {host} ({url})"


class Endpoints:
    def __init__(self, env):
        self.env = env
        self.api = env["PADDOCK_API_URL"].rstrip("/")
        assert_loopback_url(self.api)

    def need(self, key):
        value = self.env.get(key)
        if not value:
            pytest.fail(
                f"{key} is not set: export the local stack's endpoints "
                f"({state_dir()}/endpoints.env) before running the e2e suite",
                pytrace=False,
            )
        return value

    @property
    def ws_base(self):
        u = urllib.parse.urlsplit(self.api)
        scheme = "wss" if u.scheme == "https" else "ws"
        return urllib.parse.urlunsplit((scheme, u.netloc, u.path, "", ""))


@pytest.fixture(scope="session")
def endpoints():
    if not os.environ.get("PADDOCK_API_URL"):
        pytest.fail(
            "PADDOCK_API_URL is not set. The e2e suite runs against the local stack: "
            "start it with `make up` and export its endpoints "
            "(`set -a; . .paddock/endpoints.env; set +a`), or run `make test`, which does both.",
            pytrace=False,
        )
    return Endpoints(dict(os.environ))


@pytest.fixture(scope="session")
def credentials():
    file_creds = read_env_file(state_dir() / "credentials")
    creds = {}
    for key in ("PADDOCK_TENANT", "PADDOCK_USER", "PADDOCK_PASSWORD"):
        creds[key] = os.environ.get(key) or file_creds.get(key)
        if not creds[key]:
            pytest.fail(f"{key} is neither in the environment nor in {state_dir()}/credentials",
                        pytrace=False)
    return creds


# ---------------------------------------------------------------- API client


class Api:
    """A thin requests wrapper bound to one token."""

    def __init__(self, base, token=None):
        self.base = base
        self.token = token
        self.http = requests.Session()

    def headers(self, extra=None):
        h = {"Accept": "application/json"}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        if extra:
            h.update(extra)
        return h

    def request(self, method, path, **kw):
        kw.setdefault("timeout", HTTP_TIMEOUT)
        kw["headers"] = self.headers(kw.get("headers"))
        return self.http.request(method, self.base + path, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def ok(self, method, path, expect=(200, 201, 202), **kw):
        r = self.request(method, path, **kw)
        assert r.status_code in expect, f"{method} {path} -> {r.status_code}: {r.text[:500]}"
        return r.json() if r.content else None


def login(endpoints, tenant, user, password):
    r = requests.post(endpoints.api + "/v1/auth/login",
                      json={"tenant": tenant, "username": user, "password": password},
                      timeout=HTTP_TIMEOUT)
    return r


@pytest.fixture(scope="session")
def admin_token(endpoints, credentials):
    r = login(endpoints, credentials["PADDOCK_TENANT"], credentials["PADDOCK_USER"],
              credentials["PADDOCK_PASSWORD"])
    assert r.status_code == 200, f"admin login failed: {r.status_code} {r.text[:300]}"
    token = r.json().get("token")
    assert token, f"login answered without a token: {r.text[:300]}"
    return token


@pytest.fixture(scope="session")
def api(endpoints, admin_token):
    return Api(endpoints.api, admin_token)


@pytest.fixture(scope="session")
def me(api):
    return api.ok("GET", "/v1/me", expect=(200,))


def _first(*values):
    for v in values:
        if isinstance(v, str) and v:
            return v
    return None


@pytest.fixture(scope="session")
def team_id(me):
    teams = me.get("teams") or (me.get("user") or {}).get("teams") or []
    assert teams, f"the admin belongs to no team: /v1/me = {json.dumps(me)[:500]}"
    t = teams[0]
    tid = t if isinstance(t, str) else _first(t.get("id"), t.get("team_id"))
    assert tid, f"cannot find the team id in /v1/me: {json.dumps(me)[:500]}"
    return tid


@pytest.fixture(scope="session")
def tenant_id(me):
    tenant = me.get("tenant")
    user = me.get("user") or {}
    tid = _first(tenant.get("id") if isinstance(tenant, dict) else None, me.get("tenant_id"),
                 user.get("tenant_id"), user.get("tenant") if isinstance(user.get("tenant"), str) else None)
    assert tid, f"cannot find the tenant id in /v1/me: {json.dumps(me)[:500]}"
    return tid


@pytest.fixture(scope="session")
def second_approver(endpoints, credentials, api, team_id):
    """Another user, approver in team_id: the launcher of a run never decides
    its approvals (four eyes, ARCHITECTURE.md §5). Returns (Api, username, password)."""
    import secrets as _secrets
    pw = _secrets.token_hex(12)
    u = api.ok("POST", "/v1/users", json={"username": unique_name("approver"), "password": pw}, expect=(201,))
    api.ok("PUT", f"/v1/teams/{team_id}/members/{u['id']}", json={"roles": ["approver", "viewer"]}, expect=(200,))
    r = login(endpoints, credentials["PADDOCK_TENANT"], u["username"], pw)
    assert r.status_code == 200, r.text[:300]
    return Api(endpoints.api, r.json()["token"]), u["username"], pw


# ---------------------------------------------------------------- sandboxes and runs


def command_spec(argv, files=None, timeout_s=60):
    spec = {"agent": {"type": "command", "command": list(argv)}, "limits": {"timeout_s": timeout_s}}
    if files:
        spec["files"] = files
    return spec


# ---------------------------------------------------------------- the api binary's operator commands


def api_binary():
    """paddock-api of the build the stack runs (next to PADDOCK_CLI, or in
    PADDOCK_BUILD_DIR, or build/)."""
    candidates = []
    if os.environ.get("PADDOCK_CLI"):
        candidates.append(pathlib.Path(os.environ["PADDOCK_CLI"]).resolve().parent.parent / "services/api/paddock-api")
    if os.environ.get("PADDOCK_BUILD_DIR"):
        candidates.append(pathlib.Path(os.environ["PADDOCK_BUILD_DIR"]) / "services/api/paddock-api")
    candidates.append(REPO / "build" / "services" / "api" / "paddock-api")
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    pytest.fail(f"paddock-api not found (set PADDOCK_CLI or PADDOCK_BUILD_DIR): tried {candidates}", pytrace=False)


def run_api_command(*args, input=None):
    """Runs `paddock-api ARGS` with the stack's api environment (and no other
    PADDOCK_* variable), input (text) on stdin; returns the CompletedProcess."""
    env_file = state_dir() / "env" / "api.env"
    api_env = read_env_file(env_file)
    assert api_env.get("PADDOCK_PG_DSN") and api_env.get("PADDOCK_MASTER_KEY"), f"no api settings in {env_file}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PADDOCK_")}
    env.update(api_env)
    return subprocess.run([str(api_binary()), *map(str, args)], env=env, input=input, capture_output=True, text=True,
                          timeout=120)


def bootstrap_tenant(name, admin, one_time=False):
    """Creates a tenant and its admin with `paddock-api bootstrap`; returns
    the admin's password: one chosen here (--password-stdin), or with
    one_time the generated one-time password, which must be changed at
    first login before anything but GET /v1/me works."""
    if one_time:
        out = run_api_command("bootstrap", "--tenant", name, "--admin", admin)
        assert out.returncode == 0, f"bootstrap failed ({out.returncode}): {out.stderr[-2000:]}"
        m = re.search(r"^password: *(\S+)", out.stdout, re.M)
        assert m, f"bootstrap printed no password line: {out.stdout[-500:]}"
        return m.group(1)
    password = secrets.token_hex(16)
    out = run_api_command("bootstrap", "--tenant", name, "--admin", admin, "--password-stdin", input=password + "\n")
    assert out.returncode == 0, f"bootstrap failed ({out.returncode}): {out.stderr[-2000:]}"
    assert "password" not in out.stdout, f"bootstrap printed a password it was given: {out.stdout[-500:]}"
    return password


# ---------------------------------------------------------------- login sources


class SourceAddressAdapter(requests.adapters.HTTPAdapter):
    """Connects from a given local address: login tests each use their own
    127.x.y.z source, so that the suite's failed logins from 127.0.0.1 stay
    under the per-source limit and every test starts from a clean count."""

    def __init__(self, source, **kw):
        self.source = source
        super().__init__(**kw)

    def init_poolmanager(self, *a, **kw):
        kw["source_address"] = (self.source, 0)
        return super().init_poolmanager(*a, **kw)


def random_loopback_source():
    return f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


def unique_name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Runs:
    """Creates and publishes sandboxes and launches runs as one user."""

    def __init__(self, api, team):
        self.api = api
        self.team = team

    def create_sandbox(self, spec, name=None):
        body = {"name": name or unique_name("e2e"), "team": self.team, "spec": spec}
        sb = self.api.ok("POST", "/v1/sandboxes", json=body, expect=(200, 201))
        assert sb.get("id"), f"sandbox create answered without id: {sb}"
        return sb["id"]

    def publish(self, sandbox_id):
        v = self.api.ok("POST", f"/v1/sandboxes/{sandbox_id}/versions", expect=(200, 201))
        assert isinstance(v.get("version"), int), f"publish answered without version: {v}"
        return v["version"]

    def launch(self, sandbox_id, version):
        body = {"sandbox": sandbox_id, "version": version, "team": self.team}
        r = self.api.ok("POST", "/v1/runs", json=body, expect=(202, 201, 200),
                        headers={"Idempotency-Key": str(uuid.uuid4())})
        assert r.get("id"), f"run launch answered without id: {r}"
        return r["id"]

    def start(self, spec, name=None):
        sb = self.create_sandbox(spec, name)
        version = self.publish(sb)
        return self.launch(sb, version)


@pytest.fixture(scope="session")
def runs(api, team_id):
    return Runs(api, team_id)


# ---------------------------------------------------------------- websocket


class StreamResult:
    def __init__(self):
        self.events = []
        self.close_code = None
        self.opened_at = None
        self.first_event_at = None

    @property
    def statuses(self):
        return [e["data"].get("status") for e in self.events if e.get("kind") == "status"]

    @property
    def terminal(self):
        for e in reversed(self.events):
            if e.get("kind") == "status" and e["data"].get("status") in TERMINAL:
                return e["data"]["status"]
        return None

    def output(self, stream=None):
        return "".join(e["data"].get("text", "") for e in self.events
                       if e.get("kind") == "output" and (stream is None or e["data"].get("stream") == stream))

    def of_kind(self, kind):
        return [e for e in self.events if e.get("kind") == kind]


def stream_url(endpoints, run_id, after=None, ticket=None):
    """The websocket URL of a run's stream; a token goes in the Authorization
    header, never here: a browser uses a ticket (POST .../stream-ticket)."""
    q = {}
    if after is not None:
        q["after"] = str(after)
    if ticket is not None:
        q["ticket"] = ticket
    url = f"{endpoints.ws_base}/v1/runs/{run_id}/stream"
    return url + ("?" + urllib.parse.urlencode(q) if q else "")


def watch(endpoints, token, run_id, after=None, timeout=120):
    """Reads the run's stream until the server closes it (after the terminal
    status) or `timeout` seconds pass (then fails, showing what was seen)."""
    res = StreamResult()
    deadline = time.monotonic() + timeout
    ws = websocket.create_connection(stream_url(endpoints, run_id, after),
                                     header=[f"Authorization: Bearer {token}"], timeout=timeout)
    res.opened_at = time.monotonic()
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"run {run_id}: no terminal status within {timeout} s; saw "
                            f"{[(e.get('seq'), e.get('kind'), e.get('data')) for e in res.events][-20:]}")
            ws.settimeout(remaining)
            try:
                opcode, data = ws.recv_data(control_frame=True)
            except websocket.WebSocketTimeoutException:
                continue
            except websocket.WebSocketConnectionClosedException:
                break
            if opcode == websocket.ABNF.OPCODE_TEXT:
                ev = json.loads(data.decode())
                if res.first_event_at is None:
                    res.first_event_at = time.monotonic()
                res.events.append(ev)
            elif opcode == websocket.ABNF.OPCODE_CLOSE:
                if len(data) >= 2:
                    res.close_code = int.from_bytes(data[:2], "big")
                break
    finally:
        ws.close()
    return res


def wait_terminal(endpoints, token, run_id, timeout=120):
    res = watch(endpoints, token, run_id, timeout=timeout)
    assert res.terminal, (f"run {run_id}: stream closed (code {res.close_code}) before a terminal "
                          f"status; statuses {res.statuses}")
    return res


class Tail:
    """Reads a topic from its end at creation: what was produced after,
    as (key, value, headers) in msgs."""

    def __init__(self, bootstrap, topic):
        self.topic = topic
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": "e2e-tail-" + uuid.uuid4().hex,
                           "enable.auto.commit": False})
        md = self.c.list_topics(topic, timeout=10).topics[topic]
        tps = []
        for p in md.partitions:
            _, high = self.c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            tps.append(TopicPartition(topic, p, high))
        self.c.assign(tps)
        self.msgs = []   # (key, value, headers)

    def drain(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            m = self.c.poll(0.5)
            if m is not None and not m.error():
                self.msgs.append(((m.key() or b"").decode(), m.value() or b"", dict(m.headers() or [])))
        return self.msgs

    def until(self, done, timeout=60):
        deadline = time.monotonic() + timeout
        while not done(self.msgs):
            assert time.monotonic() < deadline, f"not seen on {self.topic} in {timeout}s; have {len(self.msgs)}"
            self.drain(0.5)
        return self.msgs

    def close(self):
        self.c.close()


def audit_all(api, after=0, since=None):
    """The tenant's audit records after seq `after` (and from `since`, RFC 3339,
    if given), oldest first, following next_cursor through every page."""
    items = []
    while True:
        params = {"after": after, "limit": 1000}
        if since:
            params["from"] = since
        page = api.ok("GET", "/v1/audit", params=params, expect=(200,))
        items += page["items"]
        if not page["items"] or not page.get("next_cursor"):
            return items
        after = int(page["next_cursor"])


def all_events(api, run_id, after=0, limit=1000):
    """GET /v1/runs/{id}/events, following next_cursor through every page."""
    events = []
    while True:
        page = api.ok("GET", f"/v1/runs/{run_id}/events", params={"after": after, "limit": limit},
                      expect=(200,))
        items = page.get("items", [])
        events.extend(items)
        cursor = page.get("next_cursor")
        if not cursor or not items:
            return events
        assert int(cursor) > after, f"events cursor did not advance: {cursor} after {after}"
        after = int(cursor)


def wait_events_recorded(api, run_id, count, timeout=30):
    """History is written by evidence from Kafka, so it may trail the stream a little."""
    deadline = time.monotonic() + timeout
    while True:
        events = all_events(api, run_id)
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.5)


def wait_history_complete(api, run_id, timeout=60):
    """GET /v1/runs/{id} once it shows history.complete: evidence has stored
    every event of the run (docs/CONTRACTS.md); the terminal status reaches
    the stream before the history is written."""
    return wait_for("the run's history to be complete",
                    lambda: (lambda r: r if r["history"]["complete"] else None)(
                        api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))),
                    timeout=timeout, pause=0.3)


def wait_run_status(api, run_id, timeout=30):
    """GET /v1/runs/{id} once it shows a terminal status. The api applies
    statuses from Kafka on its own consumer, so it may trail the stream."""
    deadline = time.monotonic() + timeout
    while True:
        run = api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))
        if run.get("status") in TERMINAL or time.monotonic() > deadline:
            return run
        time.sleep(0.5)


# ---------------------------------------------------------------- node checks


def _cgroup_dirs_named(name, root="/sys/fs/cgroup", max_depth=4):
    found = []
    root_depth = root.rstrip("/").count("/")
    for dirpath, dirnames, _ in os.walk(root, onerror=lambda e: None):
        depth = dirpath.rstrip("/").count("/") - root_depth
        if os.path.basename(dirpath) == name:
            found.append(dirpath)
        if depth >= max_depth:
            dirnames[:] = []
    return found


def node_leftovers(run_id):
    """Everything of run_id still present on this node (CONTRACTS.md node layout)."""
    sd = os.environ.get("PADDOCK_RUNNER_STATE_DIR")
    if not sd:
        pytest.fail("PADDOCK_RUNNER_STATE_DIR is not set: export the local stack's endpoints.env",
                    pytrace=False)
    sd = pathlib.Path(sd)
    left = []
    for p in (sd / "runs" / run_id, sd / "netns" / run_id, sd / "crun" / f"paddock-{run_id}"):
        if os.path.lexists(p):
            left.append(str(p))
    with open("/proc/mounts") as f:
        left += [f"mount: {line.strip()}" for line in f if run_id in line]
    left += [f"cgroup: {d}" for d in _cgroup_dirs_named(run_id)]
    return left


def run_sandbox_id(result):
    """The id of the sandbox a run ran in, from its `running` event, when it
    differs from the run id (a warm-pool sandbox is named by its own id:
    docs/CONTRACTS.md "Sandbox pool"), else None."""
    for ev in result.of_kind("status"):
        if ev["data"].get("status") != "running":
            continue
        sb = ev["data"].get("sandbox") or {}
        if sb.get("id"):
            return sb["id"]
    return None


def assert_node_clean(run_id, result=None):
    left = node_leftovers(run_id)
    sandbox_id = run_sandbox_id(result) if result is not None else None
    if sandbox_id and sandbox_id != run_id:
        left += node_leftovers(sandbox_id)
    assert not left, f"run {run_id} (sandbox {sandbox_id or run_id}) left traces on the node: {left}"
    if result is not None:
        destroyed = result.of_kind("destroyed")
        assert destroyed, f"run {run_id}: no destroyed event; kinds {[e['kind'] for e in result.events]}"
        gone = destroyed[-1]["data"].get("verified_gone")
        assert isinstance(gone, list) and gone, f"destroyed event lists nothing verified: {destroyed[-1]}"


# ---------------------------------------------------------------- the stack's own processes


def stack_pid(part):
    """The live pid of one of the stack's processes (pids/<part>.pid:
    runner-agent, kafka-mock, ...), or None (a zombie is dead)."""
    try:
        pid = int((state_dir() / "pids" / f"{part}.pid").read_text().split()[0])
        with open(f"/proc/{pid}/stat") as f:
            return pid if f.read().rsplit(")", 1)[1].split()[0] != "Z" else None
    except (OSError, ValueError, IndexError):
        return None


def stack_build_dir():
    """The build the stack runs (PADDOCK_BUILD_DIR, or the one of PADDOCK_CLI)."""
    if os.environ.get("PADDOCK_BUILD_DIR"):
        return pathlib.Path(os.environ["PADDOCK_BUILD_DIR"])
    return pathlib.Path(os.environ["PADDOCK_CLI"]).resolve().parent.parent


def stack_up():
    """deploy/local/stack.sh up: starts what of the stack is not running (a
    service a test stopped or killed)."""
    env = dict(os.environ, PADDOCK_STATE_DIR=str(state_dir()), PADDOCK_BUILD_DIR=str(stack_build_dir()))
    env.setdefault("PADDOCK_SERVICE_ENV", "ASAN_OPTIONS=detect_leaks=0")
    r = subprocess.run([str(REPO / "deploy/local/stack.sh"), "up"], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]


def random_token_like(token):
    """A token of the same shape as a real one (same prefix up to a "_" or ".",
    same length and alphabet), but random."""
    cut = max(token.find("_", 0, 12), token.find(".", 0, 12)) + 1
    out = [token[:cut]]
    for ch in token[cut:]:
        if ch in "0123456789abcdef":
            out.append(secrets.choice("0123456789abcdef"))
        elif ch.isalnum():
            out.append(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"))
        else:
            out.append(ch)
    fake = "".join(out)
    return fake if fake != token else random_token_like(token)


class LoopbackHTTPServer:
    """Serves a BaseHTTPRequestHandler class on addr (loopback), on a port
    the kernel picks, from a daemon thread; close() stops it."""

    def __init__(self, handler, addr="127.0.0.1"):
        self.server = http.server.ThreadingHTTPServer((addr, 0), handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def recording_handler(requests):
    """A BaseHTTPRequestHandler class that appends every GET it serves to
    requests ({path, headers, header_list}) and answers 200 "upstream says hello"."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append({"path": self.path, "headers": dict(self.headers.items()),
                             "header_list": list(self.headers.items())})
            body = b"upstream says hello\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    return Handler


_CLONE_NEWNET = 0x40000000


def test_upstream_addrs():
    """The addresses tests' outside servers use: in the stack's test upstream
    network namespace (deploy/local/stack.sh testnet_up), 198.18.0.0/15."""
    addrs = os.environ.get("PADDOCK_TEST_UPSTREAM_ADDRS", "").split()
    assert addrs and os.environ.get("PADDOCK_TEST_NETNS"), \
        "PADDOCK_TEST_NETNS / PADDOCK_TEST_UPSTREAM_ADDRS not set: endpoints.env of an older stack.sh?"
    return addrs


def in_test_netns(fn):
    """fn()'s result, called on a thread that entered the test upstream network
    namespace: sockets it creates live there (setns(2) moves only the calling
    thread, which then ends) and can be served from any thread."""
    libc = ctypes.CDLL(None, use_errno=True)
    out = {}

    def enter_and_call():
        try:
            fd = os.open(os.environ["PADDOCK_TEST_NETNS"], os.O_RDONLY)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {os.environ['PADDOCK_TEST_NETNS']}: {os.strerror(err)}")
            finally:
                os.close(fd)
            out["value"] = fn()
        except BaseException as e:  # re-raised in the caller's thread
            out["error"] = e

    t = threading.Thread(target=enter_and_call)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_netns_run(argv, **kw):
    """subprocess.run of argv inside the test upstream network namespace."""
    name = os.path.basename(os.environ["PADDOCK_TEST_NETNS"])
    return subprocess.run(["ip", "netns", "exec", name, *argv], **kw)


class _BackloggedHTTPServer(http.server.ThreadingHTTPServer):
    # a real server's accept backlog, not socketserver's 5: the egress proxy
    # connects in parallel from its event loop, so a flood's held requests
    # reach the upstream at once, and dropped SYNs would run into the proxy's
    # 10 s connect timeout on a loaded machine
    request_queue_size = 1024


class TestNetHTTPServer(LoopbackHTTPServer):
    """Serves handler like LoopbackHTTPServer, but on one of the test upstream
    network's addresses (index into test_upstream_addrs()): an "outside" host
    the sandbox reaches through its egress proxy, never the node's loopback
    (which the platform egress floor refuses)."""

    __test__ = False  # not a pytest test class

    def __init__(self, handler, index=0, port=0):
        self.host = test_upstream_addrs()[index]
        # the same address by name (/etc/hosts, stack.sh testnet_hosts)
        self.name = os.environ.get("PADDOCK_TEST_UPSTREAM_NAMES", "").split()[index]
        self.server = in_test_netns(lambda: _BackloggedHTTPServer((self.host, port), handler))
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def hostport(self):
        return f"{self.host}:{self.port}"

    @property
    def nameport(self):
        return f"{self.name}:{self.port}"


class Upstream(TestNetHTTPServer):
    """An HTTP server in the test upstream network that records every
    request it receives."""

    def __init__(self, index=0):
        self.requests = []
        super().__init__(recording_handler(self.requests), index=index)

    def paths(self):
        return [r["path"] for r in self.requests]


def egress_profile(api, rules, name=None):
    """Creates a catalog egress profile with these rules ("host:port",
    "CIDR:port"), approves it (the demo admin may) and returns its id: a
    non-public address (the test upstream network, 198.18.0.0/15) is reached
    only through an approved profile's rule, never an inline egress.allow
    (docs/CONTRACTS.md, "The platform egress floor"). A rule needs its port:
    port 0 means 80 and 443."""
    item = api.ok("POST", "/v1/catalog/egress-profiles",
                  json={"name": name or unique_name("prof"), "body": {"rules": list(rules)}}, expect=(201,))
    api.ok("POST", f"/v1/catalog/egress-profiles/{item['id']}/approve",
           json={"content_sha256": item["content_sha256"]}, expect=(200,))
    return item["id"]


def wait_for(what, fn, timeout=60, pause=0.5):
    """fn()'s first truthy answer, asked every pause seconds; fails naming
    what after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            assert v, f"timed out waiting for {what}"
            return v
        time.sleep(pause)


# protobuf wire format by hand, for the messages tests produce themselves

def pb_varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pb_field(num, wire, payload):
    """Field num: wire 2 (length-delimited) prefixes payload with its length;
    otherwise payload is the encoded value (a pb_varint for wire 0)."""
    key = pb_varint(num << 3 | wire)
    return key + pb_varint(len(payload)) + payload if wire == 2 else key + payload


def run_event_batch(*events):
    """A record of paddock.runs.events: a RunEventBatch (field 1 repeated) of
    the packed RunEvents given, all of one run, seqs contiguous
    (proto/paddock/v1/events.proto)."""
    return b"".join(pb_field(1, 2, e) for e in events)


def run_events_of(record):
    """The packed RunEvents of a paddock.runs.events record, in order."""
    return pb_fields(record).get(1, [])


def pb_fields(buf):
    """A protobuf message's fields without generated code: {field number:
    [values]}, varints as int, other wire types as bytes."""
    def varint(i):
        shift = n = 0
        while True:
            b = buf[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n, i

    fields, i = {}, 0
    while i < len(buf):
        key, i = varint(i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(i)
        elif wt == 2:
            n, i = varint(i)
            v, i = bytes(buf[i:i + n]), i + n
        elif wt == 1:
            v, i = bytes(buf[i:i + 8]), i + 8
        elif wt == 5:
            v, i = bytes(buf[i:i + 4]), i + 4
        else:
            raise ValueError(f"unsupported wire type {wt}")
        fields.setdefault(num, []).append(v)
    return fields


def node_heartbeat(node_id, interval_ms=500, slots=64, cpus=256.0, memory_mb=200000, images=(),
                   producer="e2e/node", version=None):
    """A NodeHeartbeat (proto/paddock/v1/nodes.proto) of an empty node, by
    default a large one (64 slots, 256 cpus, 200000 MiB), that has built
    images; encoded by hand: the suite has no generated Python protobuf code."""
    import struct
    env = pb_field(4, 0, pb_varint(int(time.time() * 1e6))) + pb_field(5, 2, producer.encode()) \
        + pb_field(6, 0, pb_varint(1))
    cap = pb_field(1, 0, pb_varint(slots)) + pb_field(2, 1, struct.pack("<d", cpus)) \
        + pb_field(3, 0, pb_varint(memory_mb))
    out = (pb_field(1, 2, env) + pb_field(2, 2, node_id.encode()) + pb_field(3, 2, cap)
           + pb_field(6, 0, pb_varint(interval_ms)))
    if version:
        out += pb_field(7, 2, version.encode())
    for name in images:
        out += pb_field(8, 2, name.encode())
    return out


# Signed messages on the bus (docs/CONTRACTS.md): a test that plays a runner
# node enrols that node as an operator would, by adding its public key to the
# stack's trusted-keys file (PADDOCK_TRUSTED_KEYS), and signs what it produces.

BUS_DOMAIN = b"paddock-bus-v1\0"


def bus_signed_bytes(topic, value):
    """The bytes a record's paddock-sig signs: domain, topic, value."""
    return BUS_DOMAIN + topic.encode() + b"\0" + value


class BusSigner:
    """An Ed25519 key and the identity it signs as ("node:<id>", ...)."""

    def __init__(self, identity, key=None):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        self.identity = identity
        self.key = key or Ed25519PrivateKey.generate()

    def public_b64(self):
        import base64
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
        return base64.b64encode(self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()

    def headers(self, topic, value):
        return [("paddock-signer", self.identity.encode()),
                ("paddock-sig", self.key.sign(bus_signed_bytes(topic, value)))]

    def produce(self, endpoints, topic, key, value):
        from confluent_kafka import Producer
        p = Producer({"bootstrap.servers": endpoints.need("PADDOCK_KAFKA_BOOTSTRAP")})
        p.produce(topic, key=key.encode() if isinstance(key, str) else key, value=value,
                  headers=self.headers(topic, value))
        assert p.flush(15) == 0, f"record not delivered to {topic}"


def enroll_test_node(endpoints, node_id):
    """A BusSigner for node:<node_id>, its key recorded in the trusted-keys file
    (the operator's enrolment step; services re-read the file on an unknown signer)."""
    signer = BusSigner(f"node:{node_id}")
    path = endpoints.need("PADDOCK_TRUSTED_KEYS")
    with open(path, "a") as f:
        f.write(f"{signer.identity} {signer.public_b64()}\n")
    return signer


# ---------------------------------------------------------------- evidence bundles (tar)


def tar_members(data):
    """An evidence bundle's (name, bytes) in archive order."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as t:
        return [(m.name, t.extractfile(m).read()) for m in t.getmembers()]


def ustar(files):
    """A ustar archive of (name, bytes) in order: a bundle rebuilt after an edit."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()
