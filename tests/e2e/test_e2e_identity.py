"""Identity: failed-login rate limiting, login timing, service accounts.

* Failed logins are limited per user and source (tenant + username + source
  address, default 5 per 15 min) and per source (default 20 per 15 min;
  PADDOCK_LOGIN_* in the api's config table). The next attempt answers 429
  `rate_limited` with Retry-After, and while limited even the right password
  is refused from that source (a guesser must not learn when a guess was
  right); from another source the right password still logs in (a guesser
  cannot lock a user out for everyone). Unknown users are limited the same
  way. A successful login clears the user's count from its source. Limited
  attempts are audited (auth.login_failed, reason rate_limited).
* The source is the socket peer, or, when that peer is a trusted proxy
  (PADDOCK_TRUSTED_PROXIES; the test stack trusts 127.0.0.2/32), the
  rightmost X-Forwarded-For hop that is not one: from any other peer the
  header is ignored.
* The answer time does not tell whether a user exists (or is disabled):
  every failure runs scrypt.
* Service accounts: a non-login principal with team roles; its API tokens
  act through the same RBAC path (launch a run in its team, 404 in another
  team, 403 on admin endpoints), die at once on revoke or disable, expire,
  and their values appear neither in GET responses nor in the audit log.

Every failing login here comes from its own random loopback source address
(127.x.y.z, bound by the client), so the suite's 127.0.0.1 budget of failures
is not spent and each test starts from a clean per-IP count.
"""

import secrets
import statistics
import time
import uuid

import psycopg
import pytest
import requests

from conftest import HTTP_TIMEOUT, Api, SourceAddressAdapter, command_spec, random_loopback_source, unique_name

USER_MAX = 5
IP_MAX = 20


class Client:
    """Logins from one loopback source address."""

    def __init__(self, endpoints, tenant):
        self.endpoints = endpoints
        self.tenant = tenant
        self.source = random_loopback_source()
        self.http = requests.Session()
        self.http.mount("http://", SourceAddressAdapter(self.source))

    def login(self, username, password, tenant=None):
        return self.http.post(self.endpoints.api + "/v1/auth/login",
                              json={"tenant": tenant or self.tenant, "username": username, "password": password},
                              timeout=HTTP_TIMEOUT)


@pytest.fixture(scope="module")
def pg(endpoints):
    with psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True) as conn:
        yield conn


@pytest.fixture
def client(endpoints, credentials):
    return Client(endpoints, credentials["PADDOCK_TENANT"])


def _new_user(api):
    pw = secrets.token_hex(12)
    u = api.ok("POST", "/v1/users", json={"username": unique_name("idn"), "password": pw}, expect=(201,))
    return u, pw


def _assert_limited(r):
    assert r.status_code == 429, r.text
    assert r.json()["code"] == "rate_limited", r.text
    ra = r.headers.get("Retry-After")
    assert ra and ra.isdigit() and 1 <= int(ra) <= 900, f"Retry-After {ra!r}"


def _wait_audit(pg, tenant_id, needles, timeout=30):
    """Rows of evidence.audit_log (as text) containing every needle."""
    deadline = time.monotonic() + timeout
    while True:
        q = "SELECT t::text FROM evidence.audit_log t WHERE tenant_id = %s" + \
            "".join(" AND t::text LIKE %s" for _ in needles)
        rows = [r[0] for r in pg.execute(q, (tenant_id, *[f"%{n}%" for n in needles])).fetchall()]
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.5)


# ---------------------------------------------------------------- rate limiting


def test_user_limited_after_five_failures(api, client, endpoints, credentials, pg, tenant_id):
    u, pw = _new_user(api)
    for i in range(USER_MAX):
        r = client.login(u["username"], f"wrong-{i}")
        assert r.status_code == 401 and r.json()["code"] == "unauthorized", r.text
    _assert_limited(client.login(u["username"], "wrong-again"))
    # refused even with the right password from that source...
    _assert_limited(client.login(u["username"], pw))
    # ...but a guesser cannot lock the user out for everyone: another source logs in
    assert Client(endpoints, credentials["PADDOCK_TENANT"]).login(u["username"], pw).status_code == 200
    _assert_limited(client.login(u["username"], pw))
    # another user from the same source is not affected
    u2, pw2 = _new_user(api)
    assert client.login(u2["username"], pw2).status_code == 200
    rows = _wait_audit(pg, tenant_id, ["auth.login_failed", "rate_limited", u["username"]])
    assert rows, "the rate-limited attempt was not audited"
    assert pw not in "\n".join(rows)


TRUSTED_PROXY = "127.0.0.2"  # deploy/local/stack.sh: PADDOCK_TRUSTED_PROXIES=127.0.0.2/32


def _forwarded_client(endpoints, tenant, source):
    c = Client(endpoints, tenant)
    c.source = source
    c.http = requests.Session()
    c.http.mount("http://", SourceAddressAdapter(source))
    return c


def _login_xff(c, username, password, xff):
    return c.http.post(c.endpoints.api + "/v1/auth/login", headers={"X-Forwarded-For": xff},
                       json={"tenant": c.tenant, "username": username, "password": password}, timeout=HTTP_TIMEOUT)


def _doc_address():
    return f"198.51.{secrets.randbelow(256)}.{1 + secrets.randbelow(254)}"


def test_forwarded_for_believed_only_from_trusted_proxy(api, endpoints, credentials):
    tenant = credentials["PADDOCK_TENANT"]
    # an untrusted peer: its X-Forwarded-For is its own text and changes nothing;
    # five failures "from five addresses" are five from the peer
    u, pw = _new_user(api)
    c = Client(endpoints, tenant)
    assert c.source != TRUSTED_PROXY
    for i in range(USER_MAX):
        assert _login_xff(c, u["username"], f"wrong-{i}", _doc_address()).status_code == 401
    _assert_limited(_login_xff(c, u["username"], pw, _doc_address()))

    # the trusted proxy: the client is the rightmost hop it forwarded
    u, pw = _new_user(api)
    proxy = _forwarded_client(endpoints, tenant, TRUSTED_PROXY)
    guesser, other = _doc_address(), _doc_address()
    for i in range(USER_MAX):
        assert _login_xff(proxy, u["username"], f"wrong-{i}", guesser).status_code == 401
    _assert_limited(_login_xff(proxy, u["username"], pw, guesser))
    # a hop the guesser prepends does not make it someone else
    _assert_limited(_login_xff(proxy, u["username"], pw, f"{other}, {guesser}"))
    # another client behind the same proxy is not locked out, nor is the proxy itself
    assert _login_xff(proxy, u["username"], pw, other).status_code == 200
    assert proxy.login(u["username"], pw).status_code == 200


def test_unknown_user_limited_the_same_way(client):
    name = unique_name("nobody")
    for i in range(USER_MAX):
        r = client.login(name, f"wrong-{i}")
        assert r.status_code == 401, r.text
    _assert_limited(client.login(name, "wrong"))


def test_success_resets_the_user_count(api, client):
    u, pw = _new_user(api)
    for i in range(USER_MAX - 1):
        assert client.login(u["username"], f"wrong-{i}").status_code == 401
    assert client.login(u["username"], pw).status_code == 200
    for i in range(USER_MAX - 1):
        assert client.login(u["username"], f"wrong-{i}").status_code == 401
    assert client.login(u["username"], pw).status_code == 200


def test_source_limited_after_twenty_failures(client, credentials):
    for i in range(IP_MAX):
        r = client.login(unique_name("spray"), "wrong")
        assert r.status_code == 401, f"attempt {i}: {r.text}"
    _assert_limited(client.login(unique_name("spray"), "wrong"))
    # the source is refused even for a valid account (its count is not touched)
    _assert_limited(client.login(credentials["PADDOCK_USER"], credentials["PADDOCK_PASSWORD"]))


def test_login_timing_reveals_no_user(api, endpoints, credentials):
    """Medians of failed logins for an existing, a disabled and an unknown user
    are within 30% of each other and all pay for scrypt. Measurements are
    interleaved; a loaded machine gets three tries, a real oracle (a missing
    scrypt is a 10x difference) fails all of them."""
    existing, _ = _new_user(api)
    disabled, dpw = _new_user(api)
    api.ok("PATCH", f"/v1/users/{disabled['id']}", json={"disabled": True}, expect=(200,))
    last = None
    for attempt in range(3):
        c = Client(endpoints, credentials["PADDOCK_TENANT"])
        unknown = unique_name("ghost")
        times = {"existing": [], "disabled": [], "unknown": []}
        for i in range(10):
            for kind, name, pw in (("existing", existing["username"], "wrong"),
                                   ("disabled", disabled["username"], dpw),
                                   ("unknown", unknown, "wrong")):
                t0 = time.perf_counter()
                r = c.login(name, pw)
                times[kind].append(time.perf_counter() - t0)
                assert r.status_code in (401, 429), r.text
        med = {k: statistics.median(v) for k, v in times.items()}
        last = med
        print(f"\nfailed-login medians (s), round {attempt + 1}: {med}")
        assert min(med.values()) > 0.005, f"a failed login did not run scrypt: {med}"
        if (max(med.values()) - min(med.values())) / max(med.values()) < 0.30:
            return
        # later rounds use new users so that the limits start again
        existing, _ = _new_user(api)
    pytest.fail(f"failed-login medians differ by 30% or more: {last}")


# ---------------------------------------------------------------- service accounts


@pytest.fixture(scope="module")
def sa_world(api, team_id):
    team = api.ok("POST", "/v1/teams", json={"name": unique_name("idn-team")}, expect=(201,))["id"]
    sb = api.ok("POST", "/v1/sandboxes", json={"name": unique_name("idn"), "team": team,
                                               "spec": command_spec(["true"])}, expect=(201,))["id"]
    assert api.ok("POST", f"/v1/sandboxes/{sb}/versions", expect=(201,))["version"] == 1
    other_sb = api.ok("POST", "/v1/sandboxes", json={"name": unique_name("idn-other"), "team": team_id,
                                                     "spec": command_spec(["true"])}, expect=(201,))["id"]
    api.ok("POST", f"/v1/sandboxes/{other_sb}/versions", expect=(201,))
    sa = api.ok("POST", "/v1/service-accounts",
                json={"name": unique_name("idn-sa"), "team": team, "roles": ["launcher"]}, expect=(201,))
    assert sa["kind"] == "service" and sa["teams"] == [{"id": team, "roles": ["launcher"]}], sa
    return {"team": team, "sandbox": sb, "other_team": team_id, "other_sandbox": other_sb, "sa": sa}


def _token(api, sa_id, expires_in_s=3600):
    t = api.ok("POST", f"/v1/service-accounts/{sa_id}/tokens",
               json={"name": unique_name("tok"), "expires_in_s": expires_in_s}, expect=(201,))
    assert len(t["token"]) == 64 and t["id"] and t["expires_at"], t
    return t


def test_service_account_token_acts_through_rbac(endpoints, api, sa_world, pg, tenant_id, client):
    w = sa_world
    t = _token(api, w["sa"]["id"])
    sapi = Api(endpoints.api, t["token"])
    me = sapi.ok("GET", "/v1/me", expect=(200,))
    assert me["user"]["id"] == w["sa"]["id"] and me["tenant_roles"] == [], me
    run = sapi.ok("POST", "/v1/runs", json={"sandbox": w["sandbox"], "version": 1, "team": w["team"]},
                  expect=(202,))
    assert sapi.ok("GET", f"/v1/runs/{run['id']}", expect=(200,))["id"] == run["id"]
    # another team: not a member -> 404; admin endpoints -> 403
    r = sapi.post("/v1/runs", json={"sandbox": w["other_sandbox"], "version": 1, "team": w["other_team"]})
    assert r.status_code == 404 and r.json()["code"] == "not_found", r.text
    for method, path in (("GET", "/v1/users"), ("GET", "/v1/service-accounts"), ("GET", "/v1/audit"),
                         ("POST", f"/v1/service-accounts/{w['sa']['id']}/tokens")):
        r = sapi.request(method, path, json={"name": "x"} if method == "POST" else None)
        assert r.status_code == 403 and r.json()["code"] == "forbidden", f"{method} {path}: {r.text}"
    # a service account cannot log in
    assert client.login(w["sa"]["name"], "anything").status_code == 401

    # the listing shows metadata, never a token value
    listed = api.ok("GET", "/v1/service-accounts", expect=(200,))
    mine = [s for s in listed["items"] if s["id"] == w["sa"]["id"]]
    assert mine and any(k["id"] == t["id"] and k["revoked_at"] is None for k in mine[0]["tokens"]), mine
    assert t["token"] not in str(listed)

    # revoke -> 401 at once
    api.ok("DELETE", f"/v1/service-accounts/{w['sa']['id']}/tokens/{t['id']}", expect=(204,))
    r = sapi.get("/v1/me")
    assert r.status_code == 401 and r.json()["code"] == "unauthorized", r.text
    r = api.request("DELETE", f"/v1/service-accounts/{w['sa']['id']}/tokens/{uuid.uuid4()}")
    assert r.status_code == 404, r.text

    # audited, and the token value is in no audit row
    # (the change, holding the token id, is hashed into the record, not stored)
    rows = _wait_audit(pg, tenant_id, ["service_account.token_revoke", w["sa"]["id"]])
    assert rows, "the revocation was not audited"
    rows = [r[0] for r in pg.execute("SELECT t::text FROM evidence.audit_log t WHERE tenant_id = %s",
                                     (tenant_id,)).fetchall()]
    assert any("service_account.token_create" in x for x in rows)
    assert t["token"] not in "\n".join(rows)


def test_service_account_token_expires(endpoints, api, sa_world):
    t = _token(api, sa_world["sa"]["id"], expires_in_s=1)
    time.sleep(2)
    r = Api(endpoints.api, t["token"]).get("/v1/me")
    assert r.status_code == 401, r.text


def test_service_account_validation(api, sa_world):
    sa = sa_world["sa"]["id"]
    for body in ({"name": "x", "expires_in_s": 31536001}, {"name": "x", "expires_in_s": 0},
                 {"name": "x", "expires_in_s": "1"}, {"expires_in_s": 10}, {"name": "x", "other": 1}):
        r = api.request("POST", f"/v1/service-accounts/{sa}/tokens", json=body)
        assert r.status_code == 400, f"{body}: {r.text}"
    r = api.request("POST", "/v1/service-accounts", json={"name": "x", "roles": ["launcher"]})
    assert r.status_code == 400 and "team" in r.json()["detail"], r.text
    r = api.request("POST", "/v1/service-accounts", json={"name": unique_name("x"), "team": sa_world["team"],
                                                          "roles": ["root"]})
    assert r.status_code == 400 and "roles[0]" in r.json()["detail"], r.text
    r = api.request("POST", "/v1/service-accounts", json={"name": sa_world["sa"]["name"]})
    assert r.status_code == 409, r.text
    r = api.request("POST", f"/v1/service-accounts/{uuid.uuid4()}/tokens", json={"name": "x"})
    assert r.status_code == 404, r.text


@pytest.mark.parametrize("how", ["delete", "patch"])
def test_disabling_a_service_account_kills_its_tokens(endpoints, api, sa_world, how):
    sa = api.ok("POST", "/v1/service-accounts",
                json={"name": unique_name("idn-dis"), "team": sa_world["team"], "roles": ["viewer"]},
                expect=(201,))
    tokens = [_token(api, sa["id"])["token"] for _ in range(2)]
    for t in tokens:
        assert Api(endpoints.api, t).get("/v1/me").status_code == 200
    if how == "delete":
        api.ok("DELETE", f"/v1/service-accounts/{sa['id']}", expect=(204,))
    else:
        api.ok("PATCH", f"/v1/users/{sa['id']}", json={"disabled": True}, expect=(200,))
    for t in tokens:
        assert Api(endpoints.api, t).get("/v1/me").status_code == 401
    r = api.request("POST", f"/v1/service-accounts/{sa['id']}/tokens", json={"name": "again"})
    assert r.status_code == 409, r.text
