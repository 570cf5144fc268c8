-- Live model usage and the agent's session on a run (issue 11 §3, session
-- decision 4; docs/CONTRACTS.md "Model gateway"). The runner-agent's `usage`
-- events (running totals, copied to paddock.runs.status) are applied by the
-- api's status consumer field by field with GREATEST, so a redelivered or
-- older one never lowers a figure. agent_session is data.agent of the
-- `running` status ({type, cli_version, model, effort?}), NULL until known.
ALTER TABLE api.runs
    ADD COLUMN usage_model_calls bigint NOT NULL DEFAULT 0,
    ADD COLUMN usage_input_tokens bigint NOT NULL DEFAULT 0,
    ADD COLUMN usage_output_tokens bigint NOT NULL DEFAULT 0,
    ADD COLUMN usage_cache_read_tokens bigint NOT NULL DEFAULT 0,
    ADD COLUMN usage_cache_write_tokens bigint NOT NULL DEFAULT 0,
    ADD COLUMN usage_cost_usd double precision NOT NULL DEFAULT 0,
    ADD COLUMN agent_session jsonb;
