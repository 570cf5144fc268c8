"""A new tenant administered with the `paddock` CLI alone.

The tenant is bootstrapped with `paddock-api bootstrap` (as an operator
would); from then on every step goes through the real `paddock` binary:
the admin logs in, creates a team and a user, grants roles, creates an
egress profile and approves it, the new user logs in with the one-time
password and changes it (`paddock passwd`: it must be changed at first
login), authors a definition that uses the profile, publishes it, reads
its effective policy and runs it; roles are enforced (forbidden -> exit 1),
the audit chain verifies, and command-line mistakes exit 2 naming the
argument.
"""

import json
import re
import time
import uuid

import pytest

from cli_support import Cli
from conftest import REPO, bootstrap_tenant, test_upstream_addrs

MARKER = "cli-admin-marker"


def _policy_defaults():
    """The limit defaults as the platform defines them once (lib/core/domain.h)."""
    text = (REPO / "lib" / "core" / "domain.h").read_text()
    found = dict(re.findall(r"#define RUN_DEFAULT_(TIMEOUT_S|CPUS|MEMORY_MB|DISK_MB|PIDS) ([0-9.]+)", text))
    assert {"TIMEOUT_S", "CPUS", "MEMORY_MB", "DISK_MB", "PIDS"} <= found.keys(), found
    return {k.lower(): float(v) for k, v in found.items()}


@pytest.fixture(scope="module")
def world(endpoints, tmp_path_factory):
    tenant = f"cli-adm-{uuid.uuid4().hex[:8]}"
    admin_name = "root"
    password = bootstrap_tenant(tenant, admin_name)
    admin = Cli(tmp_path_factory.mktemp("cli-admin"), endpoints.api)
    out = admin.ok("login", "--tenant", tenant, "--user", admin_name, "--password-stdin", input=password + "\n")
    assert f"logged in as {admin_name} in tenant {tenant}" in out
    return {"binary": admin.binary, "api": endpoints.api, "tenant": tenant, "admin": admin, "admin_name": admin_name,
            "tmp": tmp_path_factory.mktemp("cli-admin-files"), "factory": tmp_path_factory}


def _write(world, name, doc):
    p = world["tmp"] / name
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(p)


def test_tenant_administration_end_to_end(world):
    admin, tenant = world["admin"], world["tenant"]

    me = admin.json("me")
    assert me["tenant"]["name"] == tenant and me["user"]["username"] == world["admin_name"]
    assert "tenant_admin" in me["tenant_roles"]
    human = admin.ok("me")
    assert f"tenant:       {tenant}" in human and "tenant_admin" in human

    # a team and a user
    team = f"platform-{uuid.uuid4().hex[:6]}"
    team_id = admin.ok("team", "create", team).strip()
    assert re.fullmatch(r"[0-9a-f-]{36}", team_id), team_id
    listing = admin.ok("team", "list")
    assert listing.splitlines()[0].split()[:2] == ["ID", "NAME"]
    assert any(l.split()[:2] == [team_id, team] for l in listing.splitlines()), listing
    assert admin.json("team", "show", team)["id"] == team_id  # by name
    assert admin.fails(1, "team", "create", team).stderr.find("(conflict)") >= 0

    out = admin.ok("user", "create", "alice")
    fields = dict(l.split(": ", 1) for l in out.splitlines() if ": " in l)
    alice_id, alice_pw = fields["id"], fields["password"]
    assert fields["username"] == "alice" and len(alice_pw) >= 12
    users = admin.ok("user", "list")
    assert any(l.split()[:3] == [alice_id, "alice", "active"] for l in users.splitlines()), users

    # roles: alice authors and launches in the team; the admin approves the catalog there
    out = admin.ok("grant", team, "alice", "sandbox_author", "launcher", "viewer")
    assert "alice in team" in out and "sandbox_author,launcher,viewer" in out, out
    assert "added:   sandbox_author,launcher,viewer" in out, out
    out = admin.ok("grant", team_id, world["admin_name"], "security_admin")
    assert "security_admin" in out
    members = {m["user"]["username"]: set(m["roles"]) for m in admin.json("members", team)["items"]}
    assert members == {"alice": {"sandbox_author", "launcher", "viewer"},
                       world["admin_name"]: {"security_admin"}}, members
    me_team = [t for t in admin.json("me")["teams"] if t["id"] == team_id]
    assert me_team and me_team[0]["roles"] == ["security_admin"], me_team
    err = admin.fails(1, "grant", team, "alice", "overlord").stderr
    assert "(invalid_field)" in err and "roles[0]" in err, err

    # the one-time password must be changed at first login: `paddock passwd`
    alice = Cli(world["factory"].mktemp("cli-alice"), world["api"])
    r = alice("login", "--tenant", tenant, "--user", "alice", "--password-stdin", input=alice_pw + "\n")
    assert r.returncode == 0 and "paddock passwd" in r.stderr, r.stderr
    assert "(password_change_required)" in alice.fails(1, "team", "list").stderr
    alice_pw, one_time = "alice-" + uuid.uuid4().hex, alice_pw
    assert "password changed" in alice.ok("passwd", "--password-stdin", input=f"{one_time}\n{alice_pw}\n")
    ame = alice.json("me")
    assert ame["user"]["id"] == alice_id and ame["tenant_roles"] == []
    assert [(t["name"], sorted(t["roles"])) for t in ame["teams"]] == \
        [(team, ["launcher", "sandbox_author", "viewer"])]
    # ...and is refused what her roles do not carry: exit 1 with the API's code
    for args in (["team", "create", "alices-team"], ["user", "list"], ["audit", "verify"],
                 ["user", "create", "mallory"], ["grant", team_id, alice_id, "tenant_admin"]):
        err = alice.fails(1, *args).stderr
        assert "(forbidden)" in err, (args, err)

    # the catalog: managed items are there; a new profile starts as a draft
    profiles = alice.ok("catalog", "list", "egress-profiles", "--state", "approved")
    assert re.search(r"^\S+\s+pypi\s+approved\s+yes", profiles, re.M), profiles
    prof_name = f"internal-{uuid.uuid4().hex[:6]}"
    prof_file = _write(world, "profile.json", {"description": "internal mirrors",
                                                "rules": ["mirror.internal.test:443", "*.pkgs.internal.test"]})
    prof_id = alice.ok("catalog", "create", "egress-profile", "--file", prof_file, "--name", prof_name).strip()
    drafts = alice.json("catalog", "list", "egress-profiles", "--state", "draft")["items"]
    assert [(i["id"], i["state"]) for i in drafts] == [(prof_id, "draft")], drafts
    assert alice.json("catalog", "show", "egress-profiles", prof_name)["body"]["rules"][0] == \
        "mirror.internal.test:443"

    spec = {"agent": {"type": "command", "command": ["/bin/sh", "-c", f"echo {MARKER}"]},
            "egress": {"allow": ["api.internal.test:8443"], "profiles": [prof_id]},
            "limits": {"timeout_s": 60}}
    sb_file = _write(world, "sandbox.json", {"name": f"cli-admin-{uuid.uuid4().hex[:6]}", "spec": spec})
    # a draft item cannot be used; alice (no security_admin) cannot approve it
    err = alice.fails(1, "sandbox", "create", "-f", sb_file, "--team", team_id).stderr
    assert "not approved" in err and "spec.egress.profiles[0]" in err, err
    reviewed = admin.json("catalog", "show", "egress-profiles", prof_id)["content_sha256"]
    assert "(forbidden)" in alice.fails(1, "catalog", "approve", "egress-profiles", prof_id,
                                        "--sha256", reviewed).stderr
    # approved by content: no hash is a usage error, another hash the API's conflict
    assert "--sha256" in admin.fails(2, "catalog", "approve", "egress-profiles", prof_name).stderr
    assert "(conflict)" in admin.fails(1, "catalog", "approve", "egress-profiles", prof_name,
                                       "--sha256", "0" * 64).stderr
    assert admin.json("catalog", "show", "egress-profiles", prof_id)["state"] == "draft"
    out = admin.ok("catalog", "approve", "egress-profiles", prof_name, "--sha256", reviewed,
                   "--comment", "reviewed")
    assert f"approved egress-profiles {prof_name} ({prof_id})" in out, out
    assert admin.json("catalog", "show", "egress-profiles", prof_id)["state"] == "approved"

    # alice authors the definition, revises its draft, publishes it
    sandbox = alice.ok("sandbox", "create", "-f", sb_file, "--team", team).strip()
    spec["limits"]["memory_mb"] = 1024
    out = alice.ok("sandbox", "draft", sandbox, "--file", _write(world, "draft.json", {"spec": spec}))
    assert "draft of sandbox" in out
    assert alice.ok("sandbox", "publish", sandbox).strip() == "1"
    v1 = json.loads(alice.ok("sandbox", "version", sandbox, "1"))
    assert v1["version"] == 1 and v1["spec"]["limits"] == {"timeout_s": 60, "memory_mb": 1024}

    # the effective policy: the profile expanded after the explicit rule, limit defaults filled in
    pol = json.loads(alice.ok("sandbox", "policy", sandbox, "1"))
    assert pol["sandbox"] == sandbox and pol["version"] == 1 and pol["agent"]["type"] == "command"
    rules = [(r["host"], r["port"], r["source"]) for r in pol["egress"]["rules"]]
    assert rules == [("api.internal.test", 8443, "allow"),
                     ("mirror.internal.test", 443, f"profile:{prof_id}"),
                     ("*.pkgs.internal.test", 0, f"profile:{prof_id}")], rules
    assert pol["egress"]["profiles"] == [{"id": prof_id, "name": prof_name}]
    assert pol["egress"]["unknown"] == "deny"
    defaults = _policy_defaults()
    limits = pol["limits"]
    assert limits["timeout_s"] == 60 and limits["memory_mb"] == 1024, limits
    for key in ("cpus", "disk_mb", "pids"):
        assert limits[key] == defaults[key], (key, limits, defaults)

    # and runs it
    r = alice("run", "launch", "--sandbox", sandbox, "--watch", timeout=180)
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert MARKER in r.stdout and re.search(r"status.*succeeded", r.stdout), r.stdout

    # the audit log saw all of it (delivered asynchronously: relay, Kafka,
    # evidence) and its chain is intact
    wanted = ("team.create", "user.create", "team.member.grant", "catalog.create", "catalog.approve")
    deadline = time.monotonic() + 30
    while True:
        actions = [i["action"] for i in admin.json("audit", "list")["items"]]
        if all(a in actions for a in wanted) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for a in wanted:
        assert a in actions, (a, actions)
    out = admin.ok("audit", "verify")
    assert out.startswith("audit chain OK:"), out
    assert admin.json("audit", "verify")["ok"] is True
    table = admin.ok("audit", "list").splitlines()
    assert table[0].split() == ["SEQ", "TIME", "ACTOR", "ACTION", "OBJECT", "OUTCOME"]
    assert any("catalog.approve" in l and f"catalog_item:{prof_id}" in l for l in table), table
    # the filters: exactly the approval of the profile, and nothing for another outcome
    only = admin.json("audit", "list", "--action", "catalog.approve", "--object-type", "catalog_item",
                      "--object-id", prof_id)["items"]
    assert [(i["action"], i["object_id"]) for i in only] == [("catalog.approve", prof_id)], only
    assert admin.json("audit", "list", "--action", "catalog.approve", "--object-id", prof_id,
                      "--outcome", "failure")["items"] == []
    actor = only[0]["actor"]
    mine = admin.json("audit", "list", "--actor", actor)["items"]
    assert mine and all(i["actor"] == actor for i in mine), mine
    old = admin.ok("audit", "list", "--to", "2000-01-01T00:00:00Z").splitlines()
    assert [l.split() for l in old] == [table[0].split()], old
    assert "(invalid_field)" in admin.fails(1, "audit", "list", "--from", "yesterday").stderr

    # disabling alice ends her session at once; enabled again she must log in anew
    assert "disabled" in admin.ok("user", "disable", "alice")
    assert "(unauthorized)" in alice.fails(1, "me").stderr
    admin.ok("user", "enable", alice_id)
    assert "(unauthorized)" in alice.fails(1, "me").stderr
    alice.ok("login", "--tenant", tenant, "--user", "alice", "--password-stdin", input=alice_pw + "\n")
    assert alice.json("me")["user"]["id"] == alice_id

    # revoking removes her from the team
    assert "removed from team" in admin.ok("revoke", team, "alice")
    assert [m["user"]["username"] for m in admin.json("members", team)["items"]] == [world["admin_name"]]


def test_team_and_user_lifecycle(world):
    admin = world["admin"]
    name = f"tmp-{uuid.uuid4().hex[:6]}"
    tid = admin.ok("team", "create", name).strip()
    new = f"renamed-{uuid.uuid4().hex[:6]}"
    admin.ok("team", "rename", name, new)
    assert admin.json("team", "show", tid)["name"] == new
    assert "deleted" in admin.ok("team", "delete", new)
    assert "(not_found)" in admin.fails(1, "team", "show", new).stderr
    assert "(not_found)" in admin.fails(1, "team", "show", tid).stderr

    created = admin.json("user", "create", "bob-admin", "--tenant-role", "tenant_admin")
    assert created["tenant_roles"] == ["tenant_admin"] and created["password"]
    out = admin.ok("user", "create", "carol", "--password-stdin", input="a-long-enough-password\n")
    assert "password:" not in out  # nothing generated, nothing to show
    carol = Cli(world["factory"].mktemp("cli-carol"), world["api"])
    carol.ok("login", "--tenant", world["tenant"], "--user", "carol", "--password-stdin",
             input="a-long-enough-password\n")
    assert carol.json("me")["teams"] == []
    assert "deleted" in admin.ok("user", "delete", "carol")
    assert "(not_found)" in admin.fails(1, "user", "delete", "carol").stderr
    assert "(conflict)" in admin.fails(1, "user", "disable", world["admin_name"]).stderr


def test_service_account_tokens(world):
    admin = world["admin"]
    sa_id = admin.ok("service-account", "create", "ci-bot", "--team", "default", "--role", "launcher").strip()
    listing = admin.ok("service-account", "list")
    assert any(l.split()[:3] == [sa_id, "ci-bot", "active"] for l in listing.splitlines()), listing
    out = admin.ok("token", "create", "ci-bot", "--name", "pipeline", "--expires-in", "600")
    fields = dict(l.split(": ", 1) for l in out.splitlines() if ": " in l)
    token, token_id = fields["token"], fields["id"]
    bot = Cli(world["factory"].mktemp("cli-bot"), world["api"])
    me = bot.json("me", env={"PADDOCK_TOKEN": token})
    assert me["user"]["id"] == sa_id
    assert [(t["name"], t["roles"]) for t in me["teams"]] == [("default", ["launcher"])]
    assert "revoked" in admin.ok("token", "revoke", "ci-bot", token_id)
    assert "(unauthorized)" in bot.fails(1, "me", env={"PADDOCK_TOKEN": token}).stderr
    assert "disabled" in admin.ok("service-account", "delete", sa_id)


def test_oidc_provider_configuration(world):
    """The tenant admin sets, shows and removes the OIDC provider with the CLI
    alone; a bad field is refused with its name and changes nothing."""
    admin = world["admin"]
    assert "(not_found)" in admin.fails(1, "oidc", "show").stderr
    config = {"issuer": "https://idp.cli.test", "audience": "paddock-cli",
              # plain http only to the test network (PADDOCK_OIDC_HTTP_NETS); loopback is the floor
              "jwks_url": f"http://{test_upstream_addrs()[0]}:9/jwks.json", "clock_skew_s": 30,
              "role_mapping": {"claim": "groups", "map": {"admins": {"team": "*", "roles": ["tenant_admin"]}}}}
    assert "https://idp.cli.test" in admin.ok("oidc", "set", "--file", _write(world, "oidc.json", config))
    shown = admin.json("oidc", "show")
    assert (shown["issuer"], shown["audience"], shown["clock_skew_s"]) == ("https://idp.cli.test", "paddock-cli", 30)
    bad = dict(config, clock_skew_s=100000)
    assert "clock_skew_s" in admin.fails(1, "oidc", "set", "--file", _write(world, "bad.json", bad)).stderr
    assert admin.json("oidc", "show")["clock_skew_s"] == 30
    assert "--file is required" in admin.fails(2, "oidc", "set").stderr
    assert "removed" in admin.ok("oidc", "delete")
    assert "(not_found)" in admin.fails(1, "oidc", "show").stderr


@pytest.mark.parametrize("args,needle", [
    (["team", "create"], "missing argument NAME"),
    (["team", "show"], "missing argument TEAM"),
    (["team", "create", "a", "b"], 'unexpected argument "b"'),
    (["team", "list", "--bogus"], '"--bogus"'),
    (["team", "frob"], 'unknown subcommand "frob"'),
    (["grant", "t"], "missing argument USER"),
    (["grant", "t", "u"], "missing argument ROLE"),
    (["user", "create", "dave", "--tenant-role", "launcher"], "--tenant-role"),
    (["user", "create", "dave", "--tenant-role"], "--tenant-role needs a value"),
    (["catalog", "list", "bogus-kind"], '"bogus-kind"'),
    (["catalog", "list", "images", "--state", "pending"], "--state"),
    (["catalog", "create", "egress-profiles"], "--file"),
    (["catalog", "approve", "skills"], "missing argument ITEM"),
    (["sandbox", "policy", "x"], "missing argument VERSION"),
    (["sandbox", "policy", "x", "latest"], "VERSION"),
    (["sandbox", "version", "x", "0"], "VERSION"),
    (["sandbox", "draft", "x"], "--file"),
    (["audit", "list", "--after", "-1"], "--after"),
    (["audit", "frob"], '"frob"'),
    (["audit", "list", "--outcome", "maybe"], "--outcome"),
    (["token", "create"], "missing argument SA"),
    (["service-account", "create", "x", "--role", "viewer"], "--team"),
    (["frobnicate"], '"frobnicate"'),
])
def test_usage_errors_exit_2(world, args, needle):
    r = world["admin"](*args)
    assert r.returncode == 2, (args, r.returncode, r.stdout, r.stderr)
    assert needle in r.stderr, (args, r.stderr)


def test_usage_errors_in_files(world):
    admin = world["admin"]
    bad = _write(world, "bad.json", "{not json")
    err = admin.fails(2, "catalog", "create", "egress-profiles", "--file", bad, "--name", "x").stderr
    assert "not valid JSON" in err and "line 1" in err
    err = admin.fails(2, "catalog", "create", "egress-profiles", "--file", str(world["tmp"] / "nope.json"),
                      "--name", "x").stderr
    assert "nope.json" in err
    body_only = _write(world, "body.json", {"rules": ["a.example.test"]})
    assert "--name" in admin.fails(2, "catalog", "create", "egress-profiles", "--file", body_only).stderr
    assert "not valid JSON" in admin.fails(2, "sandbox", "draft", "x", "--file", "-", input="[1,").stderr


def test_help_and_json_flag(world):
    admin = world["admin"]
    for group in ("team", "user", "catalog", "audit", "service-account", "grant", "members", "me"):
        r = admin(group, "--help")
        assert r.returncode == 0 and r.stdout.startswith(f"usage: paddock {group}"), (group, r.stdout, r.stderr)
        assert admin("help", group).stdout == r.stdout
    top = admin("--help").stdout
    for cmd in ("team ", "user ", "grant ", "catalog ", "sandbox ", "audit ", "secret ", "context ", "--json"):
        assert f"\n  {cmd}" in top or cmd in top, cmd
    assert "usage: paddock grant [OPTIONS] TEAM USER [ROLE...]" in admin.ok("help", "grant")
    assert "\n  verify " in admin.ok("help", "audit")
    # --json before the command works too, and gives the API's list shape
    listed = json.loads(admin.ok("--json", "team", "list"))
    assert "default" in [t["name"] for t in listed["items"]]
