-- Cache tokens per run (issue 14 §4: GET /v1/usage shows tokens in, out and
-- cache for every grouping, not only per model): the sums of the record's
-- per-model cache_read_tokens and cache_write_tokens (both included in
-- tokens_in), written with the run_usage row. Rows recorded before stay 0.
ALTER TABLE billing.run_usage
    ADD COLUMN cache_read_tokens bigint NOT NULL DEFAULT 0,
    ADD COLUMN cache_write_tokens bigint NOT NULL DEFAULT 0;
