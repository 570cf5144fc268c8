"""Roles and accounts that make sense, through the public API.

* A member refused a team permission reads which roles would do and which it
  has (the README's example grants cannot read the run's own diff: reviewer
  is missing); a non-member still learns nothing (404).
* PATCH /v1/teams/{id}/members/{user} adds and removes roles and says what
  changed; PUT replaces them and answers the same shape.
* One-time passwords (POST /v1/users without a password, `paddock-api
  bootstrap` without --password-stdin) must be changed at first login: until
  then the token reaches only GET /v1/me, POST /v1/me/password and logout;
  the change revokes the user's other tokens; bad new passwords are refused
  naming the field; wrong current passwords count like failed logins.
* An expired token answers 401 token_expired saying when, and for a service
  account who issues a new one; listings show token states and count only
  usable tokens as active.
* Every answer carries X-Request-Id (the client's if sane), and the api logs
  one JSON access line per request, 401/403/404 and websocket upgrades
  included, with no token in it.
* effective-policy shows file modes as a spec writes them ("0644").
"""

import json
import secrets
import socket
import time
import urllib.parse
import uuid

import psycopg
import pytest
import requests
import websocket

from conftest import (HTTP_TIMEOUT, Api, SourceAddressAdapter, bootstrap_tenant, command_spec, login,
                      openapi_undescribed_path, random_loopback_source, state_dir, stream_url, unique_name,
                      wait_run_status)

UUID_RE = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


def _token(endpoints, tenant, user, password):
    r = login(endpoints, tenant, user, password)
    assert r.status_code == 200, f"login {tenant}/{user}: {r.status_code} {r.text[:300]}"
    return r.json()["token"]


def _user(api, roles_by_team=(), **body):
    """A user with a given password (not one-time), granted roles per team."""
    pw = "pw-" + secrets.token_hex(12)
    u = api.ok("POST", "/v1/users", json=dict({"username": unique_name("acct"), "password": pw}, **body),
               expect=(201,))
    for team, roles in roles_by_team:
        api.ok("PUT", f"/v1/teams/{team}/members/{u['id']}", json={"roles": roles}, expect=(200,))
    return dict(u, password=pw)


def _members(api, team):
    return {m["user"]["id"]: m["roles"] for m in api.ok("GET", f"/v1/teams/{team}/members", expect=(200,))["items"]}


@pytest.fixture(scope="module")
def team(api):
    t = api.ok("POST", "/v1/teams", json={"name": unique_name("acct-team")}, expect=(201,))
    return t


# ---------------------------------------------------------------- 403 names what is missing


def test_forbidden_names_the_missing_role(endpoints, credentials, api, team):
    tenant = credentials["PADDOCK_TENANT"]
    # the README's example grants
    alice = _user(api, [(team["id"], ["sandbox_author", "launcher", "viewer"])])
    outsider = _user(api)
    aapi = Api(endpoints.api, _token(endpoints, tenant, alice["username"], alice["password"]))
    sb = aapi.ok("POST", "/v1/sandboxes", json={"name": unique_name("acct-sb"), "team": team["id"],
                                                 "spec": command_spec(["sh", "-c", "echo x > out.txt"])},
                 expect=(201,))["id"]
    assert aapi.ok("POST", f"/v1/sandboxes/{sb}/versions", expect=(201, 200))["version"] == 1
    run = aapi.ok("POST", "/v1/runs", json={"sandbox": sb, "version": 1, "team": team["id"]}, expect=(202,))["id"]
    assert wait_run_status(aapi, run, timeout=180)["status"] == "succeeded"

    # her own run's diff needs reviewer: the refusal says so, and what she has
    r = aapi.get(f"/v1/runs/{run}/artifacts")
    assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text
    assert r.json()["detail"] == (f'needs one of the roles reviewer, tenant_admin in team "{team["name"]}"; '
                                  f"you have launcher, sandbox_author, viewer"), r.text
    r = aapi.get(f"/v1/runs/{run}/artifacts/workspace.diff", allow_redirects=False)
    assert r.status_code == 403 and "reviewer" in r.json()["detail"], r.text
    # the same wording wherever a team permission is refused
    viewer = _user(api, [(team["id"], ["viewer"])])
    vapi = Api(endpoints.api, _token(endpoints, tenant, viewer["username"], viewer["password"]))
    r = vapi.post(f"/v1/runs/{run}/cancel", json={})
    assert r.status_code == 403 and r.json()["detail"] == (
        f'needs one of the roles approver, launcher, tenant_admin in team "{team["name"]}"; you have viewer'), r.text
    r = vapi.request("PUT", f"/v1/sandboxes/{sb}/draft", json={"spec": command_spec(["true"])})
    assert r.status_code == 403 and r.json()["detail"].startswith(
        "needs one of the roles sandbox_author, tenant_admin in team"), r.text
    # a non-member learns nothing, not even that the run exists
    oapi = Api(endpoints.api, _token(endpoints, tenant, outsider["username"], outsider["password"]))
    r = oapi.get(f"/v1/runs/{run}/artifacts")
    assert r.status_code == 404 and r.json()["code"] == "not_found" and "role" not in r.json()["detail"], r.text

    # the working set: adding reviewer is enough, and the PATCH says so
    ch = api.ok("PATCH", f"/v1/teams/{team['id']}/members/{alice['id']}", json={"add": ["reviewer"]},
                expect=(200,))
    assert ch["added"] == ["reviewer"] and ch["removed"] == [], ch
    items = aapi.ok("GET", f"/v1/runs/{run}/artifacts", expect=(200,))["items"]
    assert any(a["name"] == "workspace.diff" for a in items), items


# ---------------------------------------------------------------- grants say what changed


def test_member_patch_and_put_say_what_changed(endpoints, credentials, api, team):
    tid = team["id"]
    u = _user(api)
    path = f"/v1/teams/{tid}/members/{u['id']}"

    # PATCH on a non-member adds it
    ch = api.ok("PATCH", path, json={"add": ["viewer", "launcher", "viewer"]}, expect=(200,))
    assert ch == {"team": tid, "user": u["id"], "roles": ["viewer", "launcher"], "added": ["viewer", "launcher"],
                  "removed": []}, ch
    # add and remove together; other roles are kept
    ch = api.ok("PATCH", path, json={"add": ["reviewer"], "remove": ["launcher"]}, expect=(200,))
    assert ch["roles"] == ["viewer", "reviewer"] and ch["added"] == ["reviewer"] and ch["removed"] == ["launcher"], ch
    assert sorted(_members(api, tid)[u["id"]]) == ["reviewer", "viewer"]
    # nothing to do is no change (and not an error)
    ch = api.ok("PATCH", path, json={"add": ["viewer"], "remove": ["approver"]}, expect=(200,))
    assert ch["roles"] == ["viewer", "reviewer"] and ch["added"] == [] and ch["removed"] == [], ch

    # PUT replaces, and answers the same shape
    ch = api.ok("PUT", path, json={"roles": ["approver", "viewer"]}, expect=(200,))
    assert ch == {"team": tid, "user": u["id"], "roles": ["approver", "viewer"], "added": ["approver"],
                  "removed": ["reviewer"]}, ch

    # bad input: 400 naming the field, and nothing changes
    for body, code, field in (({}, "missing_field", "add or remove"),
                              ({"add": ["overlord"]}, "invalid_field", "add[0]"),
                              ({"remove": ["viewer", 7]}, "invalid_field", "remove[1]"),
                              ({"add": "viewer"}, "invalid_field", "add"),
                              ({"add": ["launcher"], "remove": ["launcher"]}, "invalid_field", "remove[0]"),
                              ({"add": ["launcher"], "roles": ["viewer"]}, "unknown_field", "roles")):
        r = api.request("PATCH", path, json=body)
        assert r.status_code == 400 and r.json()["code"] == code and field in r.json()["detail"], (body, r.text)
    assert sorted(_members(api, tid)[u["id"]]) == ["approver", "viewer"]

    # removing the last roles removes the membership
    ch = api.ok("PATCH", path, json={"remove": ["viewer", "approver"]}, expect=(200,))
    assert ch["roles"] == [] and sorted(ch["removed"]) == ["approver", "viewer"], ch
    assert u["id"] not in _members(api, tid)

    # only a tenant_admin grants; an unknown user or team is 404
    other = _user(api, [(tid, ["viewer"])])
    oapi = Api(endpoints.api, _token(endpoints, credentials["PADDOCK_TENANT"], other["username"], other["password"]))
    r = oapi.request("PATCH", path, json={"add": ["viewer"]})
    assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text
    r = api.request("PATCH", f"/v1/teams/{tid}/members/{uuid.uuid4()}", json={"add": ["viewer"]})
    assert r.status_code == 404, r.text
    r = api.request("PATCH", f"/v1/teams/{uuid.uuid4()}/members/{u['id']}", json={"add": ["viewer"]})
    assert r.status_code == 404, r.text


# ---------------------------------------------------------------- one-time passwords


def _wait_audit(api, action, object_id, want, timeout=60):
    """Audit records of action on object_id, once `want` of them are there
    (they are relayed to evidence asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        found, after = [], 0
        while True:
            page = api.ok("GET", "/v1/audit", params={"after": after, "limit": 1000}, expect=(200,))
            found += [i for i in page["items"] if i["action"] == action and i["object_id"] == object_id]
            if not page["next_cursor"]:
                break
            after = int(page["next_cursor"])
        if len(found) >= want or time.monotonic() > deadline:
            return found
        time.sleep(1)


def test_one_time_password_must_be_changed(endpoints, credentials, api, team):
    tenant = credentials["PADDOCK_TENANT"]
    created = api.ok("POST", "/v1/users", json={"username": unique_name("acct-otp")}, expect=(201,))
    one_time = created["password"]
    assert created["password_change_required"] is True
    name, uid = created["username"], created["id"]
    api.ok("PUT", f"/v1/teams/{team['id']}/members/{uid}", json={"roles": ["viewer"]}, expect=(200,))

    r = login(endpoints, tenant, name, one_time)
    assert r.status_code == 200 and r.json()["password_change_required"] is True, r.text
    first = Api(endpoints.api, r.json()["token"])
    second = Api(endpoints.api, _token(endpoints, tenant, name, one_time))

    # the restricted token: /v1/me (saying so), nothing else but the change and logout
    me = first.ok("GET", "/v1/me", expect=(200,))
    assert me["password_change_required"] is True and me["user"]["id"] == uid
    for method, path in (("GET", "/v1/teams"), ("GET", f"/v1/teams/{team['id']}"), ("POST", "/v1/sandboxes")):
        r = first.request(method, path, json={} if method == "POST" else None)
        assert r.status_code == 403 and r.json()["code"] == "password_change_required", (path, r.text)
        assert "/v1/me/password" in r.json()["detail"]
    ws_status = None
    try:
        websocket.create_connection(stream_url(endpoints, str(uuid.uuid4())),
                                    header=[f"Authorization: Bearer {first.token}"], timeout=10).close()
    except websocket.WebSocketBadStatusException as e:
        ws_status = e.status_code
    assert ws_status == 403

    # bad new passwords: 400 naming the field, nothing changes
    src = requests.Session()  # wrong passwords count like failed logins: not from the suite's 127.0.0.1
    src.mount("http://", SourceAddressAdapter(random_loopback_source()))
    for body, code, field in (
            ({"current_password": one_time, "new_password": "elevenchars"}, "invalid_field", "new_password"),
            ({"current_password": one_time, "new_password": "ü" * 11}, "invalid_field", "new_password"),
            ({"current_password": one_time, "new_password": "x" * 1025}, "invalid_field", "new_password"),
            ({"current_password": one_time, "new_password": one_time}, "invalid_field", "new_password"),
            ({"current_password": one_time}, "missing_field", "new_password"),
            ({"current_password": one_time, "new_password": 12345678901234}, "invalid_field", "new_password"),
            ({"current_password": one_time, "new_password": "a-good-new-password", "x": 1}, "unknown_field", "x"),
            ({"current_password": "not-" + one_time, "new_password": "a-good-new-password"}, "invalid_field",
             "current_password")):
        r = src.post(endpoints.api + "/v1/me/password", json=body, timeout=HTTP_TIMEOUT,
                     headers={"Authorization": f"Bearer {first.token}"})
        assert r.status_code == 400 and r.json()["code"] == code and field in r.json()["detail"], (body, r.text)
        assert one_time not in r.text
    assert login(endpoints, tenant, name, one_time).status_code == 200  # still the one-time password

    new_pw = "new-" + secrets.token_hex(10)
    r = first.post("/v1/me/password", json={"current_password": one_time, "new_password": new_pw})
    assert r.status_code == 204 and not r.content, r.text
    # the changing token goes on, unrestricted; every other token of the user is revoked
    me = first.ok("GET", "/v1/me", expect=(200,))
    assert me["password_change_required"] is False
    assert any(t["id"] == team["id"] for t in first.ok("GET", "/v1/teams", expect=(200,))["items"])
    r = second.get("/v1/me")
    assert r.status_code == 401 and r.json()["code"] == "unauthorized", r.text
    assert login(endpoints, tenant, name, one_time).status_code == 401
    r = login(endpoints, tenant, name, new_pw)
    assert r.status_code == 200 and r.json()["password_change_required"] is False, r.text
    listed = [u for u in api.ok("GET", "/v1/users", expect=(200,))["items"] if u["id"] == uid]
    assert listed and listed[0]["password_change_required"] is False

    # audited: the change (forced, no password in it) and the refused attempts
    recs = _wait_audit(api, "user.password_change", uid, 2)
    assert {r["outcome"] for r in recs} == {"success", "failure"}, recs
    blob = json.dumps(recs)
    assert one_time not in blob and new_pw not in blob
    logins = _wait_audit(api, "auth.login", uid, 2)
    assert len(logins) >= 2 and all(r["change_sha256"] for r in logins[:2]), logins  # forced logins carry a change


def test_password_flags_at_creation(endpoints, credentials, api):
    tenant = credentials["PADDOCK_TENANT"]
    # a password the admin gives is not one-time, unless the request says so
    given = _user(api)
    assert given["password_change_required"] is False
    assert login(endpoints, tenant, given["username"], given["password"]).json()["password_change_required"] is False
    forced = _user(api, must_change_password=True)
    assert forced["password_change_required"] is True
    r = login(endpoints, tenant, forced["username"], forced["password"])
    assert r.json()["password_change_required"] is True
    r = Api(endpoints.api, r.json()["token"]).get("/v1/teams")
    assert r.status_code == 403 and r.json()["code"] == "password_change_required", r.text
    # a generated password cannot be exempted, and a refused create creates nothing
    name = unique_name("acct-gen")
    r = api.request("POST", "/v1/users", json={"username": name, "must_change_password": False})
    assert r.status_code == 400 and r.json()["code"] == "invalid_field" and "must_change_password" in r.json()["detail"]
    r = api.request("POST", "/v1/users", json={"username": name, "must_change_password": "yes"})
    assert r.status_code == 400 and "must_change_password" in r.json()["detail"], r.text
    assert name not in [u["username"] for u in api.ok("GET", "/v1/users", expect=(200,))["items"]]
    # service accounts have no password to change
    sa = api.ok("POST", "/v1/service-accounts", json={"name": unique_name("acct-sa")}, expect=(201,))
    tok = api.ok("POST", f"/v1/service-accounts/{sa['id']}/tokens", json={"name": "t"}, expect=(201,))["token"]
    r = Api(endpoints.api, tok).post("/v1/me/password", json={"current_password": "x" * 12, "new_password": "y" * 12})
    assert r.status_code == 409 and "service account" in r.json()["detail"], r.text


def test_password_change_is_rate_limited(endpoints, credentials, api):
    tenant = credentials["PADDOCK_TENANT"]
    u = _user(api)
    uapi = Api(endpoints.api, _token(endpoints, tenant, u["username"], u["password"]))
    src = requests.Session()
    src.mount("http://", SourceAddressAdapter(random_loopback_source()))
    hdr = {"Authorization": f"Bearer {uapi.token}"}
    statuses = []
    for i in range(8):
        r = src.post(endpoints.api + "/v1/me/password", headers=hdr, timeout=HTTP_TIMEOUT,
                     json={"current_password": f"wrong-guess-{i:04d}", "new_password": "a-good-new-password"})
        statuses.append(r.status_code)
    assert statuses[0] == 400 and statuses[-1] == 429, statuses
    # while limited even the right password is refused, and so is a login
    r = src.post(endpoints.api + "/v1/me/password", headers=hdr, timeout=HTTP_TIMEOUT,
                 json={"current_password": u["password"], "new_password": "a-good-new-password"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1 and r.json()["code"] == "rate_limited", r.text
    r = src.post(endpoints.api + "/v1/auth/login", timeout=HTTP_TIMEOUT,
                 json={"tenant": tenant, "username": u["username"], "password": u["password"]})
    assert r.status_code == 429, r.text
    # counted per (user, source): from another source the user still logs in
    assert login(endpoints, tenant, u["username"], u["password"]).status_code == 200


def test_bootstrap_one_time_password(endpoints):
    name = unique_name("acct-boot")
    pw = bootstrap_tenant(name, "root", one_time=True)
    r = login(endpoints, name, "root", pw)
    assert r.status_code == 200 and r.json()["password_change_required"] is True, r.text
    oapi = Api(endpoints.api, r.json()["token"])
    r = oapi.get("/v1/users")
    assert r.status_code == 403 and r.json()["code"] == "password_change_required", r.text
    new_pw = "root-" + secrets.token_hex(10)
    r = oapi.post("/v1/me/password", json={"current_password": pw, "new_password": new_pw})
    assert r.status_code == 204, r.text
    assert len(oapi.ok("GET", "/v1/users", expect=(200,))["items"]) == 1
    # an operator-chosen password (--password-stdin) is not one-time
    other = unique_name("acct-boot")
    opw = bootstrap_tenant(other, "root")
    r = login(endpoints, other, "root", opw)
    assert r.status_code == 200 and r.json()["password_change_required"] is False, r.text


# ---------------------------------------------------------------- expired tokens


def test_expired_tokens(endpoints, credentials, api, team):
    sa = api.ok("POST", "/v1/service-accounts", json={"name": unique_name("acct-bot"), "team": team["id"],
                                                       "roles": ["viewer"]}, expect=(201,))
    mk = lambda name, ttl: api.ok("POST", f"/v1/service-accounts/{sa['id']}/tokens",  # noqa: E731
                                  json={"name": name, "expires_in_s": ttl}, expect=(201,))
    short, live, revoked = mk("short", 1), mk("live", 3600), mk("revoked", 3600)
    api.ok("DELETE", f"/v1/service-accounts/{sa['id']}/tokens/{revoked['id']}", expect=(204,))
    time.sleep(2.5)

    r = Api(endpoints.api, short["token"]).get("/v1/me")
    assert r.status_code == 401 and r.json()["code"] == "token_expired", r.text
    detail = r.json()["detail"]
    assert short["expires_at"][:19] in detail, detail
    assert f"POST /v1/service-accounts/{sa['id']}/tokens" in detail and "tenant_admin" in detail, detail
    assert "login" not in detail, detail
    assert short["token"] not in r.text
    assert Api(endpoints.api, live["token"]).get("/v1/me").status_code == 200
    for tok in (revoked["token"], secrets.token_hex(32), "not-a-token"):
        r = Api(endpoints.api, tok).get("/v1/me")
        assert r.status_code == 401 and r.json()["code"] == "unauthorized", r.text
    # the websocket refuses it the same way
    with pytest.raises(websocket.WebSocketBadStatusException) as ei:
        websocket.create_connection(stream_url(endpoints, str(uuid.uuid4())),
                                    header=[f"Authorization: Bearer {short['token']}"], timeout=10)
    assert ei.value.status_code == 401

    # the listing: each token's state, only usable ones counted as active
    item = [s for s in api.ok("GET", "/v1/service-accounts", expect=(200,))["items"] if s["id"] == sa["id"]][0]
    states = {t["name"]: t["state"] for t in item["tokens"]}
    assert states == {"short": "expired", "live": "active", "revoked": "revoked"}, item
    assert item["active_tokens"] == 1, item

    # a user's expired login token says to log in again
    u = _user(api)
    tok = _token(endpoints, credentials["PADDOCK_TENANT"], u["username"], u["password"])
    with psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True) as conn:
        conn.execute("UPDATE api.tokens SET expires_at = now() - interval '1 minute' WHERE user_id = %s", (u["id"],))
    r = Api(endpoints.api, tok).get("/v1/me")
    assert r.status_code == 401 and r.json()["code"] == "token_expired", r.text
    assert "log in again" in r.json()["detail"] and "service" not in r.json()["detail"], r.text


# ---------------------------------------------------------------- request ids and the access log


def test_request_id(endpoints, api):
    r = api.get("/v1/me", headers={"X-Request-Id": "client-id_1.2"})
    assert r.status_code == 200 and r.headers["X-Request-Id"] == "client-id_1.2"
    generated = set()
    for bad in (None, "", "has space", "x" * 65, "semi;colon", "ünï"):
        h = {} if bad is None else {"X-Request-Id": bad.encode() if bad else bad}
        r = api.get("/v1/me", headers=h)
        rid = r.headers.get("X-Request-Id", "")
        assert r.status_code == 200 and rid != bad and len(rid) == 36 and rid.count("-") == 4, (bad, rid)
        generated.add(rid)
    assert len(generated) == 6, "a new id per request"
    # on errors too, whoever answers them
    assert requests.get(endpoints.api + "/v1/me", headers={"X-Request-Id": "e401"},
                        timeout=HTTP_TIMEOUT).headers["X-Request-Id"] == "e401"
    with openapi_undescribed_path():
        r = requests.get(endpoints.api + "/v1/no-such-thing", headers={"X-Request-Id": "e404"}, timeout=HTTP_TIMEOUT)
        assert r.status_code == 404 and r.headers["X-Request-Id"] == "e404"
        r = requests.delete(endpoints.api + "/v1/me", headers={"X-Request-Id": "e405"}, timeout=HTTP_TIMEOUT)
        assert r.status_code == 405 and r.headers["X-Request-Id"] == "e405"
    # 413: answered from the Content-Length alone, before any body is read
    u = urllib.parse.urlsplit(endpoints.api)
    with socket.create_connection((u.hostname, u.port), timeout=HTTP_TIMEOUT) as s:
        s.sendall((f"POST /v1/teams HTTP/1.1\r\nHost: {u.netloc}\r\nAuthorization: Bearer {api.token}\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {64 * 1024 * 1024}\r\n"
                   f"X-Request-Id: e413\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].split()[1] == "413", lines
    assert "x-request-id: e413" in [l.lower() for l in lines], lines


def _log_lines(request_ids, timeout=10):
    """The api log's JSON access lines of request_ids (worker processes
    write them as they answer)."""
    path = state_dir() / "logs" / "api.log"
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text(errors="replace")
        lines = {}
        for line in text.splitlines():
            if '"request_id"' not in line:
                continue
            try:
                o = json.loads(line)
            except ValueError:
                continue
            if o.get("msg") == "request" and o.get("request_id") in request_ids:
                lines.setdefault(o["request_id"], []).append(o)
        if len(lines) == len(request_ids) or time.monotonic() > deadline:
            return lines, text
        time.sleep(0.3)


def test_access_log(endpoints, credentials, api, me, team):
    tenant = credentials["PADDOCK_TENANT"]
    viewer = _user(api, [(team["id"], ["viewer"])])
    vtok = _token(endpoints, tenant, viewer["username"], viewer["password"])
    bad_token = secrets.token_hex(32)
    tag = uuid.uuid4().hex[:8]
    ids = {k: f"acct-{tag}-{k}" for k in ("ok", "unauth", "forbidden", "missing", "ws", "wsbad")}
    assert api.get("/v1/me", headers={"X-Request-Id": ids["ok"]}).status_code == 200
    assert Api(endpoints.api, bad_token).get("/v1/me", headers={"X-Request-Id": ids["unauth"]}).status_code == 401
    r = Api(endpoints.api, vtok).request("PATCH", f"/v1/teams/{team['id']}", json={"name": "x"},
                                        headers={"X-Request-Id": ids["forbidden"]})
    assert r.status_code == 403
    r = api.get(f"/v1/runs/{uuid.uuid4()}", params={"access_token": bad_token}, headers={"X-Request-Id": ids["missing"]})
    assert r.status_code == 404
    # websocket upgrades: refused (token in the query string) and accepted
    with pytest.raises(websocket.WebSocketBadStatusException):
        websocket.create_connection(stream_url(endpoints, str(uuid.uuid4())) + f"?access_token={bad_token}",
                                    header=[f"X-Request-Id: {ids['wsbad']}"], timeout=10)
    sb = api.ok("POST", "/v1/sandboxes", json={"name": unique_name("acct-ws"), "team": team["id"],
                                                "spec": command_spec(["true"])}, expect=(201,))["id"]
    api.ok("POST", f"/v1/sandboxes/{sb}/versions", expect=(201, 200))
    run = api.ok("POST", "/v1/runs", json={"sandbox": sb, "version": 1, "team": team["id"]}, expect=(202,))["id"]
    ws = websocket.create_connection(stream_url(endpoints, run), timeout=30,
                                     header=[f"Authorization: Bearer {api.token}", f"X-Request-Id: {ids['ws']}"])
    try:
        assert ws.getheaders().get("x-request-id") == ids["ws"], ws.getheaders()
    finally:
        ws.close()

    lines, text = _log_lines(set(ids.values()))
    assert set(lines) == set(ids.values()), f"no access line for {set(ids.values()) - set(lines)}"
    for rid, ls in lines.items():
        assert len(ls) == 1, f"{rid}: one line per request, got {ls}"
    got = {k: lines[v][0] for k, v in ids.items()}
    want = {"ok": ("GET", "/v1/me", 200, me["user"]["id"]),
            "unauth": ("GET", "/v1/me", 401, None),
            "forbidden": ("PATCH", "/v1/teams/{id}", 403, viewer["id"]),
            "missing": ("GET", "/v1/runs/{id}", 404, me["user"]["id"]),
            "ws": ("GET", "/v1/runs/{id}/stream", 101, me["user"]["id"]),
            "wsbad": ("GET", "/v1/runs/{id}/stream", 401, None)}
    for k, (method, route, status, caller) in want.items():
        o = got[k]
        assert (o["method"], o["route"], o["status"], o["caller_id"]) == (method, route, status, caller), (k, o)
        assert o["level"] == "info" and isinstance(o["duration_ms"], (int, float)) and o["duration_ms"] >= 0, o
    # no token, no query string: neither the bearer tokens nor the one in a URL
    for secret in (api.token, vtok, bad_token):
        assert secret not in text


# ---------------------------------------------------------------- file modes as a spec writes them


def test_effective_policy_file_modes(api, team):
    spec = command_spec(["true"], files=[{"path": "run.sh", "content": "#!/bin/sh\n", "mode": "0755"},
                                         {"path": "notes.txt", "content": "n\n", "mode": "640"},
                                         {"path": "plain.txt", "content": "p\n"}])
    sb = api.ok("POST", "/v1/sandboxes", json={"name": unique_name("acct-mode"), "team": team["id"], "spec": spec},
                expect=(201,))["id"]
    v = api.ok("POST", f"/v1/sandboxes/{sb}/versions", expect=(201, 200))["version"]
    pol = api.ok("GET", f"/v1/sandboxes/{sb}/versions/{v}/effective-policy", expect=(200,))
    modes = {f["path"]: f["mode"] for f in pol["files"]}
    assert modes == {"run.sh": "0755", "notes.txt": "0640", "plain.txt": "0644"}, pol["files"]
    # the published version keeps the spec as written
    ver = api.ok("GET", f"/v1/sandboxes/{sb}/versions/{v}", expect=(200,))
    assert [f.get("mode") for f in ver["spec"]["files"]] == ["0755", "640", None], ver["spec"]["files"]
