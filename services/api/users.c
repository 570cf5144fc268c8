/* Users of the caller's tenant (tenant_admin, checked in routes.c): create
 * with a given password or a generated one-time password (which must be
 * changed at first login, as a given one must when the request says
 * must_change_password), disable/enable (disabling revokes every token of
 * the user at once), delete. */
#include <errno.h>
#include <string.h>

#include "api.h"
#include "pg/pg.h"

#define USERNAME_MAX 128
#define PASSWORD_MIN 12
#define PASSWORD_MAX 1024

#define USER_COLUMNS \
        "id, username, disabled, array_to_json(tenant_roles), " DB_TS("created_at") ", password_change_required"

static json_t *user_json(const PGresult *res, int row) {
        json_t *roles = json_loads(PQgetvalue(res, row, 3), 0, NULL);
        return json_pack("{s:s, s:s, s:b, s:o, s:s, s:b}", "id", PQgetvalue(res, row, 0), "username",
                         PQgetvalue(res, row, 1), "disabled", PQgetvalue(res, row, 2)[0] == 't', "tenant_roles",
                         roles ? roles : json_array(), "created_at", PQgetvalue(res, row, 4),
                         "password_change_required", PQgetvalue(res, row, 5)[0] == 't');
}

static int check_fields(struct api_req *r, json_t *body, const char *const *known) {
        const char *key;
        json_t *v;
        json_object_foreach(body, key, v) {
                bool ok = false;
                for (size_t i = 0; known[i] && !ok; i++)
                        ok = !strcmp(key, known[i]);
                if (!ok)
                        return api_fail(r, -EINVAL, "unknown_field", "%s is not a known field", key);
        }
        return 0;
}

/* Optional boolean member key: -1 absent, 0/1, or a recorded problem. */
static int body_bool(struct api_req *r, json_t *body, const char *key, int *ret) {
        json_t *v = json_object_get(body, key);
        *ret = -1;
        if (!v)
                return 0;
        if (!json_is_boolean(v))
                return api_errno(r, -EINVAL, "%s must be a boolean", key);
        *ret = json_is_true(v);
        return 0;
}

int users_list(struct api_req *r) {
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k = db_open_caller(&d, r, &e);
        if (k < 0)
                return db_fail(r, k, &e, "open database connection");
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {r->caller.tenant_id};
        k = pg_exec(d.conn, "SELECT " USER_COLUMNS " FROM api.users WHERE tenant_id = $1 ORDER BY username", 1,
                    params, &res, &e);
        if (k < 0)
                return db_fail(r, k, &e, "list users");
        json_t *items = json_array();
        for (int i = 0; i < PQntuples(res); i++)
                json_array_append_new(items, user_json(res, i));
        r->out = json_pack("{s:o, s:n}", "items", items, "next_cursor");
        r->status = 200;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

int users_create(struct api_req *r) {
        _cleanup_json_ json_t *body = NULL;
        int k = api_body_object(r, &body);
        if (k < 0)
                return k;
        static const char *const known[] = {"username", "password", "tenant_admin", "must_change_password", "auditor",
                                            NULL};
        if ((k = check_fields(r, body, known)) < 0)
                return k;
        json_t *ju = json_object_get(body, "username");
        if (!ju)
                return api_fail(r, -EINVAL, "missing_field", "username is required");
        const char *username = json_string_value(ju);
        size_t n = username ? strlen(username) : 0;
        if (!username || n == 0 || n > USERNAME_MAX || n != json_string_length(ju) ||
            strspn(username, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@-") != n)
                return api_errno(r, -EINVAL, "username must be 1-128 characters of A-Z a-z 0-9 . _ @ -");
        json_t *jp = json_object_get(body, "password");
        if (jp && (!json_is_string(jp) || json_string_length(jp) < PASSWORD_MIN ||
                   json_string_length(jp) > PASSWORD_MAX || strlen(json_string_value(jp)) != json_string_length(jp)))
                return api_errno(r, -EINVAL, "password must be a string of %d to %d bytes",
                                PASSWORD_MIN, PASSWORD_MAX);
        int admin, must_change, auditor;
        if ((k = body_bool(r, body, "tenant_admin", &admin)) < 0 || (k = body_bool(r, body, "auditor", &auditor)) < 0 ||
            (k = body_bool(r, body, "must_change_password", &must_change)) < 0)
                return k;
        /* a generated password is seen by the admin: only its user may keep one */
        if (!jp && must_change == 0)
                return api_errno(r, -EINVAL, "must_change_password: a generated password must be changed at first login; "
                                "give a password to set one that need not be");
        bool forced = !jp || must_change == 1;

        /* a generated password is shown once, in this answer, and must be changed */
        char generated[33] = "";
        if (!jp && id_random_hex(generated, 16) < 0)
                return api_errno(r, -EIO, "could not generate a password");
        char id[UUID_STR_LEN];
        _cleanup_free_ char *hash = NULL;
        k = auth_hash_password(jp ? json_string_value(jp) : generated, &hash);
        if (k < 0 || id_new_uuid(id) < 0) {
                explicit_bzero(generated, sizeof generated);
                return api_errno(r, -EIO, "could not hash the password");
        }
        _cleanup_tx_ struct api_tx tx = {0};
        _cleanup_pgres_ PGresult *res = NULL;
        _cleanup_json_ json_t *change = NULL;
        /* tenant roles: tenant_admin, auditor (issue 14 §3) */
        const char *roles = admin == 1 ? (auditor == 1 ? "{tenant_admin,auditor}" : "{tenant_admin}")
                                       : (auditor == 1 ? "{auditor}" : "{}");
        const char *params[] = {id, r->caller.tenant_id, username, hash, roles, forced ? "t" : "f"};
        if ((k = api_tx_begin(r, &tx)) < 0)
                goto fail;
        k = pg_exec(tx.d.conn,
                    "INSERT INTO api.users (id, tenant_id, username, password_hash, tenant_roles, "
                    "password_change_required) VALUES ($1, $2, $3, $4, $5::text[], $6::boolean) RETURNING " USER_COLUMNS,
                    6, params, &res, &tx.e);
        if (k < 0) {
                explicit_bzero(generated, sizeof generated);
                if (k == -EEXIST)
                        return api_errno(r, -EEXIST, "a user named \"%s\" exists", username);
                return db_fail(r, k, &tx.e, "create user");
        }
        change = json_pack("{s:s, s:b, s:b}", "username", username, "tenant_admin", admin == 1,
                           "password_change_required", forced);
        if (change && auditor == 1)
                json_object_set_new(change, "auditor", json_true());
        if ((k = api_tx_audit(&tx, "user.create", "user", id, change)) < 0) {
                explicit_bzero(generated, sizeof generated);
                return k;
        }
        if ((k = api_tx_commit(&tx, "user")) < 0)
                goto fail;
        r->out = user_json(res, 0);
        if (r->out && generated[0])
                json_object_set_new(r->out, "password", json_string(generated));
        explicit_bzero(generated, sizeof generated);
        r->status = 201;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
fail:
        explicit_bzero(generated, sizeof generated);
        return k;
}

int users_patch(struct api_req *r) {
        _cleanup_json_ json_t *body = NULL;
        int k = api_body_object(r, &body);
        if (k < 0)
                return k;
        static const char *const known[] = {"disabled", "tenant_admin", "auditor", NULL};
        int disabled, admin, auditor;
        if ((k = check_fields(r, body, known)) < 0 || (k = body_bool(r, body, "disabled", &disabled)) < 0 ||
            (k = body_bool(r, body, "tenant_admin", &admin)) < 0 || (k = body_bool(r, body, "auditor", &auditor)) < 0)
                return k;
        if (!id_is_uuid(r->params[0]))
                return api_errno(r, -ENOENT, "user not found");
        /* an admin locking itself out leaves the tenant without a way back */
        if (!strcmp(r->params[0], r->caller.user_id) && (disabled == 1 || admin == 0))
                return api_errno(r, -EEXIST, "a tenant_admin cannot disable or demote itself");
        _cleanup_tx_ struct api_tx tx = {0};
        if ((k = api_tx_begin(r, &tx)) < 0)
                return k;
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {r->params[0], r->caller.tenant_id, disabled < 0 ? NULL : disabled ? "t" : "f",
                                admin < 0 ? NULL : admin ? "t" : "f", auditor < 0 ? NULL : auditor ? "t" : "f"};
        /* tenant_admin, then auditor ($5, issue 14 §3), each added, removed or kept */
        k = pg_exec(tx.d.conn,
                    "UPDATE api.users SET disabled = coalesce($3::boolean, disabled), tenant_roles = "
                    "(SELECT CASE WHEN $5::boolean IS NULL THEN x "
                    "  WHEN $5::boolean THEN array_append(array_remove(x, 'auditor'), 'auditor') "
                    "  ELSE array_remove(x, 'auditor') END FROM (SELECT CASE "
                    "WHEN $4::boolean IS NULL THEN tenant_roles "
                    "WHEN $4::boolean THEN array_append(array_remove(tenant_roles, 'tenant_admin'), 'tenant_admin') "
                    "ELSE array_remove(tenant_roles, 'tenant_admin') END AS x) q) "
                    "WHERE id = $1 AND tenant_id = $2 RETURNING " USER_COLUMNS,
                    5, params, &res, &tx.e);
        if (k < 0 || PQntuples(res) != 1)
                return k < 0 ? db_fail(r, k, &tx.e, "update user") : api_errno(r, -ENOENT, "user not found");
        /* every token dies with the disabling, so enabling again does not revive them */
        const char *tp[] = {r->params[0], r->caller.tenant_id};
        if (disabled == 1 &&
            (k = pg_exec(tx.d.conn,
                         "UPDATE api.tokens SET revoked_at = now() WHERE user_id = $1 AND tenant_id = $2 "
                         "AND revoked_at IS NULL",
                         2, tp, NULL, &tx.e)) < 0)
                return db_fail(r, k, &tx.e, "revoke tokens");
        _cleanup_json_ json_t *change = json_object();
        if (disabled >= 0)
                json_object_set_new(change, "disabled", json_boolean(disabled));
        if (admin >= 0)
                json_object_set_new(change, "tenant_admin", json_boolean(admin));
        if (auditor >= 0)
                json_object_set_new(change, "auditor", json_boolean(auditor));
        if ((k = api_tx_audit(&tx, disabled == 1 ? "user.disable" : "user.update", "user", r->params[0], change)) <
            0)
                return k;
        if ((k = api_tx_commit(&tx, "user")) < 0)
                return k;
        r->out = user_json(res, 0);
        r->status = 200;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

int users_delete(struct api_req *r) {
        if (!id_is_uuid(r->params[0]))
                return api_errno(r, -ENOENT, "user not found");
        if (!strcmp(r->params[0], r->caller.user_id))
                return api_errno(r, -EEXIST, "a tenant_admin cannot delete itself");
        _cleanup_tx_ struct api_tx tx = {0};
        int k = api_tx_begin(r, &tx);
        if (k < 0)
                return k;
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {r->params[0], r->caller.tenant_id};
        /* tokens and memberships go with the user; what it authored keeps it
         * (history), and such a user is disabled instead */
        k = pg_exec(tx.d.conn, "DELETE FROM api.users WHERE id = $1 AND tenant_id = $2 RETURNING id", 2, params,
                    &res, &tx.e);
        if (k < 0 || PQntuples(res) != 1) {
                /* still referred to (-ENOENT on a DELETE, lib/pg) */
                if (k == -ENOENT)
                        return api_errno(r, -EBUSY, "the user authored sandboxes, runs or secrets; disable it instead");
                return k < 0 ? db_fail(r, k, &tx.e, "delete user") : api_errno(r, -ENOENT, "user not found");
        }
        if ((k = api_tx_audit(&tx, "user.delete", "user", r->params[0], NULL)) < 0)
                return k;
        if ((k = api_tx_commit(&tx, "user deletion")) < 0)
                return k;
        r->status = 204;
        return 0;
}
