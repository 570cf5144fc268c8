-- Policy decisions for billing's Prometheus figures (issue 14 §4, docs/CONTRACTS.md
-- "Prometheus figures on billing's /metrics"): billing counts policy_decision
-- events by team, level and outcome. It gets this view, not the table: the
-- level and the action of each decision and nothing else of the session
-- history (no command, path or output). A view reads its table with its
-- owner's rights, and the owner (the migration role) may bypass row-level
-- security: the view therefore repeats the tenant predicate of the table's
-- policy (migration 0003), so billing sees one tenant at a time, the
-- paddock.tenant_id it sets, as everywhere else. security_barrier keeps a
-- caller's functions from seeing rows before that predicate.
CREATE VIEW evidence.policy_decision_outcomes WITH (security_barrier) AS
    SELECT run_id, coalesce(data->>'level', '') AS level, coalesce(data->>'action', '') AS action
    FROM evidence.run_events
    WHERE kind = 'policy_decision'
      AND tenant_id = NULLIF(current_setting('paddock.tenant_id', true), '')::uuid;
GRANT USAGE ON SCHEMA evidence TO paddock_billing;
GRANT SELECT ON evidence.policy_decision_outcomes TO paddock_billing;
