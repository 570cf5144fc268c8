-- Tenant isolation in the database (docs/CONTRACTS.md "Tenant isolation in
-- PostgreSQL"): the same forced policy as the api schema. The evidence
-- service stores each message under the message's tenant (pg_set_tenant);
-- the api reads events, artifacts and the audit chain under the caller's.

DO $rls$
DECLARE
    t text;
BEGIN
    FOR t IN SELECT c.table_name FROM information_schema.columns c
             JOIN information_schema.tables tb ON tb.table_schema = c.table_schema AND tb.table_name = c.table_name
             WHERE c.table_schema = 'evidence' AND c.column_name = 'tenant_id' AND tb.table_type = 'BASE TABLE'
    LOOP
        EXECUTE format('ALTER TABLE evidence.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE evidence.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON evidence.%I'
                       ' USING (tenant_id = NULLIF(current_setting(''paddock.tenant_id'', true), '''')::uuid)'
                       ' WITH CHECK (tenant_id = NULLIF(current_setting(''paddock.tenant_id'', true), '''')::uuid)', t);
    END LOOP;
END
$rls$;

GRANT USAGE ON SCHEMA evidence TO paddock_evidence, paddock_api;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA evidence TO paddock_evidence;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA evidence TO paddock_evidence;
REVOKE INSERT, UPDATE, DELETE ON evidence.schema_migrations FROM paddock_evidence;
-- the audit log is append-only for the service (only the head moves)
REVOKE UPDATE, DELETE ON evidence.audit_log FROM paddock_evidence;
ALTER DEFAULT PRIVILEGES IN SCHEMA evidence GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO paddock_evidence;
ALTER DEFAULT PRIVILEGES IN SCHEMA evidence GRANT USAGE, SELECT ON SEQUENCES TO paddock_evidence;
-- what the api serves: session history, artifact manifests, the audit chain
GRANT SELECT ON evidence.run_events, evidence.artifacts, evidence.audit_log, evidence.audit_heads, evidence.schema_migrations
    TO paddock_api;
