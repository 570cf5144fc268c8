-- Per run and model (issue 11): the UsageRecord's `models` breakdown, stored
-- in the transaction that inserted the run's billing.run_usage row, so a
-- redelivered record adds nothing here either (usage_store.c). tokens_in
-- includes cache_read_tokens and cache_write_tokens (proto ModelUsage).
-- team_id, user_id and day repeat the run's so GET /v1/usage?group_by=model
-- filters as the other groupings do.
CREATE TABLE billing.run_model_usage (
    run_id             uuid NOT NULL REFERENCES billing.run_usage (run_id),
    provider           text NOT NULL,
    model              text NOT NULL,
    tenant_id          uuid NOT NULL,
    team_id            uuid NOT NULL,
    user_id            uuid,
    day                date NOT NULL,
    calls              bigint NOT NULL DEFAULT 0,
    tokens_in          bigint NOT NULL DEFAULT 0,
    tokens_out         bigint NOT NULL DEFAULT 0,
    cache_read_tokens  bigint NOT NULL DEFAULT 0,
    cache_write_tokens bigint NOT NULL DEFAULT 0,
    cost_usd           double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, provider, model)
);
CREATE INDEX run_model_usage_tenant_day_idx ON billing.run_model_usage (tenant_id, day);

-- the same forced tenant policy as every billing table (0002)
ALTER TABLE billing.run_model_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE billing.run_model_usage FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON billing.run_model_usage
    USING (tenant_id = NULLIF(current_setting('paddock.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('paddock.tenant_id', true), '')::uuid);

-- billing writes it (0002's default privileges cover new tables); the api reads it (as 0003)
GRANT SELECT ON billing.run_model_usage TO paddock_api;
GRANT SELECT, INSERT, UPDATE, DELETE ON billing.run_model_usage TO paddock_billing;
