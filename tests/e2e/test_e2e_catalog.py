"""Governance catalog: seeded items (images of the runner-agent, >= 17 managed
egress profiles, typed prompt templates), draft/approved states (approval needs
security_admin or tenant_admin and is audited; any change returns an item to
draft), definitions may only use approved items (400 naming the field), typed
prompt variables, GET .../effective-policy (profiles expanded after the
explicit allow rules, limits with defaults), and `paddock-api import-skills`."""

import secrets
import time

from conftest import REPO, Api, command_spec, login, run_api_command, unique_name


def _items(api, kind, **q):
    qs = "&".join(f"{k}={v}" for k, v in q.items())
    return api.ok("GET", f"/v1/catalog/{kind}?limit=500{'&' + qs if qs else ''}", expect=(200,))["items"]


def _by_name(api, kind, name):
    got = [i for i in _items(api, kind) if i["name"] == name]
    assert len(got) == 1, f"{kind}/{name}: {got}"
    return got[0]


def _user(endpoints, api, credentials, team, roles):
    pw = secrets.token_hex(12)
    u = api.ok("POST", "/v1/users", json={"username": unique_name("cat"), "password": pw}, expect=(201,))
    api.ok("PUT", f"/v1/teams/{team}/members/{u['id']}", json={"roles": roles}, expect=(200,))
    r = login(endpoints, credentials["PADDOCK_TENANT"], u["username"], pw)
    assert r.status_code == 200, r.text
    return Api(endpoints.api, r.json()["token"])


def _sandbox(api, team, spec):
    return api.post("/v1/sandboxes", json={"name": unique_name("cat"), "team": team, "spec": spec})


def test_seeded_items(api):
    images = {i["name"]: i for i in _items(api, "images")}
    for name in ("debian-minimal", "debian-python", "node-agents"):
        assert name in images, sorted(images)
        assert images[name]["state"] == "approved" and images[name]["managed"] is True
    profiles = [i for i in _items(api, "egress-profiles") if i["managed"]]
    assert len(profiles) >= 17, [p["name"] for p in profiles]
    gh = {p["name"]: p for p in profiles}["github"]
    assert gh["body"]["rules"] == ["github.com", "*.github.com", "*.githubusercontent.com"]
    assert all(p["state"] == "approved" for p in profiles)
    tpls = [i for i in _items(api, "prompt-templates") if i["managed"]]
    assert len(tpls) >= 2
    assert any(v["type"] == "integer" for t in tpls for v in t["body"]["variables"].values())
    assert api.get("/v1/catalog/widgets").status_code == 404


def test_body_validation(api):
    bad = [
        ("egress-profiles", {"rules": ["bad host!"]}, "body.rules[0]"),
        ("egress-profiles", {"rules": []}, "body.rules"),
        ("images", {"description": "x", "bogus": 1}, "body.bogus"),
        ("prompt-templates", {"body": "hi {{who}}"}, "{{who}}"),
        ("prompt-templates", {"body": "x", "variables": {"n": {"type": "float"}}}, "body.variables.n.type"),
        ("prompt-templates", {"body": "{{n}}", "variables": {"n": {"type": "integer", "default": "a"}}},
         "body.variables.n.default"),
        ("skills", {"files": {"../x": "a"}}, "body.files"),
        ("connectors", {"transport": "smtp"}, "body.transport"),
    ]
    for kind, body, field in bad:
        r = api.post(f"/v1/catalog/{kind}", json={"name": unique_name("bad"), "body": body})
        assert r.status_code == 400, (kind, body, r.text)
        assert field in r.json()["detail"], (field, r.text)
    r = api.post("/v1/catalog/images", json={"name": "../etc", "body": {}})
    assert r.status_code == 400 and "name" in r.json()["detail"]
    r = api.post("/v1/catalog/images", json={"name": "debian-minimal", "body": {}})
    assert r.status_code == 409, r.text


def _since():
    """An RFC 3339 time a little before now, for ?from= of GET /v1/audit."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5))


def _audit_of(api, object_id, since, want, timeout=60):
    """The tenant's audit records about object_id from `since` on (every
    page), waiting up to timeout for `want` of them."""
    deadline = time.monotonic() + timeout
    while True:
        recs, cursor = [], None
        while True:
            page = api.ok("GET", f"/v1/audit?from={since}&limit=1000" + (f"&after={cursor}" if cursor else ""),
                          expect=(200,))
            recs += [i for i in page["items"] if i["object_id"] == object_id]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        if len(recs) >= want or time.monotonic() > deadline:
            return recs
        time.sleep(0.3)


def test_draft_approval_lifecycle(endpoints, api, credentials, team_id):
    since = _since()
    author = _user(endpoints, api, credentials, team_id, ["sandbox_author"])
    secadm = _user(endpoints, api, credentials, team_id, ["security_admin"])
    viewer = _user(endpoints, api, credentials, team_id, ["viewer"])
    name = unique_name("prof")
    item = author.ok("POST", "/v1/catalog/egress-profiles",
                     json={"name": name, "body": {"rules": ["example.org", "*.example.net:8443"]}}, expect=(201,))
    assert item["state"] == "draft" and item["managed"] is False
    pid = item["id"]
    assert viewer.post("/v1/catalog/egress-profiles", json={"name": unique_name("v"),
                                                           "body": {"rules": ["a.example"]}}).status_code == 403
    assert viewer.ok("GET", f"/v1/catalog/egress-profiles/{pid}", expect=(200,))["name"] == name

    # a draft item cannot be used by a definition
    spec = command_spec(["/bin/true"])
    spec["egress"] = {"profiles": [pid]}
    r = _sandbox(author, team_id, spec)
    assert r.status_code == 400, r.text
    assert "spec.egress.profiles[0]" in r.json()["detail"] and "not approved" in r.json()["detail"]

    # the author cannot approve; a security_admin can (and it is audited)
    reviewed = {"content_sha256": item["content_sha256"]}
    r = author.post(f"/v1/catalog/egress-profiles/{pid}/approve", json=reviewed)
    assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text
    assert viewer.post(f"/v1/catalog/egress-profiles/{pid}/approve", json=reviewed).status_code == 403
    got = secadm.ok("POST", f"/v1/catalog/egress-profiles/{pid}/approve", json=dict(reviewed, comment="ok"),
                    expect=(200,))
    assert got["state"] == "approved" and got["approved_by"] and got["content_sha256"] == item["content_sha256"]
    assert _sandbox(author, team_id, spec).status_code == 201

    # any change returns it to draft; tenant_admin approves again
    got = author.ok("PATCH", f"/v1/catalog/egress-profiles/{pid}",
                    json={"body": {"rules": ["example.org"]}}, expect=(200,))
    assert got["state"] == "draft" and got["approved_by"] is None
    assert got["content_sha256"] != item["content_sha256"]
    r = _sandbox(author, team_id, spec)
    assert r.status_code == 400 and "not approved" in r.json()["detail"]
    # approved by content: the hash reviewed before the change is a 409, and the item stays a draft;
    # no hash is a 400 naming it
    r = api.post(f"/v1/catalog/egress-profiles/{pid}/approve", json=reviewed)
    assert r.status_code == 409 and r.json()["code"] == "conflict" and "content_sha256" in r.json()["detail"], r.text
    for body in ({}, {"comment": "no hash"}):
        r = api.post(f"/v1/catalog/egress-profiles/{pid}/approve", json=body)
        assert r.status_code == 400 and r.json()["code"] == "missing_field", r.text
        assert "content_sha256" in r.json()["detail"], r.text
    r = api.post(f"/v1/catalog/egress-profiles/{pid}/approve", json={"content_sha256": "abc"})
    assert r.status_code == 400 and "content_sha256" in r.json()["detail"], r.text
    assert api.ok("GET", f"/v1/catalog/egress-profiles/{pid}", expect=(200,))["state"] == "draft"
    assert api.ok("POST", f"/v1/catalog/egress-profiles/{pid}/approve",
                  json={"content_sha256": got["content_sha256"]}, expect=(200,))["state"] == "approved"
    assert _items(api, "egress-profiles", state="draft") is not None

    acts = [i["action"] for i in _audit_of(api, pid, since, want=4)]
    assert acts.count("catalog.approve") == 2, acts
    assert "catalog.create" in acts and "catalog.update" in acts, acts


def test_spec_catalog_fields(api, team_id):
    img = _by_name(api, "images", "debian-python")
    spec = command_spec(["/bin/true"])
    spec["image"] = "no-such-image"
    r = _sandbox(api, team_id, spec)
    assert r.status_code == 400 and "spec.image" in r.json()["detail"], r.text
    draft_img = api.ok("POST", "/v1/catalog/images", json={"name": unique_name("img"), "body": {}}, expect=(201,))
    spec["image"] = draft_img["id"]
    r = _sandbox(api, team_id, spec)
    assert r.status_code == 400 and "spec.image" in r.json()["detail"] and "not approved" in r.json()["detail"]
    spec["image"] = img["id"]
    assert _sandbox(api, team_id, spec).status_code == 201
    spec["image"] = "debian-minimal"
    assert _sandbox(api, team_id, spec).status_code == 201
    spec["skills"] = ["nope"]
    r = _sandbox(api, team_id, spec)
    assert r.status_code == 400 and "spec.skills[0]" in r.json()["detail"]


def test_prompt_vars_typed(api, team_id):
    tpl = api.ok("POST", "/v1/catalog/prompt-templates", json={"name": unique_name("tpl"), "body": {
        "body": "Fix {{count}} bugs in {{path}} (strict={{strict}}).",
        "variables": {"path": {"type": "string", "required": True}, "count": {"type": "integer", "default": 3},
                 "strict": {"type": "boolean", "default": False}}}}, expect=(201,))
    spec = command_spec(["/bin/true"])
    spec["prompt"] = {"template": tpl["id"], "vars": {"path": "src/"}}
    r = _sandbox(api, team_id, spec)
    assert r.status_code == 400 and "not approved" in r.json()["detail"]
    api.ok("POST", f"/v1/catalog/prompt-templates/{tpl['id']}/approve", json={"content_sha256": tpl["content_sha256"]},
           expect=(200,))
    cases = [
        ({"path": "src/", "bogus": 1}, "spec.prompt.vars.bogus"),
        ({"path": "src/", "count": "three"}, "spec.prompt.vars.count"),
        ({"path": 7}, "spec.prompt.vars.path"),
        ({"path": "src/", "strict": "yes"}, "spec.prompt.vars.strict"),
    ]
    for vars_, field in cases:
        spec["prompt"] = {"template": tpl["id"], "vars": vars_}
        r = _sandbox(api, team_id, spec)
        assert r.status_code == 400, (vars_, r.text)
        assert field in r.json()["detail"], (field, r.text)
    spec["prompt"] = {"template": tpl["id"], "vars": {"path": "src/", "strict": True}}
    sb = api.ok("POST", "/v1/sandboxes", json={"name": unique_name("cat"), "team": team_id, "spec": spec},
                expect=(201,))
    api.ok("POST", f"/v1/sandboxes/{sb['id']}/versions", expect=(201,))
    pol = api.ok("GET", f"/v1/sandboxes/{sb['id']}/versions/1/effective-policy", expect=(200,))
    assert pol["prompt"] == "Fix 3 bugs in src/ (strict=true)."


def test_effective_policy(api, team_id):
    gh = _by_name(api, "egress-profiles", "github")
    npm = _by_name(api, "egress-profiles", "npm")
    skill = api.ok("POST", "/v1/catalog/skills", json={"name": unique_name("sk"), "body": {
        "description": "d", "instructions": "do it", "files": {"ref/a.txt": "A"}}}, expect=(201,))
    api.ok("POST", f"/v1/catalog/skills/{skill['id']}/approve", json={"content_sha256": skill["content_sha256"]},
           expect=(200,))
    spec = command_spec(["/bin/true"], files=[{"path": "x.txt", "content": "x"}])
    spec["limits"] = {"memory_mb": 512}
    spec["image"] = "node-agents"
    spec["skills"] = [skill["id"]]
    spec["egress"] = {"allow": ["api.example.com:8443"], "profiles": [gh["id"], npm["id"]], "unknown": "ask"}
    spec["secrets"] = [{"name": "CAT_SECRET", "as": {"env": "CAT_VAR"}}]
    sb = api.ok("POST", "/v1/sandboxes", json={"name": unique_name("cat"), "team": team_id, "spec": spec},
                expect=(201,))
    api.ok("POST", f"/v1/sandboxes/{sb['id']}/versions", expect=(201,))
    pol = api.ok("GET", f"/v1/sandboxes/{sb['id']}/versions/1/effective-policy", expect=(200,))
    assert pol["image"] == "node-agents"
    rules = [(r["host"], r["port"], r["source"]) for r in pol["egress"]["rules"]]
    assert rules == [("api.example.com", 8443, "allow"),
                     ("github.com", 0, f"profile:{gh['id']}"), ("*.github.com", 0, f"profile:{gh['id']}"),
                     ("*.githubusercontent.com", 0, f"profile:{gh['id']}"),
                     ("registry.npmjs.org", 0, f"profile:{npm['id']}")], rules
    assert pol["egress"]["unknown"] == "ask" and pol["egress"]["ask_timeout_s"] > 0
    assert pol["limits"] == {"timeout_s": 1800, "cpus": 1.0, "memory_mb": 512, "disk_mb": 2048, "pids": 512}
    assert pol["secrets"] == [{"name": "CAT_SECRET", "as": {"env": "CAT_VAR"}}]
    paths = [(f["path"], f["source"]) for f in pol["files"]]
    assert paths[0] == ("x.txt", "spec")
    assert (f".paddock/skills/{skill['name']}/SKILL.md", f"skill:{skill['id']}") in paths
    assert (f".paddock/skills/{skill['name']}/ref/a.txt", f"skill:{skill['id']}") in paths
    assert all("content" not in f for f in pol["files"])
    assert pol["prompt"] is None
    # an item changed back to draft after publishing: the policy no longer resolves
    api.ok("PATCH", f"/v1/catalog/skills/{skill['id']}", json={"body": {"description": "e"}}, expect=(200,))
    r = api.get(f"/v1/sandboxes/{sb['id']}/versions/1/effective-policy")
    assert r.status_code == 409 and "spec.skills[0]" in r.json()["detail"], r.text
    assert api.get(f"/v1/sandboxes/{sb['id']}/versions/9/effective-policy").status_code == 404


def _import(tenant, folder):
    return run_api_command("import-skills", "--tenant", tenant, folder)


def test_import_skills(api, credentials, tmp_path):
    since = _since()
    tenant = credentials["PADDOCK_TENANT"]
    out = _import(tenant, REPO / "examples" / "skills")
    assert out.returncode == 0, out.stderr[-2000:]
    names = {i["name"]: i for i in _items(api, "skills")}
    assert {"commit-messages", "python-tests"} <= set(names), sorted(names)
    cm = names["commit-messages"]
    assert "template.txt" in cm["body"]["files"] and cm["body"]["description"]

    # idempotent by name: unchanged stays, a change is updated (and is a draft)
    name = unique_name("imp")
    d = tmp_path / "s1"
    d.mkdir()
    (d / "SKILL.md").write_text(f"---\nname: {name}\ndescription: first\n---\nbody one\n")
    out = _import(tenant, tmp_path)
    assert out.returncode == 0 and f"created {name}" in out.stdout, (out.stdout, out.stderr[-1000:])
    item = _by_name(api, "skills", name)
    assert item["state"] == "draft" and item["body"]["instructions"] == "body one\n"
    api.ok("POST", f"/v1/catalog/skills/{item['id']}/approve", json={"content_sha256": item["content_sha256"]},
           expect=(200,))
    out = _import(tenant, tmp_path)
    assert f"unchanged {name}" in out.stdout, out.stdout
    assert _by_name(api, "skills", name)["state"] == "approved"
    (d / "SKILL.md").write_text(f"---\nname: {name}\ndescription: second\n---\nbody two\n")
    out = _import(tenant, tmp_path)
    assert f"updated {name}" in out.stdout, out.stdout
    item = _by_name(api, "skills", name)
    assert item["state"] == "draft" and item["body"]["description"] == "second"
    # both writes of the operator command are in the tenant's audit chain
    # (the unchanged import wrote nothing and is not)
    recs = _audit_of(api, item["id"], since, want=3)
    assert [(i["action"], i["actor"]) for i in recs] == [
        ("catalog.create", "service:paddock-api-operator"), ("catalog.approve", f"user:{api.ok('GET', '/v1/me', expect=(200,))['user']['id']}"),
        ("catalog.update", "service:paddock-api-operator")], recs
    (d / "SKILL.md").write_text("no front matter\n")
    out = _import(tenant, tmp_path)
    assert out.returncode != 0 and "front matter" in out.stderr
