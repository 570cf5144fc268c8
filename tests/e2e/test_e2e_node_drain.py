"""Draining a runner node (issue 16; docs/CONTRACTS.md "Node drain"):
`paddock node drain NODE` (POST /v1/nodes/{id}/drain) makes the scheduler
place nothing new on the node while the runs it holds finish; the node
shows draining; with the stack's one node a new run stays queued until
`paddock node undrain NODE`, then runs; a run whose image only a draining
node has is accepted and waits the same way. Bad input changes nothing,
another role is refused (the RBAC matrix has every role), each change is
audited."""

import threading
import time
import uuid

import psycopg
import pytest
import requests

from cli_support import Cli
from conftest import HTTP_TIMEOUT, audit_all, bootstrap_tenant, command_spec, login, wait_for, wait_run_status

NODE = "local-node-1"


@pytest.fixture(scope="module")
def cli(endpoints, credentials, tmp_path_factory):
    run = Cli(tmp_path_factory.mktemp("paddock-config-drain"), endpoints.api)
    c = credentials
    r = run("login", "--tenant", c["PADDOCK_TENANT"], "--user", c["PADDOCK_USER"], "--password-stdin",
            input=c["PADDOCK_PASSWORD"] + "\n")
    assert r.returncode == 0, r.stderr
    return run


@pytest.fixture
def undrained(endpoints, api):
    """The stack's node is ready first (run early in a suite, its first
    heartbeat may not be in yet; after e2e.scheduler froze it, it is dead
    until its next one), and whatever a test does, it takes runs again
    afterwards."""
    wait_for(f"{NODE} ready", lambda: node_state_or_none(api) == "ready", timeout=60)
    yield
    with psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True) as pg:
        pg.execute("DELETE FROM scheduler.node_drains WHERE node_id = %s", (NODE,))


def node_state(api, node=NODE):
    return {n["id"]: n for n in api.ok("GET", "/v1/nodes", expect=(200,))["items"]}[node]["state"]


def node_state_or_none(api, node=NODE):
    n = {n["id"]: n for n in api.ok("GET", "/v1/nodes", expect=(200,))["items"]}.get(node)
    return n and n["state"]


def scheduler_state(endpoints, run_id):
    with psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True) as pg:
        row = pg.execute("SELECT state, node_id FROM scheduler.runs WHERE run_id = %s", (run_id,)).fetchone()
    return row


def test_drain_lets_runs_finish_and_places_nothing_new(endpoints, api, runs, cli, undrained):
    assert node_state(api) == "ready"
    sb = runs.create_sandbox(command_spec(["/bin/sleep", "8"], timeout_s=60))
    version = runs.publish(sb)
    first = runs.launch(sb, version)
    wait_for("the first run to run", lambda: api.ok("GET", f"/v1/runs/{first}", expect=(200,))["status"] == "running",
             timeout=90, pause=0.3)

    out = cli.ok("node", "drain", NODE)
    assert f"node {NODE} draining since" in out, out
    assert node_state(api) == "draining"
    assert f"{NODE}" in cli.ok("node", "list") and "draining" in cli.ok("node", "show", NODE)
    # again: the same answer, since unchanged
    again = api.ok("POST", f"/v1/nodes/{NODE}/drain", expect=(200,))
    assert again["draining"] is True and again["state"] == "draining" and again["id"] == NODE

    second = runs.launch(sb, version)
    # the running run finishes on the drained node
    done = wait_run_status(api, first, timeout=120)
    assert done["status"] == "succeeded", done
    # the new one is not placed while the node drains (the stack has one node)
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        run = api.ok("GET", f"/v1/runs/{second}", expect=(200,))
        assert run["status"] == "queued" and not run.get("node"), run
        state = scheduler_state(endpoints, second)
        assert state is None or state == ("pending", None), state
        time.sleep(0.5)

    r = cli("node", "undrain", NODE)
    assert r.returncode == 0 and f"node {NODE} takes runs again" in r.stdout, r.stderr
    assert node_state(api) == "ready"
    done = wait_run_status(api, second, timeout=120)
    assert done["status"] == "succeeded", done
    assert scheduler_state(endpoints, second)[1] == NODE

    actions = [(a["action"], a["object_id"]) for a in audit_all(api) if a["action"].startswith("node.")]
    assert ("node.drain", NODE) in actions and ("node.undrain", NODE) in actions, actions[-5:]


def test_drain_bad_input_changes_nothing(endpoints, api, cli, undrained):
    before = node_state(api)
    # a body: refused naming it, the node unchanged
    r = api.request("POST", f"/v1/nodes/{NODE}/drain", json={"force": True})
    assert r.status_code == 400 and "force" in r.json()["detail"], r.text
    assert node_state(api) == before
    # unknown nodes, and undrain of a node that is not draining: 404
    for node in ("no-such-node", "bad%20id"):
        assert api.request("POST", f"/v1/nodes/{node}/drain").status_code == 404
    assert api.request("DELETE", f"/v1/nodes/{NODE}/drain").status_code == 404
    assert cli("node", "undrain", NODE).returncode != 0
    assert node_state(api) == before


def test_another_tenants_admin_cannot_drain_the_shared_node(endpoints, api, undrained):
    """Nodes run every tenant's runs: only the operator tenant's admins
    (PADDOCK_OPERATOR_TENANT, the stack's tenant) drain one. Any other
    tenant's admin gets 403 and the node keeps taking runs."""
    name = "drain-" + uuid.uuid4().hex[:10]
    password = bootstrap_tenant(name, "admin")
    r = login(endpoints, name, "admin", password)
    assert r.status_code == 200, r.text
    headers = {"Authorization": "Bearer " + r.json()["token"]}
    before = node_state(api)
    audited = sum(1 for a in audit_all(api) if a["action"].startswith("node."))
    for method in ("POST", "DELETE"):
        r = requests.request(method, f"{endpoints.api}/v1/nodes/{NODE}/drain", headers=headers, timeout=HTTP_TIMEOUT)
        assert r.status_code == 403 and "operator tenant" in r.json()["detail"], (method, r.status_code, r.text)
    assert node_state(api) == before == "ready"
    assert sum(1 for a in audit_all(api) if a["action"].startswith("node.")) == audited


def test_a_run_whose_image_only_draining_nodes_have_waits(endpoints, api, runs, cli):
    """The launch check counts draining nodes (docs/CONTRACTS.md "Node
    drain"): a run whose image only a drained node has is accepted and stays
    queued (pending in the scheduler, not failed); once the node is undrained
    it is placed there. At the pending timeout such a run fails naming the
    drain. An image no node has, draining or not, is still refused naming
    spec.image. The node with the image is played by the test (an enrolled
    node's signed heartbeats), so the stack's own node stays as it was."""
    from confluent_kafka import Producer
    from conftest import enroll_test_node, node_heartbeat, unique_name

    def approved_image(prefix):
        name = unique_name(prefix)
        item = api.ok("POST", "/v1/catalog/images", json={"name": name, "body": {}}, expect=(201,))
        api.ok("POST", f"/v1/catalog/images/{item['id']}/approve", json={"content_sha256": item["content_sha256"]},
               expect=(200,))
        return name

    image, nowhere = approved_image("drain-img"), approved_image("drain-none")
    bootstrap = endpoints.need("PADDOCK_KAFKA_BOOTSTRAP")
    for hp in bootstrap.split(","):
        assert hp.rsplit(":", 1)[0] in ("127.0.0.1", "localhost", "[::1]"), bootstrap
    ghost = f"drain-{uuid.uuid4().hex[:8]}"
    signer = enroll_test_node(endpoints, ghost)
    producer = Producer({"bootstrap.servers": bootstrap})
    stop = threading.Event()

    def beat():
        while not stop.is_set():
            value = node_heartbeat(ghost, slots=1, cpus=2.0, memory_mb=4096, images=[image],
                                   producer="e2e/drain", version="e2e")
            producer.produce("paddock.nodes", key=ghost, value=value, headers=signer.headers("paddock.nodes", value))
            producer.flush(10)
            stop.wait(0.3)

    beater = threading.Thread(target=beat, daemon=True)
    beater.start()
    launched = []
    try:
        wait_for("the test's node to show as ready",
                 lambda: {n["id"]: n for n in api.ok("GET", "/v1/nodes", expect=(200,))["items"]}
                 .get(ghost, {}).get("state") == "ready", timeout=30, pause=0.3)
        assert f"node {ghost} draining since" in cli.ok("node", "drain", ghost)
        assert node_state(api, ghost) == "draining"
        sb = runs.create_sandbox(dict(command_spec(["/bin/true"], timeout_s=60), image=image))
        version = runs.publish(sb)

        # accepted (before: 400 "no ready node"), and not placed while the node drains
        waiting = runs.launch(sb, version)
        timing_out = runs.launch(sb, version)
        launched += [waiting, timing_out]
        wait_for("the scheduler to store the requests",
                 lambda: scheduler_state(endpoints, waiting) and scheduler_state(endpoints, timing_out), timeout=20)
        deadline = time.monotonic() + 6  # several placement passes
        while time.monotonic() < deadline:
            for rid in (waiting, timing_out):
                run = api.ok("GET", f"/v1/runs/{rid}", expect=(200,))
                assert run["status"] == "queued" and not run.get("node"), run
                assert scheduler_state(endpoints, rid) == ("pending", None)
            time.sleep(0.5)

        # an image no node has, draining or not: refused naming spec.image, nothing stored
        other = runs.create_sandbox(dict(command_spec(["/bin/true"], timeout_s=60), image=nowhere))
        other_version = runs.publish(other)
        r = api.post("/v1/runs", json={"sandbox": other, "version": other_version, "team": runs.team})
        assert r.status_code == 400 and r.json()["code"] == "invalid_field", r.text
        assert r.json()["detail"].startswith("spec.image:") and nowhere in r.json()["detail"], r.text
        assert api.ok("GET", "/v1/runs", params={"sandbox": other}, expect=(200,))["items"] == []

        # the pending timeout (an hour in the stack) brought forward for one of
        # them by backdating the wait it counts from: failed, naming the drain
        with psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True) as pg:
            pg.execute("UPDATE scheduler.runs SET pending_since = pending_since - interval '366 days'"
                       " WHERE run_id = %s AND state = 'pending'", (timing_out,))
        wait_for("the overdue run to fail",
                 lambda: api.ok("GET", f"/v1/runs/{timing_out}", expect=(200,))["status"] == "failed", timeout=30)
        run = api.ok("GET", f"/v1/runs/{timing_out}", expect=(200,))
        assert run["reason"].startswith(f'only draining nodes have image "{image}": not placed within '), run
        assert scheduler_state(endpoints, waiting) == ("pending", None)

        # undrained: the waiting run is placed on the node with its image
        assert f"node {ghost} takes runs again" in cli.ok("node", "undrain", ghost)
        wait_for("the waiting run to be placed on the undrained node",
                 lambda: scheduler_state(endpoints, waiting) == ("assigned", ghost), timeout=30, pause=0.3)
    finally:
        stop.set()
        beater.join(15)
        with psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True) as pg:
            pg.execute("DELETE FROM scheduler.node_drains WHERE node_id = %s", (ghost,))
            # the silent node dies: its run, never started, goes back to
            # pending; cancelled there, the scheduler ends it at once
            deadline = time.monotonic() + 30
            while pg.execute("SELECT count(*) FROM scheduler.nodes WHERE node_id = %s AND dead_since IS NULL",
                             (ghost,)).fetchone()[0] and time.monotonic() < deadline:
                time.sleep(0.3)
            for rid in launched:
                api.post(f"/v1/runs/{rid}/cancel", json={})
            pg.execute("DELETE FROM scheduler.nodes WHERE node_id = %s AND dead_since IS NOT NULL", (ghost,))
