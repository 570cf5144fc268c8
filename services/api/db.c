/* Thin helpers over lib/pg for request handlers. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "core/json_dump.h"
#include "core/log.h"
#include "pg/pg.h"

int db_open(struct db *d, struct api *a, const char *tenant_id, struct err_detail *e) {
        if (tenant_id && *tenant_id && !id_is_uuid(tenant_id))
                return err_set(e, -EINVAL, "22023", "tenant id is not a UUID");
        d->pool = a->pg;
        snprintf(d->tenant, sizeof d->tenant, "%s", tenant_id ? tenant_id : "");
        d->conn = pg_pool_acquire(a->pg, DB_ACQUIRE_TIMEOUT_MS, e);
        if (!d->conn)
                return e && e->errnum ? e->errnum : -ECONNRESET;
        /* the row-level-security policies key on it: without a tenant,
         * tenant-owned tables show nothing; set for this transaction only,
         * so it ends with the request, whatever happens to the connection */
        int r = pg_tx_restart(d->conn, NULL, d->tenant, e);
        if (r < 0) {
                db_close(d);
                return r;
        }
        return 0;
}

int db_begin(struct db *d, struct err_detail *e) {
        return pg_tx_restart(d->conn, "COMMIT", d->tenant, e);
}

int db_commit(struct db *d, struct err_detail *e) {
        return pg_tx_restart(d->conn, "COMMIT", d->tenant, e);
}

void db_rollback(struct db *d) {
        pg_tx_restart(d->conn, "ROLLBACK", d->tenant, NULL);
}

int db_set_tenant(struct db *d, const char *tenant_id, struct err_detail *e) {
        if (tenant_id && *tenant_id && !id_is_uuid(tenant_id))
                return err_set(e, -EINVAL, "22023", "tenant id is not a UUID");
        int r = pg_set_tenant_local(d->conn, tenant_id, e);
        if (r >= 0)
                snprintf(d->tenant, sizeof d->tenant, "%s", tenant_id ? tenant_id : "");
        return r;
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
        if (!d->conn)
                return;
        /* statements run outside db_begin..db_commit count as done (they
         * were written as autocommitted); a failed transaction is rolled
         * back by the pool, which also resets the session */
        if (PQtransactionStatus(d->conn) == PQTRANS_INTRANS) {
                struct err_detail e = {0};
                if (pg_commit(d->conn, &e) < 0)
                        log_ctx(LOG_WARN, LOG_KV("sqlstate", e.code), "could not commit at the end of a request: %s",
                                e.message);
        }
        /* every setting of a db is transaction-local (above): nothing to
         * RESET on the session, one round trip less per request */
        pg_pool_release_clean(d->pool, d->conn);
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

void db_put_members(struct json_writer *w, const struct db_member *m, size_t n, const PGresult *res, int row, int base,
                    bool hidden) {
        for (size_t i = 0; i < n; i++) {
                json_writer_raw(w, m[i].key, m[i].key_len);
                enum db_member_kind k = m[i].kind;
                bool hideable = k == DB_M_HIDEABLE_TEXT || k == DB_M_HIDEABLE_INTEGER;
                const char *v = hideable && hidden ? NULL : db_val(res, row, base + m[i].col);
                if (k == DB_M_STRING || (v && (k == DB_M_TEXT || k == DB_M_HIDEABLE_TEXT)))
                        json_writer_string(w, v ? v : "");
                else if (k == DB_M_INTEGER || (v && (k == DB_M_INTEGER_OR_NULL || k == DB_M_HIDEABLE_INTEGER)))
                        json_writer_integer(w, (json_int_t)atoll(v ? v : ""));
                else if (k == DB_M_REAL)
                        json_writer_real(w, strtod(v ? v : "", NULL), 0);
                else if (k == DB_M_BOOL && v && v[0] == 't')
                        json_writer_lit(w, "true");
                else if (k == DB_M_BOOL)
                        json_writer_lit(w, "false");
                else
                        json_writer_lit(w, "null");
        }
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

int db_load_team_row(struct api_req *r, struct db *d, const char *what, const char *sql, int nparams,
                     const char *const *params, int team_col, PGresult **ret) {
        struct err_detail e = {0};
        char load[96];
        snprintf(load, sizeof load, "load %s", what);
        _cleanup_pgres_ PGresult *res = NULL;
        int k = pg_exec(d->conn, sql, nparams, params, &res, &e);
        if (k < 0)
                return db_fail(r, k, &e, load);
        if (PQntuples(res) != 1)
                return api_fail(r, -ENOENT, "not_found", "%s not found", what);
        k = api_authz_team(d, &r->caller, PQgetvalue(res, 0, team_col), r->perm, &e);
        if (k == -ENOENT)
                return api_fail(r, -ENOENT, "not_found", "%s not found", what);
        if (k < 0)
                return db_fail(r, k, &e, "check team membership");
        *ret = TAKE_PTR(res);
        return 0;
}

int db_resolve_ref(struct api_req *r, struct db *d, const char *table, const char *name_col, const char *what,
                   const char *ref, char out[UUID_STR_LEN]) {
        char sql[256], look[96];
        if (id_is_uuid(ref))
                snprintf(sql, sizeof sql,
                         "SELECT id FROM %s WHERE tenant_id = $1 AND (id = $2::text::uuid OR %s = $2::text) "
                         "ORDER BY id = $2::text::uuid DESC LIMIT 1",
                         table, name_col);
        else
                snprintf(sql, sizeof sql, "SELECT id FROM %s WHERE tenant_id = $1 AND %s = $2", table, name_col);
        snprintf(look, sizeof look, "look up %s", what);
        struct err_detail e = {0};
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {r->caller.tenant_id, ref};
        int k = pg_exec(d->conn, sql, 2, params, &res, &e);
        if (k < 0)
                return db_fail(r, k, &e, look);
        if (PQntuples(res) != 1)
                return -ENOENT;
        snprintf(out, UUID_STR_LEN, "%s", PQgetvalue(res, 0, 0));
        return 0;
}
