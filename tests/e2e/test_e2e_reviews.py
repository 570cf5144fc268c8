"""Reviews of finished runs (issue 14 §1, docs/CONTRACTS.md "Reviews and the
signed evidence bundle"): a reviewer of the run's team who did not launch
it approves, rejects or escalates a finished run; the latest outcome shows
on the run and in the runs list; every review is audited and appended to
the run's history as an event of kind `review` (actor user:<id>), signed by
the api and stored by evidence after the run's last seq. Evidence takes
seq-0 appends from the api for kind review only. Through the API, the CLI
and the bus; only loopback traffic."""

import datetime
import json
import pathlib
import re
import secrets
import time
import uuid

import pytest
import requests

from cli_support import Cli
from conftest import (TERMINAL, Api, BusSigner, all_events, audit_all, bootstrap_tenant, command_spec, login, pb_field,
                      pb_varint, read_env_file, state_dir, unique_name, wait_for)

EVENTS = "paddock.runs.events"


def _user(endpoints, credentials, api, team, roles):
    pw = secrets.token_hex(12)
    u = api.ok("POST", "/v1/users", json={"username": unique_name("rev"), "password": pw}, expect=(201,))
    if roles:
        api.ok("PUT", f"/v1/teams/{team}/members/{u['id']}", json={"roles": roles}, expect=(200,))
    r = login(endpoints, credentials["PADDOCK_TENANT"], u["username"], pw)
    assert r.status_code == 200, r.text[:300]
    return {"id": u["id"], "username": u["username"], "password": pw, "api": Api(endpoints.api, r.json()["token"])}


def _finished(api, run_id, timeout=180):
    def done():
        run = api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))
        return run if run["status"] in TERMINAL else None
    return wait_for(f"run {run_id} to finish with its whole history", done, timeout=timeout)


@pytest.fixture(scope="module")
def world(endpoints, credentials, api, team_id, runs):
    """A finished run the admin launched, a reviewer and a viewer of its team."""
    since = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    run_id = runs.start(command_spec(["sh", "-c", "echo reviewed-run-output"]))
    run = _finished(api, run_id)
    assert run["review"] is None, run
    return {"run": run_id, "since": since,
            "reviewer": _user(endpoints, credentials, api, team_id, ["reviewer"]),
            "viewer": _user(endpoints, credentials, api, team_id, ["viewer"])}


def _reviews(api, run_id):
    return api.ok("GET", f"/v1/runs/{run_id}/reviews", expect=(200,))["items"]


def test_bad_input_is_400_naming_the_field_and_changes_nothing(world, api):
    rv, run_id = world["reviewer"]["api"], world["run"]
    cases = [
        ({}, "missing_field", "outcome"),
        ({"outcome": "maybe"}, "invalid_field", "outcome"),
        ({"outcome": 1}, "invalid_field", "outcome"),
        ({"outcome": "escalate"}, "missing_field", "to"),
        ({"outcome": "escalate", "to": "no_such_role"}, "invalid_field", "to"),
        ({"outcome": "escalate", "to": str(uuid.uuid4())}, "invalid_field", "to"),
        ({"outcome": "approve", "to": "reviewer"}, "invalid_field", "to"),
        ({"outcome": "approve", "comment": "x" * 4097}, "invalid_field", "comment"),
        ({"outcome": "approve", "comment": 5}, "invalid_field", "comment"),
        ({"outcome": "approve", "verdict": "ok"}, "unknown_field", "verdict"),
    ]
    for body, code, field in cases:
        r = rv.post(f"/v1/runs/{run_id}/reviews", json=body)
        assert r.status_code == 400, (body, r.status_code, r.text)
        assert r.json()["code"] == code and field in r.json()["detail"], (body, r.json())
    r = rv.post(f"/v1/runs/{run_id}/reviews", data="{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert _reviews(api, run_id) == []
    assert api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))["review"] is None


def test_launcher_viewer_and_unfinished_runs_are_refused(world, api, runs):
    run_id = world["run"]
    # the admin launched it: four eyes, whatever roles it holds
    r = api.post(f"/v1/runs/{run_id}/reviews", json={"outcome": "approve"})
    assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text
    assert "launched" in r.json()["detail"], r.json()
    # a viewer of the team is not a reviewer
    r = world["viewer"]["api"].post(f"/v1/runs/{run_id}/reviews", json={"outcome": "approve"})
    assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text
    assert "reviewer" in r.json()["detail"], r.json()
    # a run still going is not reviewed
    live = runs.start(command_spec(["sleep", "30"], timeout_s=60))
    r = world["reviewer"]["api"].post(f"/v1/runs/{live}/reviews", json={"outcome": "approve"})
    assert r.status_code == 409 and r.json()["code"] == "conflict", r.text
    api.ok("POST", f"/v1/runs/{live}/cancel", json={}, expect=(200, 202, 409))
    # a run that does not exist
    r = world["reviewer"]["api"].post(f"/v1/runs/{uuid.uuid4()}/reviews", json={"outcome": "approve"})
    assert r.status_code == 404, r.text
    assert _reviews(api, run_id) == []


def test_review_shows_on_the_run_in_lists_in_history_and_audit(world, api, team_id):
    rv, run_id = world["reviewer"], world["run"]
    before = all_events(api, run_id)
    last_seq = before[-1]["seq"]
    assert [e["seq"] for e in before] == list(range(1, last_seq + 1))

    r = rv["api"].ok("POST", f"/v1/runs/{run_id}/reviews", json={"outcome": "approve", "comment": "looks right"},
                     expect=(201,))
    assert r["outcome"] == "approve" and r["comment"] == "looks right" and r["to"] is None, r
    assert r["by"] == {"id": rv["id"], "username": rv["username"]} and r["run"] == run_id, r
    run = api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))
    assert run["review"]["outcome"] == "approve" and run["review"]["by"] == rv["id"], run["review"]

    # the list shows it and filters on it
    def listed(review):
        return {x["id"]: x for x in api.ok("GET", "/v1/runs", params={"team": team_id, "review": review, "limit": 1000},
                                             expect=(200,))["items"]}
    assert listed("approve")[run_id]["review"]["outcome"] == "approve"
    assert run_id not in listed("none") and run_id not in listed("reject")
    bad = api.get("/v1/runs", params={"review": "maybe"})
    assert bad.status_code == 400 and "review" in bad.json()["detail"], bad.text

    # an escalation to a role supersedes it as the latest outcome
    r2 = rv["api"].ok("POST", f"/v1/runs/{run_id}/reviews",
                      json={"outcome": "escalate", "to": "security_admin", "comment": "touches auth"}, expect=(201,))
    assert r2["to"] == "security_admin"
    assert api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))["review"]["outcome"] == "escalate"
    items = world["viewer"]["api"].ok("GET", f"/v1/runs/{run_id}/reviews", expect=(200,))["items"]
    assert [(x["id"], x["outcome"]) for x in items] == [(r["id"], "approve"), (r2["id"], "escalate")]

    # each one an event of kind review after the run's last seq, contiguous
    def reviewed():
        evs = all_events(api, run_id)
        return evs if len([e for e in evs if e["kind"] == "review"]) == 2 else None
    evs = wait_for("the review events in the run's history", reviewed, timeout=60)
    assert [e["seq"] for e in evs] == list(range(1, last_seq + 3)), [e["seq"] for e in evs]
    revs = [e for e in evs if e["kind"] == "review"]
    assert [e["seq"] for e in revs] == [last_seq + 1, last_seq + 2]
    assert all(e["actor"] == f"user:{rv['id']}" for e in revs), revs
    assert [e["data"]["outcome"] for e in revs] == ["approve", "escalate"]
    assert revs[0]["data"]["review"] == r["id"] and revs[1]["data"]["to"] == "security_admin"
    # signed by the api
    page = api.ok("GET", f"/v1/runs/{run_id}/events", params={"after": last_seq, "include": "signature"},
                  expect=(200,))
    assert [e["signer"] for e in page["items"]] == ["api", "api"], page["items"]
    # the run stays finished with its history complete
    run = api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))
    assert run["status"] == "succeeded" and run["history"]["complete"], run

    # audited, one record each
    def audited():
        items = audit_all(api, since=world["since"])
        got = [a for a in items if a["action"] == "run.review" and a["object_id"] == run_id]
        return got if len(got) == 2 else None
    recs = wait_for("the run.review audit records", audited, timeout=60)
    assert all(a["actor"] == f"user:{rv['id']}" and a["object_type"] == "run" for a in recs), recs


def test_another_tenants_run_is_404(world, endpoints):
    name = unique_name("rev-other")
    pw = bootstrap_tenant(name, "oadmin")
    r = login(endpoints, name, "oadmin", pw)
    other = Api(endpoints.api, r.json()["token"])
    for method, path, body in (("POST", "reviews", {"outcome": "approve"}), ("GET", "reviews", None)):
        r = other.request(method, f"/v1/runs/{world['run']}/{path}", json=body)
        assert r.status_code == 404 and r.json()["code"] == "not_found", (method, r.text)


def test_cli_run_review_and_reviews(world, endpoints, credentials, tmp_path, api):
    rv = world["reviewer"]
    cli = Cli(tmp_path / "cfg", endpoints.api)
    r = cli("login", "--tenant", credentials["PADDOCK_TENANT"], "--user", rv["username"], "--password-stdin",
            input=rv["password"] + "\n")
    assert r.returncode == 0, r.stderr
    # the command line is checked first: exit 2, nothing sent
    cli.fails(2, "run", "review", world["run"])
    cli.fails(2, "run", "review", world["run"], "--approve", "--reject")
    cli.fails(2, "run", "review", world["run"], "--approve", "--to", "reviewer")
    cli.fails(2, "run", "review", world["run"], "--escalate")
    out = cli.ok("run", "review", world["run"], "--reject", "-m", "cli says no")
    assert f"run {world['run']} reviewed: reject" in out, out
    got = cli.json("run", "review", world["run"], "--escalate", "--to", rv["id"], "-m", "over to me")
    assert got["outcome"] == "escalate" and got["to"] == rv["id"], got
    table = cli.ok("run", "reviews", world["run"])
    assert "reject" in table and "cli says no" in table and rv["username"] in table, table
    # the API refuses: exit 1 with its reason
    r = cli.fails(1, "run", "review", str(uuid.uuid4()), "--approve")
    assert "not found" in r.stderr, r.stderr
    assert api.ok("GET", f"/v1/runs/{world['run']}", expect=(200,))["review"]["outcome"] == "escalate"


# ---------------------------------------------------------------- who may append to a run's history


def _s(num, text):
    return pb_field(num, 2, text.encode() if isinstance(text, str) else text)


def _batch(tenant, team, run_id, kind, actor, data, seq=0, terminal=False, status=""):
    env = (_s(1, tenant) + _s(2, run_id) + (pb_field(3, 0, pb_varint(seq)) if seq else b"")
           + pb_field(4, 0, pb_varint(int(time.time() * 1e6))) + _s(5, "forger/1") + pb_field(6, 0, pb_varint(1))
           + _s(7, str(uuid.uuid4())))
    ev = _s(1, env) + _s(2, kind) + _s(3, actor) + _s(4, json.dumps(data)) + _s(5, team)
    if status:
        ev += _s(6, status)
    if terminal:
        ev += pb_field(7, 0, pb_varint(1))
    return _s(1, ev)


REFUSED = re.compile(r'^paddock_bus_refused_total\{reason="wrong_subject"\} (\d+)$', re.M)


def _wrong_subject(endpoints):
    text = requests.get(endpoints.need("PADDOCK_EVIDENCE_OPS_URL") + "/metrics", timeout=10).text
    m = REFUSED.search(text)
    return int(m.group(1)) if m else 0


def test_evidence_takes_seq0_appends_from_the_api_for_reviews_only(world, endpoints, api, me, team_id):
    """The api's bus key may append a review and nothing else; nobody else
    may append a review. Each forgery is refused (wrong_subject) and the
    run's history is unchanged."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    key_path = state_dir() / "secrets" / "bus-api.key"
    api_signer = BusSigner("api", load_pem_private_key(key_path.read_bytes(), None))
    node_id = read_env_file(state_dir() / "env" / "runner-agent.env")["PADDOCK_NODE_ID"]
    node_key = pathlib.Path(endpoints.need("PADDOCK_RUNNER_STATE_DIR")) / "node.key"
    node_signer = BusSigner(f"node:{node_id}", load_pem_private_key(node_key.read_bytes(), None))
    tenant, run_id = me["tenant"]["id"], world["run"]
    # the reviews earlier tests made reach the history through the outbox: wait for them all
    reviews = {x["id"] for x in api.ok("GET", f"/v1/runs/{run_id}/reviews", expect=(200,))["items"]}

    def settled():
        evs = all_events(api, run_id)
        return evs if {e["data"].get("review") for e in evs if e["kind"] == "review"} >= reviews else None
    before = wait_for("the earlier reviews in the history", settled, timeout=60)
    forged = [
        # the api's key, but not a review: an output, a terminal status, a review not alone / not seq 0
        (api_signer, _batch(tenant, team_id, run_id, "output", "agent", {"text": "forged"},
                            seq=before[-1]["seq"] + 1)),
        (api_signer, _batch(tenant, team_id, run_id, "status", "platform", {"status": "failed"}, terminal=True,
                            status="failed")),
        (api_signer, _batch(tenant, team_id, run_id, "review", "user:" + world["reviewer"]["id"],
                            {"outcome": "approve"}, seq=before[-1]["seq"] + 1)),
        (api_signer, _batch(tenant, team_id, run_id, "review", "agent", {"outcome": "approve"})),
        # the run's own node may not append a review
        (node_signer, _batch(tenant, team_id, run_id, "review", "user:" + world["reviewer"]["id"],
                             {"outcome": "approve"})),
    ]
    count = _wrong_subject(endpoints)
    for signer, value in forged:
        signer.produce(endpoints, EVENTS, run_id, value)
    wait_for("evidence to refuse each forgery as wrong_subject",
             lambda: _wrong_subject(endpoints) >= count + len(forged), timeout=60)
    # a genuine review after them is stored right after the history: nothing forged got in between
    rv = world["reviewer"]["api"].ok("POST", f"/v1/runs/{run_id}/reviews", json={"outcome": "approve"},
                                     expect=(201,))

    def stored():
        evs = all_events(api, run_id)
        return evs if any(e["kind"] == "review" and e["data"].get("review") == rv["id"] for e in evs) else None
    evs = wait_for("the genuine review in the history", stored, timeout=60)
    assert evs[:len(before)] == before
    assert [(e["kind"], e["data"].get("review")) for e in evs[len(before):]] == [("review", rv["id"])], \
        evs[len(before):]
    assert api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))["status"] == "succeeded"
