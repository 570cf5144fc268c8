-- GET /v1/runs/{id} showed a run's policy_decision events by action by
-- counting them in evidence.run_events on every read (0008's partial index):
-- about a quarter of PostgreSQL's time per GET (issue 10 §4, bench/api_read).
-- evidence now keeps the counts in the run's history row, in the same
-- statement that inserts the events (each (run, seq) counted once, as
-- events_stored is: docs/CONTRACTS.md "Run history completeness").
ALTER TABLE evidence.run_history
    ADD COLUMN decisions_allow bigint NOT NULL DEFAULT 0,
    ADD COLUMN decisions_ask bigint NOT NULL DEFAULT 0,
    ADD COLUMN decisions_deny bigint NOT NULL DEFAULT 0;

-- Runs stored before this migration: their counts as they stand.
UPDATE evidence.run_history h
SET decisions_allow = c.allow, decisions_ask = c.ask, decisions_deny = c.deny
FROM (SELECT e.run_id,
             count(*) FILTER (WHERE e.data->>'action' = 'allow') AS allow,
             count(*) FILTER (WHERE e.data->>'action' = 'ask') AS ask,
             count(*) FILTER (WHERE e.data->>'action' = 'deny') AS deny
      FROM evidence.run_events e WHERE e.kind = 'policy_decision' GROUP BY e.run_id) c
WHERE c.run_id = h.run_id;
