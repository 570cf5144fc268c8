-- GET /v1/runs/{id} counts a run's policy_decision events by action
-- (issue 12 §4, docs/CONTRACTS.md "The approval queue"). Without an index
-- that count reads every event of the run through the primary key (a run
-- with 100k file events: ~100k rows per GET); this partial index holds only
-- policy_decision rows (at the platform levels they exist only when a rule
-- matched), so the count reads those alone and ingest pays one predicate
-- check per other row.
CREATE INDEX run_events_policy_decisions ON evidence.run_events (run_id, seq) WHERE kind = 'policy_decision';
