-- Ingest cost (issue 10 §4, profiled): the policy of evidence.run_events read
-- paddock.tenant_id for every row it checked, so every inserted event paid a
-- current_setting(), a NULLIF and a uuid parse (ExecWithCheckOptions: about
-- 6% of the evidence backend's CPU in a 200,000-event bench/ingest run). As
-- a scalar subquery (an initplan) the setting is read and parsed once per
-- execution of a statement. The rows a statement may see and write are the
-- same: the policy still compares every row's tenant_id with the setting as
-- the statement starts, and evidence and the api set the tenant in
-- statements of their own before the ones that touch this table
-- (docs/CONTRACTS.md "Tenant isolation in PostgreSQL").
ALTER POLICY tenant_isolation ON evidence.run_events
    USING (tenant_id = (SELECT NULLIF(current_setting('paddock.tenant_id', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT NULLIF(current_setting('paddock.tenant_id', true), '')::uuid));
