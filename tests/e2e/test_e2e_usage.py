"""GET /v1/usage (issue 14 §4, docs/CONTRACTS.md "Usage"): group_by
definition, the cache figures of every grouping, the live part (runs not
ended yet, per team), 400 naming the parameter, and `paddock usage export`
as RFC 4180 CSV for finance."""

import csv
import datetime
import io
import json
import pathlib
import re
import subprocess
import time

import pytest
import requests

from cli_support import Cli
from conftest import Runs, command_spec, unique_name, wait_run_status


@pytest.fixture(scope="module")
def used(api):
    """A team of its own with one finished run that billing recorded."""
    team = api.ok("POST", "/v1/teams", json={"name": unique_name("usage")}, expect=(201,))
    r = Runs(api, team["id"])
    sb = r.create_sandbox(command_spec(["sh", "-c", "sleep 1; echo hi"]), name=unique_name("usage-def"))
    run = wait_run_status(api, r.launch(sb, r.publish(sb)), timeout=180)
    assert run["status"] == "succeeded", run
    deadline = time.monotonic() + 60
    while api.ok("GET", f"/v1/usage?team={team['id']}", expect=(200,))["totals"]["runs"] < 1:
        assert time.monotonic() < deadline, "billing did not record the run"
        time.sleep(0.5)
    return {"team": team, "sandbox": sb}


def test_group_by_definition_and_cache_figures(api, used):
    t = used["team"]["id"]
    by_def = api.ok("GET", f"/v1/usage?team={t}&group_by=definition", expect=(200,))
    by_sb = api.ok("GET", f"/v1/usage?team={t}&group_by=sandbox", expect=(200,))
    assert by_def["group_by"] == "definition" and len(by_def["items"]) == 1, by_def
    item = by_def["items"][0]
    assert item["definition"] == used["sandbox"] and item["definition_name"] == by_sb["items"][0]["sandbox_name"]
    for k in ("runs", "runtime_seconds", "tokens_in", "tokens_out", "egress_bytes", "cost_usd",
              "cache_read_tokens", "cache_write_tokens"):
        assert item[k] == by_sb["items"][0][k], k
    assert item["runs"] == 1 and item["runtime_seconds"] >= 1, item
    by_team = api.ok("GET", f"/v1/usage?team={t}&group_by=team", expect=(200,))
    assert by_team["items"][0]["cache_read_tokens"] == 0 and by_team["totals"]["cache_write_tokens"] == 0


@pytest.mark.parametrize("query,field", [("group_by=week", "group_by"), ("from=soon", "from"),
                                         ("to=2026-02-30x", "to"), ("from=2026-03-02&to=2026-03-01", "from")])
def test_bad_parameters_name_the_field(api, query, field):
    r = api.get(f"/v1/usage?{query}")
    assert r.status_code == 400 and field in r.json()["detail"], (r.status_code, r.text)


def test_live_part_counts_running_runs_per_team(api):
    team = api.ok("POST", "/v1/teams", json={"name": unique_name("usage-live")}, expect=(201,))["id"]
    r = Runs(api, team)
    run_id = r.start(command_spec(["sh", "-c", "sleep 120"], timeout_s=150))
    try:
        deadline = time.monotonic() + 120
        while api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))["status"] != "running":
            assert time.monotonic() < deadline, "the run did not start"
            time.sleep(0.5)
        time.sleep(1)
        u = api.ok("GET", f"/v1/usage?team={team}", expect=(200,))
        assert u["live"]["active_runs"] == 1, u
        (lt,) = u["live"]["teams"]
        assert lt["team"] == team and lt["active_runs"] == 1 and lt["runtime_seconds"] >= 1, lt
        # not in the exact part until it ends and billing records it
        assert u["totals"]["runs"] == 0, u
        # the tenant-wide view has it too
        everyone = api.ok("GET", "/v1/usage", expect=(200,))["live"]
        assert any(x["team"] == team for x in everyone["teams"]) and everyone["active_runs"] >= 1
    finally:
        api.post(f"/v1/runs/{run_id}/cancel", json={})
    wait_run_status(api, run_id, timeout=60)
    assert api.ok("GET", f"/v1/usage?team={team}", expect=(200,))["live"] == {"active_runs": 0, "teams": []}


def test_cli_usage_export_is_rfc4180_csv(endpoints, credentials, tmp_path, api, used):
    cli = Cli(tmp_path / "cfg", endpoints.api)
    c = credentials
    assert cli("login", "--tenant", c["PADDOCK_TENANT"], "--user", c["PADDOCK_USER"], "--password-stdin",
               input=c["PADDOCK_PASSWORD"] + "\n").returncode == 0
    t = used["team"]["id"]
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    # bytes as written (text mode would turn CRLF into LF)
    r = subprocess.run([cli.binary, "usage", "export", "--from", today, "--to", today, "--group-by", "team",
                        "--team", t], capture_output=True, env=cli.env, cwd="/", timeout=120)
    assert r.returncode == 0, r.stderr
    raw = r.stdout.decode()
    assert raw.endswith("\r\n") and "\n" not in raw.replace("\r\n", ""), repr(raw[:300])
    rows = list(csv.reader(io.StringIO(raw, newline="")))
    assert rows[0] == ["from", "to", "team", "team_name", "runs", "runtime_seconds", "tokens_in", "tokens_out",
                       "cache_read_tokens", "cache_write_tokens", "egress_bytes", "cost_usd", "cpu_seconds"], rows[0]
    assert len(rows) == 2, rows
    want = api.ok("GET", f"/v1/usage?from={today}&to={today}&group_by=team&team={t}", expect=(200,))["items"][0]
    row = dict(zip(rows[0], rows[1]))
    assert row["team"] == t and row["team_name"] == used["team"]["name"], row
    assert int(row["runs"]) == want["runs"] and abs(float(row["runtime_seconds"]) - want["runtime_seconds"]) < 1e-5
    assert float(row["cost_usd"]) == pytest.approx(want["cost_usd"], abs=1e-6)
    assert float(row["cpu_seconds"]) == pytest.approx(want["cpu_seconds"], abs=1e-5)
    assert (row["from"], row["to"]) == (today, today)
    # an unknown action is a usage error
    assert cli("usage", "exprot").returncode == 2


def test_cpu_seconds_of_a_busy_and_an_idle_run(api):
    """cpu_seconds is the sandbox cgroup's CPU time, not the wall clock: a run
    that spins for about 2 s of CPU counts over 1 s, one that sleeps 2 s
    nearly none, though both ran about as long."""
    team = api.ok("POST", "/v1/teams", json={"name": unique_name("cpu")}, expect=(201,))
    r = Runs(api, team["id"])
    busy = r.start(command_spec(["/usr/bin/python3", "-c",
                                 "import time\nt = time.process_time()\nwhile time.process_time() - t < 2.0: pass"]))
    assert wait_run_status(api, busy, timeout=180)["status"] == "succeeded"
    other = api.ok("POST", "/v1/teams", json={"name": unique_name("cpu-idle")}, expect=(201,))
    idle = Runs(api, other["id"]).start(command_spec(["sh", "-c", "sleep 2"]))
    assert wait_run_status(api, idle, timeout=180)["status"] == "succeeded"

    def recorded(t):
        deadline = time.monotonic() + 60
        while True:
            u = api.ok("GET", f"/v1/usage?team={t}", expect=(200,))["totals"]
            if u["runs"] >= 1 or time.monotonic() > deadline:
                return u
            time.sleep(0.5)

    b, i = recorded(team["id"]), recorded(other["id"])
    assert b["runs"] == 1 and i["runs"] == 1, (b, i)
    assert 1.0 < b["cpu_seconds"] < b["runtime_seconds"] + 1.0, b
    assert i["cpu_seconds"] < 0.5 < i["runtime_seconds"], i
    by_model = api.ok("GET", f"/v1/usage?team={team['id']}&group_by=model", expect=(200,))["totals"]
    assert by_model["cpu_seconds"] == 0, by_model


# ---------------------------------------------------------------- billing's /metrics and the dashboard

DASHBOARD = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "paddock-dashboard.json"


def _scrape(endpoints):
    r = requests.get(endpoints.need("PADDOCK_BILLING_OPS_URL") + "/metrics", timeout=10)
    assert r.status_code == 200, r.status_code
    return r.text


def _series(text, name):
    """{labels-string: value} of the samples of family name."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+)(\{[^}]*\})? (\S+)$", line)
        if m and m.group(1) == name:
            out[m.group(2) or ""] = float(m.group(3))
    return out


def test_billing_metrics_per_team_bounded(endpoints, api, me, used):
    name = used["team"]["name"]
    label = f'{{tenant="{me["tenant"]["name"]}",team="{name}"}}'
    deadline = time.monotonic() + 60
    while True:
        text = _scrape(endpoints)
        runs = _series(text, "paddock_usage_runs_total")
        if runs.get(label, 0) >= 1 or time.monotonic() > deadline:
            break
        time.sleep(1)
    # the team recorded one run; it may be summed into "other" when more than
    # PADDOCK_BILLING_METRICS_TEAMS (20) teams cost more
    assert runs.get(label, 0) >= 1 or '{tenant="other",team="other"}' in runs, sorted(runs)[:30]
    assert len(runs) <= 21, f"team labels are not bounded: {len(runs)} series"
    for fam in ("paddock_usage_cost_usd_total", "paddock_usage_runtime_seconds_total",
                "paddock_governance_runs_launched_total", "paddock_runs_active"):
        s = _series(text, fam)
        assert s and len(s) <= 21, (fam, len(s))
    assert "# TYPE paddock_usage_tokens_total counter" in text
    assert all('direction="' in k for k in _series(text, "paddock_usage_tokens_total"))


def test_grafana_dashboard_uses_only_exported_metrics(endpoints, used):
    d = json.loads(DASHBOARD.read_text())
    assert d["title"] and d["uid"] and isinstance(d["schemaVersion"], int) and d["panels"], d.keys()
    exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in d["templating"]["list"] if "definition" in v]
    used_names = set(re.findall(r"\bpaddock_[a-z_]+\b", " ".join(exprs)))
    assert len(used_names) >= 8, used_names
    text = _scrape(endpoints)
    exported = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    missing = used_names - exported
    assert not missing, f"the dashboard uses metrics billing does not export: {sorted(missing)}"
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
