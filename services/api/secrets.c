/* Team secrets: write-only values, encrypted at rest with envelope encryption
 * (lib/crypto/secretbox.h). Each tenant has a random data key stored only
 * wrapped by the master key (aad = tenant id); each value is sealed with the
 * data key, aad = "<tenant id>/<team id>/<name>". No response, log line or
 * error detail ever carries a value. */
#include <errno.h>
#include <openssl/crypto.h>
#include <string.h>

#include "api.h"
#include "core/log.h"
#include "crypto/secretbox.h"
#include "pg/pg.h"

#define SECRET_VALUE_MAX (64 * 1024)
#define AAD_MAX (2 * UUID_STR_LEN + 70)

static void hex_to_bytea_param(const uint8_t *b, size_t n, char *out) {
        out[0] = '\\';
        out[1] = 'x';
        hex_encode(b, n, out + 2);
}

/* Decodes a bytea in PostgreSQL's hex output ("\x0a1b..."). */
static int bytea_from_hex(const char *s, uint8_t *out, size_t size, size_t *ret_len) {
        if (strncmp(s, "\\x", 2) != 0)
                return -EBADMSG;
        s += 2;
        size_t n = strlen(s);
        if (n % 2 || n / 2 > size)
                return -EBADMSG;
        for (size_t i = 0; i < n / 2; i++) {
                unsigned v;
                if (sscanf(s + 2 * i, "%2x", &v) != 1)
                        return -EBADMSG;
                out[i] = (uint8_t)v;
        }
        *ret_len = n / 2;
        return 0;
}

static size_t value_aad(char *buf, const char *tenant_id, const char *team_id, const char *name) {
        return (size_t)snprintf(buf, AAD_MAX, "%s/%s/%s", tenant_id, team_id, name);
}

/* Loads the tenant's data key into key; with create, makes and stores one
 * first if the tenant has none (two racing creators: the first insert wins and
 * both use it). -ENOENT when absent and !create. */
static int tenant_data_key(struct api *a, PGconn *conn, const char *tenant_id, bool create,
                           uint8_t key[SECRETBOX_KEY_LEN], struct err_detail *e) {
        if (create) {
                uint8_t fresh[SECRETBOX_KEY_LEN], wrapped[SECRETBOX_WRAPPED_KEY_LEN];
                char hex[2 * SECRETBOX_WRAPPED_KEY_LEN + 3];
                if (secretbox_new_data_key(fresh) < 0 ||
                    secretbox_wrap_key(a->master_key, fresh, tenant_id, strlen(tenant_id), wrapped) < 0) {
                        OPENSSL_cleanse(fresh, sizeof fresh);
                        return err_set(e, -EIO, "crypto", "could not make a data key");
                }
                OPENSSL_cleanse(fresh, sizeof fresh);
                hex_to_bytea_param(wrapped, sizeof wrapped, hex);
                const char *params[] = {tenant_id, hex};
                int k = pg_exec(conn,
                                "INSERT INTO api.tenant_keys (tenant_id, wrapped_key) VALUES ($1, $2::bytea) "
                                "ON CONFLICT (tenant_id) DO NOTHING",
                                2, params, NULL, e);
                if (k < 0)
                        return k;
        }
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {tenant_id};
        int k = pg_exec(conn, "SELECT wrapped_key FROM api.tenant_keys WHERE tenant_id = $1", 1, params, &res, e);
        if (k < 0)
                return k;
        if (PQntuples(res) != 1)
                return -ENOENT;
        uint8_t wrapped[SECRETBOX_WRAPPED_KEY_LEN + 16];
        size_t wl;
        if (bytea_from_hex(PQgetvalue(res, 0, 0), wrapped, sizeof wrapped, &wl) < 0)
                return err_set(e, -EBADMSG, "crypto", "stored data key of tenant %s is malformed", tenant_id);
        k = secretbox_unwrap_key(a->master_key, wrapped, wl, tenant_id, strlen(tenant_id), key);
        if (k < 0)
                return err_set(e, -EBADMSG, "crypto",
                               "the data key of tenant %s does not open with PADDOCK_MASTER_KEY", tenant_id);
        return 0;
}

int secrets_open_value(struct api *a, PGconn *conn, const char *tenant_id, const char *aad, const char *sealed,
                       uint8_t **ret, size_t *ret_len, struct err_detail *e) {
        size_t cap = strlen(sealed) / 2;
        _cleanup_free_ uint8_t *blob = malloc(cap + 1);
        size_t bl;
        if (!blob)
                return -ENOMEM;
        if (bytea_from_hex(sealed, blob, cap, &bl) < 0 || bl < SECRETBOX_OVERHEAD)
                return err_set(e, -EBADMSG, "crypto", "stored sealed value %s is malformed", aad);
        uint8_t key[SECRETBOX_KEY_LEN];
        int k = tenant_data_key(a, conn, tenant_id, false, key, e);
        if (k < 0)
                return k == -ENOENT ? err_set(e, -EBADMSG, "crypto", "tenant %s has no data key", tenant_id) : k;
        uint8_t *plain = malloc(bl - SECRETBOX_OVERHEAD + 1);
        if (!plain) {
                OPENSSL_cleanse(key, sizeof key);
                return -ENOMEM;
        }
        int n = secretbox_open(key, blob, bl, aad, strlen(aad), plain);
        OPENSSL_cleanse(key, sizeof key);
        if (n < 0) {
                free(plain);
                return err_set(e, -EBADMSG, "crypto", "sealed value %s does not open (wrong master key or moved row)",
                               aad);
        }
        plain[n] = 0;
        *ret = plain;
        *ret_len = (size_t)n;
        return 0;
}

int secrets_seal_value(struct api *a, PGconn *conn, const char *tenant_id, const char *aad, const void *plain,
                       size_t len, char **ret_sealed, struct err_detail *e) {
        uint8_t dk[SECRETBOX_KEY_LEN];
        int k = tenant_data_key(a, conn, tenant_id, true, dk, e);
        if (k < 0)
                return k;
        size_t bl = SECRETBOX_SEALED_LEN(len);
        _cleanup_free_ uint8_t *blob = malloc(bl);
        char *hex = malloc(2 * bl + 3);
        int n = blob && hex ? secretbox_seal(dk, plain, len, aad, strlen(aad), blob) : -ENOMEM;
        OPENSSL_cleanse(dk, sizeof dk);
        if (n < 0) {
                free(hex);
                return n == -ENOMEM ? n : err_set(e, -EIO, "crypto", "could not encrypt the value");
        }
        hex_to_bytea_param(blob, (size_t)n, hex);
        *ret_sealed = hex;
        return 0;
}

int secrets_seal_fail(struct api_req *r, int k, struct err_detail *e) {
        if (k == -EBADMSG || k == -EIO) {
                log_ctx(LOG_ERROR, LOG_KV("tenant", r->caller.tenant_id), "%s", e->message);
                return api_errno(r, -EIO, "internal error");
        }
        return k == -ENOMEM ? api_fail(r, k, "internal", "out of memory") : db_fail(r, k, e, "load tenant data key");
}

int secrets_open(struct api *a, PGconn *conn, const char *tenant_id, const char *team_id, const char *name,
                 uint8_t **ret, size_t *ret_len, struct err_detail *e) {
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {team_id, tenant_id, name};
        int k = pg_exec(conn, "SELECT sealed FROM api.team_secrets WHERE team_id = $1 AND tenant_id = $2 AND name = $3",
                        3, params, &res, e);
        if (k < 0)
                return k;
        if (PQntuples(res) != 1)
                return -ENOENT;
        char aad[AAD_MAX];
        value_aad(aad, tenant_id, team_id, name);
        return secrets_open_value(a, conn, tenant_id, aad, PQgetvalue(res, 0, 0), ret, ret_len, e);
}

/* Resolves the team of the path and checks the caller's permission. */
static int secrets_team(struct api_req *r, struct db *d, char team_id[UUID_STR_LEN]) {
        return teams_resolve(r, d, r->params[0], team_id);
}

static int check_name(struct api_req *r) {
        if (!spec_secret_name_ok(r->params[1]))
                return api_errno(r, -EINVAL, "name must match [A-Z_][A-Z0-9_]{0,63}");
        return 0;
}

/* The request body holds the value in clear: wipe it when the handler returns. */
static void wipe_bodyp(struct api_req **rp) {
        if ((*rp)->body)
                explicit_bzero((char *)(*rp)->body, (*rp)->body_len);
}

int secrets_put(struct api_req *r) {
        _cleanup_(wipe_bodyp) _unused_ struct api_req *wipe = r;
        int k = check_name(r);
        if (k < 0)
                return k;
        _cleanup_json_ json_t *body = NULL;
        if ((k = api_body_object(r, &body)) < 0)
                return k;
        if ((k = api_known_fields(r, body, (const char *const[]){"value", NULL})) < 0)
                return k;
        json_t *jv = json_object_get(body, "value");
        if (!jv)
                return api_fail(r, -EINVAL, "missing_field", "value is required");
        if (!json_is_string(jv) || json_string_length(jv) == 0 ||
            strlen(json_string_value(jv)) != json_string_length(jv))
                return api_errno(r, -EINVAL, "value must be a non-empty string without NUL bytes");
        size_t vlen = json_string_length(jv);
        if (vlen > SECRET_VALUE_MAX)
                return api_errno(r, -E2BIG, "value exceeds %d bytes", SECRET_VALUE_MAX);

        _cleanup_tx_ struct api_tx tx = {0};
        if ((k = api_tx_begin(r, &tx)) < 0)
                return k;
        char team_id[UUID_STR_LEN];
        if ((k = secrets_team(r, &tx.d, team_id)) < 0)
                return k;
        char aad[AAD_MAX];
        value_aad(aad, r->caller.tenant_id, team_id, r->params[1]);
        _cleanup_free_ char *hex = NULL;
        if ((k = secrets_seal_value(r->api, tx.d.conn, r->caller.tenant_id, aad, json_string_value(jv), vlen, &hex,
                                    &tx.e)) < 0)
                return secrets_seal_fail(r, k, &tx.e);
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {team_id, r->params[1], r->caller.tenant_id, hex, r->caller.user_id};
        /* one transaction so the write stands only if it was audited */
        k = pg_exec(tx.d.conn,
                    "INSERT INTO api.team_secrets (team_id, name, tenant_id, sealed, updated_by) "
                    "VALUES ($1, $2, $3, $4::bytea, $5) ON CONFLICT (team_id, name) DO UPDATE SET "
                    "sealed = EXCLUDED.sealed, updated_at = now(), updated_by = EXCLUDED.updated_by "
                    "RETURNING (xmax = 0)",
                    5, params, &res, &tx.e);
        /* the request body (the value) is freed with the request; our copy goes now */
        explicit_bzero((char *)json_string_value(jv), vlen);
        if (k < 0)
                return db_fail(r, k, &tx.e, "store team secret");
        bool created = PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
        /* metadata only: the value never reaches the audit log */
        _cleanup_json_ json_t *change = json_pack("{s:s, s:s}", "team", team_id, "name", r->params[1]);
        char object[UUID_STR_LEN + 80];
        snprintf(object, sizeof object, "%s/%s", team_id, r->params[1]);
        if ((k = api_tx_audit(&tx, "secret.put", "secret", object, change)) < 0)
                return k;
        if ((k = api_tx_commit(&tx, "team secret")) < 0)
                return k;
        log_ctx(LOG_INFO, LOG_KV("tenant", r->caller.tenant_id, "team", team_id, "secret", r->params[1], "user",
                                 r->caller.user_id),
                created ? "team secret created" : "team secret updated");
        r->status = created ? 201 : 204;
        return 0;
}

int secrets_list(struct api_req *r) {
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k = db_open_caller(&d, r, &e);
        if (k < 0)
                return db_fail(r, k, &e, "open database connection");
        char team_id[UUID_STR_LEN];
        if ((k = secrets_team(r, &d, team_id)) < 0)
                return k;
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {team_id, r->caller.tenant_id};
        /* never select the sealed column here: a list has no business with it */
        k = pg_exec(d.conn,
                    "SELECT name, " DB_TS("created_at") ", " DB_TS("updated_at") ", updated_by "
                    "FROM api.team_secrets WHERE team_id = $1 AND tenant_id = $2 ORDER BY name",
                    2, params, &res, &e);
        if (k < 0)
                return db_fail(r, k, &e, "list team secrets");
        json_t *items = json_array();
        for (int i = 0; i < PQntuples(res); i++)
                json_array_append_new(items, json_pack("{s:s, s:s, s:s, s:s, s:s}", "name", PQgetvalue(res, i, 0),
                                                       "team", team_id, "created_at", PQgetvalue(res, i, 1),
                                                       "updated_at", PQgetvalue(res, i, 2), "updated_by",
                                                       PQgetvalue(res, i, 3)));
        r->out = json_pack("{s:o, s:n}", "items", items, "next_cursor");
        r->status = 200;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

int secrets_delete(struct api_req *r) {
        int k = check_name(r);
        if (k < 0)
                return k;
        _cleanup_tx_ struct api_tx tx = {0};
        if ((k = api_tx_begin(r, &tx)) < 0)
                return k;
        char team_id[UUID_STR_LEN];
        if ((k = secrets_team(r, &tx.d, team_id)) < 0)
                return k;
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {team_id, r->caller.tenant_id, r->params[1]};
        k = pg_exec(tx.d.conn, "DELETE FROM api.team_secrets WHERE team_id = $1 AND tenant_id = $2 AND name = $3", 3,
                    params, &res, &tx.e);
        if (k < 0)
                return db_fail(r, k, &tx.e, "delete team secret");
        if (atoi(PQcmdTuples(res)) == 0)
                return api_errno(r, -ENOENT, "secret not found");
        _cleanup_json_ json_t *change = json_pack("{s:s, s:s}", "team", team_id, "name", r->params[1]);
        char object[UUID_STR_LEN + 80];
        snprintf(object, sizeof object, "%s/%s", team_id, r->params[1]);
        if ((k = api_tx_audit(&tx, "secret.delete", "secret", object, change)) < 0)
                return k;
        if ((k = api_tx_commit(&tx, "team secret")) < 0)
                return k;
        log_ctx(LOG_INFO, LOG_KV("tenant", r->caller.tenant_id, "team", team_id, "secret", r->params[1], "user",
                                 r->caller.user_id),
                "team secret deleted");
        r->status = 204;
        return 0;
}
