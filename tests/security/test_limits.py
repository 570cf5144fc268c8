"""Limits of the definition end hostile runs with evidence: a memory bomb is
OOM-killed (limit_exceeded + a memory `limit` event), a fork bomb exhausts
pids.max and is killed (limit_exceeded + pids), filling the workspace stops
at disk_mb (limit_exceeded + disk), the wall clock ends a run timed_out (+
timeout). Every end still destroys the sandbox and leaves the node clean."""

import time

import conftest as c

MEMORY_BOMB = "a = []\nwhile True:\n    a.append(bytearray(8 << 20))\n"


def test_memory_bomb(endpoints, admin_token, runs):
    s = c.spec(["/usr/bin/python3", "/workspace/bomb.py"], timeout_s=60, memory_mb=64,
               files=[{"path": "bomb.py", "content": MEMORY_BOMB, "mode": "0644"}])
    run_id, res = c.run_to_end(endpoints, admin_token, runs, s)
    term = c.terminal_event(res)
    assert res.terminal == "limit_exceeded", term
    assert "memory" in term["data"].get("reason", ""), term
    mem = c.limit_events(res, "memory")
    assert mem and mem[0]["value"] == 64 and mem[0]["detail"], res.of_kind("limit")
    c.e2e.assert_node_clean(run_id, res)


def test_fork_bomb(endpoints, admin_token, runs):
    # forks forever: a bomb that burns out by itself just leaves a pids event
    bomb = "while :; do sleep 1000 & done"
    s = c.spec(["/bin/sh", "-c", bomb], timeout_s=90, pids=32)
    started = time.monotonic()
    run_id, res = c.run_to_end(endpoints, admin_token, runs, s)
    elapsed = time.monotonic() - started
    term = c.terminal_event(res)
    assert res.terminal == "limit_exceeded", term
    assert "pids" in term["data"].get("reason", ""), term
    pids = c.limit_events(res, "pids")
    assert pids and pids[0]["value"] == 32, res.of_kind("limit")
    # ended by the pids watch, not by the 90 s timeout
    assert elapsed < 60, f"fork bomb ran {elapsed:.0f} s"
    c.e2e.assert_node_clean(run_id, res)


def test_disk_fill(endpoints, admin_token, runs):
    fill = "dd if=/dev/zero of=/workspace/fill bs=1M count=64; echo dd=$?; exit 1"
    s = c.spec(["/bin/sh", "-c", fill], timeout_s=60, disk_mb=16, memory_mb=256)
    run_id, res = c.run_to_end(endpoints, admin_token, runs, s)
    term = c.terminal_event(res)
    assert "No space left on device" in res.output(), res.output()[:1000]
    assert res.terminal == "limit_exceeded", term
    assert "disk" in term["data"].get("reason", ""), term
    disk = c.limit_events(res, "disk")
    assert disk and disk[0]["value"] == 16, res.of_kind("limit")
    c.e2e.assert_node_clean(run_id, res)


def test_tmp_is_size_limited(endpoints, admin_token, runs):
    fill = "dd if=/dev/zero of=/tmp/fill bs=1M count=64; echo dd=$?"
    s = c.spec(["/bin/sh", "-c", fill], timeout_s=60, disk_mb=16, memory_mb=256)
    run_id, res = c.run_to_end(endpoints, admin_token, runs, s)
    assert "No space left on device" in res.output(), res.output()[:1000]
    c.e2e.assert_node_clean(run_id, res)


def test_timeout_limit_event(endpoints, admin_token, runs):
    s = c.spec(["/bin/sleep", "300"], timeout_s=2)
    run_id, res = c.run_to_end(endpoints, admin_token, runs, s, timeout=60)
    assert res.terminal == "timed_out", c.terminal_event(res)
    t = c.limit_events(res, "timeout")
    assert t and t[0]["value"] == 2, res.of_kind("limit")
    # the limit event comes before destroyed and the terminal status
    kinds = [e["kind"] for e in res.events]
    assert kinds.index("limit") < kinds.index("destroyed") < len(kinds) - 1, kinds
    c.e2e.assert_node_clean(run_id, res)
