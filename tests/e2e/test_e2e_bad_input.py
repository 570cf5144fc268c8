"""Bad input gets a 4xx application/problem+json answer whose `code` is the one
CONTRACTS.md names and whose `detail` names the field, and changes nothing:
POST /v1/sandboxes and POST /v1/runs in detail, then every write endpoint with
a JSON body (SQL and path metacharacters, NUL, 1 MiB strings and wrong types in
every string field), malformed bodies (invalid UTF-8, deep nesting, duplicate
keys, 2 MiB), and secret values of refused requests never reaching the logs."""

import hashlib
import json
import os
import pathlib
import re
import select
import socket
import time
import urllib.parse
import uuid

import psycopg
import pytest

import openapi_check
from conftest import Api, SourceAddressAdapter, command_spec, login, random_loopback_source, unique_name

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


# ---- every write endpoint with a JSON body, every string field
#
# For each endpoint: a valid base body, its string fields (as paths into the
# body), and a snapshot query of what the endpoint would store. Each field gets
# SQL and path metacharacters, NUL, a 1 MiB string and every wrong JSON type.
# A refused value must answer 4xx problem+json whose detail names the field, and
# the snapshot must not change. A value the endpoint legitimately accepts
# ("free" fields) must be stored verbatim (round trip) instead.


SQL = "x'; DROP TABLE api.users; --"
PATH_VALUES = ["../../etc/passwd", "a/b", "%2e%2e", "a\u0000b"]
WRONG_TYPES = [1, [], {}, None]
HUGE = "A" * (1024 * 1024)
NIL_UUID = "00000000-0000-4000-8000-000000000000"


def _snapshot(endpoints, sql):
    with psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True) as conn:
        rows = conn.execute(sql).fetchall()
    return hashlib.sha256(repr(rows).encode()).hexdigest(), len(rows)


def _table(name, where="TRUE"):
    return f"SELECT t::text FROM {name} t WHERE {where} ORDER BY 1"


def _set(body, path, value):
    """Sets body at a path like "spec.files[0].path"; returns a new body."""
    body = json.loads(json.dumps(body))
    node = body
    steps = re.findall(r"[^.\[\]]+|\[\d+\]", path)
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        key = int(step[1:-1]) if step.startswith("[") else step
        if last:
            node[key] = value
        else:
            node = node[key]
    return body


def _get(body, path):
    node = body
    for step in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        node = node[int(step[1:-1])] if step.startswith("[") else node[step]
    return node


def _leaf(path):
    return re.findall(r"[^.\[\]]+", path)[-1]


class Ctx:
    """Objects the endpoint table refers to, made once for the module."""


@pytest.fixture(scope="module")
def ctx(api, runs, endpoints):
    c = Ctx()
    c.username = unique_name("e2e-bad-user")
    c.team = api.ok("POST", "/v1/teams", json={"name": unique_name("e2e-bad-team")}, expect=(201,))["id"]
    c.user = api.ok("POST", "/v1/users", json={"username": c.username}, expect=(201,))["id"]
    sa = api.ok("POST", "/v1/service-accounts", json={"name": unique_name("e2e-bad-sa")}, expect=(201,))
    c.sa = sa["id"]
    c.sandbox = runs.create_sandbox(_good_spec(), unique_name("e2e-bad-sb"))
    c.version = runs.publish(c.sandbox)
    c.item = api.ok("POST", "/v1/catalog/images", json={"name": unique_name("e2e-bad-img"),
                                                         "body": {"description": "x"}}, expect=(201,))["id"]
    c.endpoints = endpoints
    return c


def _spec_fields():
    return {"spec.agent.command[0]": "free", "spec.files[0].path": "free", "spec.files[0].content": "free",
            "spec.files[0].mode": "strict", "spec.egress.allow[0]": "strict", "spec.egress.unknown": "strict",
            "spec.image": "strict", "spec.secrets[0].name": "strict", "spec.secrets[0].as.env": "strict"}


def _full_spec():
    spec = _good_spec()
    spec["files"] = [{"path": "notes.txt", "content": "hello", "mode": "0644"}]
    spec["egress"] = {"allow": ["api.example.com:443"], "unknown": "deny"}
    spec["secrets"] = [{"name": "E2E_BAD_SECRET", "as": {"env": "E2E_BAD_VAR"}}]
    return spec


def _sandbox_roundtrip(api, c, sandbox_id, path, value):
    sb = api.ok("GET", f"/v1/sandboxes/{sandbox_id}", expect=(200,))
    assert _get(sb["draft"], path) == value, f"{path} not stored verbatim: {_get(sb['draft'], path)!r}"


def _catalog_roundtrip(api, c, item_id, path, value):
    item = api.ok("GET", f"/v1/catalog/images/{item_id}", expect=(200,))
    assert _get(item, path) == value, f"{path} not stored verbatim: {_get(item, path)!r}"


# name: (method, path template, base body, {field: "strict" | "free" | "login"}, snapshot sql,
#        round trip for accepted "free" values (api, ctx, answer, field, value) or None)
ENDPOINTS = {
    # a user that does not exist, from a random loopback address (see _client):
    # failed logins must not lock out the admin the rest of the suite uses
    "login": ("POST", "/v1/auth/login",
              lambda c, creds: {"tenant": creds["PADDOCK_TENANT"], "username": "e2e-bad-nobody",
                                "password": "not-the-password-123"},
              {"tenant": "login", "username": "login", "password": "login"},
              _table("api.tokens"), None),
    "teams-create": ("POST", "/v1/teams", lambda c, _: {"name": unique_name("e2e-bad")},
                     {"name": "strict"}, _table("api.teams"), None),
    "teams-patch": ("PATCH", "/v1/teams/{team}", lambda c, _: {"name": unique_name("e2e-bad")},
                    {"name": "strict"}, _table("api.teams"), None),
    "members-put": ("PUT", "/v1/teams/{team}/members/{user}", lambda c, _: {"roles": ["viewer"]},
                    {"roles[0]": "strict"}, _table("api.team_members"), None),
    "members-patch": ("PATCH", "/v1/teams/{team}/members/{user}",
                      lambda c, _: {"add": ["viewer"], "remove": ["launcher"]},
                      {"add[0]": "strict", "remove[0]": "strict"}, _table("api.team_members"), None),
    "users-create": ("POST", "/v1/users",
                     lambda c, _: {"username": unique_name("e2e-bad"), "password": "a-good-password-1"},
                     {"username": "strict", "password": "free"}, _table("api.users"),
                     lambda api, c, ans, f, v: _user_password_roundtrip(api, c, ans, v)),
    "users-patch": ("PATCH", "/v1/users/{user}", lambda c, _: {"disabled": False, "tenant_admin": False},
                    {"disabled": "strict", "tenant_admin": "strict"}, _table("api.users"), None),
    "service-accounts-create": ("POST", "/v1/service-accounts",
                                lambda c, _: {"name": unique_name("e2e-bad"), "team": c.team, "roles": ["viewer"]},
                                {"name": "strict", "team": "strict", "roles[0]": "strict"},
                                _table("api.users"), None),
    "service-account-token": ("POST", "/v1/service-accounts/{sa}/tokens",
                              lambda c, _: {"name": unique_name("e2e-bad")}, {"name": "strict"},
                              _table("api.tokens"), None),
    "secrets-put": ("PUT", "/v1/teams/{team}/secrets/E2E_BAD_INPUT", lambda c, _: {"value": "v"},
                    {"value": "free"}, _table("api.team_secrets"),
                    lambda api, c, ans, f, v: _secret_roundtrip(api, c, v)),
    "sandboxes-create": ("POST", "/v1/sandboxes",
                         lambda c, _: {"name": unique_name("e2e-bad"), "team": c.team, "spec": _full_spec()},
                         dict({"name": "strict", "team": "strict"}, **_spec_fields()), _table("api.sandboxes"),
                         lambda api, c, ans, f, v: _sandbox_roundtrip(api, c, ans["id"], f, v)),
    "sandboxes-draft": ("PUT", "/v1/sandboxes/{sandbox}/draft", lambda c, _: {"spec": _full_spec()},
                        _spec_fields(), _table("api.sandboxes"),
                        lambda api, c, ans, f, v: _sandbox_roundtrip(api, c, c.sandbox, f, v)),
    "runs-create": ("POST", "/v1/runs",
                    lambda c, _: {"sandbox": c.sandbox, "version": c.version, "team": c.team},
                    {"sandbox": "strict", "team": "strict"}, "SELECT count(*) FROM api.runs", None),
    "runs-cancel": ("POST", "/v1/runs/" + NIL_UUID + "/cancel", lambda c, _: {"reason": "r"},
                    {"reason": "free"}, "SELECT count(*) FROM api.runs", None),
    "approvals-decide": ("POST", "/v1/approvals/" + NIL_UUID + "/decision",
                         lambda c, _: {"decision": "deny", "comment": "c"},
                         {"decision": "strict", "comment": "free"}, _table("api.approvals"), None),
    "catalog-create": ("POST", "/v1/catalog/images",
                       lambda c, _: {"name": unique_name("e2e-bad"), "body": {"description": "d"}},
                       {"name": "strict", "body.description": "free"}, _table("api.catalog_items"),
                       lambda api, c, ans, f, v: _catalog_roundtrip(api, c, ans["id"], f, v)),
    "catalog-patch": ("PATCH", "/v1/catalog/images/{item}",
                      lambda c, _: {"name": unique_name("e2e-bad"), "body": {"description": "d"}},
                      {"name": "strict", "body.description": "free"}, _table("api.catalog_items"),
                      lambda api, c, ans, f, v: _catalog_roundtrip(api, c, c.item, f, v)),
    "catalog-approve": ("POST", "/v1/catalog/images/" + NIL_UUID + "/approve",
                        lambda c, _: {"content_sha256": "0" * 64, "comment": "c"},
                        {"content_sha256": "strict", "comment": "free"}, _table("api.catalog_items"), None),
}

# POST/PUT/PATCH routes without a JSON body worth fuzzing here, or covered elsewhere
NO_BODY = {("POST", "/v1/auth/logout"), ("POST", "/v1/sandboxes/{id}/versions"),
           ("POST", "/v1/runs/{id}/relaunch"),  # takes no field (test_e2e_lists.py: unknown ones refused)
           ("POST", "/v1/runs/{id}/stream-ticket"),  # no field either (test_e2e_stream_auth.py)
           ("POST", "/v1/tenant/workload-identity/rotate"),  # no field (test_e2e_workload_identity.py)
           ("POST", "/v1/tenant/keys/rotate"),  # no field (test_e2e_evidence_keys.py)
           ("POST", "/v1/nodes/{id}/drain")}  # no body: one is refused (test_e2e_node_drain.py)
ELSEWHERE = {("PUT", "/v1/tenant/oidc"), ("POST", "/v1/auth/oidc"),  # tests/e2e/test_e2e_oidc.py
             # tests/e2e/test_e2e_accounts.py, as a user of its own: here it would be the
             # suite's admin changing (or failing to change) its own password
             ("POST", "/v1/me/password"),
             # each needs an object of its own before the body is read (404 first, so a
             # stranger learns nothing): their files test bad input naming the field
             ("POST", "/v1/runs/{id}/reviews"),  # a finished run and a reviewer who did not launch it
             ("PUT", "/v1/holds/{kind}/{id}"),  # test_e2e_legal_hold.py
             ("POST", "/v1/tenants/{tenant}/oidc/introspect"),  # test_e2e_workload_identity.py
             # numeric fields only (this table fuzzes strings: an int or null is valid
             # there); their files refuse each bad value naming the field
             ("PUT", "/v1/teams/{id}/budget"),  # test_e2e_budgets.py
             ("PUT", "/v1/tenant/retention")}  # test_e2e_retention.py


def _client(api, endpoint_name):
    """The api client; for login one from a fresh random 127.x.y.z address, so
    the failed logins here count against no address the suite logs in from."""
    if endpoint_name != "login":
        return api
    c = Api(api.base)
    c.http.mount("http://", SourceAddressAdapter(random_loopback_source()))
    return c


def _user_password_roundtrip(api, c, answer, value):
    """An accepted password is stored as given: the new user logs in with it."""
    r = login(c.endpoints, c.tenant, answer["username"], value)
    assert r.status_code == 200, f"login with the accepted password failed: {r.status_code} {r.text[:200]}"
    api.ok("DELETE", f"/v1/users/{answer['id']}", expect=(204,))


def _secret_roundtrip(api, c, value):
    """Write-only: the secret is listed by name and its value is nowhere in the answer."""
    listing = api.get(f"/v1/teams/{c.team}/secrets")
    assert listing.status_code == 200 and "E2E_BAD_INPUT" in listing.text
    if len(value) > 3:
        assert value not in listing.text
    api.ok("DELETE", f"/v1/teams/{c.team}/secrets/E2E_BAD_INPUT", expect=(204,))


def test_every_body_route_is_covered():
    """Walks routes.c's table: every POST/PUT/PATCH is fuzzed here or named as body-less."""
    ours = [(m, p.format(team="t", user="u", sa="s", sandbox="b", item="i")) for m, p, *_ in ENDPOINTS.values()]
    missing = []
    for method, pattern in openapi_check.routes_from_c():
        if method not in ("POST", "PUT", "PATCH") or (method, pattern) in NO_BODY | ELSEWHERE:
            continue
        rx = re.compile("^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(pattern)) + "$")
        if not any(m == method and rx.match(p) for m, p in ours):
            missing.append(f"{method} {pattern}")
    assert not missing, f"write endpoints without bad-input cases: {missing}"


def _values(policy):
    vals = [("sql", SQL)] + [(f"path{i}", v) for i, v in enumerate(PATH_VALUES)]
    vals += [(f"type-{type(v).__name__}", v) for v in WRONG_TYPES]
    return vals


CASES = [(name, field) for name, (_, _, _, fields, _, _) in ENDPOINTS.items() for field in fields]


@pytest.mark.parametrize("name,field", CASES, ids=[f"{n}:{f}" for n, f in CASES])
def test_field_bad_values(api, ctx, credentials, endpoints, name, field):
    method, path, make_body, fields, snap_sql, roundtrip = ENDPOINTS[name]
    ctx.tenant = credentials["PADDOCK_TENANT"]
    url = path.format(team=ctx.team, user=ctx.user, sa=ctx.sa, sandbox=ctx.sandbox, item=ctx.item)
    policy = fields[field]
    failures = []
    for label, value in _values(policy):
        body = _set(make_body(ctx, credentials), field, value)
        before = _snapshot(endpoints, snap_sql)
        r = _client(api, name).request(method, url, data=json.dumps(body).encode(),
                                       headers={"Content-Type": "application/json"})
        where = f"{label} {value!r:.40}: {r.status_code} {r.text[:200]}"
        wrong_type = label.startswith("type-")
        if 200 <= r.status_code < 300:
            if policy != "free" or wrong_type:
                failures.append(f"accepted: {where}")
            elif roundtrip:
                try:
                    roundtrip(api, ctx, r.json() if r.content else None, field, value)
                except AssertionError as e:
                    failures.append(f"accepted but not verbatim: {where}: {e}")
            continue
        if not 400 <= r.status_code < 500:
            failures.append(f"not a 4xx: {where}")
            continue
        if not r.headers.get("Content-Type", "").startswith("application/problem+json"):
            failures.append(f"not problem+json: {where}")
            continue
        detail = r.json().get("detail", "")
        login_ok = policy == "login" and not wrong_type and r.status_code in (401, 429)
        free_ok = policy == "free" and not wrong_type and r.status_code == 404  # fake object id, body was fine
        if not (login_ok or free_ok) and _leaf(field) not in detail:
            failures.append(f"detail does not name {_leaf(field)!r}: {where}")
        if _snapshot(endpoints, snap_sql) != before:
            failures.append(f"stored anyway: {where}")
    # 1 MiB string: over the body limit, refused before the body is read
    body = json.dumps(_set(make_body(ctx, credentials), field, HUGE)).encode()
    before = _snapshot(endpoints, snap_sql)
    status, headers, payload = _raw_http_post_method(endpoints.api, method, url, api.token, body)
    if status != 413 or not headers.get("content-type", "").startswith("application/problem+json"):
        failures.append(f"1 MiB string: {status} {payload[:200]!r}")
    if _snapshot(endpoints, snap_sql) != before:
        failures.append("1 MiB string: stored anyway")
    assert not failures, f"{method} {url} field {field}:\n  " + "\n  ".join(failures)


def _raw_http_post_method(base, method, path, token, body):
    """_raw_http_post with another method (the helper above speaks POST)."""
    u = urllib.parse.urlsplit(base)
    host, port = u.hostname, u.port or 80
    head = (f"{method} {u.path.rstrip('/')}{path} HTTP/1.1\r\nHost: {u.netloc}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    s = socket.create_connection((host, port), timeout=30)
    resp = b""
    try:
        s.sendall(head)
        off = 0
        while off < len(body):
            r, w, _ = select.select([s], [s], [], 30)
            if r:
                break
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
    finally:
        s.close()
    assert resp, "the server closed the connection without an answer"
    hdr, _, rest = resp.partition(b"\r\n\r\n")
    lines = hdr.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    n = int(headers.get("content-length", len(rest)))
    return int(lines[0].split()[1]), headers, rest[:n]


# ---- malformed bodies, the same for every endpoint (api_body_object)

def test_invalid_utf8(api, endpoints):
    before = _snapshot(endpoints, _table("api.teams"))
    r = _post_raw(api, "/v1/teams", b'{"name": "e2e-bad-\xff\xfe"}')
    p = _assert_problem(r, 400, "invalid_json")
    assert "UTF-8" in p["detail"], p
    r = _post_raw(api, "/v1/teams", b'{"name": "e2e-bad-\xc0\xaf"}')  # overlong "/"
    assert "UTF-8" in _assert_problem(r, 400, "invalid_json")["detail"]
    assert _snapshot(endpoints, _table("api.teams")) == before


def test_deep_nesting(api, endpoints, ctx):
    before = _snapshot(endpoints, _table("api.sandboxes"))
    deep = "[" * 64 + "]" * 64
    body = ('{"name": "e2e-bad-deep", "team": "%s", "spec": {"agent": {"command": %s}}}' % (ctx.team, deep)).encode()
    p = _assert_problem(_post_raw(api, "/v1/sandboxes", body), 400, "invalid_json")
    assert "32" in p["detail"] and "spec.agent.command" in p["detail"], p
    very = "[" * 5000 + "]" * 5000  # past jansson's own limit
    p = _assert_problem(_post_raw(api, "/v1/sandboxes", ('{"x": %s}' % very).encode()), 400, "invalid_json")
    assert "deeper" in p["detail"], p
    assert _snapshot(endpoints, _table("api.sandboxes")) == before


def test_duplicate_keys(api, endpoints):
    before = _snapshot(endpoints, _table("api.teams"))
    r = _post_raw(api, "/v1/teams", b'{"name": "e2e-bad-dup-a", "name": "e2e-bad-dup-b"}')
    p = _assert_problem(r, 400, "invalid_json")
    assert "duplicate" in p["detail"] and '"name"' in p["detail"], p
    assert _snapshot(endpoints, _table("api.teams")) == before


def test_nul_names_the_field(api, endpoints, ctx):
    before = _snapshot(endpoints, _table("api.sandboxes"))
    spec = _full_spec()
    spec["files"][0]["path"] = "a\u0000b"
    r = _post_raw(api, "/v1/sandboxes", json.dumps({"name": unique_name("e2e-bad"), "team": ctx.team,
                                                    "spec": spec}).encode())
    p = _assert_problem(r, 400, "invalid_field", "spec.files[0].path")
    assert "NUL" in p["detail"], p
    assert _snapshot(endpoints, _table("api.sandboxes")) == before


def test_two_mib_body(endpoints, api):
    before = _snapshot(endpoints, _table("api.teams"))
    body = json.dumps({"name": "e2e-bad-big", "pad": "A" * (2 * 1024 * 1024)}).encode()
    status, headers, payload = _raw_http_post(endpoints.api, "/v1/teams", api.token, body)
    assert status == 413, f"{status} {payload[:300]!r}"
    assert headers.get("content-type", "").startswith("application/problem+json"), headers
    problem = json.loads(payload)
    assert problem["code"] == "too_large" and problem["status"] == 413, problem
    assert _snapshot(endpoints, _table("api.teams")) == before


# ---- secrets never reach the logs, even in a refused request

def _logs_dir():
    d = os.environ.get("PADDOCK_STATE_DIR")
    if not d:
        pytest.fail("PADDOCK_STATE_DIR is not set: export the local stack's endpoints.env", pytrace=False)
    return pathlib.Path(d) / "logs"


def _grep_logs(needle):
    hits = []
    for f in _logs_dir().rglob("*"):
        if f.is_file():
            try:
                if needle.encode() in f.read_bytes():
                    hits.append(str(f))
            except OSError:
                pass
    return hits


def test_secret_values_never_logged(api, endpoints, credentials, ctx):
    assert _logs_dir().is_dir(), f"no log directory {_logs_dir()}"
    marker = "e2e-SECRET-" + uuid.uuid4().hex
    # an invalid secret PUT (unknown field next to the value, then a malformed body)
    r = api.request("PUT", f"/v1/teams/{ctx.team}/secrets/E2E_BAD_INPUT",
                    data=json.dumps({"value": marker, "bogus": 1}).encode(),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text[:300]
    r = api.request("PUT", f"/v1/teams/{ctx.team}/secrets/E2E_BAD_INPUT",
                    data=('{"value": "%s", ' % marker).encode(), headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text[:300]
    r = api.request("PUT", f"/v1/teams/{ctx.team}/secrets/bad-name", json={"value": marker})
    assert r.status_code == 400, r.text[:300]
    # failed logins: wrong password, malformed body, wrong type next to it
    http = _client(api, "login")
    r = http.request("POST", "/v1/auth/login", json={"tenant": credentials["PADDOCK_TENANT"],
                                                     "username": ctx.username, "password": marker})
    assert r.status_code == 401, r.text[:300]
    r = http.request("POST", "/v1/auth/login", data=('{"tenant": "x", "password": "%s' % marker).encode(),
                     headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text[:300]
    r = http.request("POST", "/v1/auth/login", json={"tenant": 5, "username": ctx.username, "password": marker})
    assert r.status_code == 400, r.text[:300]
    time.sleep(1)  # log lines are written as they happen; give the pipes a moment
    assert not _grep_logs(marker), f"a secret value appears in {_grep_logs(marker)}"
    assert any(_logs_dir().rglob("api*")), "no api log to search"
