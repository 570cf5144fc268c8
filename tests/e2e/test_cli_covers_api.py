"""The CLI covers every task the API has (issue 8), and keeps doing so.

ROUTE_COMMANDS maps every route of the api's one route table
(services/api/routes.c, read by openapi_check.routes_from_c) to the `paddock`
command that performs it. A route without a mapping fails here, naming it, so
a new endpoint comes with its command (or, like the unauthenticated
operations endpoints in NOT_CLI_TASKS, with the reason it has none). Each
mapped command must exist: `paddock help WORDS` exits 0, and its help names
the option when the task is an option of the command.

Then the commands added for that against the stack: node list / show (the
stack's own runner node, and a node of the test's own heartbeats that has
images), and user promote / demote. The OIDC login of the CLI is tested in
test_e2e_oidc.py, next to the test's identity provider.
"""

import json
import time
import uuid

import psycopg
import pytest

from cli_support import Cli
from conftest import enroll_test_node, node_heartbeat, unique_name, wait_for
from openapi_check import ROUTES_C, routes_from_c

# (method, pattern) -> the command performing it: "GROUP SUB" words, then an
# option when the task is one ("login --oidc-token-stdin"); a tuple when
# several commands share the route.
ROUTE_COMMANDS = {
    ("POST", "/v1/auth/login"): "login",
    ("POST", "/v1/auth/oidc"): "login --oidc-token-stdin",
    ("POST", "/v1/auth/logout"): "logout",
    ("GET", "/v1/me"): "me",
    ("POST", "/v1/me/password"): "passwd",
    ("GET", "/v1/teams"): "team list",
    ("POST", "/v1/teams"): "team create",
    ("GET", "/v1/teams/{id}"): "team show",
    ("PATCH", "/v1/teams/{id}"): "team rename",
    ("DELETE", "/v1/teams/{id}"): "team delete",
    ("GET", "/v1/teams/{id}/members"): "members",
    ("PUT", "/v1/teams/{id}/members/{user}"): ("grant", "revoke"),
    ("PATCH", "/v1/teams/{id}/members/{user}"): ("grant --add", "grant --remove"),
    ("GET", "/v1/users"): "user list",
    ("POST", "/v1/users"): "user create",
    ("PATCH", "/v1/users/{id}"): ("user disable", "user enable", "user promote", "user demote"),
    ("DELETE", "/v1/users/{id}"): "user delete",
    ("GET", "/v1/tenant/oidc"): "oidc show",
    ("PUT", "/v1/tenant/oidc"): "oidc set",
    ("DELETE", "/v1/tenant/oidc"): "oidc delete",
    ("GET", "/v1/service-accounts"): "service-account list",
    ("POST", "/v1/service-accounts"): "service-account create",
    ("DELETE", "/v1/service-accounts/{id}"): "service-account delete",
    ("POST", "/v1/service-accounts/{id}/tokens"): ("token create", "service-account token"),
    ("DELETE", "/v1/service-accounts/{id}/tokens/{token}"): "token revoke",
    ("GET", "/v1/teams/{id}/secrets"): "secret list",
    ("PUT", "/v1/teams/{id}/secrets/{name}"): "secret set",
    ("DELETE", "/v1/teams/{id}/secrets/{name}"): "secret delete",
    ("GET", "/v1/sandboxes"): "sandbox list",
    ("POST", "/v1/sandboxes"): "sandbox create",
    ("GET", "/v1/sandboxes/{id}"): "sandbox show",
    ("PUT", "/v1/sandboxes/{id}/draft"): "sandbox draft",
    ("POST", "/v1/sandboxes/{id}/versions"): "sandbox publish",
    ("GET", "/v1/sandboxes/{id}/versions/{v}"): "sandbox version",
    ("GET", "/v1/sandboxes/{id}/versions/{v}/effective-policy"): "sandbox policy",
    ("GET", "/v1/runs"): "run list",
    ("POST", "/v1/runs"): "run launch",
    ("GET", "/v1/runs/{id}"): ("run show", "run wait"),
    ("POST", "/v1/runs/{id}/relaunch"): "run relaunch",
    ("POST", "/v1/runs/{id}/cancel"): "run cancel",
    ("GET", "/v1/runs/{id}/events"): "run events",
    ("GET", "/v1/runs/{id}/stream"): ("run watch", "run logs --follow"),
    ("POST", "/v1/runs/{id}/stream-ticket"): "run stream-ticket",
    ("GET", "/v1/runs/{id}/artifacts"): "run artifacts",
    ("GET", "/v1/runs/{id}/artifacts/{name}"): ("run artifacts --url", "run artifacts --download",
                                               "run artifacts --show"),
    ("POST", "/v1/runs/{id}/reviews"): ("run review --approve", "run review --reject", "run review --escalate"),
    ("GET", "/v1/runs/{id}/reviews"): "run reviews",
    ("GET", "/v1/runs/{id}/evidence"): "run evidence",
    ("GET", "/v1/tenant/keys"): ("evidence keys", "evidence verify"),
    ("POST", "/v1/tenant/keys/rotate"): "evidence rotate-key",
    ("GET", "/v1/approvals"): "approvals list",
    ("GET", "/v1/approvals/{id}"): "approvals show",
    ("POST", "/v1/approvals/{id}/decision"): ("approvals approve", "approvals deny"),
    ("GET", "/v1/catalog/{kind}"): "catalog list",
    ("POST", "/v1/catalog/{kind}"): "catalog create",
    ("GET", "/v1/catalog/{kind}/{id}"): "catalog show",
    ("PATCH", "/v1/catalog/{kind}/{id}"): "catalog update",
    ("POST", "/v1/catalog/{kind}/{id}/approve"): "catalog approve",
    ("GET", "/v1/nodes"): ("node list", "node show"),
    ("POST", "/v1/nodes/{id}/drain"): "node drain",
    ("DELETE", "/v1/nodes/{id}/drain"): "node undrain",
    ("GET", "/v1/usage"): "usage",
    ("GET", "/v1/governance/metrics"): "governance",
    ("GET", "/v1/teams/{id}/budget"): "budget get",
    ("PUT", "/v1/teams/{id}/budget"): "budget set",
    ("GET", "/v1/audit"): "audit list",
    ("GET", "/v1/audit/verify"): "audit verify",
    ("GET", "/v1/tenants/{tenant}/oidc/.well-known/openid-configuration"): "identity discovery",
    ("GET", "/v1/tenants/{tenant}/oidc/jwks"): "identity jwks",
    ("POST", "/v1/tenants/{tenant}/oidc/introspect"): "identity introspect",
    ("POST", "/v1/tenant/workload-identity/rotate"): "identity rotate",
    ("GET", "/v1/tenant/retention"): "retention show",
    ("PUT", "/v1/tenant/retention"): "retention set",
    ("GET", "/v1/holds"): "hold list",
    ("PUT", "/v1/holds/{kind}/{id}"): "hold set",
    ("DELETE", "/v1/holds/{kind}/{id}"): "hold lift",
}

# Routes that are deliberately no task of the CLI, and why: the operations
# endpoints (/metrics is on the api's ops port, not a route:
# docs/CONTRACTS.md) and the dashboard's OIDC sign-in, whose redirects only a
# browser follows (the CLI logs in by OIDC with `login --oidc-token-stdin`).
NOT_CLI_TASKS = {
    ("GET", "/healthz"): "liveness for process supervisors and ./dev status, not a user's task",
    ("GET", "/readyz"): "readiness for load balancers and ./dev status, not a user's task",
    ("GET", "/v1/auth/oidc/authorize"): "a browser redirect to the provider's login page; the CLI uses "
                                        "`paddock login --oidc-token-stdin` (POST /v1/auth/oidc)",
    ("GET", "/v1/auth/oidc/callback"): "the provider redirects the browser here and the answer is a session "
                                       "cookie for the dashboard; no CLI can receive it",
}
EXCUSABLE = {"/healthz", "/readyz", "/v1/auth/oidc/authorize", "/v1/auth/oidc/callback"}


def commands_of(route):
    c = ROUTE_COMMANDS[route]
    return (c,) if isinstance(c, str) else c


@pytest.fixture(scope="module")
def offline_cli(tmp_path_factory):
    """The binary with an empty config dir and no API: help needs neither."""
    return Cli(tmp_path_factory.mktemp("paddock-config-help"))


# ---------------------------------------------------------------- the mapping


def test_every_route_has_a_cli_command_or_a_reason():
    routes = routes_from_c()
    assert len(routes) > 40, f"the route table of {ROUTES_C} was not read: {routes}"
    assert len(set(routes)) == len(routes), "a route is listed twice in routes.c"
    unmapped = [f"{m} {p}" for m, p in routes if (m, p) not in ROUTE_COMMANDS and (m, p) not in NOT_CLI_TASKS]
    assert not unmapped, (
        "routes of services/api/routes.c without a CLI command: " + ", ".join(unmapped) +
        " (add the command, then the route to ROUTE_COMMANDS in tests/e2e/test_cli_covers_api.py)")
    stale = [f"{m} {p}" for m, p in list(ROUTE_COMMANDS) + list(NOT_CLI_TASKS) if (m, p) not in routes]
    assert not stale, "mapped routes that routes.c does not have (any more): " + ", ".join(stale)
    both = set(ROUTE_COMMANDS) & set(NOT_CLI_TASKS)
    assert not both, f"routes both mapped and excused: {both}"
    for (m, p), reason in NOT_CLI_TASKS.items():
        assert p in EXCUSABLE and reason.strip(), f"{m} {p} may not be excused from the CLI"


def test_each_mapped_command_exists(offline_cli):
    # the check itself can fail: help of a command that does not exist
    assert offline_cli("help", "no-such-command").returncode == 2
    assert offline_cli("help", "run", "no-such-sub").returncode == 2
    problems = []
    helps = {}
    for route in sorted(ROUTE_COMMANDS):
        for command in commands_of(route):
            words = command.split()
            option = words.pop() if words[-1].startswith("--") else None
            assert words and not any(w.startswith("-") for w in words), command
            key = tuple(words)
            if key not in helps:
                helps[key] = offline_cli("help", *words)
            r = helps[key]
            where = f"{route[0]} {route[1]} -> `paddock {command}`"
            if r.returncode != 0:
                problems.append(f"{where}: `paddock help {' '.join(words)}` exited {r.returncode}: "
                                f"{r.stderr.strip()}")
            elif not r.stdout.startswith(f"usage: paddock {' '.join(words)}") or "\ncommands:\n" in r.stdout:
                # a group's help also exits 0: the words must name one command
                problems.append(f"{where}: `paddock help {' '.join(words)}` is not the help of one command")
            elif option and f"{option} " not in r.stdout and f"{option}\n" not in r.stdout \
                    and f"{option}=" not in r.stdout:
                problems.append(f"{where}: its help does not name {option}")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- node list / show


@pytest.fixture(scope="module")
def cli(endpoints, credentials, tmp_path_factory):
    run = Cli(tmp_path_factory.mktemp("paddock-config-cover"), endpoints.api)
    c = credentials
    r = run("login", "--tenant", c["PADDOCK_TENANT"], "--user", c["PADDOCK_USER"], "--password-stdin",
            input=c["PADDOCK_PASSWORD"] + "\n")
    assert r.returncode == 0, r.stderr
    return run


def table_rows(text):
    """A text table as {first cell: cells}, checking the header; no cell here holds a space."""
    lines = text.strip().splitlines()
    assert lines and lines[0].split() == ["NODE", "STATE", "LAST_SEEN", "SLOTS", "CPUS", "MEMORY_MB", "IMAGES"], text
    rows = {}
    for line in lines[1:]:
        cells = line.split()
        assert len(cells) == 7, line
        rows[cells[0]] = cells
    return rows


def api_nodes(api):
    return {n["id"]: n for n in api.ok("GET", "/v1/nodes", expect=(200,))["items"]}


def test_node_list_and_show_the_stack_node(cli, api):
    local = api_nodes(api).get("local-node-1")
    assert local and local["state"] == "ready", local

    rows = table_rows(cli.ok("node", "list"))
    row = rows["local-node-1"]
    assert row[1] == "ready", row
    cap = local["capacity"]
    assert row[3].endswith(f"/{cap['slots']}") and row[4].endswith(f"/{cap['cpus']:g}") \
        and row[5].endswith(f"/{cap['memory_mb']}"), (row, local)
    assert row[6] == (",".join(local["images"]) or "-"), (row, local)
    assert set(rows) >= set(api_nodes(api)), rows

    # --json: the API's list object, as every list prints it
    listed = cli.json("node", "list")
    assert set(listed) == {"items", "next_cursor"} and listed["next_cursor"] is None, listed
    mine = {n["id"]: n for n in listed["items"]}["local-node-1"]
    for key in ("id", "state", "version", "images", "capacity"):
        assert mine[key] == local[key], (key, mine, local)
    assert set(mine) == set(local) and set(mine["used"]) == {"slots", "cpus", "memory_mb"}, mine
    assert cli.json("nodes", "ls")["items"], "the alias `nodes ls` lists too"

    shown = cli.json("node", "show", "local-node-1")
    assert shown["id"] == "local-node-1" and shown["images"] == local["images"] and shown["state"] == "ready"
    text = cli.ok("node", "show", "local-node-1")
    assert "state:      ready" in text and f"images:     {','.join(local['images']) or '-'}" in text, text
    assert f"slots:      {shown['used']['slots']}/{cap['slots']} used" in text, text

    # an unknown node is an error naming it (1); a missing argument a usage error (2)
    r = cli.fails(1, "node", "show", "no-such-node-" + uuid.uuid4().hex[:6])
    assert "no node" in r.stderr and "not_found" in r.stderr and r.stdout == "", r.stderr
    assert "missing argument NODE" in cli.fails(2, "node", "show").stderr
    assert cli.fails(2, "node", "list", "extra").stdout == ""


def test_node_list_shows_each_nodes_images_and_state(cli, api, endpoints):
    """A node of the test's own heartbeats (no slot: nothing is placed there)
    with two images: both listed; silent, it turns stale, then dead."""
    from confluent_kafka import Producer
    bootstrap = endpoints.need("PADDOCK_KAFKA_BOOTSTRAP")
    for hp in bootstrap.split(","):
        assert hp.rsplit(":", 1)[0] in ("127.0.0.1", "localhost", "[::1]"), bootstrap
    ghost = f"cover-{uuid.uuid4().hex[:8]}"
    images = [unique_name("cover-img"), unique_name("cover-img")]
    producer = Producer({"bootstrap.servers": bootstrap})
    signer = enroll_test_node(endpoints, ghost)  # the test plays an enrolled node

    def beat():
        value = node_heartbeat(ghost, slots=0, cpus=1.5, memory_mb=1024, images=images,
                               producer="e2e/cover", version="e2e")
        producer.produce("paddock.nodes", key=ghost, value=value, headers=signer.headers("paddock.nodes", value))
        producer.flush(10)

    def ghost_row():
        return table_rows(cli.ok("node", "list")).get(ghost)

    try:
        def ready():
            beat()
            row = ghost_row()
            return row if row and row[1] == "ready" else None
        row = wait_for("the test's node listed as ready", ready, timeout=30)
        assert row[3:6] == ["0/0", "0/1.5", "0/1024"], row
        assert sorted(row[6].split(",")) == sorted(images), row
        assert row[6] == ",".join(api_nodes(api)[ghost]["images"]), row
        shown = cli.json("node", "show", ghost)
        assert sorted(shown["images"]) == sorted(images) and shown["version"] == "e2e", shown
        # silent now: no longer ready, as the table and show say
        wait_for("the silent node to be stale or dead", lambda: ghost_row()[1] in ("stale", "dead"), timeout=60)
        wait_for("the silent node to be dead", lambda: ghost_row()[1] == "dead", timeout=90, pause=1)
        assert "state:      dead" in cli.ok("node", "show", ghost)
    finally:
        producer.flush(10)
        # a node that never ran anything is only history: keep the node lists tidy
        with psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True) as pg:
            deadline = time.monotonic() + 60
            while pg.execute("DELETE FROM scheduler.nodes WHERE node_id = %s AND dead_since IS NOT NULL",
                             (ghost,)).rowcount == 0 and time.monotonic() < deadline:
                time.sleep(0.5)
    assert ghost not in api_nodes(api)


# ---------------------------------------------------------------- user promote / demote


def test_user_promote_and_demote(cli, api):
    name = unique_name("cover-user")
    user = api.ok("POST", "/v1/users", json={"username": name, "password": uuid.uuid4().hex}, expect=(201,))
    try:
        def tenant_roles():
            users = api.ok("GET", "/v1/users", expect=(200,))["items"]
            return {u["id"]: u for u in users}[user["id"]]["tenant_roles"]
        assert tenant_roles() == []
        assert cli.ok("user", "promote", name).strip() == f"user {name} is a tenant_admin now"
        assert tenant_roles() == ["tenant_admin"]
        answer = cli.json("user", "demote", user["id"])
        assert answer["id"] == user["id"] and answer["tenant_roles"] == [], answer
        assert tenant_roles() == []
        r = cli.fails(1, "user", "promote", "no-such-user-" + uuid.uuid4().hex[:6])
        assert "not_found" in r.stderr, r.stderr
    finally:
        api.request("DELETE", f"/v1/users/{user['id']}")
