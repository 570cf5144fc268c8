"""Retention (issue 14 §3; docs/CONTRACTS.md "Retention and legal hold").

The tenant's default and maximum retention (GET/PUT /v1/tenant/retention),
spec.retention_days checked against the maximum, and evidence's sweeper:
a run whose retention expired on the business clock (the test moves it by
writing an offset into PADDOCK_BUSINESS_CLOCK_FILE, never by waiting days)
loses its events, artifact rows and S3 objects, keeps a tombstone and gets an
audit record of the deletion, and the tenant's audit chain still verifies.
"""

import hashlib
import os
import pathlib
import time

import boto3
import botocore.config
import botocore.exceptions
import psycopg
import pytest

from conftest import audit_all, all_events, command_spec, unique_name, wait_for, wait_history_complete, wait_terminal

DAY = 86400


def business_clock(endpoints):
    path = endpoints.env.get("PADDOCK_BUSINESS_CLOCK_FILE")
    assert path, "endpoints.env names no PADDOCK_BUSINESS_CLOCK_FILE: is the stack up to date?"
    return pathlib.Path(path)


class Clock:
    """Moves the stack's business clock; always put back (other tests share the stack)."""

    def __init__(self, endpoints):
        self.path = business_clock(endpoints)

    def set(self, seconds):
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{int(seconds)}\n")
        os.replace(tmp, self.path)

    def reset(self):
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


@pytest.fixture
def clock(endpoints):
    c = Clock(endpoints)
    try:
        yield c
    finally:
        c.reset()


def s3_client(endpoints):
    return boto3.client(
        "s3",
        endpoint_url=endpoints.need("PADDOCK_S3_ENDPOINT"),
        aws_access_key_id=endpoints.need("PADDOCK_S3_ACCESS_KEY"),
        aws_secret_access_key=endpoints.need("PADDOCK_S3_SECRET_KEY"),
        region_name=endpoints.env.get("PADDOCK_S3_REGION") or "us-east-1",
        config=botocore.config.Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def s3_exists(endpoints, key):
    try:
        s3_client(endpoints).head_object(Bucket=endpoints.need("PADDOCK_S3_BUCKET"), Key=key)
        return True
    except botocore.exceptions.ClientError as e:
        if e.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return False
        raise


def finished_run(endpoints, admin_token, api, runs, retention_days=1, team=None):
    """A run with retention_days that edited a file (so it has a diff
    artifact), waited until its history and artifact are stored."""
    spec = command_spec(["/bin/sh", "-c", "echo kept-until-expiry; echo more >> notes.txt"],
                        files=[{"path": "notes.txt", "content": "first\n", "mode": "0644"}])
    spec["retention_days"] = retention_days
    if team:
        body = {"name": unique_name("retention"), "team": team, "spec": spec}
        sb = api.ok("POST", "/v1/sandboxes", json=body, expect=(201,))["id"]
        v = api.ok("POST", f"/v1/sandboxes/{sb}/versions", expect=(201,))["version"]
        run_id = api.ok("POST", "/v1/runs", json={"sandbox": sb, "version": v, "team": team}, expect=(202,))["id"]
    else:
        run_id = runs.start(spec)
    result = wait_terminal(endpoints, admin_token, run_id, timeout=180)
    assert result.terminal == "succeeded", result.statuses
    wait_history_complete(api, run_id)
    wait_for("diff artifact", lambda: api.ok("GET", f"/v1/runs/{run_id}/artifacts", expect=(200,))["items"])
    return run_id


def audit_records(api, action, object_id=None):
    """Every audit record of the tenant with action (and object_id), all pages."""
    return [a for a in audit_all(api) if a["action"] == action and object_id in (None, a["object_id"])]


def wait_audited(api, action, object_id=None, timeout=30):
    return wait_for(f"audit record {action} {object_id or ''}", lambda: audit_records(api, action, object_id),
                    timeout=timeout)


def wait_deleted(api, run_id, timeout=90):
    return wait_for(f"run {run_id} deleted", lambda: api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))["deleted"],
                    timeout=timeout)


# ---------------------------------------------------------------- settings


@pytest.fixture
def restore_retention(api):
    before = api.ok("GET", "/v1/tenant/retention", expect=(200,))
    yield before
    api.ok("PUT", "/v1/tenant/retention", json=before, expect=(200,))


def test_tenant_retention_settings(api, restore_retention):
    assert restore_retention == {"default_days": 365, "max_days": 3650}, restore_retention
    for body, field in [({"default_days": 0, "max_days": 10}, "default_days"),
                        ({"default_days": 10, "max_days": 3651}, "max_days"),
                        ({"default_days": "10", "max_days": 20}, "default_days"),
                        ({"max_days": 20}, "default_days"),
                        ({"default_days": 30, "max_days": 20}, "default_days"),
                        ({"default_days": 1, "max_days": 2, "forever": True}, "forever")]:
        r = api.request("PUT", "/v1/tenant/retention", json=body)
        assert r.status_code == 400, (body, r.status_code, r.text)
        assert field in r.json()["detail"], (body, r.json())
    assert api.ok("GET", "/v1/tenant/retention", expect=(200,)) == restore_retention, "a refused PUT changed something"

    got = api.ok("PUT", "/v1/tenant/retention", json={"default_days": 400, "max_days": 3000}, expect=(200,))
    assert got == {"default_days": 400, "max_days": 3000}
    assert api.ok("GET", "/v1/tenant/retention", expect=(200,)) == got
    rec = wait_audited(api, "tenant.retention_update")[-1]
    assert rec["outcome"] == "success" and rec["object_type"] == "tenant"


def test_spec_retention_days_bounded_by_tenant_max(api, team_id, restore_retention):
    api.ok("PUT", "/v1/tenant/retention", json={"default_days": 30, "max_days": 90}, expect=(200,))
    spec = command_spec(["/bin/true"])
    spec["retention_days"] = 91
    r = api.request("POST", "/v1/sandboxes", json={"name": unique_name("ret"), "team": team_id, "spec": spec})
    assert r.status_code == 400 and "spec.retention_days" in r.json()["detail"], r.text
    spec["retention_days"] = 90
    sb = api.ok("POST", "/v1/sandboxes", json={"name": unique_name("ret"), "team": team_id, "spec": spec},
                expect=(201,))
    assert sb["draft"]["spec"]["retention_days"] == 90


# ---------------------------------------------------------------- the sweep


def test_expired_run_is_swept(endpoints, admin_token, api, runs, tenant_id, clock):
    run_id = finished_run(endpoints, admin_token, api, runs, retention_days=1)
    # a run of the default retention (365 days) that must survive the same sweep
    keep_id = finished_run(endpoints, admin_token, api, runs, retention_days=30)

    before = api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))
    assert before["deleted"] is None and before["retention"]["days"] == 1 and not before["retention"]["held"]
    events = all_events(api, run_id)
    manifest = api.ok("GET", f"/v1/runs/{run_id}/artifacts", expect=(200,))["items"]
    assert manifest, "the run stored no artifact"
    keys = [f"tenants/{tenant_id}/runs/{run_id}/{a['name']}" for a in manifest]
    assert all(s3_exists(endpoints, k) for k in keys)

    # S3 object lock (Ceph RGW has it): each artifact is a GOVERNANCE-locked
    # version until its expiry, which RGW refuses to delete without bypass
    s3, bucket = s3_client(endpoints), endpoints.need("PADDOCK_S3_BUCKET")
    lock = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled", \
        f"bucket {bucket} has no object lock (made before issue 14: stack.sh purge, then up): {lock}"
    versions = {}
    for k in keys:
        head = s3.head_object(Bucket=bucket, Key=k)
        assert head["ObjectLockMode"] == "GOVERNANCE", head
        left = head["ObjectLockRetainUntilDate"].timestamp() - time.time()
        assert 0.5 * DAY < left <= 1.01 * DAY, f"retain-until {head['ObjectLockRetainUntilDate']}: not the 1-day expiry"
        versions[k] = head["VersionId"]
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            s3.delete_object(Bucket=bucket, Key=k, VersionId=versions[k])
        assert refused.value.response["Error"]["Code"] == "AccessDenied", refused.value.response
        assert s3.head_object(Bucket=bucket, Key=k, VersionId=versions[k])["VersionId"] == versions[k]

    # nothing expires before its time
    time.sleep(5)  # two sweeps at the stack's 2 s interval
    assert api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))["deleted"] is None

    clock.set(2 * DAY)
    deleted = wait_deleted(api, run_id)
    assert deleted["reason"] == "retention"
    assert deleted["events"] == len(events) and deleted["artifacts"] == len(manifest)

    run = api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))
    assert run["status"] == before["status"] == "succeeded", "the tombstone keeps the status"
    for path in (f"/v1/runs/{run_id}/events", f"/v1/runs/{run_id}/artifacts",
                 f"/v1/runs/{run_id}/artifacts/{manifest[0]['name']}"):
        r = api.get(path, allow_redirects=False)
        assert r.status_code == 410 and r.json()["code"] == "gone", (path, r.status_code, r.text)
    assert not any(s3_exists(endpoints, k) for k in keys), "an S3 object survived the sweep"
    for k in keys:  # the locked version itself is gone, not hidden behind a delete marker
        listed = s3.list_object_versions(Bucket=bucket, Prefix=k)
        assert not listed.get("Versions") and not listed.get("DeleteMarkers"), listed

    # the tombstone: counts and the hash of what was deleted
    with psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM evidence.run_events WHERE run_id = %s", (run_id,)).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM evidence.artifacts WHERE run_id = %s", (run_id,)).fetchone()[0] == 0
        t = conn.execute("SELECT team_id::text, sandbox_id::text, artifacts_sha256, events_sha256, deleted_sha256, "
                         "events, artifacts FROM evidence.run_tombstones WHERE run_id = %s", (run_id,)).fetchone()
    assert t[0] == run["team"] and t[1] == run["sandbox"]
    want_art = hashlib.sha256("\n".join(f"{a['name']} {a['sha256']} {a['size']}"
                                        for a in sorted(manifest, key=lambda a: a["name"])).encode()).hexdigest()
    assert t[2] == want_art
    assert t[4] == hashlib.sha256((t[3] + t[2]).encode()).hexdigest() == deleted["sha256"]

    # the audit record of the deletion, and a chain that still verifies
    rec = wait_audited(api, "run.delete", run_id)[0]
    assert rec["actor"] == "service:evidence" and rec["outcome"] == "success"
    assert rec["detail"]["deleted_sha256"] == deleted["sha256"] and rec["detail"]["reason"] == "retention"
    verify = api.ok("GET", "/v1/audit/verify", expect=(200,))
    assert verify["ok"] is True and verify["reason"] is None, verify

    # another run of a longer retention is untouched, and the deletion is done once
    kept = api.ok("GET", f"/v1/runs/{keep_id}", expect=(200,))
    assert kept["deleted"] is None and api.get(f"/v1/runs/{keep_id}/events").status_code == 200
    time.sleep(5)
    assert len(audit_records(api, "run.delete", run_id)) == 1


def test_interrupted_sweep_is_finished(endpoints, admin_token, api, runs, clock):
    """A tombstone left unfinished (a sweep killed after step 1) is completed by the next sweep."""
    run_id = finished_run(endpoints, admin_token, api, runs, retention_days=1)
    with psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True) as conn:
        # what step 1 writes, as a killed sweep would leave it: deleted_at NULL
        conn.execute(
            "INSERT INTO evidence.run_tombstones (run_id, tenant_id, team_id, sandbox_id, version, status, ended_at, "
            " expires_at, retention_days, events, artifacts, artifact_bytes, events_sha256, artifacts_sha256, "
            " deleted_sha256, audit_message_id) "
            "SELECT r.id, r.tenant_id, r.team_id, r.sandbox_id, r.version, r.status, r.ended_at, "
            " r.ended_at + interval '1 day', 1, 0, 0, 0, h, h, h, gen_random_uuid() "
            "FROM api.runs r, encode(sha256('interrupted'::bytea), 'hex') h WHERE r.id = %s",
            (run_id,))
    # no clock move: the run is not due, only the unfinished tombstone makes the sweep go on
    deleted = wait_deleted(api, run_id)
    assert deleted["reason"] == "retention"
    assert api.get(f"/v1/runs/{run_id}/events").status_code == 410


def test_other_tenant_sees_nothing(endpoints, api):
    from conftest import Api, bootstrap_tenant, login
    name = unique_name("rt")
    pw = bootstrap_tenant(name, "admin")
    other = Api(endpoints.api, login(endpoints, name, "admin", pw).json()["token"])
    assert other.ok("GET", "/v1/tenant/retention", expect=(200,)) == {"default_days": 365, "max_days": 3650}
    other.ok("PUT", "/v1/tenant/retention", json={"default_days": 1, "max_days": 1}, expect=(200,))
    # ours is unchanged by theirs
    assert api.ok("GET", "/v1/tenant/retention", expect=(200,))["max_days"] >= 90
