"""RBAC matrix: every endpoint of the route table x every role x scope.

Callers: the tenant-wide admin, one user per role of API.md granted in team A,
and a user of the tenant who belongs to no team. Scopes of an endpoint that
acts on an object: the object in team A (the callers' team), in team B (same
tenant, no caller but the admin is a member), and in another tenant. Each case
asserts the exact status:
  * a role carrying the permission: the endpoint's success status (or, for
    probes designed not to change anything, the status that comes only after
    authorization: 409 on a terminal run's cancel or a decided approval);
  * a member of the object's team without it: 403 `forbidden`;
  * not a member, or another tenant's object: 404 `not_found`;
  * tenant-wide endpoints (PERM_ADMIN): 403 for everyone but tenant_admin,
    and 404 for another tenant's object.
The endpoint list below mirrors services/api/routes.c, and the first test
fails when the two differ, so a new route cannot skip the matrix.
"""

import re
import secrets
import time
import uuid

import psycopg
import pytest
import requests

from conftest import (REPO, TERMINAL, Api, bootstrap_tenant, command_spec, login, test_upstream_addrs,
                      unique_name)

ROUTES_C = REPO / "services" / "api" / "routes.c"

# permission -> team roles carrying it (routes.c perm_roles; tenant_admin has all)
PERM_ROLES = {
    "PERM_VIEWER": {"viewer", "reviewer", "launcher", "approver", "sandbox_author"},
    "PERM_SANDBOX_AUTHOR": {"sandbox_author"},
    "PERM_LAUNCHER": {"launcher"},
    "PERM_REVIEWER": {"reviewer"},
    "PERM_APPROVER": {"approver"},
    "PERM_CANCEL": {"launcher", "approver"},
}
CATALOG_PERM_ROLES = {"PERM_SANDBOX_AUTHOR": {"sandbox_author"}, "PERM_CATALOG_APPROVE": {"security_admin"}}
ROLES = ["tenant_admin", "security_admin", "sandbox_author", "launcher", "approver", "reviewer", "viewer"]
# auditor: the tenant role of issue 14 §3, in no team: it reads evidence and
# audit of every team and manages legal holds (AUDITOR_ROUTES, authz.c
# auditor_routes), like the admin there; elsewhere it is a user of no team
CALLERS = ["admin"] + ROLES + ["nomember", "auditor"]
AUDITOR_ROUTES = {
    ("GET", "/v1/runs"), ("GET", "/v1/runs/{id}"), ("GET", "/v1/runs/{id}/events"),
    ("GET", "/v1/runs/{id}/artifacts"), ("GET", "/v1/runs/{id}/artifacts/{name}"),
    ("GET", "/v1/runs/{id}/evidence"), ("GET", "/v1/runs/{id}/reviews"),
    ("GET", "/v1/audit"), ("GET", "/v1/audit/verify"), ("GET", "/v1/tenant/retention"),
    ("GET", "/v1/holds"), ("PUT", "/v1/holds/{kind}/{id}"), ("DELETE", "/v1/holds/{kind}/{id}"),
}
SCOPES = ["own_team", "other_team", "other_tenant"]

# (method, path, permission, scoped, success status(es))
ENDPOINTS = [
    ("GET", "/healthz", "PERM_NONE", False, 200),
    ("GET", "/readyz", "PERM_NONE", False, 200),
    ("POST", "/v1/auth/login", "PERM_NONE", False, 200),
    # no provider here; a body without token is refused before any check
    # that would spend the source's failed-login budget
    ("POST", "/v1/auth/oidc", "PERM_NONE", False, 400),
    # the dashboard's OIDC sign-in (browser routes, redirects only): without
    # a tenant, and without the browser's sign-in cookie, each redirects to
    # the login page with ?oidc_error, spending no failed-login budget
    ("GET", "/v1/auth/oidc/authorize", "PERM_NONE", False, 302),
    ("GET", "/v1/auth/oidc/callback", "PERM_NONE", False, 302),
    # PERM_SELF: any caller, also one who must change its one-time password
    ("POST", "/v1/auth/logout", "PERM_SELF", False, 204),
    ("GET", "/v1/me", "PERM_SELF", False, 200),
    # a too short new password: refused after authentication, before any
    # password check (which would count as a failed login of the caller)
    ("POST", "/v1/me/password", "PERM_SELF", False, 400),
    ("GET", "/v1/teams", "PERM_USER", False, 200),
    ("POST", "/v1/teams", "PERM_ADMIN", False, 201),
    ("GET", "/v1/teams/{id}", "PERM_VIEWER", True, 200),
    ("PATCH", "/v1/teams/{id}", "PERM_ADMIN", True, 200),
    ("DELETE", "/v1/teams/{id}", "PERM_ADMIN", True, 204),
    ("GET", "/v1/teams/{id}/members", "PERM_ADMIN", True, 200),
    ("PUT", "/v1/teams/{id}/members/{user}", "PERM_ADMIN", True, 200),
    ("PATCH", "/v1/teams/{id}/members/{user}", "PERM_ADMIN", True, 200),
    ("GET", "/v1/users", "PERM_ADMIN", False, 200),
    ("POST", "/v1/users", "PERM_ADMIN", False, 201),
    ("PATCH", "/v1/users/{id}", "PERM_ADMIN", True, 200),
    ("DELETE", "/v1/users/{id}", "PERM_ADMIN", True, 204),
    ("GET", "/v1/tenant/oidc", "PERM_ADMIN", False, (200, 404)),  # 404: not configured
    ("PUT", "/v1/tenant/oidc", "PERM_ADMIN", False, 200),
    ("DELETE", "/v1/tenant/oidc", "PERM_ADMIN", False, 204),     # after the PUT above
    ("GET", "/v1/service-accounts", "PERM_ADMIN", False, 200),
    ("POST", "/v1/service-accounts", "PERM_ADMIN", False, 201),
    ("DELETE", "/v1/service-accounts/{id}", "PERM_ADMIN", True, 204),
    ("POST", "/v1/service-accounts/{id}/tokens", "PERM_ADMIN", True, 201),
    ("DELETE", "/v1/service-accounts/{id}/tokens/{token}", "PERM_ADMIN", True, 204),
    ("GET", "/v1/teams/{id}/secrets", "PERM_VIEWER", True, 200),
    ("PUT", "/v1/teams/{id}/secrets/{name}", "PERM_SANDBOX_AUTHOR", True, (201, 204)),
    ("DELETE", "/v1/teams/{id}/secrets/{name}", "PERM_SANDBOX_AUTHOR", True, 204),
    ("GET", "/v1/teams/{id}/budget", "PERM_VIEWER", True, 200),
    ("PUT", "/v1/teams/{id}/budget", "PERM_ADMIN", True, 200),
    ("GET", "/v1/sandboxes", "PERM_VIEWER", False, 200),          # lists the caller's teams only
    ("POST", "/v1/sandboxes", "PERM_SANDBOX_AUTHOR", True, 201),
    ("GET", "/v1/sandboxes/{id}", "PERM_VIEWER", True, 200),
    ("PUT", "/v1/sandboxes/{id}/draft", "PERM_SANDBOX_AUTHOR", True, 200),
    # the draft is the published version 1: answered with it, unchanged (200)
    ("POST", "/v1/sandboxes/{id}/versions", "PERM_SANDBOX_AUTHOR", True, 200),
    ("GET", "/v1/sandboxes/{id}/versions/{v}", "PERM_VIEWER", True, 200),
    ("GET", "/v1/sandboxes/{id}/versions/{v}/effective-policy", "PERM_VIEWER", True, 200),
    ("GET", "/v1/runs", "PERM_VIEWER", False, 200),               # lists the caller's teams only
    ("POST", "/v1/runs", "PERM_LAUNCHER", True, 202),
    ("GET", "/v1/runs/{id}", "PERM_VIEWER", True, 200),
    ("POST", "/v1/runs/{id}/relaunch", "PERM_LAUNCHER", True, 202),
    ("POST", "/v1/runs/{id}/cancel", "PERM_CANCEL", True, 409),   # the run has ended
    ("GET", "/v1/runs/{id}/events", "PERM_VIEWER", True, 200),
    ("GET", "/v1/runs/{id}/stream", "PERM_VIEWER", True, 400),    # no websocket upgrade
    ("POST", "/v1/runs/{id}/stream-ticket", "PERM_VIEWER", True, 201),
    ("GET", "/v1/runs/{id}/artifacts", "PERM_REVIEWER", True, 200),
    ("GET", "/v1/runs/{id}/artifacts/{name}", "PERM_REVIEWER", True, 302),
    # reviews and the evidence bundle: the review probe's outcome is refused
    # (400 naming it), which the api checks only once the caller may review
    # the run, so it changes nothing; the bundle of the finished run is built
    ("POST", "/v1/runs/{id}/reviews", "PERM_REVIEWER", True, 400),
    ("GET", "/v1/runs/{id}/reviews", "PERM_VIEWER", True, 200),
    ("GET", "/v1/runs/{id}/evidence", "PERM_REVIEWER", True, 200),
    ("GET", "/v1/tenant/keys", "PERM_USER", False, 200),
    ("GET", "/v1/approvals", "PERM_APPROVER", False, 200),        # lists the caller's teams only
    ("GET", "/v1/approvals/{id}", "PERM_APPROVER", True, 200),   # the approval of a run of the team
    ("POST", "/v1/approvals/{id}/decision", "PERM_APPROVER", True, 409),  # already decided
    # the catalog is tenant-wide ("tenant"): the permission in any team of the tenant
    ("GET", "/v1/catalog/{kind}", "PERM_VIEWER", "tenant", 200),
    ("POST", "/v1/catalog/{kind}", "PERM_SANDBOX_AUTHOR", "tenant", 201),
    ("GET", "/v1/catalog/{kind}/{id}", "PERM_VIEWER", "tenant", 200),
    ("PATCH", "/v1/catalog/{kind}/{id}", "PERM_SANDBOX_AUTHOR", "tenant", 200),
    ("POST", "/v1/catalog/{kind}/{id}/approve", "PERM_CATALOG_APPROVE", "tenant", 200),
    ("GET", "/v1/nodes", "PERM_USER", False, 200),
    # a dead ghost node of the matrix's own (_ghost_node), never a real one
    ("POST", "/v1/nodes/{id}/drain", "PERM_ADMIN", False, 200),
    ("DELETE", "/v1/nodes/{id}/drain", "PERM_ADMIN", False, 204),  # drained just before
    ("GET", "/v1/usage", "PERM_VIEWER", False, 200),              # sums the caller's teams only
    ("GET", "/v1/governance/metrics", "PERM_VIEWER", False, 200),  # the caller's teams only
    ("GET", "/v1/audit", "PERM_ADMIN", False, 200),
    ("GET", "/v1/audit/verify", "PERM_ADMIN", False, 200),
    # workload identity: the issuer's documents are public (relying parties
    # fetch them without credentials), rotation is the tenant admin's
    ("GET", "/v1/tenants/{tenant}/oidc/.well-known/openid-configuration", "PERM_NONE", False, 200),
    ("GET", "/v1/tenants/{tenant}/oidc/jwks", "PERM_NONE", False, 200),
    ("POST", "/v1/tenants/{tenant}/oidc/introspect", "PERM_NONE", False, 200),  # {"active": false} for junk
    ("POST", "/v1/tenant/workload-identity/rotate", "PERM_ADMIN", False, 200),
    # evidence keys: a rotated key stays published, so the suite's bundles keep verifying
    ("POST", "/v1/tenant/keys/rotate", "PERM_ADMIN", False, 200),
    # retention and legal hold (issue 14 §3): the auditor passes where AUDITOR_ROUTES says
    ("GET", "/v1/tenant/retention", "PERM_ADMIN", False, 200),
    ("PUT", "/v1/tenant/retention", "PERM_ADMIN", False, 200),    # puts the defaults back
    ("GET", "/v1/holds", "PERM_ADMIN", False, 200),
    ("PUT", "/v1/holds/{kind}/{id}", "PERM_ADMIN", True, (200, 201)),  # a hold on the scope's run
    ("DELETE", "/v1/holds/{kind}/{id}", "PERM_ADMIN", True, 204),      # a hold set just before
]

SPEC = command_spec(["sh", "-c", "echo changed >> a.txt"], files=[{"path": "a.txt", "content": "a\n"}])


def expected(perm, scoped, ok, caller, scope, route=None):
    if caller == "auditor":
        caller = "admin" if route in AUDITOR_ROUTES else "nomember"
    if perm in ("PERM_NONE", "PERM_USER", "PERM_SELF"):
        return ok
    if perm == "PERM_ADMIN":
        if caller != "admin":
            return 403
        return 404 if scoped and scope == "other_tenant" else ok
    if scoped == "tenant":
        if caller in ("admin", "tenant_admin"):
            return ok
        if perm == "PERM_VIEWER":  # catalog reads: any role in some team
            return 403 if caller == "nomember" else ok
        return ok if caller in CATALOG_PERM_ROLES[perm] else 403
    if not scoped:
        return ok  # a list filtered to the caller's teams
    if caller == "admin":
        return 404 if scope == "other_tenant" else ok
    if caller == "nomember" or scope != "own_team":
        return 404
    return ok if caller == "tenant_admin" or caller in PERM_ROLES[perm] else 403


def test_matrix_covers_the_route_table():
    text = ROUTES_C.read_text()
    start = text.index("static const struct api_route routes[]")
    table = text[start:text.index("};", start)]
    declared = set(re.findall(r'\{"([A-Z]+)", "([^"]+)", \w+, (PERM_\w+)\}', table))
    ours = {(m, p, perm) for m, p, perm, _, _ in ENDPOINTS}
    assert declared == ours, (f"routes.c and the matrix differ: only in routes.c {sorted(declared - ours)}, "
                              f"only in the matrix {sorted(ours - declared)}")


# ---------------------------------------------------------------- the other tenant


def _token(endpoints, tenant, user, password):
    r = login(endpoints, tenant, user, password)
    assert r.status_code == 200, f"login {tenant}/{user}: {r.status_code} {r.text[:300]}"
    return r.json()["token"]


class Scope:
    """The objects of one scope: a team with a sandbox, a finished run with an
    artifact, a secret, a decided approval, a member user."""

    def __init__(self, api, team, member_user):
        self.api = api
        self.team = team
        self.user = member_user
        self.sandbox = api.ok("POST", "/v1/sandboxes", json={"name": unique_name("rbac"), "team": team,
                                                             "spec": SPEC}, expect=(201,))["id"]
        assert api.ok("POST", f"/v1/sandboxes/{self.sandbox}/versions", expect=(201,))["version"] == 1
        self.run = api.ok("POST", "/v1/runs", json={"sandbox": self.sandbox, "version": 1, "team": team},
                          expect=(202,))["id"]
        api.ok("PUT", f"/v1/teams/{team}/secrets/RBAC_SECRET", json={"value": "s3cret-value"},
               expect=(201, 204))
        self._fresh = {}

    def finish(self, pg_dsn, tenant_id):
        deadline = time.monotonic() + 180
        while True:
            st = self.api.ok("GET", f"/v1/runs/{self.run}", expect=(200,))["status"]
            if st in TERMINAL:
                break
            assert time.monotonic() < deadline, f"run {self.run} still {st}"
            time.sleep(0.5)
        # the diff artifact lands shortly after the run ends
        while not any(a.get("name") == "workspace.diff" for a in
                      self.api.ok("GET", f"/v1/runs/{self.run}/artifacts", expect=(200,)).get("items", [])):
            assert time.monotonic() < deadline, f"no workspace.diff artifact for run {self.run}"
            time.sleep(0.5)
        # a decided approval: deciding it again answers 409, but only after authorization
        self.approval = f"rbac-{uuid.uuid4().hex}"
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("SELECT set_config('paddock.tenant_id', %s, false)", (tenant_id,))
            conn.execute(
                "INSERT INTO api.approvals (id, run_id, tenant_id, team_id, kind, what, rule, deadline, status, "
                "decided_by, decided_at) VALUES (%s, %s, %s, %s, 'egress', '{}', 'rbac-matrix', now(), "
                "'approved', 'user:rbac', now())",
                (self.approval, self.run, tenant_id, self.team))

    def fresh(self, kind):
        """An object that a successful DELETE consumes (made again after)."""
        if kind not in self._fresh:
            if kind == "team":
                self._fresh[kind] = self.api.ok("POST", "/v1/teams", json={"name": unique_name("rbac-del")},
                                                expect=(201,))["id"]
            elif kind == "sa":
                self._fresh[kind] = self.api.ok("POST", "/v1/service-accounts", json={
                    "name": unique_name("rbac-sa"), "team": self.team, "roles": ["viewer"]}, expect=(201,))["id"]
            elif kind == "sa_token":
                sa = self.fresh("sa")
                self._fresh[kind] = (sa, self.api.ok("POST", f"/v1/service-accounts/{sa}/tokens", json={
                    "name": "rbac", "expires_in_s": 3600}, expect=(201,))["id"])
            elif kind == "user":
                self._fresh[kind] = self.api.ok("POST", "/v1/users", json={
                    "username": unique_name("rbac-del"), "password": secrets.token_hex(12)}, expect=(201,))["id"]
            else:
                name = "RBAC_DEL_" + uuid.uuid4().hex[:8].upper()
                self.api.ok("PUT", f"/v1/teams/{self.team}/secrets/{name}", json={"value": "x" * 8},
                            expect=(201,))
                self._fresh[kind] = name
        return self._fresh[kind]

    def consumed(self, kind):
        self._fresh.pop(kind, None)


@pytest.fixture(scope="module")
def world(endpoints, credentials, api, me):
    tenant = credentials["PADDOCK_TENANT"]
    pg_dsn = endpoints.need("PADDOCK_PG_DSN")
    team_a = api.ok("POST", "/v1/teams", json={"name": unique_name("rbac-a")}, expect=(201,))["id"]
    team_b = api.ok("POST", "/v1/teams", json={"name": unique_name("rbac-b")}, expect=(201,))["id"]

    users = {}
    for caller in ROLES + ["nomember", "member_a", "member_b", "auditor"]:
        pw = secrets.token_hex(12)
        u = api.ok("POST", "/v1/users", json={"username": unique_name(f"rbac-{caller}"), "password": pw,
                                              "auditor": caller == "auditor"}, expect=(201,))
        assert "password" not in u, "a given password must not be echoed"
        users[caller] = dict(u, password=pw)
    for role in ROLES:
        api.ok("PUT", f"/v1/teams/{team_a}/members/{users[role]['id']}", json={"roles": [role]}, expect=(200,))
    api.ok("PUT", f"/v1/teams/{team_a}/members/{users['member_a']['id']}", json={"roles": ["viewer"]},
           expect=(200,))
    api.ok("PUT", f"/v1/teams/{team_b}/members/{users['member_b']['id']}", json={"roles": ["viewer"]},
           expect=(200,))

    creds = {"admin": (tenant, credentials["PADDOCK_USER"], credentials["PADDOCK_PASSWORD"])}
    for caller in ROLES + ["nomember", "auditor"]:
        creds[caller] = (tenant, users[caller]["username"], users[caller]["password"])
    tokens = {c: _token(endpoints, *creds[c]) for c in CALLERS}

    other_name = unique_name("rbac-other")
    opw = bootstrap_tenant(other_name, "oadmin")
    oapi = Api(endpoints.api, _token(endpoints, other_name, "oadmin", opw))
    ome = oapi.ok("GET", "/v1/me", expect=(200,))

    scopes = {
        "own_team": Scope(api, team_a, users["member_a"]["id"]),
        "other_team": Scope(api, team_b, users["member_b"]["id"]),
        "other_tenant": Scope(oapi, ome["teams"][0]["id"], ome["user"]["id"]),
    }
    scopes["own_team"].finish(pg_dsn, me["tenant"]["id"])
    scopes["other_team"].finish(pg_dsn, me["tenant"]["id"])
    scopes["other_tenant"].finish(pg_dsn, ome["tenant"]["id"])
    catalog_item = api.ok("POST", "/v1/catalog/images", json={"name": unique_name("rbac-img"), "body": {}},
                          expect=(201,))["id"]
    return {"tokens": tokens, "creds": creds, "scopes": scopes, "api": api, "catalog_item": catalog_item,
            "tenant_id": me["tenant"]["id"]}


GHOST_NODE = "rbac-ghost-node"


def _ghost_node(endpoints):
    """A node the scheduler declared dead (it places nothing there): what the
    drain routes act on here, so the matrix never drains the stack's node."""
    with psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True) as pg:
        pg.execute("INSERT INTO scheduler.nodes (node_id, last_seen, dead_since) VALUES (%s, now(), now()) "
                   "ON CONFLICT (node_id) DO NOTHING", (GHOST_NODE,))
    return GHOST_NODE


@pytest.fixture(scope="module", autouse=True)
def _no_ghost_node_left(endpoints):
    yield
    with psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True) as pg:
        pg.execute("DELETE FROM scheduler.node_drains WHERE node_id = %s", (GHOST_NODE,))
        pg.execute("DELETE FROM scheduler.nodes WHERE node_id = %s", (GHOST_NODE,))


def _request(endpoints, world, method, path, caller, scope_name):
    """Builds and sends the case; returns (response, what a 2xx consumed)."""
    s = world["scopes"].get(scope_name)
    token = world["tokens"][caller]
    body, consumed = None, None
    if path == "/v1/auth/login":
        t, u, p = world["creds"][caller]
        body = {"tenant": t, "username": u, "password": p}
        token = None
    elif path == "/v1/auth/oidc":
        body = {"tenant": world["creds"][caller][0]}
        token = None
    elif path.startswith("/v1/auth/oidc/"):
        token = None
    elif path == "/v1/tenant/oidc" and method == "PUT":
        body = {"issuer": "https://idp.rbac.invalid/", "audience": "paddock", "enabled": False,
                "jwks_url": f"http://{test_upstream_addrs()[0]}:9/jwks",
                "role_mapping": {"claim": "groups", "map": {"x": {"team": "*", "roles": ["viewer"]}}}}
    elif path == "/v1/auth/logout":
        token = _token(endpoints, *world["creds"][caller])
    elif path == "/v1/me/password":
        body = {"current_password": "not-checked", "new_password": "short"}
    elif path == "/v1/teams" and method == "POST":
        body = {"name": unique_name("rbac-new")}
    elif path == "/v1/service-accounts" and method == "POST":
        body = {"name": unique_name("rbac-new")}
    elif path == "/v1/users" and method == "POST":
        body = {"username": unique_name("rbac-new"), "password": secrets.token_hex(12)}
    elif path == "/v1/sandboxes" and method == "POST":
        body = {"name": unique_name("rbac-new"), "team": s.team, "spec": SPEC}
    elif path == "/v1/runs" and method == "POST":
        body = {"sandbox": s.sandbox, "version": 1, "team": s.team}
    elif path == "/v1/tenants/{tenant}/oidc/introspect":
        body = {"token": "not.a.token"}
    elif path == "/v1/teams/{id}/budget" and method == "PUT":
        body = {"month_usd": 100000}  # far above what the matrix's runs use
    elif path == "/v1/tenant/retention" and method == "PUT":
        body = {"default_days": 365, "max_days": 3650}
    url = path.replace("{tenant}", world["tenant_id"])
    if path == "/v1/nodes/{id}/drain":
        url = path.replace("{id}", _ghost_node(endpoints))
        if method == "DELETE":  # the admin drains what a DELETE undrains
            world["api"].ok("POST", url, expect=(200,))
    if path.startswith("/v1/tenants/{tenant}/"):
        token = None  # public: no credentials at all
    if path.startswith("/v1/catalog/"):
        url = path.replace("{kind}", "images").replace("{id}", world["catalog_item"])
        if method == "POST" and path == "/v1/catalog/{kind}":
            body = {"name": unique_name("rbac-new"), "body": {}}
        elif method == "PATCH":
            body = {"body": {"description": "rbac"}}
        elif method == "POST":
            item = world["api"].ok("GET", url.rsplit("/approve", 1)[0], expect=(200,))
            body = {"content_sha256": item["content_sha256"]}
    if s is not None and path != "/v1/sandboxes" and path != "/v1/runs":
        if path.startswith("/v1/teams/{id}"):
            team = s.team
            if method == "DELETE" and path == "/v1/teams/{id}":
                team, consumed = s.fresh("team"), "team"
            url = url.replace("{id}", team).replace("{user}", s.user)
            if path.endswith("/secrets/{name}"):
                if method == "DELETE":
                    name, consumed = s.fresh("secret"), "secret"
                else:
                    name = "RBAC_PUT"
                url = url.replace("{name}", name)
        elif path.startswith("/v1/service-accounts/{id}"):
            if path.endswith("/tokens/{token}"):
                (sa, tok), consumed = s.fresh("sa_token"), "sa_token"
                url = url.replace("{id}", sa).replace("{token}", tok)
            else:
                sa = s.fresh("sa")
                if method == "DELETE":
                    consumed = "sa"
                else:
                    body = {"name": "rbac", "expires_in_s": 3600}
                url = url.replace("{id}", sa)
        elif path.startswith("/v1/users/{id}"):
            uid = s.user
            if method == "DELETE":
                uid, consumed = s.fresh("user"), "user"
            url = url.replace("{id}", uid)
        elif path.startswith("/v1/sandboxes/{id}"):
            url = url.replace("{id}", s.sandbox).replace("{v}", "1")
        elif path.startswith("/v1/runs/{id}"):
            url = url.replace("{id}", s.run).replace("{name}", "workspace.diff")
        elif path.startswith("/v1/approvals/{id}"):
            url = url.replace("{id}", s.approval)
        elif path.startswith("/v1/holds/"):
            url = url.replace("{kind}", "run").replace("{id}", s.run)
            if method == "PUT":
                body = {"reason": "rbac matrix"}
            else:  # the scope's own admin sets the hold a DELETE lifts
                s.api.ok("PUT", url, json={"reason": "rbac matrix"}, expect=(200, 201))
        if method == "PATCH" and path == "/v1/teams/{id}":
            body = {"name": s.api.ok("GET", f"/v1/teams/{s.team}", expect=(200,))["name"]}
        elif method == "PATCH" and path.endswith("/members/{user}"):
            body = {"add": ["viewer"]}
        elif method == "PATCH":
            body = {"disabled": False}
        elif path.endswith("/members/{user}"):
            body = {"roles": ["viewer"]}
        elif path.endswith("/secrets/{name}") and method == "PUT":
            body = {"value": "rbac-put-value"}
        elif path.endswith("/draft"):
            body = {"spec": SPEC}
        elif path.endswith("/cancel"):
            body = {}
        elif path.endswith("/decision"):
            body = {"decision": "approve"}
        elif path.endswith("/reviews") and method == "POST":
            body = {"outcome": "rbac-probe"}
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    r = requests.request(method, endpoints.api + url, json=body, headers=headers, timeout=30,
                         allow_redirects=False)
    if consumed and r.status_code == 204:
        s.consumed(consumed)
    return r, url


def test_rbac_matrix(endpoints, world):
    cases, failures = 0, []
    for method, path, perm, scoped, ok in ENDPOINTS:
        for caller in CALLERS:
            for scope in (SCOPES if scoped is True else [None]):
                want = expected(perm, scoped, ok, caller, scope, (method, path))
                r, url = _request(endpoints, world, method, path, caller, scope)
                cases += 1
                good = r.status_code in want if isinstance(want, tuple) else r.status_code == want
                if good and r.status_code in (403, 404) and path.startswith("/v1/"):
                    code = r.json().get("code")
                    good = code == ("forbidden" if r.status_code == 403 else "not_found")
                if not good:
                    failures.append(f"{method} {path} as {caller} on {scope}: got {r.status_code}, "
                                    f"want {want}: {r.text[:200]}")
    print(f"\nrbac matrix: {cases} endpoint x role x scope cases "
          f"({len(ENDPOINTS)} endpoints, {len(CALLERS)} callers, {len(SCOPES)} scopes)")
    assert not failures, f"{len(failures)} of {cases} cases wrong:\n" + "\n".join(failures[:60])


def test_disabled_user_token_dies_at_once(endpoints, credentials, api):
    tenant = credentials["PADDOCK_TENANT"]
    u = api.ok("POST", "/v1/users", json={"username": unique_name("rbac-dis")}, expect=(201,))
    assert len(u.get("password", "")) >= 12, "a generated one-time password is returned once"
    listed = api.ok("GET", "/v1/users", expect=(200,))["items"]
    assert all("password" not in x and "password_hash" not in x for x in listed)
    tokens = [_token(endpoints, tenant, u["username"], u["password"]) for _ in range(2)]
    for t in tokens:
        assert Api(endpoints.api, t).get("/v1/me").status_code == 200
    api.ok("PATCH", f"/v1/users/{u['id']}", json={"disabled": True}, expect=(200,))
    for t in tokens:
        r = Api(endpoints.api, t).get("/v1/me")
        assert r.status_code == 401 and r.json()["code"] == "unauthorized", r.text
    assert login(endpoints, tenant, u["username"], u["password"]).status_code == 401
    # enabling again does not revive the old tokens
    api.ok("PATCH", f"/v1/users/{u['id']}", json={"disabled": False}, expect=(200,))
    for t in tokens:
        assert Api(endpoints.api, t).get("/v1/me").status_code == 401
    assert Api(endpoints.api, _token(endpoints, tenant, u["username"], u["password"])).get(
        "/v1/me").status_code == 200


def test_membership_validation(endpoints, api, team_id):
    r = api.request("POST", "/v1/users", json={"username": unique_name("rbac-val"), "password": "short"})
    assert r.status_code == 400 and "password" in r.json()["detail"], r.text
    u = api.ok("POST", "/v1/users", json={"username": unique_name("rbac-val"), "password": "a-long-enough-pw"},
               expect=(201,))
    r = api.request("PUT", f"/v1/teams/{team_id}/members/{u['id']}", json={"roles": ["viewer", "root"]})
    assert r.status_code == 400 and "roles[1]" in r.json()["detail"], r.text
    r = api.request("PUT", f"/v1/teams/{team_id}/members/{u['id']}", json={"roles": ["viewer"], "x": 1})
    assert r.status_code == 400 and r.json()["code"] == "unknown_field", r.text
    api.ok("PUT", f"/v1/teams/{team_id}/members/{u['id']}", json={"roles": ["viewer", "launcher"]},
           expect=(200,))
    members = api.ok("GET", f"/v1/teams/{team_id}/members", expect=(200,))["items"]
    assert any(m["user"]["id"] == u["id"] and sorted(m["roles"]) == ["launcher", "viewer"] for m in members)
    # an empty list removes the member, and says which roles went
    gone = api.ok("PUT", f"/v1/teams/{team_id}/members/{u['id']}", json={"roles": []}, expect=(200,))
    assert gone["roles"] == [] and sorted(gone["removed"]) == ["launcher", "viewer"] and gone["added"] == [], gone
    members = api.ok("GET", f"/v1/teams/{team_id}/members", expect=(200,))["items"]
    assert all(m["user"]["id"] != u["id"] for m in members)
    api.ok("DELETE", f"/v1/users/{u['id']}", expect=(204,))


def test_run_belongs_to_its_sandbox_team(endpoints, credentials, api):
    """Issue 9 §3: a sandbox_author of team A who is launcher in team B must not
    launch A's definition in B, where B's secret would reach A's definition."""
    tenant = credentials["PADDOCK_TENANT"]
    team_a = api.ok("POST", "/v1/teams", json={"name": unique_name("xteam-a")}, expect=(201,))["id"]
    team_b = api.ok("POST", "/v1/teams", json={"name": unique_name("xteam-b")}, expect=(201,))
    pw = secrets.token_hex(12)
    u = api.ok("POST", "/v1/users", json={"username": unique_name("xteam"), "password": pw}, expect=(201,))
    api.ok("PUT", f"/v1/teams/{team_a}/members/{u['id']}", json={"roles": ["sandbox_author"]}, expect=(200,))
    api.ok("PUT", f"/v1/teams/{team_b['id']}/members/{u['id']}", json={"roles": ["launcher"]}, expect=(200,))
    # the secret exists only in team B
    api.ok("PUT", f"/v1/teams/{team_b['id']}/secrets/XTEAM_SECRET", json={"value": "team-b-only"},
           expect=(201, 204))
    user = Api(endpoints.api, _token(endpoints, tenant, u["username"], pw))
    spec = dict(SPEC, secrets=[{"name": "XTEAM_SECRET", "as": {"env": "XTEAM"}}])
    sb = user.ok("POST", "/v1/sandboxes", json={"name": unique_name("xteam"), "team": team_a, "spec": spec},
                 expect=(201,))["id"]
    user.ok("POST", f"/v1/sandboxes/{sb}/versions", expect=(201,))

    def runs_of(team):
        return api.ok("GET", "/v1/runs", params={"team": team, "limit": 1000}, expect=(200,))["items"]

    before = len(runs_of(team_b["id"]))
    for team in (team_b["id"], team_b["name"]):
        r = user.post("/v1/runs", json={"sandbox": sb, "version": 1, "team": team})
        assert r.status_code == 400 and r.json()["code"] == "invalid_field", r.text
        assert r.json()["detail"].startswith("team"), r.text
    # in its own team the author is no launcher
    for body in ({"sandbox": sb, "version": 1}, {"sandbox": sb, "version": 1, "team": team_a}):
        r = user.post("/v1/runs", json=body)
        assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text
        assert "launcher" in r.json()["detail"], r.text
    assert len(runs_of(team_b["id"])) == before and runs_of(team_a) == []
