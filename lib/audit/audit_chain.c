/* Appending audit records to the per-tenant hash chain (audit_chain.h). */
#include "audit/audit_chain.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "core/ids.h"
#include "core/macro.h"
#include "core/timeutil.h"
#include "pg/pg.h"

static inline void pqclearp(PGresult **p) {
        if (*p)
                PQclear(*p);
}

/* 2000-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z: outside, the
 * producer's clock is broken and the canonical ts would not be 4-digit years. */
#define TS_MIN_US INT64_C(946684800000000)
#define TS_MAX_US INT64_C(253402300799999999)

static bool is_hex64(const char *s) {
        if (strlen(s) != AUDIT_HASH_HEX_LEN)
                return false;
        for (; *s; s++)
                if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
                        return false;
        return true;
}

static bool is_clean(const char *s, size_t max) {
        size_t n = 0;
        for (; *s; s++, n++)
                if ((unsigned char)*s < 0x20 || *s == 0x7f)
                        return false;
        return n <= max;
}

/* The same rules audit_emit() applies, since evidence also takes records
 * from producers it does not control. */
static int record_validate(const Paddock__V1__AuditRecord *rec, struct err_detail *reterr) {
        const Paddock__V1__Envelope *env = rec->env;
        if (!env || !id_is_uuid(env->tenant_id))
                return err_set(reterr, -EINVAL, "env.tenant_id", "env.tenant_id is not a UUID");
        if (!id_is_uuid(env->message_id))
                return err_set(reterr, -EINVAL, "env.message_id", "env.message_id is not a UUID");
        const char *a = rec->actor;
        bool user = strncmp(a, "user:", 5) == 0 && a[5], service = strncmp(a, "service:", 8) == 0 && a[8];
        if (!(user || service) || !is_clean(a, AUDIT_ACTOR_MAX))
                return err_set(reterr, -EINVAL, "actor", "actor must be \"user:<id>\" or \"service:<name>\"");
        if (!*rec->action || !strchr(rec->action, '.') || !is_clean(rec->action, AUDIT_ACTION_MAX))
                return err_set(reterr, -EINVAL, "action", "action must be \"<object>.<verb>\"");
        if (!is_clean(rec->object_type, AUDIT_OBJECT_TYPE_MAX))
                return err_set(reterr, -EINVAL, "object_type", "object_type is too long or has control characters");
        if (!is_clean(rec->object_id, AUDIT_OBJECT_ID_MAX))
                return err_set(reterr, -EINVAL, "object_id", "object_id is too long or has control characters");
        if (!is_clean(rec->source_ip, AUDIT_SOURCE_IP_MAX))
                return err_set(reterr, -EINVAL, "source_ip", "source_ip is too long or has control characters");
        if (strcmp(rec->outcome, "success") != 0 && strcmp(rec->outcome, "failure") != 0)
                return err_set(reterr, -EINVAL, "outcome", "outcome must be \"success\" or \"failure\"");
        if (*rec->change_sha256 && !is_hex64(rec->change_sha256))
                return err_set(reterr, -EINVAL, "change_sha256", "change_sha256 is not 64 lower-case hex digits");
        if (strlen(rec->detail_json) > AUDIT_DETAIL_MAX)
                return err_set(reterr, -EINVAL, "detail_json", "detail_json is larger than %d bytes", AUDIT_DETAIL_MAX);
        return 0;
}

/* {"unparsable_detail_sha256": "<hex>"}: what is stored for a detail that
 * cannot be scrubbed, so that its text is never stored. Caller frees. */
static char *detail_hash_only(const char *text) {
        char h[AUDIT_HASH_HEX_LEN + 1];
        if (audit_sha256_hex(text, strlen(text), h) < 0)
                return NULL;
        _cleanup_(json_decrefp) json_t *v = json_pack("{ss}", "unparsable_detail_sha256", h);
        return v ? json_dumps(v, JSON_COMPACT) : NULL;
}

/* The detail as it will be stored: scrubbed compact JSON of an object, or
 * detail_hash_only() of anything else. Caller frees. */
static char *detail_prepare(const char *text) {
        if (!*text)
                return strdup("{}");
        _cleanup_(json_decrefp) json_t *v = json_loads(text, 0, NULL);
        if (!json_is_object(v))
                return detail_hash_only(text);
        audit_scrub(v);
        return json_dumps(v, JSON_SORT_KEYS | JSON_COMPACT);
}

/* PostgreSQL's canonical text of detail as jsonb, the form that is hashed and
 * that verification reads back. Caller frees *ret. */
static int detail_canonical(PGconn *conn, const char *detail, char **ret, struct err_detail *reterr) {
        _cleanup_(pqclearp) PGresult *res = NULL;
        const char *params[] = {detail};
        int r = pg_exec(conn, "SELECT $1::jsonb::text", 1, params, &res, reterr);
        if (r < 0)
                return r;
        *ret = strdup(PQgetvalue(res, 0, 0));
        return *ret ? 0 : -ENOMEM;
}

static void position_fill(struct audit_chain_position *ret, uint64_t seq, const char *hash, const char *ts,
                          int64_t ts_us, bool duplicate) {
        if (!ret)
                return;
        ret->seq = seq;
        ret->ts_us = ts_us;
        snprintf(ret->hash, sizeof ret->hash, "%s", hash);
        snprintf(ret->ts, sizeof ret->ts, "%.27s", ts); /* AUDIT_TS_LEN */
        ret->duplicate = duplicate;
}

/* The body of the append transaction; the caller begins and commits/rolls back. */
static int append_locked(PGconn *conn, const Paddock__V1__AuditRecord *rec, const char *detail,
                         struct audit_chain_position *ret, struct err_detail *reterr) {
        const char *tenant = rec->env->tenant_id;
        _cleanup_(pqclearp) PGresult *head = NULL, *dup = NULL, *ins = NULL;

        /* Create the head on a tenant's first record; under concurrency the
         * second inserter waits on the unique index, then does nothing. */
        const char *p1[] = {tenant};
        int r = pg_exec(conn,
                        "INSERT INTO evidence.audit_heads (tenant_id, seq, hash) VALUES ($1, 0, '" AUDIT_CHAIN_GENESIS
                        "') ON CONFLICT (tenant_id) DO NOTHING",
                        1, p1, NULL, reterr);
        if (r < 0)
                return r;
        r = pg_exec(conn, "SELECT seq, hash FROM evidence.audit_heads WHERE tenant_id = $1 FOR UPDATE", 1, p1, &head,
                    reterr);
        if (r < 0)
                return r;
        if (PQntuples(head) != 1)
                return err_set(reterr, -EIO, "head", "chain head of tenant %s vanished", tenant);

        /* Checked under the head lock: a concurrent replica appending the same
         * message commits first, and then we see its row. */
        const char *p2[] = {rec->env->message_id};
        r = pg_exec(conn,
                    "SELECT seq, hash, " AUDIT_TS_SQL ", (extract(epoch FROM ts) * 1000000)::bigint, tenant_id::text"
                    " FROM evidence.audit_log WHERE message_id = $1",
                    1, p2, &dup, reterr);
        if (r < 0)
                return r;
        if (PQntuples(dup) > 0) {
                /* message ids are unique across tenants: a producer reusing
                 * one for another tenant is broken, and retrying cannot help */
                if (strcmp(PQgetvalue(dup, 0, 4), tenant) != 0)
                        return err_set(reterr, -EINVAL, "env.message_id",
                                       "env.message_id is already used by another tenant's record");
                position_fill(ret, strtoull(PQgetvalue(dup, 0, 0), NULL, 10), PQgetvalue(dup, 0, 1),
                              PQgetvalue(dup, 0, 2), strtoll(PQgetvalue(dup, 0, 3), NULL, 10), true);
                return 0;
        }

        uint64_t seq = strtoull(PQgetvalue(head, 0, 0), NULL, 10) + 1;
        const char *prev = PQgetvalue(head, 0, 1);
        int64_t ts_us = rec->env->ts_unix_us;
        if (ts_us < TS_MIN_US || ts_us > TS_MAX_US)
                ts_us = time_now_us();
        char ts[40], seq_s[24], hash[AUDIT_HASH_HEX_LEN + 1];
        time_format_rfc3339(ts_us, ts, sizeof ts);
        snprintf(seq_s, sizeof seq_s, "%" PRIu64, seq);
        struct audit_chain_fields f = {
                .tenant_id = tenant, .seq = seq, .message_id = rec->env->message_id, .ts = ts,
                .actor = rec->actor, .action = rec->action, .object_type = rec->object_type,
                .object_id = rec->object_id, .source_ip = rec->source_ip, .outcome = rec->outcome,
                .change_sha256 = rec->change_sha256, .detail = detail,
        };
        r = audit_chain_hash(prev, &f, hash);
        if (r < 0)
                return err_set(reterr, r, "sha256", "could not hash the record");

        const char *p3[] = {tenant, seq_s, rec->env->message_id, ts, rec->actor, rec->action, rec->object_type,
                            rec->object_id, rec->source_ip, rec->outcome, rec->change_sha256, detail, prev, hash};
        r = pg_exec(conn,
                    "INSERT INTO evidence.audit_log (tenant_id, seq, message_id, ts, actor, action, object_type,"
                    " object_id, source_ip, outcome, change_sha256, detail, prev_hash, hash)"
                    " VALUES ($1, $2, $3, $4::timestamptz, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, $13, $14)"
                    " RETURNING " AUDIT_TS_SQL,
                    (int)ELEMENTSOF(p3), p3, &ins, reterr);
        if (r < 0)
                return r;
        /* The stored ts must read back exactly as hashed, or verification
         * would fail on an honest record. */
        if (strcmp(PQgetvalue(ins, 0, 0), ts) != 0)
                return err_set(reterr, -EIO, "ts", "timestamp %s was stored as %s", ts, PQgetvalue(ins, 0, 0));
        const char *p4[] = {tenant, seq_s, hash};
        r = pg_exec(conn, "UPDATE evidence.audit_heads SET seq = $2, hash = $3 WHERE tenant_id = $1", 3, p4, NULL,
                    reterr);
        if (r < 0)
                return r;
        position_fill(ret, seq, hash, ts, ts_us, false);
        return 1;
}

int audit_chain_append(PGconn *conn, const Paddock__V1__AuditRecord *rec, struct audit_chain_position *ret,
                       struct err_detail *reterr) {
        int r = record_validate(rec, reterr);
        if (r < 0)
                return r;
        /* appended as the record's tenant: row-level security keys on it */
        if ((r = pg_set_tenant(conn, rec->env->tenant_id, reterr)) < 0)
                return r;
        _cleanup_free_ char *prepared = detail_prepare(rec->detail_json);
        if (!prepared)
                return err_set(reterr, -ENOMEM, "nomem", "out of memory");
        _cleanup_free_ char *detail = NULL;
        r = detail_canonical(conn, prepared, &detail, reterr);
        if (r == -EINVAL) {
                /* jansson accepts a few things jsonb refuses (\u0000): keep
                 * the record, with only the hash of its detail */
                free(prepared);
                prepared = detail_hash_only(rec->detail_json);
                if (!prepared)
                        return err_set(reterr, -ENOMEM, "nomem", "out of memory");
                r = detail_canonical(conn, prepared, &detail, reterr);
        }
        if (r < 0)
                return r;

        r = pg_begin(conn, reterr);
        if (r < 0)
                return r;
        r = append_locked(conn, rec, detail, ret, reterr);
        if (r < 0) {
                pg_rollback(conn);
                return r;
        }
        int c = pg_commit(conn, reterr);
        return c < 0 ? c : r;
}
