"""Bad input to POST /v1/sandboxes and POST /v1/runs gets a 4xx
application/problem+json answer whose `code` is the one CONTRACTS.md names and
whose `detail` names the field, and changes nothing."""

import json
import socket
import select
import urllib.parse
import uuid

import psycopg
import pytest

from conftest import command_spec, unique_name

BIG = 1024 * 1024 + 64 * 1024  # above the 1 MiB default PADDOCK_API_MAX_BODY


def _post_raw(api, path, data):
    return api.post(path, data=data, headers={"Content-Type": "application/json"})


def _assert_problem(r, status, code, field=None):
    assert 400 <= r.status_code < 500, f"{r.status_code} {r.text[:300]}"
    if status is not None:
        assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:300]}"
    ctype = r.headers.get("Content-Type", "")
    assert ctype.startswith("application/problem+json"), f"Content-Type {ctype!r}"
    p = r.json()
    for key in ("type", "title", "status", "detail", "code"):
        assert key in p, f"problem lacks {key!r}: {p}"
    assert p["status"] == r.status_code
    assert p["code"] == code, f"expected code {code}, got {p}"
    if field:
        assert field in p["detail"], f"detail {p['detail']!r} does not name {field!r}"
    return p


def _count(endpoints, sql, params=()):
    """Counts rows in the api schema: the public API has no sandbox list, and
    the database is the ground truth for "nothing stored"."""
    with psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True) as conn:
        return conn.execute(sql, params).fetchone()[0]


def _raw_http_post(base, path, token, body, timeout=30):
    """POSTs a large body over a plain socket and reads the answer even when the
    server answers (and closes) before reading it all, as it should for 413.
    Returns (status, headers dict, body bytes)."""
    u = urllib.parse.urlsplit(base)
    assert u.scheme == "http", "raw POST helper speaks plain HTTP (loopback stack)"
    host, port = u.hostname, u.port or 80
    head = (f"POST {u.path.rstrip('/')}{path} HTTP/1.1\r\nHost: {u.netloc}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    s = socket.create_connection((host, port), timeout=timeout)
    resp = b""
    try:
        s.sendall(head)
        off = 0
        while off < len(body):
            r, w, _ = select.select([s], [s], [], timeout)
            if r:
                break  # the server answered early
            if w:
                try:
                    off += s.send(body[off:off + 65536])
                except (BrokenPipeError, ConnectionResetError):
                    break
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            resp += chunk
            if b"\r\n\r\n" in resp:
                hdr, _, rest = resp.partition(b"\r\n\r\n")
                lines = hdr.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
                n = int(headers.get("content-length", "-1"))
                if 0 <= n <= len(rest):
                    break
    finally:
        s.close()
    assert resp, "the server closed the connection without an answer"
    hdr, _, rest = resp.partition(b"\r\n\r\n")
    lines = hdr.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    n = int(headers.get("content-length", len(rest)))
    return status, headers, rest[:n]


def _good_spec():
    return command_spec(["/bin/echo", "hello"], timeout_s=30)


# ---- POST /v1/sandboxes

def _sandbox_cases(team):
    def body(**over):
        b = {"name": unique_name("e2e-invalid"), "team": team, "spec": _good_spec()}
        b.update(over)
        return b

    spec_unknown = _good_spec()
    spec_unknown["bogus_field"] = 1
    spec_wrong = _good_spec()
    spec_wrong["limits"]["timeout_s"] = "ten"
    no_name = body()
    del no_name["name"]
    return [
        ("malformed", b'{"name": "e2e-invalid-malformed", "spec": {', 400, "invalid_json", None),
        ("unknown-top", json.dumps(body(bogus=1)).encode(), 400, "unknown_field", "bogus"),
        ("unknown-spec", json.dumps(body(spec=spec_unknown)).encode(), 400, "unknown_field",
         "spec.bogus_field"),
        ("missing-name", json.dumps(no_name).encode(), 400, "missing_field", "name"),
        ("wrong-type-name", json.dumps(body(name=123)).encode(), 400, "invalid_field", "name"),
        ("wrong-type-nested", json.dumps(body(spec=spec_wrong)).encode(), 400, "invalid_field",
         "spec.limits.timeout_s"),
    ]


CASE_IDS = ["malformed", "unknown-top", "unknown-spec", "missing-name", "wrong-type-name",
            "wrong-type-nested"]


@pytest.fixture(scope="module")
def sandboxes_before(endpoints):
    return _count(endpoints, "SELECT count(*) FROM api.sandboxes")


@pytest.mark.parametrize("case", CASE_IDS)
def test_sandbox_bad_input(api, team_id, sandboxes_before, case):
    name, data, status, code, field = next(c for c in _sandbox_cases(team_id) if c[0] == case)
    r = _post_raw(api, "/v1/sandboxes", data)
    _assert_problem(r, status, code, field)


def test_sandbox_oversized(endpoints, api, team_id, sandboxes_before):
    spec = _good_spec()
    spec["files"] = [{"path": "big.txt", "content": "A" * BIG, "mode": "0644"}]
    body = json.dumps({"name": unique_name("e2e-invalid-big"), "team": team_id, "spec": spec}).encode()
    status, headers, payload = _raw_http_post(endpoints.api, "/v1/sandboxes", api.token, body)
    assert status == 413, f"{status} {payload[:300]!r}"
    assert headers.get("content-type", "").startswith("application/problem+json"), headers
    assert json.loads(payload)["code"] == "too_large"


def test_sandbox_nothing_stored(endpoints, sandboxes_before):
    """Runs after the bad requests above (file order): none of them stored anything."""
    assert _count(endpoints, "SELECT count(*) FROM api.sandboxes WHERE name LIKE 'e2e-invalid-%%'") == 0
    assert _count(endpoints, "SELECT count(*) FROM api.sandboxes") == sandboxes_before


# ---- POST /v1/runs

@pytest.fixture(scope="module")
def published(runs):
    sb = runs.create_sandbox(_good_spec(), unique_name("e2e-badrun"))
    return sb, runs.publish(sb)


@pytest.fixture(scope="module")
def runs_before(endpoints, published):
    return _count(endpoints, "SELECT count(*) FROM api.runs")


def _run_cases(team, sandbox, version):
    good = {"sandbox": sandbox, "version": version, "team": team}
    return [
        ("malformed", b'{"sandbox": ', 400, "invalid_json", None),
        ("unknown-top", dict(good, bogus=1), 400, "unknown_field", "bogus"),
        ("missing-sandbox", {k: v for k, v in good.items() if k != "sandbox"}, 400, "missing_field", "sandbox"),
        ("wrong-type-version", dict(good, version="one"), 400, "invalid_field", "version"),
        ("wrong-type-team", dict(good, team=42), 400, "invalid_field", "team"),
    ]


RUN_CASE_IDS = ["malformed", "unknown-top", "missing-sandbox", "wrong-type-version", "wrong-type-team"]


@pytest.mark.parametrize("case", RUN_CASE_IDS)
def test_run_bad_input(api, team_id, published, runs_before, case):
    name, data, status, code, field = next(c for c in _run_cases(team_id, *published) if c[0] == case)
    if not isinstance(data, bytes):
        data = json.dumps(data).encode()
    r = _post_raw(api, "/v1/runs", data)
    _assert_problem(r, status, code, field)


def test_run_unknown_sandbox(api, team_id, runs_before):
    r = _post_raw(api, "/v1/runs", json.dumps({"sandbox": str(uuid.uuid4()), "version": 1,
                                               "team": team_id}).encode())
    assert r.status_code in (400, 404), r.text[:300]
    assert r.headers.get("Content-Type", "").startswith("application/problem+json")


def test_run_oversized(endpoints, api, team_id, published, runs_before):
    sandbox, version = published
    body = json.dumps({"sandbox": sandbox, "version": version, "team": team_id,
                       "prompt": "A" * BIG}).encode()
    status, headers, payload = _raw_http_post(endpoints.api, "/v1/runs", api.token, body)
    assert status == 413, f"{status} {payload[:300]!r}"
    assert headers.get("content-type", "").startswith("application/problem+json"), headers
    assert json.loads(payload)["code"] == "too_large"


def test_runs_nothing_stored(endpoints, published, runs_before):
    """Only this module uses its sandbox, so any run of it came from a bad request."""
    sandbox, _ = published
    assert _count(endpoints, "SELECT count(*) FROM api.runs WHERE sandbox_id = %s", (sandbox,)) == 0
    assert _count(endpoints, "SELECT count(*) FROM api.runs") == runs_before
