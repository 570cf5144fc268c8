-- What GET /v1/runs/{id} showed from other tables, kept on the run row
-- (issue 10 §4): PostgreSQL sets up every relation of the read's plan at
-- each execution, and the three names (a scalar sub-select each) and the
-- approval counters (an aggregate over api.approvals) were about a third of
-- its CPU per GET (docs/CONTRACTS.md "Tenant isolation in PostgreSQL").
-- Both are kept by triggers, so every writer keeps them, whoever it is; the
-- trigger functions run as the schema owner and name the tenant in their
-- predicates, so they do not depend on the writing session's tenant setting.

-- ---- the sandbox's, team's and launcher's names
ALTER TABLE api.runs ADD COLUMN sandbox_name text, ADD COLUMN team_name text, ADD COLUMN launcher_username text;

CREATE FUNCTION api.runs_names() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS
$fn$
BEGIN
    NEW.sandbox_name := (SELECT x.name FROM api.sandboxes x WHERE x.id = NEW.sandbox_id AND x.tenant_id = NEW.tenant_id);
    NEW.team_name := (SELECT x.name FROM api.teams x WHERE x.id = NEW.team_id AND x.tenant_id = NEW.tenant_id);
    NEW.launcher_username := (SELECT x.username FROM api.users x
                              WHERE x.id = NEW.created_by AND x.tenant_id = NEW.tenant_id);
    RETURN NEW;
END
$fn$;
REVOKE ALL ON FUNCTION api.runs_names() FROM PUBLIC;
CREATE TRIGGER runs_names BEFORE INSERT OR UPDATE OF sandbox_id, team_id, created_by ON api.runs
    FOR EACH ROW EXECUTE FUNCTION api.runs_names();

-- A rename reaches every run of the renamed object in the renaming
-- transaction: one write per run, for an operation people make rarely.
CREATE FUNCTION api.runs_rename() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS
$fn$
BEGIN
    IF TG_TABLE_NAME = 'teams' THEN
        UPDATE api.runs SET team_name = NEW.name WHERE team_id = NEW.id AND tenant_id = NEW.tenant_id;
    ELSIF TG_TABLE_NAME = 'sandboxes' THEN
        UPDATE api.runs SET sandbox_name = NEW.name WHERE sandbox_id = NEW.id AND tenant_id = NEW.tenant_id;
    ELSE
        UPDATE api.runs SET launcher_username = NEW.username WHERE created_by = NEW.id AND tenant_id = NEW.tenant_id;
    END IF;
    RETURN NULL;
END
$fn$;
REVOKE ALL ON FUNCTION api.runs_rename() FROM PUBLIC;
CREATE TRIGGER teams_rename_runs AFTER UPDATE OF name ON api.teams
    FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name) EXECUTE FUNCTION api.runs_rename();
CREATE TRIGGER sandboxes_rename_runs AFTER UPDATE OF name ON api.sandboxes
    FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name) EXECUTE FUNCTION api.runs_rename();
CREATE TRIGGER users_rename_runs AFTER UPDATE OF username ON api.users
    FOR EACH ROW WHEN (OLD.username IS DISTINCT FROM NEW.username) EXECUTE FUNCTION api.runs_rename();

-- the runs already there: an update of created_by fires runs_names (and
-- no other trigger), so they are filled by the one copy, tenant and all
UPDATE api.runs SET created_by = created_by;

-- 0030's copy of the version's retention_days names the tenant too, as
-- these do: a foreign key is checked without row-level security, so a run
-- row may reference another tenant's version; nothing of it is copied.
CREATE OR REPLACE FUNCTION api.runs_spec_retention_days() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS
$fn$
BEGIN
    NEW.spec_retention_days := (SELECT (v.spec->>'retention_days')::integer FROM api.sandbox_versions v
                                WHERE v.sandbox_id = NEW.sandbox_id AND v.version = NEW.version
                                  AND v.tenant_id = NEW.tenant_id);
    RETURN NEW;
END
$fn$;

-- ---- the run's approvals by status: the decided ones counted, the pending
-- ones as their deadlines in ascending order, so that a read counts a
-- pending approval past its deadline as expired, as GET /v1/approvals shows
-- it, with width_bucket(now(), deadlines) (how many are <= now) and no
-- sub-select (run_get.c RUNS_APPROVAL_COUNTERS).
ALTER TABLE api.runs ADD COLUMN approvals_approved integer NOT NULL DEFAULT 0,
                     ADD COLUMN approvals_denied integer NOT NULL DEFAULT 0,
                     ADD COLUMN approvals_expired integer NOT NULL DEFAULT 0,
                     ADD COLUMN approvals_cancelled integer NOT NULL DEFAULT 0,
                     ADD COLUMN approvals_pending_deadlines timestamptz[] NOT NULL DEFAULT '{}';

-- Each statement's changed runs are counted again from api.approvals (a
-- run has a handful of approvals): a count kept by increments could drift,
-- a recount cannot. Statement-level, so that ending a run's pending
-- approvals in one UPDATE recounts its run once.
CREATE FUNCTION api.runs_approvals_recount_of(run_ids uuid[]) RETURNS void
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS
$fn$
UPDATE api.runs r
SET (approvals_approved, approvals_denied, approvals_expired, approvals_cancelled, approvals_pending_deadlines) =
    (SELECT count(*) FILTER (WHERE a.status = 'approved'), count(*) FILTER (WHERE a.status = 'denied'),
            count(*) FILTER (WHERE a.status = 'expired'), count(*) FILTER (WHERE a.status = 'cancelled'),
            coalesce(array_agg(a.deadline ORDER BY a.deadline) FILTER (WHERE a.status = 'pending'), '{}')
     FROM api.approvals a WHERE a.run_id = r.id AND a.tenant_id = r.tenant_id)
WHERE r.id = ANY(run_ids);
$fn$;
REVOKE ALL ON FUNCTION api.runs_approvals_recount_of(uuid[]) FROM PUBLIC;

CREATE FUNCTION api.runs_approvals_recount() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS
$fn$
BEGIN
    PERFORM api.runs_approvals_recount_of(ARRAY(SELECT DISTINCT c.run_id FROM changed c));
    RETURN NULL;
END
$fn$;
REVOKE ALL ON FUNCTION api.runs_approvals_recount() FROM PUBLIC;
CREATE TRIGGER approvals_recount_insert AFTER INSERT ON api.approvals
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION api.runs_approvals_recount();
CREATE TRIGGER approvals_recount_update AFTER UPDATE ON api.approvals
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION api.runs_approvals_recount();
CREATE TRIGGER approvals_recount_delete AFTER DELETE ON api.approvals
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION api.runs_approvals_recount();

SELECT api.runs_approvals_recount_of(ARRAY(SELECT DISTINCT a.run_id FROM api.approvals a));
