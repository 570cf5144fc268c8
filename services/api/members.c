/* Role grants per team (tenant_admin, checked in routes.c):
 * PUT /v1/teams/{id}/members/{user} {roles:[...]} replaces the user's roles,
 * PATCH ... {add:[...], remove:[...]} changes them, GET .../members lists.
 * PUT and PATCH answer what changed ({team, user, roles, added, removed}),
 * so that no grant replaces roles silently. */
#include <errno.h>
#include <string.h>

#include "api.h"
#include "pg/pg.h"

#define ROLES_MAX 16
#define ROLES_LITERAL_MAX 256

/* 0 if team_id is a team of the caller's tenant, -ENOENT (recorded) if not. */
static int team_in_tenant(struct api_req *r, struct db *d, const char *team_id) {
        if (!id_is_uuid(team_id))
                return api_errno(r, -ENOENT, "team not found");
        struct err_detail e = {0};
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {team_id, r->caller.tenant_id};
        int k = pg_exec(d->conn, "SELECT 1 FROM api.teams WHERE id = $1 AND tenant_id = $2", 2, params, &res, &e);
        if (k < 0)
                return db_fail(r, k, &e, "look up team");
        return PQntuples(res) == 1 ? 0 : api_errno(r, -ENOENT, "team not found");
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
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

static bool roles_has(json_t *list, const char *role) {
        size_t i;
        json_t *v;
        json_array_foreach(list, i, v) {
                if (!strcmp(json_string_value(v), role))
                        return true;
        }
        return false;
}

/* The text[] literal of list (validated role names: no quoting needed). */
static void roles_to_literal(json_t *list, char *out, size_t size) {
        size_t off = 0, i;
        json_t *v;
        out[off++] = '{';
        json_array_foreach(list, i, v) {
                int n = snprintf(out + off, size - off, "%s%s", i ? "," : "", json_string_value(v));
                if (n < 0 || (size_t)n >= size - off)
                        break;
                off += (size_t)n;
        }
        snprintf(out + off, size - off, "}");
}

int roles_literal(struct api_req *r, const char *field, json_t *roles, char *out, size_t size, json_t **ret_list) {
        _cleanup_json_ json_t *list = json_array();
        size_t i;
        json_t *v;
        json_array_foreach(roles, i, v) {
                const char *s = json_string_value(v);
                if (!s || strlen(s) != json_string_length(v) || !api_role_valid(s))
                        return api_errno(r, -EINVAL, "%s[%zu] must be one of tenant_admin, security_admin, sandbox_author, "
                                        "launcher, approver, reviewer, viewer", field, i);
                if (!roles_has(list, s))
                        json_array_append_new(list, json_string(s));
        }
        roles_to_literal(list, out, size);
        *ret_list = TAKE_PTR(list);
        return 0;
}

/* body.field as roles_literal() gives it: an array of at most ROLES_MAX
 * role names; absent gives an empty list when optional. */
static int body_roles(struct api_req *r, json_t *body, const char *field, bool required, json_t **ret_list) {
        json_t *roles = json_object_get(body, field);
        char lit[ROLES_LITERAL_MAX];
        if (!roles) {
                if (required)
                        return api_fail(r, -EINVAL, "missing_field", "%s is required", field);
                *ret_list = json_array();
                return *ret_list ? 0 : api_errno(r, -ENOMEM, "out of memory");
        }
        if (!json_is_array(roles) || json_array_size(roles) > ROLES_MAX)
                return api_errno(r, -EINVAL, "%s must be an array of at most %d role names", field,
                                ROLES_MAX);
        return roles_literal(r, field, roles, lit, sizeof lit, ret_list);
}

/* a \ b, in a's order (caller owns) */
static json_t *roles_minus(json_t *a, json_t *b) {
        json_t *out = json_array();
        size_t i;
        json_t *v;
        json_array_foreach(a, i, v) {
                if (out && !roles_has(b, json_string_value(v)))
                        json_array_append(out, v);
        }
        return out;
}

/* Replaces (set != NULL) or changes (add, remove) the roles of path user in
 * path team, in one transaction that locks the membership, and answers
 * {team, user, roles, added, removed}. A change to no role removes the
 * membership; a request that changes nothing writes and audits nothing. */
static int members_apply(struct api_req *r, json_t *set, json_t *add, json_t *remove) {
        const char *team_id = r->params[0], *user_id = r->params[1];
        _cleanup_tx_ struct api_tx tx = {0};
        int k;
        if ((k = api_tx_begin(r, &tx)) < 0)
                return k;
        if ((k = team_in_tenant(r, &tx.d, team_id)) < 0)
                return k;
        if (!id_is_uuid(user_id))
                return api_errno(r, -ENOENT, "user not found");
        _cleanup_pgres_ PGresult *res = NULL;
        const char *up[] = {user_id, r->caller.tenant_id};
        if ((k = pg_exec(tx.d.conn, "SELECT 1 FROM api.users WHERE id = $1 AND tenant_id = $2", 2, up, &res, &tx.e)) < 0)
                return db_fail(r, k, &tx.e, "look up user");
        if (PQntuples(res) != 1)
                return api_errno(r, -ENOENT, "user not found");
        const char *mp[] = {team_id, user_id, r->caller.tenant_id};
        _cleanup_pgres_ PGresult *cur = NULL;
        k = pg_exec(tx.d.conn,
                    "SELECT array_to_json(roles) FROM api.team_members WHERE team_id = $1 AND user_id = $2 "
                    "AND tenant_id = $3 FOR UPDATE",
                    3, mp, &cur, &tx.e);
        if (k < 0)
                return db_fail(r, k, &tx.e, "look up membership");
        _cleanup_json_ json_t *old = PQntuples(cur) == 1 ? json_loads(PQgetvalue(cur, 0, 0), 0, NULL) : json_array();
        _cleanup_json_ json_t *now = NULL;
        if (!old)
                return api_errno(r, -EIO, "could not read the membership");
        if (set)
                now = json_copy(set);
        else {
                now = roles_minus(old, remove);
                size_t i;
                json_t *v;
                json_array_foreach(add, i, v) {
                        if (now && !roles_has(now, json_string_value(v)))
                                json_array_append(now, v);
                }
        }
        _cleanup_json_ json_t *added = roles_minus(now, old), *removed = roles_minus(old, now);
        if (!now || !added || !removed)
                return api_errno(r, -ENOMEM, "out of memory");
        /* the same roles in another order is no change either */
        bool changed = json_array_size(added) > 0 || json_array_size(removed) > 0;
        if (changed) {
                char lit[ROLES_LITERAL_MAX];
                roles_to_literal(now, lit, sizeof lit);
                const char *params[] = {team_id, user_id, r->caller.tenant_id, lit};
                bool gone = json_array_size(now) == 0;
                if (gone)
                        k = pg_exec(tx.d.conn,
                                    "DELETE FROM api.team_members WHERE team_id = $1 AND user_id = $2 AND tenant_id = $3",
                                    3, params, NULL, &tx.e);
                else
                        k = pg_exec(tx.d.conn,
                                    "INSERT INTO api.team_members (team_id, user_id, tenant_id, roles) "
                                    "VALUES ($1, $2, $3, $4::text[]) "
                                    "ON CONFLICT (team_id, user_id) DO UPDATE SET roles = excluded.roles",
                                    4, params, NULL, &tx.e);
                if (k < 0)
                        return db_fail(r, k, &tx.e, "grant roles");
                char object[2 * UUID_STR_LEN + 1];
                snprintf(object, sizeof object, "%s/%s", team_id, user_id);
                _cleanup_json_ json_t *change = json_pack("{s:s, s:s, s:O, s:O, s:O}", "team", team_id, "user",
                                                          user_id, "roles", now, "added", added, "removed", removed);
                if ((k = api_tx_audit(&tx, gone ? "team.member.remove" : "team.member.grant", "team_member", object,
                                      change)) < 0)
                        return k;
                if ((k = api_tx_commit(&tx, "grant")) < 0)
                        return k;
        }
        /* unchanged: the roles as stored (a PUT may have listed them in another order) */
        r->out = json_pack("{s:s, s:s, s:O, s:O, s:O}", "team", team_id, "user", user_id, "roles", changed ? now : old,
                           "added", added, "removed", removed);
        r->status = 200;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

int members_put(struct api_req *r) {
        _cleanup_json_ json_t *body = NULL, *list = NULL;
        int k = api_body_object(r, &body);
        if (k < 0 || (k = api_known_fields(r, body, (const char *const[]){"roles", NULL})) < 0 ||
            (k = body_roles(r, body, "roles", true, &list)) < 0)
                return k;
        return members_apply(r, list, NULL, NULL);
}

int members_patch(struct api_req *r) {
        _cleanup_json_ json_t *body = NULL, *add = NULL, *remove = NULL;
        int k = api_body_object(r, &body);
        if (k < 0 || (k = api_known_fields(r, body, (const char *const[]){"add", "remove", NULL})) < 0)
                return k;
        if (!json_object_get(body, "add") && !json_object_get(body, "remove"))
                return api_fail(r, -EINVAL, "missing_field", "add or remove is required");
        if ((k = body_roles(r, body, "add", false, &add)) < 0 || (k = body_roles(r, body, "remove", false, &remove)) < 0)
                return k;
        /* asking for both is a mistake, not an order of operations */
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(body, "remove"), i, v) {
                if (roles_has(add, json_string_value(v)))
                        return api_errno(r, -EINVAL, "remove[%zu]: %s is also in add", i,
                                        json_string_value(v));
        }
        return members_apply(r, NULL, add, remove);
}
