-- Batched events (issue 10): a record on paddock.runs.events is a
-- RunEventBatch of one run, signed once. Each record is stored once, here,
-- and its events point at it, instead of the record bytes per event
-- (docs/CONTRACTS.md, signed messages). The signature is Ed25519 by signer over
--   "paddock-bus-v1" NUL "paddock.runs.events" NUL signed_value
-- and (run_id, signature) identifies a record: the same bytes redelivered
-- carry the same (deterministic) signature, so a record already here has had
-- all its events stored in the same transaction.
CREATE TABLE evidence.signed_records (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       uuid NOT NULL,
    tenant_id    uuid NOT NULL,
    signer       text NOT NULL,
    signature    bytea NOT NULL,
    signed_value bytea NOT NULL,
    UNIQUE (run_id, signature)
);
ALTER TABLE evidence.signed_records ENABLE ROW LEVEL SECURITY;
ALTER TABLE evidence.signed_records FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON evidence.signed_records
    USING (tenant_id = NULLIF(current_setting('paddock.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('paddock.tenant_id', true), '')::uuid);

-- New events carry record_id (and signer); signature and signed_value stay
-- only on events stored before batches.
ALTER TABLE evidence.run_events ADD COLUMN record_id bigint REFERENCES evidence.signed_records (id);

GRANT SELECT, INSERT ON evidence.signed_records TO paddock_evidence;
GRANT SELECT ON evidence.signed_records TO paddock_api;
