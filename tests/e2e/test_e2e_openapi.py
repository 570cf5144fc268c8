"""services/api/openapi.yaml itself, and what tools make of it.

* The document: OpenAPI 3.1.x, every $ref resolves, every schema is a valid
  Draft 2020-12 schema, every operation has a unique camelCase operationId and
  exactly one tag declared (with a description) in the top-level tags list, and
  its paths and methods are exactly the route table of services/api/routes.c.
  (Real responses of the whole e2e suite are validated against it by
  conftest.py through openapi_check.py.)
* A standard linter: Spectral with tests/openapi/spectral.yaml (all of
  spectral:oas, each reviewed exception stated there) reports no error and no
  warning.
* A standard generator: @hey-api/openapi-ts generates a TypeScript client at
  test time, tsc compiles it with tests/openapi/client_smoke.ts, and that script
  logs in, creates and publishes a sandbox definition, launches a run and reads
  it until it succeeds, calling only generated functions named by operationId.

The tools are pinned in tests/openapi/package.json + package-lock.json and
installed from the npm registry by `npm ci`, only when node_modules is missing
or was installed from another lockfile; Node.js and npm come from Debian's
`nodejs npm` when `node` is missing. npm runs no install scripts (one
dependency's would send usage analytics elsewhere). Everything else talks only
to the local stack on loopback.
"""

import copy
import fcntl
import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import time

import pytest
import yaml

import openapi_check
from conftest import assert_loopback_url

REPO = pathlib.Path(__file__).resolve().parents[2]
TOOLS = REPO / "tests" / "openapi"
RULESET = TOOLS / "spectral.yaml"
SPEC = openapi_check.SPEC_PATH
DEMO_SANDBOX = REPO / "examples" / "demo-sandbox.json"
NODE_MIN = (18, 18)  # the lowest Node.js every pinned tool's engines field accepts
STAMP = "node_modules/.paddock-lock.sha256"
BINS = ("spectral", "openapi-ts", "tsc")


# ---------------------------------------------------------------- the document


def test_document_well_formed():
    problems = openapi_check.Spec().document_problems()
    assert not problems, "openapi.yaml:\n  " + "\n  ".join(problems)


def test_route_table_parsed():
    """The check above compares against something real: the C table parses."""
    routes = openapi_check.routes_from_c()
    assert ("POST", "/v1/auth/login") in routes and ("GET", "/v1/runs/{id}") in routes, routes
    assert len(routes) >= 40, routes


def test_operations_named_and_tagged():
    """Every operation: a unique camelCase operationId and exactly one declared,
    described tag (what generated clients name and group their functions by)."""
    spec = openapi_check.Spec()
    problems = spec.operation_problems()
    assert not problems, "openapi.yaml:\n  " + "\n  ".join(problems)
    ops = [op for item in spec.doc["paths"].values() for m, op in item.items()
           if m in openapi_check.METHODS]
    assert len(ops) >= 51, len(ops)


def test_operation_check_rejects_what_clients_cannot_use():
    """The check above can fail: each defect is reported by name."""
    spec = openapi_check.Spec()
    doc = copy.deepcopy(spec.doc)
    doc["paths"]["/v1/runs/{id}"]["get"]["operationId"] = "launchRun"     # a duplicate
    del doc["paths"]["/v1/me"]["get"]["operationId"]                       # missing
    doc["paths"]["/v1/teams"]["get"]["operationId"] = "list_teams"         # not camelCase
    doc["paths"]["/v1/teams"]["post"]["tags"] = ["teams", "users"]         # two tags
    del doc["paths"]["/v1/users"]["get"]["tags"]                           # none
    doc["paths"]["/v1/audit"]["get"]["tags"] = ["history"]                 # undeclared
    doc["tags"] = [t for t in doc["tags"] if t["name"] != "approvals"]     # its ops now undeclared
    doc["tags"].append({"name": "spare"})                                  # no description, unused
    spec.doc = doc
    text = "\n".join(spec.operation_problems())
    for expected in ("GET /v1/runs/{id}: operationId 'launchRun' is also that of POST /v1/runs",
                     "GET /v1/me: no operationId",
                     "GET /v1/teams: operationId 'list_teams' is not camelCase",
                     "POST /v1/teams: has tags ['teams', 'users'], expected exactly one",
                     "GET /v1/users: has tags None, expected exactly one",
                     "GET /v1/audit: tag 'history' is not in the top-level tags list",
                     "GET /v1/approvals: tag 'approvals' is not in the top-level tags list",
                     "tag 'spare' has no description",
                     "tag 'spare' is declared but no operation has it"):
        assert expected in text, f"not reported: {expected}\nreported:\n{text}"


def test_checker_rejects_what_the_spec_does_not_say():
    """The validator can fail: a wrong body, status, content type or path is reported."""
    spec = openapi_check.Spec()
    good = b'{"type":"about:blank","title":"Not Found","status":404,"detail":"run not found","code":"not_found"}'
    assert spec.check("GET", "/v1/runs/x", 404, "application/problem+json", good) == []
    assert spec.check("GET", "/v1/runs/x", 404, "application/problem+json",
                      good.replace(b'"status":404', b'"status":"404"'))
    assert spec.check("GET", "/v1/runs/x", 404, "text/html", b"<html>")
    assert spec.check("GET", "/v1/runs/x", 418, "application/problem+json", good)
    assert spec.check("GET", "/v1/no-such-thing", 404, "application/problem+json", good)
    assert spec.check("GET", "/v1/no-such-thing", 404, "application/problem+json", good,
                      allow_undescribed_path=True) == []
    assert spec.check("GET", "/v1/runs/x", 200, "application/json", b'{"id": 5}')


# ---------------------------------------------------------------- the tools


def _run(argv, timeout, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


def _ensure_node():
    """node and npm on PATH, from Debian's packages when missing (as root)."""
    if not (shutil.which("node") and shutil.which("npm")):
        if os.geteuid() != 0:
            pytest.fail("node and npm are missing and only root can install them "
                        "(apt-get install nodejs npm)", pytrace=False)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        install = ["apt-get", "install", "-y", "--no-install-recommends", "nodejs", "npm"]
        r = _run(install, 900, env=env)
        if r.returncode != 0:  # a fresh machine may have no package lists yet
            _run(["apt-get", "update"], 600, env=env)
            r = _run(install, 900, env=env)
        assert r.returncode == 0, f"apt-get install nodejs npm failed: {r.stderr[-2000:]}"
    out = _run(["node", "--version"], 60).stdout.strip()
    m = re.fullmatch(r"v(\d+)\.(\d+)\.\d+", out)
    assert m and (int(m[1]), int(m[2])) >= NODE_MIN, \
        f"node {out!r} is older than {NODE_MIN[0]}.{NODE_MIN[1]}, which the pinned tools need"
    return out


def _lock_digest():
    h = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        h.update((TOOLS / name).read_bytes())
    return h.hexdigest()


def _npm_env():
    env = dict(os.environ)
    # also in tests/openapi/.npmrc; repeated so that no user config can undo it
    env.update(npm_config_ignore_scripts="true", npm_config_audit="false",
               npm_config_fund="false", npm_config_update_notifier="false",
               SCARF_ANALYTICS="false")
    return env


@pytest.fixture(scope="module")
def tools():
    """Paths of the pinned tools' executables, installed if needed."""
    node = _ensure_node()
    digest = _lock_digest()
    lock_path = pathlib.Path("/tmp") / f"paddock-openapi-tools-{hashlib.sha256(str(TOOLS).encode()).hexdigest()[:12]}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two suites on one tree install once
        stamp = TOOLS / STAMP
        fresh = (stamp.is_file() and stamp.read_text().strip() == digest
                 and all((TOOLS / "node_modules" / ".bin" / b).exists() for b in BINS))
        started = time.monotonic()
        if not fresh:
            r = _run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"], 900,
                     cwd=TOOLS, env=_npm_env())
            assert r.returncode == 0, f"npm ci in {TOOLS} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
            stamp.write_text(digest + "\n")
        print(f"openapi tools: node {node}, {'npm ci' if not fresh else 'already installed'} "
              f"in {time.monotonic() - started:.1f} s")
    return {b: str(TOOLS / "node_modules" / ".bin" / b) for b in BINS}


def _spectral(tools, document, tmp_path):
    """Spectral's findings on `document` as a list of dicts (JSON format)."""
    out = tmp_path / "spectral.json"
    r = _run([tools["spectral"], "lint", "--ruleset", str(RULESET), "--format", "json",
              "--output", str(out), "--fail-severity", "warn", str(document)], 300, cwd=REPO)
    # exit 0: nothing at warn or above; 1: findings; anything else: the linter itself failed
    assert r.returncode in (0, 1) and out.is_file(), \
        f"spectral failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return json.loads(out.read_text() or "[]")


SEVERITY = {0: "error", 1: "warning", 2: "info", 3: "hint"}


def _describe(findings):
    return "\n  ".join(f"{SEVERITY.get(f['severity'], f['severity'])} {f['code']} at "
                       f"line {f['range']['start']['line'] + 1} "
                       f"({'.'.join(map(str, f['path']))}): {f['message']}" for f in findings)


def test_spectral_lint_clean(tools, tmp_path):
    """No error and no warning beyond the reviewed set in tests/openapi/spectral.yaml."""
    findings = _spectral(tools, SPEC, tmp_path)
    bad = [f for f in findings if f["severity"] <= 1]
    assert not bad, ("spectral lint services/api/openapi.yaml (ruleset tests/openapi/spectral.yaml):\n  "
                     + _describe(bad))


def test_spectral_lint_catches_what_issue_8_found(tools, tmp_path):
    """The lint can fail: a copy with issue 8's defects is reported, as errors
    where clients break (a stray key, a duplicate operationId)."""
    doc = copy.deepcopy(openapi_check.Spec().doc)
    decide = doc["paths"]["/v1/approvals/{id}/decision"]["post"]
    # what YAML made of {description: not pending any more, or past its deadline (conflict), ...}
    decide["responses"]["409"] = {"description": "not pending any more",
                                  "or past its deadline (conflict)": None,
                                  "content": decide["responses"]["409"]["content"]}
    del doc["paths"]["/v1/me"]["get"]["operationId"]
    doc["paths"]["/v1/runs/{id}"]["get"]["operationId"] = "launchRun"
    doc["paths"]["/v1/users"]["get"]["tags"] = ["people"]
    del doc["paths"]["/v1/runs/{id}"]["get"]["summary"]
    broken = tmp_path / "openapi.yaml"
    broken.write_text(yaml.safe_dump(doc, sort_keys=False))
    findings = _spectral(tools, broken, tmp_path)
    got = {(f["code"], ".".join(map(str, f["path"]))): f["severity"] for f in findings}
    for code, path, severity in (
            ("oas3-schema", "paths./v1/approvals/{id}/decision.post.responses.409", 0),
            ("operation-operationId", "paths./v1/me.get", 1),
            ("operation-operationId-unique", "paths./v1/runs/{id}.get.operationId", 0),
            ("operation-tag-defined", "paths./v1/users.get.tags.0", 1),
            ("paddock-operation-summary", "paths./v1/runs/{id}.get", 1),
            # the ruleset's one exception names services/api/openapi.yaml, not a copy
            ("operation-success-response", "paths./v1/runs/{id}/stream.get.responses", 1)):
        assert got.get((code, path)) == severity, \
            f"{code} at {path} not reported as {SEVERITY[severity]}; reported:\n  {_describe(findings)}"


# ---------------------------------------------------------------- a generated client


def test_generated_client_launches_a_run(tools, tmp_path, endpoints, credentials, api):
    """A client generated from the document logs in and launches a run to success."""
    work = tmp_path / "client"
    work.mkdir()
    r = _run([tools["openapi-ts"], "--input", str(SPEC), "--output", str(work / "paddock"),
              "--client", "@hey-api/client-fetch", "--silent", "--no-log-file"], 300, cwd=work)
    assert r.returncode == 0, f"openapi-ts failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"

    # one generated function per operation, named by its operationId
    sdk = (work / "paddock" / "sdk.gen.ts").read_text()
    functions = set(re.findall(r"^export const (\w+) = ", sdk, re.M))
    op_ids = {op["operationId"] for item in openapi_check.Spec().doc["paths"].values()
              for m, op in item.items() if m in openapi_check.METHODS}
    assert functions == op_ids, (f"functions without operation: {sorted(functions - op_ids)}; "
                                 f"operations without function: {sorted(op_ids - functions)}")

    shutil.copy(TOOLS / "client_smoke.ts", work / "client_smoke.ts")
    (work / "tsconfig.json").write_text(json.dumps({
        "extends": str(TOOLS / "tsconfig.json"),
        "include": ["client_smoke.ts", "paddock/**/*.ts"],
        "compilerOptions": {"rootDir": ".", "outDir": "dist"},
    }))
    r = _run([tools["tsc"], "-p", str(work / "tsconfig.json")], 300, cwd=work)
    assert r.returncode == 0, f"tsc failed:\n{r.stdout[-4000:]}\n{r.stderr[-2000:]}"

    assert_loopback_url(endpoints.api)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PADDOCK_")}
    env.update(PADDOCK_API_URL=endpoints.api, PADDOCK_SMOKE_TIMEOUT_S="240",
               **{k: credentials[k] for k in ("PADDOCK_TENANT", "PADDOCK_USER", "PADDOCK_PASSWORD")})
    r = _run(["node", str(work / "dist" / "client_smoke.js"), str(DEMO_SANDBOX)], 300, cwd=work, env=env)
    assert r.returncode == 0, f"client_smoke.js exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    print(r.stdout)
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["status"] == "succeeded", result
    assert result["statuses"][0] == "queued" and "running" in result["statuses"], result

    # the same run and definition through another client (requests, validated
    # against the document by conftest.py)
    run = api.ok("GET", f"/v1/runs/{result['run']}", expect=(200,))
    assert run["status"] == "succeeded" and run["sandbox"] == result["sandbox"], run
    assert run["version"] == result["version"] == 1, run
    sandbox = api.ok("GET", f"/v1/sandboxes/{result['sandbox']}", expect=(200,))
    assert sandbox["name"].startswith(json.loads(DEMO_SANDBOX.read_text())["name"] + "-"), sandbox
    assert sandbox["draft"]["spec"]["agent"] == json.loads(DEMO_SANDBOX.read_text())["spec"]["agent"], sandbox
