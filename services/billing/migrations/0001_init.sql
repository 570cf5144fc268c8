-- One row per run, the first UsageRecord received for it (docs/CONTRACTS.md
-- "Database"); its primary key is what makes redelivery harmless.
CREATE TABLE billing.run_usage (
    run_id          uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL,
    team_id         uuid NOT NULL,
    user_id         uuid,
    day             date NOT NULL,
    runtime_seconds double precision NOT NULL DEFAULT 0,
    tokens_in       bigint NOT NULL DEFAULT 0,
    tokens_out      bigint NOT NULL DEFAULT 0,
    egress_bytes    bigint NOT NULL DEFAULT 0,
    cost_usd        double precision NOT NULL DEFAULT 0,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX run_usage_tenant_day_idx ON billing.run_usage (tenant_id, day);

-- Per team and UTC day, the sum of run_usage rows, kept in the same
-- transaction as each insert.
CREATE TABLE billing.team_daily (
    tenant_id       uuid NOT NULL,
    team_id         uuid NOT NULL,
    day             date NOT NULL,
    runs            bigint NOT NULL DEFAULT 0,
    runtime_seconds double precision NOT NULL DEFAULT 0,
    tokens_in       bigint NOT NULL DEFAULT 0,
    tokens_out      bigint NOT NULL DEFAULT 0,
    egress_bytes    bigint NOT NULL DEFAULT 0,
    cost_usd        double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, team_id, day)
);
