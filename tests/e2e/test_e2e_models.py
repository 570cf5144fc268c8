"""Models a run may call (issue 11 §3, docs/CONTRACTS.md "Model catalog" and
"Model gateway"): the `models` catalog kind (validated, 400 naming
body.<path>, nothing stored; approved by a security_admin by content, 409 when
it changed), spec.models and agent.model (approved items only, a model id of
the agent's provider; claude-code and codex need models), and a run end to
end: a `command` agent calls the model gateway at http://127.0.0.1:3129 with a
dummy key, the gateway calls the model simulator (tests/modelsim, HTTPS with a
certificate of the stack's test CA, in the test upstream network) with the
team's real key sealed to the run, each call is a model_call event with the
simulator's usage, the run's `usage` (GET /v1/runs/{id}) is their sum, and the
real key is in no event, no agent env and no service log. A launch whose team
lacks the key is refused and creates nothing; an older `usage` record never
lowers the run's figures."""

import datetime
import json
import os
import pathlib
import secrets
import ssl
import subprocess
import sys
import threading
import time
import uuid

import psycopg
import pytest

import conftest as e2e
from conftest import (REPO, Api, command_spec, enroll_test_node, login, state_dir, unique_name, wait_for,
                      wait_run_status, wait_terminal)

sys.path.insert(0, str(REPO / "tests" / "modelsim"))
import modelsim  # noqa: E402

PY = "/usr/bin/python3"
IMAGE = "debian-python"
STATUS = "paddock.runs.status"
USAGE_KEYS = ("model_calls", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd")
PRICES = {"input": 3.0, "output": 15.0, "cache_read": 0.3, "cache_write": 3.75}
TURNS = [
    {"text": "first", "usage": {"input_tokens": 120, "output_tokens": 30, "cache_read_tokens": 40,
                                "cache_write_tokens": 10}},
    {"text": "second", "usage": {"input_tokens": 200, "output_tokens": 55, "cache_read_tokens": 0,
                                 "cache_write_tokens": 5}},
    {"text": "third", "usage": {"input_tokens": 7, "output_tokens": 3}},
]
DUMMY = "paddock-gateway-dummy-key"

# The agent: three streamed Messages calls to the gateway (never through the
# egress proxy: an empty ProxyHandler), then its whole environment.
AGENT = r"""
import json, os, sys, urllib.request
op = urllib.request.build_opener(urllib.request.ProxyHandler({}))
for i in range(3):
    req = urllib.request.Request("http://127.0.0.1:3129/v1/messages", method="POST",
        data=json.dumps({"model": sys.argv[1], "max_tokens": 64, "stream": True,
                         "messages": [{"role": "user", "content": "hi %d" % i}]}).encode(),
        headers={"content-type": "application/json", "x-api-key": sys.argv[2],
                 "anthropic-version": "2023-06-01"})
    with op.open(req, timeout=60) as r:
        body = r.read().decode()
    print("CALL", i, r.status, "message_stop" in body, flush=True)
for k, v in sorted(os.environ.items()):
    print("ENV %s=%s" % (k, v))
"""


def _user(endpoints, api, credentials, team, roles):
    pw = secrets.token_hex(12)
    u = api.ok("POST", "/v1/users", json={"username": unique_name("mdl"), "password": pw}, expect=(201,))
    api.ok("PUT", f"/v1/teams/{team}/members/{u['id']}", json={"roles": roles}, expect=(200,))
    r = login(endpoints, credentials["PADDOCK_TENANT"], u["username"], pw)
    assert r.status_code == 200, r.text
    return Api(endpoints.api, r.json()["token"])


def _pg(endpoints):
    return psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True)


def _count(endpoints, sql, params=()):
    with _pg(endpoints) as conn:
        return conn.execute(sql, params).fetchone()[0]


def _secret_name():
    return "E2E_MODEL_KEY_" + uuid.uuid4().hex[:10].upper()


def _body(upstream="https://198.18.0.9:8443", provider="anthropic", key_secret="E2E_MODEL_KEY", models=None):
    return {"description": "test models", "provider": provider, "upstream": upstream, "key_secret": key_secret,
            "models": models if models is not None else [{"id": "claude-opus-4-8", "usd_per_mtok": dict(PRICES)}]}


def _item(api, body, approve=True):
    item = api.ok("POST", "/v1/catalog/models", json={"name": unique_name("models"), "body": body}, expect=(201,))
    if approve:
        api.ok("POST", f"/v1/catalog/models/{item['id']}/approve", json={"content_sha256": item["content_sha256"]},
               expect=(200,))
    return item


def _sandbox(api, team, spec):
    return api.post("/v1/sandboxes", json={"name": unique_name("mdl"), "team": team, "spec": spec})


# ---------------------------------------------------------------- catalog


def test_models_item_validation_names_the_field_and_stores_nothing(api, endpoints):
    good = _body()
    cases = [
        ({k: v for k, v in good.items() if k != "provider"}, "body.provider"),
        (dict(good, provider="mistral"), "body.provider"),
        (dict(good, upstream="http://198.18.0.9:8443"), "body.upstream"),
        (dict(good, upstream="https://127.0.0.1:8443"), "body.upstream"),
        (dict(good, upstream="https://169.254.169.254"), "body.upstream"),
        (dict(good, upstream="https://api.example.com/v1/../x"), "body.upstream"),
        (dict(good, upstream="https://api.example.com?x=1"), "body.upstream"),
        (dict(good, key_secret="lower-case"), "body.key_secret"),
        ({k: v for k, v in good.items() if k != "key_secret"}, "body.key_secret"),
        (dict(good, models=[]), "body.models"),
        (dict(good, models=[{"id": "a b", "usd_per_mtok": PRICES}]), "body.models[0].id"),
        (dict(good, models=[{"id": "m", "usd_per_mtok": PRICES}, {"id": "m", "usd_per_mtok": PRICES}]),
         "body.models[1].id"),
        (dict(good, models=[{"id": "m"}]), "body.models[0].usd_per_mtok"),
        (dict(good, models=[{"id": "m", "usd_per_mtok": {"input": 1}}]), "body.models[0].usd_per_mtok.output"),
        (dict(good, models=[{"id": "m", "usd_per_mtok": dict(PRICES, output=-1)}]),
         "body.models[0].usd_per_mtok.output"),
        (dict(good, models=[{"id": "m", "usd_per_mtok": dict(PRICES, cache_read="1")}]),
         "body.models[0].usd_per_mtok.cache_read"),
        (dict(good, models=[{"id": "m", "usd_per_mtok": dict(PRICES, bogus=1)}]), "body.models[0].usd_per_mtok.bogus"),
        (dict(good, bogus=1), "body.bogus"),
    ]
    for body, field in cases:
        name = unique_name("bad")
        r = api.post("/v1/catalog/models", json={"name": name, "body": body})
        assert r.status_code == 400, (field, r.text)
        assert field in r.json()["detail"], (field, r.text)
        assert _count(endpoints, "SELECT count(*) FROM api.catalog_items WHERE name = %s", (name,)) == 0
    # a good one is stored as a draft, and so is a patch of it that stays valid
    item = api.ok("POST", "/v1/catalog/models", json={"name": unique_name("ok"), "body": good}, expect=(201,))
    assert item["kind"] == "models" and item["state"] == "draft" and item["body"] == good
    r = api.request("PATCH", f"/v1/catalog/models/{item['id']}", json={"body": dict(good, provider="x")})
    assert r.status_code == 400 and "body.provider" in r.json()["detail"], r.text
    assert api.ok("GET", f"/v1/catalog/models/{item['id']}", expect=(200,))["body"] == good


def test_models_item_approved_by_security_admin_by_content(endpoints, api, credentials, team_id):
    author = _user(endpoints, api, credentials, team_id, ["sandbox_author"])
    secadm = _user(endpoints, api, credentials, team_id, ["security_admin"])
    item = author.ok("POST", "/v1/catalog/models", json={"name": unique_name("m"), "body": _body()}, expect=(201,))
    reviewed = {"content_sha256": item["content_sha256"]}
    r = author.post(f"/v1/catalog/models/{item['id']}/approve", json=reviewed)
    assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text
    # changed since it was reviewed: 409, still a draft
    author.ok("PATCH", f"/v1/catalog/models/{item['id']}", json={"body": _body(provider="openai")}, expect=(200,))
    r = secadm.post(f"/v1/catalog/models/{item['id']}/approve", json=reviewed)
    assert r.status_code == 409, r.text
    now = secadm.ok("GET", f"/v1/catalog/models/{item['id']}", expect=(200,))
    assert now["state"] == "draft"
    got = secadm.ok("POST", f"/v1/catalog/models/{item['id']}/approve",
                    json={"content_sha256": now["content_sha256"]}, expect=(200,))
    assert got["state"] == "approved" and got["approved_by"]


# ---------------------------------------------------------------- spec


def test_spec_models_and_agent_model(api, team_id):
    approved = _item(api, _body(models=[{"id": "claude-opus-4-8", "usd_per_mtok": PRICES},
                                        {"id": "claude-haiku-4-5", "usd_per_mtok": PRICES}]))
    draft = _item(api, _body(), approve=False)
    openai = _item(api, _body(provider="openai", models=[{"id": "gpt-5.5", "usd_per_mtok": PRICES}]))
    clash = _item(api, _body(models=[{"id": "claude-opus-4-8", "usd_per_mtok": PRICES}]))

    def spec(agent, models=None, **limits):
        s = {"agent": agent, "limits": {"timeout_s": 60, **limits}}
        if models is not None:
            s["models"] = models
        return s

    claude = {"type": "claude-code"}
    cases = [
        (spec(claude), "spec.models is required for agent type claude-code"),
        (spec({"type": "codex"}), "spec.models is required for agent type codex"),
        (spec(claude, [draft["id"]]), "spec.models[0]"),
        (spec(claude, ["no-such-models-item"]), "spec.models[0]"),
        (spec(claude, [openai["id"]]), "spec.models"),
        (spec(dict(claude, model="gpt-5.5"), [approved["id"], openai["id"]]), "spec.agent.model"),
        (spec(dict(claude, model="claude-nope"), [approved["id"]]), "spec.agent.model"),
        (spec({"type": "command", "command": ["/bin/true"], "model": "x"}, [approved["id"]]), "spec.agent.model"),
        (spec(claude, [approved["id"], approved["name"]]), "spec.models[1]"),
        (spec(claude, [approved["id"], clash["id"]]), "spec.models[1]"),
        (spec(claude, "x"), "spec.models"),
        (spec(dict(claude, effort="maximal"), [approved["id"]]), "spec.agent.effort"),
        (spec(dict(claude, effort=3), [approved["id"]]), "spec.agent.effort"),
        (spec({"type": "command", "command": ["/bin/true"], "effort": "high"}, [approved["id"]]), "spec.agent.effort"),
    ]
    for s, field in cases:
        r = _sandbox(api, team_id, s)
        assert r.status_code == 400, (field, r.text)
        assert field in r.json()["detail"], (field, r.text)
    # what runs enforce now is no longer "unsupported"
    ok = [
        spec(dict(claude, model="claude-haiku-4-5"), [approved["id"]], max_tokens=5000, max_cost_usd=2.5),
        spec({"type": "codex", "model": "gpt-5.5"}, [openai["name"], approved["id"]]),
        spec({"type": "command", "command": ["/bin/true"], "model": "gpt-5.5"}, [openai["id"]]),
    ]
    for s in ok:
        r = _sandbox(api, team_id, s)
        assert r.status_code == 201, r.text
        sb = r.json()["id"]
        api.ok("POST", f"/v1/sandboxes/{sb}/versions", expect=(201,))
        pol = api.ok("GET", f"/v1/sandboxes/{sb}/versions/1/effective-policy", expect=(200,))
        named = {approved["id"]: approved, approved["name"]: approved, openai["id"]: openai, openai["name"]: openai}
        assert [m["id"] for m in pol["models"]] == [named[x]["id"] for x in s["models"]], pol["models"]
        assert all(m["key_secret"] == "E2E_MODEL_KEY" for m in pol["models"]), pol["models"]
        if "max_tokens" in s["limits"]:
            assert pol["limits"]["max_tokens"] == 5000 and pol["limits"]["max_cost_usd"] == 2.5, pol["limits"]
    assert pol["limits"].get("max_tokens") is None
    assert [m["id"] for m in pol["models"][0]["models"]] == ["gpt-5.5"]


# ---------------------------------------------------------------- end to end


def _openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _leaf(d, ip):
    """A server certificate for ip signed by the stack's test CA (which the
    runner-agent trusts through PADDOCK_EGRESS_CA_BUNDLE)."""
    key, csr, crt, ext = d / "sim.key", d / "sim.csr", d / "sim.crt", d / "sim.ext"
    ext.write_text(f"subjectAltName=IP:{ip}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-subj", f"/CN={ip}", "-keyout", str(key), "-out", str(csr))
    _openssl("x509", "-req", "-in", str(csr), "-CA", os.environ["PADDOCK_TEST_CA_CERT"], "-CAkey",
             os.environ["PADDOCK_TEST_CA_KEY"], "-set_serial", str(uuid.uuid4().int % 2**60), "-days", "2",
             "-extfile", str(ext), "-out", str(crt))
    return crt, key


class ModelSim:
    """tests/modelsim serving HTTPS in the test upstream network (the
    gateway's upstream is an "outside" host, never the node's loopback)."""

    def __init__(self, tmp, index, script):
        self.host = e2e.test_upstream_addrs()[index]
        self.log = tmp / "modelsim.jsonl"
        self.log.touch()
        crt, key = _leaf(tmp, self.host)
        handler = type("Handler", (modelsim.Handler,), {"sim": modelsim.Sim(script, str(self.log))})
        self.server = e2e.in_test_netns(lambda: modelsim.Server((self.host, 0), handler))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(crt), str(key))
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def upstream(self):
        return f"https://{self.host}:{self.port}"

    def requests(self):
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _runner_agent():
    build = pathlib.Path(os.environ.get("PADDOCK_CLI", "")).resolve().parents[1]
    path = pathlib.Path(os.environ.get("PADDOCK_BUILD_DIR") or build) / "services/runner-agent/paddock-runner-agent"
    assert os.access(path, os.X_OK), f"paddock-runner-agent not found at {path} (set PADDOCK_CLI or PADDOCK_BUILD_DIR)"
    return path


@pytest.fixture(scope="module")
def python_image(api, endpoints):
    """The debian-python catalog image on the stack's node: built there
    (`paddock-runner-agent image build`, about 3 minutes once per stack state)
    when no ready node has it yet, then reported by the node's heartbeat."""
    def ready():
        nodes = api.ok("GET", "/v1/nodes", expect=(200,))["items"]
        return any(n["state"] == "ready" and IMAGE in n.get("images", []) for n in nodes)
    if not ready():
        # the node's image cache (PADDOCK_IMAGE_CACHE_DIR, outside the stack's state dir)
        p = subprocess.run([str(_runner_agent()), "image", "build", IMAGE, "--cache-dir",
                            os.environ.get("PADDOCK_IMAGE_CACHE_DIR", "/var/cache/paddock/images")],
                           capture_output=True, text=True, timeout=900)
        assert p.returncode == 0, f"image build {IMAGE} exited {p.returncode}: {p.stderr[-3000:]}"
        wait_for(f"a ready node with image {IMAGE}", ready, timeout=60)
    return IMAGE


@pytest.fixture
def sim(tmp_path):
    s = ModelSim(tmp_path, 2, {"anthropic": TURNS})
    yield s
    s.close()


def _cost(u):
    return (u["input_tokens"] * PRICES["input"] + u["output_tokens"] * PRICES["output"]
            + u["cache_read_tokens"] * PRICES["cache_read"] + u["cache_write_tokens"] * PRICES["cache_write"]) / 1e6


def test_run_calls_the_gateway_with_the_teams_key(endpoints, api, team_id, runs, sim, python_image):
    key_name = _secret_name()
    real_key = "sk-e2e-real-" + secrets.token_hex(16)
    api.ok("PUT", f"/v1/teams/{team_id}/secrets/{key_name}", json={"value": real_key}, expect=(200, 201, 204))
    item = _item(api, _body(upstream=sim.upstream, key_secret=key_name))
    spec = command_spec([PY, "-c", AGENT, "claude-opus-4-8", DUMMY], timeout_s=120)
    spec["models"] = [item["id"]]
    spec["agent"]["model"] = "claude-opus-4-8"
    spec["image"] = python_image
    run_id = runs.start(spec)
    res = wait_terminal(endpoints, api.token, run_id, timeout=240)
    out = res.output()
    assert res.terminal == "succeeded", (res.statuses, out[-3000:])
    assert all(f"CALL {i} 200 True" in out for i in range(3)), out[-3000:]

    # one model_call per call, with the simulator's usage
    calls = [e["data"] for e in res.of_kind("model_call")]
    assert len(calls) == 3, calls
    want = {"model_calls": 3, "cost_usd": 0.0}
    # calls end in order, their events need not (each from its own gateway thread)
    calls.sort(key=lambda c: [t["usage"]["input_tokens"] for t in TURNS].index(c["input_tokens"])
               if c["input_tokens"] in [t["usage"]["input_tokens"] for t in TURNS] else -1)
    for c, t in zip(calls, TURNS):
        u = dict({"cache_read_tokens": 0, "cache_write_tokens": 0}, **t["usage"])
        assert c["provider"] == "anthropic" and c["model"] == "claude-opus-4-8" and c["status"] == 200, c
        for k in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
            assert c[k] == u[k], (k, c)
            want[k] = want.get(k, 0) + u[k]
        assert abs(c["cost_usd"] - _cost(u)) < 1e-9, c
        want["cost_usd"] += _cost(u)
    # the last usage event (before the terminal status) has the totals
    usage_events = [e for e in res.events if e["kind"] == "usage"]
    assert usage_events, [e["kind"] for e in res.events]
    last = usage_events[-1]
    assert last["seq"] < next(e["seq"] for e in res.events if e["kind"] == "status"
                              and e["data"].get("status") == "succeeded")
    for k in USAGE_KEYS:
        assert abs(last["data"][k] - want[k]) < 1e-9, (k, last["data"], want)
    # the live ones (without runtime_s) at most one a second, never ahead of the calls
    live = [e for e in usage_events if "runtime_s" not in e["data"]]
    assert 1 <= len(live) <= 3, live
    ts = [datetime.datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).timestamp() for e in live]
    assert all(b - a >= 0.99 for a, b in zip(ts, ts[1:])), ts
    assert [e["data"]["model_calls"] for e in live] == sorted(e["data"]["model_calls"] for e in live)

    # GET run: the same sums (the status consumer applies them from the status topic)
    run = wait_run_status(api, run_id)

    def settled():
        got = api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))
        return got if all(abs(got["usage"][k] - want[k]) < 1e-9 for k in USAGE_KEYS) else None
    run = wait_for("the run's usage totals", settled, timeout=30)
    assert run["usage"]["model_calls"] == 3 and run["agent_session"] is None

    # the simulator saw the team's key and never the agent's dummy
    reqs = sim.requests()
    assert len(reqs) == 3, reqs
    for r in reqs:
        assert r["tls"] and r["headers"].get("x-api-key") == real_key, r["headers"]
        assert DUMMY not in json.dumps(r)
    # the real key: not in the agent's env, not in any event, not in a service log
    assert "ENV " in out and real_key not in out
    events = e2e.all_events(api, run_id)
    assert any(e["kind"] == "model_call" for e in events)
    assert real_key not in json.dumps(events)
    logs = state_dir() / "logs"
    for f in logs.rglob("*"):
        if f.is_file():
            assert real_key.encode() not in f.read_bytes(), f"the real model key is in {f}"


def test_launch_without_the_team_key_is_refused_and_creates_nothing(endpoints, api, team_id, runs):
    item = _item(api, _body(key_secret=_secret_name()))
    spec = command_spec(["/bin/true"])
    spec["models"] = [item["id"]]
    sb = runs.create_sandbox(spec)
    version = runs.publish(sb)
    audited = _count(endpoints, "SELECT count(*) FROM evidence.audit_log WHERE action = 'run.launch'")
    r = api.post("/v1/runs", json={"sandbox": sb, "version": version},
                 headers={"Idempotency-Key": str(uuid.uuid4())})
    assert r.status_code == 409, r.text
    assert "spec.models[0]" in r.json()["detail"] and item["body"]["key_secret"] in r.json()["detail"], r.text
    assert _count(endpoints, "SELECT count(*) FROM api.runs WHERE sandbox_id = %s", (sb,)) == 0
    time.sleep(1)
    assert _count(endpoints, "SELECT count(*) FROM evidence.audit_log WHERE action = 'run.launch'") == audited


# ---------------------------------------------------------------- the run row from the status topic


def _pb_str(num, s):
    b = s.encode() if isinstance(s, str) else s
    return e2e.pb_varint(num << 3 | 2) + e2e.pb_varint(len(b)) + b


def _pb_int(num, n):
    return e2e.pb_varint(num << 3) + e2e.pb_varint(n)


def _run_event(tenant, team, run_id, seq, kind, data, status=""):
    env = (_pb_str(1, tenant) + _pb_str(2, run_id) + _pb_int(3, seq) + _pb_int(4, int(time.time() * 1e6))
           + _pb_str(5, "runner-agent/e2e-test") + _pb_int(6, 1) + _pb_str(7, str(uuid.uuid4())))
    msg = _pb_str(1, env) + _pb_str(2, kind) + _pb_str(3, "platform") + _pb_str(4, json.dumps(data)) + _pb_str(5, team)
    return msg + (_pb_str(6, status) if status else b"")


def test_usage_never_goes_down_and_agent_session_is_kept(endpoints, api, me, tenant_id, team_id, runs):
    """A run of a node the test plays ("e2e-models-node"): its usage records
    arrive out of order and again; the run keeps the highest figures."""
    node = enroll_test_node(endpoints, "e2e-models-node")
    sb = runs.create_sandbox(command_spec(["/bin/true"]))
    version = runs.publish(sb)
    user_id = me["user"]["id"]
    run_id = str(uuid.uuid4())
    with _pg(endpoints) as conn:
        conn.execute("INSERT INTO api.runs (id, tenant_id, team_id, sandbox_id, version, status, created_by, node_id) "
                     "VALUES (%s, %s, %s, %s, %s, 'scheduled', %s, 'e2e-models-node')",
                     (run_id, tenant_id, team_id, sb, version, user_id))
    high = {"model_calls": 5, "input_tokens": 900, "output_tokens": 300, "cache_read_tokens": 70,
            "cache_write_tokens": 20, "cost_usd": 0.0125}
    low = {"model_calls": 2, "input_tokens": 100, "output_tokens": 30, "cache_read_tokens": 7,
           "cache_write_tokens": 2, "cost_usd": 0.001}
    agent = {"type": "claude-code", "cli_version": "2.1.197", "model": "claude-opus-4-8", "effort": "high",
             "bogus": "dropped"}
    for seq, kind, data, status in [(2, "status", {"status": "running", "agent": agent}, "running"),
                                    (5, "usage", high, ""),
                                    (3, "usage", low, ""),     # older, arriving late
                                    (5, "usage", high, ""),    # redelivered
                                    (6, "usage", dict(low, output_tokens=400), "")]:
        node.produce(endpoints, STATUS, run_id, _run_event(tenant_id, team_id, run_id, seq, kind, data, status))
    want = dict(high, output_tokens=400)

    def applied():
        got = api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))
        return got if got["usage"]["output_tokens"] == 400 else None
    run = wait_for("the usage records applied", applied, timeout=30)
    for k in USAGE_KEYS:
        assert abs(run["usage"][k] - want[k]) < 1e-12, (k, run["usage"])
    assert run["status"] == "running"
    assert run["agent_session"] == {k: v for k, v in agent.items() if k != "bogus"}, run["agent_session"]
    # a run with no usage shows zeros
    fresh = api.ok("GET", f"/v1/runs/{runs.launch(sb, version)}", expect=(200,))
    assert fresh["usage"] == {"model_calls": 0, "input_tokens": 0, "output_tokens": 0, "cache_read_tokens": 0,
                              "cache_write_tokens": 0, "cost_usd": 0}
    assert fresh["agent_session"] is None


# ---------------------------------------------------------------- the CLI


def test_cli_catalog_covers_models(endpoints, credentials, api, tmp_path):
    from cli_support import Cli
    cli = Cli(tmp_path / "paddock-config", endpoints.api, timeout=120)
    r = cli("login", "--tenant", credentials["PADDOCK_TENANT"], "--user", credentials["PADDOCK_USER"],
            "--password-stdin", input=credentials["PADDOCK_PASSWORD"] + "\n")
    assert r.returncode == 0, r.stderr
    name = unique_name("climodels")
    f = tmp_path / "models.json"
    f.write_text(json.dumps(_body()))
    cli.ok("catalog", "create", "models", "--name", name, "--file", str(f))
    item = cli.json("catalog", "show", "model", name)
    assert item["kind"] == "models" and item["state"] == "draft" and item["body"] == _body()
    cli.ok("catalog", "approve", "models", name, "--sha256", item["content_sha256"])
    assert api.ok("GET", f"/v1/catalog/models/{item['id']}", expect=(200,))["state"] == "approved"
    f.write_text(json.dumps({"body": _body(provider="gemini")}))
    r = cli("catalog", "update", "models", name, "--file", str(f))
    assert r.returncode == 1 and "body.provider" in r.stderr, (r.returncode, r.stderr)
