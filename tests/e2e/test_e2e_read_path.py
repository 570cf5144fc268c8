"""The authenticated read path (issue 10 §4, bench/api_read): however the
token lookup is made cheaper, a token stops working at once, in every api
worker process (each request below on a fresh connection, so SO_REUSEPORT
spreads them over the workers):

* a removed role grant: the run is no longer visible (404) at the next request;
* a revoked token (logout) and a token expired in the database: 401;
* a disabled user: 401.

Each api worker caches what a token's lookup found (services/api/auth.c,
migration 0029's auth epoch): the cases below change the database behind
warm caches and expect the next request of every worker to see it, on the
run read and on a route without one (GET /v1/me), and for the roles a
token carries (tenant_admin).
"""

import json
import secrets
import socket
import urllib.parse

import psycopg
import requests

from conftest import HTTP_TIMEOUT, bootstrap_tenant, command_spec, login, unique_name

TRIES = 24


def _statuses(endpoints, token, path):
    """Statuses of TRIES requests, each on its own connection."""
    out = []
    for _ in range(TRIES):
        with requests.Session() as s:
            out.append(s.get(endpoints.api + path, headers={"Authorization": f"Bearer {token}"},
                             timeout=HTTP_TIMEOUT).status_code)
    return out


def _statuses_all(endpoints, token, paths):
    return {p: _statuses(endpoints, token, p) for p in paths}


def _viewer(endpoints, credentials, api, team_id):
    pw = secrets.token_hex(12)
    u = api.ok("POST", "/v1/users", json={"username": unique_name("reader"), "password": pw}, expect=(201,))
    api.ok("PUT", f"/v1/teams/{team_id}/members/{u['id']}", json={"roles": ["viewer"]}, expect=(200,))
    r = login(endpoints, credentials["PADDOCK_TENANT"], u["username"], pw)
    assert r.status_code == 200, r.text[:300]
    return u, pw, r.json()["token"]


def test_revocations_apply_at_once_in_every_worker(endpoints, credentials, api, runs, team_id):
    run = runs.start(command_spec(["/bin/true"]))
    path = f"/v1/runs/{run}"

    u, pw, tok = _viewer(endpoints, credentials, api, team_id)
    assert _statuses(endpoints, tok, path) == [200] * TRIES
    # the role grant removed (no roles left: no longer a member): not found, at once
    api.ok("PUT", f"/v1/teams/{team_id}/members/{u['id']}", json={"roles": []},
           expect=(200, 204))
    assert _statuses(endpoints, tok, path) == [404] * TRIES
    api.ok("PUT", f"/v1/teams/{team_id}/members/{u['id']}", json={"roles": ["viewer"]}, expect=(200,))
    assert _statuses(endpoints, tok, path) == [200] * TRIES

    # the token revoked (logout)
    requests.post(endpoints.api + "/v1/auth/logout", headers={"Authorization": f"Bearer {tok}"},
                  timeout=HTTP_TIMEOUT).raise_for_status()
    assert _statuses(endpoints, tok, path) == [401] * TRIES

    # a token expired in the database
    tok = login(endpoints, credentials["PADDOCK_TENANT"], u["username"], pw).json()["token"]
    assert _statuses(endpoints, tok, path) == [200] * TRIES
    with psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True) as conn:
        conn.execute("UPDATE api.tokens SET expires_at = now() - interval '1 second' WHERE user_id = %s", (u["id"],))
    assert _statuses(endpoints, tok, path) == [401] * TRIES

    # the user disabled
    tok = login(endpoints, credentials["PADDOCK_TENANT"], u["username"], pw).json()["token"]
    assert _statuses(endpoints, tok, path) == [200] * TRIES
    api.ok("PATCH", f"/v1/users/{u['id']}", json={"disabled": True}, expect=(200,))
    assert _statuses(endpoints, tok, path) == [401] * TRIES


def test_visibility_decided_in_the_one_read(endpoints, credentials, api, runs, team_id, me):
    """GET /v1/runs/{id} reads the run and the caller's roles in its team in
    one statement, sent with the token lookup before the caller is known
    (services/api/runs.c runs_get_read): the answers stay those of
    api_authz_team(): 403 naming the roles for a member without a viewing
    role, 404 alike for an outsider, another tenant's admin and an unknown
    run; and the run itself for a viewer."""
    run = runs.start(command_spec(["/bin/true"]))
    path = f"/v1/runs/{run}"
    team_name = next(t["name"] for t in me["teams"] if t["id"] == team_id)

    u, pw, tok = _viewer(endpoints, credentials, api, team_id)
    body = requests.get(endpoints.api + path, headers={"Authorization": f"Bearer {tok}"}, timeout=HTTP_TIMEOUT)
    assert body.status_code == 200, body.text[:300]
    assert body.json()["id"] == run and body.json()["team"] == team_id and body.json()["team_name"] == team_name

    # a member whose role carries no viewing permission: 403, and why
    api.ok("PUT", f"/v1/teams/{team_id}/members/{u['id']}", json={"roles": ["security_admin"]}, expect=(200,))
    assert _statuses(endpoints, tok, path) == [403] * TRIES
    r = requests.get(endpoints.api + path, headers={"Authorization": f"Bearer {tok}"}, timeout=HTTP_TIMEOUT)
    assert r.json()["code"] == "forbidden", r.text[:300]
    assert r.json()["detail"] == (
        "needs one of the roles approver, launcher, reviewer, sandbox_author, tenant_admin, viewer "
        f'in team "{team_name}"; you have security_admin'), r.text[:300]

    # an outsider, another tenant's admin and an unknown run: the same 404
    api.ok("PUT", f"/v1/teams/{team_id}/members/{u['id']}", json={"roles": []}, expect=(200, 204))
    outsider = requests.get(endpoints.api + path, headers={"Authorization": f"Bearer {tok}"}, timeout=HTTP_TIMEOUT)
    other = unique_name("read-other")
    other_pw = bootstrap_tenant(other, "admin")
    other_tok = login(endpoints, other, "admin", other_pw).json()["token"]
    assert _statuses(endpoints, other_tok, path) == [404] * TRIES
    foreign = requests.get(endpoints.api + path, headers={"Authorization": f"Bearer {other_tok}"},
                           timeout=HTTP_TIMEOUT)
    unknown = requests.get(endpoints.api + "/v1/runs/00000000-0000-4000-8000-000000000000",
                           headers={"Authorization": f"Bearer {tok}"}, timeout=HTTP_TIMEOUT)
    for r in (outsider, foreign, unknown):
        assert r.status_code == 404, r.text[:300]
        assert {k: r.json()[k] for k in ("code", "detail")} == {"code": "not_found", "detail": "run not found"}


def test_token_cache_follows_every_change(endpoints, credentials, api, runs, team_id):
    run = runs.start(command_spec(["/bin/true"]))
    paths = (f"/v1/runs/{run}", "/v1/me")

    # a deleted service account: its token refused at once, on both paths
    sa = api.ok("POST", "/v1/service-accounts", json={"name": unique_name("cache-bot"), "team": team_id,
                                                       "roles": ["viewer"]}, expect=(201,))
    tok = api.ok("POST", f"/v1/service-accounts/{sa['id']}/tokens", json={"name": "t"}, expect=(201,))["token"]
    assert _statuses_all(endpoints, tok, paths) == {p: [200] * TRIES for p in paths}
    api.ok("DELETE", f"/v1/service-accounts/{sa['id']}", expect=(200, 204))
    assert _statuses_all(endpoints, tok, paths) == {p: [401] * TRIES for p in paths}

    # a token revoked in the database by anything else than the api
    u, pw, tok = _viewer(endpoints, credentials, api, team_id)
    assert _statuses_all(endpoints, tok, paths) == {p: [200] * TRIES for p in paths}
    with psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True) as conn:
        conn.execute("UPDATE api.tokens SET revoked_at = now() WHERE user_id = %s", (u["id"],))
    assert _statuses_all(endpoints, tok, paths) == {p: [401] * TRIES for p in paths}

    # the tenant_admin role granted, then taken back: an admin route follows
    tok = login(endpoints, credentials["PADDOCK_TENANT"], u["username"], pw).json()["token"]
    assert _statuses(endpoints, tok, "/v1/users") == [403] * TRIES
    api.ok("PATCH", f"/v1/users/{u['id']}", json={"tenant_admin": True}, expect=(200,))
    assert _statuses(endpoints, tok, "/v1/users") == [200] * TRIES
    api.ok("PATCH", f"/v1/users/{u['id']}", json={"tenant_admin": False}, expect=(200,))
    assert _statuses(endpoints, tok, "/v1/users") == [403] * TRIES

    # a deleted user
    assert _statuses_all(endpoints, tok, paths) == {p: [200] * TRIES for p in paths}
    api.ok("DELETE", f"/v1/users/{u['id']}", expect=(200, 204))
    assert _statuses_all(endpoints, tok, paths) == {p: [401] * TRIES for p in paths}


def _answer(sock, buf):
    """One answer read off a keep-alive connection: (status, headers, body,
    what followed it), its body exactly Content-Length bytes."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-head after {buf[:200]!r}"
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return status, headers, rest


def _exchange(sock, buf, method, path, token, body=True):
    sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    status, headers, rest = _answer(sock, buf)
    n = int(headers["content-length"]) if body else 0
    while len(rest) < n:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(rest)} of {n} body bytes"
        rest += chunk
    return status, headers, rest[:n], rest[n:]


def test_answers_keep_their_framing_on_one_connection(endpoints, api, admin_token, runs, team_id):
    """The api writes a small answer's head and body in one write and a
    larger one in chunks after its head (services/api/http.c
    http_on_writeable): on one keep-alive connection every answer is its
    head and exactly Content-Length bytes of body (none for HEAD), whole,
    and nothing more follows; the small answer of the hot read comes in
    one piece."""
    run = runs.start(command_spec(["/bin/true"]))
    # a sandbox whose answer (its spec) is larger than one write chunk (16 KiB)
    argv = ["/bin/echo"] + [c * 4000 for c in "abcdefgh"]
    sb = api.ok("POST", "/v1/sandboxes", json={"name": unique_name("framing"), "team": team_id,
                                               "spec": command_spec(argv)}, expect=(201,))["id"]
    url = urllib.parse.urlsplit(endpoints.api)
    with socket.create_connection((url.hostname, url.port), timeout=HTTP_TIMEOUT) as sock:
        buf = b""
        for _ in range(3):
            status, headers, body, buf = _exchange(sock, buf, "GET", f"/v1/runs/{run}", admin_token)
            assert status == 200 and json.loads(body)["id"] == run, body[:300]
            assert headers["content-type"] == "application/json" and headers.get("x-request-id")

            status, headers, body, buf = _exchange(sock, buf, "GET", f"/v1/sandboxes/{sb}", admin_token)
            assert status == 200 and int(headers["content-length"]) > 16384, headers
            assert json.loads(body)["draft"]["spec"]["agent"]["command"] == argv

            # HEAD: the head of the answer (its Content-Length too), no body
            status, headers, body, buf = _exchange(sock, buf, "HEAD", f"/v1/runs/{run}", admin_token, body=False)
            assert status in (200, 405) and int(headers["content-length"]) > 0, headers

            status, headers, body, buf = _exchange(sock, buf, "GET", "/v1/runs/00000000-0000-4000-8000-000000000000",
                                                   admin_token)
            assert status == 404 and headers["content-type"] == "application/problem+json", body[:300]
            assert json.loads(body)["code"] == "not_found"
            assert buf == b""
        sock.settimeout(0.3)
        try:
            extra = sock.recv(65536)
        except socket.timeout:
            extra = b""
        assert extra == b"", f"bytes after the last answer: {extra[:200]!r}"

        # the hot read's answer arrives whole in one read: head and body were one write
        sock.settimeout(HTTP_TIMEOUT)
        sock.sendall(f"GET /v1/runs/{run} HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {admin_token}\r\n\r\n"
                     .encode())
        first = sock.recv(65536)
        status, headers, rest = _answer(sock, first)
        assert status == 200 and len(rest) == int(headers["content-length"]), (len(rest), headers)


def test_run_row_keeps_names_and_approval_counts(endpoints, api, me):
    """The read takes the sandbox's, team's and launcher's names and the
    approvals by status from the run row itself (api migration 0032: a
    relation fewer to set up per read each), kept by triggers whoever
    writes: a renamed team shows at once on its runs, in the read and in
    lists; approvals are counted as GET /v1/approvals shows them, a pending
    one past its deadline as expired, one UPDATE of several rows and a
    DELETE included."""
    import uuid
    team = api.ok("POST", "/v1/teams", json={"name": unique_name("names")}, expect=(201,))
    user = me.get("user") or me
    api.ok("PUT", f"/v1/teams/{team['id']}/members/{user['id']}",
           json={"roles": ["sandbox_author", "launcher", "viewer"]}, expect=(200,))
    from conftest import Runs
    rs = Runs(api, team["id"])
    sb_name = unique_name("names-sb")
    # running while its approvals are written: a run that ends cancels its pending ones
    sb = rs.create_sandbox(command_spec(["/bin/sleep", "120"], timeout_s=150), sb_name)
    run = rs.launch(sb, rs.publish(sb))
    got = api.ok("GET", f"/v1/runs/{run}", expect=(200,))
    assert (got["sandbox_name"], got["team_name"], got["launched_by"]["username"]) == \
        (sb_name, team["name"], user["username"]), got
    assert got["policy"]["approvals"] == {"pending": 0, "approved": 0, "denied": 0, "expired": 0, "cancelled": 0}

    renamed = unique_name("renamed")
    api.ok("PATCH", f"/v1/teams/{team['id']}", json={"name": renamed}, expect=(200,))
    assert api.ok("GET", f"/v1/runs/{run}", expect=(200,))["team_name"] == renamed
    listed = api.ok("GET", f"/v1/runs?team={team['id']}", expect=(200,))["items"]
    assert [(i["id"], i["team_name"]) for i in listed] == [(run, renamed)], listed

    def counts():
        return api.ok("GET", f"/v1/runs/{run}", expect=(200,))["policy"]["approvals"]

    # written as the schema owner: the triggers count whatever writes api.approvals
    with psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True) as owner:
        tenant = owner.execute("SELECT tenant_id FROM api.runs WHERE id = %s", (run,)).fetchone()[0]
        ids = []

        def add(status, deadline):
            ids.append("appr-" + uuid.uuid4().hex)
            owner.execute("INSERT INTO api.approvals (id, run_id, tenant_id, team_id, kind, what, deadline, status)"
                          " VALUES (%s, %s, %s, %s, 'exec', '{}', now() + %s::interval, %s)",
                          (ids[-1], run, tenant, team["id"], deadline, status))

        try:
            for status, deadline in (("pending", "1 hour"), ("pending", "-1 hour"), ("pending", "2 hours"),
                                     ("approved", "1 hour"), ("denied", "1 hour"), ("denied", "1 hour"),
                                     ("cancelled", "1 hour")):
                add(status, deadline)
            assert counts() == {"pending": 2, "approved": 1, "denied": 2, "expired": 1, "cancelled": 1}
            # as GET /v1/approvals shows them
            shown = api.ok("GET", f"/v1/approvals?team={team['id']}&limit=100", expect=(200,))["items"]
            by = {}
            for a in shown:
                by[a["status"]] = by.get(a["status"], 0) + 1
            assert by == {"pending": 2, "approved": 1, "denied": 2, "expired": 1, "cancelled": 1}, shown
            # one statement ends every pending one
            assert owner.execute("UPDATE api.approvals SET status = 'cancelled' WHERE run_id = %s"
                                 " AND status = 'pending'", (run,)).rowcount == 3
            assert counts() == {"pending": 0, "approved": 1, "denied": 2, "expired": 0, "cancelled": 4}
            owner.execute("DELETE FROM api.approvals WHERE run_id = %s AND status = 'denied'", (run,))
            assert counts() == {"pending": 0, "approved": 1, "denied": 0, "expired": 0, "cancelled": 4}
        finally:
            owner.execute("DELETE FROM api.approvals WHERE id = ANY(%s)", (ids,))
            api.ok("POST", f"/v1/runs/{run}/cancel", json={"reason": "done"}, expect=(202, 409))
    assert counts() == {"pending": 0, "approved": 0, "denied": 0, "expired": 0, "cancelled": 0}
