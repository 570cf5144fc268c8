"""Finding things: GET /v1/runs and GET /v1/sandboxes (every filter, keyset
pages without gap or duplicate, names wherever an id is taken, visibility
across teams and tenants, bad parameters answered 400 naming them), POST
/v1/runs/{id}/relaunch, publishing an unchanged draft, GET /v1/usage against
the runs launched here (and per model, from usage records with a model
breakdown produced here signed by the runs' node: counted once however often
delivered, a bad model entry refused whole), and GET /v1/nodes with the launch
check that a run's image is on some ready node.

Everything is created here in fresh teams (and a second tenant), so exact
counts hold however many runs other tests left in the stack."""

import base64
import datetime
import pathlib
import re
import secrets
import struct
import time
import uuid

import psycopg
import pytest
import requests

from conftest import (TERMINAL, Api, BusSigner, all_events, bootstrap_tenant, command_spec, enroll_test_node, login,
                      node_heartbeat, pb_field, pb_varint, read_env_file, unique_name, wait_for, wait_run_status)


def ts(value):
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def token(endpoints, tenant, user, password):
    r = login(endpoints, tenant, user, password)
    assert r.status_code == 200, f"login {tenant}/{user}: {r.status_code} {r.text[:300]}"
    return r.json()["token"]


def bad(api, path, param, **params):
    """GET path?params answers 400 invalid_field naming param."""
    r = api.get(path, params=params)
    assert r.status_code == 400, f"{path} {params}: {r.status_code} {r.text[:300]}"
    body = r.json()
    assert body["code"] == "invalid_field" and param in body["detail"], (params, body)
    return body


def list_all(api, path, **params):
    """Every item of a keyset list, following next_cursor; checks the pages."""
    items, cursor, pages = [], None, 0
    while True:
        q = dict(params)
        if cursor:
            q["cursor"] = cursor
        page = api.ok("GET", path, params=q, expect=(200,))
        pages += 1
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items, pages
        assert pages < 1000, "next_cursor never ended"


def newest_first(runs):
    keys = [(ts(r["created_at"]), r["id"]) for r in runs]
    return keys == sorted(keys, reverse=True)


class World:
    """Two teams of the stack's tenant (A and B), users with single roles in
    A, a user in no team, and a second tenant with a sandbox named like one
    of ours."""

    def __init__(self, endpoints, credentials, api):
        self.endpoints = endpoints
        self.api = api
        self.tenant = credentials["PADDOCK_TENANT"]
        self.team_a = api.ok("POST", "/v1/teams", json={"name": unique_name("find-a")}, expect=(201,))
        self.team_b = api.ok("POST", "/v1/teams", json={"name": unique_name("find-b")}, expect=(201,))
        self.users = {}
        for who, roles in (("viewer", ["viewer"]), ("launcher", ["launcher"]), ("author", ["sandbox_author"]),
                           ("secadmin", ["security_admin"]), ("nomember", None)):
            pw = secrets.token_hex(12)
            u = api.ok("POST", "/v1/users", json={"username": unique_name(f"find-{who}"), "password": pw},
                       expect=(201,))
            if roles:
                api.ok("PUT", f"/v1/teams/{self.team_a['id']}/members/{u['id']}", json={"roles": roles},
                       expect=(200,))
            self.users[who] = dict(u, api=Api(endpoints.api, token(endpoints, self.tenant, u["username"], pw)))
        other = unique_name("find-other")
        opw = bootstrap_tenant(other, "oadmin")
        self.other = Api(endpoints.api, token(endpoints, other, "oadmin", opw))
        self.other_team = self.other.ok("GET", "/v1/me", expect=(200,))["teams"][0]["id"]

    def user(self, who):
        return self.users[who]["api"]


@pytest.fixture(scope="module")
def world(endpoints, credentials, api):
    return World(endpoints, credentials, api)


def sandbox(api, team, spec, name=None, publish=True):
    sb = api.ok("POST", "/v1/sandboxes", json={"name": name or unique_name("find"), "team": team, "spec": spec},
                expect=(201,))
    if publish:
        api.ok("POST", f"/v1/sandboxes/{sb['id']}/versions", expect=(201,))
    return sb


def launch(api, sandbox_ref, **extra):
    return api.ok("POST", "/v1/runs", json={"sandbox": sandbox_ref, **extra}, expect=(202,))


def finish(api, run_ids, timeout=120):
    runs = {}
    for rid in run_ids:
        run = wait_run_status(api, rid, timeout=timeout)
        assert run["status"] in TERMINAL, run
        runs[rid] = run
    return runs


OK_SPEC = command_spec(["/bin/sh", "-c", "echo ok"], timeout_s=60)
FAIL_SPEC = command_spec(["/bin/sh", "-c", "exit 3"], timeout_s=60)


@pytest.fixture(scope="module")
def launched(world):
    """Team A: sandbox one (3 runs by the admin), sandbox two (a failing run by
    the admin, a run by the launcher); team B: one run. All finished."""
    api = world.api
    one = sandbox(api, world.team_a["id"], OK_SPEC)
    two = sandbox(api, world.team_a["id"], FAIL_SPEC)
    b = sandbox(api, world.team_b["id"], OK_SPEC)
    ids = {"one": [launch(api, one["id"])["id"] for _ in range(3)],
           "two_admin": [launch(api, two["name"])["id"]],
           "two_launcher": [launch(world.user("launcher"), two["id"])["id"]],
           "b": [launch(api, b["id"])["id"]]}
    runs = finish(api, [r for v in ids.values() for r in v])
    return {"sandboxes": {"one": one, "two": two, "b": b}, "ids": ids, "runs": runs}


# ---------------------------------------------------------------- runs list


def test_run_objects_carry_names_launcher_and_times(world, launched):
    api = world.api
    admin_id = api.ok("GET", "/v1/me", expect=(200,))["user"]["id"]
    ok = api.ok("GET", f"/v1/runs/{launched['ids']['one'][0]}", expect=(200,))
    assert ok["status"] == "succeeded" and ok["exit_code"] == 0, ok
    assert ok["sandbox_name"] == launched["sandboxes"]["one"]["name"], ok
    assert ok["team_name"] == world.team_a["name"] and ok["team"] == world.team_a["id"], ok
    assert ok["launched_by"]["id"] == admin_id == ok["created_by"], ok
    assert ok["launched_by"]["username"] and ok["relaunch_of"] is None, ok
    assert ts(ok["created_at"]) <= ts(ok["started_at"]) <= ts(ok["finished_at"]), ok
    assert ok["finished_at"] == ok["ended_at"], ok
    failed = api.ok("GET", f"/v1/runs/{launched['ids']['two_admin'][0]}", expect=(200,))
    assert failed["status"] == "failed" and failed["exit_code"] == 3, failed
    # the list shows the same objects, except what only GET /v1/runs/{id} shows: the prompt (it may be
    # large), the live model usage and the agent session (docs/CONTRACTS.md "Model catalog"), the policy
    # counters (docs/CONTRACTS.md "The approval queue"), retention and its tombstone ("Retention and legal hold")
    detail_only = {"prompt", "usage", "agent_session", "policy", "retention", "deleted"}
    listed = api.ok("GET", "/v1/runs", params={"team": world.team_a["id"], "limit": 1000}, expect=(200,))["items"]
    assert detail_only <= set(ok) and not detail_only & set({r["id"]: r for r in listed}[ok["id"]])
    assert {r["id"]: r for r in listed}[ok["id"]] == {k: v for k, v in ok.items() if k not in detail_only}


def test_runs_list_filters(world, launched):
    api, ids = world.api, launched["ids"]
    team_a = set(ids["one"] + ids["two_admin"] + ids["two_launcher"])

    def listed(**params):
        items, _ = list_all(api, "/v1/runs", **params)
        assert newest_first(items), [i["created_at"] for i in items]
        return [i["id"] for i in items]

    # team by id and by name: exactly the team's runs
    by_id = listed(team=world.team_a["id"])
    assert set(by_id) == team_a and len(by_id) == len(team_a)
    assert listed(team=world.team_a["name"]) == by_id
    assert listed(team=world.team_b["name"]) == ids["b"]
    # sandbox by id and by name
    one = launched["sandboxes"]["one"]
    assert set(listed(sandbox=one["id"])) == set(ids["one"])
    assert listed(sandbox=one["name"]) == listed(sandbox=one["id"])
    # launched_by by username and by id
    launcher = world.users["launcher"]
    assert listed(launched_by=launcher["username"]) == ids["two_launcher"]
    assert listed(launched_by=launcher["id"]) == ids["two_launcher"]
    admin = api.ok("GET", "/v1/me", expect=(200,))["user"]
    assert set(listed(team=world.team_a["id"], launched_by=admin["username"])) == set(ids["one"] + ids["two_admin"])
    # status: one, several (comma-separated and repeated), combined with other filters
    assert set(listed(team=world.team_a["id"], status="failed")) == set(ids["two_admin"] + ids["two_launcher"])
    assert set(listed(team=world.team_a["id"], status="succeeded")) == set(ids["one"])
    both = listed(team=world.team_a["id"], status="failed,succeeded")
    assert set(both) == team_a
    r = api.ok("GET", "/v1/runs", params=[("team", world.team_a["id"]), ("status", "failed"),
                                          ("status", "succeeded")], expect=(200,))
    assert {i["id"] for i in r["items"]} == team_a
    assert listed(team=world.team_a["id"], status="queued,running") == []
    assert listed(sandbox=one["id"], status="failed") == []
    # time range on created_at: from inclusive, to exclusive
    runs = sorted((launched["runs"][i] for i in team_a), key=lambda x: (ts(x["created_at"]), x["id"]))
    pivot = runs[2]
    after = listed(team=world.team_a["id"], **{"from": pivot["created_at"]})
    assert set(after) == {x["id"] for x in runs if ts(x["created_at"]) >= ts(pivot["created_at"])}
    before = listed(team=world.team_a["id"], to=pivot["created_at"])
    assert set(before) == {x["id"] for x in runs if ts(x["created_at"]) < ts(pivot["created_at"])}
    assert set(before) | set(after) == team_a and not set(before) & set(after)
    # an offset names the same instant
    t = ts(pivot["created_at"]).astimezone(datetime.timezone(datetime.timedelta(hours=2)))
    assert listed(team=world.team_a["id"], **{"from": t.isoformat()}) == after


def test_runs_pages_have_no_gap_or_duplicate(world, launched):
    api = world.api
    team = world.team_a["id"]
    everything = [r["id"] for r in api.ok("GET", "/v1/runs", params={"team": team, "limit": 1000},
                                          expect=(200,))["items"]]
    assert len(everything) == 5
    for limit in (1, 2, 3, 5, 6):
        items, pages = list_all(api, "/v1/runs", team=team, limit=limit)
        assert [i["id"] for i in items] == everything, limit
        # a full last page says so itself: no empty page after it
        assert pages == -(-len(everything) // limit), (limit, pages)
    # a run launched while paging shows up on no later page (it is newer than the cursor)
    first = api.ok("GET", "/v1/runs", params={"team": team, "limit": 2}, expect=(200,))
    extra = launch(api, launched["sandboxes"]["one"]["id"])["id"]
    rest, _ = list_all(api, "/v1/runs", team=team, limit=2, cursor=first["next_cursor"])
    seen = [i["id"] for i in first["items"]] + [i["id"] for i in rest]
    assert seen == everything and extra not in seen
    assert api.ok("GET", "/v1/runs", params={"team": team, "limit": 1}, expect=(200,))["items"][0]["id"] == extra
    finish(api, [extra])
    # the extra run stays out of the other tests' counts: it is in sandbox one, so count it there
    launched["ids"]["one"].append(extra)
    launched["runs"][extra] = api.ok("GET", f"/v1/runs/{extra}", expect=(200,))


def test_runs_visibility_across_teams_and_tenants(world, launched):
    ids = launched["ids"]
    mine = set(ids["one"] + ids["two_admin"] + ids["two_launcher"])
    for who in ("viewer", "launcher", "author"):
        seen, _ = list_all(world.user(who), "/v1/runs")
        seen = {r["id"] for r in seen}
        assert mine <= seen, who
        assert not seen & set(ids["b"]), f"{who} sees team B's run"
        # only team A at all: its members have no other team
        assert all(r["team"] == world.team_a["id"] for r in list_all(world.user(who), "/v1/runs")[0])
        bad(world.user(who), "/v1/runs", "team", team=world.team_b["id"])
        bad(world.user(who), "/v1/runs", "team", team=world.team_b["name"])
        bad(world.user(who), "/v1/runs", "sandbox", sandbox=launched["sandboxes"]["b"]["id"])
    # a member whose only role carries no view permission, and a user of no team, see nothing
    for who in ("secadmin", "nomember"):
        assert world.user(who).ok("GET", "/v1/runs", expect=(200,)) == {"items": [], "next_cursor": None}
        assert world.user(who).ok("GET", "/v1/sandboxes", expect=(200,)) == {"items": [], "next_cursor": None}
    # the other tenant sees none of it, and cannot name it
    theirs, _ = list_all(world.other, "/v1/runs")
    assert not {r["id"] for r in theirs} & (mine | set(ids["b"]))
    bad(world.other, "/v1/runs", "team", team=world.team_a["id"])
    bad(world.other, "/v1/runs", "sandbox", sandbox=launched["sandboxes"]["one"]["id"])
    bad(world.other, "/v1/runs", "launched_by", launched_by=world.users["launcher"]["id"])
    assert world.other.get(f"/v1/runs/{ids['one'][0]}").status_code == 404
    assert world.other.post(f"/v1/runs/{ids['one'][0]}/relaunch").status_code == 404


def test_runs_list_bad_parameters(world):
    api = world.api
    for value in ("0", "1001", "x", "-1", "1.5"):
        bad(api, "/v1/runs", "limit", limit=value)
    for value in ("junk", "%%%", base64.urlsafe_b64encode(b"1:12:not-a-uuid").decode().rstrip("="),
                  base64.urlsafe_b64encode(f"2:1:{uuid.uuid4()}".encode()).decode().rstrip("="),
                  base64.urlsafe_b64encode(f"1:99999999999999999999:{uuid.uuid4()}".encode()).decode().rstrip("="),
                  "A" * 500):
        bad(api, "/v1/runs", "cursor", cursor=value)
    bad(api, "/v1/runs", "status", status="runnin")
    bad(api, "/v1/runs", "status", status="succeeded,bogus")
    for value in ("yesterday", "2026-01-02", "2026-13-01T00:00:00Z", "2026-01-02T03:04:05"):
        bad(api, "/v1/runs", "from", **{"from": value})
        bad(api, "/v1/runs", "to", to=value)
    bad(api, "/v1/runs", "to", **{"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"})
    bad(api, "/v1/runs", "team", team="no-such-team-" + uuid.uuid4().hex)
    bad(api, "/v1/runs", "team", team=str(uuid.uuid4()))
    bad(api, "/v1/runs", "sandbox", sandbox="no-such-sandbox-" + uuid.uuid4().hex)
    bad(api, "/v1/runs", "launched_by", launched_by="nobody-" + uuid.uuid4().hex)
    r = api.get("/v1/runs", params=[("team", world.team_a["id"]), ("team", world.team_b["id"])])
    assert r.status_code == 400 and "team" in r.json()["detail"], r.text
    # a valid cursor of this server, well-formed but hand-made, only moves the start
    cur = base64.urlsafe_b64encode(f"1:0:{uuid.uuid4()}".encode()).decode().rstrip("=")
    assert api.ok("GET", "/v1/runs", params={"cursor": cur}, expect=(200,))["items"] == []


# ---------------------------------------------------------------- sandboxes: list, names, publish


def test_sandboxes_list(world, launched):
    api = world.api
    a = world.team_a
    items, _ = list_all(api, "/v1/sandboxes", team=a["name"])
    by_id = {s["id"]: s for s in items}
    for key in ("one", "two"):
        sb = launched["sandboxes"][key]
        got = by_id[sb["id"]]
        assert got == {"id": sb["id"], "name": sb["name"], "team": a["id"], "team_name": a["name"],
                       "latest_version": 1, "created_at": sb["created_at"], "created_by": sb["created_by"]}, got
    assert launched["sandboxes"]["b"]["id"] not in by_id
    keys = [(ts(s["created_at"]), s["id"]) for s in items]
    assert keys == sorted(keys, reverse=True)
    # a draft never published has no latest version
    draft = sandbox(api, a["id"], OK_SPEC, publish=False)
    got = api.ok("GET", "/v1/sandboxes", params={"team": a["id"], "limit": 1}, expect=(200,))
    assert got["items"][0]["id"] == draft["id"] and got["items"][0]["latest_version"] is None
    assert got["next_cursor"]
    # pages: every sandbox once
    whole = [s["id"] for s in api.ok("GET", "/v1/sandboxes", params={"team": a["id"], "limit": 1000},
                                     expect=(200,))["items"]]
    paged, pages = list_all(api, "/v1/sandboxes", team=a["id"], limit=1)
    assert [s["id"] for s in paged] == whole and pages == len(whole)
    # name: any part of it, any case
    one = launched["sandboxes"]["one"]["name"]
    found = api.ok("GET", "/v1/sandboxes", params={"name": one[-8:].upper()}, expect=(200,))["items"]
    assert [s["id"] for s in found] == [launched["sandboxes"]["one"]["id"]]
    # visibility: team A's viewer sees A's sandboxes only; the other tenant none of them
    viewer, _ = list_all(world.user("viewer"), "/v1/sandboxes")
    assert {s["team"] for s in viewer} == {a["id"]} and set(whole) <= {s["id"] for s in viewer}
    theirs, _ = list_all(world.other, "/v1/sandboxes")
    assert not {s["id"] for s in theirs} & {s["id"] for s in launched["sandboxes"].values()}
    # bad parameters
    bad(api, "/v1/sandboxes", "name", name="a/b")
    bad(api, "/v1/sandboxes", "team", team="no-such-team-" + uuid.uuid4().hex)
    bad(world.user("viewer"), "/v1/sandboxes", "team", team=world.team_b["id"])
    bad(api, "/v1/sandboxes", "limit", limit="1001")
    bad(api, "/v1/sandboxes", "cursor", cursor="not-a-cursor")


def test_sandbox_names_everywhere(world):
    api = world.api
    name = unique_name("find-named")
    sb = sandbox(api, world.team_a["id"], OK_SPEC, name=name, publish=False)
    got = api.ok("GET", f"/v1/sandboxes/{name}", expect=(200,))
    assert got["id"] == sb["id"] and got["name"] == name
    assert api.ok("PUT", f"/v1/sandboxes/{name}/draft", json={"spec": FAIL_SPEC}, expect=(200,))["id"] == sb["id"]
    # no published version yet: nothing to launch
    r = api.post("/v1/runs", json={"sandbox": name})
    assert r.status_code == 409 and r.json()["code"] == "conflict" and "publish" in r.json()["detail"], r.text
    v1 = api.ok("POST", f"/v1/sandboxes/{name}/versions", expect=(201,))
    assert v1["sandbox"] == sb["id"] and v1["version"] == 1 and v1["unchanged"] is False
    assert api.ok("GET", f"/v1/sandboxes/{name}/versions/1", expect=(200,))["spec"] == FAIL_SPEC
    pol = api.ok("GET", f"/v1/sandboxes/{name}/versions/1/effective-policy", expect=(200,))
    assert pol["sandbox"] == sb["id"] and pol["version"] == 1
    api.ok("PUT", f"/v1/sandboxes/{name}/draft", json={"spec": OK_SPEC}, expect=(200,))
    assert api.ok("POST", f"/v1/sandboxes/{name}/versions", expect=(201,))["version"] == 2
    # by name, without version: the latest published one
    run = launch(api, name)
    assert run["version"] == 2 and run["status"] == "queued"
    got = api.ok("GET", f"/v1/runs/{run['id']}", expect=(200,))
    assert got["sandbox"] == sb["id"] and got["version"] == 2 and got["sandbox_name"] == name
    old = launch(api, name, version=1)
    assert old["version"] == 1
    # a name shaped like an id is refused (names stand in for ids), nothing created
    r = api.post("/v1/sandboxes", json={"name": str(uuid.uuid4()), "team": world.team_a["id"], "spec": OK_SPEC})
    assert r.status_code == 400 and "name" in r.json()["detail"], r.text
    # names are per tenant: the other tenant's sandbox of the same name is its own
    theirs = sandbox(world.other, world.other_team, OK_SPEC, name=name, publish=False)
    assert theirs["id"] != sb["id"]
    assert world.other.ok("GET", f"/v1/sandboxes/{name}", expect=(200,))["id"] == theirs["id"]
    assert api.ok("GET", f"/v1/sandboxes/{name}", expect=(200,))["id"] == sb["id"]
    # another team's viewer cannot reach it by name either
    b_only = sandbox(api, world.team_b["id"], OK_SPEC)
    assert world.user("viewer").get(f"/v1/sandboxes/{b_only['name']}").status_code == 404
    assert api.get(f"/v1/sandboxes/no-such-{uuid.uuid4().hex}").status_code == 404
    finish(api, [run["id"], old["id"]])


def test_publishing_an_unchanged_draft_answers_the_existing_version(world):
    api = world.api
    sb = sandbox(api, world.team_a["id"], OK_SPEC, publish=False)
    v1 = api.ok("POST", f"/v1/sandboxes/{sb['id']}/versions", expect=(201,))
    r = api.post(f"/v1/sandboxes/{sb['id']}/versions")
    assert r.status_code == 200, r.text
    again = r.json()
    assert again["unchanged"] is True and again["version"] == 1
    assert {k: again[k] for k in ("spec", "spec_sha256", "published_at", "published_by")} == \
        {k: v1[k] for k in ("spec", "spec_sha256", "published_at", "published_by")}
    assert api.ok("GET", f"/v1/sandboxes/{sb['id']}", expect=(200,))["versions"] == [1]
    # the same spec written again (keys in another order) is still unchanged
    api.ok("PUT", f"/v1/sandboxes/{sb['id']}/draft", json={"spec": dict(reversed(list(OK_SPEC.items())))},
           expect=(200,))
    assert api.ok("POST", f"/v1/sandboxes/{sb['id']}/versions", expect=(200,))["version"] == 1
    # a change is a new version; going back to v1's spec is new again (the latest is v2)
    api.ok("PUT", f"/v1/sandboxes/{sb['id']}/draft", json={"spec": FAIL_SPEC}, expect=(200,))
    assert api.ok("POST", f"/v1/sandboxes/{sb['id']}/versions", expect=(201,))["version"] == 2
    assert api.ok("POST", f"/v1/sandboxes/{sb['id']}/versions", expect=(200,))["version"] == 2
    api.ok("PUT", f"/v1/sandboxes/{sb['id']}/draft", json={"spec": OK_SPEC}, expect=(200,))
    v3 = api.ok("POST", f"/v1/sandboxes/{sb['id']}/versions", expect=(201,))
    assert v3["version"] == 3 and v3["unchanged"] is False and v3["spec_sha256"] == v1["spec_sha256"]
    assert api.ok("GET", f"/v1/sandboxes/{sb['id']}", expect=(200,))["versions"] == [1, 2, 3]
    # the author may publish unchanged too; the viewer may not publish at all
    assert world.user("author").ok("POST", f"/v1/sandboxes/{sb['id']}/versions", expect=(200,))["version"] == 3
    r = world.user("viewer").post(f"/v1/sandboxes/{sb['id']}/versions")
    assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text


# ---------------------------------------------------------------- relaunch


def test_relaunch(world, launched):
    api = world.api
    sb = sandbox(api, world.team_a["id"], FAIL_SPEC)
    first = launch(api, sb["id"])["id"]
    # a newer version since: the relaunch keeps the run's own version
    api.ok("PUT", f"/v1/sandboxes/{sb['id']}/draft", json={"spec": OK_SPEC}, expect=(200,))
    api.ok("POST", f"/v1/sandboxes/{sb['id']}/versions", expect=(201,))
    again = world.user("launcher").ok("POST", f"/v1/runs/{first}/relaunch", expect=(202,))
    assert again["status"] == "queued" and again["relaunch_of"] == first and again["id"] != first
    assert again["version"] == 1
    runs = finish(api, [first, again["id"]])
    old, new = runs[first], runs[again["id"]]
    for key in ("sandbox", "version", "team", "sandbox_name", "team_name"):
        assert new[key] == old[key], key
    assert new["relaunch_of"] == first and old["relaunch_of"] is None
    assert new["status"] == "failed" and new["exit_code"] == 3  # the same version ran again
    assert new["launched_by"]["id"] == world.users["launcher"]["id"]
    listed = api.ok("GET", "/v1/runs", params={"sandbox": sb["id"]}, expect=(200,))["items"]
    assert [r["id"] for r in listed] == [again["id"], first]
    # an empty object is fine; anything else is not, and changes nothing
    r = api.post(f"/v1/runs/{first}/relaunch", json={"version": 2})
    assert r.status_code == 400 and r.json()["code"] == "unknown_field" and "version" in r.json()["detail"], r.text
    # who may: launcher in the run's team; a viewer is told what is missing; others do not see it
    r = world.user("viewer").post(f"/v1/runs/{first}/relaunch", json={})
    assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text
    assert world.user("nomember").post(f"/v1/runs/{first}/relaunch").status_code == 404
    assert api.post(f"/v1/runs/{uuid.uuid4()}/relaunch").status_code == 404
    assert api.post("/v1/runs/not-a-run/relaunch").status_code == 404
    assert len(api.ok("GET", "/v1/runs", params={"sandbox": sb["id"]}, expect=(200,))["items"]) == 2


# ---------------------------------------------------------------- usage


def runtime_of(api, run_id):
    usage = [e for e in all_events(api, run_id) if e["kind"] == "usage"]
    assert len(usage) == 1, usage
    return usage[0]["data"]["runtime_s"]


def test_usage_matches_the_runs_launched(world, launched):
    api = world.api
    team = api.ok("POST", "/v1/teams", json={"name": unique_name("find-usage")}, expect=(201,))
    s1 = sandbox(api, team["id"], OK_SPEC)
    s2 = sandbox(api, team["id"], FAIL_SPEC)
    launcher = world.users["launcher"]
    api.ok("PUT", f"/v1/teams/{team['id']}/members/{launcher['id']}", json={"roles": ["launcher"]}, expect=(200,))
    ids = {"s1": [launch(api, s1["id"])["id"] for _ in range(2)] + [launch(world.user("launcher"), s1["id"])["id"]],
           "s2": [launch(api, s2["id"])["id"]]}
    all_ids = ids["s1"] + ids["s2"]
    runs = finish(api, all_ids)
    runtime = {rid: runtime_of(api, rid) for rid in all_ids}
    days = sorted({ts(r["ended_at"]).date().isoformat() for r in runs.values()})
    window = {"from": days[0], "to": days[-1], "team": team["name"]}

    # billing records usage from Kafka: wait until it has all of them
    deadline = time.monotonic() + 60
    while True:
        got = api.ok("GET", "/v1/usage", params=window, expect=(200,))
        if got["totals"]["runs"] >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert got["from"] == days[0] and got["to"] == days[-1] and got["group_by"] == "team"
    assert len(got["items"]) == 1, got
    item = got["items"][0]
    assert item["team"] == team["id"] and item["team_name"] == team["name"] and item["runs"] == 4, got
    assert item["runtime_seconds"] == pytest.approx(sum(runtime.values()), abs=1e-6)
    assert item["tokens_in"] == item["tokens_out"] == item["egress_bytes"] == 0 and item["cost_usd"] == 0
    for key in ("runs", "tokens_in", "tokens_out", "egress_bytes"):
        assert got["totals"][key] == item[key], key
    assert got["totals"]["runtime_seconds"] == pytest.approx(item["runtime_seconds"], abs=1e-6)

    by_sandbox = api.ok("GET", "/v1/usage", params={**window, "group_by": "sandbox"}, expect=(200,))
    got_sb = {i["sandbox"]: i for i in by_sandbox["items"]}
    assert set(got_sb) == {s1["id"], s2["id"]}
    assert got_sb[s1["id"]]["runs"] == 3 and got_sb[s1["id"]]["sandbox_name"] == s1["name"]
    assert got_sb[s2["id"]]["runs"] == 1
    assert got_sb[s2["id"]]["runtime_seconds"] == pytest.approx(runtime[ids["s2"][0]], abs=1e-6)

    by_user = api.ok("GET", "/v1/usage", params={**window, "group_by": "user"}, expect=(200,))
    got_user = {i["username"]: i["runs"] for i in by_user["items"]}
    admin = api.ok("GET", "/v1/me", expect=(200,))["user"]["username"]
    assert got_user == {admin: 3, launcher["username"]: 1}, by_user

    by_day = api.ok("GET", "/v1/usage", params={**window, "group_by": "day"}, expect=(200,))
    assert [i["day"] for i in by_day["items"]] == days
    assert sum(i["runs"] for i in by_day["items"]) == 4 and by_day["totals"]["runs"] == 4
    # an RFC 3339 date-time names its UTC day
    as_times = api.ok("GET", "/v1/usage", params={"from": days[0] + "T23:59:59Z", "to": days[-1] + "T00:00:00Z",
                                                 "team": team["id"]}, expect=(200,))
    assert as_times["from"] == days[0] and as_times["totals"]["runs"] == 4
    # a day before: nothing
    day_before = (datetime.date.fromisoformat(days[0]) - datetime.timedelta(days=1)).isoformat()
    empty = api.ok("GET", "/v1/usage", params={"from": day_before, "to": day_before, "team": team["id"]},
                   expect=(200,))
    assert empty["items"] == [] and empty["totals"]["runs"] == 0

    # visibility: the launcher is in the team (sees it all); team A's viewer and the other tenant see none of it
    assert world.user("launcher").ok("GET", "/v1/usage", params=window, expect=(200,))["totals"]["runs"] == 4
    v = world.user("viewer").ok("GET", "/v1/usage", params={"from": days[0], "to": days[-1], "group_by": "team"},
                                expect=(200,))
    assert team["id"] not in {i["team"] for i in v["items"]}
    bad(world.user("viewer"), "/v1/usage", "team", team=team["id"])
    o = world.other.ok("GET", "/v1/usage", params={"from": days[0], "to": days[-1]}, expect=(200,))
    assert team["id"] not in {i["team"] for i in o["items"]}
    bad(world.other, "/v1/usage", "team", team=team["id"])


# ---------------------------------------------------------------- usage per model


def _s(num, text):
    return pb_field(num, 2, text.encode())


def _d(num, value):
    return pb_field(num, 1, struct.pack("<d", value))


def _u(num, value):
    return pb_field(num, 0, pb_varint(value))


def usage_record(tenant, team, user, run_id, models, tokens_in, tokens_out, cost):
    """A UsageRecord (proto/paddock/v1/usage.proto) as the runner-agent sends
    it, with its per-model breakdown: models are dicts of ModelUsage fields."""
    now = int(time.time() * 1e6)
    env = (_s(1, tenant) + _s(2, run_id) + _u(4, now) + _s(5, "runner-agent/test") + _u(6, 1)
           + _s(7, str(uuid.uuid4())))
    out = (pb_field(1, 2, env) + _s(2, team) + _s(3, user) + _d(4, 1.5) + _u(5, tokens_in) + _u(6, tokens_out)
           + _d(9, cost) + _u(10, now - 1_500_000) + _u(11, now))
    for m in models:
        mu = (_s(1, m["provider"]) + _s(2, m["model"]) + _u(3, m["calls"]) + _u(4, m["tokens_in"])
              + _u(5, m["tokens_out"]) + _u(6, m.get("cache_read_tokens", 0))
              + _u(7, m.get("cache_write_tokens", 0)) + _d(8, m["cost_usd"]))
        out += pb_field(12, 2, mu)
    return out


def node_signer(endpoints):
    """The local node's own key: only a run's node may report its usage."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    path = pathlib.Path(endpoints.need("PADDOCK_RUNNER_STATE_DIR")) / "node.key"
    node_id = read_env_file(pathlib.Path(endpoints.need("PADDOCK_STATE_DIR")) / "env" / "runner-agent.env")[
        "PADDOCK_NODE_ID"]
    return BusSigner(f"node:{node_id}", load_pem_private_key(path.read_bytes(), None))


def billing_skipped(endpoints):
    text = requests.get(endpoints.need("PADDOCK_BILLING_OPS_URL") + "/metrics", timeout=10).text
    m = re.search(r"^paddock_billing_messages_skipped_total (\d+)", text, re.M)
    return int(m.group(1)) if m else 0


OPUS = {"provider": "anthropic", "model": "claude-opus-4-8", "calls": 3, "tokens_in": 1500, "tokens_out": 200,
        "cache_read_tokens": 300, "cache_write_tokens": 100, "cost_usd": 0.05}
GPT = {"provider": "openai", "model": "gpt-5.5", "calls": 1, "tokens_in": 1000, "tokens_out": 50,
       "cache_read_tokens": 400, "cost_usd": 0.002}
OPUS2 = {"provider": "anthropic", "model": "claude-opus-4-8", "calls": 2, "tokens_in": 700, "tokens_out": 100,
         "cost_usd": 0.02}


def test_usage_by_model(world, endpoints, tenant_id):
    api = world.api
    team = api.ok("POST", "/v1/teams", json={"name": unique_name("find-models")}, expect=(201,))
    sb = sandbox(api, team["id"], command_spec(["/bin/sh", "-c", "sleep 600"], timeout_s=900))
    ids = [launch(api, sb["id"])["id"] for _ in range(2)]  # a team runs 2 at once by default
    for rid in ids:
        wait_for(f"run {rid} running", lambda: api.ok("GET", f"/v1/runs/{rid}", expect=(200,))["status"] == "running",
                 timeout=90)
    user = api.ok("GET", "/v1/me", expect=(200,))["user"]["id"]
    signer = node_signer(endpoints)
    # bad model entries refuse the whole record, like a bad field: nothing of them is stored
    skipped = billing_skipped(endpoints)
    bad_entries = [dict(GPT, provider="azure"), dict(GPT, model="gpt 5.5"), dict(GPT, model="x" * 129),
                   dict(GPT, cost_usd=float("nan")), dict(GPT, cost_usd=-1.0)]
    for entry in bad_entries:
        signer.produce(endpoints, "paddock.usage", tenant_id,
                       usage_record(tenant_id, team["id"], user, ids[1], [OPUS, entry], 1, 1, 0.1))
    signer.produce(endpoints, "paddock.usage", tenant_id,
                   usage_record(tenant_id, team["id"], user, ids[1], [GPT, GPT], 1, 1, 0.1))  # listed twice
    wait_for("billing to refuse the bad records",
             lambda: billing_skipped(endpoints) >= skipped + len(bad_entries) + 1, timeout=60)
    r1 = usage_record(tenant_id, team["id"], user, ids[0], [OPUS, GPT], 2500, 250, 0.052)
    # delivered twice, then another record for the same run: counted once
    for rec in (r1, r1, usage_record(tenant_id, team["id"], user, ids[0], [OPUS2], 9, 9, 9.0)):
        signer.produce(endpoints, "paddock.usage", tenant_id, rec)
    signer.produce(endpoints, "paddock.usage", tenant_id,
                   usage_record(tenant_id, team["id"], user, ids[1], [OPUS2], 700, 100, 0.02))
    # the runs' own records (no model calls: no gateway) come after and are duplicates
    for rid in ids:
        api.ok("POST", f"/v1/runs/{rid}/cancel", expect=(200, 202, 409))
    finish(api, ids)

    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    window = {"from": today, "to": today, "team": team["id"]}
    wait_for("billing to count the runs",
             lambda: api.ok("GET", "/v1/usage", params=window, expect=(200,))["totals"]["runs"] >= 2, timeout=60)
    by_model = api.ok("GET", "/v1/usage", params={**window, "group_by": "model"}, expect=(200,))
    assert by_model["group_by"] == "model"
    got = {(i["model"], i["provider"]): i for i in by_model["items"]}
    assert set(got) == {("claude-opus-4-8", "anthropic"), ("gpt-5.5", "openai")}, by_model
    opus, gpt = got[("claude-opus-4-8", "anthropic")], got[("gpt-5.5", "openai")]
    assert (opus["runs"], opus["calls"], opus["tokens_in"], opus["tokens_out"]) == (2, 5, 2200, 300), opus
    assert (opus["cache_read_tokens"], opus["cache_write_tokens"]) == (300, 100), opus
    assert opus["cost_usd"] == pytest.approx(0.07)
    assert (gpt["runs"], gpt["calls"], gpt["tokens_in"], gpt["tokens_out"], gpt["cache_read_tokens"]) == \
        (1, 1, 1000, 50, 400), gpt
    assert gpt["cost_usd"] == pytest.approx(0.002)
    assert opus["runtime_seconds"] == 0 and opus["egress_bytes"] == 0
    tot = by_model["totals"]
    assert (tot["runs"], tot["calls"], tot["tokens_in"], tot["tokens_out"]) == (2, 6, 3200, 350), tot
    assert tot["cost_usd"] == pytest.approx(0.072)
    # the per-run sums agree: the first good record of each run counted
    by_team = api.ok("GET", "/v1/usage", params=window, expect=(200,))["totals"]
    assert (by_team["runs"], by_team["tokens_in"], by_team["tokens_out"]) == (2, 3200, 350), by_team
    assert by_team["cost_usd"] == pytest.approx(0.072)
    with psycopg.connect(endpoints.need("PADDOCK_PG_DSN")) as conn:
        rows = conn.execute("SELECT provider, model, calls FROM billing.run_model_usage WHERE run_id = %s",
                            (ids[1],)).fetchall()
    assert rows == [("anthropic", "claude-opus-4-8", 2)], rows
    # another tenant sees none of it; a viewer of another team neither
    assert world.other.ok("GET", "/v1/usage", params={"from": today, "to": today, "group_by": "model"},
                          expect=(200,))["totals"]["runs"] == 0
    v = world.user("viewer").ok("GET", "/v1/usage", params={"from": today, "to": today, "group_by": "model"},
                                expect=(200,))
    assert v["items"] == [] and v["totals"]["runs"] == 0, v


def test_usage_bad_parameters(world):
    api = world.api
    bad(api, "/v1/usage", "group_by", group_by="models")
    bad(api, "/v1/usage", "from", **{"from": "2026-02-30"})
    bad(api, "/v1/usage", "to", to="tomorrow")
    bad(api, "/v1/usage", "from", **{"from": "2026-02-02", "to": "2026-02-01"})
    bad(api, "/v1/usage", "team", team="no-such-team-" + uuid.uuid4().hex)
    got = api.ok("GET", "/v1/usage", expect=(200,))
    today = datetime.datetime.now(datetime.timezone.utc).date()
    assert got["to"] == today.isoformat() and got["from"] == today.replace(day=1).isoformat()


# ---------------------------------------------------------------- nodes and the launch check


def node(api, node_id):
    return {n["id"]: n for n in api.ok("GET", "/v1/nodes", expect=(200,))["items"]}.get(node_id)


def test_nodes_show_their_images_and_launch_needs_one_that_has_it(endpoints, world):
    from confluent_kafka import Producer
    api = world.api
    nodes = api.ok("GET", "/v1/nodes", expect=(200,))["items"]
    assert any(n["state"] == "ready" for n in nodes), nodes  # the stack's runner-agent
    for n in nodes:
        assert n["capacity"]["slots"] >= 0 and isinstance(n["images"], list)
    # any authenticated user may look, in any tenant
    assert world.user("nomember").ok("GET", "/v1/nodes", expect=(200,))["items"]
    assert world.other.ok("GET", "/v1/nodes", expect=(200,))["items"]

    # an image approved in the catalog that no node has built
    image = unique_name("find-img")
    item = api.ok("POST", "/v1/catalog/images", json={"name": image, "body": {}}, expect=(201,))
    api.ok("POST", f"/v1/catalog/images/{item['id']}/approve", json={"content_sha256": item["content_sha256"]},
           expect=(200,))
    assert not any(image in n["images"] for n in nodes)
    spec = dict(OK_SPEC, image=image)
    sb = sandbox(api, world.team_a["id"], spec)
    r = api.post("/v1/runs", json={"sandbox": sb["id"]})
    assert r.status_code == 400 and r.json()["code"] == "invalid_field", r.text
    assert image in r.json()["detail"] and "no ready node" in r.json()["detail"], r.text
    assert api.ok("GET", "/v1/runs", params={"sandbox": sb["id"]}, expect=(200,))["items"] == []
    # a run without an image (the node's own root) is not refused
    plain = sandbox(api, world.team_a["id"], OK_SPEC)
    finish(api, [launch(api, plain["id"])["id"]])

    # a node that has it (heartbeats of a node with no slot: nothing is placed there)
    bootstrap = endpoints.need("PADDOCK_KAFKA_BOOTSTRAP")
    for hp in bootstrap.split(","):
        assert hp.rsplit(":", 1)[0] in ("127.0.0.1", "localhost", "[::1]"), bootstrap
    ghost = f"find-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": bootstrap})
    signer = enroll_test_node(endpoints, ghost)  # the test plays an enrolled node

    def beat():
        value = node_heartbeat(ghost, slots=0, cpus=1.0, memory_mb=1024, images=[image, "other-image"],
                               producer="e2e/find", version="e2e")
        producer.produce("paddock.nodes", key=ghost, value=value, headers=signer.headers("paddock.nodes", value))
        producer.flush(10)

    try:
        deadline = time.monotonic() + 30
        while not (node(api, ghost) or {}).get("state") == "ready":
            assert time.monotonic() < deadline, f"the ghost node never showed as ready: {node(api, ghost)}"
            beat()
            time.sleep(0.3)
        shown = node(api, ghost)
        assert sorted(shown["images"]) == sorted([image, "other-image"]), shown
        assert shown["capacity"] == {"slots": 0, "cpus": 1.0, "memory_mb": 1024} and shown["version"] == "e2e"
        beat()
        run = launch(api, sb["id"])
        api.ok("POST", f"/v1/runs/{run['id']}/cancel", json={}, expect=(202, 409))
        # silent: no longer ready (stale, then dead), and launches are refused again
        deadline = time.monotonic() + 60
        while node(api, ghost)["state"] == "ready":
            assert time.monotonic() < deadline, "the silent ghost node stayed ready"
            time.sleep(0.5)
        assert node(api, ghost)["state"] in ("stale", "dead")
        r = api.post("/v1/runs", json={"sandbox": sb["name"]})
        assert r.status_code == 400 and image in r.json()["detail"], r.text
        listed = api.ok("GET", "/v1/runs", params={"sandbox": sb["id"]}, expect=(200,))["items"]
        assert [x["id"] for x in listed] == [run["id"]]
        wait_run_status(api, run["id"], timeout=60)
    finally:
        producer.flush(10)
        with psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True) as pg:
            # a node that never ran anything is only history: keep later tests' node lists tidy
            deadline = time.monotonic() + 30
            while pg.execute("DELETE FROM scheduler.nodes WHERE node_id = %s AND dead_since IS NOT NULL",
                             (ghost,)).rowcount == 0 and time.monotonic() < deadline:
                time.sleep(0.5)
