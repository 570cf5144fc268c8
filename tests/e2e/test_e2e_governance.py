"""GET /v1/governance/metrics (issue 14 §4, docs/CONTRACTS.md "Governance
metrics"): policy decisions by rule, team and outcome, approvals (count,
median and p95 time to a person's decision, denied share), runs per team per
day, escapes tried (platform-level denials), reviews by outcome, only of the
teams the caller may view; bad parameters 400 naming them; `paddock governance`."""

import datetime
import json
import re
import secrets
import time
import uuid

import psycopg
import pytest

from cli_support import Cli
from conftest import Api, Runs, all_events, command_spec, login, unique_name, wait_run_status


@pytest.fixture(scope="module")
def governed(api, endpoints, me, credentials):
    """A team of its own with one finished run whose .env read the platform
    refused, and three approvals a person decided after 10, 20 and 30 s."""
    team = api.ok("POST", "/v1/teams", json={"name": unique_name("gov")}, expect=(201,))["id"]
    r = Runs(api, team)
    spec = command_spec(["sh", "-c", "cat .env; cat .env; echo done"],
                        files=[{"path": ".env", "content": "X=1\n", "mode": "0644"}])
    spec["policy"] = {"rules": [{"match": {"path": "**/.env"}, "action": "deny"}]}
    run_id = r.start(spec)
    run = wait_run_status(api, run_id, timeout=180)
    assert run["status"] == "succeeded", run
    deadline = time.monotonic() + 60
    while len([e for e in all_events(api, run_id) if e["kind"] == "policy_decision"]) < 2:
        assert time.monotonic() < deadline, "the run's policy decisions were not stored"
        time.sleep(0.5)
    with psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True) as conn:
        conn.execute("SELECT set_config('paddock.tenant_id', %s, false)", (me["tenant"]["id"],))
        for secs, status in ((10, "approved"), (20, "denied"), (30, "denied")):
            conn.execute(
                "INSERT INTO api.approvals (id, run_id, tenant_id, team_id, kind, what, rule, deadline, status, "
                "decided_by, decided_at, created_at) VALUES (%s, %s, %s, %s, 'egress', '{}', 'gov', now(), %s, "
                "%s, now() - interval '40 seconds' + make_interval(secs => %s), now() - interval '40 seconds')",
                (f"gov-{uuid.uuid4().hex}", run_id, me["tenant"]["id"], team, status, f"user:{uuid.uuid4()}", secs))
    # two reviews by a reviewer of the team (not the launcher): reject, then approve
    pw = secrets.token_hex(12)
    u = api.ok("POST", "/v1/users", json={"username": unique_name("gov-rv"), "password": pw}, expect=(201,))
    api.ok("PUT", f"/v1/teams/{team}/members/{u['id']}", json={"roles": ["reviewer", "viewer"]}, expect=(200,))
    rv = Api(endpoints.api, login(endpoints, credentials["PADDOCK_TENANT"], u["username"], pw).json()["token"])
    for outcome in ("reject", "approve"):
        rv.ok("POST", f"/v1/runs/{run_id}/reviews", json={"outcome": outcome, "comment": "gov"}, expect=(201,))
    return {"team": team, "run": run_id}


def _today():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")


def test_governance_figures_of_a_team(api, governed):
    team, day = governed["team"], _today()
    m = api.ok("GET", f"/v1/governance/metrics?from={day}&to={day}&team={team}", expect=(200,))
    assert m["from"] == day and m["to"] == day, m
    dec = [d for d in m["policy_decisions"] if d["team"] == team]
    assert dec == [{"rule": "spec.policy.rules[0]", "team": team, "team_name": dec[0]["team_name"],
                    "outcome": "deny", "count": dec[0]["count"]}], m
    assert dec[0]["count"] >= 2, dec
    a = m["approvals"]
    assert (a["count"], a["approved"], a["denied"], a["pending"], a["expired"]) == (3, 1, 2, 0, 0), a
    assert abs(a["median_decision_seconds"] - 20) < 0.01 and abs(a["p95_decision_seconds"] - 29) < 0.01, a
    assert abs(a["denied_share"] - 2 / 3) < 1e-9, a
    assert m["runs_per_team_per_day"] == [{"team": team, "team_name": dec[0]["team_name"], "day": day, "runs": 1}], m
    esc = [e for e in m["escapes_tried"] if e["team"] == team]
    assert len(esc) == 1 and esc[0]["level"] == "file" and esc[0]["count"] >= 2, m
    rv = sorted((x["outcome"], x["count"]) for x in m["reviews"] if x["team"] == team)
    assert rv == [("approve", 1), ("reject", 1)], m["reviews"]


def test_governance_only_the_callers_teams(api, endpoints, credentials, governed):
    pw = secrets.token_hex(12)
    u = api.ok("POST", "/v1/users", json={"username": unique_name("gov-out"), "password": pw}, expect=(201,))
    other = api.ok("POST", "/v1/teams", json={"name": unique_name("gov-other")}, expect=(201,))["id"]
    api.ok("PUT", f"/v1/teams/{other}/members/{u['id']}", json={"roles": ["viewer"]}, expect=(200,))
    r = login(endpoints, credentials["PADDOCK_TENANT"], u["username"], pw)
    outsider = Api(endpoints.api, r.json()["token"])
    day = _today()
    m = outsider.ok("GET", f"/v1/governance/metrics?from={day}&to={day}", expect=(200,))
    seen = {d["team"] for k in ("policy_decisions", "runs_per_team_per_day", "escapes_tried", "reviews") for d in m[k]}
    assert governed["team"] not in seen and m["approvals"]["count"] == 0, m


@pytest.mark.parametrize("query,field", [("from=yesterday", "from"), ("to=2026-13-01", "to"),
                                         ("from=2026-02-02&to=2026-02-01", "from")])
def test_governance_bad_parameters(api, query, field):
    r = api.get(f"/v1/governance/metrics?{query}")
    assert r.status_code == 400 and field in r.json()["detail"], (r.status_code, r.text)


def test_cli_governance(endpoints, credentials, tmp_path, governed):
    cli = Cli(tmp_path / "cfg", endpoints.api)
    c = credentials
    assert cli("login", "--tenant", c["PADDOCK_TENANT"], "--user", c["PADDOCK_USER"], "--password-stdin",
               input=c["PADDOCK_PASSWORD"] + "\n").returncode == 0
    day = _today()
    got = cli.json("governance", "--from", day, "--to", day, "--team", governed["team"])
    assert got["approvals"]["count"] == 3, got
    out = cli.ok("governance", "--from", day, "--to", day, "--team", governed["team"])
    assert "spec.policy.rules[0]" in out and "approvals: 3 (1 approved, 2 denied" in out, out
    assert "denied 66.7%" in out, out


def test_billing_metrics_policy_decisions_by_level_and_outcome(api, endpoints, me, governed):
    """billing's /metrics counts the team's policy decisions by level and
    outcome (evidence's view policy_decision_outcomes), the same number the
    API reports."""
    from test_e2e_usage import _scrape, _series
    team, day = governed["team"], _today()
    m = api.ok("GET", f"/v1/governance/metrics?from={day}&to={day}&team={team}", expect=(200,))
    want = sum(d["count"] for d in m["policy_decisions"] if d["team"] == team and d["outcome"] == "deny")
    name = api.ok("GET", f"/v1/teams/{team}", expect=(200,))["name"]
    label = f'{{tenant="{me["tenant"]["name"]}",team="{name}",level="file",outcome="deny"}}'
    deadline = time.monotonic() + 90
    while True:
        text = _scrape(endpoints)
        s = _series(text, "paddock_governance_policy_decisions_total")
        if s.get(label) == want or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert "# TYPE paddock_governance_policy_decisions_total counter" in text
    # the team may be summed into "other" when more than 20 teams cost more
    assert s.get(label) == want or any(k.startswith('{tenant="other",team="other"') for k in s), (label, want, s)
    assert all(re.search(r'level="(hook|exec|file|egress|other)",outcome="(allow|ask|deny)"', k) for k in s), s
    teams = {k.split(",level=")[0] for k in s}
    assert len(teams) <= 21, f"team labels are not bounded: {len(teams)}"


def test_billing_metrics_policy_decisions_by_rule_bounded(api, endpoints, me):
    """billing's /metrics has policy decisions by rule per tenant with bounded
    labels (PADDOCK_BILLING_METRICS_RULES, default 20): a run whose 22 rules
    each decide once leaves the tenant more rules than that, so the tenant's
    series name at most 20 rules plus rule="other", which holds the rest."""
    from test_e2e_usage import _scrape, _series
    team = api.ok("POST", "/v1/teams", json={"name": unique_name("gov-rules")}, expect=(201,))["id"]
    n = 22
    names = [f"r{i}.env" for i in range(n)]
    spec = command_spec(["sh", "-c", " ".join(f"cat {f};" for f in names) + " echo done"],
                        files=[{"path": f, "content": "X=1\n", "mode": "0644"} for f in names])
    spec["policy"] = {"rules": [{"match": {"path": f"**/{f}"}, "action": "deny"} for f in names]}
    run_id = Runs(api, team).start(spec)
    assert wait_run_status(api, run_id, timeout=180)["status"] == "succeeded"
    deadline = time.monotonic() + 60
    while len([e for e in all_events(api, run_id) if e["kind"] == "policy_decision"]) < n:
        assert time.monotonic() < deadline, "the run's policy decisions were not stored"
        time.sleep(0.5)
    tenant = me["tenant"]["name"]
    prefix = f'{{tenant="{tenant}",'
    deadline = time.monotonic() + 90
    while True:
        text = _scrape(endpoints)
        s = {k: v for k, v in _series(text, "paddock_governance_policy_decisions_by_rule_total").items()
             if k.startswith(prefix)}
        if any('rule="other"' in k for k in s) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert "# TYPE paddock_governance_policy_decisions_by_rule_total counter" in text
    assert all(re.fullmatch(r'\{tenant="[^"]*",rule="[^"]+",outcome="(allow|ask|deny)"\}', k) for k in s), s
    rules = {re.search(r'rule="([^"]+)"', k).group(1) for k in s}
    assert "other" in rules, f"more than 20 rules decided, none summed into other: {sorted(rules)}"
    assert len(rules) <= 21, f"rule labels are not bounded: {len(rules)}"
    # nothing is lost to the bound: "other" holds at least the run's rules beyond the top 20
    assert s[f'{prefix}rule="other",outcome="deny"}}'] >= 2, s
