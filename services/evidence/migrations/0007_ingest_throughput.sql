-- Ingest throughput (issue 10, profiled): the foreign key run_events.record_id
-- -> signed_records.id ran one referential-integrity query per inserted event
-- (18 us of the ~33 us an event cost; EXPLAIN ANALYZE of a 20,000-event round:
-- 357 ms in the trigger out of 667 ms). The only writer, evidence's batch
-- insert, takes record_id from a join with signed_records in the same
-- statement, and signed_records rows are never deleted (paddock_evidence has
-- SELECT and INSERT only), so the reference cannot dangle; the constraint goes.
ALTER TABLE evidence.run_events DROP CONSTRAINT IF EXISTS run_events_record_id_fkey;

-- A signed record is a whole RunEventBatch (~280 bytes an event, up to 1000
-- events): lz4 compresses it several times faster than the default pglz.
ALTER TABLE evidence.signed_records ALTER COLUMN signed_value SET COMPRESSION lz4;
