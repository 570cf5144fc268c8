"""Legal hold and the auditor role (issue 14 §3; docs/CONTRACTS.md "Retention
and legal hold").

A hold on a run, on its sandbox definition or on its team keeps the
retention sweep away from the run until every hold on it is lifted; the
run's S3 objects carry S3 legal hold ON meanwhile (RGW then refuses to
delete their versions even with bypass-governance), OFF once the last hold
covering the run is lifted; set and lift are audited; the auditor (a tenant role) reads evidence and audit of
every team and manages holds, and can change nothing else; another tenant's
objects answer 404. The business clock is moved through its file, never by
waiting days.
"""

import secrets
import time

import botocore.exceptions
import psycopg
import pytest

from cli_support import Cli
from conftest import Api, bootstrap_tenant, login, unique_name, wait_for
from test_e2e_retention import (DAY, audit_records, clock, finished_run, s3_client, wait_audited,  # noqa: F401
                                wait_deleted)


def deleted(api, run_id):
    return api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))["deleted"]


@pytest.fixture(scope="module")
def auditor(endpoints, credentials, api):
    pw = secrets.token_hex(12)
    u = api.ok("POST", "/v1/users", json={"username": unique_name("auditor"), "password": pw, "auditor": True},
               expect=(201,))
    assert "auditor" in u["tenant_roles"], u
    r = login(endpoints, credentials["PADDOCK_TENANT"], u["username"], pw)
    assert r.status_code == 200, r.text
    a = Api(endpoints.api, r.json()["token"])
    me = a.ok("GET", "/v1/me", expect=(200,))
    assert me["tenant_roles"] == ["auditor"] and me["teams"] == [], me
    return a


@pytest.fixture(scope="module")
def other_tenant(endpoints):
    name = unique_name("hold")
    pw = bootstrap_tenant(name, "admin")
    return Api(endpoints.api, login(endpoints, name, "admin", pw).json()["token"])


def test_hold_input_is_checked(api, runs, endpoints, admin_token):
    run_id = finished_run(endpoints, admin_token, api, runs, retention_days=30)
    for body, code, field in [({}, "missing_field", "reason"), ({"reason": ""}, "invalid_field", "reason"),
                              ({"reason": 7}, "invalid_field", "reason"), ({"reason": "x" * 1001}, "invalid_field",
                                                                           "reason"),
                              ({"reason": "a\nb"}, "invalid_field", "reason"),
                              ({"reason": "ok", "until": "never"}, "unknown_field", "until")]:
        r = api.request("PUT", f"/v1/holds/run/{run_id}", json=body)
        assert r.status_code == 400 and r.json()["code"] == code and field in r.json()["detail"], (body, r.text)
    r = api.request("PUT", f"/v1/holds/bucket/{run_id}", json={"reason": "x"})
    assert r.status_code == 404, r.text
    r = api.request("PUT", "/v1/holds/run/8d0f6a52-7c2d-4a43-9a53-2b1c3a4d5e6f", json={"reason": "x"})
    assert r.status_code == 404, r.text
    r = api.request("GET", "/v1/holds", params={"kind": "bucket"})
    assert r.status_code == 400 and "kind" in r.json()["detail"], r.text
    assert not [h for h in api.ok("GET", "/v1/holds", expect=(200,))["items"] if h["id"] == run_id], \
        "a refused hold was stored"


def test_held_runs_survive_the_sweep_until_lifted(endpoints, admin_token, api, runs, team_id, clock):
    team = api.ok("POST", "/v1/teams", json={"name": unique_name("held-team")}, expect=(201,))["id"]
    me = api.ok("GET", "/v1/me", expect=(200,))
    api.ok("PUT", f"/v1/teams/{team}/members/{me['user']['id']}", json={"roles": ["sandbox_author", "launcher",
                                                                               "viewer"]}, expect=(200,))
    by_run = finished_run(endpoints, admin_token, api, runs, retention_days=1)
    by_sandbox = finished_run(endpoints, admin_token, api, runs, retention_days=1)
    by_team = finished_run(endpoints, admin_token, api, runs, retention_days=1, team=team)
    twice = finished_run(endpoints, admin_token, api, runs, retention_days=1, team=team)
    control = finished_run(endpoints, admin_token, api, runs, retention_days=1)
    sandbox = api.ok("GET", f"/v1/runs/{by_sandbox}", expect=(200,))["sandbox"]
    twice_sandbox = api.ok("GET", f"/v1/runs/{twice}", expect=(200,))["sandbox"]

    h = api.ok("PUT", f"/v1/holds/run/{by_run}", json={"reason": "litigation 1"}, expect=(201,))
    assert h["kind"] == "run" and h["id"] == by_run and h["reason"] == "litigation 1"
    # PUT again: the same hold, its reason replaced
    assert api.ok("PUT", f"/v1/holds/run/{by_run}", json={"reason": "litigation 2"}, expect=(200,))["reason"] == \
        "litigation 2"
    api.ok("PUT", f"/v1/holds/sandbox/{sandbox}", json={"reason": "definition under review"}, expect=(201,))
    api.ok("PUT", f"/v1/holds/team/{team}", json={"reason": "team investigation"}, expect=(201,))
    # two holds on one run (its team's and its sandbox's): both must go
    api.ok("PUT", f"/v1/holds/sandbox/{twice_sandbox}", json={"reason": "second hold"}, expect=(201,))
    held = {(x["kind"], x["id"]) for x in api.ok("GET", "/v1/holds", expect=(200,))["items"]}
    assert {("run", by_run), ("sandbox", sandbox), ("team", team), ("sandbox", twice_sandbox)} <= held
    assert api.ok("GET", f"/v1/runs/{by_team}", expect=(200,))["retention"]["held"] is True

    clock.set(2 * DAY)
    wait_deleted(api, control)
    time.sleep(5)  # two more sweeps at the stack's 2 s interval
    for run_id in (by_run, by_sandbox, by_team, twice):
        assert deleted(api, run_id) is None, f"held run {run_id} was swept"
        assert api.get(f"/v1/runs/{run_id}/events").status_code == 200

    api.ok("DELETE", f"/v1/holds/run/{by_run}", expect=(204,))
    api.ok("DELETE", f"/v1/holds/sandbox/{sandbox}", expect=(204,))
    api.ok("DELETE", f"/v1/holds/team/{team}", expect=(204,))
    for run_id in (by_run, by_sandbox, by_team):
        assert wait_deleted(api, run_id)["reason"] == "retention"
    time.sleep(5)
    assert deleted(api, twice) is None, "a run still held through its sandbox was swept"
    api.ok("DELETE", f"/v1/holds/sandbox/{twice_sandbox}", expect=(204,))
    wait_deleted(api, twice)
    # lifting what is not held: 404; a hold on a deleted run: 409
    assert api.request("DELETE", f"/v1/holds/run/{by_run}").status_code == 404
    r = api.request("PUT", f"/v1/holds/run/{by_run}", json={"reason": "too late"})
    assert r.status_code == 409 and r.json()["code"] == "conflict", r.text

    sets = wait_audited(api, "legal_hold.set", by_run)
    assert [x["outcome"] for x in sets] == ["success", "success"] and sets[0]["object_type"] == "run"
    assert wait_audited(api, "legal_hold.lift", team)[0]["object_type"] == "team"
    assert wait_audited(api, "legal_hold.set", sandbox)
    assert api.ok("GET", "/v1/audit/verify", expect=(200,))["ok"] is True


def _versions(endpoints, api, tenant_id, run_id):
    """{key: version id} of the run's stored artifacts (the versions evidence wrote)."""
    s3, bucket = s3_client(endpoints), endpoints.need("PADDOCK_S3_BUCKET")
    keys = [f"tenants/{tenant_id}/runs/{run_id}/{a['name']}"
            for a in api.ok("GET", f"/v1/runs/{run_id}/artifacts", expect=(200,))["items"]]
    assert keys, f"run {run_id} stored no artifact"
    return {k: s3.head_object(Bucket=bucket, Key=k)["VersionId"] for k in keys}


def _s3_holds(endpoints, versions):
    """The set of the versions' S3 legal hold states; a version never given
    one reads OFF (RGW answers ObjectLockConfigurationNotFoundError)."""
    s3, bucket = s3_client(endpoints), endpoints.need("PADDOCK_S3_BUCKET")
    out = set()
    for k, v in versions.items():
        try:
            out.add(s3.get_object_legal_hold(Bucket=bucket, Key=k, VersionId=v)["LegalHold"]["Status"])
        except botocore.exceptions.ClientError as e:
            assert e.response["Error"]["Code"] in ("ObjectLockConfigurationNotFoundError",
                                                   "NoSuchObjectLockConfiguration"), e.response
            out.add("OFF")
    return out


def _wait_s3_hold(endpoints, versions, status, what):
    wait_for(f"S3 legal hold {status} on {what}", lambda: _s3_holds(endpoints, versions) == {status}, timeout=60)


def test_s3_legal_hold_follows_the_holds(endpoints, admin_token, api, runs, me):
    tenant_id = me["tenant"]["id"]
    s3, bucket = s3_client(endpoints), endpoints.need("PADDOCK_S3_BUCKET")
    team = api.ok("POST", "/v1/teams", json={"name": unique_name("s3-hold-team")}, expect=(201,))["id"]
    api.ok("PUT", f"/v1/teams/{team}/members/{me['user']['id']}", json={"roles": ["sandbox_author", "launcher",
                                                                               "viewer"]}, expect=(200,))
    # a run of a long retention: only the hold, never its expiry, is in play here
    before = finished_run(endpoints, admin_token, api, runs, retention_days=30, team=team)
    before_v = _versions(endpoints, api, tenant_id, before)
    assert _s3_holds(endpoints, before_v) == {"OFF"}, "an unheld run's objects carry a legal hold"

    # a team hold: the run's stored versions get S3 legal hold ON (the sweeper reconciles)
    api.ok("PUT", f"/v1/holds/team/{team}", json={"reason": "s3 litigation"}, expect=(201,))
    _wait_s3_hold(endpoints, before_v, "ON", "the held team's run")
    for k, v in before_v.items():
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            s3.delete_object(Bucket=bucket, Key=k, VersionId=v, BypassGovernanceRetention=True)
        assert refused.value.response["Error"]["Code"] == "AccessDenied", refused.value.response
        assert s3.head_object(Bucket=bucket, Key=k, VersionId=v)["VersionId"] == v
    # a run that ends while its team is held is uploaded with the hold ON
    during = finished_run(endpoints, admin_token, api, runs, retention_days=30, team=team)
    during_v = _versions(endpoints, api, tenant_id, during)
    _wait_s3_hold(endpoints, during_v, "ON", "a run stored while held")

    # lifting the team hold frees the run no other hold covers, not the one its own hold covers
    api.ok("PUT", f"/v1/holds/run/{before}", json={"reason": "its own"}, expect=(201,))
    api.ok("DELETE", f"/v1/holds/team/{team}", expect=(204,))
    _wait_s3_hold(endpoints, during_v, "OFF", "the run whose only hold was lifted")
    time.sleep(5)  # two sweeps at the stack's 2 s interval
    assert _s3_holds(endpoints, before_v) == {"ON"}, "a run still held through its own hold lost the S3 hold"
    with psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True) as conn:
        applied = dict(conn.execute("SELECT run_id::text, bool_and(s3_legal_hold) FROM evidence.artifacts "
                                    "WHERE run_id IN (%s, %s) GROUP BY run_id", (before, during)).fetchall())
    assert applied == {before: True, during: False}, applied
    api.ok("DELETE", f"/v1/holds/run/{before}", expect=(204,))
    _wait_s3_hold(endpoints, before_v, "OFF", "the run whose last hold was lifted")

    # lifted: the store's own rule is back, bypass-governance deletes a version of the test's run
    k, v = next(iter(during_v.items()))
    s3.delete_object(Bucket=bucket, Key=k, VersionId=v, BypassGovernanceRetention=True)
    listed = s3.list_object_versions(Bucket=bucket, Prefix=k)
    assert v not in {x["VersionId"] for x in listed.get("Versions", [])}, listed


def test_auditor_reads_and_holds_but_writes_nothing_else(endpoints, admin_token, api, runs, team_id, auditor):
    run_id = finished_run(endpoints, admin_token, api, runs, retention_days=30)
    # reads across teams (the auditor is in none)
    assert auditor.ok("GET", f"/v1/runs/{run_id}", expect=(200,))["id"] == run_id
    assert auditor.ok("GET", f"/v1/runs/{run_id}/events", expect=(200,))["items"]
    assert auditor.ok("GET", f"/v1/runs/{run_id}/artifacts", expect=(200,))["items"]
    assert auditor.get(f"/v1/runs/{run_id}/artifacts/workspace.diff", allow_redirects=False).status_code == 302
    assert any(r["id"] == run_id for r in auditor.ok("GET", "/v1/runs", params={"limit": 1000},
                                                     expect=(200,))["items"])
    assert auditor.ok("GET", "/v1/audit", expect=(200,))["items"]
    assert auditor.ok("GET", "/v1/audit/verify", expect=(200,))["ok"] is True
    assert auditor.ok("GET", "/v1/tenant/retention", expect=(200,))["max_days"] >= 1
    # holds: set, list, lift
    auditor.ok("PUT", f"/v1/holds/run/{run_id}", json={"reason": "auditor hold"}, expect=(201,))
    assert any(h["id"] == run_id for h in auditor.ok("GET", "/v1/holds", expect=(200,))["items"])
    auditor.ok("DELETE", f"/v1/holds/run/{run_id}", expect=(204,))
    rec = wait_audited(api, "legal_hold.lift", run_id)[-1]
    assert rec["actor"].startswith("user:")
    # nothing else is writable, nor readable beyond evidence and audit: 403 for
    # tenant-wide endpoints, 404 for a team's objects (the auditor is in no team)
    sandbox = api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))["sandbox"]
    before = len(api.ok("GET", "/v1/runs", params={"limit": 1000}, expect=(200,))["items"])
    for method, path, body, status in [
            ("PUT", "/v1/tenant/retention", {"default_days": 1, "max_days": 1}, 403),
            ("POST", "/v1/runs", {"sandbox": sandbox, "team": team_id}, 404),
            ("POST", f"/v1/runs/{run_id}/relaunch", {}, 404),
            ("POST", f"/v1/runs/{run_id}/cancel", {}, 404),
            ("POST", "/v1/sandboxes", {"name": unique_name("aud"), "team": team_id,
                                       "spec": {"agent": {"type": "command", "command": ["true"]}}}, 404),
            ("POST", "/v1/teams", {"name": unique_name("aud")}, 403),
            ("GET", "/v1/users", None, 403),
            ("PATCH", f"/v1/users/{auditor.ok('GET', '/v1/me', expect=(200,))['user']['id']}",
             {"tenant_admin": True}, 403),
            ("GET", f"/v1/teams/{team_id}/secrets", None, 404),
            ("GET", f"/v1/sandboxes/{sandbox}", None, 404)]:
        r = auditor.request(method, path, json=body)
        assert r.status_code == status, (method, path, r.status_code, r.text)
    assert api.ok("GET", "/v1/tenant/retention", expect=(200,))["max_days"] != 1
    assert len(api.ok("GET", "/v1/runs", params={"limit": 1000}, expect=(200,))["items"]) == before


def test_hold_cli(endpoints, credentials, api, runs, admin_token, tmp_path):
    run_id = finished_run(endpoints, admin_token, api, runs, retention_days=30)
    cli = Cli(tmp_path, endpoints.api)
    c = credentials
    r = cli("login", "--tenant", c["PADDOCK_TENANT"], "--user", c["PADDOCK_USER"], "--password-stdin",
            input=c["PADDOCK_PASSWORD"] + "\n")
    assert r.returncode == 0, r.stderr
    out = cli.ok("hold", "set", "run", run_id, "--reason", "cli hold")
    assert f"hold set on run {run_id}" in out, out
    assert run_id in cli.ok("hold", "list", "--kind", "run")
    assert cli("hold", "set", "run", run_id).returncode == 2, "--reason is required"
    assert cli("hold", "set", "bucket", run_id, "--reason", "x").returncode == 2
    assert cli.ok("hold", "lift", "run", run_id).strip() == f"hold lifted from run {run_id}"
    r = cli("hold", "lift", "run", run_id)
    assert r.returncode == 1 and "not_found" in r.stderr, (r.returncode, r.stderr)
    assert "default_days" in cli.ok("retention", "show")


def test_other_tenant_404(api, runs, endpoints, admin_token, team_id, other_tenant):
    run_id = finished_run(endpoints, admin_token, api, runs, retention_days=30)
    sandbox = api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))["sandbox"]
    for kind, oid in (("run", run_id), ("sandbox", sandbox), ("team", team_id)):
        r = other_tenant.request("PUT", f"/v1/holds/{kind}/{oid}", json={"reason": "not yours"})
        assert r.status_code == 404 and r.json()["code"] == "not_found", (kind, r.text)
    api.ok("PUT", f"/v1/holds/run/{run_id}", json={"reason": "ours"}, expect=(201,))
    try:
        assert other_tenant.request("DELETE", f"/v1/holds/run/{run_id}").status_code == 404
        assert not [h for h in other_tenant.ok("GET", "/v1/holds", expect=(200,))["items"] if h["id"] == run_id]
        assert any(h["id"] == run_id for h in api.ok("GET", "/v1/holds", expect=(200,))["items"])
    finally:
        api.ok("DELETE", f"/v1/holds/run/{run_id}", expect=(204,))
