-- Tenant isolation in the database (docs/CONTRACTS.md "Tenant isolation in
-- PostgreSQL"). Every tenant-owned table shows and accepts only the rows of
-- the tenant named by the setting paddock.tenant_id, which the api sets from
-- the authenticated caller (db_open); unset or empty, nothing is visible.
-- FORCE applies the policies to the table owner as well. The api runs as
-- paddock_api, which owns nothing and has no BYPASSRLS; only the schema owner
-- (the migrating role, created BYPASSRLS by the deployment) sees across
-- tenants, and the api reaches across tenants only through the two
-- SECURITY DEFINER lookups below, which authentication needs before it
-- knows the tenant.

DO $rls$
DECLARE
    t text;
BEGIN
    FOR t IN SELECT c.table_name FROM information_schema.columns c
             JOIN information_schema.tables tb ON tb.table_schema = c.table_schema AND tb.table_name = c.table_name
             WHERE c.table_schema = 'api' AND c.column_name = 'tenant_id' AND tb.table_type = 'BASE TABLE'
    LOOP
        EXECUTE format('ALTER TABLE api.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE api.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON api.%I'
                       ' USING (tenant_id = NULLIF(current_setting(''paddock.tenant_id'', true), '''')::uuid)'
                       ' WITH CHECK (tenant_id = NULLIF(current_setting(''paddock.tenant_id'', true), '''')::uuid)', t);
    END LOOP;
END
$rls$;

-- a tenant sees its own row only
ALTER TABLE api.tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE api.tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api.tenants
    USING (id = NULLIF(current_setting('paddock.tenant_id', true), '')::uuid)
    WITH CHECK (id = NULLIF(current_setting('paddock.tenant_id', true), '')::uuid);

-- Pre-authentication lookups: a login names its tenant, a bearer token names
-- nothing. They return only what authentication needs.
CREATE FUNCTION api.tenant_id_by_name(tenant_name text) RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS
$fn$ SELECT id FROM api.tenants WHERE name = tenant_name $fn$;

CREATE FUNCTION api.token_caller(token_sha256 text)
    RETURNS TABLE (user_id uuid, username text, tenant_id uuid, tenant_name text, tenant_admin boolean)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS
$fn$
    SELECT u.id, u.username, t.id, t.name, 'tenant_admin' = ANY (u.tenant_roles)
    FROM api.tokens k
    JOIN api.users u ON u.id = k.user_id AND u.tenant_id = k.tenant_id
    JOIN api.tenants t ON t.id = k.tenant_id
    WHERE k.token_sha256 = token_caller.token_sha256 AND k.revoked_at IS NULL AND k.expires_at > now()
      AND NOT u.disabled
$fn$;

REVOKE ALL ON FUNCTION api.tenant_id_by_name(text), api.token_caller(text) FROM PUBLIC;

-- The runtime role: data access only, never DDL; tables of later migrations
-- get the same privileges through the default privileges.
GRANT USAGE ON SCHEMA api TO paddock_api;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA api TO paddock_api;
REVOKE INSERT, UPDATE, DELETE ON api.schema_migrations FROM paddock_api;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA api TO paddock_api;
GRANT EXECUTE ON FUNCTION api.tenant_id_by_name(text), api.token_caller(text) TO paddock_api;
ALTER DEFAULT PRIVILEGES IN SCHEMA api GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO paddock_api;
ALTER DEFAULT PRIVILEGES IN SCHEMA api GRANT USAGE, SELECT ON SEQUENCES TO paddock_api;
