-- Tenant isolation in the database (docs/CONTRACTS.md "Tenant isolation in
-- PostgreSQL"): the same forced policy as the api schema; billing stores each
-- usage record under the record's tenant (pg_set_tenant).

DO $rls$
DECLARE
    t text;
BEGIN
    FOR t IN SELECT c.table_name FROM information_schema.columns c
             JOIN information_schema.tables tb ON tb.table_schema = c.table_schema AND tb.table_name = c.table_name
             WHERE c.table_schema = 'billing' AND c.column_name = 'tenant_id' AND tb.table_type = 'BASE TABLE'
    LOOP
        EXECUTE format('ALTER TABLE billing.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE billing.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON billing.%I'
                       ' USING (tenant_id = NULLIF(current_setting(''paddock.tenant_id'', true), '''')::uuid)'
                       ' WITH CHECK (tenant_id = NULLIF(current_setting(''paddock.tenant_id'', true), '''')::uuid)', t);
    END LOOP;
END
$rls$;

GRANT USAGE ON SCHEMA billing TO paddock_billing;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA billing TO paddock_billing;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA billing TO paddock_billing;
REVOKE INSERT, UPDATE, DELETE ON billing.schema_migrations FROM paddock_billing;
ALTER DEFAULT PRIVILEGES IN SCHEMA billing GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO paddock_billing;
ALTER DEFAULT PRIVILEGES IN SCHEMA billing GRANT USAGE, SELECT ON SEQUENCES TO paddock_billing;
