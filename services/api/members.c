/* Role grants per team (tenant_admin, checked in routes.c):
 * PUT /v1/teams/{id}/members/{user} {roles:[...]} and GET .../members. */
#include <errno.h>
#include <string.h>

#include "api.h"
#include "pg/pg.h"

#define ROLES_MAX 16

/* 0 if team_id is a team of the caller's tenant, -ENOENT (recorded) if not. */
static int team_in_tenant(struct api_req *r, struct db *d, const char *team_id) {
        if (!id_is_uuid(team_id))
                return api_fail(r, -ENOENT, "not_found", "team not found");
        struct err_detail e = {0};
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {team_id, r->caller.tenant_id};
        int k = pg_exec(d->conn, "SELECT 1 FROM api.teams WHERE id = $1 AND tenant_id = $2", 2, params, &res, &e);
        if (k < 0)
                return db_fail(r, k, &e, "look up team");
        return PQntuples(res) == 1 ? 0 : api_fail(r, -ENOENT, "not_found", "team not found");
}

int members_list(struct api_req *r) {
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k = db_open_caller(&d, r, &e);
        if (k < 0)
                return db_fail(r, k, &e, "open database connection");
        if ((k = team_in_tenant(r, &d, r->params[0])) < 0)
                return k;
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {r->params[0], r->caller.tenant_id};
        k = pg_exec(d.conn,
                    "SELECT u.id, u.username, array_to_json(m.roles) FROM api.team_members m "
                    "JOIN api.users u ON u.id = m.user_id AND u.tenant_id = m.tenant_id "
                    "WHERE m.team_id = $1 AND m.tenant_id = $2 ORDER BY u.username",
                    2, params, &res, &e);
        if (k < 0)
                return db_fail(r, k, &e, "list members");
        json_t *items = json_array();
        for (int i = 0; i < PQntuples(res); i++) {
                json_t *roles = json_loads(PQgetvalue(res, i, 2), 0, NULL);
                json_array_append_new(items, json_pack("{s:{s:s, s:s}, s:o}", "user", "id", PQgetvalue(res, i, 0),
                                                       "username", PQgetvalue(res, i, 1), "roles",
                                                       roles ? roles : json_array()));
        }
        r->out = json_pack("{s:o, s:n}", "items", items, "next_cursor");
        r->status = 200;
        return r->out ? 0 : api_fail(r, -ENOMEM, "internal", "out of memory");
}

int roles_literal(struct api_req *r, json_t *roles, char *out, size_t size, json_t **ret_list) {
        _cleanup_json_ json_t *list = json_array();
        size_t i;
        json_t *v;
        json_array_foreach(roles, i, v) {
                const char *s = json_string_value(v);
                if (!s || strlen(s) != json_string_length(v) || !api_role_valid(s))
                        return api_fail(r, -EINVAL, "invalid_field",
                                        "roles[%zu] must be one of tenant_admin, security_admin, sandbox_author, "
                                        "launcher, approver, reviewer, viewer", i);
                bool dup = false;
                size_t j;
                json_t *w;
                json_array_foreach(list, j, w) dup = dup || !strcmp(json_string_value(w), s);
                if (!dup)
                        json_array_append_new(list, json_string(s));
        }
        size_t off = 0;
        out[off++] = '{';
        json_array_foreach(list, i, v) off += (size_t)snprintf(out + off, size - off, "%s%s", i ? "," : "",
                                                               json_string_value(v));
        snprintf(out + off, size - off, "}");
        *ret_list = TAKE_PTR(list);
        return 0;
}

/* body.roles (required, at most ROLES_MAX) as roles_literal() gives it. */
static int parse_roles(struct api_req *r, json_t *body, char *out, size_t size, json_t **ret_list) {
        int k = api_known_fields(r, body, (const char *const[]){"roles", NULL});
        if (k < 0)
                return k;
        json_t *roles = json_object_get(body, "roles");
        if (!roles)
                return api_fail(r, -EINVAL, "missing_field", "roles is required");
        if (!json_is_array(roles) || json_array_size(roles) > ROLES_MAX)
                return api_fail(r, -EINVAL, "invalid_field", "roles must be an array of at most %d role names",
                                ROLES_MAX);
        return roles_literal(r, roles, out, size, ret_list);
}

int members_put(struct api_req *r) {
        _cleanup_json_ json_t *body = NULL, *list = NULL;
        char roles[256];
        int k = api_body_object(r, &body);
        if (k < 0 || (k = parse_roles(r, body, roles, sizeof roles, &list)) < 0)
                return k;
        const char *team_id = r->params[0], *user_id = r->params[1];
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        if ((k = db_open_caller(&d, r, &e)) < 0)
                return db_fail(r, k, &e, "open database connection");
        if ((k = team_in_tenant(r, &d, team_id)) < 0)
                return k;
        if (!id_is_uuid(user_id))
                return api_fail(r, -ENOENT, "not_found", "user not found");
        _cleanup_pgres_ PGresult *res = NULL;
        const char *up[] = {user_id, r->caller.tenant_id};
        if ((k = pg_exec(d.conn, "SELECT 1 FROM api.users WHERE id = $1 AND tenant_id = $2", 2, up, &res, &e)) < 0)
                return db_fail(r, k, &e, "look up user");
        if (PQntuples(res) != 1)
                return api_fail(r, -ENOENT, "not_found", "user not found");

        bool remove = json_array_size(list) == 0;
        if ((k = pg_begin(d.conn, &e)) < 0)
                return db_fail(r, k, &e, "begin transaction");
        const char *params[] = {team_id, user_id, r->caller.tenant_id, roles};
        if (remove)
                k = pg_exec(d.conn, "DELETE FROM api.team_members WHERE team_id = $1 AND user_id = $2 AND tenant_id = $3",
                            3, params, NULL, &e);
        else
                k = pg_exec(d.conn,
                            "INSERT INTO api.team_members (team_id, user_id, tenant_id, roles) "
                            "VALUES ($1, $2, $3, $4::text[]) "
                            "ON CONFLICT (team_id, user_id) DO UPDATE SET roles = excluded.roles",
                            4, params, NULL, &e);
        if (k < 0) {
                pg_rollback(d.conn);
                return db_fail(r, k, &e, "grant roles");
        }
        char object[2 * UUID_STR_LEN + 1];
        snprintf(object, sizeof object, "%s/%s", team_id, user_id);
        _cleanup_json_ json_t *change = json_pack("{s:s, s:s, s:O}", "team", team_id, "user", user_id, "roles", list);
        if ((k = api_audit(r, &d, remove ? "team.member.remove" : "team.member.grant", "team_member", object,
                           "success", change)) < 0) {
                pg_rollback(d.conn);
                return k;
        }
        if ((k = pg_commit(d.conn, &e)) < 0)
                return db_fail(r, k, &e, "commit grant");
        if (remove) {
                r->status = 204;
                return 0;
        }
        r->out = json_pack("{s:s, s:s, s:O}", "team", team_id, "user", user_id, "roles", list);
        r->status = 200;
        return r->out ? 0 : api_fail(r, -ENOMEM, "internal", "out of memory");
}
