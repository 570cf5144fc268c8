-- CPU seconds per run (issue 14 §4: GET /v1/usage shows cpu seconds): the
-- CPU time of the run's sandbox cgroup the runner-agent read at the end
-- (UsageRecord.cpu_seconds, proto field 13). Rows recorded before stay 0.
ALTER TABLE billing.run_usage ADD COLUMN cpu_seconds double precision NOT NULL DEFAULT 0;
