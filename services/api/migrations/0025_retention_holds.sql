-- Retention and legal hold (issue 14 §3; docs/CONTRACTS.md "Retention and
-- legal hold"). The api keeps the tenant's retention settings and the legal
-- holds; evidence's sweeper reads them (evidence migration 0009) and deletes
-- what expired.

-- The tenant's default and maximum retention in days; no row: 365 and 3650.
CREATE TABLE api.tenant_retention (
    tenant_id    uuid PRIMARY KEY REFERENCES api.tenants(id),
    default_days integer NOT NULL CHECK (default_days BETWEEN 1 AND 3650),
    max_days     integer NOT NULL CHECK (max_days BETWEEN 1 AND 3650),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    updated_by   uuid NOT NULL REFERENCES api.users(id),
    CHECK (default_days <= max_days)
);

-- A legal hold on a run, a sandbox definition (all its versions' runs) or a
-- team (all its runs). Lifting deletes the row; the audit log keeps both.
CREATE TABLE api.legal_holds (
    tenant_id  uuid NOT NULL REFERENCES api.tenants(id),
    kind       text NOT NULL CHECK (kind IN ('run', 'sandbox', 'team')),
    object_id  uuid NOT NULL,
    reason     text NOT NULL,
    set_by     uuid NOT NULL REFERENCES api.users(id),
    set_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, kind, object_id)
);

DO $rls$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenant_retention', 'legal_holds'] LOOP
        EXECUTE format('ALTER TABLE api.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE api.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON api.%I'
                       ' USING (tenant_id = NULLIF(current_setting(''paddock.tenant_id'', true), '''')::uuid)'
                       ' WITH CHECK (tenant_id = NULLIF(current_setting(''paddock.tenant_id'', true), '''')::uuid)', t);
    END LOOP;
END
$rls$;

GRANT SELECT, INSERT, UPDATE, DELETE ON api.tenant_retention, api.legal_holds TO paddock_api;

-- Every ended run's retention: the one definition of expiry. security_invoker,
-- so the api reads it under its caller's tenant (row-level security of the
-- tables below); evidence's SECURITY DEFINER functions read it as the schema
-- owner, across tenants. retention_days = the version's spec.retention_days
-- or the tenant default, never above the tenant maximum (a lowered maximum
-- shortens what was published before it).
CREATE VIEW api.run_retention WITH (security_invoker = true) AS
SELECT r.tenant_id, r.id AS run_id, r.team_id, r.sandbox_id, r.version, r.status, r.ended_at,
       least(coalesce((v.spec->>'retention_days')::integer, tr.default_days, 365), coalesce(tr.max_days, 3650))
           AS retention_days,
       r.ended_at + make_interval(days => least(coalesce((v.spec->>'retention_days')::integer, tr.default_days, 365),
                                                coalesce(tr.max_days, 3650))) AS expires_at,
       EXISTS (SELECT 1 FROM api.legal_holds h
               WHERE h.tenant_id = r.tenant_id
                 AND ((h.kind = 'run' AND h.object_id = r.id) OR (h.kind = 'sandbox' AND h.object_id = r.sandbox_id)
                      OR (h.kind = 'team' AND h.object_id = r.team_id))) AS held
FROM api.runs r
JOIN api.sandbox_versions v ON v.sandbox_id = r.sandbox_id AND v.version = r.version
LEFT JOIN api.tenant_retention tr ON tr.tenant_id = r.tenant_id
WHERE r.ended_at IS NOT NULL;

GRANT SELECT ON api.run_retention TO paddock_api;

-- The tenant role auditor (issue 14 §3): read-only access to the evidence
-- and audit of every team of the tenant, and legal holds (authz.c).
ALTER TABLE api.users DROP CONSTRAINT users_tenant_roles_known;
ALTER TABLE api.users ADD CONSTRAINT users_tenant_roles_known CHECK (
    tenant_roles <@ ARRAY['tenant_admin', 'auditor']::text[]);

-- Whether the bearer token's user is an auditor, read in the token lookup's
-- statement (auth.c) next to api.token_caller, whose signature stays. A
-- SECURITY DEFINER probe by primary key (the lookup's tenant setting is made
-- in the same statement, so row-level security cannot be relied on here);
-- PL/pgSQL so its plan is kept (0016).
CREATE FUNCTION api.user_is_auditor(uid uuid) RETURNS boolean
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS
$fn$
BEGIN
    RETURN coalesce((SELECT 'auditor' = ANY (u.tenant_roles) FROM api.users u WHERE u.id = uid), false);
END
$fn$;
REVOKE ALL ON FUNCTION api.user_is_auditor(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api.user_is_auditor(uuid) TO paddock_api;
