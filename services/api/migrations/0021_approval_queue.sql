-- The approval queue (issue 12 §4, docs/CONTRACTS.md "The approval queue"):
-- `seq` is the approval_requested event's seq in its run (GET /v1/approvals
-- shows the run's events before it as context, read from
-- evidence.run_events by its primary key (run_id, seq)); `cancelled` is the
-- status of an approval still pending when its run reached a terminal status
-- (the status consumer marks it in the transaction that applies the end).
ALTER TABLE api.approvals ADD COLUMN seq bigint;
ALTER TABLE api.approvals DROP CONSTRAINT approvals_status_check;
ALTER TABLE api.approvals ADD CONSTRAINT approvals_status_check
    CHECK (status IN ('pending', 'approved', 'denied', 'expired', 'cancelled'));
-- a run's pending approvals, found when the run ends
CREATE INDEX approvals_run_pending ON api.approvals (run_id) WHERE status = 'pending';
-- approval notices (paddock.approvals) leave through the outbox too
ALTER TABLE api.outbox DROP CONSTRAINT outbox_topic_check;
ALTER TABLE api.outbox ADD CONSTRAINT outbox_topic_check
    CHECK (topic IN ('paddock.runs.requested', 'paddock.runs.control', 'paddock.audit', 'paddock.approvals'));
