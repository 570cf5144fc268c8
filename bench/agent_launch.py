#!/usr/bin/env python3
"""Launch -> first model call reaching the gateway, p50/p99, per agent CLI
(issue 11 §5; bench/README.md "agent_launch"). Against a running stack with
the node-agents image and the agent adapters (claude-code, codex).

For each CLI: a `models` catalog item (approved) whose upstream is the model
simulator (tests/modelsim, HTTPS with a certificate of the stack's test CA,
served in the stack's test upstream network like the e2e tests'), the team's
key for it, and a sandbox running the real CLI in node-agents with that
model. Each of N runs is timed from just before POST /v1/runs to the moment
the gateway received the CLI's first model request: the first model_call
event's ts (when the call ended) minus its latency_ms; the simulator's own
receive time of its first request is printed beside it as a cross-check,
and launch -> `running` for reference. Runs are sequential; every figure is
printed, none is judged.

    set -a; . $PADDOCK_STATE_DIR/endpoints.env; set +a
    PADDOCK_STATE_DIR=.paddock bench/agent_launch.py [runs per CLI, 10]

BENCH_CLIS=claude-code,codex picks the CLIs; BENCH_SPEC_EXTRA='{...}' is
merged into each sandbox spec (e.g. a prompt the adapters need)."""

import datetime
import json
import os
import pathlib
import secrets
import sys
import tempfile
import time
import uuid

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from benchlib import login, pct  # noqa: E402

# the e2e helpers that serve the simulator in the test upstream network
from test_e2e_models import ModelSim  # noqa: E402

CLIS = {
    "claude-code": {"provider": "anthropic", "model": "claude-opus-4-8"},
    "codex": {"provider": "openai", "model": "gpt-5.5"},
}
PRICES = {"input": 3.0, "output": 15.0, "cache_read": 0.3, "cache_write": 3.75}
TERMINAL = {"succeeded", "failed", "cancelled", "timed_out", "limit_exceeded", "rejected"}


def ts(v):
    return datetime.datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()


def ok(r, *codes):
    assert r.status_code in codes, f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text[:500]}"
    return r.json() if r.content else None


def events(s, api, rid, after=0):
    return ok(s.get(f"{api}/v1/runs/{rid}/events", params={"after": after, "limit": 1000}), 200)["items"]


def setup_cli(s, api, team, cli, sim):
    c = CLIS[cli]
    key_name = "BENCH_MODEL_KEY_" + uuid.uuid4().hex[:8].upper()
    ok(s.put(f"{api}/v1/teams/{team}/secrets/{key_name}", json={"value": "sk-bench-" + secrets.token_hex(12)}),
       200, 201, 204)
    body = {"description": "bench", "provider": c["provider"], "upstream": sim.upstream, "key_secret": key_name,
            "models": [{"id": c["model"], "usd_per_mtok": PRICES}]}
    item = ok(s.post(f"{api}/v1/catalog/models", json={"name": "bench-" + uuid.uuid4().hex[:8], "body": body}), 201)
    ok(s.post(f"{api}/v1/catalog/models/{item['id']}/approve", json={"content_sha256": item["content_sha256"]}), 200)
    spec = {"agent": {"type": cli, "model": c["model"]}, "models": [item["id"]], "image": "node-agents",
            "limits": {"timeout_s": 300}}
    spec.update(json.loads(os.environ.get("BENCH_SPEC_EXTRA", "{}")))
    sb = ok(s.post(f"{api}/v1/sandboxes", json={"name": f"bench-{cli}-" + uuid.uuid4().hex[:6], "team": team,
                                                  "spec": spec}), 201)
    ok(s.post(f"{api}/v1/sandboxes/{sb['id']}/versions"), 201)
    return sb["id"]


def wait_image(s, api, image="node-agents", timeout=60):
    """A freshly started stack's node reports its images with its next heartbeat."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        nodes = ok(s.get(f"{api}/v1/nodes"), 200)["items"]
        if any(n.get("state") == "ready" and image in n.get("images", []) for n in nodes):
            return
        time.sleep(0.5)
    sys.exit(f"agent_launch: no ready node reports the {image} image (paddock-runner-agent image build {image})")


def one_run(s, api, sandbox, sim):
    before = len(sim.requests())
    t0 = time.time()
    rid = ok(s.post(f"{api}/v1/runs", json={"sandbox": sandbox}), 202)["id"]
    first_call = running = None
    seen, deadline = 0, time.monotonic() + 300
    status = None
    while time.monotonic() < deadline and status not in TERMINAL:
        for e in events(s, api, rid, seen):
            seen = e["seq"]
            if e["kind"] == "status":
                status = e["data"].get("status")
                if status == "running" and running is None:
                    running = ts(e["ts"]) - t0
            if e["kind"] == "model_call" and first_call is None:
                first_call = ts(e["ts"]) - e["data"].get("latency_ms", 0) / 1000 - t0
        time.sleep(0.05)
    reqs = sim.requests()[before:]
    sim_first = min(r["ts"] for r in reqs) - t0 if reqs else None
    return rid, status, running, first_call, sim_first


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    clis = [c for c in os.environ.get("BENCH_CLIS", "claude-code,codex").split(",") if c]
    api, s, _, team = login()
    print(f"launch -> first model call reaching the gateway, {n} runs per CLI; loadavg "
          f"{open('/proc/loadavg').read().split()[:3]}")
    wait_image(s, api)
    results = {}
    with tempfile.TemporaryDirectory(prefix="paddock-bench-agents-") as tmp:
        for i, cli in enumerate(clis):
            d = pathlib.Path(tmp) / cli
            d.mkdir()
            # scripted turns: a short answer each (the CLI's first request is what is timed)
            turn = {"text": "done.", "usage": {"input_tokens": 100, "output_tokens": 5}}
            sim = ModelSim(d, i % 3, {CLIS[cli]["provider"]: [turn] * (4 * n)})
            try:
                sandbox = setup_cli(s, api, team, cli, sim)
                rows = []
                for k in range(n):
                    rid, status, running, first, sim_first = one_run(s, api, sandbox, sim)
                    f3 = lambda v: "-" if v is None else f"{v:.3f} s"  # noqa: E731
                    print(f"  {cli} run {k + 1}/{n} {rid}: {status}, running {f3(running)}, first call {f3(first)}, "
                          f"simulator {f3(sim_first)}", flush=True)
                    if first is not None:
                        rows.append((running or 0.0, first, sim_first if sim_first is not None else first))
                results[cli] = rows
            finally:
                sim.close()
    print()
    print(f"{'seconds':<34}" + "".join(f"{c:>24}" for c in clis))
    for label, idx in (("launch -> running", 0), ("launch -> first call (gateway)", 1),
                       ("launch -> first call (simulator)", 2)):
        for p in (50, 99):
            cells = []
            for c in clis:
                vals = [r[idx] for r in results.get(c, [])]
                cells.append(f"{pct(vals, p):24.3f}" if vals else f"{'-':>24}")
            print(f"{label + f' p{p}':<34}" + "".join(cells))
    for c in clis:
        if len(results.get(c, [])) < n:
            print(f"{c}: {n - len(results.get(c, []))} run(s) made no model call (see the lines above)")


if __name__ == "__main__":
    main()
