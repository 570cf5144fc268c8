"""The CLI's core through the real `paddock` binary: help rendered from one
command table (and agreeing everywhere), --version, --json before or after
the command with one list shape, contexts side by side (two users, two
stacks, the old session.json migrated), the 401/403 hints, write-only
secrets, passwd and one-time passwords (on a pipe and on a terminal),
grant --add/--remove printing what changed, and shell completion for bash
and zsh. Exit codes as cli/cli.h documents them: 0 ok, 1 the API said no,
2 the command line was wrong."""

import concurrent.futures
import hashlib
import http.client
import http.server
import json
import os
import pty
import re
import select
import shutil
import stat
import subprocess
import threading
import time
import urllib.parse
import uuid

import psycopg
import pytest
import requests

from cli_support import Cli
from conftest import HTTP_TIMEOUT, REPO, command_spec, wait_terminal

@pytest.fixture(scope="module")
def admin(endpoints, credentials, tmp_path_factory):
    """The stack's admin, logged in to the context "adm" (the current one)."""
    cli = Cli(tmp_path_factory.mktemp("core-admin"), endpoints.api)
    c = credentials
    out = cli.ok("login", "--context", "adm", "--tenant", c["PADDOCK_TENANT"], "--user", c["PADDOCK_USER"],
                 "--password-stdin", input=c["PADDOCK_PASSWORD"] + "\n")
    assert "(context adm)" in out, out
    cli.tenant = c["PADDOCK_TENANT"]
    return cli


def _new_user(admin, password=None, roles=("viewer",), team="default"):
    """A user of the admin's tenant; with a password of our choosing unless
    password is None (then the server's one-time password). Returns (name, pw)."""
    name = "core-" + uuid.uuid4().hex[:8]
    if password:
        admin.ok("user", "create", name, "--password-stdin", input=password + "\n")
        pw = password
    else:
        out = admin.ok("user", "create", name)
        pw = dict(l.split(": ", 1) for l in out.splitlines() if ": " in l)["password"]
    if roles:
        admin.ok("grant", team, name, *roles)
    return name, pw


# ---------------------------------------------------------------- help, version, usage


def _top_commands(text):
    """Command names of the top-level help: `  name  summary` lines under headings."""
    names, in_cmds = [], False
    for line in text.splitlines():
        if re.match(r"^[A-Z][A-Za-z ()_]*:$", line):
            in_cmds = True
            continue
        if line.startswith("options"):
            break
        m = re.match(r"^  ([a-z][a-z-]*)  +\S", line)
        if in_cmds and m:
            names.append(m.group(1))
    return names


def _subcommands(text):
    out, on = [], False
    for line in text.splitlines():
        if line == "commands:":
            on = True
            continue
        if on and not line.strip():
            break
        if on:
            out.append(line.split()[0])
    return out


def test_help_is_one_source_for_every_command(admin):
    top = admin("--help")
    assert top.returncode == 0 and top.stdout.startswith("usage: paddock"), top
    assert admin.ok("help") == top.stdout
    commands = _top_commands(top.stdout)
    for expected in ("login", "passwd", "context", "secret", "grant", "completion", "team", "catalog"):
        assert expected in commands, (expected, commands)

    def run_all(argvs):
        # the binary starts once per check: in parallel, a loaded machine still gets through them
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            return dict(zip(map(tuple, argvs), pool.map(lambda a: admin(*a), argvs)))

    groups = run_all([["help", c] for c in commands] + [[c, "--help"] for c in commands])
    targets = []
    for cmd in commands:
        via_help, via_flag = groups[("help", cmd)], groups[(cmd, "--help")]
        assert via_help.returncode == 0 and via_flag.returncode == 0, (cmd, via_help.stderr, via_flag.stderr)
        assert via_help.stdout == via_flag.stdout, f"`help {cmd}` and `{cmd} --help` differ"
        assert via_help.stdout.startswith(f"usage: paddock {cmd}"), via_help.stdout
        subs = _subcommands(via_help.stdout)
        targets += [[cmd, s] for s in subs] if subs else [[cmd]]
    assert len(targets) >= 40, targets

    results = run_all([["help", *t] for t in targets] + [[*t, "--help"] for t in targets] +
                      [[*t, "--no-such-option-xyz"] for t in targets])
    for t in targets:
        a, b = results[("help", *t)], results[(*t, "--help")]
        assert a.returncode == 0 and b.returncode == 0, (t, a.stderr, b.stderr)
        assert a.stdout == b.stdout, f"`help {' '.join(t)}` and `{' '.join(t)} --help` differ"
        assert a.stdout.startswith("usage: paddock " + " ".join(t)), a.stdout
        # every command's options come from the same table as its help: an
        # unknown one is a usage error naming it (a table/code mismatch aborts)
        bad = results[(*t, "--no-such-option-xyz")]
        assert bad.returncode == 2, (t, bad.returncode, bad.stdout, bad.stderr)
        assert "--no-such-option-xyz" in bad.stderr, (t, bad.stderr)
    # -h, and --help among other words, are the same help too
    assert admin("grant", "t", "u", "-h").stdout == admin.ok("help", "grant")
    assert admin("--json", "secret", "set", "T", "N", "--help").stdout == admin.ok("help", "secret", "set")


@pytest.mark.parametrize("args,suggestion", [
    (["tema"], '"team"'), (["secrte"], '"secret"'), (["team", "lsit"], '"list"'),
    (["context", "uze"], '"use"'), (["help", "grnat"], '"grant"'), (["help", "team", "craete"], '"create"'),
])
def test_unknown_command_suggests_the_closest(admin, args, suggestion):
    r = admin.fails(2, *args)
    assert f"did you mean {suggestion}?" in r.stderr, r.stderr


def test_unknown_command_without_a_close_one(admin):
    r = admin.fails(2, "frobnicate")
    assert 'unknown command "frobnicate"' in r.stderr and "did you mean" not in r.stderr
    r = admin.fails(2)
    assert r.stderr.startswith("usage: paddock") and not r.stdout
    r = admin.fails(2, "team")
    assert "usage: paddock team COMMAND" in r.stderr


def test_version(admin):
    r = admin("--version")
    assert r.returncode == 0, r.stderr
    m = re.fullmatch(r"paddock (\d+\.\d+\.\d+)( \(commit ([0-9a-f]{7,40})\))?\n", r.stdout)
    assert m, r.stdout
    project = re.search(r"project\(paddock VERSION ([0-9.]+)", (REPO / "CMakeLists.txt").read_text())
    assert project and m.group(1) == project.group(1), (r.stdout, project)
    if m.group(3) and shutil.which("git") and (REPO / ".git").exists():
        known = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", m.group(3) + "^{commit}"],
                               capture_output=True)
        assert known.returncode == 0, f"--version names commit {m.group(3)}, which the repository does not have"


# ---------------------------------------------------------------- --json


@pytest.mark.parametrize("args,is_list", [
    (["me"], False), (["team", "show", "default"], False), (["team", "list"], True), (["user", "list"], True),
    (["members", "default"], True), (["service-account", "list"], True), (["catalog", "list", "images"], True),
    (["secret", "list", "default"], True), (["context", "list"], True), (["audit", "list", "--after", "0"], True),
])
def test_json_before_and_after_the_command(admin, args, is_list):
    before = json.loads(admin.ok("--json", *args))
    after = json.loads(admin.ok(*args, "--json"))
    middle = json.loads(admin.ok(*args[:1], "--json", *args[1:]))
    if args[0] == "audit":  # the log grows as we read it: compare what all three saw
        n = len(before["items"])
        after["items"], middle["items"] = after["items"][:n], middle["items"][:n]
    assert before == after == middle, args
    if is_list:
        # one rule for lists: every page's items, then next_cursor null
        assert set(before) == {"items", "next_cursor"} and before["next_cursor"] is None, before
        assert isinstance(before["items"], list)


def test_json_of_the_api_answer(admin, api):
    assert admin.json("me") == api.ok("GET", "/v1/me", expect=(200,))
    teams = api.ok("GET", "/v1/teams", expect=(200,))
    assert admin.json("team", "list")["items"] == teams["items"]


# ---------------------------------------------------------------- contexts


def _mode(p):
    return stat.S_IMODE(p.stat().st_mode)


def test_two_users_side_by_side(admin, endpoints):
    name, pw = _new_user(admin, password="side-by-side-" + uuid.uuid4().hex[:8])
    cli = Cli(admin.config, endpoints.api)  # the same config dir: both contexts in one place
    out = cli.ok("login", "--context", "usr", "--tenant", admin.tenant, "--user", name, "--password-stdin",
                 input=pw + "\n")
    assert f"logged in as {name}" in out and "(context usr)" in out
    # the first login made "adm" current; a later one does not switch
    assert cli.json("me")["user"]["username"] != name
    assert cli.json("me", "--context", "usr")["user"]["username"] == name
    assert cli.json("--context", "usr", "me")["user"]["username"] == name
    assert cli.json("me", env={"PADDOCK_CONTEXT": "usr"})["user"]["username"] == name
    # the user cannot do what the admin can, in the same shell
    assert "(forbidden)" in cli.fails(1, "--context", "usr", "user", "list").stderr
    cli.ok("user", "list")

    ctxdir = admin.config / "contexts"
    assert _mode(ctxdir) == 0o700
    for f in ctxdir.iterdir():
        assert _mode(f) == 0o600, f
    tokens = [json.loads((ctxdir / f"{n}.json").read_text())["token"] for n in ("adm", "usr")]

    listing = cli.json("context", "list")["items"]
    by_name = {c["name"]: c for c in listing}
    assert by_name["adm"]["current"] is True and by_name["usr"]["current"] is False
    assert by_name["usr"]["user"] == name and by_name["usr"]["auth"] == "password"
    assert by_name["usr"]["api_url"] == endpoints.api
    texts = [cli.ok("context", "list"), json.dumps(listing), cli.ok("context", "show", "usr"),
             cli.ok("context", "show", "usr", "--json"), cli.ok("context", "list", "-q")]
    for t in tokens:
        assert all(t not in x for x in texts), "a token was printed"
    assert set(cli.ok("context", "list", "--quiet").split()) >= {"adm", "usr"}

    assert f"using context usr" in cli.ok("context", "use", "usr")
    assert cli.json("me")["user"]["username"] == name
    assert (admin.config / "current-context").read_text() == "usr\n"
    cli.ok("context", "rename", "usr", "usr2")
    assert (admin.config / "current-context").read_text() == "usr2\n"
    assert cli.json("me")["user"]["username"] == name
    assert "exists already" in cli.fails(1, "context", "rename", "usr2", "adm").stderr
    cli.ok("context", "use", "adm")
    cli.ok("context", "delete", "usr2")
    assert not (ctxdir / "usr2.json").exists()
    assert "no context named" in cli.fails(1, "context", "use", "usr2").stderr
    err = cli.fails(1, "--context", "usr2", "me").stderr
    assert 'not logged in in context "usr2"' in err and "paddock login --context usr2" in err, err
    assert "not a context name" in cli.fails(2, "--context", "../etc", "me").stderr
    assert "not a context name" in cli.fails(2, "context", "use", "a/b").stderr


class _Forwarder(http.server.ThreadingHTTPServer):
    """A second "stack" on loopback: an HTTP forwarder to the api."""


def _forwarder(target):
    t = urllib.parse.urlsplit(target)

    class Handler(http.server.BaseHTTPRequestHandler):
        def _forward(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            conn = http.client.HTTPConnection(t.hostname, t.port, timeout=HTTP_TIMEOUT)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            conn.close()

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        def log_message(self, *a):
            pass

    srv = _Forwarder(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def test_two_stacks_side_by_side(admin, endpoints, credentials, tmp_path):
    """Each context talks to the URL it logged in to: with the second stack
    gone, its context fails naming that URL while the first still works."""
    cli = Cli(tmp_path / "cfg")  # no PADDOCK_API_URL: each context's own URL counts
    c = credentials
    cli.ok("login", "--api", endpoints.api, "--context", "one", "--tenant", c["PADDOCK_TENANT"], "--user",
           c["PADDOCK_USER"], "--password-stdin", input=c["PADDOCK_PASSWORD"] + "\n")
    srv = _forwarder(endpoints.api)
    other = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        cli.ok("login", "--api", other, "--context", "two", "--tenant", c["PADDOCK_TENANT"], "--user",
               c["PADDOCK_USER"], "--password-stdin", input=c["PADDOCK_PASSWORD"] + "\n")
        assert cli.json("context", "show", "two")["api_url"] == other
        assert cli.json("--context", "two", "me")["tenant"]["name"] == c["PADDOCK_TENANT"]
    finally:
        srv.shutdown()
        srv.server_close()
    err = cli.fails(1, "--context", "two", "me").stderr
    assert f"could not reach the API at {other}" in err, err
    assert cli.json("--context", "one", "me")["tenant"]["name"] == c["PADDOCK_TENANT"]
    assert cli.json("me")["tenant"]["name"] == c["PADDOCK_TENANT"]  # "one" was the first: current
    # --api still wins over the context's URL
    assert cli.json("--context", "two", "--api", endpoints.api, "me")["tenant"]["name"] == c["PADDOCK_TENANT"]


def test_old_session_json_becomes_the_default_context(endpoints, credentials, tmp_path):
    c = credentials
    r = requests.post(endpoints.api + "/v1/auth/login", timeout=HTTP_TIMEOUT,
                      json={"tenant": c["PADDOCK_TENANT"], "username": c["PADDOCK_USER"],
                            "password": c["PADDOCK_PASSWORD"]})
    assert r.status_code == 200, r.text
    cfg = tmp_path / "old"
    cfg.mkdir(mode=0o700)
    old = {"api_url": endpoints.api, "token": r.json()["token"], "tenant": c["PADDOCK_TENANT"],
           "user": c["PADDOCK_USER"], "expires_at": r.json()["expires_at"]}
    (cfg / "session.json").write_text(json.dumps(old))
    os.chmod(cfg / "session.json", 0o600)
    cli = Cli(cfg)
    assert cli.json("me")["user"]["username"] == c["PADDOCK_USER"]
    assert not (cfg / "session.json").exists()
    assert json.loads((cfg / "contexts" / "default.json").read_text())["token"] == old["token"]
    assert _mode(cfg / "contexts" / "default.json") == 0o600
    assert (cfg / "current-context").read_text() == "default\n"
    assert cli.json("context", "show")["name"] == "default"
    out = cli.ok("logout")
    assert "logged out (context default)" in out
    assert "(unauthorized)" in cli.fails(1, "me", env={"PADDOCK_TOKEN": old["token"]}).stderr
    assert "not logged in" in cli.fails(1, "me").stderr
    # logout keeps where and who: logging in again needs only the password
    cli.ok("login", "--password-stdin", input=c["PADDOCK_PASSWORD"] + "\n")
    assert cli.json("me")["user"]["username"] == c["PADDOCK_USER"]


# ---------------------------------------------------------------- expired tokens


def test_expired_service_account_token(admin, tmp_path):
    sa = "core-bot-" + uuid.uuid4().hex[:6]
    admin.ok("service-account", "create", sa, "--team", "default", "--role", "viewer")
    bot = Cli(tmp_path / "bot", admin.env["PADDOCK_API_URL"])
    t0 = time.monotonic()
    out = admin.ok("token", "create", sa, "--expires-in", "6")
    token = dict(l.split(": ", 1) for l in out.splitlines() if ": " in l)["token"]
    out = bot.ok("login", "--token-stdin", "--context", "ci", input=token + "\n")
    assert f"logged in as {sa}" in out and "API token" in out
    assert bot.json("context", "show", "ci")["auth"] == "token"
    time.sleep(max(0, 7 - (time.monotonic() - t0)))
    for how in ({"args": ("--context", "ci", "me")}, {"args": ("me",), "env": {"PADDOCK_TOKEN": token}}):
        r = bot.fails(1, *how["args"], env=how.get("env"))
        assert "(token_expired)" in r.stderr, r.stderr
        assert "cannot log in" in r.stderr and "tenant_admin" in r.stderr, r.stderr
        assert "run `paddock login" not in r.stderr, r.stderr
        assert token not in r.stderr + r.stdout
    # the expired token is not counted as active, and shows as expired
    row = [l for l in admin.ok("service-account", "list").splitlines() if f" {sa} " in l]
    assert row and row[0].split()[-1] == "0", row
    assert admin.json("service-account", "list")["items"]
    states = [t["state"] for t in admin.json("token", "list", sa)["items"]]
    assert states == ["expired"], states


def test_expired_password_session(admin, endpoints, credentials, tmp_path):
    """A context logged in with a password whose token expired says to log in again."""
    c = credentials
    cli = Cli(tmp_path / "pw", endpoints.api)
    cli.ok("login", "--context", "work", "--tenant", c["PADDOCK_TENANT"], "--user", c["PADDOCK_USER"],
           "--password-stdin", input=c["PADDOCK_PASSWORD"] + "\n")
    token = json.loads((tmp_path / "pw" / "contexts" / "work.json").read_text())["token"]
    # let the token's time run out (the api's TTL is hours; only the stored expiry matters)
    with psycopg.connect(endpoints.need("PADDOCK_PG_DSN")) as conn:
        n = conn.execute("UPDATE api.tokens SET expires_at = now() - interval '1 second' WHERE token_sha256 = %s",
                         (hashlib.sha256(token.encode()).hexdigest(),)).rowcount
    assert n == 1
    r = cli.fails(1, "--context", "work", "me")
    assert "(token_expired)" in r.stderr, r.stderr
    assert "run `paddock login --context work`" in r.stderr, r.stderr
    assert token not in r.stderr + r.stdout


# ---------------------------------------------------------------- secrets


def test_secret_values_never_on_the_command_line(admin):
    name = "CORE_" + uuid.uuid4().hex[:8].upper()
    value = "argv-secret-" + uuid.uuid4().hex
    for args in (["secret", "set", "default", name, value], ["secret", "set", "default", name, "--", value]):
        r = admin.fails(2, *args, input="")
        assert "never taken from the command line" in r.stderr and "--from-file" in r.stderr, r.stderr
        assert value not in r.stderr + r.stdout
    r = admin.fails(2, "secret", "set", "default", name, f"--value={value}", input="")
    assert value not in r.stderr + r.stdout and "--value" in r.stderr
    r = admin.fails(2, "secret", "set", "default", name, input="")
    assert "empty" in r.stderr
    r = admin.fails(2, "secret", "set", "default", name, "--from-file", "/nonexistent/x")
    assert "/nonexistent/x" in r.stderr
    # nothing was set by any of that
    assert name not in [s["name"] for s in admin.json("secret", "list", "default")["items"]]
    r = admin.fails(1, "secret", "set", "default", "lower-case", input="v\n")
    assert "(invalid_field)" in r.stderr


def test_secret_set_list_delete_and_the_run_sees_them(admin, runs, endpoints, admin_token, team_id, tmp_path):
    team = admin.json("team", "show", team_id)["name"]  # the runs' team, by name and by id
    tag = uuid.uuid4().hex[:8].upper()
    a_name, b_name = f"CORE_A_{tag}", f"CORE_B_{tag}"
    a_value = "stdin-value-" + uuid.uuid4().hex
    b_value = "file-line-1\nfile-line-2\n"
    out = admin.ok("secret", "set", team_id, a_name, input=a_value + "\n")
    assert f"secret {a_name} created" in out and a_value not in out
    f = tmp_path / "b.txt"
    f.write_text(b_value)
    out = admin.json("secret", "set", team, b_name, "--from-file", str(f))
    assert out == {"team": team, "name": b_name, "created": True}
    out = admin.ok("secret", "set", team, a_name, input=a_value + "\n")
    assert "replaced" in out
    listing = admin.ok("secret", "list", team)
    assert listing.splitlines()[0].split() == ["NAME", "CREATED", "UPDATED", "UPDATED", "BY"]
    names = [s["name"] for s in admin.json("secret", "list", team_id)["items"]]
    assert a_name in names and b_name in names
    assert a_value not in listing and "file-line" not in listing

    # stdin loses its one trailing newline, a file is taken as it is
    probe = ("import os, hashlib\n"
             "for v in ('A', 'B'): print(v, hashlib.sha256(os.environ[v].encode()).hexdigest())\n")
    spec = command_spec(["/usr/bin/python3", "-c", probe], timeout_s=60)
    spec["secrets"] = [{"name": a_name, "as": {"env": "A"}}, {"name": b_name, "as": {"env": "B"}}]
    res = wait_terminal(endpoints, admin_token, runs.start(spec))
    out = res.output()
    assert res.terminal == "succeeded", out
    assert f"A {hashlib.sha256(a_value.encode()).hexdigest()}" in out, out
    assert f"B {hashlib.sha256(b_value.encode()).hexdigest()}" in out, out

    assert "deleted" in admin.ok("secret", "delete", team, a_name)
    assert admin.json("secret", "delete", team_id, b_name) == {"team": team_id, "name": b_name, "deleted": True}
    assert "(not_found)" in admin.fails(1, "secret", "delete", team, a_name).stderr
    names = [s["name"] for s in admin.json("secret", "list", team)["items"]]
    assert a_name not in names and b_name not in names


def test_secret_needs_sandbox_author(admin, endpoints, tmp_path):
    name, pw = _new_user(admin, password="viewer-only-" + uuid.uuid4().hex[:8], roles=("viewer",))
    viewer = Cli(tmp_path / "viewer", endpoints.api)
    viewer.ok("login", "--tenant", admin.tenant, "--user", name, "--password-stdin", input=pw + "\n")
    r = viewer.fails(1, "secret", "set", "default", "CORE_NOPE", input="x\n")
    assert "(forbidden)" in r.stderr, r.stderr
    assert "CORE_NOPE" not in [s["name"] for s in admin.json("secret", "list", "default")["items"]]


# ---------------------------------------------------------------- passwd


def test_one_time_password_must_be_changed(admin, endpoints, tmp_path):
    name, otp = _new_user(admin, password=None, roles=("viewer",))
    user = Cli(tmp_path / "u", endpoints.api)
    r = user("login", "--tenant", admin.tenant, "--user", name, "--password-stdin", input=otp + "\n")
    assert r.returncode == 0, r.stderr
    assert "one-time password" in r.stderr and "paddock passwd" in r.stderr, r.stderr
    assert "must be changed" in user.ok("me")
    assert user.json("me")["password_change_required"] is True
    r = user.fails(1, "team", "list")
    assert "(password_change_required)" in r.stderr and "run `paddock passwd`" in r.stderr, r.stderr
    # a second session of the same user, which the change will end
    user.ok("login", "--context", "second", "--tenant", admin.tenant, "--user", name, "--password-stdin",
            input=otp + "\n")

    assert "--password-stdin" in user.fails(2, "passwd", input="").stderr  # stdin is no terminal
    assert "two lines" in user.fails(2, "passwd", "--password-stdin", input=otp + "\n").stderr
    r = user.fails(1, "passwd", "--password-stdin", input=f"{otp}\nshort\n")
    assert "(invalid_field)" in r.stderr and "new_password" in r.stderr, r.stderr
    r = user.fails(1, "passwd", "--password-stdin", input=f"wrong-current-password\nanother-long-password\n")
    assert "current_password" in r.stderr or "(unauthorized)" in r.stderr or "(forbidden)" in r.stderr, r.stderr

    new = "brand-new-password-" + uuid.uuid4().hex[:6]
    out = user.ok("passwd", "--password-stdin", input=f"{otp}\n{new}\n")
    assert "password changed" in out
    assert user.json("team", "list")["items"]          # this session goes on, unrestricted
    assert user.json("me").get("password_change_required") is False
    assert "(unauthorized)" in user.fails(1, "--context", "second", "me").stderr  # the other one ended
    assert "(unauthorized)" in user.fails(1, "login", "--tenant", admin.tenant, "--user", name, "--password-stdin",
                                          input=otp + "\n").stderr
    r = user("login", "--tenant", admin.tenant, "--user", name, "--password-stdin", input=new + "\n")
    assert r.returncode == 0 and "one-time" not in r.stderr, r.stderr


def _converse(argv, env, steps, timeout=60):
    """Runs argv with stdin and stderr on a new terminal, answering each
    expected prompt (a regex) with its line; returns (exit code, stdout,
    everything the terminal showed)."""
    master, slave = pty.openpty()
    p = subprocess.Popen(argv, stdin=slave, stdout=subprocess.PIPE, stderr=slave, env=env, cwd="/",
                         close_fds=True)
    os.close(slave)
    seen, pos = b"", 0

    def read(wait):
        nonlocal seen
        r, _, _ = select.select([master], [], [], wait)
        if not r:
            return False
        try:
            chunk = os.read(master, 4096)
        except OSError:
            return False
        seen += chunk
        return bool(chunk)

    deadline = time.monotonic() + timeout
    try:
        for prompt, answer in steps:
            while not re.search(prompt.encode(), seen[pos:]):
                assert time.monotonic() < deadline and p.poll() is None or read(0), \
                    f"no prompt {prompt!r}; the terminal showed {seen!r}"
                read(0.5)
            pos = len(seen)  # the next prompt comes after this answer
            os.write(master, answer.encode() + b"\n")
        out, _ = p.communicate(timeout=timeout)
        while read(0.2):
            pass
    finally:
        if p.poll() is None:
            p.kill()
        os.close(master)
    return p.returncode, out.decode(), seen.decode(errors="replace")


def test_login_on_a_terminal_changes_the_one_time_password(admin, endpoints, tmp_path):
    name, otp = _new_user(admin, password=None, roles=("viewer",))
    user = Cli(tmp_path / "tty", endpoints.api)
    new = "typed-on-a-tty-" + uuid.uuid4().hex[:6]
    code, out, shown = _converse(
        [user.binary, "login", "--tenant", admin.tenant, "--user", name], user.env,
        [(r"password of .* in tenant .*: ", otp), (r"new password: ", new), (r"repeat the new password: ", new)])
    assert code == 0, (out, shown)
    assert f"logged in as {name}" in out
    assert otp not in shown and new not in shown, "a password was echoed"
    assert "password changed" in shown, shown
    assert user.json("me").get("password_change_required") is False
    # passwd on a terminal: current, new, repeat; a mismatch changes nothing
    code, out, shown = _converse([user.binary, "passwd"], user.env,
                                 [(r"current password: ", new), (r"new password: ", "one-new-password-1"),
                                  (r"repeat the new password: ", "other-new-password-2")])
    assert code == 1 and "differ" in shown, (code, out, shown)
    r = user("login", "--tenant", admin.tenant, "--user", name, "--password-stdin", input=new + "\n")
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------- grant


def test_grant_prints_what_changed(admin):
    team = "core-t-" + uuid.uuid4().hex[:6]
    admin.ok("team", "create", team)
    name, _ = _new_user(admin, password="grant-target-" + uuid.uuid4().hex[:6], roles=())

    out = admin.ok("grant", team, name, "viewer", "launcher")
    assert f"{name} in team {team}: viewer,launcher" in out, out
    assert "added:   viewer,launcher" in out and "removed: -" in out, out
    out = admin.ok("grant", team, name, "--add", "approver")
    assert "added:   approver" in out and "removed: -" in out, out
    ans = admin.json("grant", team, name, "--remove", "viewer", "--add", "reviewer,launcher")
    assert sorted(ans["roles"]) == ["approver", "launcher", "reviewer"], ans
    assert ans["added"] == ["reviewer"] and ans["removed"] == ["viewer"], ans
    out = admin.ok("grant", team, name, "approver", "launcher", "reviewer")
    assert "unchanged" in out, out
    out = admin.ok("grant", team, name, "viewer")  # replaces: says what went
    assert "added:   viewer" in out and "removed: " in out and "approver" in out.split("removed:")[1], out
    members = {m["user"]["username"]: m["roles"] for m in admin.json("members", team)["items"]}
    assert members[name] == ["viewer"], members

    assert "not both" in admin.fails(2, "grant", team, name, "viewer", "--add", "launcher").stderr
    assert "missing argument ROLE" in admin.fails(2, "grant", team, name).stderr
    r = admin.fails(1, "grant", team, name, "--add", "overlord")
    assert "(invalid_field)" in r.stderr and "add[0]" in r.stderr, r.stderr
    assert {m["user"]["username"]: m["roles"] for m in admin.json("members", team)["items"]}[name] == ["viewer"]
    out = admin.ok("revoke", team, name)
    assert f"{name} removed from team {team}" in out
    admin.ok("team", "delete", team)


# ---------------------------------------------------------------- completion


def _bash_complete(binary, words, env):
    script = subprocess.run([binary, "completion", "bash"], capture_output=True, text=True, env=env, check=True).stdout
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in [binary, *words])
    prog = (f"{script}\n"
            f"COMP_WORDS=({quoted}); COMP_CWORD={len(words)}; COMPREPLY=(); _paddock\n"
            'printf "%s\\n" "${COMPREPLY[@]}"\n')
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", prog], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    return sorted(filter(None, r.stdout.split("\n")))


def test_bash_completion(admin, tmp_path):
    env = admin.env
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c",
                        f"source <('{admin.binary}' completion bash) && complete -p paddock"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0 and r.stdout.strip() == "complete -F _paddock paddock", (r.stdout, r.stderr)
    b = admin.binary
    top = _top_commands(admin.ok("--help"))
    assert _bash_complete(b, [""], env) == sorted(top)
    assert _bash_complete(b, ["te"], env) == ["team"]
    assert _bash_complete(b, ["team", ""], env) == sorted(_subcommands(admin.ok("help", "team")))
    assert _bash_complete(b, ["secret", "set", "--"], env) == sorted(
        ["--from-file", "--json", "--context", "--api", "--help"])
    assert _bash_complete(b, ["grant", "t", "u", "--re"], env) == ["--remove"]
    assert _bash_complete(b, ["completion", ""], env) == ["bash", "zsh"]
    assert _bash_complete(b, ["--"], env) == sorted(["--api", "--context", "--json", "--help", "--version"])
    assert "adm" in _bash_complete(b, ["--context", ""], env)       # asks the binary for contexts
    assert "adm" in _bash_complete(b, ["context", "use", ""], env)
    (tmp_path / "spec-file.json").write_text("{}")
    assert _bash_complete(b, ["catalog", "create", "images", "--file", str(tmp_path / "spec-f")], env) == \
        [str(tmp_path / "spec-file.json")]
    assert _bash_complete(b, ["frobnicate", ""], env) == []


def test_zsh_completion(admin, tmp_path):
    if not shutil.which("zsh"):
        pytest.fail("zsh is not installed (deploy/local/stack.sh install lists it)", pytrace=False)
    script = tmp_path / "_paddock"
    script.write_text(admin.ok("completion", "zsh"))
    r = subprocess.run(["zsh", "-n", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["zsh", "-f", "-c",
                        f"autoload -Uz compinit && compinit -u -d {tmp_path}/zcompdump; source {script}; "
                        "print -r -- $_comps[paddock]"], capture_output=True, text=True, env=admin.env)
    assert r.returncode == 0 and r.stdout.strip() == "_paddock", (r.stdout, r.stderr)
    text = script.read_text()
    for cmd in _top_commands(admin.ok("--help")):
        assert f"'{cmd}:" in text, cmd
    assert "unknown shell" in admin.fails(2, "completion", "fish").stderr
