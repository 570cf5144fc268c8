"""Services wait for their schema instead of crash-looping, and `migrate`
needs only the DSN (issue 16; docs/CONTRACTS.md "Services wait for their
schema").

On a new, empty database in the stack's PostgreSQL: paddock-billing, started
as its runtime role (which may not create the schema), says once why it
waits, keeps /healthz alive and answers /readyz 503 "schema billing version
0, need M"; `paddock-billing migrate` with nothing but the owner's DSN in its
environment (as the migrate Job in deploy/k8s gets it) applies the schema;
then billing is ready without a restart. The billing under test talks to a
Kafka mock of its own, so the stack's consumer groups never see it.
"""

import os
import pathlib
import re
import signal
import socket
import subprocess
import time
import uuid

import psycopg
import pytest
import requests

from conftest import REPO, read_env_file, state_dir, wait_for

SERVICES = ("api", "scheduler", "evidence", "billing")


def build_dir():
    if os.environ.get("PADDOCK_BUILD_DIR"):
        return pathlib.Path(os.environ["PADDOCK_BUILD_DIR"])
    if os.environ.get("PADDOCK_CLI"):
        return pathlib.Path(os.environ["PADDOCK_CLI"]).resolve().parent.parent
    return REPO / "build"


def binary(service):
    b = build_dir() / "services" / service / f"paddock-{service}"
    assert b.is_file(), f"{b} not built"
    return str(b)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_db(dsn, db):
    """dsn (postgresql://user:pw@host:port/paddock) naming database db instead."""
    return re.sub(r"/[^/?]+(\?|$)", f"/{db}\\1", dsn, count=1)


@pytest.fixture(scope="module")
def empty_db(endpoints):
    """A new database owned by the schema owner, as a fresh install has it."""
    name = "paddock_wait_" + uuid.uuid4().hex[:8]
    owner = endpoints.need("PADDOCK_PG_DSN")
    with psycopg.connect(owner, autocommit=True) as conn:
        # the owner role may not create databases: the cluster's superuser does,
        # over the stack's local socket (deploy/local/stack.sh pg_up)
        port = conn.info.port
    data = pathlib.Path(read_env_file(state_dir() / "endpoints.env")["PADDOCK_RUNNER_STATE_DIR"]).parent
    psql = sorted(pathlib.Path("/usr/lib/postgresql").glob("*/bin/psql"))[-1]

    def superuser(sql):
        subprocess.run(["runuser", "-u", "postgres", "--", str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                        "-h", str(data / "pg" / "run"), "-p", str(port), "-d", "postgres", "-c", sql],
                       check=True, cwd="/", capture_output=True, timeout=60)

    superuser(f"CREATE DATABASE {name} OWNER paddock")
    try:
        yield name
    finally:
        superuser(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def kafka_of_its_own(tmp_path_factory):
    d = tmp_path_factory.mktemp("kafka")
    bootstrap = d / "bootstrap"
    proc = subprocess.Popen([str(build_dir() / "deploy/local/kafka-mock/paddock-kafka-mock"), "--brokers", "1",
                             "--topics", str(REPO / "deploy/topics.txt"), "--bootstrap-file", str(bootstrap)],
                            stdout=subprocess.DEVNULL, stderr=open(d / "log", "wb"))
    try:
        wait_for("the test's Kafka mock", lambda: bootstrap.exists() and bootstrap.read_text().strip(), timeout=30)
        yield bootstrap.read_text().strip()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def only_dsn_env(dsn):
    """The environment of the migrate Job: the owner's DSN and nothing else."""
    return {"PATH": "/usr/bin:/bin", "PADDOCK_PG_DSN": dsn}


def test_service_waits_for_its_schema_then_starts(endpoints, empty_db, kafka_of_its_own, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PADDOCK_")}
    env.update(read_env_file(state_dir() / "env" / "billing.env"))
    ops = f"127.0.0.1:{free_port()}"
    env.update({"PADDOCK_PG_DSN": with_db(env["PADDOCK_PG_DSN"], empty_db),
                "PADDOCK_KAFKA_BOOTSTRAP": kafka_of_its_own, "PADDOCK_OPS_ADDR": ops})
    log_path = tmp_path / "billing.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([binary("billing")], env=env, stdout=log, stderr=log)
    base = f"http://{ops}"
    try:
        def waiting():
            try:
                r = requests.get(base + "/readyz", timeout=5)
            except requests.RequestException:
                return None
            # the body (a Response of 503 is falsy)
            return r.json() if r.status_code == 503 and r.json().get("dependency") == "schema" else None

        r = wait_for("billing to say it waits for its schema", lambda: proc.poll() is None and waiting(), timeout=60)
        reason = r["reason"]
        assert re.fullmatch(r"schema billing version 0, need \d+ \(waiting for its migrate job\)", reason), reason
        need = int(re.search(r"need (\d+)", reason).group(1))
        assert need > 0
        # alive all along, and still waiting a few polls later: no crash loop
        time.sleep(3)
        assert proc.poll() is None, log_path.read_text()
        assert requests.get(base + "/healthz", timeout=5).json() == {"status": "ok"}
        assert waiting() is not None
        said = [l for l in log_path.read_text().splitlines() if "waiting for its migrate job" in l]
        assert len(said) == 1, said  # once, not at every poll

        # the migrate Job: the owner's DSN and nothing else
        m = subprocess.run([binary("billing"), "migrate"], env=only_dsn_env(with_db(endpoints.need("PADDOCK_PG_DSN"),
                                                                                     empty_db)),
                           capture_output=True, text=True, timeout=120)
        assert m.returncode == 0, m.stderr

        wait_for("billing to be ready once migrated",
                 lambda: requests.get(base + "/readyz", timeout=5).status_code == 200, timeout=60)
        assert requests.get(base + "/readyz", timeout=5).json() == {"status": "ready"}
        assert proc.poll() is None
        assert f"schema billing is up to date (version {need})" in log_path.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("service", SERVICES)
def test_migrate_needs_only_the_dsn(endpoints, empty_db, service):
    dsn = with_db(endpoints.need("PADDOCK_PG_DSN"), empty_db)
    m = subprocess.run([binary(service), "migrate"], env=only_dsn_env(dsn), capture_output=True, text=True,
                       timeout=120)
    assert m.returncode == 0, f"paddock-{service} migrate with only PADDOCK_PG_DSN: exit {m.returncode}\n{m.stderr}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        schema = "api" if service == "api" else service
        n = conn.execute(f"SELECT count(*) FROM {schema}.schema_migrations").fetchone()[0]
    assert n > 0
    # a bad DSN is still refused as configuration, naming it
    m = subprocess.run([binary(service), "migrate"], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                       timeout=60)
    assert m.returncode == 78 and "PADDOCK_PG_DSN" in m.stderr, (m.returncode, m.stderr)
