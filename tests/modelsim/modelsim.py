#!/usr/bin/env python3
"""Test-only model simulator (issue 11 §4, session decision 4): plays the
model for Paddock's tests. Python stdlib only.

Serves the Anthropic Messages API (POST /v1/messages, any query such as
?beta=true) and the OpenAI Responses API (POST /v1/responses) over HTTPS
(a certificate signed by a test CA the test generates: `gen-ca`) and/or plain
HTTP (the agent CLIs' direct mode), streaming SSE when the request asks for it
and a JSON body otherwise. What it answers is scripted by a JSON file:

  {"anthropic": [TURN, ...], "openai": [TURN, ...]}

each provider's turns are played in order, one per request (after the last,
a plain "done." text turn). A TURN is

  {"text": "...",                                   assistant text (optional)
   "tool_calls": [{"name": "Bash", "input": {...}}], Anthropic tool_use blocks
   "tool_calls": [{"name": "exec_command", "arguments": {...}},   OpenAI function_call
                  {"namespace": "mcp__srv", "name": "echo", "arguments": {...}},  in a namespace
                  {"name": "apply_patch", "custom": "*** Begin Patch..."}],  custom tool call
   "usage": {"input_tokens": N, "output_tokens": N,
             "cache_read_tokens": N, "cache_write_tokens": N},
   "delay_ms": N,         before the answer's head
   "chunk_delay_ms": N,   between SSE events
   "status": 429|500|..., answer this error (provider's error shape) instead
   "cut_after": N}        send N SSE events, then drop the connection

Every request is appended to the log (JSON lines): time, provider, method,
path, headers (all of them, keys included: the tests check which key arrived),
body, the turn played, and the wall-clock times of the first and last body
bytes sent. Unknown request fields are ignored; HEAD / and GET / answer 200
(Claude Code's warm-up).

  modelsim.py gen-ca DIR...       writes ca.pem, ca.key, server.pem, server.key
                                  (for 127.0.0.1, ::1 and localhost) in DIR
  modelsim.py serve --script F --log F [--https-port N --cert F --key F]
                    [--http-port N] [--ready F] [--host ADDR (default 127.0.0.1)]
                                  port 0 picks one; --ready gets {"https": port, "http": port}
"""
import argparse
import http.server
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid


def gen_ca(d):
    os.makedirs(d, exist_ok=True)
    p = lambda n: os.path.join(d, n)
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", p("ca.key"), "-out", p("ca.pem"), "-days", "2", "-subj", "/CN=paddock modelsim test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", p("server.key"), "-out", p("server.csr"), "-subj", "/CN=localhost")
    with open(p("ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth\n"
                "basicConstraints=CA:FALSE\n")
    run("openssl", "x509", "-req", "-in", p("server.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"),
        "-CAcreateserial", "-out", p("server.pem"), "-days", "2", "-extfile", p("ext.cnf"))


class Sim:
    def __init__(self, script, log_path):
        self.script = script
        self.log_path = log_path
        self.lock = threading.Lock()
        self.next = {"anthropic": 0, "openai": 0}

    def turn(self, provider):
        with self.lock:
            turns = self.script.get(provider, [])
            i = self.next[provider]
            self.next[provider] += 1
        if i < len(turns):
            return i, turns[i]
        return i, {"text": "done.", "usage": {"input_tokens": 1, "output_tokens": 1}}

    def log(self, rec):
        with self.lock, open(self.log_path, "a") as f:
            f.write(json.dumps(rec) + "\n")


def usage_of(t):
    u = t.get("usage", {})
    return (u.get("input_tokens", 0), u.get("output_tokens", 0), u.get("cache_read_tokens", 0),
            u.get("cache_write_tokens", 0))


def anthropic_events(model, t):
    """The SSE events of one Anthropic Messages turn, and its JSON form."""
    inp, out, cr, cw = usage_of(t)
    mid = "msg_" + uuid.uuid4().hex[:20]
    ev = [("message_start", {"type": "message_start", "message": {
        "id": mid, "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": inp, "output_tokens": 1, "cache_read_input_tokens": cr,
                  "cache_creation_input_tokens": cw}}}),
          ("ping", {"type": "ping"})]
    content = []
    idx = 0
    if t.get("text"):
        text = t["text"]
        ev.append(("content_block_start", {"type": "content_block_start", "index": idx,
                                           "content_block": {"type": "text", "text": ""}}))
        words = text.split(" ")
        for k, w in enumerate(words):
            piece = w if k == 0 else " " + w
            ev.append(("content_block_delta", {"type": "content_block_delta", "index": idx,
                                               "delta": {"type": "text_delta", "text": piece}}))
        ev.append(("content_block_stop", {"type": "content_block_stop", "index": idx}))
        content.append({"type": "text", "text": text})
        idx += 1
    for tc in t.get("tool_calls", []):
        tid = "toolu_" + uuid.uuid4().hex[:20]
        inp_json = json.dumps(tc.get("input", {}))
        ev.append(("content_block_start", {"type": "content_block_start", "index": idx, "content_block": {
            "type": "tool_use", "id": tid, "name": tc["name"], "input": {}}}))
        ev.append(("content_block_delta", {"type": "content_block_delta", "index": idx,
                                           "delta": {"type": "input_json_delta", "partial_json": inp_json}}))
        ev.append(("content_block_stop", {"type": "content_block_stop", "index": idx}))
        content.append({"type": "tool_use", "id": tid, "name": tc["name"], "input": tc.get("input", {})})
        idx += 1
    stop = "tool_use" if t.get("tool_calls") else "end_turn"
    ev.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                 "usage": {"output_tokens": out}}))
    ev.append(("message_stop", {"type": "message_stop"}))
    whole = {"id": mid, "type": "message", "role": "assistant", "model": model, "content": content,
             "stop_reason": stop, "stop_sequence": None,
             "usage": {"input_tokens": inp, "output_tokens": out, "cache_read_input_tokens": cr,
                       "cache_creation_input_tokens": cw}}
    return ev, whole


def openai_events(model, t):
    """The SSE events of one OpenAI Responses turn, and its JSON form."""
    inp, out, cr, _ = usage_of(t)
    rid = "resp_" + uuid.uuid4().hex[:20]
    now = int(time.time())
    base = {"id": rid, "object": "response", "created_at": now, "model": model, "output": [], "usage": None,
            "status": "in_progress"}
    ev = [("response.created", {"type": "response.created", "response": dict(base)}),
          ("response.in_progress", {"type": "response.in_progress", "response": dict(base)})]
    items = []
    oi = 0
    if t.get("text"):
        iid = "msg_" + uuid.uuid4().hex[:20]
        text = t["text"]
        ev.append(("response.output_item.added", {"type": "response.output_item.added", "output_index": oi,
                   "item": {"id": iid, "type": "message", "status": "in_progress", "role": "assistant",
                            "content": []}}))
        ev.append(("response.content_part.added", {"type": "response.content_part.added", "item_id": iid,
                   "output_index": oi, "content_index": 0,
                   "part": {"type": "output_text", "text": "", "annotations": []}}))
        for k, w in enumerate(text.split(" ")):
            ev.append(("response.output_text.delta", {"type": "response.output_text.delta", "item_id": iid,
                       "output_index": oi, "content_index": 0, "delta": w if k == 0 else " " + w}))
        ev.append(("response.output_text.done", {"type": "response.output_text.done", "item_id": iid,
                   "output_index": oi, "content_index": 0, "text": text}))
        part = {"type": "output_text", "text": text, "annotations": []}
        ev.append(("response.content_part.done", {"type": "response.content_part.done", "item_id": iid,
                   "output_index": oi, "content_index": 0, "part": part}))
        item = {"id": iid, "type": "message", "status": "completed", "role": "assistant", "content": [part]}
        ev.append(("response.output_item.done", {"type": "response.output_item.done", "output_index": oi,
                   "item": item}))
        items.append(item)
        oi += 1
    for tc in t.get("tool_calls", []):
        cid = "call_" + uuid.uuid4().hex[:20]
        if "custom" in tc:
            iid = "ctc_" + uuid.uuid4().hex[:20]
            item = {"id": iid, "type": "custom_tool_call", "status": "completed", "call_id": cid,
                    "name": tc["name"], "input": tc["custom"]}
            ev.append(("response.output_item.added", {"type": "response.output_item.added", "output_index": oi,
                       "item": dict(item, input="", status="in_progress")}))
            ev.append(("response.custom_tool_call_input.delta", {"type": "response.custom_tool_call_input.delta",
                       "item_id": iid, "output_index": oi, "delta": tc["custom"]}))
            ev.append(("response.custom_tool_call_input.done", {"type": "response.custom_tool_call_input.done",
                       "item_id": iid, "output_index": oi, "input": tc["custom"]}))
        else:
            iid = "fc_" + uuid.uuid4().hex[:20]
            args = json.dumps(tc.get("arguments", {}))
            item = {"id": iid, "type": "function_call", "status": "completed", "call_id": cid,
                    "name": tc["name"], "arguments": args}
            if "namespace" in tc:  # a tool of a namespace tool (Codex: an MCP server's, "mcp__<server>")
                item["namespace"] = tc["namespace"]
            ev.append(("response.output_item.added", {"type": "response.output_item.added", "output_index": oi,
                       "item": dict(item, arguments="", status="in_progress")}))
            ev.append(("response.function_call_arguments.delta", {
                "type": "response.function_call_arguments.delta", "item_id": iid, "output_index": oi,
                "delta": args}))
            ev.append(("response.function_call_arguments.done", {
                "type": "response.function_call_arguments.done", "item_id": iid, "output_index": oi,
                "arguments": args}))
        ev.append(("response.output_item.done", {"type": "response.output_item.done", "output_index": oi,
                   "item": item}))
        items.append(item)
        oi += 1
    usage = {"input_tokens": inp, "input_tokens_details": {"cached_tokens": cr}, "output_tokens": out,
             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": inp + out}
    whole = dict(base, status="completed", output=items, usage=usage)
    ev.append(("response.completed", {"type": "response.completed", "response": whole}))
    for k, (_, d) in enumerate(ev):
        d["sequence_number"] = k
    return ev, whole


def error_body(provider, status):
    msg = {429: "rate limited by the simulator", 500: "internal error in the simulator"}.get(
        status, "simulated error %d" % status)
    if provider == "anthropic":
        kind = {429: "rate_limit_error", 500: "api_error", 529: "overloaded_error",
                400: "invalid_request_error", 401: "authentication_error"}.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": msg}}
    return {"error": {"message": msg, "type": "rate_limit_exceeded" if status == 429 else "server_error",
                      "param": None, "code": None}}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY: an answer's small writes (head, one SSE event each) go out
    # at once, not after the client's delayed ACK of the TLS session tickets
    # (about 40 ms before the first byte otherwise; bench/gateway_bench.c)
    disable_nagle_algorithm = True
    sim = None

    def log_message(self, *a):
        pass

    def _plain(self, status, body=b""):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self._plain(200 if self.path.split("?")[0] == "/" else 404)

    def do_GET(self):
        self._plain(200 if self.path.split("?")[0] == "/" else 404)

    def do_POST(self):
        path = self.path.split("?")[0]
        provider = {"/v1/messages": "anthropic", "/v1/responses": "openai"}.get(path)
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if provider is None:
            self._plain(404, b'{"error":"not found"}')
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        rec = {"ts": time.time(), "provider": provider, "method": self.command, "path": self.path,
               "headers": {k.lower(): v for k, v in self.headers.items()},
               "body": body if body is not None else raw.decode("utf-8", "replace"),
               "tls": isinstance(self.connection, ssl.SSLSocket)}
        if not isinstance(body, dict):
            rec["status"] = 400
            self.sim.log(rec)
            self._send_json(400, error_body(provider, 400))
            return
        i, t = self.sim.turn(provider)
        rec["turn"] = i
        model = body.get("model") or ("claude-opus-4-8" if provider == "anthropic" else "gpt-5.5")
        time.sleep(t.get("delay_ms", 0) / 1000)
        if t.get("status"):
            rec["status"] = t["status"]
            self.sim.log(rec)
            self._send_json(t["status"], error_body(provider, t["status"]), retry_after=t.get("retry_after"))
            return
        ev, whole = (anthropic_events if provider == "anthropic" else openai_events)(model, t)
        rec["status"] = 200
        rec["stream"] = bool(body.get("stream"))
        if not body.get("stream"):
            rec["first_byte_ts"] = rec["last_byte_ts"] = time.time()
            self.sim.log(rec)
            self._send_json(200, whole)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        cut = t.get("cut_after")
        # every request is logged before its answer's last bytes go out, so a
        # client that has the whole answer finds the request in the log
        logged = False
        try:
            for k, (name, data) in enumerate(ev):
                if cut is not None and k >= cut:
                    rec["cut"] = True
                    self.sim.log(rec)
                    logged = True
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    break
                if k:
                    time.sleep(t.get("chunk_delay_ms", 0) / 1000)
                chunk = ("event: %s\ndata: %s\n\n" % (name, json.dumps(data))).encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
                now = time.time()
                rec.setdefault("first_byte_ts", now)
                rec["last_byte_ts"] = now
            else:
                self.sim.log(rec)
                logged = True
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
        except OSError as e:
            rec["client_error"] = str(e)
        if not logged:
            self.sim.log(rec)

    def _send_json(self, status, obj, retry_after=None):
        b = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b)))
        if retry_after is not None:
            self.send_header("Retry-After", str(retry_after))
        self.end_headers()
        self.wfile.write(b)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(args):
    with open(args.script) as f:
        script = json.load(f)
    Handler.sim = Sim(script, args.log)
    ports = {}
    servers = []
    if args.https_port is not None:
        s = Server((args.host, args.https_port), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        s.socket = ctx.wrap_socket(s.socket, server_side=True)
        ports["https"] = s.server_address[1]
        servers.append(s)
    if args.http_port is not None:
        s = Server((args.host, args.http_port), Handler)
        ports["http"] = s.server_address[1]
        servers.append(s)
    for s in servers[1:]:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    if args.ready:
        tmp = args.ready + ".tmp"
        with open(tmp, "w") as f:
            json.dump(ports, f)
        os.rename(tmp, args.ready)
    print(json.dumps(ports), flush=True)
    servers[0].serve_forever()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen-ca")
    g.add_argument("dir", nargs="+")
    s = sub.add_parser("serve")
    s.add_argument("--script", required=True)
    s.add_argument("--log", required=True)
    s.add_argument("--https-port", type=int)
    s.add_argument("--cert")
    s.add_argument("--key")
    s.add_argument("--http-port", type=int)
    s.add_argument("--ready")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (deploy/local/demo.sh: one of the stack's test network's)")
    a = ap.parse_args()
    if a.cmd == "gen-ca":
        for d in a.dir:
            gen_ca(d)
    else:
        if a.https_port is None and a.http_port is None:
            ap.error("serve needs --https-port and/or --http-port")
        serve(a)


if __name__ == "__main__":
    sys.exit(main())
