-- Legal hold at the storage level (issue 14 §3; docs/CONTRACTS.md "Retention
-- and legal hold"): an artifact of a run that a legal hold covers (through
-- the run, its sandbox or its team, api.legal_holds) carries S3 legal hold
-- ON, so no one deletes its version, not even with bypass-governance; lifting
-- the last hold covering the run sets it OFF. s3_legal_hold is the state
-- applied to the stored version; the sweeper thread reconciles it with the
-- holds (retention_sweep.c), idempotently.
ALTER TABLE evidence.artifacts ADD COLUMN s3_legal_hold boolean NOT NULL DEFAULT false;
CREATE INDEX artifacts_s3_legal_hold ON evidence.artifacts (run_id) WHERE s3_legal_hold;

-- Whether a legal hold covers the run (ended or not): an upload of a held
-- run's artifact sets the hold with the object. SECURITY DEFINER, EXECUTE
-- for the evidence role only, like retention_of (0009).
CREATE FUNCTION evidence.run_held(run uuid) RETURNS boolean
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS
$fn$
BEGIN
    RETURN EXISTS (SELECT 1 FROM api.runs r JOIN api.legal_holds h ON h.tenant_id = r.tenant_id
                   AND ((h.kind = 'run' AND h.object_id = r.id) OR (h.kind = 'sandbox' AND h.object_id = r.sandbox_id)
                        OR (h.kind = 'team' AND h.object_id = r.team_id))
                   WHERE r.id = run);
END
$fn$;
REVOKE ALL ON FUNCTION evidence.run_held(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evidence.run_held(uuid) TO paddock_evidence;

-- The stored versions whose legal hold differs from what the holds want,
-- across tenants: held runs' artifacts not yet ON, and artifacts ON whose
-- run no hold covers any more. Versionless objects (a bucket without object
-- lock) and runs whose deletion began (a tombstone) are left alone.
CREATE FUNCTION evidence.legal_hold_due(max_rows integer)
    RETURNS TABLE (tenant_id uuid, run_id uuid, name text, s3_key text, s3_version_id text, held boolean)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS
$fn$
BEGIN
    RETURN QUERY
    WITH covered AS (
        SELECT DISTINCT r.id AS run FROM api.legal_holds h JOIN api.runs r ON r.tenant_id = h.tenant_id
            AND ((h.kind = 'run' AND r.id = h.object_id) OR (h.kind = 'sandbox' AND r.sandbox_id = h.object_id)
                 OR (h.kind = 'team' AND r.team_id = h.object_id)))
    SELECT a.tenant_id, a.run_id, a.name, a.s3_key, a.s3_version_id, NOT a.s3_legal_hold
    FROM evidence.artifacts a
    WHERE a.s3_version_id IS NOT NULL
      AND ((NOT a.s3_legal_hold AND a.run_id IN (SELECT c.run FROM covered c))
           OR (a.s3_legal_hold AND a.run_id NOT IN (SELECT c.run FROM covered c)))
      AND NOT EXISTS (SELECT 1 FROM evidence.run_tombstones t WHERE t.run_id = a.run_id)
    ORDER BY a.run_id, a.name
    LIMIT max_rows;
END
$fn$;
REVOKE ALL ON FUNCTION evidence.legal_hold_due(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evidence.legal_hold_due(integer) TO paddock_evidence;

-- Policy decisions by rule on billing's /metrics (issue 14 §4, docs/CONTRACTS.md
-- "Prometheus figures on billing's /metrics"): the view of 0010 gains the
-- rule's source (spec.policy.rules[i], pack:<id>.rules[j]; "" for none), a
-- reference into the definition, not session data. Same tenant predicate.
CREATE OR REPLACE VIEW evidence.policy_decision_outcomes WITH (security_barrier) AS
    SELECT run_id, coalesce(data->>'level', '') AS level, coalesce(data->>'action', '') AS action,
           coalesce(data->>'rule', '') AS rule
    FROM evidence.run_events
    WHERE kind = 'policy_decision'
      AND tenant_id = NULLIF(current_setting('paddock.tenant_id', true), '')::uuid;
