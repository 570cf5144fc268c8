"""Tenant isolation in PostgreSQL: forced row-level security.

The services connect as roles that own nothing and cannot bypass row-level
security (paddock_api, paddock_evidence, paddock_billing, paddock_scheduler);
the schema owner `paddock` (PADDOCK_PG_DSN, operators and tests) applies the
migrations. These tests connect with the services' own credentials (the
stack's env files) and try to see, write or unlock other tenants' rows.
"""

import psycopg
import pytest

from conftest import bootstrap_tenant, read_env_file, state_dir

# the schemas whose tenant-owned tables carry the forced policy
RLS_SCHEMAS = ("api", "evidence", "billing")


def service_dsn(service):
    dsn = read_env_file(state_dir() / "env" / f"{service}.env").get("PADDOCK_PG_DSN")
    if not dsn:
        pytest.fail(f"no PADDOCK_PG_DSN in {state_dir()}/env/{service}.env: is the stack up?")
    return dsn


@pytest.fixture(scope="module")
def owner(endpoints):
    with psycopg.connect(endpoints.need("PADDOCK_PG_DSN"), autocommit=True) as conn:
        yield conn


def connect(service):
    return psycopg.connect(service_dsn(service), autocommit=True)


def tenant_tables(owner):
    rows = owner.execute(
        "SELECT c.table_schema, c.table_name FROM information_schema.columns c"
        " JOIN information_schema.tables t USING (table_schema, table_name)"
        " WHERE c.column_name = 'tenant_id' AND t.table_type = 'BASE TABLE' AND c.table_schema = ANY(%s)"
        " ORDER BY 1, 2", (list(RLS_SCHEMAS),)).fetchall()
    assert len(rows) >= 15, rows
    return rows + [("api", "tenants")]


def test_every_tenant_table_has_a_forced_policy(owner):
    for schema, table in tenant_tables(owner):
        row = owner.execute(
            "SELECT c.relrowsecurity, c.relforcerowsecurity, pg_get_userbyid(c.relowner),"
            " (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid)"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
            (schema, table)).fetchone()
        enabled, forced, table_owner, policies = row
        assert enabled and forced, f"{schema}.{table}: row-level security enabled={enabled} forced={forced}"
        assert policies >= 1, f"{schema}.{table} has no policy"
        assert not table_owner.startswith("paddock_"), f"{schema}.{table} is owned by runtime role {table_owner}"


def test_runtime_roles_cannot_bypass(owner):
    for service in ("api", "evidence", "billing", "scheduler"):
        role = f"paddock_{service}"
        row = owner.execute("SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = %s",
                            (role,)).fetchone()
        assert row == (False, False, False, False), f"{role}: super/bypassrls/createrole/createdb = {row}"
        with connect(service) as conn:
            assert conn.execute("SELECT current_user").fetchone()[0] == role
            # owns nothing that outlives a session (a session's temporary
            # tables, such as evidence's COPY staging of issue 10, are its
            # role's and go with the session)
            owned = conn.execute("SELECT count(*) FROM pg_class WHERE relowner = (SELECT oid FROM pg_roles"
                                 " WHERE rolname = current_user) AND relpersistence <> 't'").fetchone()[0]
            assert owned == 0, f"{role} owns {owned} relations"


@pytest.mark.parametrize("service", ["api", "evidence", "billing"])
def test_query_without_tenant_setting_sees_nothing(owner, service, me):
    """The owner sees rows; the service's role without paddock.tenant_id sees none."""
    schema = {"api": "api", "evidence": "evidence", "billing": "billing"}[service]
    with connect(service) as conn:
        seen_somewhere = False
        for s, table in tenant_tables(owner):
            if s != schema:
                continue
            total = owner.execute(f'SELECT count(*) FROM "{s}"."{table}"').fetchone()[0]
            seen_somewhere |= total > 0
            assert conn.execute(f'SELECT count(*) FROM "{s}"."{table}"').fetchone()[0] == 0, \
                f"{s}.{table} visible to paddock_{service} without a tenant"
            # an empty setting is the same as none
            conn.execute("SELECT set_config('paddock.tenant_id', '', false)")
            assert conn.execute(f'SELECT count(*) FROM "{s}"."{table}"').fetchone()[0] == 0
            conn.execute("RESET paddock.tenant_id")
        if service == "api":
            assert seen_somewhere, "the owner saw no rows at all: the test proves nothing"


def _two_tenants(owner):
    rows = owner.execute("SELECT t.id::text FROM api.tenants t WHERE EXISTS"
                         " (SELECT 1 FROM api.users u WHERE u.tenant_id = t.id) ORDER BY t.created_at LIMIT 2").fetchall()
    if len(rows) < 2:
        # a second tenant through the public bootstrap path
        import uuid
        bootstrap_tenant("rls-" + uuid.uuid4().hex[:10], "admin")
        rows = owner.execute("SELECT t.id::text FROM api.tenants t ORDER BY t.created_at LIMIT 2").fetchall()
    return rows[0][0], rows[1][0]


def test_setting_shows_only_that_tenant_and_refuses_foreign_writes(owner):
    a, b = _two_tenants(owner)
    with connect("api") as conn:
        conn.execute("SELECT set_config('paddock.tenant_id', %s, false)", (a,))
        seen = {r[0] for r in conn.execute("SELECT DISTINCT tenant_id::text FROM api.users").fetchall()}
        assert seen == {a}
        assert conn.execute("SELECT count(*) FROM api.users WHERE tenant_id = %s", (b,)).fetchone()[0] == 0
        assert conn.execute("SELECT id::text FROM api.tenants").fetchall() == [(a,)]
        # writing a row for tenant b while acting as a: refused by WITH CHECK
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO api.teams (id, tenant_id, name) VALUES (gen_random_uuid(), %s, 'smuggled')", (b,))
        # moving a row of a to b: refused too
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE api.teams SET tenant_id = %s WHERE tenant_id = %s", (b, a))
        # updating/deleting b's rows touches nothing
        assert conn.execute("UPDATE api.users SET disabled = disabled WHERE tenant_id = %s", (b,)).rowcount == 0
        assert conn.execute("DELETE FROM api.tokens WHERE tenant_id = %s", (b,)).rowcount == 0
    assert owner.execute("SELECT count(*) FROM api.teams WHERE name = 'smuggled'").fetchone()[0] == 0


def test_runtime_role_cannot_switch_policies_off(owner):
    with connect("api") as conn:
        for stmt in ("ALTER TABLE api.users DISABLE ROW LEVEL SECURITY",
                     "ALTER TABLE api.users NO FORCE ROW LEVEL SECURITY",
                     "DROP POLICY tenant_isolation ON api.users",
                     "CREATE POLICY everything ON api.users USING (true)",
                     "SET ROLE paddock",
                     "CREATE TABLE api.mine (x int)"):
            with pytest.raises((psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedObject)):
                conn.execute(stmt)
        # row_security = off does not disable the policy: the query fails instead
        conn.execute("SET row_security = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM api.users")
    # the pre-authentication lookups are the only way across tenants, and
    # return nothing for an unknown token
    with connect("api") as conn:
        assert conn.execute("SELECT count(*) FROM api.token_caller(%s)", ("0" * 64,)).fetchone()[0] == 0
        assert conn.execute("SELECT api.tenant_id_by_name('no-such-tenant')").fetchone()[0] is None


def test_services_reach_only_their_schemas():
    denied = {
        # the api reads billing's tables (GET /v1/usage) and the scheduler's
        # node_status view (GET /v1/nodes), nothing else of theirs, and writes neither
        "api": ["SELECT 1 FROM scheduler.runs LIMIT 1", "SELECT 1 FROM scheduler.nodes LIMIT 1",
                "UPDATE billing.run_usage SET cost_usd = 0", "DELETE FROM billing.team_daily",
                "INSERT INTO evidence.audit_log (tenant_id) VALUES (gen_random_uuid())"],
        "evidence": ["SELECT 1 FROM api.users LIMIT 1", "SELECT 1 FROM api.team_secrets LIMIT 1",
                     "UPDATE evidence.audit_log SET outcome = 'x'", "DELETE FROM evidence.audit_log"],
        "billing": ["SELECT 1 FROM api.users LIMIT 1", "SELECT 1 FROM evidence.run_events LIMIT 1"],
        "scheduler": ["SELECT 1 FROM api.team_secrets LIMIT 1", "SELECT 1 FROM evidence.audit_log LIMIT 1"],
    }
    for service, statements in denied.items():
        with connect(service) as conn:
            for stmt in statements:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(stmt)
    with connect("api") as conn:
        # billing's tenant policy holds for the api too: no tenant set, no row
        assert conn.execute("SELECT count(*) FROM billing.run_usage").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM billing.team_daily").fetchone()[0] == 0
        conn.execute("SELECT 1 FROM scheduler.node_status LIMIT 1")


def test_catalog_seed_is_not_executable_by_public_or_the_api(owner):
    """api.catalog_seed(t) writes into tenant t whatever the caller's tenant:
    only the schema owner (and the trigger seeding a new tenant) may run it."""
    a, b = _two_tenants(owner)
    assert owner.execute("SELECT has_function_privilege('public', 'api.catalog_seed(uuid)', 'EXECUTE')"
                         ).fetchone()[0] is False
    for service in ("api", "evidence", "billing", "scheduler"):
        assert owner.execute("SELECT has_function_privilege(%s, 'api.catalog_seed(uuid)', 'EXECUTE')",
                             (f"paddock_{service}",)).fetchone()[0] is False, service
    # no function of the api schema that runs as its owner is PUBLIC's to call
    public = owner.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = 'api' AND (p.prosecdef OR p.proname = 'catalog_seed')"
        " AND has_function_privilege('public', p.oid, 'EXECUTE')").fetchall()
    assert public == [], public
    owner.execute("SELECT set_config('paddock.tenant_id', %s, false)", (b,))
    before = owner.execute("SELECT count(*) FROM api.catalog_items WHERE tenant_id = %s", (b,)).fetchone()[0]
    with connect("api") as conn:
        conn.execute("SELECT set_config('paddock.tenant_id', %s, false)", (a,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT api.catalog_seed(%s)", (b,))
    assert owner.execute("SELECT count(*) FROM api.catalog_items WHERE tenant_id = %s", (b,)).fetchone()[0] == before
    # a tenant created through the api's role is still seeded (the trigger runs as the owner)
    import uuid
    name = "rls-seed-" + uuid.uuid4().hex[:10]
    bootstrap_tenant(name, "admin")
    seeded = owner.execute("SELECT count(*) FROM api.catalog_items c JOIN api.tenants t ON t.id = c.tenant_id"
                           " WHERE t.name = %s AND c.managed", (name,)).fetchone()[0]
    assert seeded >= 20, seeded


def test_run_retention_of_reads_only_the_callers_tenant(owner):
    """api.run_retention_of() (api migration 0031) takes a run's columns from
    its caller: the api may call it with another tenant's ids, and still
    reads only its own tenant's holds and settings (row-level security of
    the tables it reads); the schema owner, as evidence's sweeper does,
    sees every tenant's."""
    import uuid
    a, b = _two_tenants(owner)
    team, other = str(uuid.uuid4()), str(uuid.uuid4())
    set_by = owner.execute("SELECT id FROM api.users WHERE tenant_id = %s LIMIT 1", (b,)).fetchone()[0]
    owner.execute("INSERT INTO api.legal_holds (tenant_id, kind, object_id, reason, set_by)"
                  " VALUES (%s, 'team', %s, 'rls test', %s)", (b, team, set_by))
    try:
        call = ("SELECT held, retention_days, expires_at = %s::timestamptz + make_interval(days => retention_days)"
                " FROM api.run_retention_of(%s, %s, %s, %s, %s::timestamptz, NULL)")
        ended = "2026-01-01T00:00:00Z"
        held, days, expiry_ok = owner.execute(call, (ended, b, other, other, team, ended)).fetchone()
        assert held is True and expiry_ok, (held, days)
        # another team of b: not held
        assert owner.execute(call, (ended, b, other, other, other, ended)).fetchone()[0] is False
        with connect("api") as conn:
            conn.execute("SELECT set_config('paddock.tenant_id', %s, false)", (a,))
            held, days, _ = conn.execute(call, (ended, b, other, other, team, ended)).fetchone()
            assert held is False
            # b's own settings are not a's to read: the defaults (365, at most 3650)
            assert days == 365, days
            conn.execute("SELECT set_config('paddock.tenant_id', %s, false)", (b,))
            assert conn.execute(call, (ended, b, other, other, team, ended)).fetchone()[0] is True
    finally:
        owner.execute("DELETE FROM api.legal_holds WHERE tenant_id = %s AND object_id = %s", (b, team))


def test_run_row_copies_stay_within_the_tenant(owner):
    """The triggers that keep a run row's copies (api migrations 0030, 0032)
    run as the schema owner and name the row's tenant: a run row that
    references another tenant's sandbox version (a foreign key is checked
    without row-level security) copies neither its sandbox's name nor its
    version's retention, while its own tenant's names are copied."""
    import uuid
    a, b = _two_tenants(owner)
    ua = owner.execute("SELECT id FROM api.users WHERE tenant_id = %s LIMIT 1", (a,)).fetchone()[0]
    ub = owner.execute("SELECT id FROM api.users WHERE tenant_id = %s LIMIT 1", (b,)).fetchone()[0]
    ta, tb, sb, run = (str(uuid.uuid4()) for _ in range(4))
    tag = uuid.uuid4().hex[:10]
    owner.execute("INSERT INTO api.teams (id, tenant_id, name) VALUES (%s, %s, %s), (%s, %s, %s)",
                  (ta, a, f"copies-a-{tag}", tb, b, f"copies-b-{tag}"))
    owner.execute("INSERT INTO api.sandboxes (id, tenant_id, team_id, name, draft_spec, created_by)"
                  " VALUES (%s, %s, %s, %s, '{}', %s)", (sb, b, tb, f"secret-{tag}", ub))
    owner.execute("INSERT INTO api.sandbox_versions (sandbox_id, tenant_id, version, spec, spec_sha256, published_by)"
                  " VALUES (%s, %s, 1, '{\"retention_days\": 7}', 'x', %s)", (sb, b, ub))
    try:
        with connect("api") as conn:
            conn.execute("SELECT set_config('paddock.tenant_id', %s, false)", (a,))
            got = conn.execute("INSERT INTO api.runs (id, tenant_id, team_id, sandbox_id, version, created_by)"
                               " VALUES (%s, %s, %s, %s, 1, %s)"
                               " RETURNING sandbox_name, spec_retention_days, team_name, launcher_username",
                               (run, a, ta, sb, ua)).fetchone()
        assert got[:3] == (None, None, f"copies-a-{tag}") and got[3], got
    finally:
        owner.execute("DELETE FROM api.runs WHERE id = %s", (run,))
        owner.execute("DELETE FROM api.sandbox_versions WHERE sandbox_id = %s", (sb,))
        owner.execute("DELETE FROM api.sandboxes WHERE id = %s", (sb,))
        owner.execute("DELETE FROM api.teams WHERE id = ANY(%s::uuid[])", ([ta, tb],))
