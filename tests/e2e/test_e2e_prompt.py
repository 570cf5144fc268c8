"""The task given at launch (issue 11 §1, docs/CONTRACTS.md "Prompt templates"):
a prompt template declares typed variables (checked when the catalog item is
written), a definition fixes some (checked at draft/publish), POST /v1/runs
prompt_vars fills the rest (400 naming prompt_vars.NAME, nothing stored,
queued or audited), the api renders once (a value holding {{x}} is not
expanded), stores it on the run (GET /v1/runs/{id} prompt), sends it in the
snapshot on paddock.runs.requested, and the runner writes it read-only at
/paddock/prompt.md with prompt_sha256 in the provisioning event. The CLI's
`run launch --var/--var-file` end to end."""

import hashlib
import json
import time
import uuid

import psycopg
import pytest
from confluent_kafka import Consumer, KafkaException

from cli_support import Cli
from conftest import (all_events, command_spec, pb_fields, unique_name, wait_events_recorded, wait_for,
                      wait_run_status, wait_terminal)

TEMPLATE = "Issue {{issue}} ({{kind}}) for {{owner}}: {{title}}\n--\n{{task}}\n"
VARIABLES = {
    "issue": {"type": "integer", "required": True, "description": "issue number"},
    "kind": {"type": "enum", "values": ["bug", "feature"], "default": "bug"},
    "owner": {"type": "string", "required": True},
    "title": {"type": "string", "max_length": 12},
    "task": {"type": "text", "max_length": 70000},
    "strict": {"type": "boolean"},  # declared, unused: allowed
}
# prints the prompt file between markers, then shows it cannot be changed
SHOW_PROMPT = ["/bin/sh", "-c",
               'printf "<<"; cat /paddock/prompt.md; printf ">>\\n"; echo "file=$PADDOCK_PROMPT_FILE"; '
               '(echo x > /paddock/prompt.md) 2>/dev/null && echo WRITABLE || echo READONLY']


def _template(api, body, variables, approve=True):
    item = api.ok("POST", "/v1/catalog/prompt-templates",
                  json={"name": unique_name("tpl"), "body": {"body": body, "variables": variables}}, expect=(201,))
    if approve:
        api.ok("POST", f"/v1/catalog/prompt-templates/{item['id']}/approve",
               json={"content_sha256": item["content_sha256"]}, expect=(200,))
    return item


def _published(api, team_id, template_id, fixed=None, argv=None):
    spec = command_spec(argv or ["/bin/true"])
    spec["prompt"] = {"template": template_id, "vars": fixed or {}}
    sb = api.ok("POST", "/v1/sandboxes", json={"name": unique_name("prm"), "team": team_id, "spec": spec},
                expect=(201,))
    api.ok("POST", f"/v1/sandboxes/{sb['id']}/versions", expect=(201,))
    return sb["id"]


def _launch(api, sandbox, **extra):
    return api.post("/v1/runs", json={"sandbox": sandbox, **extra}, headers={"Idempotency-Key": str(uuid.uuid4())})


def _count(endpoints, sql, params=()):
    with psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True) as conn:
        return conn.execute(sql, params).fetchone()[0]


@pytest.fixture(scope="module")
def tpl(api):
    return _template(api, TEMPLATE, VARIABLES)


def test_template_validation(api):
    bad = [
        ({"body": "hi {{who}}"}, "{{who}}"),
        ({"body": "x", "variables": {"n": {"type": "float"}}}, "body.variables.n.type"),
        ({"body": "{{n}}", "variables": {"n": {"type": "string", "max_length": 0}}}, "body.variables.n.max_length"),
        ({"body": "{{n}}", "variables": {"n": {"type": "text", "max_length": "9"}}}, "body.variables.n.max_length"),
        ({"body": "{{n}}", "variables": {"n": {"type": "integer", "max_length": 5}}}, "body.variables.n.max_length"),
        ({"body": "{{n}}", "variables": {"n": {"type": "enum"}}}, "body.variables.n.values"),
        ({"body": "{{n}}", "variables": {"n": {"type": "enum", "values": []}}}, "body.variables.n.values"),
        ({"body": "{{n}}", "variables": {"n": {"type": "string", "values": ["a"]}}}, "body.variables.n.values"),
        ({"body": "{{n}}", "variables": {"n": {"type": "enum", "values": ["a"], "default": "b"}}},
         "body.variables.n.default"),
        ({"body": "{{n}}", "variables": {"n": {"type": "string", "bogus": 1}}}, "body.variables.n.bogus"),
        ({"template": "old shape", "vars": {}}, "body.template"),
        ({"variables": {}}, "body.body"),
    ]
    for body, field in bad:
        r = api.post("/v1/catalog/prompt-templates", json={"name": unique_name("bad"), "body": body})
        assert r.status_code == 400, (body, r.text)
        assert field in r.json()["detail"], (field, r.text)
    # a declared variable the body does not use is allowed
    ok = api.ok("POST", "/v1/catalog/prompt-templates", json={"name": unique_name("ok"), "body": {
        "body": "no placeholders", "variables": {"spare": {"type": "text"}}}}, expect=(201,))
    # a bad patch names the field and changes nothing
    r = api.request("PATCH", f"/v1/catalog/prompt-templates/{ok['id']}",
                    json={"body": {"body": "{{ghost}}", "variables": {}}})
    assert r.status_code == 400 and "{{ghost}}" in r.json()["detail"], r.text
    assert api.ok("GET", f"/v1/catalog/prompt-templates/{ok['id']}", expect=(200,))["body"] == ok["body"]
    # the seeds are in the new shape and one of them takes free text
    seeds = {i["name"]: i for i in api.ok("GET", "/v1/catalog/prompt-templates", expect=(200,))["items"]
             if i["managed"]}
    assert {"code-review", "fix-failing-tests", "write-docs", "issue-task"} <= set(seeds), sorted(seeds)
    assert all("body" in s["body"] and "template" not in s["body"] for s in seeds.values())
    assert seeds["issue-task"]["body"]["variables"]["task"]["type"] == "text"


def test_fixed_values_checked_at_publish(api, team_id, tpl):
    cases = [({"issue": "seven"}, "spec.prompt.vars.issue"), ({"kind": "chore"}, "spec.prompt.vars.kind"),
             ({"ghost": 1}, "spec.prompt.vars.ghost"), ({"title": "far longer than twelve"}, "spec.prompt.vars.title")]
    for fixed, field in cases:
        spec = command_spec(["/bin/true"])
        spec["prompt"] = {"template": tpl["id"], "vars": fixed}
        r = api.post("/v1/sandboxes", json={"name": unique_name("prm"), "team": team_id, "spec": spec})
        assert r.status_code == 400 and field in r.json()["detail"], (fixed, r.text)
    # what a run fills stays open in the effective policy's preview
    sb = _published(api, team_id, tpl["id"], {"owner": "ops"})
    pol = api.ok("GET", f"/v1/sandboxes/{sb}/versions/1/effective-policy", expect=(200,))
    assert pol["prompt"] == "Issue {{issue}} (bug) for ops: {{title}}\n--\n{{task}}\n", pol["prompt"]
    assert set(pol["prompt_template"]["variables"]) == {"issue", "kind", "title", "task", "strict"}


def _launch_audited(endpoints, api, sandbox):
    """Launches sandbox and waits for its run.launch record in evidence: the
    api's outbox is relayed in order, so every record before it is in too."""
    run = _launch(api, sandbox, prompt_vars={"issue": 5}).json()["id"]
    wait_for("the launch's audit record", lambda: _count(
        endpoints, "SELECT count(*) FROM evidence.audit_log WHERE action = 'run.launch' AND object_id = %s",
        (run,)) == 1)
    return run


def _launches_audited(endpoints):
    return _count(endpoints, "SELECT count(*) FROM evidence.audit_log WHERE action = 'run.launch'")


def test_refusals_name_the_variable_and_store_nothing(endpoints, api, team_id, tpl):
    sb = _published(api, team_id, tpl["id"], {"owner": "ops"})
    other = _published(api, team_id, tpl["id"], {"owner": "ops"})
    first = _launch_audited(endpoints, api, other)
    audited = _launches_audited(endpoints)
    cases = [
        ({"prompt_vars": {"issue": 1, "ghost": "x"}}, "prompt_vars.ghost"),
        ({"prompt_vars": {"issue": 1, "owner": "me"}}, "prompt_vars.owner"),       # fixed by the definition
        ({"prompt_vars": {"issue": "12a"}}, "prompt_vars.issue"),                   # not an integer
        ({"prompt_vars": {"issue": 1, "title": "x" * 13}}, "prompt_vars.title"),    # over max_length
        ({"prompt_vars": {"issue": 1, "title": "two\nlines"}}, "prompt_vars.title"),  # a string is one line
        ({"prompt_vars": {"issue": 1, "kind": "chore"}}, "prompt_vars.kind"),       # not in the enum
        ({"prompt_vars": {"issue": 1, "strict": "maybe"}}, "prompt_vars.strict"),
        ({"prompt_vars": {"kind": "bug"}}, "prompt_vars.issue"),                    # required
        ({"prompt_vars": {"issue": 1, "task": "a"}, "prompt": "b"}, "prompt"),      # text variable given twice
        ({"prompt_vars": {"issue": 1, "task": "é" * 40000}}, "PADDOCK_PROMPT_MAX_BYTES"),  # 80 kB rendered
        ({"prompt_vars": ["issue", 1]}, "prompt_vars"),
        ({"prompt": 7}, "prompt"),
    ]
    for extra, field in cases:
        r = _launch(api, sb, **extra)
        assert r.status_code == 400, (extra, r.text[:300])
        assert field in r.json()["detail"], (field, r.json()["detail"][:300])
    assert _count(endpoints, "SELECT count(*) FROM api.runs WHERE sandbox_id = %s", (sb,)) == 0
    # nothing queued or audited: the next launch's record is the only one since
    second = _launch_audited(endpoints, api, other)
    assert _launches_audited(endpoints) == audited + 1
    for rid in (first, second):
        wait_run_status(api, rid, timeout=90)


def test_prompt_reaches_the_sandbox(endpoints, api, admin_token, team_id, tpl):
    sb = _published(api, team_id, tpl["id"], {"owner": "ops"}, argv=SHOW_PROMPT)
    task = "Fix {{title}} and {{issue}} — as written.\nSecond line."
    consumer = Consumer({"bootstrap.servers": endpoints.need("PADDOCK_KAFKA_BOOTSTRAP"),
                         "group.id": f"paddock-e2e-prompt-{uuid.uuid4()}", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "session.timeout.ms": 6000})
    try:
        consumer.subscribe(["paddock.runs.requested"])
        r = _launch(api, sb, prompt_vars={"issue": "42", "title": "the parser"}, prompt=task)
        assert r.status_code == 202, r.text
        run_id = r.json()["id"]
        snap, deadline = None, time.monotonic() + 30
        while snap is None and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() and msg.error().fatal():
                raise KafkaException(msg.error())
            if msg is not None and not msg.error() and (msg.key() or b"").decode() == run_id:
                snap = pb_fields(pb_fields(msg.value())[4][0])
    finally:
        consumer.close()
    want = f"Issue 42 (bug) for ops: the parser\n--\n{task}\n"
    sha = hashlib.sha256(want.encode()).hexdigest()
    run = api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))
    p = run["prompt"]
    assert p["rendered"] == want, p["rendered"]  # {{title}} inside a value is not expanded again
    assert p["rendered_sha256"] == sha and p["template"] == tpl["id"]
    assert p["template_version"] == tpl["content_sha256"]
    assert p["vars"] == {"issue": 42, "title": "the parser", "task": task}
    # the snapshot on paddock.runs.requested carries it (SandboxSnapshot.prompt = 12)
    assert snap, f"no RunRequested for {run_id}"
    rp = pb_fields(snap[12][0])
    assert rp[5][0].decode() == want and rp[6][0].decode() == sha and rp[1][0].decode() == tpl["id"]
    assert json.loads(rp[4][0]) == p["vars"]

    res = wait_terminal(endpoints, admin_token, run_id, timeout=120)
    assert res.terminal == "succeeded", (res.statuses, res.output())
    out = res.output("stdout")
    assert f"<<{want}>>" in out, out
    assert "file=/paddock/prompt.md" in out and "READONLY" in out and "WRITABLE" not in out, out
    events = wait_events_recorded(api, run_id, 3)
    prov = [e for e in events if e["kind"] == "status" and e["data"].get("status") == "provisioning"]
    assert prov and prov[0]["data"]["prompt_sha256"] == sha, prov
    # a relaunch is given the same inputs
    again = api.ok("POST", f"/v1/runs/{run_id}/relaunch", expect=(202,))
    rerun = api.ok("GET", f"/v1/runs/{again['id']}", expect=(200,))
    assert rerun["prompt"]["rendered"] == want and rerun["prompt"]["vars"] == p["vars"]
    wait_run_status(api, again["id"], timeout=90)


def test_free_text_needs_a_text_variable(api, team_id):
    plain = _template(api, "Just do it.", {})
    sb = _published(api, team_id, plain["id"])
    r = _launch(api, sb, prompt="and also this")
    assert r.status_code == 400 and "prompt" in r.json()["detail"] and "text variable" in r.json()["detail"], r.text
    # a template without variables renders its body as is
    ok = _launch(api, sb)
    assert ok.status_code == 202, ok.text
    run = api.ok("GET", f"/v1/runs/{ok.json()['id']}", expect=(200,))
    assert run["prompt"]["rendered"] == "Just do it." and run["prompt"]["vars"] == {}
    # a definition without a template takes neither
    bare = api.ok("POST", "/v1/sandboxes", json={"name": unique_name("prm"), "team": team_id,
                                                  "spec": command_spec(["/bin/true"])}, expect=(201,))
    api.ok("POST", f"/v1/sandboxes/{bare['id']}/versions", expect=(201,))
    for extra, field in (({"prompt_vars": {"a": 1}}, "prompt_vars"), ({"prompt": "x"}, "prompt")):
        r = _launch(api, bare["id"], **extra)
        assert r.status_code == 400 and r.json()["detail"].startswith(field), r.text
    ran = _launch(api, bare["id"])
    assert ran.status_code == 202 and api.ok("GET", f"/v1/runs/{ran.json()['id']}")["prompt"] is None
    for rid in (ok.json()["id"], ran.json()["id"]):
        wait_run_status(api, rid, timeout=90)


@pytest.fixture(scope="module")
def cli(endpoints, credentials, tmp_path_factory):
    run = Cli(tmp_path_factory.mktemp("paddock-config"), endpoints.api, timeout=180)
    r = run("login", "--tenant", credentials["PADDOCK_TENANT"], "--user", credentials["PADDOCK_USER"],
            "--password-stdin", input=credentials["PADDOCK_PASSWORD"] + "\n")
    assert r.returncode == 0, r.stderr
    return run


def test_cli_var_and_var_file(api, team_id, tpl, cli, tmp_path):
    sb = _published(api, team_id, tpl["id"], {"owner": "ops"}, argv=SHOW_PROMPT)
    task = tmp_path / "task.md"
    task.write_bytes("Ünïcode task\n\nwith {{kind}} braces\n".encode())
    r = cli("run", "launch", "--sandbox", sb, "--var", "issue=123", "--var", "kind=feature",
            "--var-file", f"task={task}", "--watch")
    assert r.returncode == 0, (r.stdout, r.stderr)
    want = "Issue 123 (feature) for ops: \n--\nÜnïcode task\n\nwith {{kind}} braces\n\n"
    assert "Ünïcode task" in r.stdout and "with {{kind}} braces" in r.stdout, r.stdout
    run_id = r.stdout.splitlines()[0].strip()
    # the watch prints each output event on its own line, and how the agent's writes fall into events
    # depends on timing: the whole text is the stored output, joined
    text = ""
    for _ in range(60):
        evs = all_events(api, run_id)
        text = "".join(e["data"].get("text", "") for e in evs if e["kind"] == "output")
        if any(e["kind"] == "status" and e["data"].get("status") == "succeeded" for e in evs):
            break
        time.sleep(0.5)
    assert f"<<{want}>>" in text, text
    assert api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))["prompt"]["vars"]["issue"] == 123
    # usage errors (exit 2) name the argument; the API's 400 (exit 1) names the variable
    for args, words in (
            (["--var", "issue"], ["--var", "NAME=VALUE"]),
            (["--var", "=5"], ["--var"]),
            (["--var-file", f"task={tmp_path / 'missing.md'}"], ["--var-file", "missing.md"]),
            (["--var", "issue=1", "--var", "issue=2"], ["issue", "twice"])):
        bad = cli("run", "launch", "--sandbox", sb, *args)
        assert bad.returncode == 2, (args, bad.stdout, bad.stderr)
        assert all(w in bad.stderr for w in words), (args, bad.stderr)
    bad = cli("run", "launch", "--sandbox", sb, "--var", "issue=x")
    assert bad.returncode == 1 and "prompt_vars.issue" in bad.stderr, bad.stderr
    help_ = cli("help", "run", "launch")
    assert "--var-file" in help_.stdout and "NAME=FILE" in help_.stdout, help_.stdout
