"""Fixtures of the security suite: the e2e suite's (endpoints, api, runs,
websocket watch, node checks), loaded from tests/e2e/conftest.py so both
suites drive the stack the same way. Only loopback traffic."""

import importlib.util
import pathlib

_spec = importlib.util.spec_from_file_location(
    "paddock_e2e_conftest", pathlib.Path(__file__).resolve().parents[1] / "e2e" / "conftest.py")
e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(e2e)

# fixtures pytest must see in this conftest's namespace
endpoints = e2e.endpoints
credentials = e2e.credentials
admin_token = e2e.admin_token
api = e2e.api
me = e2e.me
team_id = e2e.team_id
tenant_id = e2e.tenant_id
runs = e2e.runs


def spec(argv, timeout_s=60, files=None, **limits):
    """A command sandbox spec with limits (memory_mb, pids, disk_mb, cpus)."""
    s = e2e.command_spec(argv, files=files, timeout_s=timeout_s)
    s["limits"].update(limits)
    return s


def run_to_end(endpoints, token, runs, spec_, timeout=120):
    run_id = runs.start(spec_)
    res = e2e.wait_terminal(endpoints, token, run_id, timeout=timeout)
    return run_id, res


def sandbox_id(api, run_id, timeout=60):
    """What the run's sandbox is named after on the node: the run id, or a
    pooled sandbox's own id (its `running` event's sandbox.id; CONTRACTS.md
    "Sandbox pool")."""
    def find():
        for e in e2e.all_events(api, run_id):
            if e["kind"] == "status" and e["data"].get("status") == "running":
                return (e["data"].get("sandbox") or {}).get("id") or run_id
        return None
    return e2e.wait_for(f"the running event of run {run_id}", find, timeout=timeout, pause=0.05)


def terminal_event(res):
    return [e for e in res.events if e.get("kind") == "status" and e["data"].get("status") == res.terminal][-1]


def limit_events(res, limit=None):
    return [e["data"] for e in res.of_kind("limit") if limit is None or e["data"].get("limit") == limit]
