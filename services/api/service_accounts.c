/* Service accounts and their API tokens (tenant_admin, checked in routes.c).
 *
 * A service account is a users row of kind 'service': it is granted team
 * roles in team_members like a person, so auth_lookup_token() and
 * api_authz_team() treat its requests through the one RBAC path. It cannot
 * log in (auth.c accepts kind 'user' only). Its tokens are 32 random bytes
 * shown once; only their SHA-256 is stored, with an expiry, and disabling
 * the account (DELETE here, or PATCH /v1/users/{id}) revokes them at once.
 * An expired token answers 401 token_expired naming this endpoint (auth.c);
 * listings show each token's state and count only usable ones as active. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "core/timeutil.h"
#include "pg/pg.h"

#define SA_NAME_MAX 128
#define SA_NAME_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
#define SA_TOKEN_MAX_S 31536000LL   /* one year */
#define SA_TOKEN_DEFAULT_S 2592000LL /* thirty days */
/* never a valid scrypt encoding: no password can match it */
#define SA_NO_PASSWORD "!service-account"

/* A name of 1-128 characters of A-Z a-z 0-9 . _ - (not a UUID). */
static int body_name(struct api_req *r, json_t *body, bool required, const char **ret) {
        json_t *v = json_object_get(body, "name");
        *ret = NULL;
        if (!v)
                return required ? api_fail(r, -EINVAL, "missing_field", "name is required") : 0;
        const char *s = json_string_value(v);
        size_t n = s ? strlen(s) : 0;
        if (!s || n == 0 || n > SA_NAME_MAX || n != json_string_length(v) || strspn(s, SA_NAME_CHARS) != n ||
            id_is_uuid(s))
                return api_errno(r, -EINVAL, "name must be 1-128 characters of A-Z a-z 0-9 . _ - (not a UUID)");
        *ret = s;
        return 0;
}

/* roles of body as a text[] literal (team roles of API.md, deduplicated). */
static int body_roles(struct api_req *r, json_t *body, char *out, size_t size, json_t **ret_list) {
        json_t *roles = json_object_get(body, "roles");
        if (!roles) { /* least privilege by default */
                _cleanup_json_ json_t *viewer = json_pack("[s]", "viewer");
                return roles_literal(r, "roles", viewer, out, size, ret_list);
        }
        if (!json_is_array(roles) || json_array_size(roles) == 0 || json_array_size(roles) > 7)
                return api_errno(r, -EINVAL, "roles must be an array of 1 to 7 role names");
        return roles_literal(r, "roles", roles, out, size, ret_list);
}

/* each token's state: revoked (whatever its expiry), expired, or active */
#define SA_TOKEN_STATE                                                                                   \
        "CASE WHEN k.revoked_at IS NOT NULL THEN 'revoked' WHEN k.expires_at <= now() THEN 'expired' "   \
        "ELSE 'active' END"
#define SA_TOKENS_JSON                                                                                   \
        "coalesce((SELECT json_agg(json_build_object('id', k.id, 'name', k.name, 'created_at', "         \
        DB_TS("k.created_at") ", 'expires_at', " DB_TS("k.expires_at") ", 'revoked_at', "                \
        DB_TS("k.revoked_at") ", 'state', " SA_TOKEN_STATE ") ORDER BY k.created_at, k.id) "             \
        "FROM api.tokens k WHERE k.user_id = u.id AND k.tenant_id = u.tenant_id AND k.id IS NOT NULL), '[]')"
/* only tokens that authenticate count as active */
#define SA_ACTIVE_TOKENS                                                                                 \
        "(SELECT count(*) FROM api.tokens k WHERE k.user_id = u.id AND k.tenant_id = u.tenant_id "       \
        "AND k.id IS NOT NULL AND k.revoked_at IS NULL AND k.expires_at > now())"
#define SA_TEAMS_JSON                                                                                    \
        "coalesce((SELECT json_agg(json_build_object('id', m.team_id, 'roles', m.roles) ORDER BY "      \
        "m.team_id) FROM api.team_members m WHERE m.user_id = u.id AND m.tenant_id = u.tenant_id), '[]')"

int service_accounts_list(struct api_req *r) {
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k = db_open_caller(&d, r, &e);
        if (k < 0)
                return db_fail(r, k, &e, "open database connection");
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {r->caller.tenant_id};
        /* token metadata only: neither the value (never stored) nor its hash */
        k = pg_exec(d.conn,
                    "SELECT u.id, u.username, u.disabled, " DB_TS("u.created_at") ", " SA_TEAMS_JSON ", "
                    SA_TOKENS_JSON ", " SA_ACTIVE_TOKENS " FROM api.users u WHERE u.tenant_id = $1 AND u.kind = 'service' "
                    "ORDER BY u.username",
                    1, params, &res, &e);
        if (k < 0)
                return db_fail(r, k, &e, "list service accounts");
        json_t *items = json_array();
        for (int i = 0; i < PQntuples(res); i++) {
                json_t *teams = json_loads(PQgetvalue(res, i, 4), 0, NULL);
                json_t *tokens = json_loads(PQgetvalue(res, i, 5), 0, NULL);
                json_array_append_new(items, json_pack("{s:s, s:s, s:s, s:b, s:s, s:o, s:o, s:I}", "id",
                                                       PQgetvalue(res, i, 0), "name", PQgetvalue(res, i, 1),
                                                       "kind", "service", "disabled",
                                                       PQgetvalue(res, i, 2)[0] == 't', "created_at",
                                                       PQgetvalue(res, i, 3), "teams",
                                                       teams ? teams : json_array(), "tokens",
                                                       tokens ? tokens : json_array(), "active_tokens",
                                                       (json_int_t)atoll(PQgetvalue(res, i, 6))));
        }
        r->out = json_pack("{s:o, s:n}", "items", items, "next_cursor");
        r->status = 200;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

int service_accounts_create(struct api_req *r) {
        _cleanup_json_ json_t *body = NULL, *roles = NULL;
        int k = api_body_object(r, &body);
        if (k < 0)
                return k;
        static const char *const known[] = {"name", "team", "roles", NULL};
        const char *name;
        if ((k = api_known_fields(r, body, known)) < 0 || (k = body_name(r, body, true, &name)) < 0)
                return k;
        json_t *jt = json_object_get(body, "team");
        if (jt && (!json_is_string(jt) || json_string_length(jt) == 0 || json_string_length(jt) > 256 ||
                   strlen(json_string_value(jt)) != json_string_length(jt)))
                return api_errno(r, -EINVAL, "team must be a team id or name");
        if (!jt && json_object_get(body, "roles"))
                return api_fail(r, -EINVAL, "missing_field", "team is required with roles");
        char roles_lit[256];
        if (jt && (k = body_roles(r, body, roles_lit, sizeof roles_lit, &roles)) < 0)
                return k;

        _cleanup_tx_ struct api_tx tx = {0};
        if ((k = api_tx_begin(r, &tx)) < 0)
                return k;
        char team[UUID_STR_LEN] = "", id[UUID_STR_LEN];
        if (jt && (k = teams_resolve(r, &tx.d, json_string_value(jt), team)) < 0)
                return k;
        if (id_new_uuid(id) < 0)
                return api_errno(r, -EIO, "could not generate an id");
        _cleanup_pgres_ PGresult *res = NULL;
        const char *up[] = {id, r->caller.tenant_id, name, SA_NO_PASSWORD};
        k = pg_exec(tx.d.conn,
                    "INSERT INTO api.users (id, tenant_id, username, password_hash, kind) "
                    "VALUES ($1, $2, $3, $4, 'service') RETURNING " DB_TS("created_at"),
                    4, up, &res, &tx.e);
        if (k == -EEXIST)
                return api_errno(r, -EEXIST, "name is already taken by a user or service account");
        if (k < 0)
                return db_fail(r, k, &tx.e, "create service account");
        if (team[0]) {
                const char *mp[] = {team, id, r->caller.tenant_id, roles_lit};
                if ((k = pg_exec(tx.d.conn,
                                 "INSERT INTO api.team_members (team_id, user_id, tenant_id, roles) "
                                 "VALUES ($1, $2, $3, $4::text[])",
                                 4, mp, NULL, &tx.e)) < 0)
                        return db_fail(r, k, &tx.e, "grant roles");
        }
        _cleanup_json_ json_t *change = json_pack("{s:s, s:s?, s:O?}", "name", name, "team", team[0] ? team : NULL,
                                                  "roles", roles);
        if ((k = api_tx_audit(&tx, "service_account.create", "service_account", id, change)) < 0)
                return k;
        if ((k = api_tx_commit(&tx, "service account")) < 0)
                return k;
        json_t *teams = json_array();
        if (team[0])
                json_array_append_new(teams, json_pack("{s:s, s:O}", "id", team, "roles", roles));
        r->out = json_pack("{s:s, s:s, s:s, s:b, s:s, s:o, s:[], s:i}", "id", id, "name", name, "kind", "service",
                           "disabled", 0, "created_at", PQgetvalue(res, 0, 0), "teams", teams, "tokens",
                           "active_tokens", 0);
        if (asprintf(&r->location, "/v1/service-accounts/%s", id) < 0)
                r->location = NULL;
        r->status = 201;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

/* Locks service account id of the caller's tenant: 0 and its disabled flag,
 * or a recorded 404. */
static int sa_lock(struct api_req *r, struct db *d, const char *id, bool *ret_disabled) {
        if (!id_is_uuid(id))
                return api_errno(r, -ENOENT, "service account not found");
        struct err_detail e = {0};
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {id, r->caller.tenant_id};
        int k = pg_exec(d->conn,
                        "SELECT disabled FROM api.users WHERE id = $1 AND tenant_id = $2 AND kind = 'service' "
                        "FOR UPDATE",
                        2, params, &res, &e);
        if (k < 0)
                return db_fail(r, k, &e, "look up service account");
        if (PQntuples(res) != 1)
                return api_errno(r, -ENOENT, "service account not found");
        *ret_disabled = PQgetvalue(res, 0, 0)[0] == 't';
        return 0;
}

int service_accounts_delete(struct api_req *r) {
        const char *id = r->params[0];
        _cleanup_tx_ struct api_tx tx = {0};
        int k = api_tx_begin(r, &tx);
        if (k < 0)
                return k;
        bool disabled;
        if ((k = sa_lock(r, &tx.d, id, &disabled)) < 0)
                return k;
        /* disabled, not deleted: runs and audit records keep naming it */
        const char *params[] = {id, r->caller.tenant_id};
        if ((k = pg_exec(tx.d.conn, "UPDATE api.users SET disabled = true WHERE id = $1 AND tenant_id = $2", 2,
                         params, NULL, &tx.e)) < 0 ||
            (k = pg_exec(tx.d.conn,
                         "UPDATE api.tokens SET revoked_at = now() WHERE user_id = $1 AND tenant_id = $2 "
                         "AND revoked_at IS NULL",
                         2, params, NULL, &tx.e)) < 0)
                return db_fail(r, k, &tx.e, "disable service account");
        if ((k = api_tx_audit(&tx, "service_account.disable", "service_account", id, NULL)) < 0)
                return k;
        if ((k = api_tx_commit(&tx, "service account")) < 0)
                return k;
        r->status = 204;
        return 0;
}

int service_accounts_token_create(struct api_req *r) {
        _cleanup_json_ json_t *body = NULL;
        int k = api_body_object(r, &body);
        if (k < 0)
                return k;
        static const char *const known[] = {"name", "expires_in_s", NULL};
        const char *name;
        if ((k = api_known_fields(r, body, known)) < 0 || (k = body_name(r, body, true, &name)) < 0)
                return k;
        long long ttl = SA_TOKEN_DEFAULT_S;
        json_t *jx = json_object_get(body, "expires_in_s");
        if (jx) {
                if (!json_is_integer(jx) || json_integer_value(jx) < 1 || json_integer_value(jx) > SA_TOKEN_MAX_S)
                        return api_errno(r, -EINVAL, "expires_in_s must be an integer from 1 to %lld (one year)", SA_TOKEN_MAX_S);
                ttl = json_integer_value(jx);
        }

        const char *sa = r->params[0];
        _cleanup_tx_ struct api_tx tx = {0};
        if ((k = api_tx_begin(r, &tx)) < 0)
                return k;
        bool disabled;
        if ((k = sa_lock(r, &tx.d, sa, &disabled)) < 0)
                return k;
        if (disabled)
                return api_errno(r, -EEXIST, "service account is disabled");
        char token[65], digest[65], id[UUID_STR_LEN], expires[40];
        if (id_random_hex(token, 32) < 0 || id_new_uuid(id) < 0)
                return api_errno(r, -EIO, "could not generate a token");
        auth_sha256_hex(token, digest);
        int64_t exp_us = time_now_us() + ttl * 1000000LL;
        time_format_rfc3339(exp_us, expires, sizeof expires);
        const char *params[] = {digest, sa, r->caller.tenant_id, expires, id, name};
        k = pg_exec(tx.d.conn,
                    "INSERT INTO api.tokens (token_sha256, user_id, tenant_id, expires_at, id, name) "
                    "VALUES ($1, $2, $3, $4::timestamptz, $5, $6)",
                    6, params, NULL, &tx.e);
        if (k < 0) {
                explicit_bzero(token, sizeof token);
                return db_fail(r, k, &tx.e, "store token");
        }
        /* the record names the token, never its value or hash */
        _cleanup_json_ json_t *change = json_pack("{s:s, s:s, s:s}", "token_id", id, "name", name, "expires_at",
                                                  expires);
        if ((k = api_tx_audit(&tx, "service_account.token_create", "service_account", sa, change)) < 0 ||
            (k = api_tx_commit(&tx, "store token")) < 0) {
                explicit_bzero(token, sizeof token);
                return k;
        }
        r->out = json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", id, "name", name, "token", token, "expires_at",
                           expires, "service_account", sa);
        explicit_bzero(token, sizeof token);
        r->status = 201;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

int service_accounts_token_revoke(struct api_req *r) {
        const char *sa = r->params[0], *tok = r->params[1];
        if (!id_is_uuid(sa) || !id_is_uuid(tok))
                return api_errno(r, -ENOENT, "token not found");
        _cleanup_tx_ struct api_tx tx = {0};
        int k = api_tx_begin(r, &tx);
        if (k < 0)
                return k;
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {tok, sa, r->caller.tenant_id};
        k = pg_exec(tx.d.conn,
                    "UPDATE api.tokens k SET revoked_at = coalesce(k.revoked_at, now()) FROM api.users u "
                    "WHERE k.id = $1 AND k.user_id = $2 AND k.tenant_id = $3 AND u.id = k.user_id "
                    "AND u.tenant_id = k.tenant_id AND u.kind = 'service' RETURNING k.id",
                    3, params, &res, &tx.e);
        if (k < 0)
                return db_fail(r, k, &tx.e, "revoke token");
        if (PQntuples(res) != 1)
                return api_errno(r, -ENOENT, "token not found");
        _cleanup_json_ json_t *change = json_pack("{s:s}", "token_id", tok);
        if ((k = api_tx_audit(&tx, "service_account.token_revoke", "service_account", sa, change)) < 0)
                return k;
        if ((k = api_tx_commit(&tx, "revocation")) < 0)
                return k;
        r->status = 204;
        return 0;
}
