/* The per-tenant hash chain of audit records in PostgreSQL (tables
 * evidence.audit_log and evidence.audit_heads, created by
 * services/evidence/migrations/0002_audit.sql; docs/CONTRACTS.md "Audit
 * chain"). evidence appends with audit_chain_append(); audit_verify.h walks it.
 *
 * Canonical record bytes: the concatenation of these fields as netstrings
 * ("<decimal byte length>:<bytes>,"), in this order:
 *   "paddock.audit.v1", tenant_id, seq (decimal), message_id, ts, actor,
 *   action, object_type, object_id, source_ip, outcome, change_sha256, detail
 * where ids are lower-case canonical UUIDs, ts is the stored timestamp in UTC as
 * "YYYY-MM-DDTHH:MM:SS.uuuuuuZ" (always 6 fractional digits), absent text
 * fields are empty strings, and detail is PostgreSQL's text output of the
 * stored jsonb (detail::text), which is a function of the jsonb value alone.
 *   hash = lower-hex SHA-256(prev_hash || canonical record bytes)
 * with prev_hash the previous record's hash as 64 ASCII hex characters, and
 * 64 '0' characters for seq 1. Netstrings make the encoding injective: no two
 * different records give the same bytes. */
#pragma once
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "audit/audit.h"
#include "audit/audit_hash.h"
#include "core/err.h"
#include "paddock/v1/audit.pb-c.h"

#define AUDIT_TS_LEN 27 /* "YYYY-MM-DDTHH:MM:SS.uuuuuuZ" */
/* SQL expression giving a timestamptz column ts in the canonical form above. */
#define AUDIT_TS_SQL "to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

/* Where a record sits in its tenant's chain. */
struct audit_chain_position {
        uint64_t seq;
        char hash[AUDIT_HASH_HEX_LEN + 1];
        char ts[AUDIT_TS_LEN + 1];
        int64_t ts_us;  /* the same instant, microseconds since the epoch */
        bool duplicate; /* the message id was already in the log; seq/hash/ts are the stored ones */
};

/* Appends rec (borrowed) to its tenant's chain, once per env.message_id, in
 * one transaction on conn (which must not be inside a transaction) that
 * locks the tenant's chain head row (SELECT ... FOR UPDATE), so concurrent
 * evidence replicas extend one gapless chain. The record's detail is
 * scrubbed again (audit_scrub) and stored as jsonb; a detail that is not a
 * JSON object is replaced by {"unparsable_detail_sha256": "<hex>"} so nothing
 * unscrubbed is stored. ts is env.ts_unix_us when it lies between 2000 and
 * 9999, the current time otherwise.
 * Returns 1 if appended, 0 if the message id was already there (ret then
 * describes the stored record, so the caller can redo its follow-up work),
 * -EINVAL with *reterr naming the field for a record that can never be
 * stored, or pg_exec()'s errors (-ECONNRESET, -EAGAIN, ...: retry). ret may be NULL. */
int audit_chain_append(PGconn *conn, const Paddock__V1__AuditRecord *rec, struct audit_chain_position *ret,
                       struct err_detail *reterr);
