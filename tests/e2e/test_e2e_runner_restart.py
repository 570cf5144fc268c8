"""A runner-agent killed while a run's events wait in its producer loses none
of them (issue 10, found by chaos.short; docs/CONTRACTS.md runner "Restart
after a crash"). The Kafka mock is frozen (SIGSTOP of every broker, as
chaos.py's kafka:freeze) while the run writes output, so its records stay
queued in librdkafka's memory; the runner-agent is SIGKILLed with them there,
the brokers resume and stack.sh up starts the agent again, which produces the
run's spool again before it ends the run "runner restarted". The history must
then hold every seq from 1 with no gap, the output written during the freeze,
and exactly one terminal status. The Kafka mock is always resumed (SIGCONT in
a finally) and the agent always started again."""

import os
import pathlib
import re
import signal
import time

import pytest

from conftest import TERMINAL, all_events, command_spec, stack_pid, stack_up, wait_for, wait_run_status

# one line every 50 ms: about 60 output events while Kafka is frozen
SCRIPT = r"""
import time
for i in range(6000):
    print("restart line %d" % i, flush=True)
    time.sleep(0.05)
"""
LINE = re.compile(r"restart line (\d+)")
FREEZE_S = 3


def lines_in(events):
    return [int(n) for e in events if e["kind"] == "output" for n in LINE.findall(e["data"].get("text", ""))]


@pytest.fixture
def agent_restored():
    """Kafka resumed and the runner-agent running again, whatever the test did."""
    yield
    kafka = stack_pid("kafka-mock")
    if kafka:
        os.kill(kafka, signal.SIGCONT)
    if stack_pid("runner-agent") is None:
        stack_up()


def test_events_queued_when_the_runner_is_killed_reach_the_history(endpoints, api, runs, agent_restored):
    run_id = runs.start(command_spec(["/usr/bin/python3", "-c", SCRIPT], timeout_s=300))
    wait_for("the run to run", lambda: api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))["status"] == "running",
             timeout=90, pause=0.3)
    before = wait_for("output in the history", lambda: lines_in(all_events(api, run_id)), timeout=60, pause=0.3)
    state = pathlib.Path(endpoints.need("PADDOCK_RUNNER_STATE_DIR"))
    files = [state / "seq" / run_id, state / "spool" / run_id]

    kafka, agent = stack_pid("kafka-mock"), stack_pid("runner-agent")
    assert kafka and agent, f"the stack's kafka-mock ({kafka}) or runner-agent ({agent}) is not running"
    os.kill(kafka, signal.SIGSTOP)
    try:
        time.sleep(FREEZE_S)  # the agent keeps capturing output it cannot deliver
        os.kill(agent, signal.SIGKILL)
        wait_for("the runner-agent to die", lambda: stack_pid("runner-agent") is None, timeout=30, pause=0.1)
    finally:
        os.kill(kafka, signal.SIGCONT)
    stack_up()

    def runner_end():
        events = all_events(api, run_id)
        ends = [e for e in events if e["kind"] == "status" and e["data"].get("reason") == "runner restarted"]
        return events if ends else None

    events = wait_for("the restarted runner's end in the history", runner_end, timeout=180, pause=0.5)
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), f"seqs not contiguous from 1: {seqs}"
    terminal = [e for e in events
                if e["kind"] == "status" and e["data"].get("status") in TERMINAL and "superseded" not in e["data"]]
    assert len(terminal) == 1, terminal
    # the run shows its end once its history is complete
    run = wait_run_status(api, run_id, timeout=60)
    assert run["status"] == "failed", run

    # the output written while Kafka was frozen is there, in order. A
    # platform verdict (the scheduler declared the node dead while it was
    # down) is stored at the highest seq stored then + 1 and takes that seq
    # from the event the node gave it (docs/CONTRACTS.md "Run event
    # records"): only then may the lines of that one event be missing.
    got = lines_in(events)
    assert got == sorted(set(got)), "output lines duplicated or out of order"
    assert max(got) >= max(before) + 10, f"no output of the freeze in the history: last line {max(got)}, " \
                                         f"{max(before)} before it"
    missing = sorted(set(range(max(got) + 1)) - set(got))
    verdicts = [e for e in events if e["kind"] == "status" and "stopped heartbeating" in e["data"].get("reason", "")]
    if missing:
        assert verdicts, f"output lines lost: {missing}"
        assert missing == list(range(missing[0], missing[-1] + 1)), f"lines of more than one event lost: {missing}"

    # the run's crash-recovery files go with its end (docs/CONTRACTS.md, runner "State dir additions")
    wait_for("seq/ and spool/ of the run removed", lambda: not any(f.exists() for f in files), timeout=30)
