/* Verification of a tenant's audit hash chain (audit_chain.h), for
 * GET /v1/audit/verify and tests. */
#pragma once
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "audit/audit.h"

enum audit_verify_reason {
        AUDIT_VERIFY_OK,
        AUDIT_VERIFY_SEQ_GAP,            /* a seq is missing (first_bad_seq is the missing one) */
        AUDIT_VERIFY_PREV_HASH_MISMATCH, /* prev_hash is not the previous record's hash */
        AUDIT_VERIFY_HASH_MISMATCH,      /* the record's fields do not give its stored hash */
        AUDIT_VERIFY_HEAD_MISMATCH,      /* the chain head names a later seq or another hash than the
                                          * last record: records were removed from the end */
};

struct audit_verify_result {
        bool ok;
        uint64_t checked;                          /* records whose hash was recomputed and matched */
        uint64_t first_bad_seq;                    /* 0 when ok */
        enum audit_verify_reason reason;
        char last_hash[AUDIT_HASH_HEX_LEN + 1];    /* hash of the last good record (seq = checked);
                                                    * 64 '0' when none */
};

/* "ok", "seq_gap", "prev_hash_mismatch", "hash_mismatch", "head_mismatch". */
const char *audit_verify_reason_to_string(enum audit_verify_reason r);

/* Walks tenant_id's records of evidence.audit_log in seq order from 1,
 * recomputing each hash from its fields, and compares the end with
 * evidence.audit_heads. Stops at the first bad record. A tenant without
 * records verifies ok with checked = 0.
 * If conn is idle the walk runs in its own REPEATABLE READ READ ONLY
 * transaction (one snapshot, so concurrent appends are not mistaken for
 * damage); if conn is already in a transaction (e.g. the api's, with its
 * row-level-security setting) it runs inside that one, whose isolation the
 * caller chose. Reads in batches, so memory does not grow with the chain.
 * Returns 0 with *ret filled (ok or not: a broken chain is a result, not an
 * error), -EINVAL if tenant_id is not a UUID, or pg_exec()'s errors.
 * conn is borrowed; not thread-safe on one conn. */
int audit_verify_chain(PGconn *conn, const char *tenant_id, struct audit_verify_result *ret);
