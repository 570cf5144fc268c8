/* Session history from evidence.run_events (written by the evidence service). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "pg/pg.h"

#define EVENTS_DEFAULT_LIMIT 100
#define EVENTS_MAX_LIMIT 1000

int events_query(struct db *d, const char *tenant_id, const char *run_id, int64_t after, int limit,
                 bool signatures, json_t **ret, struct err_detail *e) {
        char after_s[24], limit_s[16];
        snprintf(after_s, sizeof after_s, "%" PRId64, after);
        snprintf(limit_s, sizeof limit_s, "%d", limit);
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {run_id, tenant_id, after_s, limit_s};
        int k = pg_exec(d->conn,
                        "SELECT seq, " DB_TS("ts") ", kind, actor, data::text, signer, "
                        "translate(encode(signature, 'base64'), E'\\n', ''), translate(encode(signed_value, 'base64'), E'\\n', ''), "
                        "record_id::text "
                        "FROM evidence.run_events "
                        "WHERE run_id = $1 AND tenant_id = $2 AND seq > $3::bigint ORDER BY seq LIMIT $4::integer",
                        4, params, &res, e);
        if (k < 0)
                /* -ENOPKG (lib/pg: undefined table or schema): evidence has not migrated yet */
                return k == -ENOPKG ? -EAGAIN : k;
        json_t *items = json_array();
        for (int i = 0; i < PQntuples(res); i++) {
                json_t *data = json_loads(PQgetvalue(res, i, 4), 0, NULL);
                json_array_append_new(items, json_pack("{s:s, s:I, s:s, s:s, s:s, s:o}", "run", run_id, "seq",
                                                       (json_int_t)atoll(PQgetvalue(res, i, 0)), "ts",
                                                       PQgetvalue(res, i, 1), "kind", PQgetvalue(res, i, 2),
                                                       "actor", PQgetvalue(res, i, 3), "data",
                                                       data ? data : json_object()));
                /* offline verification against the node's key (docs/CONTRACTS.md):
                 * an event stored from a RunEventBatch names its record
                 * (records_query), older ones carry their own signature */
                if (signatures) {
                        json_t *ev = json_array_get(items, json_array_size(items) - 1);
                        json_object_set_new(ev, "record", db_json_str(res, i, 8));
                        json_object_set_new(ev, "signer", db_json_str(res, i, 5));
                        json_object_set_new(ev, "signature", db_json_str(res, i, 6));
                        json_object_set_new(ev, "signed_value", db_json_str(res, i, 7));
                }
        }
        *ret = items;
        return 0;
}

/* {"<record id>": {signer, signature, signed_value}} for the records the
 * events of items name; each event takes its record's signer. */
int events_records_query(struct db *d, json_t *items, json_t **ret, struct err_detail *e) {
        json_t *records = json_object();
        if (!records)
                return -ENOMEM;
        _cleanup_free_ char *ids = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&ids, &len);
        if (!f) {
                json_decref(records);
                return -ENOMEM;
        }
        size_t i, n = 0;
        json_t *ev;
        fputc('{', f);
        json_array_foreach(items, i, ev) {
                const char *rec = json_string_value(json_object_get(ev, "record"));
                if (rec)
                        fprintf(f, "%s%s", n++ ? "," : "", rec);
        }
        fputc('}', f);
        if (fclose(f) != 0) {
                json_decref(records);
                return -ENOMEM;
        }
        if (n > 0) {
                _cleanup_pgres_ PGresult *res = NULL;
                const char *params[] = {ids};
                int k = pg_exec(d->conn,
                                "SELECT id::text, signer, translate(encode(signature, 'base64'), E'\\n', ''),"
                                " translate(encode(signed_value, 'base64'), E'\\n', '')"
                                " FROM evidence.signed_records WHERE id = ANY($1::bigint[])",
                                1, params, &res, e);
                if (k < 0) {
                        json_decref(records);
                        return k;
                }
                for (int r = 0; r < PQntuples(res); r++)
                        json_object_set_new(records, PQgetvalue(res, r, 0),
                                            json_pack("{s:s, s:s, s:s}", "signer", PQgetvalue(res, r, 1), "signature",
                                                      PQgetvalue(res, r, 2), "signed_value", PQgetvalue(res, r, 3)));
        }
        json_array_foreach(items, i, ev) {
                json_t *rec = json_object_get(records, json_string_value(json_object_get(ev, "record")) ?: "");
                if (rec)
                        json_object_set(ev, "signer", json_object_get(rec, "signer"));
        }
        *ret = records;
        return 0;
}

static int parse_int_arg(struct api_req *r, const char *name, long long min, long long max, long long *val) {
        char buf[64];
        const char *v = api_query(r, name, buf, sizeof buf);
        if (!v)
                return 0;
        char *end;
        errno = 0;
        long long n = strtoll(v, &end, 10);
        if (errno || end == v || *end || n < min || n > max)
                return api_errno(r, -EINVAL, "%s must be an integer from %lld to %lld", name, min, max);
        *val = n;
        return 0;
}

int events_list(struct api_req *r) {
        long long after = 0, limit = EVENTS_DEFAULT_LIMIT;
        int k;
        char inc_buf[32];
        const char *include = NULL;
        if ((k = parse_int_arg(r, "after", 0, INT64_MAX, &after)) < 0 ||
            (k = parse_int_arg(r, "limit", 1, EVENTS_MAX_LIMIT, &limit)) < 0 ||
            (k = api_query_single(r, "include", inc_buf, sizeof inc_buf, &include)) < 0)
                return k;
        if (include && strcmp(include, "signature"))
                return api_errno(r, -EINVAL, "include must be \"signature\"");
        struct err_detail e = {0};
        char team[UUID_STR_LEN], status[32];
        k = runs_load_visible(r->api, &r->caller, r->params[0], r->perm, team, status, sizeof status, &e);
        if (k == -ENOENT)
                return api_errno(r, -ENOENT, "run not found");
        if (k < 0)
                return db_fail(r, k, &e, "load run");
        /* an ended run's history may have been deleted after its retention: 410 (retention.c) */
        if (runs_status_terminal(status) && (k = retention_run_gone(r, r->params[0])) < 0)
                return k;
        _cleanup_db_ struct db d = {0};
        if ((k = db_open_caller(&d, r, &e)) < 0)
                return db_fail(r, k, &e, "open database connection");
        json_t *items = NULL;
        k = events_query(&d, r->caller.tenant_id, r->params[0], after, (int)limit, include != NULL, &items, &e);
        if (k == -EAGAIN)
                return api_errno(r, -EAGAIN, "run history is not available yet");
        if (k < 0)
                return db_fail(r, k, &e, "load run events");
        json_t *cursor = json_null();
        size_t n = json_array_size(items);
        if (n > 0) {
                char s[24];
                snprintf(s, sizeof s, "%" JSON_INTEGER_FORMAT,
                         json_integer_value(json_object_get(json_array_get(items, n - 1), "seq")));
                json_decref(cursor);
                cursor = json_string(s);
        }
        json_t *records = NULL;
        if (include && (k = events_records_query(&d, items, &records, &e)) < 0) {
                json_decref(items);
                json_decref(cursor);
                return db_fail(r, k, &e, "load signed records");
        }
        r->out = json_pack("{s:o, s:o}", "items", items, "next_cursor", cursor);
        if (r->out && records)
                json_object_set_new(r->out, "records", records);
        else
                json_decref(records);
        r->status = 200;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}
