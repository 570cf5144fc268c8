"""Every write of the api is one transaction (services/api/tx.h: begin,
change, audit, commit, rolled back on any early return): a failure after the
change, here the audit record's insert into api.outbox refused by a trigger
for one tenant only, answers an error and leaves nothing changed, and no
write is acknowledged without its audit record (docs/CONTRACTS.md "Audit
chain", "The api's outbox")."""
import secrets

import psycopg
import pytest

from conftest import Api, bootstrap_tenant, command_spec, login, unique_name


@pytest.fixture(scope="module")
def pg(endpoints):
    with psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def tenant(endpoints):
    """A tenant of its own, so the injected failure touches no other test."""
    name = unique_name("tx")
    pw = bootstrap_tenant(name, "root")
    r = login(endpoints, name, "root", pw)
    assert r.status_code == 200, r.text
    api = Api(endpoints.api, r.json()["token"])
    return api, api.ok("GET", "/v1/me", expect=(200,))


class OutboxRefused:
    """A trigger that makes every insert into api.outbox of one tenant fail
    (what a database that cannot take the audit record looks like to the
    api), removed on exit."""

    def __init__(self, pg, tenant_id):
        self.pg, self.tenant_id = pg, tenant_id
        self.name = "e2e_tx_" + secrets.token_hex(6)

    def __enter__(self):
        self.pg.execute(f"CREATE FUNCTION api.{self.name}() RETURNS trigger LANGUAGE plpgsql AS "
                        f"$$BEGIN RAISE EXCEPTION 'e2e: outbox refused'; END$$")
        self.pg.execute(f"CREATE TRIGGER {self.name} BEFORE INSERT ON api.outbox FOR EACH ROW "
                        f"WHEN (NEW.tenant_id = '{self.tenant_id}'::uuid) EXECUTE FUNCTION api.{self.name}()")
        return self

    def __exit__(self, *exc):
        self.pg.execute(f"DROP TRIGGER IF EXISTS {self.name} ON api.outbox")
        self.pg.execute(f"DROP FUNCTION IF EXISTS api.{self.name}()")


def _refused(r):
    assert r.status_code in (500, 503), f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text[:300]}"
    assert r.json()["code"] in ("internal", "unavailable"), r.text


def _names(api, path, key="name"):
    return {i[key] for i in api.ok("GET", path, expect=(200,))["items"]}


def test_a_write_whose_audit_fails_changes_nothing(pg, tenant):
    api, me = tenant
    tenant_id = me.get("tenant_id") or me["tenant"]["id"]
    team = api.ok("POST", "/v1/teams", json={"name": unique_name("tx-team")}, expect=(201,))
    empty = api.ok("POST", "/v1/teams", json={"name": unique_name("tx-empty")}, expect=(201,))
    user = api.ok("POST", "/v1/users", json={"username": unique_name("tx-user"), "password": secrets.token_hex(12)},
                  expect=(201,))
    api.ok("PUT", f"/v1/teams/{team['id']}/members/{user['id']}", json={"roles": ["viewer"]}, expect=(200, 201))
    sa = api.ok("POST", "/v1/service-accounts", json={"name": unique_name("tx-sa")}, expect=(201,))
    api.ok("PUT", f"/v1/teams/{team['id']}/secrets/KEPT", json={"value": "v1"}, expect=(200, 201))
    sb = api.ok("POST", "/v1/sandboxes", json={"name": unique_name("tx-sb"), "team": team["id"],
                                               "spec": command_spec(["true"])}, expect=(201,))
    retention = api.ok("GET", "/v1/tenant/retention", expect=(200,))
    evidence_keys = api.ok("GET", "/v1/tenant/keys", expect=(200,))
    api.ok("PUT", f"/v1/holds/sandbox/{sb['id']}", json={"reason": "kept"}, expect=(201,))
    budget = api.ok("GET", f"/v1/teams/{team['id']}/budget", expect=(200,))
    # never fetched: the api reads a provider only at a login
    oidc = api.ok("PUT", "/v1/tenant/oidc", json={"issuer": "https://idp.example.invalid",
                                                  "audience": "paddock-tx",
                                                  "jwks_url": "https://idp.example.invalid/jwks",
                                                  "role_mapping": {"claim": "groups", "map": {}}}, expect=(200,))
    users_before = _names(api, "/v1/users", "username")
    sas_before = _names(api, "/v1/service-accounts")
    sbs_before = _names(api, f"/v1/sandboxes?team={team['id']}")

    with OutboxRefused(pg, tenant_id):
        new_team = unique_name("tx-none")
        _refused(api.post("/v1/teams", json={"name": new_team}))
        _refused(api.request("PATCH", f"/v1/teams/{team['id']}", json={"name": unique_name("tx-renamed")}))
        _refused(api.request("DELETE", f"/v1/teams/{empty['id']}"))
        _refused(api.post("/v1/users", json={"username": unique_name("tx-none"), "password": secrets.token_hex(12)}))
        _refused(api.request("PATCH", f"/v1/users/{user['id']}", json={"disabled": True}))
        _refused(api.request("DELETE", f"/v1/users/{user['id']}"))
        _refused(api.request("PATCH", f"/v1/teams/{team['id']}/members/{user['id']}",
                             json={"add": ["launcher"]}))
        _refused(api.post("/v1/service-accounts", json={"name": unique_name("tx-none")}))
        _refused(api.request("DELETE", f"/v1/service-accounts/{sa['id']}"))
        _refused(api.request("PUT", f"/v1/teams/{team['id']}/secrets/NEW", json={"value": "x"}))
        _refused(api.request("DELETE", f"/v1/teams/{team['id']}/secrets/KEPT"))
        _refused(api.post("/v1/sandboxes", json={"name": unique_name("tx-none"), "team": team["id"],
                                                 "spec": command_spec(["true"])}))
        _refused(api.post(f"/v1/sandboxes/{sb['id']}/versions"))
        _refused(api.request("PUT", "/v1/tenant/retention",
                             json={"default_days": retention["default_days"] + 1,
                                   "max_days": retention["max_days"]}))
        _refused(api.post("/v1/tenant/workload-identity/rotate"))
        _refused(api.post("/v1/tenant/keys/rotate"))
        _refused(api.request("PUT", f"/v1/holds/team/{team['id']}", json={"reason": "none"}))
        _refused(api.request("PUT", f"/v1/holds/sandbox/{sb['id']}", json={"reason": "replaced"}))
        _refused(api.request("DELETE", f"/v1/holds/sandbox/{sb['id']}"))
        _refused(api.request("PUT", f"/v1/teams/{team['id']}/budget", json={"month_usd": 1}))
        _refused(api.request("PUT", "/v1/tenant/oidc", json={"issuer": "https://other.example.invalid",
                                                             "audience": "paddock-tx",
                                                             "jwks_url": "https://other.example.invalid/jwks",
                                                             "role_mapping": {"claim": "groups", "map": {}}}))
        _refused(api.request("DELETE", "/v1/tenant/oidc"))

    # nothing of it happened
    assert new_team not in _names(api, "/v1/teams")
    assert api.ok("GET", f"/v1/teams/{team['id']}", expect=(200,))["name"] == team["name"]
    assert api.ok("GET", f"/v1/teams/{empty['id']}", expect=(200,))["name"] == empty["name"]
    assert _names(api, "/v1/users", "username") == users_before
    u = [i for i in api.ok("GET", "/v1/users", expect=(200,))["items"] if i["id"] == user["id"]]
    assert len(u) == 1 and u[0]["disabled"] is False, u
    members = api.ok("GET", f"/v1/teams/{team['id']}/members", expect=(200,))["items"]
    assert [m["roles"] for m in members if m["user"]["id"] == user["id"]] == [["viewer"]], members
    assert _names(api, "/v1/service-accounts") == sas_before
    assert _names(api, f"/v1/teams/{team['id']}/secrets") == {"KEPT"}
    assert _names(api, f"/v1/sandboxes?team={team['id']}") == sbs_before
    assert api.ok("GET", f"/v1/sandboxes/{sb['id']}", expect=(200,)).get("latest_version") in (None, 0)
    assert api.ok("GET", "/v1/tenant/retention", expect=(200,)) == retention
    assert api.ok("GET", "/v1/tenant/keys", expect=(200,)) == evidence_keys
    holds = api.ok("GET", "/v1/holds", expect=(200,))["items"]
    assert [(h["kind"], h["id"], h["reason"]) for h in holds] == [("sandbox", sb["id"], "kept")], holds
    assert api.ok("GET", f"/v1/teams/{team['id']}/budget", expect=(200,)) == budget
    assert api.ok("GET", "/v1/tenant/oidc", expect=(200,)) == oidc
    api.ok("DELETE", "/v1/tenant/oidc", expect=(204,))

    # the trigger was the only reason: the same write goes through now
    assert api.ok("POST", "/v1/teams", json={"name": new_team}, expect=(201,))["name"] == new_team


def _run_ids(api, team_id):
    return {i["id"] for i in api.ok("GET", f"/v1/runs?team={team_id}", expect=(200,))["items"]}


def test_launch_relaunch_and_catalog_writes_whose_audit_fails_change_nothing(pg, tenant):
    """The same for the run launch and relaunch (runs.c) and the catalog's
    create, patch and approve (catalog.c): no run is queued, no item is
    created, renamed or approved."""
    api, me = tenant
    tenant_id = me.get("tenant_id") or me["tenant"]["id"]
    team = api.ok("POST", "/v1/teams", json={"name": unique_name("tx-runs")}, expect=(201,))
    sb = api.ok("POST", "/v1/sandboxes", json={"name": unique_name("tx-sb"), "team": team["id"],
                                               "spec": command_spec(["true"])}, expect=(201,))
    version = api.ok("POST", f"/v1/sandboxes/{sb['id']}/versions", expect=(200, 201))["version"]
    first = api.ok("POST", "/v1/runs", json={"sandbox": sb["id"], "version": version}, expect=(202,))
    item = api.ok("POST", "/v1/catalog/egress-profiles",
                  json={"name": unique_name("tx-prof"), "body": {"rules": ["example.org"]}}, expect=(201,))
    runs_before = _run_ids(api, team["id"])
    assert runs_before == {first["id"]}

    with OutboxRefused(pg, tenant_id):
        _refused(api.post("/v1/runs", json={"sandbox": sb["id"], "version": version}))
        _refused(api.post(f"/v1/runs/{first['id']}/relaunch"))
        new_item = unique_name("tx-none")
        _refused(api.post("/v1/catalog/egress-profiles", json={"name": new_item, "body": {"rules": ["example.org"]}}))
        _refused(api.request("PATCH", f"/v1/catalog/egress-profiles/{item['id']}",
                             json={"name": unique_name("tx-renamed"), "body": {"rules": ["example.net"]}}))
        _refused(api.post(f"/v1/catalog/egress-profiles/{item['id']}/approve",
                          json={"content_sha256": item["content_sha256"]}))

    assert _run_ids(api, team["id"]) == runs_before
    assert new_item not in _names(api, "/v1/catalog/egress-profiles")
    got = api.ok("GET", f"/v1/catalog/egress-profiles/{item['id']}", expect=(200,))
    assert (got["name"], got["state"], got["body"], got["content_sha256"]) == \
        (item["name"], "draft", item["body"], item["content_sha256"]), got

    # the trigger was the only reason: the same writes go through now
    assert api.ok("POST", f"/v1/runs/{first['id']}/relaunch", expect=(202,))["relaunch_of"] == first["id"]
    assert api.ok("POST", f"/v1/catalog/egress-profiles/{item['id']}/approve",
                  json={"content_sha256": item["content_sha256"]}, expect=(200,))["state"] == "approved"


def test_delete_of_a_team_in_use_names_why(tenant):
    """SQLSTATE 23503 on a DELETE reaches the handler as an errno (lib/pg)
    and answers 409 with the handler's reason, not a bare title."""
    api, _ = tenant
    team = api.ok("POST", "/v1/teams", json={"name": unique_name("tx-used")}, expect=(201,))
    api.ok("POST", "/v1/sandboxes", json={"name": unique_name("tx-sb"), "team": team["id"],
                                          "spec": command_spec(["true"])}, expect=(201,))
    r = api.request("DELETE", f"/v1/teams/{team['id']}")
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "conflict" and "still has sandboxes" in r.json()["detail"], r.text
    assert api.ok("GET", f"/v1/teams/{team['id']}", expect=(200,))["id"] == team["id"]
