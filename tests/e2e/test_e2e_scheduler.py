"""Scheduler behaviour through the public API and the real stack: per-team
concurrency limits with a queue, placement by capacity and by image (fake
nodes heartbeating on paddock.nodes), and a node that stops heartbeating (its
started run fails with the reason, nothing stays stuck).

Test teams are created directly in PostgreSQL (the API has no team creation
yet), and a team's concurrency limit is the scheduler's own override table
scheduler.team_limits. The dead node is the stack's runner-agent, frozen with
SIGSTOP (always resumed with SIGCONT in a finally)."""

import datetime
import os
import signal
import time
import uuid

import psycopg
import pytest

from conftest import (TERMINAL, all_events, assert_node_clean, command_spec, enroll_test_node, node_heartbeat, node_leftovers,
                      state_dir, unique_name, wait_run_status)


def ts(value):
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def pg(endpoints):
    with psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def make_team(pg, me, tenant_id, team_id):
    """Creates a team of the admin's tenant, the admin a member with the roles
    it has in its first team; returns the team id."""
    created = []
    user_id = me["user"]["id"]

    def make(max_concurrent=None):
        tid = str(uuid.uuid4())
        pg.execute("INSERT INTO api.teams (id, tenant_id, name) VALUES (%s, %s, %s)",
                   (tid, tenant_id, f"sched-{tid[:8]}"))
        pg.execute("INSERT INTO api.team_members (team_id, user_id, tenant_id, roles)"
                   " SELECT %s, user_id, tenant_id, roles FROM api.team_members"
                   " WHERE team_id = %s AND user_id = %s", (tid, team_id, user_id))
        if max_concurrent is not None:
            pg.execute("INSERT INTO scheduler.team_limits (team_id, max_concurrent) VALUES (%s, %s)",
                       (tid, max_concurrent))
        created.append(tid)
        return tid

    yield make
    for tid in created:
        pg.execute("DELETE FROM scheduler.team_limits WHERE team_id = %s", (tid,))


def launch(api, team, spec):
    sb = api.ok("POST", "/v1/sandboxes", json={"name": f"sched-{uuid.uuid4().hex[:10]}", "team": team,
                                               "spec": spec}, expect=(200, 201))
    v = api.ok("POST", f"/v1/sandboxes/{sb['id']}/versions", expect=(200, 201))
    run = api.ok("POST", "/v1/runs", json={"sandbox": sb["id"], "version": v["version"], "team": team},
                 expect=(200, 201, 202), headers={"Idempotency-Key": str(uuid.uuid4())})
    return run["id"]


def wait_status(api, run_id, want, timeout):
    deadline = time.monotonic() + timeout
    while True:
        run = api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))
        if run["status"] in want or time.monotonic() > deadline:
            return run
        time.sleep(0.3)


def sched_run(pg, run_id):
    return pg.execute("SELECT state, node_id, attempts, last_seq, reason FROM scheduler.runs"
                      " WHERE run_id = %s", (run_id,)).fetchone()


def wait_sched_finished(pg, run_id, timeout=30):
    """The scheduler learns of the end from Kafka: it may trail the api."""
    deadline = time.monotonic() + timeout
    while True:
        state = sched_run(pg, run_id)
        if (state and state[0] == "finished") or time.monotonic() > deadline:
            return state
        time.sleep(0.3)


@pytest.fixture
def idle_node(pg):
    """Waits until no live node runs anything (a sandbox of an earlier test may
    still be ending): the timing assertions need the whole node."""
    deadline = time.monotonic() + 90
    while True:
        busy = pg.execute("SELECT (SELECT count(*) FROM scheduler.runs WHERE state = 'assigned')"
                          " + (SELECT coalesce(sum(used_slots), 0) FROM scheduler.nodes"
                          "    WHERE dead_since IS NULL AND last_seen > now() - interval '10 s')").fetchone()[0]
        if busy == 0:
            return
        assert time.monotonic() < deadline, f"the node stayed busy ({busy} runs)"
        time.sleep(0.5)


def test_team_limit_queues_runs_without_holding_back_other_teams(api, make_team, idle_node):
    limited = make_team(max_concurrent=1)
    other = make_team()
    spec = command_spec(["/bin/sh", "-c", "sleep 3; echo done"], timeout_s=60)
    first = launch(api, limited, spec)
    second = launch(api, limited, spec)
    elsewhere = launch(api, other, spec)

    # While one run of the limited team holds its only slot, the other stays
    # queued, and the other team's run, requested after both, is placed anyway.
    # (Which of the two goes first is not fixed: requests travel on different
    # Kafka partitions, so the scheduler may see the second one first.)
    r = wait_status(api, elsewhere, {"running"} | TERMINAL, timeout=60)
    assert r["status"] in ("running", "succeeded"), r
    limited_now = sorted(api.ok("GET", f"/v1/runs/{rid}", expect=(200,))["status"] for rid in (first, second))
    assert limited_now[0] == "queued" and limited_now[1] != "queued", limited_now

    runs = {rid: wait_run_status(api, rid, timeout=90) for rid in (first, second, elsewhere)}
    for rid, run in runs.items():
        assert run["status"] == "succeeded", f"{rid}: {run}"
    a, b = sorted((runs[first], runs[second]), key=lambda run: ts(run["started_at"]))
    c = runs[elsewhere]
    # one after the other within the team ...
    assert ts(b["started_at"]) >= ts(a["ended_at"]), (a, b)
    # ... and the other team's run was not held back behind the queued one
    assert ts(c["started_at"]) < ts(a["ended_at"]), (a, c)


def test_run_larger_than_any_node_stays_queued_while_small_runs_are_placed(api, pg, make_team, idle_node):
    caps = pg.execute("SELECT max(capacity_memory_mb) FROM scheduler.nodes WHERE dead_since IS NULL").fetchone()[0]
    too_big = 262144  # the largest memory_mb a spec may ask for
    if caps is None or caps >= too_big:
        pytest.skip(f"a node offers {caps} MiB: no spec can ask for more")
    team = make_team()
    big_spec = command_spec(["/bin/true"], timeout_s=60)
    big_spec["limits"]["memory_mb"] = too_big
    r = api.post("/v1/sandboxes", json={"name": f"sched-{uuid.uuid4().hex[:10]}", "team": team,
                                        "spec": big_spec})
    if r.status_code == 400 and r.json().get("code") == "unsupported":
        pytest.skip(f"the api does not accept spec.limits.memory_mb yet: {r.text[:200]}")
    big = launch(api, team, big_spec)
    # a run of the same team behind it is placed: a run that fits no node blocks nobody
    small = launch(api, team, command_spec(["/bin/sh", "-c", "echo small"], timeout_s=60))
    assert wait_run_status(api, small, timeout=60)["status"] == "succeeded"
    time.sleep(2)
    assert api.ok("GET", f"/v1/runs/{big}", expect=(200,))["status"] == "queued"
    state = sched_run(pg, big)
    assert state is not None and state[0] == "pending", state

    # Cancelling it while it waits: the scheduler drops it (it would otherwise
    # fail with "no capacity" after PADDOCK_PENDING_TIMEOUT_S).
    r = api.post(f"/v1/runs/{big}/cancel")
    if r.status_code in (404, 405):  # the run exists: only a missing route answers this
        pytest.skip(f"the api has no run cancel yet: {r.status_code} {r.text[:200]}")
    assert r.status_code == 202, r.text
    assert wait_run_status(api, big, timeout=30)["status"] == "cancelled"
    deadline = time.monotonic() + 30
    while sched_run(pg, big)[0] != "finished":
        assert time.monotonic() < deadline, f"the scheduler kept the cancelled run: {sched_run(pg, big)}"
        time.sleep(0.3)


def runner_pid():
    p = state_dir() / "pids" / "runner-agent.pid"
    try:
        return int(p.read_text().strip())
    except (OSError, ValueError):
        pytest.fail(f"no runner-agent pid in {p}: is the local stack up?", pytrace=False)


def test_dead_node_fails_started_run_and_nothing_stays_stuck(api, pg, team_id, idle_node):
    run_id = launch(api, team_id, command_spec(["/bin/sh", "-c", "echo started; exec sleep 30"], timeout_s=120))
    r = wait_status(api, run_id, {"running"} | TERMINAL, timeout=60)
    assert r["status"] == "running", r
    node = r["node"]
    # the scheduler must have seen the run start before the node goes silent
    deadline = time.monotonic() + 10
    while (sched_run(pg, run_id) or [None, None, None, 0])[3] == 0 and time.monotonic() < deadline:
        time.sleep(0.2)

    pid = runner_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        stopped = time.monotonic()
        r = wait_status(api, run_id, TERMINAL, timeout=30)
        declared_after = time.monotonic() - stopped
        assert r["status"] == "failed", r
        assert r["reason"] == f"node {node} stopped heartbeating", r
    finally:
        os.kill(pid, signal.SIGCONT)
    print(f"run failed {declared_after:.1f} s after the node stopped heartbeating")

    state = wait_sched_finished(pg, run_id)
    assert state[0] == "finished" and state[4] == r["reason"], state
    # history is written by evidence from Kafka: it may trail the status
    deadline = time.monotonic() + 30
    while True:
        events = all_events(api, run_id)
        verdict = [e for e in events if e["kind"] == "status" and e["data"].get("status") == "failed"]
        if verdict or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert verdict and verdict[0]["actor"] == "platform", events[-5:]
    assert verdict[0]["data"]["reason"] == r["reason"], verdict
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), seqs

    # The node comes back: it learns the run is not its own any more (the
    # scheduler sent it a cancel) and cleans up; the run stays failed.
    deadline = time.monotonic() + 60
    while node_leftovers(run_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert_node_clean(run_id)
    assert api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))["status"] == "failed"

    # and it takes work again
    after = launch(api, team_id, command_spec(["/bin/sh", "-c", "echo back"], timeout_s=60))
    assert wait_run_status(api, after, timeout=60)["status"] == "succeeded"
    assert api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))["status"] == "failed"


# ---------------------------------------------------------------- a node that never runs anything

def test_run_not_started_on_a_dead_node_is_placed_again(api, pg, endpoints, make_team, idle_node):
    """A node that heartbeats but never starts anything (it has the most room,
    so it gets the run) goes silent: the run, never started, is placed again
    on the real node and succeeds."""
    from confluent_kafka import Producer
    bootstrap = endpoints.need("PADDOCK_KAFKA_BOOTSTRAP")
    for hp in bootstrap.split(","):
        assert hp.rsplit(":", 1)[0] in ("127.0.0.1", "localhost", "[::1]"), bootstrap
    ghost = f"ghost-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": bootstrap})
    signer = enroll_test_node(endpoints, ghost)  # the test plays an enrolled node

    def beat():
        value = node_heartbeat(ghost, 500, producer="e2e/ghost")
        producer.produce("paddock.nodes", key=ghost, value=value, headers=signer.headers("paddock.nodes", value))
        producer.flush(10)

    beat()
    deadline = time.monotonic() + 20
    while not pg.execute("SELECT 1 FROM scheduler.nodes WHERE node_id = %s", (ghost,)).fetchone():
        assert time.monotonic() < deadline, "the scheduler never recorded the ghost node"
        beat()
        time.sleep(0.3)

    run_id = launch(api, make_team(), command_spec(["/bin/sh", "-c", "echo placed again"], timeout_s=60))
    deadline = time.monotonic() + 20
    while (sched_run(pg, run_id) or [None, None])[1] != ghost:
        assert time.monotonic() < deadline, f"run never assigned to the ghost node: {sched_run(pg, run_id)}"
        beat()
        time.sleep(0.3)
    # the ghost goes silent: after the dead-after interval the run moves
    run = wait_run_status(api, run_id, timeout=60)
    assert run["status"] == "succeeded", run
    state = wait_sched_finished(pg, run_id)
    assert state[0] == "finished" and state[1] != ghost and state[2] == 2, state
    assert pg.execute("SELECT dead_since IS NOT NULL FROM scheduler.nodes WHERE node_id = %s",
                      (ghost,)).fetchone()[0]
    # a dead node with no runs left is only history: keep later runs of the suite tidy
    pg.execute("DELETE FROM scheduler.nodes WHERE node_id = %s AND dead_since IS NOT NULL", (ghost,))


# ---------------------------------------------------------------- placement by image

class Beater:
    """Heartbeats of fake nodes on paddock.nodes every 300 ms from a thread,
    each node's heartbeat built by a function of the moment (so a test can
    change what a node reports); stop() ends them, and the nodes then go
    silent like any node that dies."""

    def __init__(self, endpoints, nodes):
        import threading
        from confluent_kafka import Producer
        bootstrap = endpoints.need("PADDOCK_KAFKA_BOOTSTRAP")
        for hp in bootstrap.split(","):
            assert hp.rsplit(":", 1)[0] in ("127.0.0.1", "localhost", "[::1]"), bootstrap
        self.producer = Producer({"bootstrap.servers": bootstrap})
        self.nodes = nodes  # node id -> () -> heartbeat bytes
        # the test plays enrolled nodes
        self.signers = {node_id: enroll_test_node(endpoints, node_id) for node_id in nodes}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stopping.is_set():
            for node_id, make in list(self.nodes.items()):
                value = make()
                self.producer.produce("paddock.nodes", key=node_id, value=value,
                                      headers=self.signers[node_id].headers("paddock.nodes", value))
            self.producer.flush(5)
            self.stopping.wait(0.3)

    def stop(self):
        self.stopping.set()
        self.thread.join(10)
        self.producer.flush(10)


def api_node(api, node_id):
    return {n["id"]: n for n in api.ok("GET", "/v1/nodes", expect=(200,))["items"]}.get(node_id)


def wait_assigned(api, run_id, timeout=20):
    """The node the api learnt from paddock.runs.assigned (GET /v1/runs/{id})."""
    deadline = time.monotonic() + timeout
    while True:
        run = api.ok("GET", f"/v1/runs/{run_id}", expect=(200,))
        if run.get("node") or time.monotonic() > deadline:
            return run
        time.sleep(0.2)


def test_run_of_an_image_goes_only_to_a_node_that_has_it(api, pg, endpoints, make_team, idle_node):
    """Two fake nodes: `lean` has the image (and the least headroom of all),
    `roomy` has the most headroom but not the image; the stack's own node does
    not have it either. A run without image goes to `roomy` (so the ranking
    alone would send any run there); a run of the image goes to `lean`. A run of
    an image that `lean` lists while it has no room for it waits rather than
    going to a node without the image, and once no live node lists that image
    any more, the pending timeout fails it with a reason naming the image."""
    team = make_team()
    image, missing = unique_name("place-img"), unique_name("place-gone")
    for name in (image, missing):
        item = api.ok("POST", "/v1/catalog/images", json={"name": name, "body": {}}, expect=(201,))
        api.ok("POST", f"/v1/catalog/images/{item['id']}/approve", json={"content_sha256": item["content_sha256"]},
               expect=(200,))
    real = [n for n in api.ok("GET", "/v1/nodes", expect=(200,))["items"] if n["state"] == "ready"]
    assert real and not any(image in n["images"] or missing in n["images"] for n in real), real

    lean, roomy = f"lean-{uuid.uuid4().hex[:8]}", f"roomy-{uuid.uuid4().hex[:8]}"
    lean_images = [image, missing]
    beater = Beater(endpoints, {
        lean: lambda: node_heartbeat(lean, 500, slots=1, cpus=1.0, memory_mb=2048, images=list(lean_images),
                                     producer="e2e/ghost"),
        roomy: lambda: node_heartbeat(roomy, 500, images=["other-image"], producer="e2e/ghost"),
    })
    launched = []
    try:
        deadline = time.monotonic() + 30
        while not all((api_node(api, n) or {}).get("state") == "ready" for n in (lean, roomy)):
            assert time.monotonic() < deadline, "the fake nodes never showed as ready"
            time.sleep(0.3)

        # no image: the most headroom wins, which is `roomy`
        plain = launch(api, team, command_spec(["/bin/true"], timeout_s=60))
        launched.append(plain)
        assert wait_assigned(api, plain)["node"] == roomy, sched_run(pg, plain)

        # the image: only `lean` has it, though every other node has more room
        run_id = launch(api, team, dict(command_spec(["/bin/true"], timeout_s=60), image=image))
        launched.append(run_id)
        run = wait_assigned(api, run_id)
        assert run["node"] == lean, (run, sched_run(pg, run_id))
        assert sched_run(pg, run_id)[:3] == ("assigned", lean, 1)

        # `lean`'s one slot is taken now: a run of `missing` (which `lean`
        # lists, so the launch is accepted) waits instead of going elsewhere
        waiting = launch(api, team, dict(command_spec(["/bin/true"], timeout_s=60), image=missing))
        launched.append(waiting)
        deadline = time.monotonic() + 10
        while sched_run(pg, waiting) is None:
            assert time.monotonic() < deadline, "the scheduler never stored the request"
            time.sleep(0.2)
        time.sleep(2)  # several placement passes
        run = api.ok("GET", f"/v1/runs/{waiting}", expect=(200,))
        assert run["status"] == "queued" and run["node"] is None, run
        assert sched_run(pg, waiting)[:3] == ("pending", None, 0)

        # `lean` stops listing it: no live node has it. The pending timeout
        # (PADDOCK_PENDING_TIMEOUT_S, an hour in the local stack) is brought
        # forward by backdating the wait it counts from.
        lean_images.remove(missing)
        deadline = time.monotonic() + 20
        while missing in api_node(api, lean)["images"]:
            assert time.monotonic() < deadline, "the scheduler never took the new heartbeat"
            time.sleep(0.3)
        pg.execute("UPDATE scheduler.runs SET pending_since = pending_since - interval '366 days'"
                   " WHERE run_id = %s AND state = 'pending'", (waiting,))
        run = wait_status(api, waiting, TERMINAL, timeout=20)
        assert run["status"] == "failed" and run["node"] is None, run
        assert run["reason"].startswith(f'no live node has image "{missing}": not placed within '), run
        state = wait_sched_finished(pg, waiting)
        assert state[0] == "finished" and state[1] is None and state[2] == 0 and state[4] == run["reason"], state
    finally:
        beater.stop()
        # The fake nodes die (silent for 6 s): their runs, never started, go
        # back to pending; cancelled there, the scheduler ends them at once.
        deadline = time.monotonic() + 30
        while pg.execute("SELECT count(*) FROM scheduler.nodes WHERE node_id IN (%s, %s) AND dead_since IS NULL",
                         (lean, roomy)).fetchone()[0] and time.monotonic() < deadline:
            time.sleep(0.3)
        for rid in launched:
            api.post(f"/v1/runs/{rid}/cancel", json={})
        pg.execute("DELETE FROM scheduler.nodes WHERE node_id IN (%s, %s) AND dead_since IS NOT NULL",
                   (lean, roomy))


def test_heartbeats_are_not_held_behind_a_stuck_run_event(pg, endpoints, tenant_id, team_id):
    """Liveness never waits behind data (docs/CONTRACTS.md, consumer groups):
    while the scheduler's run-status consumer is stuck on one event (its
    UPDATE waits on a row lock this test holds), a node's heartbeats still
    arrive; the stuck event is applied, not lost, once the lock goes."""
    from conftest import pb_field, pb_varint, run_event_batch
    node_id = f"e2e-hb-{uuid.uuid4().hex[:8]}"
    signer = enroll_test_node(endpoints, node_id)

    def last_seen():
        row = pg.execute("SELECT last_seen FROM scheduler.nodes WHERE node_id = %s", (node_id,)).fetchone()
        return row[0] if row else None

    def beat():
        signer.produce(endpoints, "paddock.nodes", node_id, node_heartbeat(node_id, slots=1, cpus=1.0,
                                                                           memory_mb=512))

    beat()
    deadline = time.monotonic() + 30
    while last_seen() is None:
        assert time.monotonic() < deadline, "the node's first heartbeat was never recorded"
        time.sleep(0.3)

    # a finished run of that node, so nothing places or fails it
    run_id = str(uuid.uuid4())
    pg.execute("INSERT INTO scheduler.runs (run_id, tenant_id, team_id, state, node_id, finished_at)"
               " VALUES (%s, %s, %s, 'finished', %s, now())", (run_id, tenant_id, team_id, node_id))
    with psycopg.connect(endpoints.need("PADDOCK_PG_DSN")) as locker:
        locker.execute("SELECT 1 FROM scheduler.runs WHERE run_id = %s FOR UPDATE", (run_id,))
        env = (pb_field(1, 2, tenant_id.encode()) + pb_field(2, 2, run_id.encode()) + pb_field(3, 0, pb_varint(1))
               + pb_field(4, 0, pb_varint(int(time.time() * 1e6))) + pb_field(6, 0, pb_varint(1)))
        event = (pb_field(1, 2, env) + pb_field(2, 2, b"status") + pb_field(3, 2, b"platform")
                 + pb_field(4, 2, b'{"status":"provisioning"}') + pb_field(5, 2, team_id.encode())
                 + pb_field(6, 2, b"provisioning"))
        signer.produce(endpoints, "paddock.runs.status", run_id, event)
        deadline = time.monotonic() + 60
        while not pg.execute("SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                             (locker.info.backend_pid,)).fetchone()[0]:
            assert time.monotonic() < deadline, "the scheduler never reached the locked run's event"
            time.sleep(0.3)

        before = last_seen()
        deadline = time.monotonic() + 20
        while last_seen() <= before:
            assert time.monotonic() < deadline, "a heartbeat waited behind the stuck run event"
            beat()
            time.sleep(1)
        # still stuck: the heartbeat went around it, not after it
        assert sched_run(pg, run_id)[3] == 0
        locker.rollback()

    deadline = time.monotonic() + 30
    while sched_run(pg, run_id)[3] != 1:
        assert time.monotonic() < deadline, "the stuck event was not applied after the lock went"
        time.sleep(0.3)


def test_no_node_is_declared_dead_while_heartbeats_wait_unread(api, pg, endpoints):
    """A node is declared dead only by missing heartbeats, never by consumer
    lag (docs/CONTRACTS.md, consumer groups): while the heartbeat consumer is
    stuck (its upsert of a test node waits on a row lock this test holds) for
    longer than the dead-after interval, the live node's heartbeats wait
    unread behind it, and that node is not declared dead; they are applied
    once the lock goes."""
    from conftest import read_env_file
    # the stack's own node, heartbeating all along (other tests' fake nodes go silent)
    real = [read_env_file(state_dir() / "env" / "runner-agent.env")["PADDOCK_NODE_ID"]]
    assert (api_node(api, real[0]) or {}).get("state") == "ready", api_node(api, real[0])
    # sorts after every real node, so a sweep reaches them before it
    node_id = f"zz-e2e-stuck-{uuid.uuid4().hex[:8]}"
    signer = enroll_test_node(endpoints, node_id)

    def beat():
        signer.produce(endpoints, "paddock.nodes", node_id, node_heartbeat(node_id, slots=1, cpus=1.0, memory_mb=512))

    beat()
    deadline = time.monotonic() + 30
    while not pg.execute("SELECT 1 FROM scheduler.nodes WHERE node_id = %s", (node_id,)).fetchone():
        assert time.monotonic() < deadline, "the node's first heartbeat was never recorded"
        time.sleep(0.3)

    def dead_real():
        return pg.execute("SELECT node_id FROM scheduler.nodes WHERE node_id = ANY(%s) AND dead_since IS NOT NULL",
                          (real,)).fetchall()

    try:
        with psycopg.connect(endpoints.need("PADDOCK_PG_DSN")) as locker:
            locker.execute("SELECT 1 FROM scheduler.nodes WHERE node_id = %s FOR UPDATE", (node_id,))
            beat()
            deadline = time.monotonic() + 30
            while not pg.execute("SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                                 (locker.info.backend_pid,)).fetchone()[0]:
                assert time.monotonic() < deadline, "the heartbeat consumer never reached the locked node"
                time.sleep(0.3)
            stuck_at = pg.execute("SELECT max(last_seen) FROM scheduler.nodes WHERE node_id = ANY(%s)",
                                  (real,)).fetchone()[0]
            # well past the dead-after interval (3 heartbeat intervals, at least 6 s)
            until = time.monotonic() + 12
            while time.monotonic() < until:
                assert not dead_real(), "a node was declared dead while its heartbeats waited unread"
                time.sleep(0.5)
            # still stuck: the real node's heartbeats did wait
            assert pg.execute("SELECT max(last_seen) FROM scheduler.nodes WHERE node_id = ANY(%s)",
                              (real,)).fetchone()[0] == stuck_at
            locker.rollback()
        deadline = time.monotonic() + 30
        while pg.execute("SELECT max(last_seen) FROM scheduler.nodes WHERE node_id = ANY(%s)",
                         (real,)).fetchone()[0] == stuck_at:
            assert time.monotonic() < deadline, "the waiting heartbeats were never applied"
            time.sleep(0.3)
        time.sleep(3)  # a sweep or two with everything read
        assert not dead_real()
        assert all((api_node(api, n) or {}).get("state") == "ready" for n in real)
    finally:
        pg.execute("DELETE FROM scheduler.nodes WHERE node_id = %s", (node_id,))


def test_run_every_live_node_failed_ends_at_once(api, pg, endpoints, make_team, idle_node):
    """`make chaos` found a run stuck for the whole pending timeout: its only
    node was restarted just after the run was assigned, so the run went back
    to pending with that node excluded (it deduplicates by run id) and no
    other node could ever take it. Here a fake node is the only one with the
    run's image; it takes the run, dies before starting it and comes back:
    the run fails within seconds, naming the node, not after an hour."""
    team = make_team()
    image = unique_name("only-ghost-img")
    item = api.ok("POST", "/v1/catalog/images", json={"name": image, "body": {}}, expect=(201,))
    api.ok("POST", f"/v1/catalog/images/{item['id']}/approve", json={"content_sha256": item["content_sha256"]},
           expect=(200,))
    ghost = f"ghost-{uuid.uuid4().hex[:8]}"

    def beats():
        return Beater(endpoints, {ghost: lambda: node_heartbeat(ghost, 500, images=[image], producer="e2e/ghost")})

    beater = beats()
    run_id = None
    try:
        deadline = time.monotonic() + 30
        while (api_node(api, ghost) or {}).get("state") != "ready":
            assert time.monotonic() < deadline, "the fake node never showed as ready"
            time.sleep(0.3)
        run_id = launch(api, team, dict(command_spec(["/bin/true"], timeout_s=60), image=image))
        assert wait_assigned(api, run_id)["node"] == ghost, sched_run(pg, run_id)
        beater.stop()  # dies before starting it: the run goes back to pending, the ghost excluded
        deadline = time.monotonic() + 30
        while (sched_run(pg, run_id) or [None])[0] != "pending":
            assert time.monotonic() < deadline, f"the run never went back to pending: {sched_run(pg, run_id)}"
            time.sleep(0.3)
        beater = beats()  # and comes back, still excluded for this run
        started = time.monotonic()
        run = wait_status(api, run_id, TERMINAL, timeout=60)
        assert run["status"] == "failed", run
        assert run["reason"].startswith("every live node already failed to start it") and ghost in run["reason"], run
        assert time.monotonic() - started < 60
        state = wait_sched_finished(pg, run_id)
        assert state[0] == "finished" and state[4] == run["reason"], state
    finally:
        beater.stop()
        deadline = time.monotonic() + 30
        while pg.execute("SELECT count(*) FROM scheduler.nodes WHERE node_id = %s AND dead_since IS NULL",
                         (ghost,)).fetchone()[0] and time.monotonic() < deadline:
            time.sleep(0.3)
        if run_id:
            api.post(f"/v1/runs/{run_id}/cancel", json={})
        pg.execute("DELETE FROM scheduler.nodes WHERE node_id = %s AND dead_since IS NOT NULL", (ghost,))
