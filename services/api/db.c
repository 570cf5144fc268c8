/* Thin helpers over lib/pg for request handlers. */
#include <errno.h>
#include <string.h>

#include "api.h"
#include "core/log.h"
#include "pg/pg.h"

int db_open(struct db *d, struct api *a, const char *tenant_id, struct err_detail *e) {
        d->pool = a->pg;
        d->conn = pg_pool_acquire(a->pg, DB_ACQUIRE_TIMEOUT_MS, e);
        if (!d->conn)
                return e && e->errnum ? e->errnum : -ECONNRESET;
        /* the row-level-security policies key on it: without a tenant,
         * tenant-owned tables show nothing */
        int r = pg_set_tenant(d->conn, tenant_id, e);
        if (r < 0) {
                db_close(d);
                return r;
        }
        return 0;
}

int db_open_caller(struct db *d, struct api_req *r, struct err_detail *e) {
        if (r->auth_db && r->auth_db->conn) {
                *d = *r->auth_db;
                *r->auth_db = (struct db){0};
                return 0;
        }
        return db_open(d, r->api, r->caller.tenant_id, e);
}

void db_close(struct db *d) {
        if (d->conn)
                pg_pool_release(d->pool, d->conn);
        d->conn = NULL;
}

const char *db_val(const PGresult *res, int row, int col) {
        if (PQgetisnull(res, row, col))
                return NULL;
        return PQgetvalue(res, row, col);
}

json_t *db_json_str(const PGresult *res, int row, int col) {
        const char *v = db_val(res, row, col);
        return v ? json_string(v) : json_null();
}

int db_fail(struct api_req *r, int err, const struct err_detail *e, const char *what) {
        /* api_authz_team(): a member of the team without a role carrying the
         * permission; its detail names the roles that would do */
        if (err == -EPERM) {
                bool named = e && e->errnum == -EPERM && e->message[0];
                return api_fail(r, -EPERM, "forbidden", "%s",
                                named ? e->message : "no role of the caller in this team grants this");
        }
        log_ctx(LOG_ERROR, LOG_KV("sqlstate", e ? e->code : ""), "could not %s: %s", what,
                e && e->message[0] ? e->message : strerror(-err));
        if (err == -ECONNRESET || err == -ETIMEDOUT || err == -EAGAIN)
                return api_fail(r, err, "unavailable", "database unavailable");
        return api_fail(r, -EIO, "internal", "internal error");
}
