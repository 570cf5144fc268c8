-- A run's retention without its sandbox version's spec (issue 10 §4:
-- GET /v1/runs/{id} reads api.run_retention on every request for an ended
-- run). The version's spec.retention_days is kept on the run row when the
-- run is inserted (a published version's spec never changes), so the view
-- no longer joins api.sandbox_versions and unpacks its jsonb spec. The
-- tenant's default and maximum are still read when the view is, so that a
-- changed tenant setting applies to every run as before (0025).

-- the version's spec.retention_days; null: the spec names none (the tenant default)
ALTER TABLE api.runs ADD COLUMN spec_retention_days integer;

-- Every insert, whoever makes it: the value comes from the version the run
-- references (its foreign key), read as the schema owner so that it does
-- not depend on the inserting session's tenant setting.
CREATE FUNCTION api.runs_spec_retention_days() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS
$fn$
BEGIN
    NEW.spec_retention_days := (SELECT (v.spec->>'retention_days')::integer FROM api.sandbox_versions v
                                WHERE v.sandbox_id = NEW.sandbox_id AND v.version = NEW.version);
    RETURN NEW;
END
$fn$;
REVOKE ALL ON FUNCTION api.runs_spec_retention_days() FROM PUBLIC;
CREATE TRIGGER runs_spec_retention_days BEFORE INSERT OR UPDATE OF sandbox_id, version ON api.runs
    FOR EACH ROW EXECUTE FUNCTION api.runs_spec_retention_days();

UPDATE api.runs r SET spec_retention_days = (v.spec->>'retention_days')::integer
FROM api.sandbox_versions v
WHERE v.sandbox_id = r.sandbox_id AND v.version = r.version AND v.spec ? 'retention_days';

-- 0025's view, same columns and rows (the version always exists: foreign
-- key runs_sandbox_id_version_fkey), its days from the run row.
CREATE OR REPLACE VIEW api.run_retention WITH (security_invoker = true) AS
SELECT r.tenant_id, r.id AS run_id, r.team_id, r.sandbox_id, r.version, r.status, r.ended_at,
       least(coalesce(r.spec_retention_days, tr.default_days, 365), coalesce(tr.max_days, 3650)) AS retention_days,
       r.ended_at + make_interval(days => least(coalesce(r.spec_retention_days, tr.default_days, 365),
                                                coalesce(tr.max_days, 3650))) AS expires_at,
       EXISTS (SELECT 1 FROM api.legal_holds h
               WHERE h.tenant_id = r.tenant_id
                 AND ((h.kind = 'run' AND h.object_id = r.id) OR (h.kind = 'sandbox' AND h.object_id = r.sandbox_id)
                      OR (h.kind = 'team' AND h.object_id = r.team_id))) AS held
FROM api.runs r
LEFT JOIN api.tenant_retention tr ON tr.tenant_id = r.tenant_id
WHERE r.ended_at IS NOT NULL;
