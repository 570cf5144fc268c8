"""The dashboard's serving and its browser session (issue 13; docs/CONTRACTS.md
"Dashboard" and "Dashboard sessions"): the api serves the built web app under /
with a strict Content-Security-Policy, nothing outside its directory, no
listing; a browser logs in with a cookie session whose writes need the
session's X-CSRF-Token, while bearer-token clients are unaffected.

Needs the stack started by ./dev (or stack.sh after ./dev build), which hands
the api PADDOCK_WEB_DIR (<build>/web/dist)."""

import hashlib
import http.client
import os
import pathlib
import re
import socket
import subprocess
import urllib.parse

import pytest
import requests

from conftest import (Api, HTTP_TIMEOUT, api_binary, openapi_undescribed_path, read_env_file, state_dir,
                      unique_name)

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def web_dir():
    d = read_env_file(state_dir() / "env" / "api.env").get("PADDOCK_WEB_DIR")
    assert d, "the api runs without PADDOCK_WEB_DIR: build the dashboard (./dev build) and restart the stack"
    return pathlib.Path(d)


def raw_get(endpoints, path):
    """GET path exactly as written (no client normalisation; and not through
    requests, whose answers conftest.py checks against openapi.yaml, which
    describes the API, not the dashboard's files): (status, headers, body),
    status 0 when the server hung up without an answer."""
    u = urllib.parse.urlsplit(endpoints.api)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=HTTP_TIMEOUT)
    try:
        conn.putrequest("GET", path, skip_host=False, skip_accept_encoding=True)
        conn.endheaders()
        try:
            r = conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError):
            return 0, {}, b""
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def cookie_login(endpoints, credentials, session="cookie"):
    return requests.post(endpoints.api + "/v1/auth/login",
                         json={"tenant": credentials["PADDOCK_TENANT"], "username": credentials["PADDOCK_USER"],
                               "password": credentials["PADDOCK_PASSWORD"], "session": session},
                         timeout=HTTP_TIMEOUT)


def set_cookies(resp):
    """The Set-Cookie headers of resp by cookie name: (value, lower-cased attributes)."""
    out = {}
    for h in resp.raw.headers.getlist("Set-Cookie"):
        first, *attrs = [p.strip() for p in h.split(";")]
        name, _, value = first.partition("=")
        out[name] = (value, [a.lower() for a in attrs])
    return out


def browser(endpoints, credentials):
    """A requests session holding the dashboard's cookies, as a browser would."""
    s = requests.Session()
    r = s.post(endpoints.api + "/v1/auth/login",
               json={"tenant": credentials["PADDOCK_TENANT"], "username": credentials["PADDOCK_USER"],
                     "password": credentials["PADDOCK_PASSWORD"], "session": "cookie"},
               timeout=HTTP_TIMEOUT)
    assert r.status_code == 200, r.text[:300]
    return s


# ---------------------------------------------------------------- serving


def test_dashboard_page_and_assets_with_csp(endpoints):
    status, h, body = raw_get(endpoints, "/")
    page = body.decode()
    assert status == 200, page[:300]
    assert h["content-type"] == "text/html; charset=utf-8"
    assert h["content-security-policy"] == CSP
    assert h["x-content-type-options"] == "nosniff"
    assert h["referrer-policy"] == "no-referrer"
    assert h["cache-control"] == "no-cache"
    # no inline script or style in the page: only files of our origin
    assert "<script>" not in page and "<style" not in page and " style=" not in page
    js = re.search(r'<script type="module" src="(/assets/app-[A-Za-z0-9]+\.js)"></script>', page)
    css = re.search(r'<link rel="stylesheet" href="(/assets/app-[A-Za-z0-9]+\.css)">', page)
    assert js and css, page
    for path, ctype in ((js.group(1), "text/javascript; charset=utf-8"), (css.group(1), "text/css; charset=utf-8")):
        status, a, body = raw_get(endpoints, path)
        assert status == 200, (path, status)
        assert a["content-type"] == ctype and int(a["content-length"]) == len(body) > 0
        assert a["cache-control"] == "public, max-age=31536000, immutable"
        assert a["content-security-policy"] == CSP
    status, f, _ = raw_get(endpoints, "/favicon.svg")
    assert status == 200 and f["content-type"] == "image/svg+xml"


def test_head_answers_as_get_without_a_body(endpoints):
    """HEAD of the page and of its files: GET's status and headers, no body
    (RFC 9110 9.3.2), and the connection stays usable; a HEAD the api does
    not serve gets its status without a body too."""
    u = urllib.parse.urlsplit(endpoints.api)
    _, page_h, page = raw_get(endpoints, "/")
    js = re.search(r'src="(/assets/app-[A-Za-z0-9]+\.js)"', page.decode()).group(1)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=HTTP_TIMEOUT)
    try:
        for path in ("/", js, "/favicon.svg", "/no-such-file.js"):
            status, h, body = raw_get(endpoints, path)
            conn.request("HEAD", path)
            r = conn.getresponse()
            assert r.status == status, (path, r.status, status)
            head_h = {k.lower(): v for k, v in r.getheaders()}
            assert r.read() == b"", path
            assert head_h["content-length"] == str(len(body)), (path, head_h)
            for k in ("content-type", "cache-control", "content-security-policy"):
                assert head_h[k] == h[k], (path, k)
        # the api's own paths answer GET only: 405, and no body either
        conn.request("HEAD", "/v1/runs")
        r = conn.getresponse()
        assert r.status == 405 and r.read() == b"" and int(r.getheader("content-length")) > 0
        # the same connection still answers a GET whole
        conn.request("GET", "/")
        r = conn.getresponse()
        assert r.status == 200 and r.read() == page and r.getheader("content-length") == page_h["content-length"]
    finally:
        conn.close()


def test_api_answers_carry_the_policy_and_keep_their_404(endpoints):
    r = requests.get(endpoints.api + "/healthz", timeout=HTTP_TIMEOUT)
    assert r.headers["Content-Security-Policy"] == CSP and r.headers["X-Content-Type-Options"] == "nosniff"
    with openapi_undescribed_path():
        r = requests.get(endpoints.api + "/v1/no-such-endpoint", timeout=HTTP_TIMEOUT)
    assert r.status_code == 404 and r.headers["Content-Type"] == "application/problem+json"
    assert r.json()["code"] == "not_found"


@pytest.mark.parametrize("path", [
    "/assets/",                               # a directory: no listing
    "/assets",
    "/../../../../etc/passwd",
    "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/assets/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/assets/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/..%5c..%5cetc%5cpasswd",
    "//etc/passwd",
    "/.git/config",                           # dot files
    "/index.html%00.js",
    "/etc/passwd",
    "/nope.html",
])
def test_no_listing_and_no_way_out(endpoints, path):
    status, headers, body = raw_get(endpoints, path)
    assert status in (0, 400, 403, 404), (path, status, body[:200])
    assert b"root:" not in body and b"<!doctype html>" not in body.lower(), (path, body[:200])
    assert b"Index of" not in body and b"app-" not in body, (path, body[:200])


def test_symlinks_and_unknown_types_are_not_served(endpoints):
    d = web_dir()
    link, odd = d / "f13-link.js", d / "f13-secret.key"
    link_dir = d / "f13-dir"
    try:
        link.symlink_to("/etc/hostname")
        link_dir.symlink_to("/etc")
        odd.write_text("not a dashboard file\n")
        for p in ("/f13-link.js", "/f13-dir/hostname", "/f13-secret.key"):
            status, _, body = raw_get(endpoints, p)
            assert status == 404, (p, status, body[:200])
            assert b"not a dashboard file" not in body
    finally:
        for p in (link, link_dir, odd):
            p.unlink(missing_ok=True)


def test_bad_web_dir_is_bad_configuration(tmp_path):
    """PADDOCK_WEB_DIR is checked before anything starts: exit 78 naming it."""
    api_env = read_env_file(state_dir() / "env" / "api.env")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PADDOCK_")}
    env.update(api_env)
    for bad in ("relative/dist", str(tmp_path / "missing"), str(tmp_path)):  # the last: no index.html
        env["PADDOCK_WEB_DIR"] = bad
        p = subprocess.run([str(api_binary()), "bootstrap", "--tenant", unique_name("t"), "--admin", "a"],
                           env=env, capture_output=True, text=True, timeout=60)
        assert p.returncode == 78, (bad, p.returncode, p.stderr[-500:])
        assert "PADDOCK_WEB_DIR" in p.stderr, p.stderr[-500:]


# ---------------------------------------------------------------- the cookie session


def test_cookie_login_sets_httponly_session_and_answers_no_token(endpoints, credentials):
    r = cookie_login(endpoints, credentials)
    assert r.status_code == 200, r.text[:300]
    body = r.json()
    assert "token" not in body and body["user"]["username"] == credentials["PADDOCK_USER"]
    c = set_cookies(r)
    token, attrs = c["paddock_session"]
    assert re.fullmatch(r"[0-9a-f]{64}", token)
    assert token not in r.text
    assert {"httponly", "samesite=strict", "path=/"} <= set(attrs), attrs
    assert "secure" not in attrs  # PADDOCK_PUBLIC_URL of the local stack is http
    csrf, cattrs = c["paddock_csrf"]
    assert re.fullmatch(r"[0-9a-f]{64}", csrf) and csrf != token
    assert csrf != hashlib.sha256(token.encode()).hexdigest()  # never the stored token digest
    assert "httponly" not in cattrs and "samesite=strict" in cattrs
    # a bearer login is unchanged
    t = cookie_login(endpoints, credentials, session="token")
    assert t.status_code == 200 and re.fullmatch(r"[0-9a-f]{64}", t.json()["token"])
    assert not set_cookies(t)


@pytest.mark.parametrize("value", ["jar", "", 1, None, ["cookie"]])
def test_cookie_login_bad_session_value(endpoints, credentials, value):
    r = requests.post(endpoints.api + "/v1/auth/login",
                      json={"tenant": credentials["PADDOCK_TENANT"], "username": credentials["PADDOCK_USER"],
                            "password": credentials["PADDOCK_PASSWORD"], "session": value}, timeout=HTTP_TIMEOUT)
    assert r.status_code == 400, r.text[:300]
    assert r.json()["code"] == "invalid_field" and "session" in r.json()["detail"]
    assert not set_cookies(r)


def test_cookie_writes_need_the_sessions_csrf_token(endpoints, credentials, api):
    b = browser(endpoints, credentials)
    me = b.get(endpoints.api + "/v1/me", timeout=HTTP_TIMEOUT)
    assert me.status_code == 200 and me.json()["user"]["username"] == credentials["PADDOCK_USER"]
    other = browser(endpoints, credentials)  # another session of the same user
    name = unique_name("csrf")
    for headers in ({}, {"X-CSRF-Token": "0" * 64}, {"X-CSRF-Token": other.cookies["paddock_csrf"]},
                    {"X-CSRF-Token": b.cookies["paddock_session"]}, {"X-CSRF-Token": b.cookies["paddock_csrf"][:63]}):
        r = b.post(endpoints.api + "/v1/teams", json={"name": name}, headers=headers, timeout=HTTP_TIMEOUT)
        assert r.status_code == 403, (headers, r.status_code, r.text[:300])
        assert r.json()["code"] == "csrf_failed"
    teams = api.ok("GET", "/v1/teams", expect=(200,))
    items = teams["items"] if isinstance(teams, dict) else teams
    assert name not in [t["name"] for t in items], "a refused write changed something"
    r = b.post(endpoints.api + "/v1/teams", json={"name": name},
               headers={"X-CSRF-Token": b.cookies["paddock_csrf"]}, timeout=HTTP_TIMEOUT)
    assert r.status_code == 201, r.text[:300]


def test_bearer_clients_need_no_csrf_and_win_over_a_cookie(endpoints, credentials, api):
    b = browser(endpoints, credentials)
    # the CLI's way: a bearer token, no cookie, no CSRF header
    api.ok("POST", "/v1/teams", json={"name": unique_name("bearer")}, expect=(201,))
    # a bearer token next to a cookie: the token authenticates, no CSRF asked
    r = requests.post(endpoints.api + "/v1/teams", json={"name": unique_name("both")},
                      headers={"Authorization": f"Bearer {api.token}"}, cookies=b.cookies, timeout=HTTP_TIMEOUT)
    assert r.status_code == 201, r.text[:300]


def test_logout_revokes_the_session_and_clears_its_cookies(endpoints, credentials):
    b = browser(endpoints, credentials)
    token = b.cookies["paddock_session"]
    r = b.post(endpoints.api + "/v1/auth/logout", timeout=HTTP_TIMEOUT)
    assert r.status_code == 403 and r.json()["code"] == "csrf_failed"
    assert b.get(endpoints.api + "/v1/me", timeout=HTTP_TIMEOUT).status_code == 200, "a refused logout revoked"
    r = b.post(endpoints.api + "/v1/auth/logout", headers={"X-CSRF-Token": b.cookies["paddock_csrf"]},
               timeout=HTTP_TIMEOUT)
    assert r.status_code == 204, r.text[:300]
    c = set_cookies(r)
    assert c["paddock_session"][0] == "" and "max-age=0" in c["paddock_session"][1]
    assert c["paddock_csrf"][0] == "" and "max-age=0" in c["paddock_csrf"][1]
    # the revoked token works neither as a cookie nor as a bearer token
    r = requests.get(endpoints.api + "/v1/me", cookies={"paddock_session": token}, timeout=HTTP_TIMEOUT)
    assert r.status_code == 401
    assert Api(endpoints.api, token).get("/v1/me").status_code == 401


def test_websocket_refuses_the_cookie(endpoints, credentials):
    """The stream takes a header token or a ticket only: a page of another
    site cannot open it with the user's cookie (cross-site websocket hijacking)."""
    b = browser(endpoints, credentials)
    u = urllib.parse.urlsplit(endpoints.api)
    s = socket.create_connection((u.hostname, u.port), timeout=HTTP_TIMEOUT)
    try:
        s.sendall((f"GET /v1/runs/00000000-0000-0000-0000-000000000000/stream HTTP/1.1\r\nHost: {u.netloc}\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://evil.example\r\n"
                   f"Cookie: paddock_session={b.cookies['paddock_session']}\r\n\r\n").encode())
        head = s.recv(4096).decode("latin-1")
    finally:
        s.close()
    assert re.match(r"HTTP/1\.[01] 401 ", head), head[:200]
