"""MCP connectors (issue 12 §5 and §7; docs/CONTRACTS.md "MCP connectors"):
the real Claude Code and Codex CLIs of the node-agents image, against the
model simulator, given an approved `connectors` catalog item as an MCP server
of the run.

The server is tests/modelsim/mcp_echo_server.js (ours, Node.js stdlib), shipped
to the run as a managed file (spec.files) and started by the CLI through the
connector's `command` (`node /workspace/mcp/echo_server.js <marker>`). The
model calls `mcp__<name>__echo` (allowed: the server writes the marker and
answers, the call is a tool_call event) and `mcp__<name>__delete_ticket`
(denied at the hook by `{"match": {"mcp_server": <name>, "mcp_tool":
"delete*"}, "action": "deny"}`: the decision names the rule, the server is
not reached). The run records what it was given (`running`'s agent and GET
run agent_session: skills and mcp_servers). A definition naming a connector
that is not approved is refused (400 not_approved), so its tools are never
available; a command agent cannot have connectors (400). An http connector
with a secret: Claude and Codex reach an https MCP server in the test network
through the egress proxy, which opens the TLS and adds the secret header; the
agent's env never holds it.

Time: about 40 s (four CLI runs)."""

import http.server
import json
import pathlib
import secrets
import socketserver
import ssl
import threading
import uuid

import conftest as e2e
from conftest import all_events, command_spec, unique_name, wait_terminal
from test_e2e_agents import (CLAUDE_MODEL, CODEX_MODEL, IMAGE, PRICES, USAGE, USAGE_OPENAI, agents_image,  # noqa: F401
                             template)
from test_e2e_models import ModelSim, _body, _item, _leaf

SERVER_JS = (pathlib.Path(__file__).resolve().parents[1] / "modelsim" / "mcp_echo_server.js").read_text()
MARKER = "/workspace/mcp-echo-called.txt"


def _name(prefix):
    """A connector name: [a-z0-9_] (Codex would show "-" as "_")."""
    return unique_name(prefix).replace("-", "_")


def _connector(api, body, approve=True, name=None):
    item = api.ok("POST", "/v1/catalog/connectors", json={"name": name or _name("tickets"), "body": body},
                  expect=(201,))
    if approve:
        api.ok("POST", f"/v1/catalog/connectors/{item['id']}/approve", json={"content_sha256": item["content_sha256"]},
               expect=(200,))
    return item


def _stdio_connector(api, approve=True):
    return _connector(api, {"description": "test echo server", "transport": "stdio",
                            "command": ["node", "/workspace/mcp/echo_server.js", MARKER]}, approve=approve)


def _skill(api):
    sk = api.ok("POST", "/v1/catalog/skills", json={"name": unique_name("sk"), "body": {
        "description": "triage tickets", "instructions": "Look at the ticket first."}}, expect=(201,))
    api.ok("POST", f"/v1/catalog/skills/{sk['id']}/approve", json={"content_sha256": sk["content_sha256"]},
           expect=(200,))
    return sk


def _of(events, kind):
    return [e for e in events if e["kind"] == kind]


class McpAgent:
    """A CLI definition with one connector, one skill and a deny rule on the
    connector's delete* tools."""

    def __init__(self, api, team_id, tmp, kind, script_of, template):  # noqa: F811
        self.api, self.kind = api, kind
        provider = "anthropic" if kind == "claude-code" else "openai"
        model = CLAUDE_MODEL if kind == "claude-code" else CODEX_MODEL
        key_name = "E2E_MCP_KEY_" + uuid.uuid4().hex[:10].upper()
        api.ok("PUT", f"/v1/teams/{team_id}/secrets/{key_name}", json={"value": "sk-e2e-mcp-" + secrets.token_hex(16)},
               expect=(200, 201, 204))
        self.connector = _stdio_connector(api)
        self.name = self.connector["name"]
        self.skill = _skill(api)
        self.sim = ModelSim(tmp, 3, script_of(self.name))
        item = _item(api, _body(upstream=self.sim.upstream, provider=provider, key_secret=key_name,
                                models=[{"id": model, "usd_per_mtok": dict(PRICES)}]))
        self.rule = {"match": {"mcp_server": self.name, "mcp_tool": "delete*"}, "action": "deny"}
        spec = {"agent": {"type": kind, "model": model}, "image": IMAGE, "models": [item["id"]],
                "files": [{"path": "mcp/echo_server.js", "content": SERVER_JS}],
                "connectors": [self.connector["id"]], "skills": [self.skill["name"]],
                "limits": {"timeout_s": 240, "memory_mb": 2048}, "prompt": {"template": template},
                "policy": {"rules": [self.rule]}}
        sb = api.ok("POST", "/v1/sandboxes", json={"name": unique_name("mcp-" + kind), "team": team_id,
                                                   "spec": spec}, expect=(201,))
        self.sandbox = sb["id"]
        self.version = api.ok("POST", f"/v1/sandboxes/{self.sandbox}/versions", expect=(201,))["version"]

    def launch(self):
        r = self.api.post("/v1/runs", json={"sandbox": self.sandbox, "version": self.version,
                                            "prompt_vars": {"task": "echo through the tickets server"}},
                          headers={"Idempotency-Key": str(uuid.uuid4())})
        assert r.status_code == 202, r.text
        return r.json()["id"]

    def close(self):
        self.sim.close()


def _check_run(api, endpoints, agent, run_id, token):
    res = wait_terminal(endpoints, api.token, run_id, timeout=240)
    assert res.terminal == "succeeded", (res.statuses, res.output()[-3000:])
    events = all_events(api, run_id)
    echo_tool, delete_tool = f"mcp__{agent.name}__echo", f"mcp__{agent.name}__delete_ticket"
    calls = [e["data"] for e in _of(events, "tool_call")]
    # the allowed call reached the server: its answer is the tool_call's result
    echo = [c for c in calls if c["tool"] == echo_tool]
    assert echo and f"mcp-echo: {token}" in json.dumps(echo[0].get("result")), (
        calls, [e["data"] for e in _of(events, "output")][-20:])
    assert echo[0]["input"] == {"text": token}, echo
    decisions = [e["data"] for e in _of(events, "policy_decision") if e["data"].get("level") == "hook"]
    allowed = [d for d in decisions if d.get("tool") == echo_tool]
    assert allowed and allowed[0]["action"] == "allow", decisions
    assert allowed[0]["mcp_server"] == agent.name and allowed[0]["mcp_tool"] == "echo", allowed
    # the denied one was decided at the hook by the rule, and never reached the server
    denied = [d for d in decisions if d.get("tool") == delete_tool]
    assert denied and denied[0]["action"] == "deny" and denied[0]["rule"] == "spec.policy.rules[0]", decisions
    assert denied[0]["mcp_tool"] == "delete_ticket", denied
    results = " ".join(json.dumps(c.get("result")) for c in calls) + " ".join(
        json.dumps(e["data"].get("result")) for e in _of(events, "tool_result"))
    assert f"MARKER:{token}:" in results.replace("\\n", ":"), results[:3000]
    assert "DELETED" not in results and "MARKER-END" in results, results[:3000]
    # what the run was given: on `running` and in agent_session
    running = [e["data"] for e in _of(events, "status") if e["data"].get("status") == "running"]
    assert running and running[0]["agent"]["mcp_servers"] == [agent.name], running
    assert running[0]["agent"]["skills"] == [agent.skill["name"]], running
    run = api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))
    assert run["agent_session"]["mcp_servers"] == [agent.name], run["agent_session"]
    assert run["agent_session"]["skills"] == [agent.skill["name"]], run["agent_session"]


def test_claude_calls_an_approved_mcp_tool_and_a_deny_rule_blocks_another(endpoints, api, team_id, agents_image,
                                                                          template, tmp_path):
    token = "tok" + secrets.token_hex(6)

    def script(name):
        calls = [{"name": f"mcp__{name}__echo", "input": {"text": token}},
                 {"name": f"mcp__{name}__delete_ticket", "input": {"id": "7"}},
                 {"name": "Bash", "input": {"command": f"echo MARKER:$(tr '\\n' ':' < {MARKER}); echo MARKER-END",
                                            "description": "check"}}]
        turns = [{"tool_calls": [c], "usage": USAGE[0]} for c in calls]
        return {"anthropic": turns + [{"text": "All done.", "usage": USAGE[4]}]}

    agent = McpAgent(api, team_id, tmp_path, "claude-code", script, template)
    try:
        run_id = agent.launch()
        _check_run(api, endpoints, agent, run_id, token)
        # the model was offered the run's server (strict: only it), with both tools
        tools = [t["name"] for r in agent.sim.requests() if isinstance(r.get("body"), dict)
                 for t in r["body"].get("tools", [])]
        assert f"mcp__{agent.name}__echo" in tools and f"mcp__{agent.name}__delete_ticket" in tools, tools
    finally:
        agent.close()


def test_codex_calls_an_approved_mcp_tool_and_a_deny_rule_blocks_another(endpoints, api, team_id, agents_image,
                                                                         template, tmp_path):
    token = "tok" + secrets.token_hex(6)

    def script(name):
        # Codex 0.171 offers an MCP server's tools as the namespace
        # "mcp__<name>" ("-" shown as "_"); a call names the namespace and the tool
        # (a shell step first: Codex does not wait for its MCP servers before
        # the first model request, and a tool not yet listed is "unsupported")
        calls = [{"name": "exec_command", "arguments": {"cmd": "sleep 2; echo codex-start"}},
                 {"namespace": f"mcp__{name}", "name": "echo", "arguments": {"text": token}},
                 {"namespace": f"mcp__{name}", "name": "delete_ticket", "arguments": {"id": "7"}},
                 {"name": "exec_command", "arguments": {"cmd": f"echo MARKER:$(tr '\\n' ':' < {MARKER}); "
                                                               "echo MARKER-END"}}]
        turns = [{"tool_calls": [c], "usage": USAGE_OPENAI[0]} for c in calls]
        return {"openai": turns + [{"text": "All done.", "usage": USAGE_OPENAI[4]}]}

    agent = McpAgent(api, team_id, tmp_path, "codex", script, template)
    try:
        run_id = agent.launch()
        # (with gpt-5.5 Codex defers MCP tools behind its tool_search: the
        # request lists no namespace, a call to it still goes through)
        _check_run(api, endpoints, agent, run_id, token)
    finally:
        agent.close()


def test_unapproved_connector_is_refused_and_command_agents_take_none(api, team_id):
    draft = _stdio_connector(api, approve=False)
    item = _item(api, _body(provider="anthropic", models=[{"id": CLAUDE_MODEL, "usd_per_mtok": dict(PRICES)}]))
    spec = {"agent": {"type": "claude-code", "model": CLAUDE_MODEL}, "image": IMAGE, "models": [item["id"]],
            "connectors": [draft["name"]]}
    r = api.post("/v1/sandboxes", json={"name": unique_name("mcp-draft"), "team": team_id, "spec": spec})
    assert r.status_code == 400 and r.json()["code"] == "invalid_field", r.text
    assert "spec.connectors[0]" in r.json()["detail"] and "not approved" in r.json()["detail"], r.text
    # a command agent has no MCP client: refused, naming the field
    ok = _stdio_connector(api)
    spec = command_spec(["/bin/true"], timeout_s=30)
    spec["connectors"] = [ok["id"]]
    r = api.post("/v1/sandboxes", json={"name": unique_name("mcp-cmd"), "team": team_id, "spec": spec})
    assert r.status_code == 400 and "spec.connectors" in r.json()["detail"] and "command" in r.json()["detail"], r.text


def test_connector_body_and_name_are_checked(api):
    cases = [
        ({"transport": "stdio", "command": ["x"], "secret": {"name": "K", "header": "X-Key"}}, "body.secret"),
        ({"transport": "http", "url": "http://mcp.example.org/mcp", "secret": {"name": "K", "header": "X-Key"}},
         "body.url"),
        ({"transport": "http", "url": "https://mcp.example.org/mcp", "secret": {"name": "k", "header": "X-Key"}},
         "body.secret.name"),
        ({"transport": "http", "url": "https://mcp.example.org/mcp", "secret": {"name": "K", "header": "Host"}},
         "body.secret.header"),
        ({"transport": "http", "url": "https://mcp.example.org/mcp", "secret": {"name": "K"}}, "body.secret.header"),
        ({"transport": "http", "url": "https://mcp.example.org/mcp", "secret": {"name": "K", "header": "X",
                                                                                "value": "v"}}, "body.secret.value"),
        ({"transport": "http", "url": "https://169.254.169.254/mcp"}, "body.url"),
        ({"transport": "http", "url": "https://*.example.org/mcp"}, "body.url"),
    ]
    before = len(api.ok("GET", "/v1/catalog/connectors?limit=500", expect=(200,))["items"])
    for body, field in cases:
        r = api.post("/v1/catalog/connectors", json={"name": _name("c"), "body": body})
        assert r.status_code == 400 and field in r.json()["detail"], (body, r.text)
    for name in ("Tickets", "a__b", "a.b", "tic-kets", "_a", "a_"):
        r = api.post("/v1/catalog/connectors", json={"name": name, "body": {"transport": "stdio", "command": ["x"]}})
        assert r.status_code == 400 and "name" in r.json()["detail"], (name, r.text)
    assert len(api.ok("GET", "/v1/catalog/connectors?limit=500", expect=(200,))["items"]) == before


def test_http_connector_in_the_effective_policy_and_its_secret_must_be_set(api, team_id, template):  # noqa: F811
    key_name = "E2E_MCP_HDR_" + uuid.uuid4().hex[:10].upper()
    conn = _connector(api, {"transport": "http", "url": "https://mcp.example.org:8443/v1/mcp",
                            "secret": {"name": key_name, "header": "X-Api-Key"}})
    model_key = "E2E_MCP_KEY_" + uuid.uuid4().hex[:10].upper()
    api.ok("PUT", f"/v1/teams/{team_id}/secrets/{model_key}", json={"value": "sk-" + secrets.token_hex(8)},
           expect=(200, 201, 204))
    item = _item(api, _body(provider="anthropic", key_secret=model_key,
                            models=[{"id": CLAUDE_MODEL, "usd_per_mtok": dict(PRICES)}]))
    spec = {"agent": {"type": "claude-code", "model": CLAUDE_MODEL}, "image": IMAGE, "models": [item["id"]],
            "connectors": [conn["name"]], "prompt": {"template": template}}
    sb = api.ok("POST", "/v1/sandboxes", json={"name": unique_name("mcp-http"), "team": team_id, "spec": spec},
                expect=(201,))
    ver = api.ok("POST", f"/v1/sandboxes/{sb['id']}/versions", expect=(201,))["version"]
    pol = api.ok("GET", f"/v1/sandboxes/{sb['id']}/versions/{ver}/effective-policy", expect=(200,))
    assert pol["connectors"] == [{"id": conn["id"], "name": conn["name"], "transport": "http",
                                  "url": "https://mcp.example.org:8443/v1/mcp",
                                  "secret": {"name": key_name, "header": "X-Api-Key"}}], pol["connectors"]
    src = f"connector:{conn['id']}"
    assert {"host": "mcp.example.org", "port": 8443, "source": src} in pol["egress"]["rules"], pol["egress"]
    assert {"name": key_name, "as": {"header": {"origin": "https://mcp.example.org:8443", "name": "X-Api-Key"}},
            "source": src} in pol["secrets"], pol["secrets"]
    # the team lacks the connector's secret: launch refused like a missing spec.secrets one
    r = api.post("/v1/runs", json={"sandbox": sb["id"], "version": ver, "prompt_vars": {"task": "t"}},
                 headers={"Idempotency-Key": str(uuid.uuid4())})
    assert r.status_code == 409 and "spec.connectors[0]" in r.json()["detail"] and key_name in r.json()["detail"], \
        r.text


class HttpMcpServer:
    """An MCP server of the streamable-HTTP transport (JSON answers, no SSE)
    over HTTPS in the test upstream network, with a certificate of the
    stack's test CA: what an http connector names. It records every request's
    method and whether it carried the connector's secret header."""

    def __init__(self, tmp, index, header, secret):
        self.host = e2e.test_upstream_addrs()[index]
        self.seen = []
        crt, key = _leaf(tmp, self.host)
        seen = self.seen

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _reply(self, code, body=None):
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(code)
                if body is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # no server-to-client stream
                seen.append({"http": "GET", "key_ok": self.headers.get(header) == secret})
                self._reply(405)

            def do_DELETE(self):
                self._reply(405)

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                msg = json.loads(self.rfile.read(n) or b"{}")
                key_ok = self.headers.get(header) == secret
                seen.append({"http": "POST", "method": msg.get("method"), "key_ok": key_ok})
                if not key_ok:
                    return self._reply(401, {"error": "no key"})
                if "id" not in msg:
                    return self._reply(202)
                m, params = msg.get("method"), msg.get("params") or {}
                if m == "initialize":
                    result = {"protocolVersion": params.get("protocolVersion", "2025-06-18"),
                              "capabilities": {"tools": {"listChanged": False}},
                              "serverInfo": {"name": "paddock-test-http", "version": "1.0.0"}}
                elif m == "tools/list":
                    result = {"tools": [{"name": "echo", "description": "Echoes its text.",
                                         "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}},
                                                         "required": ["text"]}}]}
                elif m == "tools/call":
                    text = str((params.get("arguments") or {}).get("text", ""))
                    result = {"content": [{"type": "text", "text": f"mcp-http-echo: {text}"}]}
                else:
                    result = {}
                self._reply(200, {"jsonrpc": "2.0", "id": msg["id"], "result": result})

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.server = e2e.in_test_netns(lambda: Server((self.host, 0), Handler))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(crt), str(key))
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"https://{self.host}:{self.port}/mcp"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _http_connector_run(endpoints, api, team_id, template, tmp_path, kind):
    """An http connector with a secret: the CLI is given the url in plain
    http, the egress proxy opens the TLS (verified against the stack's test CA)
    and adds the header; the agent's environment never holds the secret."""
    token, secret = "tok" + secrets.token_hex(6), "mcp-key-" + secrets.token_hex(16)
    key_name = "E2E_MCP_HTTP_" + uuid.uuid4().hex[:10].upper()
    api.ok("PUT", f"/v1/teams/{team_id}/secrets/{key_name}", json={"value": secret}, expect=(200, 201, 204))
    server = HttpMcpServer(tmp_path, 2, "X-Api-Key", secret)
    conn = _connector(api, {"transport": "http", "url": server.url, "secret": {"name": key_name, "header": "X-Api-Key"}})
    name = conn["name"]
    model_key = "E2E_MCP_KEY_" + uuid.uuid4().hex[:10].upper()
    api.ok("PUT", f"/v1/teams/{team_id}/secrets/{model_key}", json={"value": "sk-" + secrets.token_hex(8)},
           expect=(200, 201, 204))
    if kind == "claude-code":
        calls = [{"name": f"mcp__{name}__echo", "input": {"text": token}},
                 {"name": "Bash", "input": {"command": "env | grep -c mcp-key- || true", "description": "env"}}]
        turns = [{"tool_calls": [c], "usage": USAGE[0]} for c in calls]
        script = {"anthropic": turns + [{"text": "All done.", "usage": USAGE[4]}]}
    else:  # see the stdio Codex test: a shell step first, then the namespace call
        calls = [{"name": "exec_command", "arguments": {"cmd": "sleep 2; env | grep -c mcp-key- || true"}},
                 {"namespace": f"mcp__{name}", "name": "echo", "arguments": {"text": token}}]
        turns = [{"tool_calls": [c], "usage": USAGE_OPENAI[0]} for c in calls]
        script = {"openai": turns + [{"text": "All done.", "usage": USAGE_OPENAI[4]}]}
    sim = ModelSim(tmp_path, 3, script)
    try:
        model = CLAUDE_MODEL if kind == "claude-code" else CODEX_MODEL
        item = _item(api, _body(upstream=sim.upstream, provider="anthropic" if kind == "claude-code" else "openai",
                                key_secret=model_key, models=[{"id": model, "usd_per_mtok": dict(PRICES)}]))
        spec = {"agent": {"type": kind, "model": model}, "image": IMAGE, "models": [item["id"]],
                "connectors": [conn["id"]], "limits": {"timeout_s": 240, "memory_mb": 2048},
                "prompt": {"template": template}}
        sb = api.ok("POST", "/v1/sandboxes", json={"name": unique_name("mcp-http"), "team": team_id, "spec": spec},
                    expect=(201,))
        ver = api.ok("POST", f"/v1/sandboxes/{sb['id']}/versions", expect=(201,))["version"]
        r = api.post("/v1/runs", json={"sandbox": sb["id"], "version": ver, "prompt_vars": {"task": "echo"}},
                     headers={"Idempotency-Key": str(uuid.uuid4())})
        assert r.status_code == 202, r.text
        run_id = r.json()["id"]
        res = wait_terminal(endpoints, api.token, run_id, timeout=240)
        assert res.terminal == "succeeded", (res.statuses, res.output()[-3000:])
        events = all_events(api, run_id)
        echo = [e["data"] for e in _of(events, "tool_call") if e["data"]["tool"] == f"mcp__{name}__echo"]
        assert echo and f"mcp-http-echo: {token}" in json.dumps(echo[0].get("result")), (
            [e["data"] for e in _of(events, "tool_call")], server.seen, [e["data"] for e in _of(events, "egress")])
        posts = [s for s in server.seen if s["http"] == "POST"]
        assert posts and all(s["key_ok"] for s in posts), server.seen
        assert {"initialize", "tools/call"} <= {s["method"] for s in posts}, server.seen
        # the secret is the proxy's: not in the agent's env, not in any event
        shell = [e["data"] for e in _of(events, "tool_call") if e["data"]["tool"] in ("Bash", "shell")]
        assert shell and json.dumps(shell[0].get("result")).strip('"').startswith("0"), shell
        assert secret not in json.dumps(events)
    finally:
        sim.close()
        server.close()


def test_claude_reaches_an_http_connector_through_the_proxy_with_its_secret(endpoints, api, team_id, agents_image,
                                                                           template, tmp_path):
    _http_connector_run(endpoints, api, team_id, template, tmp_path, "claude-code")


def test_codex_reaches_an_http_connector_through_the_proxy_with_its_secret(endpoints, api, team_id, agents_image,
                                                                          template, tmp_path):
    _http_connector_run(endpoints, api, team_id, template, tmp_path, "codex")
