"""Model limits enforced mid-run (issue 11 §3, docs/CONTRACTS.md "Model
gateway"): a `command` agent in debian-python calls the model gateway at
http://127.0.0.1:3129 against the model simulator (HTTPS in the test upstream
network, the stack's test CA); its second call's usage takes the run over
limits.max_tokens (or max_cost_usd), so that call is cut (never whole for the
agent, which is stopped at once: the cut's error event itself is checked by
tests/unit/runner/test_gateway.c), no further call reaches the simulator, the
run is stopped although the agent would go on sleeping, and it
ends limit_exceeded: a `limit` event and the terminal status data carry
{limit, value, used}, the model_call of the cut call says limit_exceeded, and
the usage record (billing) shows the tokens actually used, per model too."""

import json
import secrets

import psycopg

from conftest import command_spec, wait_for, wait_terminal
from test_e2e_models import DUMMY, PRICES, PY, ModelSim, _body, _item, _secret_name, python_image  # noqa: F401

# two calls fit (300+100, then 500 in message_start: 900), the second's
# message_delta (400 out) takes the run to 1300 > 1000; a third is never served
TURNS = [
    {"text": "first answer", "usage": {"input_tokens": 300, "output_tokens": 100}},
    {"text": "second answer is long enough to be cut", "usage": {"input_tokens": 500, "output_tokens": 400},
     "chunk_delay_ms": 20},
    {"text": "never served", "usage": {"input_tokens": 1, "output_tokens": 1}},
]

# The agent: calls until refused, says what each call got, then would sleep
# past the test: only the platform ends it.
AGENT = r"""
import json, sys, time, urllib.error, urllib.request
op = urllib.request.build_opener(urllib.request.ProxyHandler({}))
for i in range(3):
    req = urllib.request.Request("http://127.0.0.1:3129/v1/messages", method="POST",
        data=json.dumps({"model": sys.argv[1], "max_tokens": 64, "stream": True,
                         "messages": [{"role": "user", "content": "hi %d" % i}]}).encode(),
        headers={"content-type": "application/json", "x-api-key": sys.argv[2],
                 "anthropic-version": "2023-06-01"})
    try:
        with op.open(req, timeout=60) as r:
            body = r.read().decode()
        print("CALL", i, r.status, "stop=%s" % ("message_stop" in body), "error=%s" % ("event: error" in body),
              flush=True)
    except urllib.error.HTTPError as e:
        print("CALL", i, e.code, "refused", e.read().decode()[:300], flush=True)
time.sleep(300)
"""


def _launch(api, runs, team_id, sim, limits):
    key_name = _secret_name()
    api.ok("PUT", f"/v1/teams/{team_id}/secrets/{key_name}", json={"value": "sk-e2e-limits-" + secrets.token_hex(8)},
           expect=(200, 201, 204))
    item = _item(api, _body(upstream=sim.upstream, key_secret=key_name))
    spec = command_spec([PY, "-c", AGENT, "claude-opus-4-8", DUMMY], timeout_s=600)
    spec["models"] = [item["id"]]
    spec["image"] = "debian-python"
    spec["limits"].update(limits)
    return runs.start(spec)


def _record(endpoints, run_id):
    with psycopg.connect(endpoints.need("PADDOCK_PG_DSN")) as conn:
        u = conn.execute("SELECT tokens_in, tokens_out, cost_usd FROM billing.run_usage WHERE run_id = %s",
                         (run_id,)).fetchone()
        m = conn.execute("SELECT provider, model, calls, tokens_in, tokens_out, cost_usd FROM billing.run_model_usage"
                         " WHERE run_id = %s", (run_id,)).fetchall()
    return (u, m) if u else None


def _check(endpoints, api, run_id, res, sim, limit, value, used):
    out = res.output()
    assert res.terminal == "limit_exceeded", (res.statuses, out[-2000:])
    # the agent: the first call whole; the second never whole (cut with the provider's error event, when the
    # agent lived to say so: the run is stopped as soon as the limit is crossed); a third never served
    assert "CALL 0 200 stop=True error=False" in out, out[-2000:]
    assert "CALL 1 200 stop=True" not in out, out[-2000:]
    assert "CALL 1" not in out or "CALL 1 200 stop=False error=True" in out, out[-2000:]
    assert "CALL 2 200" not in out, out[-2000:]
    # the simulator served two calls only (it logs a cut one once its writes fail)
    wait_for("the simulator's log of the cut call", lambda: len(sim.requests()) >= 2, timeout=30)
    assert len(sim.requests()) == 2, sim.requests()
    calls = sorted((e["data"] for e in res.of_kind("model_call")), key=lambda c: -c["input_tokens"])
    assert 2 <= len(calls) <= 3, calls
    assert calls[0]["status"] == "limit_exceeded" and calls[0]["limit"] == limit, calls
    assert (calls[0]["input_tokens"], calls[0]["output_tokens"]) == (500, 400), calls
    assert calls[1]["status"] == 200 and calls[1]["input_tokens"] == 300, calls
    assert all(c["status"] == "limit_exceeded" for c in calls[2:]), calls
    # the limit event and the terminal status data: the same figures
    lim = [e["data"] for e in res.of_kind("limit")]
    assert len(lim) == 1, lim
    term = [e["data"] for e in res.of_kind("status") if e["data"].get("status") == "limit_exceeded"][-1]
    for d in (lim[0], term):
        assert d["limit"] == limit and abs(d["value"] - value) < 1e-9 and abs(d["used"] - used) < 1e-9, d
    assert limit in term["reason"], term
    # the usage record: the tokens actually used (the cut call's included), per model too
    got = wait_for("billing to record the run", lambda: _record(endpoints, run_id), timeout=60)
    (tin, tout, cost), models = got
    want_cost = (800 * PRICES["input"] + 500 * PRICES["output"]) / 1e6
    assert (tin, tout) == (800, 500) and abs(cost - want_cost) < 1e-9, got
    assert len(models) == 1 and models[0][:2] == ("anthropic", "claude-opus-4-8"), models
    assert models[0][2] == len(calls) and models[0][3:5] == (800, 500), models
    # the api shows the end once the run's history is whole
    wait_for("the run limit_exceeded in the api",
             lambda: api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))["status"] == "limit_exceeded", timeout=60)


def test_max_tokens_ends_the_run_limit_exceeded(endpoints, api, team_id, runs, tmp_path, python_image):
    sim = ModelSim(tmp_path, 2, {"anthropic": TURNS})
    try:
        run_id = _launch(api, runs, team_id, sim, {"max_tokens": 1000})
        res = wait_terminal(endpoints, api.token, run_id, timeout=240)
        _check(endpoints, api, run_id, res, sim, "max_tokens", 1000, 1300)
    finally:
        sim.close()


def test_max_cost_usd_ends_the_run_limit_exceeded(endpoints, api, team_id, runs, tmp_path, python_image):
    # 400 tokens cost (300*3 + 100*15)/1e6 = 0.0024; 900 in + 400 out: 0.0024 + (500*3 + 400*15)/1e6 = 0.0099
    sim = ModelSim(tmp_path, 2, {"anthropic": TURNS})
    try:
        run_id = _launch(api, runs, team_id, sim, {"max_cost_usd": 0.005})
        res = wait_terminal(endpoints, api.token, run_id, timeout=240)
        used = (800 * PRICES["input"] + 500 * PRICES["output"]) / 1e6
        _check(endpoints, api, run_id, res, sim, "max_cost_usd", 0.005, used)
    finally:
        sim.close()
