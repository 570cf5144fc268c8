-- Team budgets per month (issue 14 §4, docs/CONTRACTS.md "Budgets"). A limit
-- left NULL is no limit. Months are UTC calendar months of the business
-- clock (lib/core/business_clock.h): a run counts in full in the month it was
-- launched in (runs.budget_month, stamped at launch), so moving the clock to
-- the next month starts from zero without rewriting history.
CREATE TABLE api.team_budgets (
    tenant_id       uuid NOT NULL REFERENCES api.tenants(id) ON DELETE CASCADE,
    team_id         uuid NOT NULL REFERENCES api.teams(id) ON DELETE CASCADE,
    month_usd       double precision CHECK (month_usd > 0),
    month_tokens    bigint CHECK (month_tokens > 0),
    month_runtime_s double precision CHECK (month_runtime_s > 0),
    updated_by      uuid,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (team_id)
);

-- One notice per team, month, limit and threshold: the primary key is what
-- makes the notice on paddock.usage.alerts go out exactly once (its outbox
-- row is inserted only in the transaction whose insert here took place).
CREATE TABLE api.budget_alerts (
    tenant_id     uuid NOT NULL REFERENCES api.tenants(id) ON DELETE CASCADE,
    team_id       uuid NOT NULL REFERENCES api.teams(id) ON DELETE CASCADE,
    month         date NOT NULL,
    budget_limit  text NOT NULL CHECK (budget_limit IN ('month_usd', 'month_tokens', 'month_runtime_s')),
    threshold_pct integer NOT NULL CHECK (threshold_pct IN (80, 100)),
    limit_value   double precision NOT NULL,
    used          double precision NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (team_id, month, budget_limit, threshold_pct)
);

-- budget_month: the business month the run was launched in (NULL for runs
-- launched before this migration: they count in no month's budget).
-- budget_stopped_at: when a budget at 100 % ended it (one cancel per run).
ALTER TABLE api.runs
    ADD COLUMN budget_month date,
    ADD COLUMN budget_stopped_at timestamptz;
CREATE INDEX runs_team_budget_month ON api.runs (team_id, budget_month);

DO $rls$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['team_budgets', 'budget_alerts'] LOOP
        EXECUTE format('ALTER TABLE api.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE api.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON api.%I'
                       ' USING (tenant_id = NULLIF(current_setting(''paddock.tenant_id'', true), '''')::uuid)'
                       ' WITH CHECK (tenant_id = NULLIF(current_setting(''paddock.tenant_id'', true), '''')::uuid)', t);
    END LOOP;
END
$rls$;

-- the notices leave through the api's outbox (docs/CONTRACTS.md "The api's outbox")
ALTER TABLE api.outbox DROP CONSTRAINT outbox_topic_check;
ALTER TABLE api.outbox ADD CONSTRAINT outbox_topic_check
    CHECK (topic IN ('paddock.runs.requested', 'paddock.runs.control', 'paddock.audit', 'paddock.approvals',
                     'paddock.runs.events', 'paddock.usage.alerts'));

-- billing's /metrics (docs/CONTRACTS.md "Usage, budgets and governance
-- figures"): per team, across tenants, the run and approval counts beside its
-- own usage sums. It reads these tables one tenant at a time (the forced
-- tenant policy still applies), and learns the tenants from this function.
GRANT USAGE ON SCHEMA api TO paddock_billing;
GRANT SELECT ON api.teams, api.runs, api.approvals TO paddock_billing;
CREATE FUNCTION api.metrics_tenants() RETURNS TABLE (id uuid, name text)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS
$fn$ SELECT id, name FROM api.tenants ORDER BY name $fn$;
REVOKE EXECUTE ON FUNCTION api.metrics_tenants() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api.metrics_tenants() TO paddock_billing;
