"""The signed evidence bundle (issue 14 §2, docs/CONTRACTS.md "Reviews and
the signed evidence bundle"): GET /v1/runs/{id}/evidence of a real finished
command-agent run is one ustar archive whose manifest is signed with the
tenant's Ed25519 key (GET /v1/tenant/keys); it is checked here independently
(Python's tarfile and cryptography, the audit chain's netstrings) and by
`paddock evidence verify`, which fails naming the part when one byte of any
part or of the signature changes, and when a re-signed bundle lacks an
event, repeats one, breaks the audit chain or carries an extra file. A
viewer without the reviewer role gets 403, another tenant 404. Only
loopback traffic."""

import base64
import hashlib
import io
import datetime
import json
import secrets
import tarfile
import uuid

import pytest

from cli_support import Cli
from conftest import (TERMINAL, Api, all_events, audit_all, bootstrap_tenant, command_spec, login, tar_members,
                      unique_name, ustar, wait_for)

PARTS = ["run.json", "definition.json", "prompt.txt", "events.jsonl", "records.json", "approvals.json",
         "reviews.json", "artifacts/manifest.json", "audit.jsonl"]
SPEC = command_spec(["sh", "-c", "echo evidence-output; echo changed-by-run >> notes.txt"],
                    files=[{"path": "notes.txt", "content": "original\n"}])


def _user(endpoints, credentials, api, team, roles):
    pw = secrets.token_hex(12)
    u = api.ok("POST", "/v1/users", json={"username": unique_name("evb"), "password": pw}, expect=(201,))
    api.ok("PUT", f"/v1/teams/{team}/members/{u['id']}", json={"roles": roles}, expect=(200,))
    r = login(endpoints, credentials["PADDOCK_TENANT"], u["username"], pw)
    assert r.status_code == 200, r.text[:300]
    return {"id": u["id"], "username": u["username"], "password": pw, "api": Api(endpoints.api, r.json()["token"])}


@pytest.fixture(scope="module")
def world(endpoints, credentials, api, team_id, runs, tmp_path_factory):
    since = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    run_id = runs.start(SPEC)
    wait_for(f"run {run_id} to finish", lambda: api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))["status"]
             in TERMINAL, timeout=180)
    wait_for("the workspace.diff artifact", lambda: any(
        a["name"] == "workspace.diff" and a["size"] > 0
        for a in api.ok("GET", f"/v1/runs/{run_id}/artifacts", expect=(200,))["items"]), timeout=60)
    reviewer = _user(endpoints, credentials, api, team_id, ["reviewer"])
    viewer = _user(endpoints, credentials, api, team_id, ["viewer"])
    review = reviewer["api"].ok("POST", f"/v1/runs/{run_id}/reviews",
                                json={"outcome": "approve", "comment": "bundle me"}, expect=(201,))
    wait_for("the review event", lambda: any(e["kind"] == "review" for e in all_events(api, run_id)), timeout=60)
    cli = Cli(tmp_path_factory.mktemp("paddock-config-evidence"), endpoints.api)
    r = cli("login", "--tenant", credentials["PADDOCK_TENANT"], "--user", reviewer["username"], "--password-stdin",
            input=reviewer["password"] + "\n")
    assert r.returncode == 0, r.stderr
    work = tmp_path_factory.mktemp("evidence")
    keys = work / "keys.json"
    keys.write_text(cli.ok("evidence", "keys"))
    bundle = work / "bundle.tar"
    out = cli.ok("run", "evidence", run_id, "-o", bundle)
    assert str(bundle) in out, out
    return {"run": run_id, "since": since, "reviewer": reviewer, "viewer": viewer, "review": review, "cli": cli, "keys": keys,
            "bundle": bundle, "work": work}


def _members(data):
    members = tar_members(data)
    return dict(members), [n for n, _ in members]


def _netstring(b):
    return str(len(b)).encode() + b":" + b + b","


def _audit_hash(rec):
    fields = ["paddock.audit.v1", rec["tenant_id"], str(rec["seq"]), rec["message_id"], rec["ts"], rec["actor"],
              rec["action"], rec["object_type"], rec["object_id"], rec["source_ip"], rec["outcome"],
              rec["change_sha256"], rec["detail_text"]]
    return hashlib.sha256(rec["prev_hash"].encode() + b"".join(_netstring(f.encode()) for f in fields)).hexdigest()


def test_bundle_holds_the_run_and_its_manifest_verifies(world, api, me):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    run_id = world["run"]
    r = world["reviewer"]["api"].get(f"/v1/runs/{run_id}/evidence")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/x-tar"), r.text[:300]
    files, order = _members(r.content)
    assert order[:2] == ["manifest.json", "manifest.sig"], order
    assert set(order) == {"manifest.json", "manifest.sig", *PARTS, "artifacts/workspace.diff"}, order
    manifest = json.loads(files["manifest.json"])
    assert manifest["format"] == "paddock-evidence/1" and manifest["run"] == run_id
    assert manifest["tenant"] == me["tenant"]["id"]
    # the signature, by the published key (any user of the tenant reads the keys)
    keys = world["viewer"]["api"].ok("GET", "/v1/tenant/keys", expect=(200,))["keys"]
    key = next(k for k in keys if k["kid"] == manifest["kid"])
    assert key["alg"] == "Ed25519" and key["status"] == "active"
    Ed25519PublicKey.from_public_bytes(base64.b64decode(key["public_key"])).verify(
        base64.b64decode(files["manifest.sig"]), files["manifest.json"])
    # every file's size and hash, none unlisted
    listed = {f["path"]: f for f in manifest["files"]}
    assert set(listed) == set(order) - {"manifest.json", "manifest.sig"}
    for path, f in listed.items():
        assert f["size"] == len(files[path]) and f["sha256"] == hashlib.sha256(files[path]).hexdigest(), path
    # the parts say what the API says
    run = json.loads(files["run.json"])
    assert run["id"] == run_id and run["status"] == "succeeded" and run["node"] and run["review"]["outcome"] == "approve"
    assert "usage" in run and run["history"]["complete"]
    definition = json.loads(files["definition.json"])
    version = api.ok("GET", f"/v1/sandboxes/{run['sandbox']}/versions/{run['version']}", expect=(200,))
    assert definition["spec"] == version["spec"] and definition["spec_sha256"] == version["spec_sha256"]
    assert definition["effective_policy"]["limits"]["timeout_s"] == 60, definition["effective_policy"]
    events = [json.loads(line) for line in files["events.jsonl"].decode().splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [(e["seq"], e["kind"]) for e in events] == [(e["seq"], e["kind"]) for e in all_events(api, run_id)]
    assert any(e["kind"] == "output" and "evidence-output" in json.dumps(e["data"]) for e in events)
    assert [e["signer"] for e in events if e["kind"] == "review"] == ["api"]
    records = json.loads(files["records.json"])
    assert all(e["record"] in records for e in events if e.get("record")), "every signed record is in the bundle"
    reviews = json.loads(files["reviews.json"])
    assert [x["id"] for x in reviews] == [world["review"]["id"]]
    assert json.loads(files["approvals.json"]) == []
    arts = json.loads(files["artifacts/manifest.json"])
    diff = next(a for a in arts["items"] if a["name"] == "workspace.diff")
    assert diff["included"] and diff["sha256"] == hashlib.sha256(files["artifacts/workspace.diff"]).hexdigest()
    assert b"changed-by-run" in files["artifacts/workspace.diff"]
    # the audit records of the run, each re-verifiable from its own fields
    audit = [json.loads(line) for line in files["audit.jsonl"].decode().splitlines()]
    assert {"run.launch", "run.review"} <= {a["action"] for a in audit}, audit
    for a in audit:
        assert _audit_hash(a) == a["hash"], a


def test_cli_verifies_offline_and_with_the_api_keys(world):
    cli, bundle = world["cli"], world["bundle"]
    out = cli.ok("evidence", "verify", bundle, "--keys", world["keys"])
    assert out.startswith(f"verified: run {world['run']}"), out
    out = cli.ok("evidence", "verify", bundle)  # keys fetched from the configured api
    assert out.startswith("verified:"), out


def test_one_changed_byte_in_any_part_fails_naming_it(world):
    data = world["bundle"].read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as t:
        members = [(m.name, m.offset_data, m.size) for m in t.getmembers()]
    assert {"manifest.json", "manifest.sig", *PARTS} <= {m[0] for m in members}
    tried = 0
    for name, offset, size in members:
        if size == 0:
            continue  # nothing to change (prompt.txt of a definition without a prompt)
        changed = bytearray(data)
        at = offset + size // 2
        changed[at] = changed[at] ^ 0x01 if name != "manifest.sig" else (ord("A") if changed[at] != ord("A") else ord("B"))
        path = world["work"] / f"changed-{tried}.tar"
        path.write_bytes(bytes(changed))
        r = world["cli"].fails(1, "evidence", "verify", path, "--keys", world["keys"])
        assert f"{name}:" in r.stderr or (name == "manifest.json" and "manifest.json" in r.stderr), (name, r.stderr)
        tried += 1
    assert tried >= 10


def _resigned(world, edit):
    """The bundle with edit(files) applied, re-hashed and re-signed with a test
    key published under the bundle's kid in a keys file of its own."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    files, order = _members(world["bundle"].read_bytes())
    manifest = json.loads(files["manifest.json"])
    body = [(n, files[n]) for n in order if n not in ("manifest.json", "manifest.sig")]
    body, listed = edit(body)
    manifest["files"] = [{"path": n, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for n, d in listed]
    mtext = json.dumps(manifest, indent=1, sort_keys=True).encode()
    key = Ed25519PrivateKey.generate()
    sig = base64.b64encode(key.sign(mtext))
    keys = {"keys": [{"kid": manifest["kid"], "alg": "Ed25519", "created_at": "2026-01-01T00:00:00Z",
                      "status": "active", "public_key": base64.b64encode(
                          key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()}]}
    n = uuid.uuid4().hex[:8]
    (world["work"] / f"keys-{n}.json").write_text(json.dumps(keys))
    (world["work"] / f"resigned-{n}.tar").write_bytes(ustar([("manifest.json", mtext), ("manifest.sig", sig)] + body))
    return world["work"] / f"resigned-{n}.tar", world["work"] / f"keys-{n}.json"


def _replace(body, name, fn):
    return [(n, fn(d) if n == name else d) for n, d in body]


def test_resigned_bundles_fail_on_what_they_say(world):
    cli = world["cli"]

    def lines(d):
        return d.decode().splitlines(keepends=True)

    def check(edit, want):
        bundle, keys = _resigned(world, edit)
        r = cli.fails(1, "evidence", "verify", bundle, "--keys", keys)
        assert want in r.stderr, (want, r.stderr)

    # unchanged but re-signed: verifies with the test key (the checks below can fail only for their reason)
    bundle, keys = _resigned(world, lambda b: (b, b))
    assert cli.ok("evidence", "verify", bundle, "--keys", keys).startswith("verified:")
    # an event taken out, an event twice
    def drop3(b):
        b = _replace(b, "events.jsonl", lambda d: "".join(lines(d)[:2] + lines(d)[3:]).encode())
        return b, b
    check(drop3, "events.jsonl: seq 3 missing")

    def dup2(b):
        b = _replace(b, "events.jsonl", lambda d: "".join(lines(d)[:2] + lines(d)[1:]).encode())
        return b, b
    check(dup2, "events.jsonl: seq 2 duplicated")

    # an audit record's field changed: its hash no longer follows
    def audit(b):
        def f(d):
            recs = [json.loads(x) for x in lines(d)]
            recs[0]["action"] = "run.launch_forged"
            return "".join(json.dumps(x, sort_keys=True, separators=(",", ":")) + "\n" for x in recs).encode()
        b = _replace(b, "audit.jsonl", f)
        return b, b
    check(audit, "audit.jsonl: seq")

    # an artifact whose bytes no longer match the artifact manifest
    def art(b):
        b = _replace(b, "artifacts/workspace.diff", lambda d: d + b"forged\n")
        return b, b
    check(art, "artifacts/workspace.diff: differs")

    # an extra file the manifest does not list; a listed file not in the archive
    check(lambda b: (b + [("extra.txt", b"x")], b), "extra.txt: in the archive but not in the manifest")
    check(lambda b: ([x for x in b if x[0] != "reviews.json"], b), "reviews.json: missing")
    # the key is not the tenant's: the api's keys do not verify the test key's signature
    bundle, _ = _resigned(world, lambda b: (b, b))
    r = cli.fails(1, "evidence", "verify", bundle, "--keys", world["keys"])
    assert "manifest.sig:" in r.stderr, r.stderr


def test_artifacts_over_the_callers_size_go_by_hash(world):
    rv = world["reviewer"]["api"]
    r = rv.get(f"/v1/runs/{world['run']}/evidence", params={"max_artifact_bytes": 0})
    assert r.status_code == 200
    files, order = _members(r.content)
    assert "artifacts/workspace.diff" not in order
    diff = next(a for a in json.loads(files["artifacts/manifest.json"])["items"] if a["name"] == "workspace.diff")
    assert not diff["included"] and diff["omitted"] and len(diff["sha256"]) == 64
    path = world["work"] / "by-hash.tar"
    path.write_bytes(r.content)
    assert world["cli"].ok("evidence", "verify", path, "--keys", world["keys"]).startswith("verified:")
    for bad in ("-1", "abc", "16777217", "1e3"):
        r = rv.get(f"/v1/runs/{world['run']}/evidence", params={"max_artifact_bytes": bad})
        assert r.status_code == 400 and "max_artifact_bytes" in r.json()["detail"], (bad, r.text)


def test_who_may_export(world, endpoints, api, runs):
    run_id = world["run"]
    r = world["viewer"]["api"].get(f"/v1/runs/{run_id}/evidence")
    assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text
    r = world["viewer"]["api"].get(f"/v1/runs/{uuid.uuid4()}/evidence")
    assert r.status_code == 404, r.text
    name = unique_name("evb-other")
    pw = bootstrap_tenant(name, "oadmin")
    other = Api(endpoints.api, login(endpoints, name, "oadmin", pw).json()["token"])
    r = other.get(f"/v1/runs/{run_id}/evidence")
    assert r.status_code == 404 and r.json()["code"] == "not_found", r.text
    # the other tenant has a key of its own, and ours is not among its keys
    ours = {k["kid"] for k in api.ok("GET", "/v1/tenant/keys", expect=(200,))["keys"]}
    theirs = {k["kid"] for k in other.ok("GET", "/v1/tenant/keys", expect=(200,))["keys"]}
    assert ours and theirs and not ours & theirs
    # a run still going has no bundle yet
    live = runs.start(command_spec(["sleep", "30"], timeout_s=60))
    r = world["reviewer"]["api"].get(f"/v1/runs/{live}/evidence")
    assert r.status_code == 409 and r.json()["code"] == "conflict", r.text
    api.ok("POST", f"/v1/runs/{live}/cancel", json={}, expect=(200, 202, 409))
    # every export is audited
    wait_for("the run.evidence_export audit record", lambda: any(
        a["action"] == "run.evidence_export" and a["object_id"] == run_id
        for a in audit_all(api, since=world["since"])), timeout=60)
