/* Teams of the caller's tenant. */
#include <errno.h>
#include <string.h>

#include "api.h"
#include "pg/pg.h"

int teams_list(struct api_req *r) {
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k = db_open(&d, r->api, r->caller.tenant_id, &e);
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
        return r->out ? 0 : api_fail(r, -ENOMEM, "internal", "out of memory");
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
                return api_fail(r, -ENOENT, "not_found", "team not found");
        const char *id = PQgetvalue(res, 0, 0);
        k = api_authz_team(d, &r->caller, id, r->perm, &e);
        if (k == -ENOENT)
                return api_fail(r, -ENOENT, "not_found", "team not found");
        if (k < 0)
                return db_fail(r, k, &e, "check team membership");
        snprintf(out, UUID_STR_LEN, "%s", id);
        return 0;
}
