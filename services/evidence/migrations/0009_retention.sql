-- Retention sweeps (issue 14 §3; docs/CONTRACTS.md "Retention and legal
-- hold"). A tombstone outlives each deleted run's events and artifacts: it is
-- written (deleted_at NULL) before anything is deleted, with the counts and
-- the hash of what will go, and completed (deleted_at set) once the objects,
-- the rows and the audit record are done, so a sweep killed at any point is
-- finished by the next one.
CREATE TABLE evidence.run_tombstones (
    run_id          uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL,
    team_id         uuid NOT NULL,
    sandbox_id      uuid NOT NULL,
    version         integer NOT NULL,
    status          text NOT NULL,
    ended_at        timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    retention_days  integer NOT NULL,
    reason          text NOT NULL DEFAULT 'retention',
    events          bigint NOT NULL,
    artifacts       bigint NOT NULL,
    artifact_bytes  bigint NOT NULL,
    events_sha256   text NOT NULL,
    artifacts_sha256 text NOT NULL,
    deleted_sha256  text NOT NULL,
    started_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    audit_message_id uuid NOT NULL
);
CREATE INDEX run_tombstones_pending ON evidence.run_tombstones (started_at) WHERE deleted_at IS NULL;
ALTER TABLE evidence.run_tombstones ENABLE ROW LEVEL SECURITY;
ALTER TABLE evidence.run_tombstones FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON evidence.run_tombstones
    USING (tenant_id = NULLIF(current_setting('paddock.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('paddock.tenant_id', true), '')::uuid);

GRANT SELECT, INSERT, UPDATE ON evidence.run_tombstones TO paddock_evidence;
GRANT SELECT ON evidence.run_tombstones TO paddock_api;
-- the sweeper deletes a run's signed records with its events
GRANT DELETE ON evidence.signed_records TO paddock_evidence;

-- The runs to sweep next, across tenants: ended, expired at business time
-- now_ts (api.run_retention, api migration 0025), not held, not swept yet;
-- plus tombstones left unfinished by an interrupted sweep. The one way the
-- sweeper reads across tenants (SECURITY DEFINER, EXECUTE for the evidence
-- role only); PL/pgSQL, so the api schema is resolved when called.
CREATE FUNCTION evidence.retention_due(now_ts timestamptz, max_rows integer)
    RETURNS TABLE (tenant_id uuid, run_id uuid)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS
$fn$
BEGIN
    RETURN QUERY
    (SELECT t.tenant_id, t.run_id FROM evidence.run_tombstones t WHERE t.deleted_at IS NULL
     ORDER BY t.started_at LIMIT max_rows)
    UNION ALL
    (SELECT x.tenant_id, x.run_id FROM api.run_retention x
     WHERE x.expires_at <= now_ts AND NOT x.held
       AND NOT EXISTS (SELECT 1 FROM evidence.run_tombstones t WHERE t.run_id = x.run_id)
     ORDER BY x.expires_at LIMIT max_rows);
END
$fn$;
REVOKE ALL ON FUNCTION evidence.retention_due(timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evidence.retention_due(timestamptz, integer) TO paddock_evidence;

-- One run's retention facts (api.run_retention) for the sweeper, which
-- checks them again under the tenant's retention lock before it writes the
-- tombstone (a hold set meanwhile wins). Same privileges as above.
CREATE FUNCTION evidence.retention_of(run uuid)
    RETURNS TABLE (tenant_id uuid, team_id uuid, sandbox_id uuid, version integer, status text,
                   ended_at timestamptz, expires_at timestamptz, retention_days integer, held boolean)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS
$fn$
BEGIN
    RETURN QUERY
    SELECT x.tenant_id, x.team_id, x.sandbox_id, x.version, x.status, x.ended_at, x.expires_at, x.retention_days,
           x.held
    FROM api.run_retention x WHERE x.run_id = run;
END
$fn$;
REVOKE ALL ON FUNCTION evidence.retention_of(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evidence.retention_of(uuid) TO paddock_evidence;

-- S3 object lock (where the bucket has it): each artifact is written with
-- GOVERNANCE retention and its version id kept, so the sweeper deletes that
-- version for good (with bypass-governance) once it expired and no hold
-- covers it.
ALTER TABLE evidence.artifacts ADD COLUMN s3_version_id text;

-- A run's retention in days (api.run_retention's formula, also before the
-- run ended): the artifact's retain-until is its upload + this.
CREATE FUNCTION evidence.retention_days_of(run uuid) RETURNS integer
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS
$fn$
BEGIN
    RETURN (SELECT least(coalesce((v.spec->>'retention_days')::integer, tr.default_days, 365),
                         coalesce(tr.max_days, 3650))
            FROM api.runs r
            JOIN api.sandbox_versions v ON v.sandbox_id = r.sandbox_id AND v.version = r.version
            LEFT JOIN api.tenant_retention tr ON tr.tenant_id = r.tenant_id
            WHERE r.id = run);
END
$fn$;
REVOKE ALL ON FUNCTION evidence.retention_days_of(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evidence.retention_days_of(uuid) TO paddock_evidence;
