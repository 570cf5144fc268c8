/* Walking a tenant's audit chain and recomputing every hash (audit_verify.h). */
#include "audit/audit_verify.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "audit/audit_chain.h"
#include "core/ids.h"
#include "core/macro.h"
#include "pg/pg.h"

#define BATCH "500"

static inline void pqclearp(PGresult **p) {
        if (*p)
                PQclear(*p);
}

const char *audit_verify_reason_to_string(enum audit_verify_reason r) {
        switch (r) {
        case AUDIT_VERIFY_OK: return "ok";
        case AUDIT_VERIFY_SEQ_GAP: return "seq_gap";
        case AUDIT_VERIFY_PREV_HASH_MISMATCH: return "prev_hash_mismatch";
        case AUDIT_VERIFY_HASH_MISMATCH: return "hash_mismatch";
        case AUDIT_VERIFY_HEAD_MISMATCH: return "head_mismatch";
        }
        return "unknown";
}

static void fail(struct audit_verify_result *ret, uint64_t seq, enum audit_verify_reason why) {
        ret->ok = false;
        ret->first_bad_seq = seq;
        ret->reason = why;
}

/* Checks one batch of rows after expected-1; returns 1 to go on, 0 when done
 * (end reached or a bad record found), negative errno on failure. */
static int check_batch(PGresult *res, const char *tenant_id, uint64_t *expected, char prev[static AUDIT_HASH_HEX_LEN + 1],
                       struct audit_verify_result *ret) {
        int n = PQntuples(res);
        for (int i = 0; i < n; i++) {
                uint64_t seq = strtoull(PQgetvalue(res, i, 0), NULL, 10);
                if (seq != *expected) {
                        fail(ret, *expected, AUDIT_VERIFY_SEQ_GAP);
                        return 0;
                }
                if (strcmp(PQgetvalue(res, i, 11), prev) != 0) {
                        fail(ret, seq, AUDIT_VERIFY_PREV_HASH_MISMATCH);
                        return 0;
                }
                /* Hash with the prev_hash we trust, i.e. the one just verified. */
                struct audit_chain_fields f = {
                        .tenant_id = tenant_id, .seq = seq, .message_id = PQgetvalue(res, i, 1),
                        .ts = PQgetvalue(res, i, 2), .actor = PQgetvalue(res, i, 3),
                        .action = PQgetvalue(res, i, 4), .object_type = PQgetvalue(res, i, 5),
                        .object_id = PQgetvalue(res, i, 6), .source_ip = PQgetvalue(res, i, 7),
                        .outcome = PQgetvalue(res, i, 8), .change_sha256 = PQgetvalue(res, i, 9),
                        .detail = PQgetvalue(res, i, 10),
                };
                char hash[AUDIT_HASH_HEX_LEN + 1];
                int r = audit_chain_hash(prev, &f, hash);
                if (r < 0)
                        return r;
                if (strcmp(hash, PQgetvalue(res, i, 12)) != 0) {
                        fail(ret, seq, AUDIT_VERIFY_HASH_MISMATCH);
                        return 0;
                }
                memcpy(prev, hash, sizeof hash);
                memcpy(ret->last_hash, hash, sizeof hash);
                ret->checked++;
                (*expected)++;
        }
        return n > 0 ? 1 : 0;
}

static int walk(PGconn *conn, const char *tenant_id, struct audit_verify_result *ret) {
        uint64_t expected = 1;
        char prev[AUDIT_HASH_HEX_LEN + 1] = AUDIT_CHAIN_GENESIS;
        for (;;) {
                _cleanup_(pqclearp) PGresult *res = NULL;
                char after[24];
                snprintf(after, sizeof after, "%" PRIu64, expected - 1);
                const char *params[] = {tenant_id, after};
                /* NULLs (which the schema forbids, but a tamperer may not
                 * care) read as "", which fails the hash comparison. */
                int r = pg_exec(conn,
                                "SELECT seq, message_id::text, " AUDIT_TS_SQL ", actor, action, object_type,"
                                " object_id, source_ip, outcome, change_sha256, detail::text, prev_hash, hash"
                                " FROM evidence.audit_log WHERE tenant_id = $1 AND seq > $2"
                                " ORDER BY seq LIMIT " BATCH,
                                2, params, &res, NULL);
                if (r < 0)
                        return r;
                r = check_batch(res, tenant_id, &expected, prev, ret);
                if (r <= 0)
                        return r;
        }
}

static int check_head(PGconn *conn, const char *tenant_id, struct audit_verify_result *ret) {
        _cleanup_(pqclearp) PGresult *res = NULL;
        const char *params[] = {tenant_id};
        int r = pg_exec(conn, "SELECT seq, hash FROM evidence.audit_heads WHERE tenant_id = $1", 1, params, &res,
                        NULL);
        if (r < 0)
                return r;
        uint64_t head_seq = PQntuples(res) ? strtoull(PQgetvalue(res, 0, 0), NULL, 10) : 0;
        const char *head_hash = PQntuples(res) ? PQgetvalue(res, 0, 1) : AUDIT_CHAIN_GENESIS;
        if (head_seq != ret->checked || strcmp(head_hash, ret->last_hash) != 0)
                fail(ret, ret->checked + 1, AUDIT_VERIFY_HEAD_MISMATCH);
        return 0;
}

int audit_verify_chain(PGconn *conn, const char *tenant_id, struct audit_verify_result *ret) {
        *ret = (struct audit_verify_result){.ok = true, .reason = AUDIT_VERIFY_OK};
        memcpy(ret->last_hash, AUDIT_CHAIN_GENESIS, sizeof ret->last_hash);
        if (!tenant_id || !id_is_uuid(tenant_id))
                return -EINVAL;
        bool own = PQtransactionStatus(conn) == PQTRANS_IDLE;
        if (own) {
                int r = pg_exec(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, NULL, NULL);
                if (r < 0)
                        return r;
        }
        int r = walk(conn, tenant_id, ret);
        if (r >= 0 && ret->ok)
                r = check_head(conn, tenant_id, ret);
        if (own)
                pg_rollback(conn); /* read only: nothing to commit */
        return r < 0 ? r : 0;
}
