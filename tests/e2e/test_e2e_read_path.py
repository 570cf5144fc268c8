"""The authenticated read path (issue 10 §4, bench/api_read): however the
token lookup is made cheaper, a token stops working at once, in every api
worker process (each request below on a fresh connection, so SO_REUSEPORT
spreads them over the workers):

* a removed role grant: the run is no longer visible (404) at the next request;
* a revoked token (logout) and a token expired in the database: 401;
* a disabled user: 401.
"""

import secrets

import psycopg
import requests

from conftest import HTTP_TIMEOUT, command_spec, login, unique_name

TRIES = 24


def _statuses(endpoints, token, path):
    """Statuses of TRIES requests, each on its own connection."""
    out = []
    for _ in range(TRIES):
        with requests.Session() as s:
            out.append(s.get(endpoints.api + path, headers={"Authorization": f"Bearer {token}"},
                             timeout=HTTP_TIMEOUT).status_code)
    return out


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
