/* Legal holds (issue 14 §3; docs/CONTRACTS.md "Retention and legal hold"):
 * PUT/DELETE /v1/holds/{kind}/{id} and GET /v1/holds, for tenant_admin and
 * auditor. A hold on a run, a sandbox definition (every run of every
 * version) or a team (every run) keeps evidence's retention sweeper away
 * from the runs it covers until it is lifted (api.run_retention.held). */
#include <errno.h>
#include <string.h>

#include "api.h"
#include "core/log.h"
#include "pg/pg.h"

#define HOLD_REASON_MAX 1000

#define HOLD_COLUMNS "kind, object_id, reason, set_by, " DB_TS("set_at")

static json_t *hold_json(const PGresult *res, int row) {
        return json_pack("{s:s, s:s, s:s, s:s, s:s}", "kind", PQgetvalue(res, row, 0), "id", PQgetvalue(res, row, 1),
                         "reason", PQgetvalue(res, row, 2), "set_by", PQgetvalue(res, row, 3), "set_at",
                         PQgetvalue(res, row, 4));
}

/* The held object's id (into out) from {kind}/{id}: a run id, a sandbox id
 * or name, a team id or name, of the caller's tenant. 0, or the problem
 * recorded on r (404 for what the tenant does not have: no oracle). */
static int hold_target(struct api_req *r, struct db *d, char out[UUID_STR_LEN]) {
        const char *kind = r->params[0], *ref = r->params[1];
        int k;
        if (!strcmp(kind, "run")) {
                if (!id_is_uuid(ref))
                        return api_fail(r, -ENOENT, "not_found", "run not found");
                k = db_resolve_ref(r, d, "api.runs", "id::text", "run", ref, out);
        } else if (!strcmp(kind, "sandbox"))
                k = db_resolve_ref(r, d, "api.sandboxes", "name", "sandbox", ref, out);
        else if (!strcmp(kind, "team"))
                k = db_resolve_ref(r, d, "api.teams", "name", "team", ref, out);
        else
                return api_fail(r, -ENOENT, "not_found", "no hold kind \"%s\" (run, sandbox or team)", kind);
        if (k == -ENOENT)
                return api_fail(r, -ENOENT, "not_found", "%s not found", kind);
        return k;
}

/* The tenant's retention lock, the one evidence's sweeper takes before it
 * decides to delete a run (services/evidence/retention_sweep.c), so a hold
 * committed before that decision is seen by it. */
static int retention_lock(struct db *d, const char *tenant, struct err_detail *e) {
        const char *p[] = {tenant};
        return pg_exec(d->conn, "SELECT pg_advisory_xact_lock(hashtextextended('paddock.retention:' || $1::text, 0))",
                       1, p, NULL, e);
}

int holds_put(struct api_req *r) {
        _cleanup_json_ json_t *body = NULL;
        int k = api_body_object(r, &body);
        if (k < 0)
                return k;
        static const char *const known[] = {"reason", NULL};
        if ((k = api_known_fields(r, body, known)) < 0)
                return k;
        json_t *jr = json_object_get(body, "reason");
        if (!jr)
                return api_fail(r, -EINVAL, "missing_field", "reason is required");
        const char *reason = json_string_value(jr);
        size_t rl = reason ? strlen(reason) : 0;
        bool ctl = false;
        for (size_t i = 0; i < rl; i++)
                ctl |= (unsigned char)reason[i] < 0x20;
        if (!reason || rl != json_string_length(jr) || rl == 0 || rl > HOLD_REASON_MAX || ctl)
                return api_fail(r, -EINVAL, "invalid_field",
                                "reason must be a string of 1 to %d bytes without control characters", HOLD_REASON_MAX);
        _cleanup_tx_ struct api_tx tx = {0};
        if ((k = api_tx_begin(r, &tx)) < 0)
                return k;
        char id[UUID_STR_LEN];
        if ((k = hold_target(r, &tx.d, id)) < 0)
                return k;
        const char *kind = r->params[0];
        if ((k = retention_lock(&tx.d, r->caller.tenant_id, &tx.e)) < 0)
                return db_fail(r, k, &tx.e, "lock retention");
        if (!strcmp(kind, "run")) {
                /* too late once the sweep began: say so rather than promise a hold */
                _cleanup_pgres_ PGresult *t = NULL;
                const char *tp[] = {id};
                if ((k = pg_exec(tx.d.conn, "SELECT 1 FROM evidence.run_tombstones WHERE run_id = $1", 1, tp, &t,
                                 &tx.e)) < 0)
                        return db_fail(r, k, &tx.e, "load run tombstone");
                if (PQntuples(t) > 0)
                        return api_fail(r, -EEXIST, "conflict", "the evidence of run %s was deleted after its retention",
                                        id);
        }
        _cleanup_pgres_ PGresult *res = NULL;
        const char *p[] = {r->caller.tenant_id, kind, id, reason, r->caller.user_id};
        /* xmax = 0: the row was inserted, not updated (201 rather than 200) */
        k = pg_exec(tx.d.conn,
                    "INSERT INTO api.legal_holds (tenant_id, kind, object_id, reason, set_by, set_at) "
                    "VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT (tenant_id, kind, object_id) DO UPDATE SET "
                    "reason = EXCLUDED.reason, set_by = EXCLUDED.set_by, set_at = now() "
                    "RETURNING " HOLD_COLUMNS ", (xmax = 0)",
                    5, p, &res, &tx.e);
        if (k < 0 || PQntuples(res) != 1)
                return db_fail(r, k < 0 ? k : -EIO, &tx.e, "store legal hold");
        _cleanup_json_ json_t *change = json_pack("{s:s, s:s, s:s}", "kind", kind, "id", id, "reason", reason);
        if ((k = api_tx_audit(&tx, "legal_hold.set", kind, id, change)) < 0 ||
            (k = api_tx_commit(&tx, "legal hold")) < 0)
                return k;
        log_ctx(LOG_INFO, LOG_KV("tenant", r->caller.tenant_id, "user", r->caller.user_id, "kind", kind, "id", id),
                "legal hold set");
        r->out = hold_json(res, 0);
        r->status = PQgetvalue(res, 0, 5)[0] == 't' ? 201 : 200;
        return r->out ? 0 : api_fail(r, -ENOMEM, "internal", "out of memory");
}

int holds_delete(struct api_req *r) {
        int k = api_body_none(r);
        if (k < 0)
                return k;
        _cleanup_tx_ struct api_tx tx = {0};
        if ((k = api_tx_begin(r, &tx)) < 0)
                return k;
        char id[UUID_STR_LEN];
        if ((k = hold_target(r, &tx.d, id)) < 0)
                return k;
        const char *kind = r->params[0];
        _cleanup_pgres_ PGresult *res = NULL;
        const char *p[] = {r->caller.tenant_id, kind, id};
        k = pg_exec(tx.d.conn,
                    "DELETE FROM api.legal_holds WHERE tenant_id = $1 AND kind = $2 AND object_id = $3 "
                    "RETURNING " HOLD_COLUMNS,
                    3, p, &res, &tx.e);
        if (k < 0)
                return db_fail(r, k, &tx.e, "lift legal hold");
        if (PQntuples(res) != 1)
                return api_fail(r, -ENOENT, "not_found", "no legal hold on %s %s", kind, id);
        _cleanup_json_ json_t *change = json_pack("{s:s, s:s, s:s}", "kind", kind, "id", id, "reason",
                                                  PQgetvalue(res, 0, 2));
        if ((k = api_tx_audit(&tx, "legal_hold.lift", kind, id, change)) < 0 ||
            (k = api_tx_commit(&tx, "legal hold lift")) < 0)
                return k;
        log_ctx(LOG_INFO, LOG_KV("tenant", r->caller.tenant_id, "user", r->caller.user_id, "kind", kind, "id", id),
                "legal hold lifted");
        r->status = 204;
        return 0;
}

int holds_list(struct api_req *r) {
        char kind[16];
        const char *kq = api_query(r, "kind", kind, sizeof kind);
        if (kq && strcmp(kq, "run") && strcmp(kq, "sandbox") && strcmp(kq, "team"))
                return api_fail(r, -EINVAL, "invalid_field", "kind must be run, sandbox or team");
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k = db_open_caller(&d, r, &e);
        if (k < 0)
                return db_fail(r, k, &e, "open database connection");
        _cleanup_pgres_ PGresult *res = NULL;
        const char *p[] = {r->caller.tenant_id, kq};
        k = pg_exec(d.conn,
                    "SELECT " HOLD_COLUMNS " FROM api.legal_holds WHERE tenant_id = $1 AND ($2::text IS NULL OR kind = $2) "
                    "ORDER BY set_at, kind, object_id LIMIT 1000",
                    2, p, &res, &e);
        if (k < 0)
                return db_fail(r, k, &e, "list legal holds");
        json_t *items = json_array();
        for (int i = 0; i < PQntuples(res); i++)
                json_array_append_new(items, hold_json(res, i));
        r->out = json_pack("{s:o, s:n}", "items", items, "next_cursor");
        r->status = 200;
        return r->out ? 0 : api_fail(r, -ENOMEM, "internal", "out of memory");
}
