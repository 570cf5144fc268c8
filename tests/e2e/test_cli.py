"""The real `paddock` binary against the stack: login, sandbox create/publish,
run launch --watch, run show/events/artifacts, and its errors and exit codes
(0 ok, 1 API error or run not succeeded, 2 usage error)."""

import json
import pathlib
import stat
import time

import pytest

from cli_support import Cli
from conftest import command_spec, state_dir, unique_name

MARKER = "cli-e2e-marker"


@pytest.fixture(scope="module")
def cli(endpoints, credentials, tmp_path_factory):
    run = Cli(tmp_path_factory.mktemp("paddock-config"), endpoints.api, timeout=180)
    run.credentials = credentials
    return run


@pytest.fixture(scope="module")
def logged_in(cli):
    c = cli.credentials
    r = cli("login", "--tenant", c["PADDOCK_TENANT"], "--user", c["PADDOCK_USER"], "--password-stdin",
            input=c["PADDOCK_PASSWORD"] + "\n")
    assert r.returncode == 0, r.stderr
    return cli


def _write(tmp_path, name, doc):
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(p)


def test_login_stores_token_privately(logged_in):
    # the session is the context "default" (no --context), the current one
    session = pathlib.Path(logged_in.config) / "contexts" / "default.json"
    assert session.exists()
    assert stat.S_IMODE(session.stat().st_mode) == 0o600
    assert stat.S_IMODE(session.parent.stat().st_mode) == 0o700
    assert (pathlib.Path(logged_in.config) / "current-context").read_text() == "default\n"
    token = json.loads(session.read_text())["token"]
    # A second login with the credentials file must not print the token either.
    r = logged_in("login", env={"PADDOCK_STATE_DIR": str(state_dir())})
    assert r.returncode == 0, r.stderr
    new_token = json.loads(session.read_text())["token"]
    for t in (token, new_token):
        assert t not in r.stdout and t not in r.stderr


def test_login_bad_password(cli):
    c = cli.credentials
    r = cli("login", "--tenant", c["PADDOCK_TENANT"], "--user", c["PADDOCK_USER"], "--password-stdin",
            input="definitely-wrong\n", env={"PADDOCK_CONFIG_DIR": str(cli.config) + "-other"})
    assert r.returncode == 1
    assert "error:" in r.stderr and "(unauthorized)" in r.stderr, r.stderr


def test_full_run(logged_in, tmp_path):
    script = f"echo {MARKER} one; sleep 1; echo {MARKER} two; echo {MARKER}-err >&2; echo x > out.txt"
    f = _write(tmp_path, "sb.json", {"name": unique_name("e2e-cli"),
                                      "spec": command_spec(["/bin/sh", "-c", script], timeout_s=60)})
    r = logged_in("sandbox", "create", "-f", f)
    assert r.returncode == 0, r.stderr
    sandbox = r.stdout.strip()
    assert sandbox

    r = logged_in("sandbox", "publish", sandbox)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.strip()) >= 1

    r = logged_in("sandbox", "show", sandbox)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["id"] == sandbox

    r = logged_in("run", "launch", "--sandbox", sandbox, "--watch")
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    lines = r.stdout.splitlines()
    run_id = lines[0].strip()
    assert f"{MARKER} one" in r.stdout and f"{MARKER} two" in r.stdout, r.stdout
    assert f"{MARKER}-err" in r.stdout
    assert any(" status " in l and "succeeded" in l for l in lines), r.stdout
    # `[seq] ts kind actor: summary`
    assert all(l.startswith("[") for l in lines[1:]), lines

    # The run's status and history are written from Kafka by other consumers
    # than the stream's, so they may trail it by a moment.
    deadline = time.monotonic() + 30
    while True:
        r = logged_in("run", "show", run_id)
        assert r.returncode == 0, r.stderr
        if json.loads(r.stdout)["status"] == "succeeded" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert json.loads(r.stdout)["status"] == "succeeded", r.stdout

    while True:
        r = logged_in("run", "events", run_id, "--json")
        assert r.returncode == 0, r.stderr
        events = [json.loads(l) for l in r.stdout.splitlines()]
        if (events and events[-1]["kind"] == "status") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["kind"] == "status" and events[-1]["data"]["status"] == "succeeded"

    r = logged_in("run", "events", run_id, "--after", str(len(events) - 2))
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 2

    r = logged_in("run", "watch", run_id, "--json")
    assert r.returncode == 0, r.stderr
    assert [json.loads(l)["seq"] for l in r.stdout.splitlines()] == [e["seq"] for e in events]

    r = logged_in("run", "artifacts", run_id)
    assert r.returncode == 0, r.stderr


def test_failed_run_exit_code(logged_in, tmp_path):
    f = _write(tmp_path, "fail.json", {"name": unique_name("e2e-cli-fail"),
                                        "spec": command_spec(["/bin/sh", "-c", "echo failing; exit 3"])})
    sandbox = logged_in("sandbox", "create", "-f", f).stdout.strip()
    assert logged_in("sandbox", "publish", sandbox).returncode == 0
    r = logged_in("run", "launch", "--sandbox", sandbox, "--watch")
    assert r.returncode == 1, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert "failed" in r.stdout


def test_bad_file(logged_in, tmp_path):
    r = logged_in("sandbox", "create", "-f", _write(tmp_path, "bad.json", "{not json"))
    assert r.returncode == 2
    assert "not valid JSON" in r.stderr and "line 1" in r.stderr, r.stderr

    r = logged_in("sandbox", "create", "-f", str(tmp_path / "missing.json"))
    assert r.returncode == 2
    assert "missing.json" in r.stderr

    r = logged_in("sandbox", "create", "-f", _write(tmp_path, "nospec.json", {"name": "x"}))
    assert r.returncode == 2
    assert '"spec"' in r.stderr

    spec = command_spec(["/bin/true"])
    spec["bogus_field"] = True
    r = logged_in("sandbox", "create", "-f", _write(tmp_path, "unknown.json", {"name": "x", "spec": spec}))
    assert r.returncode == 1
    assert r.stderr.startswith("error: ") and "(unknown_field)" in r.stderr, r.stderr
    assert "bogus_field" in r.stderr


def test_usage_errors(logged_in):
    for args, needle in ((("run", "launch"), "--sandbox"), (("run", "show"), "ID"),
                         (("sandbox", "frobnicate"), "frobnicate"), (("frobnicate",), "frobnicate"),
                         (("run", "events", "x", "--after", "-1"), "--after")):
        r = logged_in(*args)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        assert needle in r.stderr, (args, r.stderr)
    r = logged_in("--help")
    assert r.returncode == 0 and "usage:" in r.stdout


def test_not_found(logged_in):
    r = logged_in("run", "show", "00000000-0000-4000-8000-000000000000")
    assert r.returncode == 1
    assert "(not_found)" in r.stderr, r.stderr
