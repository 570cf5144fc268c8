-- The per-tenant hash-chained audit log (docs/CONTRACTS.md "Audit chain";
-- lib/audit/audit_chain.h defines the hash). Written only by evidence through
-- audit_chain_append(); api reads it for GET /v1/audit and its verification.
-- Text columns are NOT NULL ('' when absent) so a record hashes one way only.
CREATE TABLE evidence.audit_log (
    tenant_id     uuid NOT NULL,
    seq           bigint NOT NULL CHECK (seq >= 1),
    message_id    uuid NOT NULL UNIQUE,
    ts            timestamptz NOT NULL,
    actor         text NOT NULL,
    action        text NOT NULL,
    object_type   text NOT NULL DEFAULT '',
    object_id     text NOT NULL DEFAULT '',
    source_ip     text NOT NULL DEFAULT '',
    outcome       text NOT NULL CHECK (outcome IN ('success', 'failure')),
    change_sha256 text NOT NULL DEFAULT '',
    detail        jsonb NOT NULL DEFAULT '{}',
    prev_hash     text NOT NULL,
    hash          text NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);

-- GET /v1/audit?from=&to= lists a tenant's records by time.
CREATE INDEX audit_log_tenant_ts ON evidence.audit_log (tenant_id, ts);

-- The end of each tenant's chain: the row an append locks (SELECT ... FOR
-- UPDATE) so that concurrent evidence replicas extend one gapless chain, and
-- the anchor verification compares the last record with (removing records
-- from the end is detected). seq 0 with 64 '0' characters before the first.
CREATE TABLE evidence.audit_heads (
    tenant_id uuid PRIMARY KEY,
    seq       bigint NOT NULL,
    hash      text NOT NULL
);
