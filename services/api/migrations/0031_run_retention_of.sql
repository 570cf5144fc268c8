-- A run's retention from the run row a query already has (issue 10 §4:
-- GET /v1/runs/{id} joined api.run_retention, which read api.runs a second
-- time for the row the read had just found). The formula of 0025/0030 moves
-- into one function over the run's columns; the view and the read both call
-- it (docs/CONTRACTS.md "Retention and legal hold"). LANGUAGE sql, STABLE,
-- neither STRICT nor SECURITY DEFINER nor SET: PostgreSQL inlines it into
-- the calling query like a view, so its tables are read under the caller's
-- row-level security exactly as the view's were.
CREATE FUNCTION api.run_retention_of(r_tenant uuid, r_id uuid, r_sandbox uuid, r_team uuid,
                                     r_ended timestamptz, r_spec_days integer)
    RETURNS TABLE (retention_days integer, expires_at timestamptz, held boolean)
    LANGUAGE sql STABLE AS
$fn$
SELECT least(coalesce(r_spec_days, tr.default_days, 365), coalesce(tr.max_days, 3650)),
       r_ended + make_interval(days => least(coalesce(r_spec_days, tr.default_days, 365),
                                             coalesce(tr.max_days, 3650))),
       EXISTS (SELECT 1 FROM api.legal_holds h
               WHERE h.tenant_id = r_tenant
                 AND ((h.kind = 'run' AND h.object_id = r_id) OR (h.kind = 'sandbox' AND h.object_id = r_sandbox)
                      OR (h.kind = 'team' AND h.object_id = r_team)))
FROM (VALUES (1)) one
LEFT JOIN api.tenant_retention tr ON tr.tenant_id = r_tenant
$fn$;
REVOKE ALL ON FUNCTION api.run_retention_of(uuid, uuid, uuid, uuid, timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api.run_retention_of(uuid, uuid, uuid, uuid, timestamptz, integer) TO paddock_api;

-- 0030's view, same columns and rows, its formula the function's.
CREATE OR REPLACE VIEW api.run_retention WITH (security_invoker = true) AS
SELECT r.tenant_id, r.id AS run_id, r.team_id, r.sandbox_id, r.version, r.status, r.ended_at,
       x.retention_days, x.expires_at, x.held
FROM api.runs r
CROSS JOIN LATERAL api.run_retention_of(r.tenant_id, r.id, r.sandbox_id, r.team_id, r.ended_at,
                                        r.spec_retention_days) x
WHERE r.ended_at IS NOT NULL;
