/* Failed-login rate limiting per (user, source address) and per source
 * address (issue 9 §5: a limit must not lock a user out for everyone: while
 * one source guessing at a user is refused, the same user's right password
 * from another source still logs in). The source is the client's address as
 * api_client_ip() gives it (X-Forwarded-For only from PADDOCK_TRUSTED_PROXIES).
 *
 * A sliding log in PostgreSQL (api.login_failures, migration 0008): a key is
 * limited while `max` of its failures fall inside the window, until the oldest
 * of those leaves it. Being in the database, the counts are shared by every
 * api worker process and replica and survive restarts. Keys are a truncated
 * SHA-256 with a domain prefix, so the table holds no user names, tenants or
 * addresses. Rows older than the window are deleted as keys fail again, and
 * now and then for all keys.
 *
 * The limits fail open on a database error: a login needs the database
 * anyway, so such an attempt fails at the user lookup. */
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "core/log.h"
#include "pg/pg.h"

#define RL_ID 16
#define RL_SWEEP_EVERY 64 /* failures between sweeps of every expired row */

/* \x + hex of the key's id, as PostgreSQL reads a bytea parameter in text */
#define RL_KEY_TEXT (2 + 2 * RL_ID + 1)

/* The key of domain and parts (NULL-terminated, each cut at 511 bytes). */
static void rl_key(const char *domain, const char *const *parts, char out[RL_KEY_TEXT]) {
        /* parts separated by NUL: no part can contain one */
        unsigned char buf[16 + 4 * 512], d[SHA256_DIGEST_LENGTH];
        size_t n = strnlen(domain, 15);
        memcpy(buf, domain, n);
        for (int i = 0; parts[i] && i < 4; i++) {
                size_t l = strnlen(parts[i], 511);
                buf[n++] = '\0';
                memcpy(buf + n, parts[i], l);
                n += l;
        }
        SHA256(buf, n, d);
        out[0] = '\\';
        out[1] = 'x';
        for (int i = 0; i < RL_ID; i++)
                snprintf(out + 2 + 2 * i, 3, "%02x", d[i]);
}

/* The keys of a login attempt: the user from this source, and the source. */
static void rl_keys(const char *tenant, const char *username, const char *ip, char user_key[RL_KEY_TEXT],
                    char ip_key[RL_KEY_TEXT]) {
        rl_key("user-source", (const char *const[]){tenant, username, ip, NULL}, user_key);
        rl_key("ip", (const char *const[]){ip, NULL}, ip_key);
}

/* Seconds until key may try again (rounded up), 0 when not limited. */
static int64_t rl_wait(PGconn *conn, const char *key, long long max, long long window_s) {
        char maxs[24], wins[24];
        snprintf(maxs, sizeof maxs, "%lld", max);
        snprintf(wins, sizeof wins, "%lld", window_s);
        const char *params[] = {key, maxs, wins};
        PGresult *res = NULL;
        struct err_detail e = {0};
        int k = pg_exec(conn,
                        "SELECT count(*), ceil(extract(epoch FROM min(at) + make_interval(secs => $3::int)"
                        " - clock_timestamp()))::bigint FROM (SELECT at FROM api.login_failures WHERE key = $1::bytea"
                        " AND at > clock_timestamp() - make_interval(secs => $3::int) ORDER BY at DESC LIMIT $2::int) s",
                        3, params, &res, &e);
        if (k < 0) {
                log_ctx(LOG_WARN, LOG_KV("sqlstate", e.code), "could not read failed logins: %s", e.message);
                return 0;
        }
        int64_t wait = 0;
        if (atoll(PQgetvalue(res, 0, 0)) >= max) {
                wait = PQgetisnull(res, 0, 1) ? 1 : atoll(PQgetvalue(res, 0, 1));
                if (wait < 1)
                        wait = 1;
        }
        PQclear(res);
        return wait;
}

int64_t ratelimit_login_check(struct api *a, const char *tenant, const char *username, const char *ip) {
        char user_key[RL_KEY_TEXT], ip_key[RL_KEY_TEXT];
        rl_keys(tenant, username, ip, user_key, ip_key);
        PGconn *conn = pg_pool_acquire(a->pg, 5000, NULL);
        if (!conn)
                return 0;
        int64_t wu = rl_wait(conn, user_key, a->cfg.login_max_failures_user, a->cfg.login_window_s);
        int64_t wi = ip[0] ? rl_wait(conn, ip_key, a->cfg.login_max_failures_ip, a->cfg.login_window_s) : 0;
        pg_pool_release(a->pg, conn);
        return wu > wi ? wu : wi;
}

void ratelimit_login_failed(struct api *a, const char *tenant, const char *username, const char *ip) {
        static unsigned failures;
        char user_key[RL_KEY_TEXT], ip_key[RL_KEY_TEXT], wins[24];
        rl_keys(tenant, username, ip, user_key, ip_key);
        snprintf(wins, sizeof wins, "%lld", a->cfg.login_window_s);
        PGconn *conn = pg_pool_acquire(a->pg, 5000, NULL);
        if (!conn)
                return;
        const char *params[] = {user_key, ip[0] ? ip_key : NULL, wins};
        struct err_detail e = {0};
        /* the keys' expired rows go as they fail again; every key's now and then */
        bool sweep = ++failures % RL_SWEEP_EVERY == 0;
        int k = pg_exec(conn,
                        sweep ? "WITH gone AS (DELETE FROM api.login_failures"
                                " WHERE at <= clock_timestamp() - make_interval(secs => $3::int))"
                                " INSERT INTO api.login_failures (key) SELECT k FROM unnest(ARRAY[$1::bytea, $2::bytea]) k"
                                " WHERE k IS NOT NULL"
                              : "WITH gone AS (DELETE FROM api.login_failures WHERE key IN ($1::bytea, $2::bytea)"
                                " AND at <= clock_timestamp() - make_interval(secs => $3::int))"
                                " INSERT INTO api.login_failures (key) SELECT k FROM unnest(ARRAY[$1::bytea, $2::bytea]) k"
                                " WHERE k IS NOT NULL",
                        3, params, NULL, &e);
        if (k < 0)
                log_ctx(LOG_WARN, LOG_KV("sqlstate", e.code), "could not record a failed login: %s", e.message);
        pg_pool_release(a->pg, conn);
}

void ratelimit_login_succeeded(struct api *a, const char *tenant, const char *username, const char *ip) {
        char user_key[RL_KEY_TEXT], ip_key[RL_KEY_TEXT];
        rl_keys(tenant, username, ip, user_key, ip_key);
        PGconn *conn = pg_pool_acquire(a->pg, 5000, NULL);
        if (!conn)
                return;
        const char *params[] = {user_key};
        struct err_detail e = {0};
        if (pg_exec(conn, "DELETE FROM api.login_failures WHERE key = $1::bytea", 1, params, NULL, &e) < 0)
                log_ctx(LOG_WARN, LOG_KV("sqlstate", e.code), "could not clear failed logins: %s", e.message);
        pg_pool_release(a->pg, conn);
}
