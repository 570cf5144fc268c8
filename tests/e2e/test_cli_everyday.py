"""The real `paddock` binary for everyday use, against the stack: run list /
launch by name / relaunch / logs (--follow) / events --kind / wait (its exit
codes) / artifacts --download (verified), sandbox list and names, approvals
list / show / approve / deny, usage; and their failures (an unknown run is
the API's error and exit 1, a bad command line exit 2)."""

import hashlib
import json
import os
import uuid

import pytest

from cli_support import Cli
from conftest import Upstream, command_spec, egress_profile, unique_name, wait_for

PY = "/usr/bin/python3"


@pytest.fixture(scope="module")
def cli(endpoints, credentials, tmp_path_factory):
    run = Cli(tmp_path_factory.mktemp("paddock-config"), endpoints.api, timeout=240)
    c = credentials
    r = run("login", "--tenant", c["PADDOCK_TENANT"], "--user", c["PADDOCK_USER"], "--password-stdin",
            input=c["PADDOCK_PASSWORD"] + "\n")
    assert r.returncode == 0, r.stderr
    return run


def ok(r, code=0):
    assert r.returncode == code, f"exit {r.returncode}, expected {code}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r


def js(r):
    ok(r)
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def team(api, team_id):
    return api.ok("GET", f"/v1/teams/{team_id}", expect=(200,))


def make_sandbox(cli, tmp_path, argv, timeout_s=60, egress=None, name=None):
    """Creates and publishes a sandbox with the CLI; returns its name."""
    name = name or unique_name("cli-ev")
    spec = command_spec(argv, timeout_s=timeout_s)
    if egress:
        spec["egress"] = egress
    f = tmp_path / f"{name}.json"
    f.write_text(json.dumps({"name": name, "spec": spec}))
    ok(cli("sandbox", "create", "-f", f))
    ok(cli("sandbox", "publish", name))
    return name


def launch(cli, sandbox, *extra):
    answer = js(cli("run", "launch", "--sandbox", sandbox, "--json", *extra))
    assert set(answer) >= {"id", "status"} and answer["status"] == "queued", answer
    return answer["id"]


# ---------------------------------------------------------------- command line


def test_help_names_the_wait_exit_codes(cli):
    h = ok(cli("run", "wait", "--help")).stdout
    for code, status in (("124", "timed_out"), ("125", "limit_exceeded"), ("126", "rejected"),
                         ("130", "cancelled"), ("75", "--timeout")):
        assert code in h and status in h, h
    assert ok(cli("help", "run", "wait")).stdout == h
    top = ok(cli("--help")).stdout
    assert "run wait" in top and "124" in top and "130" in top, top
    for group in ("approvals", "usage"):
        assert group in top, top
    for argv in (("run", "logs", "--help"), ("approvals", "approve", "--help"), ("usage", "--help"),
                 ("sandbox", "list", "--help")):
        assert ok(cli(*argv)).stdout.startswith("usage: paddock"), argv


@pytest.mark.parametrize("argv, needle", [
    (("run", "events", "x", "--kind", "output,bogus"), '"bogus"'),
    (("run", "events", "x", "--kind", ""), '""'),
    (("run", "list", "--status", "finished"), '"finished"'),
    (("run", "list", "--limit", "0"), "--limit"),
    (("run", "list", "--limit", "5", "--all"), "--all"),
    (("run", "wait", "x", "--timeout", "soon"), "--timeout"),
    (("run", "artifacts", "x", "somewhere"), "--download"),
    (("run", "launch"), "--sandbox"),
    (("run", "launch", "--sandbox", "a/b"), "a/b"),
    (("run", "logs"), "ID"),
    (("approvals", "list", "--status", "maybe"), '"maybe"'),
    (("approvals", "show", "no/such"), "no/such"),
    (("usage", "--group-by", "week"), '"week"'),
    (("sandbox", "list", "--bogus"), "--bogus"),
])
def test_usage_errors_exit_2(cli, argv, needle):
    r = cli(*argv)
    assert r.returncode == 2, f"{argv}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert needle in r.stderr, r.stderr


def test_unknown_run_is_the_apis_error(cli):
    missing = str(uuid.uuid4())
    for argv in (("run", "show", missing), ("run", "wait", missing), ("run", "logs", missing),
                 ("run", "events", missing), ("run", "artifacts", missing), ("run", "relaunch", missing),
                 ("run", "logs", missing, "--follow")):
        r = cli(*argv)
        assert r.returncode == 1, f"{argv}: exit {r.returncode}\n{r.stderr}"
        assert "error:" in r.stderr and "(not_found)" in r.stderr, (argv, r.stderr)
    r = cli("approvals", "show", "no-such-approval")
    assert r.returncode == 1 and "(not_found)" in r.stderr, r.stderr
    r = cli("run", "launch", "--sandbox", unique_name("no-such-sandbox"))
    assert r.returncode == 1 and "error:" in r.stderr, r.stderr


# ---------------------------------------------------------------- sandboxes by name


def test_sandbox_names_list_and_unchanged_publish(cli, tmp_path, team):
    name = unique_name("cli-ev-sb")
    f = tmp_path / "sb.json"
    f.write_text(json.dumps({"name": name, "spec": command_spec(["/bin/true"])}))
    sid = ok(cli("sandbox", "create", "-f", f, "--team", team["name"])).stdout.strip()
    assert js(cli("sandbox", "show", name))["id"] == sid

    assert ok(cli("sandbox", "publish", name)).stdout.strip() == "1"
    r = ok(cli("sandbox", "publish", name))
    assert r.stdout.strip() == "1", r.stdout
    assert "kept the existing version 1" in r.stderr, r.stderr
    answer = js(cli("sandbox", "publish", name, "--json"))
    assert answer["version"] == 1 and answer["unchanged"] is True, answer

    assert js(cli("sandbox", "version", name, "1"))["version"] == 1
    assert js(cli("sandbox", "policy", name, "1"))
    draft = tmp_path / "draft.json"
    draft.write_text(json.dumps({"spec": command_spec(["/bin/echo", "v2"])}))
    ok(cli("sandbox", "draft", name, "--file", draft))
    assert ok(cli("sandbox", "publish", name)).stdout.strip() == "2"

    listed = js(cli("sandbox", "list", "--name", name, "--json"))
    assert listed["next_cursor"] is None and [s["id"] for s in listed["items"]] == [sid], listed
    assert listed["items"][0]["latest_version"] == 2, listed
    # --json before the command means the same
    assert js(cli("--json", "sandbox", "list", "--name", name)) == listed
    table = ok(cli("sandbox", "list", "--team", team["name"], "--all")).stdout
    row = [l for l in table.splitlines() if name in l]
    assert len(row) == 1 and sid in row[0] and team["name"] in row[0] and " 2 " in row[0] + " ", table
    assert ok(cli("sandbox", "list", "--name", unique_name("none"))).stdout.strip() == "no sandboxes"


# ---------------------------------------------------------------- runs


OUT_SCRIPT = "printf 'alpha\\nbeta\\n'; printf 'to-err\\n' >&2; printf 'no newline'; echo x > made.txt"


def test_launch_by_name_wait_logs_events_list(cli, tmp_path, team):
    name = make_sandbox(cli, tmp_path, ["/bin/sh", "-c", OUT_SCRIPT])
    run_id = launch(cli, name)
    r = ok(cli("run", "wait", run_id))
    assert f"run {run_id} succeeded" in r.stderr, r.stderr

    # logs: the agent's bytes, each stream to its own, no decoration. A run
    # shown ended has its whole history stored (issue 10): nothing to wait for
    r = ok(cli("run", "logs", run_id))
    assert r.stdout == "alpha\nbeta\nno newline", repr(r.stdout)
    assert r.stderr == "to-err\n", repr(r.stderr)
    lines = [json.loads(l) for l in ok(cli("run", "logs", run_id, "--json")).stdout.splitlines()]
    assert lines and all(e["kind"] == "output" for e in lines), lines
    assert "".join(e["data"]["text"] for e in lines if e["data"]["stream"] == "stdout") == "alpha\nbeta\nno newline"

    # events --kind: repeated and comma-separated; the history holds the end
    evs = [json.loads(l) for l in ok(cli("run", "events", run_id, "--kind", "status,exec", "--kind", "usage",
                                         "--json")).stdout.splitlines()]
    assert evs and evs[-1]["kind"] == "status" and evs[-1]["data"].get("status") == "succeeded", evs
    assert evs and {e["kind"] for e in evs} == {"status", "exec", "usage"}, evs
    assert [e["seq"] for e in evs] == sorted(e["seq"] for e in evs)
    everything = [json.loads(l) for l in ok(cli("run", "events", run_id, "--json")).stdout.splitlines()]
    assert len(everything) > len(evs) and [e for e in everything if e["kind"] in ("status", "exec", "usage")] == evs
    human = ok(cli("run", "events", run_id, "--kind", "status")).stdout.splitlines()
    assert human and all(" status " in l for l in human), human

    # the run, found by the list's filters (team by name, sandbox by name)
    listed = js(cli("run", "list", "--sandbox", name, "--team", team["name"], "--status", "succeeded", "--json"))
    assert [x["id"] for x in listed["items"]] == [run_id] and listed["next_cursor"] is None, listed
    assert listed["items"][0]["exit_code"] == 0 and listed["items"][0]["sandbox_name"] == name
    assert js(cli("run", "list", "--sandbox", name, "--status", "failed,cancelled", "--json"))["items"] == []
    table = ok(cli("run", "list", "--sandbox", name)).stdout.splitlines()
    assert table[0].split()[:2] == ["ID", "STATUS"] and run_id in table[1] and "succeeded" in table[1], table
    assert js(cli("--json", "run", "show", run_id))["status"] == "succeeded"


def test_run_list_follows_pages_up_to_limit(cli, tmp_path):
    name = make_sandbox(cli, tmp_path, ["/bin/true"])
    ids = [launch(cli, name) for _ in range(3)]
    for rid in ids:
        ok(cli("run", "wait", rid))
    two = js(cli("run", "list", "--sandbox", name, "--limit", "2", "--json"))
    assert [x["id"] for x in two["items"]] == ids[::-1][:2], two  # newest first
    assert two["next_cursor"], two
    everything = js(cli("run", "list", "--sandbox", name, "--all", "--json"))
    assert [x["id"] for x in everything["items"]] == ids[::-1] and everything["next_cursor"] is None
    r = ok(cli("run", "list", "--sandbox", name, "--limit", "1"))
    assert len(r.stdout.splitlines()) == 2 and "more runs" in r.stderr, (r.stdout, r.stderr)


def test_wait_exit_codes(cli, tmp_path):
    failed = launch(cli, make_sandbox(cli, tmp_path, ["/bin/sh", "-c", "echo failing; exit 3"]))
    timed_out = launch(cli, make_sandbox(cli, tmp_path, ["/bin/sh", "-c", "exec sleep 120"], timeout_s=2))
    sleeper = launch(cli, make_sandbox(cli, tmp_path, ["/bin/sh", "-c", "exec sleep 120"], timeout_s=300))

    r = cli("run", "wait", sleeper, "--timeout", "1")
    assert r.returncode == 75 and "still" in r.stderr, (r.returncode, r.stderr)
    ok(cli("run", "cancel", sleeper, "--reason", "cli everyday test"))
    r = cli("run", "wait", sleeper, "--json")
    assert r.returncode == 130, (r.returncode, r.stderr)
    assert json.loads(r.stdout)["status"] == "cancelled"

    r = cli("run", "wait", failed)
    assert r.returncode == 3, (r.returncode, r.stderr)
    assert "failed (exit code 3)" in r.stderr, r.stderr
    r = cli("run", "wait", timed_out)
    assert r.returncode == 124, (r.returncode, r.stderr)
    assert "timed_out" in r.stderr


FOLLOW_SCRIPT = "i=1; while [ $i -le 40 ]; do echo line-$i; [ $((i % 10)) = 0 ] && echo err-$i >&2; " \
                "sleep 0.1; i=$((i+1)); done"


def test_logs_follow_sees_every_line_once(cli, tmp_path):
    run_id = launch(cli, make_sandbox(cli, tmp_path, ["/bin/sh", "-c", FOLLOW_SCRIPT]))
    # join while the run is under way: part from history, the rest live
    wait_for("the first output lines", lambda: "line-3\n" in ok(cli("run", "logs", run_id)).stdout, timeout=90,
             pause=0.2)
    r = ok(cli("run", "logs", run_id, "--follow", timeout=120))
    assert r.stdout == "".join(f"line-{i}\n" for i in range(1, 41)), r.stdout
    assert r.stderr == "err-10\nerr-20\nerr-30\nerr-40\n", r.stderr
    # and from the start, before anything ran
    run2 = launch(cli, make_sandbox(cli, tmp_path, ["/bin/sh", "-c", FOLLOW_SCRIPT]))
    r = ok(cli("run", "logs", run2, "-f", timeout=120))
    assert r.stdout == "".join(f"line-{i}\n" for i in range(1, 41)), r.stdout


def _s3():
    import boto3
    return boto3.client("s3", endpoint_url=os.environ["PADDOCK_S3_ENDPOINT"],
                        aws_access_key_id=os.environ["PADDOCK_S3_ACCESS_KEY"],
                        aws_secret_access_key=os.environ["PADDOCK_S3_SECRET_KEY"],
                        region_name=os.environ.get("PADDOCK_S3_REGION", "us-east-1"))


def test_artifacts_download_verified(cli, tmp_path, tenant_id):
    run_id = launch(cli, make_sandbox(cli, tmp_path, ["/bin/sh", "-c", "echo hello > made.txt"]))
    ok(cli("run", "wait", run_id))
    manifest = wait_for("the artifact manifest",
                        lambda: js(cli("run", "artifacts", run_id, "--json"))["items"], timeout=30)
    entry = {a["name"]: a for a in manifest}["workspace.diff"]

    # default directory: ./<run id>/
    r = ok(cli("run", "artifacts", run_id, "--download", cwd=tmp_path))
    got = (tmp_path / run_id / "workspace.diff").read_bytes()
    assert hashlib.sha256(got).hexdigest() == entry["sha256"] and len(got) == entry["size"]
    assert b"made.txt" in got and "verified" in r.stdout, r.stdout
    assert not [p for p in (tmp_path / run_id).iterdir() if p.name != "workspace.diff"]
    # a directory given, and --json prints the manifest
    out = tmp_path / "given"
    assert js(cli("run", "artifacts", run_id, "--download", out, "--json"))["items"] == manifest
    assert (out / "workspace.diff").read_bytes() == got

    # the stored object altered behind the manifest's back: refused, nothing kept
    key = f"tenants/{tenant_id}/runs/{run_id}/workspace.diff"
    s3 = _s3()
    s3.put_object(Bucket=os.environ["PADDOCK_S3_BUCKET"], Key=key, Body=got.replace(b"hello", b"HELLO"))
    bad = tmp_path / "bad"
    r = cli("run", "artifacts", run_id, "--download", bad)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "workspace.diff" in r.stderr and "SHA-256 mismatch" in r.stderr, r.stderr
    assert list(bad.iterdir()) == [], list(bad.iterdir())
    s3.put_object(Bucket=os.environ["PADDOCK_S3_BUCKET"], Key=key, Body=got)


def test_relaunch(cli, tmp_path):
    name = make_sandbox(cli, tmp_path, ["/bin/sh", "-c", "echo again"])
    first = launch(cli, name)
    ok(cli("run", "wait", first))
    answer = js(cli("run", "relaunch", first, "--json"))
    assert answer["status"] == "queued" and answer["relaunch_of"] == first and answer["id"] != first, answer
    ok(cli("run", "wait", answer["id"]))
    again = js(cli("run", "show", answer["id"]))
    original = js(cli("run", "show", first))
    assert (again["sandbox"], again["version"], again["team"]) == (original["sandbox"], original["version"],
                                                                   original["team"])
    # --watch streams it; the plain form prints the id
    r = ok(cli("run", "relaunch", first, "--watch"))
    assert "again" in r.stdout and "succeeded" in r.stderr, (r.stdout, r.stderr)


# ---------------------------------------------------------------- approvals


@pytest.fixture
def upstream():
    u = Upstream()
    yield u
    u.close()


PROBE_ASK = r"""
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen("http://%s:%s/asked" % (sys.argv[2], sys.argv[1]), timeout=120) as r:
        print("asked", r.status)
except urllib.error.HTTPError as e:
    print("asked", e.code)
"""


def _pending_for(cli, run_id, team_name):
    items = js(cli("approvals", "list", "--status", "pending", "--team", team_name, "--all", "--json"))["items"]
    return [a for a in items if a["run"] == run_id]


@pytest.mark.parametrize("decision", ["approve", "deny"])
def test_approvals_list_show_decide(cli, api, tmp_path, team, upstream, decision, endpoints, credentials,
                                    second_approver, tmp_path_factory):
    # the name matches no rule (asked for); the approved profile's IP rule lets
    # its address in the test network (198.18.0.0/15, not public) through
    name = make_sandbox(cli, tmp_path, [PY, "-c", PROBE_ASK, str(upstream.port), upstream.name], timeout_s=150,
                        egress={"profiles": [egress_profile(api, [upstream.hostport])], "unknown": "ask"})
    run_id = launch(cli, name)
    pending = wait_for("the run's approval", lambda: _pending_for(cli, run_id, team["name"]), timeout=90)
    assert len(pending) == 1
    approval = pending[0]
    # every field the proxy sent but approval_id, deadline and timeout_s
    assert approval["what"] == {"kind": "egress", "host": upstream.name, "port": upstream.port}, approval

    table = ok(cli("approvals", "list", "--status", "pending")).stdout
    row = [l for l in table.splitlines() if approval["id"] in l]
    assert row and upstream.nameport in row[0] and team["name"] in row[0], table
    # context is read from the stored history at each GET: it may have grown
    def same(a, b):
        return {k: v for k, v in a.items() if k != "context"} == {k: v for k, v in b.items() if k != "context"}
    assert same(js(cli("approvals", "show", approval["id"], "--json")), approval)
    # the endpoint behind it, through the OpenAPI-validating client
    assert same(api.ok("GET", f"/v1/approvals/{approval['id']}", expect=(200,)), approval)
    by_team = api.ok("GET", "/v1/approvals", params={"team": team["id"], "status": "pending"}, expect=(200,))
    assert approval["id"] in [a["id"] for a in by_team["items"]], by_team
    shown = ok(cli("approvals", "show", approval["id"])).stdout
    assert f"what:       {upstream.nameport}" in shown and f"run:        {run_id}" in shown, shown
    assert "pending" in shown

    # four eyes: the launcher's decision is the API's 403; another approver decides
    r = cli("approvals", decision, approval["id"])
    assert r.returncode != 0 and "(forbidden)" in r.stderr and "four eyes" in r.stderr, r.stderr
    other = Cli(tmp_path_factory.mktemp("paddock-config"), endpoints.api, timeout=240)
    ok(other("login", "--tenant", credentials["PADDOCK_TENANT"], "--user", second_approver[1], "--password-stdin",
             input=second_approver[2] + "\n"))
    r = ok(other("approvals", decision, approval["id"], "--comment", f"cli {decision}"))
    status = "approved" if decision == "approve" else "denied"
    assert f"approval {approval['id']} {status}" in r.stdout, r.stdout
    decided = js(cli("approvals", "show", approval["id"], "--json"))
    assert decided["status"] == status and decided["comment"] == f"cli {decision}", decided
    # deciding twice is the API's conflict
    r = cli("approvals", "approve", approval["id"])
    assert r.returncode == 1 and "(conflict)" in r.stderr, r.stderr

    ok(cli("run", "wait", run_id, timeout=200))
    out = wait_for("the probe's output", lambda: ok(cli("run", "logs", run_id)).stdout, timeout=30)
    if decision == "approve":
        assert out.strip() == "asked 200" and upstream.paths() == ["/asked"], (out, upstream.paths())
    else:
        assert out.startswith("asked 4") and upstream.paths() == [], (out, upstream.paths())
    assert js(cli("approvals", "list", "--status", status, "--team", team["name"], "--all", "--json"))["items"]


def test_approvals_list_team_filter_refuses_unknown_team(cli, api):
    r = cli("approvals", "list", "--team", unique_name("no-such-team"))
    assert r.returncode == 1 and "(invalid_field)" in r.stderr and "team" in r.stderr, r.stderr
    for bad in (unique_name("no-such-team"), str(uuid.uuid4()), ""):
        r = api.get("/v1/approvals", params={"team": bad})
        assert r.status_code == 400 and r.json()["code"] == "invalid_field", r.text
        assert r.json()["detail"].startswith("team"), r.text
    r = api.get(f"/v1/approvals/{uuid.uuid4()}")
    assert r.status_code == 404 and r.json()["code"] == "not_found", r.text


# ---------------------------------------------------------------- usage


def test_usage_table_and_json(cli, tmp_path, team):
    run_id = launch(cli, make_sandbox(cli, tmp_path, ["/bin/sh", "-c", "sleep 1"]))
    ok(cli("run", "wait", run_id))

    def counted():
        u = js(cli("usage", "--group-by", "team", "--team", team["name"], "--json"))
        return u if u["items"] and u["totals"]["runs"] >= 1 else None
    u = wait_for("billing to count the run", counted, timeout=60)
    assert u["group_by"] == "team" and len(u["items"]) == 1, u
    table = ok(cli("usage", "--group-by", "team", "--team", team["name"])).stdout
    lines = table.splitlines()
    assert any(l.startswith("TEAM") and "COST_USD" in l for l in lines), table
    assert any(l.startswith(team["name"]) for l in lines), table
    total = [l for l in lines if l.startswith("TOTAL")]
    assert total and total[0].split()[1] == str(u["totals"]["runs"]), table
    by_day = js(cli("--json", "usage", "--group-by", "day"))
    assert by_day["group_by"] == "day" and by_day["items"], by_day
