"""An artifact's bytes through the api (issue 13, evidence on the run page;
docs/CONTRACTS.md "Artifact bytes through the api"): the dashboard may fetch
only its own origin, so GET /v1/runs/{id}/artifacts/{name}?inline=true answers
the object itself, bounded by max_bytes (413 beyond), as text/plain with
nosniff (never as a type a browser would render), to a reviewer of the run's
team by bearer token or by the dashboard's cookie session; bad arguments are
400 naming the field; another tenant's run is 404. Without inline the answer
is the presigned redirect as before."""

import hashlib
import subprocess
import time

import pytest
import requests

from conftest import HTTP_TIMEOUT, bootstrap_tenant, command_spec, login, unique_name, wait_terminal

PY = "/usr/bin/python3"
XSS = '<img src=x onerror="window.__xss=1">'
# the agent writes markup into a file's name and content: the diff carries both
AGENT = f"""
open({(XSS + '.txt')!r}, "w").write({XSS!r} + "\\n")
open("plain.txt", "w").write("evidence line\\n")
print("done", flush=True)
"""


@pytest.fixture(scope="module")
def finished(endpoints, admin_token, runs):
    run_id = runs.start(command_spec([PY, "-c", AGENT]))
    result = wait_terminal(endpoints, admin_token, run_id, timeout=180)
    assert result.terminal == "succeeded", result.statuses
    return run_id


def manifest_entry(api, run_id, name="workspace.diff", timeout=60):
    deadline = time.monotonic() + timeout
    items = []
    while time.monotonic() < deadline:
        items = api.ok("GET", f"/v1/runs/{run_id}/artifacts", expect=(200,)).get("items", [])
        for a in items:
            if a["name"] == name:
                return a
        time.sleep(1)
    pytest.fail(f"no {name} in the manifest within {timeout} s: {items}")


def test_inline_answers_the_bytes_as_text(api, finished):
    entry = manifest_entry(api, finished)
    r = api.get(f"/v1/runs/{finished}/artifacts/workspace.diff?inline=true", allow_redirects=False)
    assert r.status_code == 200, f"{r.status_code} {r.text[:300]}"
    assert hashlib.sha256(r.content).hexdigest() == entry["sha256"]
    assert len(r.content) == entry["size"]
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Cache-Control"] == "no-store"
    assert "Location" not in r.headers
    text = r.content.decode()
    assert XSS in text and "evidence line" in text, text[:1000]
    # within the bound, exactly at the size: still served
    r = api.get(f"/v1/runs/{finished}/artifacts/workspace.diff?inline=true&max_bytes={entry['size']}",
                allow_redirects=False)
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == entry["sha256"]
    # without inline (or inline=false): the presigned redirect, as before
    for q in ("", "?inline=false"):
        r = api.get(f"/v1/runs/{finished}/artifacts/workspace.diff{q}", allow_redirects=False)
        assert r.status_code == 302 and r.headers["Location"], f"{q}: {r.status_code} {r.text[:200]}"


def test_inline_over_the_bound_is_413(api, finished):
    entry = manifest_entry(api, finished)
    assert entry["size"] > 10
    r = api.get(f"/v1/runs/{finished}/artifacts/workspace.diff?inline=true&max_bytes={entry['size'] - 1}",
                allow_redirects=False)
    assert r.status_code == 413, f"{r.status_code} {r.text[:300]}"
    p = r.json()
    assert p["code"] == "too_large" and "max_bytes" in p["detail"], p


@pytest.mark.parametrize("q,field", [
    ("inline=yes", "inline"),
    ("inline=", None),  # empty: absent, the redirect (checked below)
    ("inline=true&max_bytes=0", "max_bytes"),
    ("inline=true&max_bytes=16777217", "max_bytes"),
    ("inline=true&max_bytes=12abc", "max_bytes"),
    ("inline=true&max_bytes=-5", "max_bytes"),
    ("max_bytes=100", "max_bytes"),
    ("inline=true&inline=true", "inline"),
])
def test_bad_arguments_are_400_naming_the_field(api, finished, q, field):
    r = api.get(f"/v1/runs/{finished}/artifacts/workspace.diff?{q}", allow_redirects=False)
    if field is None:
        assert r.status_code == 302, f"{q}: {r.status_code} {r.text[:300]}"
        return
    assert r.status_code == 400, f"{q}: {r.status_code} {r.text[:300]}"
    p = r.json()
    assert p["code"] == "invalid_field" and field in p["detail"], p


def test_unknown_artifact_and_run_are_404(api, finished):
    r = api.get(f"/v1/runs/{finished}/artifacts/nope.diff?inline=true", allow_redirects=False)
    assert r.status_code == 404, r.text[:300]
    r = api.get("/v1/runs/00000000-0000-4000-8000-000000000000/artifacts/workspace.diff?inline=true",
                allow_redirects=False)
    assert r.status_code == 404, r.text[:300]


def test_cookie_session_reads_inline_without_csrf(endpoints, credentials, api, finished):
    """The dashboard's own read: a GET with the session cookie (no CSRF
    header, as for every read) gets the same bytes."""
    entry = manifest_entry(api, finished)
    s = requests.Session()
    r = s.post(endpoints.api + "/v1/auth/login",
               json={"tenant": credentials["PADDOCK_TENANT"], "username": credentials["PADDOCK_USER"],
                     "password": credentials["PADDOCK_PASSWORD"], "session": "cookie"}, timeout=HTTP_TIMEOUT)
    assert r.status_code == 200, r.text[:300]
    r = s.get(f"{endpoints.api}/v1/runs/{finished}/artifacts/workspace.diff?inline=true", allow_redirects=False,
              timeout=HTTP_TIMEOUT)
    assert r.status_code == 200, r.text[:300]
    assert hashlib.sha256(r.content).hexdigest() == entry["sha256"]


def test_another_tenant_gets_404(endpoints, finished):
    tenant, admin = unique_name("webev"), "admin"
    password = bootstrap_tenant(tenant, admin)
    r = login(endpoints, tenant, admin, password)
    assert r.status_code == 200, r.text[:300]
    other = requests.get(f"{endpoints.api}/v1/runs/{finished}/artifacts/workspace.diff?inline=true",
                         headers={"Authorization": f"Bearer {r.json()['token']}"}, allow_redirects=False,
                         timeout=HTTP_TIMEOUT)
    assert other.status_code == 404, f"{other.status_code} {other.text[:300]}"
    assert b"evidence line" not in other.content


def test_cli_show_writes_the_bytes(endpoints, credentials, api, finished, tmp_path):
    """`paddock run artifacts ID --show NAME` reads the same bytes the page
    reads; over --max-bytes it fails (exit 1) with the api's too_large."""
    from cli_support import Cli
    entry = manifest_entry(api, finished)
    cli = Cli(tmp_path / "cfg", endpoints.api)
    c = credentials
    cli.ok("login", "--tenant", c["PADDOCK_TENANT"], "--user", c["PADDOCK_USER"], "--password-stdin",
           input=c["PADDOCK_PASSWORD"] + "\n")
    out = subprocess.run([cli.binary, "run", "artifacts", finished, "--show", "workspace.diff"], capture_output=True,
                         env=cli.env, timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr
    assert hashlib.sha256(out.stdout).hexdigest() == entry["sha256"]
    r = cli.fails(1, "run", "artifacts", finished, "--show", "workspace.diff", "--max-bytes", "5")
    assert "too_large" in r.stderr and r.stdout == "", r.stderr
    cli.fails(2, "run", "artifacts", finished, "--show", "workspace.diff", "--url", "workspace.diff")
