-- History completeness (issue 10, decision 5): kept by evidence in the same
-- transaction as the events. complete = the terminal event is stored and
-- events_stored + events_lost >= terminal_seq (events_lost: what the runner
-- said it could not deliver, in its terminal status data). max_seq is the
-- highest stored seq, where a platform verdict (env.seq 0) is appended
-- (max_seq + 1); terminal_status is the run's one terminal status (decision 4:
-- a later terminal event is stored superseded).
CREATE TABLE evidence.run_history (
    run_id          uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL,
    events_stored   bigint NOT NULL DEFAULT 0,
    max_seq         bigint NOT NULL DEFAULT 0,
    terminal_seq    bigint,
    terminal_status text,
    events_lost     bigint NOT NULL DEFAULT 0,
    complete        boolean NOT NULL DEFAULT false,
    completed_at    timestamptz
);
ALTER TABLE evidence.run_history ENABLE ROW LEVEL SECURITY;
ALTER TABLE evidence.run_history FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON evidence.run_history
    USING (tenant_id = NULLIF(current_setting('paddock.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('paddock.tenant_id', true), '')::uuid);

-- Runs stored before this migration: their history as it stands.
INSERT INTO evidence.run_history (run_id, tenant_id, events_stored, max_seq, terminal_seq, terminal_status,
                                  complete, completed_at)
SELECT e.run_id, min(e.tenant_id::text)::uuid, count(*), max(e.seq),
       max(e.seq) FILTER (WHERE e.kind = 'status' AND e.data->>'status' IN
           ('succeeded', 'failed', 'cancelled', 'timed_out', 'limit_exceeded', 'rejected')),
       NULL, false, NULL
FROM evidence.run_events e WHERE e.tenant_id IS NOT NULL GROUP BY e.run_id;
UPDATE evidence.run_history h SET complete = true, completed_at = now(),
    terminal_status = (SELECT data->>'status' FROM evidence.run_events e
                       WHERE e.run_id = h.run_id AND e.seq = h.terminal_seq)
WHERE terminal_seq IS NOT NULL AND events_stored >= terminal_seq;

GRANT SELECT, INSERT, UPDATE ON evidence.run_history TO paddock_evidence;
GRANT SELECT ON evidence.run_history TO paddock_api;
