/* Audit of control-plane writes (CONTRACTS.md "Audit chain"): api_audit()
 * queues a write's AuditRecord in api.outbox inside the write's own
 * transaction, so the record exists exactly when the write does; the relay
 * (outbox.c) produces it on paddock.audit and evidence chains it.
 * GET /v1/audit lists the caller's tenant's chain (filtered by actor,
 * action, object, outcome and time), GET /v1/audit/verify
 * re-verifies it. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "audit/audit.h"
#include "audit/audit_chain.h"
#include "audit/audit_verify.h"
#include "kafka/topics.h"
#include "core/log.h"
#include "pg/pg.h"

#define AUDIT_LIST_DEFAULT_LIMIT 100
#define AUDIT_LIST_MAX_LIMIT 1000
#define AUDIT_FILTER_MAX 256

/* Encodes the record and inserts it into the outbox on conn, whose tenant
 * setting must be tenant_id (row-level security). ip may be NULL. */
static int audit_queue(struct api *a, PGconn *conn, const char *ip, const char *tenant_id, const char *actor,
                       const char *action, const char *object_type, const char *object_id, const char *outcome,
                       json_t *change, json_t *detail, struct err_detail *e) {
        enum audit_outcome oc;
        if (outcome && !strcmp(outcome, "success"))
                oc = AUDIT_SUCCESS;
        else if (outcome && !strcmp(outcome, "failure"))
                oc = AUDIT_FAILURE;
        else
                return err_set(e, -EINVAL, "", "outcome must be success or failure");
        char producer[64], msgid[UUID_STR_LEN];
        snprintf(producer, sizeof producer, "api/%s", a->instance);
        struct audit_entry en = {
                .tenant_id = tenant_id,
                .actor = actor,
                .action = action,
                .object_type = object_type,
                .object_id = object_id,
                .source_ip = ip && ip[0] ? ip : NULL,
                .outcome = oc,
                .change = change,
                .detail = detail,
                .producer = producer,
        };
        _cleanup_free_ void *buf = NULL;
        size_t len = 0;
        int k = audit_record_encode(&en, &buf, &len, msgid, e);
        if (k < 0)
                return k;
        /* keyed by tenant: a tenant's records reach its chain in order */
        return outbox_put(conn, tenant_id, TOPIC_AUDIT, tenant_id, buf, len, e);
}

/* The client's address: the socket peer, or what a trusted proxy forwarded
 * (PADDOCK_TRUSTED_PROXIES), the same address the login limits count. */
static void peer_ip(struct api_req *r, char ip[AUDIT_SOURCE_IP_MAX]) {
        _Static_assert(AUDIT_SOURCE_IP_MAX >= HTTP_CLIENT_ADDR_MAX, "room for a client address");
        api_client_ip(r->wsi, r->api, ip);
}

int api_audit(struct api_req *r, struct db *d, const char *action, const char *object_type, const char *object_id,
              const char *outcome, json_t *change) {
        char actor[8 + UUID_STR_LEN], ip[AUDIT_SOURCE_IP_MAX];
        snprintf(actor, sizeof actor, "user:%s", r->caller.user_id);
        peer_ip(r, ip);
        struct err_detail e = {0};
        int k = audit_queue(r->api, d->conn, ip, r->caller.tenant_id, actor, action, object_type, object_id, outcome,
                            change, NULL, &e);
        if (k < 0) {
                log_ctx(LOG_ERROR, LOG_KV("action", action, "tenant", r->caller.tenant_id, "sqlstate", e.code),
                        "could not queue audit record: %s", e.message[0] ? e.message : strerror(-k));
                return api_fail(r, k == -EINVAL ? -EIO : -EAGAIN, "unavailable",
                                "the audit log is unavailable; the request was not acknowledged");
        }
        return 0;
}

int api_audit_operator(struct api *a, struct db *d, const char *tenant_id, const char *action,
                       const char *object_type, const char *object_id, json_t *change, struct err_detail *e) {
        return audit_queue(a, d->conn, NULL, tenant_id, "service:paddock-api-operator", action, object_type,
                           object_id, "success", change, NULL, e);
}

int api_audit_anonymous(struct api_req *r, const char *tenant_id, const char *action,
                        const char *object_type, const char *object_id, const char *outcome,
                        json_t *detail, struct err_detail *e) {
        /* No tenant (unknown tenant name): there is no chain to join. */
        if (!tenant_id || !tenant_id[0])
                return 0;
        char ip[AUDIT_SOURCE_IP_MAX];
        peer_ip(r, ip);
        _cleanup_db_ struct db d = {0};
        int k = db_open(&d, r->api, tenant_id, e);
        if (k >= 0)
                k = audit_queue(r->api, d.conn, ip, tenant_id, "user:anonymous", action, object_type, object_id,
                                outcome, NULL, detail, e);
        if (k < 0)
                log_ctx(LOG_ERROR, LOG_KV("action", action, "tenant", tenant_id),
                        "could not queue audit record: %s", e && e->message[0] ? e->message : strerror(-k));
        return k;
}

static int audit_int_arg(struct api_req *r, const char *name, long long min, long long max, long long *val) {
        char buf[64];
        const char *v = api_query(r, name, buf, sizeof buf);
        if (!v)
                return 0;
        char *end;
        errno = 0;
        long long n = strtoll(v, &end, 10);
        if (errno || end == v || *end || n < min || n > max)
                return api_errno(r, -EINVAL, "%s must be an integer from %lld to %lld", name,
                                min, max);
        *val = n;
        return 0;
}

int audit_api_list(struct api_req *r) {
        /* the route's permission (routes.c) admits the tenant's administrators only */
        int k;
        long long after = 0, limit = AUDIT_LIST_DEFAULT_LIMIT;
        /* "cursor" is API.md's name for the same opaque value ("after" in CONTRACTS.md). */
        if ((k = audit_int_arg(r, "after", 0, INT64_MAX, &after)) < 0 ||
            (k = audit_int_arg(r, "cursor", 0, INT64_MAX, &after)) < 0 ||
            (k = audit_int_arg(r, "limit", 1, AUDIT_LIST_MAX_LIMIT, &limit)) < 0)
                return k;
        char from_us[24], to_us[24], after_s[24], limit_s[24];
        const char *fromv, *tov;
        if ((k = api_query_time(r, "from", from_us, &fromv)) < 0 || (k = api_query_time(r, "to", to_us, &tov)) < 0)
                return k;
        /* Exact-match filters (CONTRACTS.md "GET /v1/audit"): each given at
         * most once, at most AUDIT_FILTER_MAX bytes; "" is no filter. */
        static const char *const filter_names[] = {"actor", "action", "object_type", "object_id", "outcome"};
        char fbuf[ELEMENTSOF(filter_names)][AUDIT_FILTER_MAX + 1];
        const char *fv[ELEMENTSOF(filter_names)];
        for (size_t i = 0; i < ELEMENTSOF(filter_names); i++)
                if ((k = api_query_single(r, filter_names[i], fbuf[i], sizeof fbuf[i], &fv[i])) < 0)
                        return k;
        const char *outcome = fv[4];
        if (outcome && strcmp(outcome, "success") && strcmp(outcome, "failure"))
                return api_errno(r, -EINVAL, "outcome must be success or failure");
        snprintf(after_s, sizeof after_s, "%lld", after);
        snprintf(limit_s, sizeof limit_s, "%lld", limit);

        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        if ((k = db_open_caller(&d, r, &e)) < 0)
                return db_fail(r, k, &e, "open database connection");
        const char *params[] = {r->caller.tenant_id, after_s, limit_s, fromv, tov, fv[0], fv[1], fv[2], fv[3], fv[4]};
        _cleanup_pgres_ PGresult *res = NULL;
        k = pg_exec(d.conn,
                    "SELECT seq, " AUDIT_TS_SQL ", actor, action, object_type, object_id, source_ip, outcome,"
                    " change_sha256, detail::text, message_id::text, prev_hash, hash"
                    " FROM evidence.audit_log"
                    " WHERE tenant_id = $1::uuid AND seq > $2::bigint"
                    "   AND ($4::bigint IS NULL OR ts >= " LIST_US_TS("$4") ")"
                    "   AND ($5::bigint IS NULL OR ts < " LIST_US_TS("$5") ")"
                    "   AND ($6::text IS NULL OR actor = $6) AND ($7::text IS NULL OR action = $7)"
                    "   AND ($8::text IS NULL OR object_type = $8) AND ($9::text IS NULL OR object_id = $9)"
                    "   AND ($10::text IS NULL OR outcome = $10)"
                    " ORDER BY seq LIMIT $3::int",
                    (int)ELEMENTSOF(params), params, &res, &e);
        if (k == -ENOPKG) /* lib/pg: evidence has not migrated yet */
                return api_errno(r, -EAGAIN, "the audit log is not available yet");
        if (k < 0)
                return db_fail(r, k, &e, "list audit records");
        _cleanup_json_ json_t *items = json_array();
        if (!items)
                return api_errno(r, -ENOMEM, "out of memory");
        int n = PQntuples(res);
        for (int i = 0; i < n; i++) {
                json_t *detail = json_loads(db_val(res, i, 9), JSON_DECODE_ANY, NULL);
                json_t *it = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:s, s:s, s:s}",
                                       "seq", (json_int_t)strtoll(db_val(res, i, 0), NULL, 10),
                                       "ts", db_val(res, i, 1), "actor", db_val(res, i, 2),
                                       "action", db_val(res, i, 3), "object_type", db_val(res, i, 4),
                                       "object_id", db_val(res, i, 5), "source_ip", db_val(res, i, 6),
                                       "outcome", db_val(res, i, 7), "change_sha256", db_val(res, i, 8),
                                       "detail", detail ? detail : json_object(),
                                       "message_id", db_val(res, i, 10), "prev_hash", db_val(res, i, 11),
                                       "hash", db_val(res, i, 12));
                if (!it || json_array_append_new(items, it) < 0)
                        return api_errno(r, -ENOMEM, "out of memory");
        }
        /* A full page may have more after it; a short page is the end. */
        json_t *cursor = n > 0 && n == limit ? json_string(db_val(res, n - 1, 0)) : json_null();
        r->out = json_pack("{s:O, s:o}", "items", items, "next_cursor", cursor);
        r->status = 200;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

int audit_api_verify(struct api_req *r) {
        /* the route's permission (routes.c) admits the tenant's administrators only */
        int k;
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        if ((k = db_open_caller(&d, r, &e)) < 0)
                return db_fail(r, k, &e, "open database connection");
        struct audit_verify_result v = {0};
        k = audit_verify_chain(d.conn, r->caller.tenant_id, &v);
        if (k < 0) {
                /* audit_verify_chain() has no err_detail: probe why, so a
                 * missing table answers 503 rather than 500. */
                struct err_detail pe = {0};
                if (pg_exec(d.conn, "SELECT 1 FROM evidence.audit_heads LIMIT 0", 0, NULL, NULL, &pe) == -ENOPKG)
                        return api_errno(r, -EAGAIN, "the audit log is not available yet");
                err_set(&e, k, "", "audit_verify_chain failed");
                return db_fail(r, k, &e, "verify audit chain");
        }
        r->out = json_pack("{s:b, s:I, s:I, s:I, s:s, s:o, s:o}", "ok", v.ok, "checked", (json_int_t)v.checked,
                           "records", (json_int_t)v.checked, "head_seq", (json_int_t)v.checked, "head_hash",
                           v.last_hash,
                           "first_bad_seq", v.ok ? json_null() : json_integer((json_int_t)v.first_bad_seq),
                           "reason", v.ok ? json_null() : json_string(audit_verify_reason_to_string(v.reason)));
        r->status = 200;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}
