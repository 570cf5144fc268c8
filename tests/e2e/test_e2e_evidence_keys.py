"""Evidence key rotation (issue 14 §2, docs/CONTRACTS.md "Reviews and the
signed evidence bundle"): `paddock evidence rotate-key` (POST
/v1/tenant/keys/rotate, tenant_admin, audited tenant.evidence_key_rotate)
makes a new active Ed25519 key; the old one stays published, retired with
its validity window, so a bundle signed before the rotation still verifies
offline next to one signed after; each bundle names its key and verify
picks the key by that id, naming an unknown or missing one. A non-admin
gets 403 and nothing changes; a body is refused naming its field. Only
loopback traffic."""

import datetime
import json
import secrets

import pytest

from cli_support import Cli
from conftest import TERMINAL, Api, audit_all, command_spec, login, tar_members, unique_name, ustar, wait_for


@pytest.fixture(scope="module")
def world(endpoints, credentials, api, team_id, runs, tmp_path_factory):
    run_id = runs.start(command_spec(["sh", "-c", "echo rotate-me"]))
    wait_for(f"run {run_id} to finish", lambda: api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))["status"]
             in TERMINAL, timeout=180)
    cli = Cli(tmp_path_factory.mktemp("paddock-config-evkeys"), endpoints.api)
    r = cli("login", "--tenant", credentials["PADDOCK_TENANT"], "--user", credentials["PADDOCK_USER"],
            "--password-stdin", input=credentials["PADDOCK_PASSWORD"] + "\n")
    assert r.returncode == 0, r.stderr
    work = tmp_path_factory.mktemp("evkeys")
    since = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    bundle_a = work / "a.tar"
    cli.ok("run", "evidence", run_id, "-o", bundle_a)
    out = cli.ok("evidence", "rotate-key")
    assert out.startswith("evidence signing key "), out
    rotated = out.split()[-1]
    bundle_b = work / "b.tar"
    cli.ok("run", "evidence", run_id, "-o", bundle_b)
    keys = work / "keys.json"
    keys.write_text(cli.ok("evidence", "keys"))
    return {"run": run_id, "cli": cli, "work": work, "a": bundle_a, "b": bundle_b, "keys": keys,
            "rotated": rotated, "since": since}


def _manifest(path):
    return json.loads(dict(tar_members(path.read_bytes()))["manifest.json"])


def test_bundles_from_before_and_after_a_rotation_both_verify(world, api, me):
    cli = world["cli"]
    kid_a, kid_b = _manifest(world["a"])["kid"], _manifest(world["b"])["kid"]
    assert kid_a != kid_b and kid_b == world["rotated"], (kid_a, kid_b, world["rotated"])
    for bundle, kid in ((world["a"], kid_a), (world["b"], kid_b)):
        out = cli.ok("evidence", "verify", bundle, "--keys", world["keys"])
        assert out.startswith(f"verified: run {world['run']}") and kid in out, out
    # the published list: B active, A retired with its window, newest first
    keys = {k["kid"]: k for k in json.loads(world["keys"].read_text())["keys"]}
    assert keys[kid_b]["status"] == "active" and keys[kid_b]["retired_at"] is None, keys[kid_b]
    assert keys[kid_a]["status"] == "retired", keys[kid_a]
    assert keys[kid_a]["created_at"] <= keys[kid_a]["retired_at"] <= keys[kid_b]["created_at"], (keys[kid_a],
                                                                                                  keys[kid_b])
    assert sum(k["status"] == "active" for k in keys.values()) == 1, keys
    listed = api.ok("GET", "/v1/tenant/keys", expect=(200,))["keys"]
    assert listed[0]["kid"] == kid_b and kid_a in {k["kid"] for k in listed}
    # audited, naming the new key
    wait_for("the tenant.evidence_key_rotate audit record", lambda: any(
        a["action"] == "tenant.evidence_key_rotate" and a["object_id"] == me["tenant"]["id"]
        for a in audit_all(api, since=world["since"])), timeout=60)


def test_verify_picks_the_key_by_id_and_refuses_a_forgery(world):
    cli, work = world["cli"], world["work"]
    a, b = dict(tar_members(world["a"].read_bytes())), dict(tar_members(world["b"].read_bytes()))
    order_a = [n for n, _ in tar_members(world["a"].read_bytes())]
    kid_b = json.loads(b["manifest.json"])["kid"]

    def write(name, files):
        path = work / name
        path.write_bytes(ustar([(n, files[n]) for n in order_a]))
        return path

    # A's manifest with B's signature: B's key did not sign it
    forged = write("forged-sig.tar", dict(a, **{"manifest.sig": b["manifest.sig"]}))
    r = cli.fails(1, "evidence", "verify", forged, "--keys", world["keys"])
    assert "manifest.sig: the signature does not verify" in r.stderr, r.stderr
    # A's manifest claiming B's key, with B's signature: still not B's signature over these bytes
    m = json.loads(a["manifest.json"])
    m["kid"] = kid_b
    claimed = write("forged-kid.tar", dict(a, **{"manifest.json": json.dumps(m, indent=1, sort_keys=True).encode(),
                                                 "manifest.sig": b["manifest.sig"]}))
    r = cli.fails(1, "evidence", "verify", claimed, "--keys", world["keys"])
    assert f"manifest.sig: the signature does not verify over manifest.json with key {kid_b}" in r.stderr, r.stderr
    # keys without A's: the unknown key is named
    kid_a = json.loads(a["manifest.json"])["kid"]
    only_b = work / "only-b.json"
    keys = json.loads(world["keys"].read_text())
    only_b.write_text(json.dumps({"keys": [k for k in keys["keys"] if k["kid"] != kid_a]}))
    r = cli.fails(1, "evidence", "verify", world["a"], "--keys", only_b)
    assert f'signing key "{kid_a}" is not among the tenant\'s keys' in r.stderr, r.stderr
    assert cli.ok("evidence", "verify", world["b"], "--keys", only_b).startswith("verified:")
    # a manifest naming no key
    del m["kid"]
    nokid = write("no-kid.tar", dict(a, **{"manifest.json": json.dumps(m, indent=1, sort_keys=True).encode()}))
    r = cli.fails(1, "evidence", "verify", nokid, "--keys", world["keys"])
    assert "manifest.json: names no signing key (kid)" in r.stderr, r.stderr


def test_only_the_tenant_admin_rotates_and_a_refusal_changes_nothing(endpoints, credentials, api, team_id):
    before = api.ok("GET", "/v1/tenant/keys", expect=(200,))
    pw = secrets.token_hex(12)
    u = api.ok("POST", "/v1/users", json={"username": unique_name("evkeys"), "password": pw}, expect=(201,))
    api.ok("PUT", f"/v1/teams/{team_id}/members/{u['id']}", json={"roles": ["reviewer"]}, expect=(200,))
    r = login(endpoints, credentials["PADDOCK_TENANT"], u["username"], pw)
    assert r.status_code == 200, r.text[:300]
    reviewer = Api(endpoints.api, r.json()["token"])
    r = reviewer.post("/v1/tenant/keys/rotate")
    assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text
    assert reviewer.ok("GET", "/v1/tenant/keys", expect=(200,)) == before
    # the route takes no body: a field is refused by name, and nothing rotates
    r = api.post("/v1/tenant/keys/rotate", json={"kid": "mine"})
    assert r.status_code == 400 and "kid" in r.json()["detail"], r.text
    assert api.ok("GET", "/v1/tenant/keys", expect=(200,)) == before
