/* Retention (issue 14 §3; docs/CONTRACTS.md "Retention and legal hold"):
 * the tenant's default and maximum retention (GET/PUT
 * /v1/tenant/retention), the retention and deletion shown on a run, and the
 * 410 of a deleted run's events and artifacts. Expiry itself is defined
 * once, by api.run_retention_of() over a run's columns (migration 0031),
 * which the view api.run_retention (0025) and GET /v1/runs/{id} call;
 * evidence's sweeper deletes what expired. */
#include <errno.h>
#include <string.h>

#include "api.h"
#include "core/json_dump.h"
#include "core/log.h"
#include "pg/pg.h"

/* No api.tenant_retention row: these (the view's coalesce says the same). */
#define RETENTION_DEFAULT_DAYS 365
#define RETENTION_MAX_DAYS 3650

static int retention_load(struct db *d, const char *tenant, long long *ret_default, long long *ret_max,
                          struct err_detail *e) {
        _cleanup_pgres_ PGresult *res = NULL;
        const char *p[] = {tenant};
        int k = pg_exec(d->conn, "SELECT default_days, max_days FROM api.tenant_retention WHERE tenant_id = $1", 1, p,
                        &res, e);
        if (k < 0)
                return k;
        *ret_default = PQntuples(res) == 1 ? atoll(PQgetvalue(res, 0, 0)) : RETENTION_DEFAULT_DAYS;
        *ret_max = PQntuples(res) == 1 ? atoll(PQgetvalue(res, 0, 1)) : RETENTION_MAX_DAYS;
        return 0;
}

int retention_max_days(struct api_req *r, long long *ret) {
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k = db_open_caller(&d, r, &e);
        if (k < 0)
                return db_fail(r, k, &e, "open database connection");
        long long def;
        if ((k = retention_load(&d, r->caller.tenant_id, &def, ret, &e)) < 0)
                return db_fail(r, k, &e, "load retention settings");
        return 0;
}

int retention_get(struct api_req *r) {
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k = db_open_caller(&d, r, &e);
        if (k < 0)
                return db_fail(r, k, &e, "open database connection");
        long long def, max;
        if ((k = retention_load(&d, r->caller.tenant_id, &def, &max, &e)) < 0)
                return db_fail(r, k, &e, "load retention settings");
        r->out = json_pack("{s:I, s:I}", "default_days", (json_int_t)def, "max_days", (json_int_t)max);
        r->status = 200;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

static int days_field(struct api_req *r, json_t *body, const char *key, long long *ret) {
        json_t *v = json_object_get(body, key);
        if (!v)
                return api_fail(r, -EINVAL, "missing_field", "%s is required", key);
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > RETENTION_MAX_DAYS)
                return api_errno(r, -EINVAL, "%s must be an integer from 1 to %d", key,
                                RETENTION_MAX_DAYS);
        *ret = json_integer_value(v);
        return 0;
}

int retention_put(struct api_req *r) {
        _cleanup_json_ json_t *body = NULL;
        int k = api_body_object(r, &body);
        if (k < 0)
                return k;
        static const char *const known[] = {"default_days", "max_days", NULL};
        long long def, max;
        if ((k = api_known_fields(r, body, known)) < 0 || (k = days_field(r, body, "default_days", &def)) < 0 ||
            (k = days_field(r, body, "max_days", &max)) < 0)
                return k;
        if (def > max)
                return api_errno(r, -EINVAL, "default_days (%lld) must not exceed max_days (%lld)", def,
                                max);
        _cleanup_tx_ struct api_tx tx = {0};
        if ((k = api_tx_begin(r, &tx)) < 0)
                return k;
        char sd[24], sm[24];
        snprintf(sd, sizeof sd, "%lld", def);
        snprintf(sm, sizeof sm, "%lld", max);
        const char *p[] = {r->caller.tenant_id, sd, sm, r->caller.user_id};
        k = pg_exec(tx.d.conn,
                    "INSERT INTO api.tenant_retention (tenant_id, default_days, max_days, updated_at, updated_by) "
                    "VALUES ($1, $2::integer, $3::integer, now(), $4) ON CONFLICT (tenant_id) DO UPDATE SET "
                    "default_days = EXCLUDED.default_days, max_days = EXCLUDED.max_days, updated_at = now(), "
                    "updated_by = EXCLUDED.updated_by",
                    4, p, NULL, &tx.e);
        if (k < 0)
                return db_fail(r, k, &tx.e, "store retention settings");
        _cleanup_json_ json_t *change = json_pack("{s:I, s:I}", "default_days", (json_int_t)def, "max_days",
                                                  (json_int_t)max);
        if ((k = api_tx_audit(&tx, "tenant.retention_update", "tenant", r->caller.tenant_id, change)) < 0)
                return k;
        if ((k = api_tx_commit(&tx, "retention settings")) < 0)
                return k;
        log_ctx(LOG_INFO, LOG_KV("tenant", r->caller.tenant_id, "user", r->caller.user_id),
                "retention settings updated (default %lld days, max %lld days)", def, max);
        r->out = json_incref(change);
        r->status = 200;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

/* RETENTION_RUN_COLUMNS, from retention_run_write's col */
static const struct db_member retention_members[] = {
        DB_MEMBER("{\"days\":", 0, DB_M_INTEGER),
        DB_MEMBER(",\"expires_at\":", 1, DB_M_STRING),
        DB_MEMBER(",\"held\":", 2, DB_M_BOOL),
};
static const struct db_member deleted_members[] = {
        DB_MEMBER("{\"at\":", 3, DB_M_STRING),
        DB_MEMBER(",\"reason\":", 4, DB_M_STRING),
        DB_MEMBER(",\"sha256\":", 5, DB_M_STRING),
        DB_MEMBER(",\"events\":", 6, DB_M_INTEGER),
        DB_MEMBER(",\"artifacts\":", 7, DB_M_INTEGER),
};

void retention_run_write(struct json_writer *w, const PGresult *res, int row, int col) {
        json_writer_lit(w, ",\"retention\":");
        if (db_val(res, row, col)) {
                db_put_members(w, retention_members, ELEMENTSOF(retention_members), res, row, col, false);
                json_writer_lit(w, "}");
        } else
                json_writer_lit(w, "null");
        json_writer_lit(w, ",\"deleted\":");
        if (db_val(res, row, col + 3)) {
                db_put_members(w, deleted_members, ELEMENTSOF(deleted_members), res, row, col, false);
                json_writer_lit(w, "}");
        } else
                json_writer_lit(w, "null");
}

int retention_run_gone(struct api_req *r, const char *run_id) {
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k = db_open_caller(&d, r, &e);
        if (k < 0)
                return db_fail(r, k, &e, "open database connection");
        _cleanup_pgres_ PGresult *res = NULL;
        const char *p[] = {run_id};
        /* a sweep that began counts: its events and artifacts are going */
        k = pg_exec(d.conn,
                    "SELECT " DB_TS("coalesce(deleted_at, started_at)") ", reason FROM evidence.run_tombstones "
                    "WHERE run_id = $1",
                    1, p, &res, &e);
        if (k < 0)
                return db_fail(r, k, &e, "load run tombstone");
        if (PQntuples(res) != 1)
                return 0;
        return api_fail(r, -ENOENT, "gone", "the evidence of run %s was deleted at %s (%s)", run_id,
                        PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
}
