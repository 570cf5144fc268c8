/* Passwords (scrypt), bearer tokens, login/logout/me, password changes.
 * A user whose password was generated (a one-time password) logs in with
 * password_change_required and must change it (POST /v1/me/password) before
 * its tokens reach anything else (http.c). */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <string.h>

#include "api.h"
#include "core/log.h"
#include "core/timeutil.h"
#include "pg/pg.h"

/* OWASP-level scrypt cost; the encoded hash records N, r, p so they can rise later. */
#define SCRYPT_N 16384ULL
#define SCRYPT_R 8ULL
#define SCRYPT_P 1ULL
#define SCRYPT_MAXMEM (64ULL * 1024 * 1024)
#define SCRYPT_SALT 16
#define SCRYPT_KEY 32
#define FIELD_MAX 256

static int scrypt_raw(const char *password, const unsigned char *salt, size_t salt_len, uint64_t n,
                      uint64_t r, uint64_t p, unsigned char *out, size_t out_len) {
        if (EVP_PBE_scrypt(password, strlen(password), salt, salt_len, n, r, p, SCRYPT_MAXMEM, out,
                           out_len) != 1)
                return -EIO;
        return 0;
}

static int hex_decode(const char *hex, unsigned char *out, size_t out_size, size_t *ret_len) {
        size_t l = strlen(hex);
        if (l % 2 || l / 2 > out_size)
                return -EINVAL;
        for (size_t i = 0; i < l / 2; i++) {
                unsigned v;
                if (sscanf(hex + 2 * i, "%2x", &v) != 1)
                        return -EINVAL;
                out[i] = (unsigned char)v;
        }
        *ret_len = l / 2;
        return 0;
}

int auth_hash_password(const char *password, char **ret_hash) {
        unsigned char salt[SCRYPT_SALT], key[SCRYPT_KEY];
        char salt_hex[2 * SCRYPT_SALT + 1], key_hex[2 * SCRYPT_KEY + 1];
        if (id_random_hex(salt_hex, SCRYPT_SALT) < 0)
                return -EIO;
        size_t sl;
        int r = hex_decode(salt_hex, salt, sizeof salt, &sl);
        if (r < 0)
                return r;
        r = scrypt_raw(password, salt, sl, SCRYPT_N, SCRYPT_R, SCRYPT_P, key, sizeof key);
        if (r < 0)
                return r;
        hex_encode(key, sizeof key, key_hex);
        OPENSSL_cleanse(key, sizeof key);
        if (asprintf(ret_hash, "scrypt$%llu$%llu$%llu$%s$%s", SCRYPT_N, SCRYPT_R, SCRYPT_P, salt_hex,
                     key_hex) < 0)
                return -ENOMEM;
        return 0;
}

bool auth_verify_password(const char *password, const char *encoded) {
        unsigned long long n, r, p;
        char salt_hex[129], key_hex[129];
        if (sscanf(encoded, "scrypt$%llu$%llu$%llu$%128[0-9a-f]$%128[0-9a-f]", &n, &r, &p, salt_hex,
                   key_hex) != 5)
                return false;
        unsigned char salt[64], want[64], got[64];
        size_t sl, kl;
        if (hex_decode(salt_hex, salt, sizeof salt, &sl) < 0 || hex_decode(key_hex, want, sizeof want, &kl) < 0)
                return false;
        if (n > (1ULL << 20) || r > 32 || p > 16 || kl == 0)
                return false;
        if (scrypt_raw(password, salt, sl, n, r, p, got, kl) < 0)
                return false;
        bool ok = CRYPTO_memcmp(got, want, kl) == 0;
        OPENSSL_cleanse(got, sizeof got);
        return ok;
}

/* SHA-256 fetched once, and a digest context per thread kept (and its
 * algorithm's state with it): SHA256() looks the algorithm up in
 * OpenSSL's provider store and allocates two contexts at every call,
 * several times the hash itself on a token (issue 10 §4: every
 * authenticated request hashes its token). */
static EVP_MD *sha256_md;
static pthread_key_t sha256_ctx_key;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static void sha256_ctx_free(void *ctx) {
        EVP_MD_CTX_free(ctx);
}
static void sha256_init(void) {
        sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
        if (pthread_key_create(&sha256_ctx_key, sha256_ctx_free) != 0) {
                EVP_MD_free(sha256_md);
                sha256_md = NULL;
        }
}

void auth_sha256_hex(const char *s, char out[65]) {
        unsigned char d[SHA256_DIGEST_LENGTH];
        pthread_once(&sha256_once, sha256_init);
        EVP_MD_CTX *ctx = sha256_md ? pthread_getspecific(sha256_ctx_key) : NULL;
        if (sha256_md && !ctx && (ctx = EVP_MD_CTX_new()) && pthread_setspecific(sha256_ctx_key, ctx) != 0) {
                EVP_MD_CTX_free(ctx);
                ctx = NULL;
        }
        if (!ctx || EVP_DigestInit_ex(ctx, sha256_md, NULL) != 1 || EVP_DigestUpdate(ctx, s, strlen(s)) != 1 ||
            EVP_DigestFinal_ex(ctx, d, NULL) != 1)
                SHA256((const unsigned char *)s, strlen(s), d);
        hex_encode(d, sizeof d, out);
}

int auth_token_from_wsi(struct lws *wsi, char *buf, size_t size) {
        char h[256];
        int n = lws_hdr_copy(wsi, h, sizeof h, WSI_TOKEN_HTTP_AUTHORIZATION);
        if (n > 0) {
                if (strncasecmp(h, "Bearer ", 7) != 0)
                        return -EACCES;
                const char *t = h + 7;
                while (*t == ' ')
                        t++;
                if (strlen(t) + 1 > size)
                        return -EACCES;
                strcpy(buf, t);
                explicit_bzero(h, sizeof h);
                return 0;
        }
        /* never ?access_token=: a token in a URL ends up in logs and
         * histories; websockets of browsers use a stream ticket (stream.c) */
        return -EACCES;
}

/* After token_caller found nothing: -EKEYEXPIRED with the 401 token_expired
 * detail in e if the token merely expired, else -EACCES. */
static int token_expired(PGconn *conn, const char *digest, struct err_detail *e) {
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {digest};
        /* SECURITY DEFINER like token_caller (migrations/0010_accounts.sql) */
        int r = pg_exec(conn,
                        "SELECT user_id, username, kind, " DB_TS("expires_at") " FROM api.token_expired($1)", 1, params,
                        &res, e);
        if (r < 0)
                return r;
        if (PQntuples(res) != 1)
                return -EACCES;
        const char *id = PQgetvalue(res, 0, 0), *name = PQgetvalue(res, 0, 1), *kind = PQgetvalue(res, 0, 2),
                   *at = PQgetvalue(res, 0, 3);
        /* a service account cannot log in: say who can help */
        if (!strcmp(kind, "service"))
                return err_set(e, -EKEYEXPIRED, "token_expired",
                               "the token of service account \"%s\" expired at %s; a tenant_admin issues a new one "
                               "with POST /v1/service-accounts/%s/tokens",
                               name, at, id);
        return err_set(e, -EKEYEXPIRED, "token_expired", "the token expired at %s; log in again", at);
}

/* The bearer-token lookup: a statement prepared once per pooled
 * connection. It reads no tenant table, and sets the caller's tenant and
 * user (for its transaction) in the same statement, so that what follows
 * in that transaction runs as the caller: the request's first
 * db_open_caller() (keep) or a route's read. A token names no tenant: the
 * one lookup across tenants (SECURITY DEFINER,
 * migrations/0006_row_level_security.sql; in PL/pgSQL since 0016, so its
 * plan is kept as well). api.token_caller_epoch (0029) also answers the
 * auditor role, the token's expiry and the auth epoch, for the cache. */
static const struct pg_stmt token_stmt = {
        "api_token_caller_epoch",
        "SELECT user_id, username, tenant_id, tenant_name, tenant_admin, password_change_required, "
        "set_config('paddock.tenant_id', tenant_id::text, true), set_config('paddock.user_id', user_id::text, true), "
        "auditor, expires_us, epoch FROM api.token_caller_epoch($1)",
        1};

/* A cached lookup's check (migrations/0029_auth_epoch.sql): the caller's
 * tenant and user are set only while the auth epoch is still $1 and the
 * token ($4, its expiry in µs) has not expired, by PostgreSQL's clock as
 * the lookup judges it; else both settings are empty (a read that follows
 * finds nothing) and ok is false. $2 the tenant, $3 the user. */
static const struct pg_stmt token_check_stmt = {
        "api_token_check",
        "SELECT set_config('paddock.tenant_id', CASE WHEN c.ok THEN $2 ELSE '' END, true), "
        "set_config('paddock.user_id', CASE WHEN c.ok THEN $3 ELSE '' END, true), c.ok "
        "FROM (SELECT e.n = $1::bigint AND (extract(epoch FROM now()) * 1000000)::bigint < $4::bigint AS ok "
        "FROM api.auth_epoch e WHERE e.id = 1) c",
        4};

/* ---- the token cache: per worker process, what a lookup found, keyed on
 * the token's digest (never the token), valid only at the auth epoch it
 * was read at (token_check_stmt, checked in the request's round trip):
 * a revoked or expired token, a disabled or deleted user or service
 * account, a changed role stops working at the next request in every
 * worker (docs/CONTRACTS.md "Bearer tokens"). Team roles are not cached:
 * each request's own statements read them. */
#define TOKEN_CACHE_SLOTS 512
struct token_cached {
        char digest[65];
        struct api_caller caller;
        char expires_us[24], epoch[24];
};
static struct token_cached token_cache[TOKEN_CACHE_SLOTS];
/* the stream layer's lookups may come from another thread than requests' */
static pthread_mutex_t token_cache_lock = PTHREAD_MUTEX_INITIALIZER;

static struct token_cached *token_slot(const char *digest) {
        return &token_cache[strtoul((char[]){digest[0], digest[1], digest[2], digest[3], 0}, NULL, 16) %
                            TOKEN_CACHE_SLOTS];
}

static bool token_cache_get(const char *digest, struct token_cached *out) {
        pthread_mutex_lock(&token_cache_lock);
        struct token_cached *slot = token_slot(digest);
        bool hit = !strcmp(slot->digest, digest);
        if (hit)
                *out = *slot;
        pthread_mutex_unlock(&token_cache_lock);
        return hit;
}

static void token_cache_set(const char *digest, const struct token_cached *entry) {
        pthread_mutex_lock(&token_cache_lock);
        struct token_cached *slot = token_slot(digest);
        if (entry)
                *slot = *entry;
        else if (!strcmp(slot->digest, digest))
                slot->digest[0] = '\0';
        pthread_mutex_unlock(&token_cache_lock);
}

/* The caller's fields a lookup decides (not the transport's: via_cookie). */
static void caller_set(struct api_caller *c, const struct api_caller *from) {
        memcpy(c->user_id, from->user_id, sizeof c->user_id);
        memcpy(c->tenant_id, from->tenant_id, sizeof c->tenant_id);
        memcpy(c->username, from->username, sizeof c->username);
        memcpy(c->tenant_name, from->tenant_name, sizeof c->tenant_name);
        memcpy(c->token_sha256, from->token_sha256, sizeof c->token_sha256);
        c->tenant_admin = from->tenant_admin;
        c->password_change_required = from->password_change_required;
        c->auditor = from->auditor;
}

/* An authenticated request's first round trip is its token lookup (or,
 * for a cached token, its check): sent with the BEGIN of the transaction
 * keep takes over, or with the route's read and no BEGIN (the two share
 * the round trip's implicit transaction). A cached entry that fails its
 * check is dropped and the full lookup follows in a second round trip. */
static int token_lookup(struct api *a, const char *token, const char *digest_in, struct api_caller *c,
                        struct db *keep, const struct pg_step *read, PGresult **ret_read, struct err_detail *e) {
        char digest[65];
        if (token) {
                /* our tokens are exactly 64 hex digits; anything else is not worth a query */
                if (strlen(token) != 64 || strspn(token, "0123456789abcdef") != 64)
                        return -EACCES;
                auth_sha256_hex(token, digest);
        } else if (strlen(digest_in) != 64 || strspn(digest_in, "0123456789abcdef") != 64)
                return -EACCES;
        else
                memcpy(digest, digest_in, sizeof digest);
        _cleanup_db_ struct db d = {.pool = a->pg};
        d.conn = pg_pool_acquire(a->pg, DB_ACQUIRE_TIMEOUT_MS, e);
        if (!d.conn)
                return e && e->errnum ? e->errnum : -ECONNRESET;
        struct token_cached hit;
        bool cached = token_cache_get(digest, &hit);
        bool begun = false; /* keep's BEGIN went with a failed check: the lookup follows in its transaction */
        for (;;) {
                const char *params[] = {digest}, *check_params[] = {hit.epoch, hit.caller.tenant_id,
                                                                   hit.caller.user_id, hit.expires_us};
                struct pg_step lookup = cached ? (struct pg_step){.stmt = &token_check_stmt, .params = check_params}
                                               : (struct pg_step){.stmt = &token_stmt, .params = params};
                struct pg_step steps[2] = {{.sql = "BEGIN"}, lookup};
                size_t n = 2, at = 1;
                if (read) {
                        steps[0] = lookup;
                        steps[1] = *read;
                        at = 0;
                } else if (begun) {
                        steps[0] = lookup;
                        n = 1;
                        at = 0;
                }
                PGresult *rets[2] = {NULL, NULL};
                int r = pg_exec_pipeline(d.conn, steps, n, rets, e);
                _cleanup_pgres_ PGresult *res = rets[at];
                _cleanup_pgres_ PGresult *then = n == 2 ? rets[1 - at] : NULL;
                if (r < 0)
                        return r;
                if (cached) {
                        if (PQntuples(res) != 1 || PQgetvalue(res, 0, 2)[0] != 't') {
                                token_cache_set(digest, NULL);
                                cached = false;
                                begun = !read;
                                continue;
                        }
                        caller_set(c, &hit.caller);
                } else {
                        if (PQntuples(res) != 1)
                                return token_expired(d.conn, digest, e);
                        struct token_cached fresh = {0};
                        struct api_caller *f = &fresh.caller;
                        memcpy(fresh.digest, digest, sizeof fresh.digest);
                        snprintf(f->user_id, sizeof f->user_id, "%s", PQgetvalue(res, 0, 0));
                        snprintf(f->username, sizeof f->username, "%s", PQgetvalue(res, 0, 1));
                        snprintf(f->tenant_id, sizeof f->tenant_id, "%s", PQgetvalue(res, 0, 2));
                        snprintf(f->tenant_name, sizeof f->tenant_name, "%s", PQgetvalue(res, 0, 3));
                        f->tenant_admin = PQgetvalue(res, 0, 4)[0] == 't';
                        f->password_change_required = PQgetvalue(res, 0, 5)[0] == 't';
                        f->auditor = PQgetvalue(res, 0, 8)[0] == 't';
                        snprintf(f->token_sha256, sizeof f->token_sha256, "%s", digest);
                        snprintf(fresh.expires_us, sizeof fresh.expires_us, "%s", PQgetvalue(res, 0, 9));
                        snprintf(fresh.epoch, sizeof fresh.epoch, "%s", PQgetvalue(res, 0, 10));
                        token_cache_set(digest, &fresh);
                        caller_set(c, f);
                }
                if (read)
                        *ret_read = TAKE_PTR(then);
                else if (keep) {
                        *keep = (struct db){.pool = TAKE_PTR(d.pool), .conn = TAKE_PTR(d.conn)};
                        snprintf(keep->tenant, sizeof keep->tenant, "%s", c->tenant_id);
                }
                return 0;
        }
}

int auth_lookup_token(struct api *a, const char *token, struct api_caller *c, struct db *keep, struct err_detail *e) {
        return token_lookup(a, token, NULL, c, keep, NULL, NULL, e);
}

int auth_lookup_token_read(struct api *a, const char *token, struct api_caller *c, const struct pg_step *read,
                           PGresult **ret_read, struct err_detail *e) {
        *ret_read = NULL;
        return token_lookup(a, token, NULL, c, NULL, read, ret_read, e);
}

int auth_lookup_token_sha256(struct api *a, const char *digest, struct api_caller *c, struct db *keep,
                             struct err_detail *e) {
        return token_lookup(a, NULL, digest, c, keep, NULL, NULL, e);
}

/* Takes a required string member; records missing_field/invalid_field. */
static int body_string(struct api_req *r, json_t *o, const char *key, size_t max, const char **ret) {
        json_t *v = json_object_get(o, key);
        if (!v)
                return api_fail(r, -EINVAL, "missing_field", "%s is required", key);
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > max ||
            strlen(json_string_value(v)) != json_string_length(v))
                return api_errno(r, -EINVAL, "%s must be a non-empty string of at most %zu bytes", key, max);
        *ret = json_string_value(v);
        return 0;
}

/* Audits a failed login as "anonymous" with the attempted username (never
 * the password) in the tenant's chain, if the tenant exists. A failure to
 * audit is logged and the answer stays 401: refusing a login is safe. */
static void login_failed_audit(struct api_req *r, const char *tenant_id, const char *username, const char *reason) {
        struct err_detail e = {0};
        if (!*tenant_id)
                return;
        _cleanup_json_ json_t *detail = json_pack("{s:s, s:s}", "username", username, "reason", reason);
        api_audit_anonymous(r, tenant_id, "auth.login_failed", "user", NULL, "failure", detail, &e);
}

int auth_tenant_id_by_name(struct db *d, const char *name, char out[UUID_STR_LEN], struct err_detail *e) {
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {name};
        /* SECURITY DEFINER (migrations/0006_row_level_security.sql): before
         * authentication no tenant is set, so no tenant row is visible */
        int k = pg_exec(d->conn, "SELECT api.tenant_id_by_name($1)::text", 1, params, &res, e);
        if (k < 0)
                return k;
        out[0] = '\0';
        if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0))
                return -ENOENT;
        snprintf(out, UUID_STR_LEN, "%s", PQgetvalue(res, 0, 0));
        return 0;
}

int auth_login(struct api_req *r) {
        _cleanup_json_ json_t *body = NULL;
        int k = api_body_object(r, &body);
        if (k < 0)
                return k;
        if ((k = api_known_fields(r, body, (const char *const[]){"tenant", "username", "password", "session", NULL})) < 0)
                return k;
        const char *tenant, *username, *password;
        if ((k = body_string(r, body, "tenant", FIELD_MAX, &tenant)) < 0 ||
            (k = body_string(r, body, "username", FIELD_MAX, &username)) < 0 ||
            (k = body_string(r, body, "password", 1024, &password)) < 0)
                return k;
        /* "cookie": the dashboard's session, the token never reaches the page */
        json_t *session = json_object_get(body, "session");
        bool cookie = false;
        if (session) {
                const char *sv = json_is_string(session) ? json_string_value(session) : "";
                if (strcmp(sv, "token") && strcmp(sv, "cookie"))
                        return api_errno(r, -EINVAL, "session must be \"token\" or \"cookie\"");
                cookie = !strcmp(sv, "cookie");
        }

        /* A limited attempt still does the lookup and the scrypt below, so
         * its answer takes as long as any other failure. */
        char peer[HTTP_CLIENT_ADDR_MAX];
        api_client_ip(r->wsi, r->api, peer);
        int64_t wait_s = ratelimit_login_check(r->api, tenant, username, peer);

        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        k = db_open(&d, r->api, NULL, &e);
        if (k < 0)
                return db_fail(r, k, &e, "open database connection");
        /* the tenant first, then the user as that tenant (row-level security) */
        char tenant_id_buf[UUID_STR_LEN] = "";
        k = auth_tenant_id_by_name(&d, tenant, tenant_id_buf, &e);
        if (k == 0)
                k = db_set_tenant(&d, tenant_id_buf, &e);
        if (k < 0 && k != -ENOENT)
                return db_fail(r, k, &e, "look up tenant");
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {k == 0 ? tenant_id_buf : NULL, username};
        k = pg_exec(d.conn,
                    "SELECT u.id, u.password_hash, u.tenant_id, u.password_change_required FROM api.users u "
                    "WHERE u.tenant_id = $1::uuid AND u.username = $2 AND NOT u.disabled AND u.kind = 'user'",
                    2, params, &res, &e);
        if (k < 0)
                return db_fail(r, k, &e, "look up user");
        /* Same work whether or not the user exists: scrypt always runs, so the
         * answer time is no oracle for user names. */
        static const char dummy[] =
                "scrypt$16384$8$1$00000000000000000000000000000000$"
                "0000000000000000000000000000000000000000000000000000000000000000";
        bool found = PQntuples(res) == 1;
        bool ok = auth_verify_password(password, found ? PQgetvalue(res, 0, 1) : dummy) && found;
        /* While limited even the right password is refused: otherwise the
         * answer would tell a guesser when a guess was right. */
        if (wait_s > 0) {
                log_ctx(LOG_INFO, LOG_KV("tenant", tenant), "login of user \"%s\" from %s refused: rate limited",
                        username, peer[0] ? peer : "unknown");
                login_failed_audit(r, tenant_id_buf, username, "rate_limited");
                r->retry_after_s = wait_s;
                return api_fail(r, -EAGAIN, "rate_limited", "too many failed logins; retry after %lld s",
                                (long long)wait_s);
        }
        if (!ok) {
                ratelimit_login_failed(r->api, tenant, username, peer);
                log_ctx(LOG_INFO, LOG_KV("tenant", tenant), "login failed for user \"%s\"", username);
                login_failed_audit(r, tenant_id_buf, username,
                                   "invalid_credentials");
                return api_errno(r, -EACCES, "invalid tenant, username or password");
        }
        /* The token only becomes valid once its login is audited. */
        if ((k = db_begin(&d, &e)) < 0)
                return db_fail(r, k, &e, "store token");
        const char *user_id = PQgetvalue(res, 0, 0), *tenant_id = PQgetvalue(res, 0, 2);
        bool must_change = PQgetvalue(res, 0, 3)[0] == 't';
        /* a login with a one-time password is audited as such */
        _cleanup_json_ json_t *change = must_change ? json_pack("{s:b}", "password_change_required", 1) : NULL;
        if ((k = auth_issue_token(r, &d, tenant_id, user_id, username, change)) < 0)
                return k;
        ratelimit_login_succeeded(r->api, tenant, username, peer);
        json_object_set_new(r->out, "password_change_required", json_boolean(must_change));
        return cookie ? auth_session_take_token(r) : 0;
}

int auth_session_take_token(struct api_req *r) {
        /* the token goes into the HttpOnly cookie only, never the body */
        int k = auth_session_cookies(r, json_string_value(json_object_get(r->out, "token")), r->api->cfg.token_ttl_s);
        if (k < 0)
                return k;
        json_object_del(r->out, "token");
        return 0;
}

int auth_issue_token(struct api_req *r, struct db *d, const char *tenant_id, const char *user_id,
                     const char *username, json_t *change) {
        struct err_detail e = {0};
        char token[65], digest[65], expires[40];
        if (id_random_hex(token, 32) < 0) {
                db_rollback(d);
                return api_errno(r, -EIO, "could not generate a token");
        }
        auth_sha256_hex(token, digest);
        int64_t exp_us = time_now_us() + r->api->cfg.token_ttl_s * 1000000LL;
        exp_us -= exp_us % 1000000;
        time_format_rfc3339(exp_us, expires, sizeof expires);
        const char *ip[] = {digest, user_id, tenant_id, expires};
        int k = pg_exec(d->conn,
                        "INSERT INTO api.tokens (token_sha256, user_id, tenant_id, expires_at) "
                        "VALUES ($1, $2, $3, $4::timestamptz)",
                        4, ip, NULL, &e);
        if (k < 0) {
                db_rollback(d);
                explicit_bzero(token, sizeof token);
                return db_fail(r, k, &e, "store token");
        }
        snprintf(r->caller.user_id, sizeof r->caller.user_id, "%s", user_id);
        snprintf(r->caller.tenant_id, sizeof r->caller.tenant_id, "%s", tenant_id);
        if ((k = api_audit(r, d, "auth.login", "user", user_id, "success", change)) < 0 ||
            (k = db_commit(d, &e)) < 0) {
                db_rollback(d);
                explicit_bzero(token, sizeof token);
                return r->pcode ? k : db_fail(r, k, &e, "store token");
        }
        log_ctx(LOG_INFO, LOG_KV("tenant", tenant_id, "user", user_id), "login");
        r->status = 200;
        r->out = json_pack("{s:s, s:s, s:{s:s, s:s}, s:b}", "token", token, "expires_at", expires, "user",
                           "id", user_id, "username", username, "password_change_required", 0);
        explicit_bzero(token, sizeof token);
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

int auth_logout(struct api_req *r) {
        _cleanup_tx_ struct api_tx tx = {0};
        int k = api_tx_begin(r, &tx);
        if (k < 0)
                return k;
        const char *params[] = {r->caller.token_sha256, r->caller.tenant_id};
        k = pg_exec(tx.d.conn,
                    "UPDATE api.tokens SET revoked_at = now() WHERE token_sha256 = $1 AND tenant_id = $2 "
                    "AND revoked_at IS NULL",
                    2, params, NULL, &tx.e);
        if (k < 0)
                return db_fail(r, k, &tx.e, "revoke token");
        if ((k = api_tx_audit(&tx, "auth.logout", "user", r->caller.user_id, NULL)) < 0 ||
            (k = api_tx_commit(&tx, "revoke token")) < 0)
                return k;
        r->status = 204;
        /* the browser forgets the revoked session too */
        return r->caller.via_cookie ? auth_session_cookies(r, NULL, 0) : 0;
}

int auth_me(struct api_req *r) {
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k = db_open_caller(&d, r, &e);
        if (k < 0)
                return db_fail(r, k, &e, "open database connection");
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {r->caller.user_id, r->caller.tenant_id};
        k = pg_exec(d.conn,
                    "SELECT t.id, t.name, array_to_json(m.roles) FROM api.team_members m "
                    "JOIN api.teams t ON t.id = m.team_id AND t.tenant_id = m.tenant_id "
                    "WHERE m.user_id = $1 AND m.tenant_id = $2 ORDER BY t.name",
                    2, params, &res, &e);
        if (k < 0)
                return db_fail(r, k, &e, "list memberships");
        json_t *teams = json_array();
        for (int i = 0; i < PQntuples(res); i++) {
                json_t *roles = json_loads(PQgetvalue(res, i, 2), 0, NULL);
                json_array_append_new(teams, json_pack("{s:s, s:s, s:o}", "id", PQgetvalue(res, i, 0),
                                                       "name", PQgetvalue(res, i, 1), "roles",
                                                       roles ? roles : json_array()));
        }
        json_t *tenant_roles = json_array();
        if (r->caller.tenant_admin)
                json_array_append_new(tenant_roles, json_string("tenant_admin"));
        if (r->caller.auditor)
                json_array_append_new(tenant_roles, json_string("auditor"));
        r->out = json_pack("{s:{s:s, s:s}, s:{s:s, s:s}, s:o, s:o, s:b}", "user", "id", r->caller.user_id,
                           "username", r->caller.username, "tenant", "id", r->caller.tenant_id, "name",
                           r->caller.tenant_name, "teams", teams, "tenant_roles", tenant_roles,
                           "password_change_required", r->caller.password_change_required);
        r->status = 200;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

/* Counts UTF-8 characters (bytes that do not continue a sequence). */
static size_t utf8_chars(const char *s) {
        size_t n = 0;
        for (; *s; s++)
                n += ((unsigned char)*s & 0xC0) != 0x80;
        return n;
}

/* Audits a refused password change (no secret: the reason only), in a
 * transaction of its own; a failure to audit is logged, the answer stays. */
static void password_change_refused(struct api_req *r, struct db *d, const char *reason) {
        struct err_detail e = {0};
        _cleanup_json_ json_t *change = json_pack("{s:s}", "reason", reason);
        if (db_begin(d, &e) < 0)
                return;
        /* api_audit records its own 503 on r: keep the refusal's problem */
        const char *pcode = r->pcode;
        char detail[sizeof r->pdetail];
        memcpy(detail, r->pdetail, sizeof detail);
        if (api_audit(r, d, "user.password_change", "user", r->caller.user_id, "failure", change) < 0 ||
            db_commit(d, &e) < 0) {
                db_rollback(d);
                log_ctx(LOG_WARN, LOG_KV("tenant", r->caller.tenant_id, "user", r->caller.user_id),
                        "could not audit a refused password change");
        }
        r->pcode = pcode;
        memcpy(r->pdetail, detail, sizeof detail);
}

int auth_password_change(struct api_req *r) {
        _cleanup_json_ json_t *body = NULL;
        int k = api_body_object(r, &body);
        if (k < 0)
                return k;
        if ((k = api_known_fields(r, body, (const char *const[]){"current_password", "new_password", NULL})) < 0)
                return k;
        const char *current, *fresh;
        if ((k = body_string(r, body, "current_password", 1024, &current)) < 0 ||
            (k = body_string(r, body, "new_password", 1024, &fresh)) < 0)
                return k;
        /* 1024 bytes at most: what login accepts */
        if (utf8_chars(fresh) < 12)
                return api_errno(r, -EINVAL, "new_password must be 12 to 1024 characters (1024 bytes at most)");

        /* a wrong current password counts like a failed login of the user:
         * a token is no licence to guess the password it came from */
        char peer[HTTP_CLIENT_ADDR_MAX];
        api_client_ip(r->wsi, r->api, peer);
        int64_t wait_s = ratelimit_login_check(r->api, r->caller.tenant_name, r->caller.username, peer);

        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        if ((k = db_open_caller(&d, r, &e)) < 0)
                return db_fail(r, k, &e, "open database connection");
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {r->caller.user_id, r->caller.tenant_id};
        k = pg_exec(d.conn,
                    "SELECT kind, password_hash, password_change_required FROM api.users "
                    "WHERE id = $1 AND tenant_id = $2",
                    2, params, &res, &e);
        if (k < 0)
                return db_fail(r, k, &e, "look up user");
        if (PQntuples(res) != 1)
                return api_errno(r, -ENOENT, "user not found");
        if (strcmp(PQgetvalue(res, 0, 0), "user"))
                return api_errno(r, -EEXIST, "%s",
                                !strcmp(PQgetvalue(res, 0, 0), "service")
                                        ? "a service account has no password (it uses API tokens)"
                                        : "the password of an OIDC user is kept by its identity provider");
        const char *old_hash = PQgetvalue(res, 0, 1);
        bool forced = PQgetvalue(res, 0, 2)[0] == 't';
        bool ok = auth_verify_password(current, old_hash);
        if (wait_s > 0) {
                r->retry_after_s = wait_s;
                api_fail(r, -EAGAIN, "rate_limited", "too many wrong passwords; retry after %lld s", (long long)wait_s);
                password_change_refused(r, &d, "rate_limited");
                return -EAGAIN;
        }
        if (!ok) {
                ratelimit_login_failed(r->api, r->caller.tenant_name, r->caller.username, peer);
                api_errno(r, -EINVAL, "current_password is not the user's password");
                password_change_refused(r, &d, "wrong_password");
                return -EINVAL;
        }
        ratelimit_login_succeeded(r->api, r->caller.tenant_name, r->caller.username, peer);
        if (!strcmp(current, fresh))
                return api_errno(r, -EINVAL, "new_password must differ from the current password");

        _cleanup_free_ char *hash = NULL;
        if (auth_hash_password(fresh, &hash) < 0)
                return api_errno(r, -EIO, "could not hash the password");
        if ((k = db_begin(&d, &e)) < 0)
                return db_fail(r, k, &e, "change password");
        /* only over the hash just verified: a concurrent change wins, this one fails */
        _cleanup_pgres_ PGresult *up = NULL;
        const char *uparams[] = {r->caller.user_id, r->caller.tenant_id, old_hash, hash};
        k = pg_exec(d.conn,
                    "UPDATE api.users SET password_hash = $4, password_change_required = false "
                    "WHERE id = $1 AND tenant_id = $2 AND password_hash = $3 RETURNING id",
                    4, uparams, &up, &e);
        if (k < 0 || PQntuples(up) != 1) {
                db_rollback(&d);
                return k < 0 ? db_fail(r, k, &e, "change password")
                             : api_errno(r, -EEXIST, "the password was changed meanwhile; try again");
        }
        /* whoever held the old password's sessions holds none now */
        _cleanup_pgres_ PGresult *rv = NULL;
        const char *tparams[] = {r->caller.user_id, r->caller.tenant_id, r->caller.token_sha256};
        k = pg_exec(d.conn,
                    "UPDATE api.tokens SET revoked_at = now() WHERE user_id = $1 AND tenant_id = $2 "
                    "AND token_sha256 <> $3 AND revoked_at IS NULL RETURNING 1",
                    3, tparams, &rv, &e);
        if (k < 0) {
                db_rollback(&d);
                return db_fail(r, k, &e, "revoke tokens");
        }
        _cleanup_json_ json_t *change = json_pack("{s:b, s:i}", "forced", forced, "tokens_revoked", PQntuples(rv));
        if ((k = api_audit(r, &d, "user.password_change", "user", r->caller.user_id, "success", change)) < 0) {
                db_rollback(&d);
                return k;
        }
        if ((k = db_commit(&d, &e)) < 0)
                return db_fail(r, k, &e, "change password");
        log_ctx(LOG_INFO, LOG_KV("tenant", r->caller.tenant_id, "user", r->caller.user_id), "password changed");
        r->status = 204;
        return 0;
}

/* ---- the dashboard's browser sessions (docs/CONTRACTS.md "Dashboard sessions") */

int auth_cookie_from_wsi(struct lws *wsi, const char *cookie, char *buf, size_t size) {
        char h[4096], name[64];
        int n = lws_hdr_copy(wsi, h, sizeof h, WSI_TOKEN_HTTP_COOKIE);
        if (n <= 0)
                return -ENOENT;
        size_t nl = (size_t)snprintf(name, sizeof name, "%s=", cookie);
        int r = -ENOENT;
        for (char *p = h; *p;) {
                while (*p == ' ' || *p == ';')
                        p++;
                size_t len = strcspn(p, ";");
                if (!strncmp(p, name, nl)) {
                        size_t vl = len - nl;
                        if (vl > 0 && vl < size) {
                                memcpy(buf, p + nl, vl);
                                buf[vl] = '\0';
                                r = 0;
                        }
                        break;
                }
                p += len;
        }
        explicit_bzero(h, sizeof h);
        return r;
}

int auth_session_from_wsi(struct lws *wsi, char *buf, size_t size) {
        return auth_cookie_from_wsi(wsi, AUTH_SESSION_COOKIE, buf, size);
}

void auth_csrf_of(const char *token, char out[65]) {
        /* a label of its own: never equal to the digest the tokens table keeps */
        char buf[16 + 128 + 1];
        snprintf(buf, sizeof buf, "paddock-csrf-v1:%s", token);
        auth_sha256_hex(buf, out);
        explicit_bzero(buf, sizeof buf);
}

bool auth_csrf_ok(struct lws *wsi, const char *token) {
        char h[80] = "", want[65];
        int n = lws_hdr_custom_length(wsi, AUTH_CSRF_HEADER, (int)strlen(AUTH_CSRF_HEADER));
        if (n != 64 || lws_hdr_custom_copy(wsi, h, sizeof h, AUTH_CSRF_HEADER, (int)strlen(AUTH_CSRF_HEADER)) != 64)
                return false;
        auth_csrf_of(token, want);
        return CRYPTO_memcmp(h, want, 64) == 0;
}

const char *auth_cookie_secure(const struct api *a) {
        return !strncmp(a->public_url, "https://", 8) ? "; Secure" : "";
}

int auth_session_cookies(struct api_req *r, const char *token, long long max_age_s) {
        /* SameSite=Strict keeps other sites' requests from carrying it at all */
        const char *secure = auth_cookie_secure(r->api);
        char csrf[65] = "";
        if (token)
                auth_csrf_of(token, csrf);
        if (asprintf(&r->set_cookie[0], AUTH_SESSION_COOKIE "=%s; Path=/; Max-Age=%lld; HttpOnly; SameSite=Strict%s",
                     token ? token : "", token ? max_age_s : 0LL, secure) < 0) {
                r->set_cookie[0] = NULL;
                return api_errno(r, -ENOMEM, "out of memory");
        }
        /* readable by the page, which echoes it in X-CSRF-Token */
        if (asprintf(&r->set_cookie[1], AUTH_CSRF_COOKIE "=%s; Path=/; Max-Age=%lld; SameSite=Strict%s", csrf,
                     token ? max_age_s : 0LL, secure) < 0) {
                r->set_cookie[1] = NULL;
                return api_errno(r, -ENOMEM, "out of memory");
        }
        return 0;
}
