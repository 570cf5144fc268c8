"""Team budgets per month (issue 14 §4, docs/CONTRACTS.md "Budgets"):
PUT/GET /v1/teams/{id}/budget (tenant_admin sets, team viewers read, bad input
400 naming the field and changing nothing, audited), the 80 % and 100 %
notices on paddock.usage.alerts (signed by the api, each exactly once), the
402 quota_exceeded refusal of launches across the business clock's month
boundary, the team's running runs ending limit_exceeded at 100 %, and
`paddock budget set|get`."""

import base64
import datetime
import os
import pathlib
import secrets
import time
import uuid

import pytest

from cli_support import Cli
from conftest import (BUS_DOMAIN, Api, Runs, Tail, audit_all, command_spec, login, pb_fields, unique_name,
                      wait_run_status)

TOPIC = "paddock.usage.alerts"


def alert_of(value):
    """A UsageAlert (proto/paddock/v1/usage_alerts.proto) as a dict."""
    f = pb_fields(value)
    s = lambda n: f.get(n, [b""])[0].decode()  # noqa: E731
    dbl = lambda n: __import__("struct").unpack("<d", f[n][0])[0] if n in f else 0.0  # noqa: E731
    env = pb_fields(f[1][0])
    return {"tenant_id": env[1][0].decode(), "run_id": env.get(2, [b""])[0].decode(),
            "message_id": env[7][0].decode(), "team_id": s(2), "month": s(3),
            "limit": s(4), "threshold_pct": f.get(5, [0])[0], "limit_value": dbl(6), "used": dbl(7)}


def verify_api_signature(endpoints, value, headers):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    assert headers.get("paddock-signer") == b"api", headers.keys()
    keys = {}
    with open(endpoints.need("PADDOCK_TRUSTED_KEYS")) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2 and not line.startswith("#"):
                keys[parts[0]] = parts[1]
    pub = Ed25519PublicKey.from_public_bytes(base64.b64decode(keys["api"]))
    pub.verify(headers["paddock-sig"], BUS_DOMAIN + TOPIC.encode() + b"\0" + value)  # raises if bad


class BusinessClock:
    """Moves the stack's business clock (lib/core/business_clock.h) to a UTC
    date by writing the offset file; removed again at the end (other tests
    share the stack)."""

    def __init__(self, endpoints):
        self.path = pathlib.Path(endpoints.need("PADDOCK_BUSINESS_CLOCK_FILE"))

    def set(self, when):
        offset = int(when.timestamp() - time.time())
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{offset}\n")
        os.replace(tmp, self.path)
        # the services re-read it when its mtime changes: give them a moment
        time.sleep(1.5)

    def reset(self):
        self.path.unlink(missing_ok=True)


@pytest.fixture
def clock(endpoints):
    c = BusinessClock(endpoints)
    try:
        yield c
    finally:
        c.reset()


@pytest.fixture
def team(api):
    return api.ok("POST", "/v1/teams", json={"name": unique_name("budget")}, expect=(201,))["id"]


def _user_in(api, endpoints, credentials, team, role):
    pw = secrets.token_hex(12)
    u = api.ok("POST", "/v1/users", json={"username": unique_name(f"budget-{role}"), "password": pw},
               expect=(201,))
    api.ok("PUT", f"/v1/teams/{team}/members/{u['id']}", json={"roles": [role]}, expect=(200,))
    r = login(endpoints, credentials["PADDOCK_TENANT"], u["username"], pw)
    assert r.status_code == 200, r.text
    return Api(endpoints.api, r.json()["token"])


def _launch(api, sandbox, version, team):
    return api.post("/v1/runs", json={"sandbox": sandbox, "version": version, "team": team},
                    headers={"Idempotency-Key": str(uuid.uuid4())})



def test_budget_put_get_validation_roles_and_audit(api, endpoints, credentials, team):
    empty = api.ok("GET", f"/v1/teams/{team}/budget", expect=(200,))
    assert empty["limits"] == {"month_usd": None, "month_tokens": None, "month_runtime_s": None}, empty
    assert empty["used"]["runs"] == 0 and empty["exceeded"] == [] and empty["updated_at"] is None, empty

    for body, field in [({"month_usd": -1}, "month_usd"), ({"month_usd": "10"}, "month_usd"),
                        ({"month_usd": 0}, "month_usd"), ({"month_tokens": 1.5}, "month_tokens"),
                        ({"month_tokens": 0}, "month_tokens"), ({"month_runtime_s": True}, "month_runtime_s"),
                        ({"month_runtime_s": 1e13}, "month_runtime_s"), ({"monthly_usd": 5}, "monthly_usd")]:
        r = api.request("PUT", f"/v1/teams/{team}/budget", json={"month_usd": 5, **body})
        assert r.status_code == 400, (body, r.status_code, r.text)
        assert field in r.json()["detail"], (body, r.json())
    # nothing was stored by the refused requests
    assert api.ok("GET", f"/v1/teams/{team}/budget", expect=(200,))["limits"]["month_usd"] is None

    seq0 = (audit_all(api) or [{"seq": 0}])[-1]["seq"]
    b = api.ok("PUT", f"/v1/teams/{team}/budget",
               json={"month_usd": 12.5, "month_tokens": 1000000, "month_runtime_s": 3600}, expect=(200,))
    assert b["limits"] == {"month_usd": 12.5, "month_tokens": 1000000, "month_runtime_s": 3600.0}, b
    assert b["percent"] == {"month_usd": 0.0, "month_tokens": 0.0, "month_runtime_s": 0.0}, b
    assert b["updated_by"] and b["updated_at"] and b["month"] == datetime.datetime.utcnow().strftime("%Y-%m"), b

    # audited, with the limits set
    deadline = time.monotonic() + 30
    while True:
        items = audit_all(api, seq0)
        rec = [i for i in items if i["action"] == "team.budget.set" and i["object_id"] == team]
        if rec or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(rec) == 1, items[-5:]

    # team viewers read it; only the tenant admin sets it
    viewer = _user_in(api, endpoints, credentials, team, "viewer")
    assert viewer.ok("GET", f"/v1/teams/{team}/budget", expect=(200,))["limits"]["month_usd"] == 12.5
    assert viewer.request("PUT", f"/v1/teams/{team}/budget", json={"month_usd": 1}).status_code == 403
    # a team the caller is not in: 404 (no existence oracle)
    other = api.ok("POST", "/v1/teams", json={"name": unique_name("budget-other")}, expect=(201,))["id"]
    assert viewer.request("GET", f"/v1/teams/{other}/budget").status_code == 404
    assert api.request("GET", f"/v1/teams/{uuid.uuid4()}/budget").status_code == 404

    # PUT replaces: a limit left out is no limit
    b = api.ok("PUT", f"/v1/teams/{team}/budget", json={"month_usd": 3}, expect=(200,))
    assert b["limits"] == {"month_usd": 3.0, "month_tokens": None, "month_runtime_s": None}, b


def test_budget_across_the_month_boundary(api, endpoints, team, clock):
    """Over budget in January: refused (402 naming the limit), one notice at 80
    and one at 100 %; after the clock moved into February: accepted."""
    tail = Tail(endpoints.need("PADDOCK_KAFKA_BOOTSTRAP"), TOPIC)
    try:
        clock.set(datetime.datetime(2027, 1, 15, 12, 0, tzinfo=datetime.timezone.utc))
        api.ok("PUT", f"/v1/teams/{team}/budget", json={"month_runtime_s": 2}, expect=(200,))
        r = Runs(api, team)
        sb = r.create_sandbox(command_spec(["sh", "-c", "sleep 4"]))
        v = r.publish(sb)
        first = _launch(api, sb, v, team)
        assert first.status_code == 202, first.text
        run = wait_run_status(api, first.json()["id"], timeout=180)
        assert run["status"] == "succeeded", run

        b = api.ok("GET", f"/v1/teams/{team}/budget", expect=(200,))
        assert b["month"] == "2027-01" and b["exceeded"] == ["month_runtime_s"], b
        assert b["used"]["runtime_seconds"] >= 2 and b["percent"]["month_runtime_s"] >= 100, b

        refused = _launch(api, sb, v, team)
        assert refused.status_code == 402, refused.text
        p = refused.json()
        assert p["code"] == "quota_exceeded" and "month_runtime_s" in p["detail"], p
        assert "2027-01" in p["detail"], p

        def january(msgs):
            out = []
            for key, value, headers in msgs:
                a = alert_of(value)
                if a["team_id"] == team and a["month"] == "2027-01":
                    out.append((a, value, headers, key))
            return out
        tail.until(lambda msgs: {a["threshold_pct"] for a, *_ in january(msgs)} >= {80, 100}, timeout=60)

        clock.set(datetime.datetime(2027, 2, 3, 9, 0, tzinfo=datetime.timezone.utc))
        assert api.ok("GET", f"/v1/teams/{team}/budget", expect=(200,))["exceeded"] == []
        accepted = _launch(api, sb, v, team)
        assert accepted.status_code == 202, accepted.text
        wait_run_status(api, accepted.json()["id"], timeout=180)

        # exactly once per threshold, however many events came after
        tail.drain(3)
        got = january(tail.msgs)
        assert sorted(a["threshold_pct"] for a, *_ in got) == [80, 100], [a for a, *_ in got]
        for a, value, headers, key in got:
            assert key == team and a["limit"] == "month_runtime_s" and a["limit_value"] == 2.0, a
            assert a["used"] >= 1.6, a
            verify_api_signature(endpoints, value, headers)
    finally:
        tail.close()


def test_budget_at_100_percent_ends_running_runs_limit_exceeded(api, endpoints, team, clock):
    clock.set(datetime.datetime(2027, 3, 10, 8, 0, tzinfo=datetime.timezone.utc))
    api.ok("PUT", f"/v1/teams/{team}/budget", json={"month_runtime_s": 6}, expect=(200,))
    r = Runs(api, team)
    long_sb = r.create_sandbox(command_spec(["sh", "-c", "sleep 150"], timeout_s=200))
    short_sb = r.create_sandbox(command_spec(["sh", "-c", "sleep 8"]))
    long_run = r.launch(long_sb, r.publish(long_sb))
    short_run = r.launch(short_sb, r.publish(short_sb))

    short = wait_run_status(api, short_run, timeout=180)
    # (on a slow node the long run's runtime alone may cross 6 s at the short
    # one's start already: then both are stopped)
    assert short["status"] in ("succeeded", "limit_exceeded"), short
    # the short run's end put the team over (its 8 s and the long run's so
    # far): the long one is stopped by the platform, not by a person
    long = wait_run_status(api, long_run, timeout=90)
    assert long["status"] == "limit_exceeded", long
    assert "team budget month_runtime_s of 6.00 reached in 2027-03" in (long.get("reason") or ""), long
    assert _launch(api, long_sb, 1, team).status_code == 402


def test_budget_lowered_below_consumption_stops_the_team_now(api, endpoints, team, clock):
    """A budget set below what the team used this month: the PUT itself stops
    the team's unfinished runs (the same transaction), queued ones included,
    and queues the 100 % alert, without waiting for more usage."""
    clock.set(datetime.datetime(2027, 4, 2, 8, 0, tzinfo=datetime.timezone.utc))
    r = Runs(api, team)
    sb = r.create_sandbox(command_spec(["sh", "-c", "sleep 150"], timeout_s=200))
    run_id = r.launch(sb, r.publish(sb))
    deadline = time.monotonic() + 120
    while api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))["status"] != "running":
        assert time.monotonic() < deadline, "the run did not start"
        time.sleep(0.5)
    time.sleep(3)
    tail = Tail(endpoints.need("PADDOCK_KAFKA_BOOTSTRAP"), TOPIC)
    try:
        b = api.ok("PUT", f"/v1/teams/{team}/budget", json={"month_runtime_s": 1}, expect=(200,))
        assert b["exceeded"] == ["month_runtime_s"] and b["used"]["active_runs"] == 1, b
        # the PUT emits the alerts itself, without waiting for more usage: no
        # run's event crossed them (env.run_id ""), the budget did
        def april(msgs):
            return [a for a in (alert_of(v) for _, v, _ in msgs) if a["team_id"] == team and a["month"] == "2027-04"]
        tail.until(lambda msgs: 100 in {a["threshold_pct"] for a in april(msgs)}, timeout=30)
        got = {a["threshold_pct"]: a for a in april(tail.msgs)}
        assert got[100]["run_id"] == "" and got[100]["limit"] == "month_runtime_s", got
        assert got[100]["limit_value"] == 1.0 and got[100]["used"] >= 1, got
    finally:
        tail.close()
    run = wait_run_status(api, run_id, timeout=60)
    assert run["status"] == "limit_exceeded", run
    assert run["reason"].startswith("team budget month_runtime_s of 1.00 reached in 2027-04"), run


def test_cli_budget_set_get(endpoints, credentials, tmp_path, team):
    cli = Cli(tmp_path / "cfg", endpoints.api)
    c = credentials
    r = cli("login", "--tenant", c["PADDOCK_TENANT"], "--user", c["PADDOCK_USER"], "--password-stdin",
            input=c["PADDOCK_PASSWORD"] + "\n")
    assert r.returncode == 0, r.stderr
    got = cli.json("budget", "set", team, "--usd", "25.5", "--runtime-s", "7200")
    assert got["limits"] == {"month_usd": 25.5, "month_tokens": None, "month_runtime_s": 7200.0}, got
    out = cli.ok("budget", "get", team)
    assert "month_usd" in out and "25.50" in out and "7200.00" in out, out
    # a bad value is a usage error (2) and changes nothing
    cli.fails(2, "budget", "set", team, "--usd", "-3")
    cli.fails(2, "budget", "set", team, "--tokens", "1.5")
    assert cli.json("budget", "get", team)["limits"]["month_usd"] == 25.5
