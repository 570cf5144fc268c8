/* Teams of the caller's tenant: listing and resolving for everyone, administration for tenant_admin. */
#include <errno.h>
#include <string.h>

#include "api.h"
#include "pg/pg.h"

int teams_list(struct api_req *r) {
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k = db_open_caller(&d, r, &e);
        if (k < 0)
                return db_fail(r, k, &e, "open database connection");
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {r->caller.tenant_id, r->caller.user_id, r->caller.tenant_admin ? "t" : "f"};
        /* tenant_admin sees every team; others only the teams they belong to */
        k = pg_exec(d.conn,
                    "SELECT t.id, t.name, " DB_TS("t.created_at") ", "
                    "coalesce((SELECT array_to_json(m.roles) FROM api.team_members m "
                    "          WHERE m.team_id = t.id AND m.user_id = $2), '[]'::json) "
                    "FROM api.teams t WHERE t.tenant_id = $1 AND ($3::boolean OR EXISTS "
                    "(SELECT 1 FROM api.team_members m WHERE m.team_id = t.id AND m.user_id = $2)) "
                    "ORDER BY t.name",
                    3, params, &res, &e);
        if (k < 0)
                return db_fail(r, k, &e, "list teams");
        json_t *items = json_array();
        for (int i = 0; i < PQntuples(res); i++) {
                json_t *roles = json_loads(PQgetvalue(res, i, 3), 0, NULL);
                json_array_append_new(items, json_pack("{s:s, s:s, s:s, s:o}", "id", PQgetvalue(res, i, 0),
                                                       "name", PQgetvalue(res, i, 1), "created_at",
                                                       PQgetvalue(res, i, 2), "roles",
                                                       roles ? roles : json_array()));
        }
        r->out = json_pack("{s:o, s:n}", "items", items, "next_cursor");
        r->status = 200;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

int teams_resolve(struct api_req *r, struct db *d, const char *team, char out[UUID_STR_LEN]) {
        struct err_detail e = {0};
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {r->caller.tenant_id, team};
        /* accept the id or, for people typing commands, the team name */
        int k = pg_exec(d->conn,
                        "SELECT id FROM api.teams WHERE tenant_id = $1 AND (id::text = $2 OR name = $2)",
                        2, params, &res, &e);
        if (k < 0)
                return db_fail(r, k, &e, "look up team");
        if (PQntuples(res) != 1)
                return api_errno(r, -ENOENT, "team not found");
        const char *id = PQgetvalue(res, 0, 0);
        k = api_authz_team(d, &r->caller, id, r->perm, &e);
        if (k == -ENOENT)
                return api_errno(r, -ENOENT, "team not found");
        if (k < 0)
                return db_fail(r, k, &e, "check team membership");
        snprintf(out, UUID_STR_LEN, "%s", id);
        return 0;
}

int teams_filter(struct api_req *r, struct db *d, const char *team, char out[UUID_STR_LEN]) {
        int k = team ? teams_resolve(r, d, team, out) : 0;
        if (k == -ENOENT)
                return api_errno(r, -EINVAL, "team: no team \"%s\" that you can see", team);
        return k;
}

/* ---- administration (tenant_admin, checked in routes.c) */

#define TEAM_NAME_MAX 128

/* The team name of body: 1-128 characters of A-Z a-z 0-9 . _ - (names are
 * typed in commands and accepted by teams_resolve, so no ids-lookalikes). */
static int team_body_name(struct api_req *r, json_t *body, const char **ret) {
        int k = api_known_fields(r, body, (const char *const[]){"name", NULL});
        if (k < 0)
                return k;
        json_t *v = json_object_get(body, "name");
        if (!v)
                return api_fail(r, -EINVAL, "missing_field", "name is required");
        const char *s = json_string_value(v);
        size_t n = s ? strlen(s) : 0;
        if (!s || n == 0 || n > TEAM_NAME_MAX || n != json_string_length(v) ||
            strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != n || id_is_uuid(s))
                return api_errno(r, -EINVAL, "name must be 1-128 characters of A-Z a-z 0-9 . _ - (not a UUID)");
        *ret = s;
        return 0;
}

static json_t *team_json(const PGresult *res, int row) {
        return json_pack("{s:s, s:s, s:s}", "id", PQgetvalue(res, row, 0), "name", PQgetvalue(res, row, 1),
                         "created_at", PQgetvalue(res, row, 2));
}

int teams_create(struct api_req *r) {
        _cleanup_json_ json_t *body = NULL;
        const char *name;
        int k = api_body_object(r, &body);
        if (k < 0 || (k = team_body_name(r, body, &name)) < 0)
                return k;
        char id[UUID_STR_LEN];
        if (id_new_uuid(id) < 0)
                return api_errno(r, -EIO, "could not generate an id");
        _cleanup_tx_ struct api_tx tx = {0};
        if ((k = api_tx_begin(r, &tx)) < 0)
                return k;
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {id, r->caller.tenant_id, name};
        k = pg_exec(tx.d.conn,
                    "INSERT INTO api.teams (id, tenant_id, name) VALUES ($1, $2, $3) "
                    "RETURNING id, name, " DB_TS("created_at"),
                    3, params, &res, &tx.e);
        if (k == -EEXIST)
                return api_errno(r, -EEXIST, "a team named \"%s\" exists", name);
        if (k < 0)
                return db_fail(r, k, &tx.e, "create team");
        _cleanup_json_ json_t *change = json_pack("{s:s}", "name", name);
        if ((k = api_tx_audit(&tx, "team.create", "team", id, change)) < 0 || (k = api_tx_commit(&tx, "team")) < 0)
                return k;
        r->out = team_json(res, 0);
        r->status = 201;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

int teams_get(struct api_req *r) {
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k = db_open_caller(&d, r, &e);
        if (k < 0)
                return db_fail(r, k, &e, "open database connection");
        k = api_authz_team(&d, &r->caller, r->params[0], r->perm, &e);
        if (k == -ENOENT)
                return api_errno(r, -ENOENT, "team not found");
        if (k < 0)
                return db_fail(r, k, &e, "check team membership");
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {r->params[0], r->caller.tenant_id, r->caller.user_id};
        k = pg_exec(d.conn,
                    "SELECT t.id, t.name, " DB_TS("t.created_at") ", "
                    "coalesce((SELECT array_to_json(m.roles) FROM api.team_members m "
                    "          WHERE m.team_id = t.id AND m.user_id = $3), '[]'::json) "
                    "FROM api.teams t WHERE t.id = $1 AND t.tenant_id = $2",
                    3, params, &res, &e);
        if (k < 0)
                return db_fail(r, k, &e, "load team");
        if (PQntuples(res) != 1)
                return api_errno(r, -ENOENT, "team not found");
        r->out = team_json(res, 0);
        json_t *roles = json_loads(PQgetvalue(res, 0, 3), 0, NULL);
        if (r->out)
                json_object_set_new(r->out, "roles", roles ? roles : json_array());
        r->status = 200;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

int teams_patch(struct api_req *r) {
        _cleanup_json_ json_t *body = NULL;
        const char *name;
        int k = api_body_object(r, &body);
        if (k < 0 || (k = team_body_name(r, body, &name)) < 0)
                return k;
        if (!id_is_uuid(r->params[0]))
                return api_errno(r, -ENOENT, "team not found");
        _cleanup_tx_ struct api_tx tx = {0};
        if ((k = api_tx_begin(r, &tx)) < 0)
                return k;
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {r->params[0], r->caller.tenant_id, name};
        k = pg_exec(tx.d.conn,
                    "UPDATE api.teams SET name = $3 WHERE id = $1 AND tenant_id = $2 "
                    "RETURNING id, name, " DB_TS("created_at"),
                    3, params, &res, &tx.e);
        if (k == -EEXIST)
                return api_errno(r, -EEXIST, "a team named \"%s\" exists", name);
        if (k < 0)
                return db_fail(r, k, &tx.e, "rename team");
        if (PQntuples(res) != 1)
                return api_errno(r, -ENOENT, "team not found");
        _cleanup_json_ json_t *change = json_pack("{s:s}", "name", name);
        if ((k = api_tx_audit(&tx, "team.update", "team", r->params[0], change)) < 0 ||
            (k = api_tx_commit(&tx, "team")) < 0)
                return k;
        r->out = team_json(res, 0);
        r->status = 200;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

int teams_delete(struct api_req *r) {
        if (!id_is_uuid(r->params[0]))
                return api_errno(r, -ENOENT, "team not found");
        _cleanup_tx_ struct api_tx tx = {0};
        int k = api_tx_begin(r, &tx);
        if (k < 0)
                return k;
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {r->params[0], r->caller.tenant_id};
        /* members and secrets go with the team; sandboxes and runs are history
         * and keep it alive (foreign keys without cascade: -ENOENT on a
         * DELETE means still referred to, lib/pg) */
        k = pg_exec(tx.d.conn, "DELETE FROM api.teams WHERE id = $1 AND tenant_id = $2 RETURNING id", 2, params,
                    &res, &tx.e);
        if (k == -ENOENT)
                return api_errno(r, -EBUSY, "the team still has sandboxes, runs or approvals");
        if (k < 0)
                return db_fail(r, k, &tx.e, "delete team");
        if (PQntuples(res) != 1)
                return api_errno(r, -ENOENT, "team not found");
        if ((k = api_tx_audit(&tx, "team.delete", "team", r->params[0], NULL)) < 0 ||
            (k = api_tx_commit(&tx, "team deletion")) < 0)
                return k;
        r->status = 204;
        return 0;
}
