-- Signed messages on the bus (docs/CONTRACTS.md): each event keeps who signed
-- it and how, so a run's history can be verified offline against the node
-- keys: signature is Ed25519 by signer over
--   "paddock-bus-v1" NUL "paddock.runs.events" NUL signed_value
-- where signed_value is the record value (the packed RunEvent) as produced.
-- NULL on events stored before signing existed.
ALTER TABLE evidence.run_events
    ADD COLUMN signer text,
    ADD COLUMN signature bytea,
    ADD COLUMN signed_value bytea;
