/* OIDC login per tenant (docs/CONTRACTS.md "OIDC login").
 *
 * A tenant_admin configures one identity provider for its tenant (issuer,
 * audience, JWKS URL, clock skew, username claim, claim→role mapping of
 * lib/auth/oidc_roles.h). POST /v1/auth/oidc exchanges an ID token or JWT
 * access token of that provider for a normal Paddock login token: the token
 * is verified by lib/auth/jwt.h with the tenant's JWKS (kept in PostgreSQL
 * and shared by every api worker and replica, see oidc_key()), the user is provisioned as a users
 * row of kind 'oidc' bound to the provider's (iss, sub), and its team grants
 * and tenant roles are replaced by what the mapping gives.
 *
 * Runs on the lws service thread only, like every handler: a JWKS fetch
 * blocks the api for at most OIDC_JWKS_TIMEOUT_MS, and at most once per
 * refresh interval per tenant however many unknown kids are presented. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "auth/jwks.h"
#include "auth/jwt.h"
#include "auth/oidc_roles.h"
#include "core/log.h"
#include "pg/pg.h"

#define OIDC_JWKS_CONNECT_TIMEOUT_MS 2000
#define OIDC_JWKS_TIMEOUT_MS 3000
#define OIDC_URL_MAX 2048
#define OIDC_AUDIENCE_MAX 512
#define OIDC_CLAIM_MAX 256
#define OIDC_TENANT_MAX 256
#define OIDC_SUBJECT_MAX 255
#define OIDC_USERNAME_MAX 128
#define OIDC_DEFAULT_USERNAME_CLAIM "preferred_username"
/* not a valid scrypt encoding: such a user can never log in with a password */
#define OIDC_NO_PASSWORD "!oidc"

/* ---- the tenant's provider keys, shared through PostgreSQL
 *
 * The JWKS document lives in api.tenant_oidc (jwks_doc, jwks_fetched_at), so
 * every api worker and replica sees the same key set, and the refresh rules
 * hold for the tenant as a whole: the set is fetched when there is none or it
 * is older than JWKS_MAX_AGE_DEFAULT, and when a token names an unknown kid,
 * but at most once per JWKS_REFRESH_INTERVAL_DEFAULT, so tokens with random
 * kids cannot turn the api into a fetch amplifier against the provider. The
 * fetch is claimed by moving jwks_fetched_at first (one winner under
 * concurrency); a failed fetch keeps the previous set. Changing the
 * configuration forgets the stored set. */

/* Looks kid up in the stored document; 0 with *ret, or -ENOKEY. */
static int oidc_stored_key(const char *doc, const char *kid, struct jwk **ret) {
        if (!doc || !*doc)
                return -ENOKEY;
        _cleanup_(jwks_freep) struct jwks *set = NULL;
        if (jwks_parse(doc, strlen(doc), &set, NULL) < 0)
                return -ENOKEY;
        *ret = jwks_find(set, kid);
        return *ret ? 0 : -ENOKEY;
}

/* The key named kid for the tenant (db d is open as that tenant), fetching
 * the set from url when the rules above allow. Returns 0 with *ret (caller
 * unrefs), -ENOKEY, or the fetch's error (the provider is down: 503). */
static int oidc_key(struct api *a, struct db *d, const char *tenant_id, const char *url, const char *kid, struct jwk **ret,
                    struct err_detail *e) {
        char max_age[16], interval[16];
        snprintf(max_age, sizeof max_age, "%d", JWKS_MAX_AGE_DEFAULT);
        snprintf(interval, sizeof interval, "%d", JWKS_REFRESH_INTERVAL_DEFAULT);
        const char *p1[] = {tenant_id, max_age};
        _cleanup_pgres_ PGresult *res = NULL;
        int k = pg_exec(d->conn,
                        "SELECT jwks_doc, jwks_fetched_at > now() - make_interval(secs => $2::int) "
                        "FROM api.tenant_oidc WHERE tenant_id = $1",
                        2, p1, &res, e);
        if (k < 0)
                return k;
        bool fresh = PQntuples(res) == 1 && PQgetvalue(res, 0, 1)[0] == 't';
        if (fresh && oidc_stored_key(PQntuples(res) == 1 ? db_val(res, 0, 0) : NULL, kid, ret) == 0)
                return 0;
        /* claim the fetch: only when the last one is older than the interval */
        const char *p2[] = {tenant_id, interval};
        _cleanup_pgres_ PGresult *claim = NULL;
        if ((k = pg_exec(d->conn,
                         "UPDATE api.tenant_oidc SET jwks_fetched_at = now() WHERE tenant_id = $1 AND "
                         "(jwks_fetched_at IS NULL OR jwks_fetched_at <= now() - make_interval(secs => $2::int)) "
                         "RETURNING 1",
                         2, p2, &claim, e)) < 0)
                return k;
        if (PQntuples(claim) != 1) {
                /* fetched by someone else within the interval: use what they stored */
                _cleanup_pgres_ PGresult *again = NULL;
                if ((k = pg_exec(d->conn, "SELECT jwks_doc FROM api.tenant_oidc WHERE tenant_id = $1", 1, p1, &again,
                                 e)) < 0)
                        return k;
                if (oidc_stored_key(PQntuples(again) == 1 ? db_val(again, 0, 0) : NULL, kid, ret) == 0)
                        return 0;
                return err_set(e, -ENOKEY, "kid", "no key with this kid in the jwks (refreshed less than %d s ago)",
                               JWKS_REFRESH_INTERVAL_DEFAULT);
        }
        /* a tenant admin chooses this URL: the platform egress floor applies to
         * every address the fetch connects to (docs/CONTRACTS.md) */
        struct jwks_cache_config cfg = {
                .url = url,
                .connect_timeout_ms = OIDC_JWKS_CONNECT_TIMEOUT_MS,
                .timeout_ms = OIDC_JWKS_TIMEOUT_MS,
                .floor = a->floor,
                .http_nets = a->oidc_http_nets,
                .n_http_nets = a->n_oidc_http_nets,
        };
        _cleanup_free_ char *body = NULL;
        size_t len = 0;
        _cleanup_(jwks_freep) struct jwks *set = NULL;
        if ((k = jwks_fetch(&cfg, &body, &len, e)) < 0 || (k = jwks_parse(body, len, &set, e)) < 0 ||
            strlen(body) != len)
                return k < 0 ? k : err_set(e, -EINVAL, "jwks", "the jwks document holds a NUL byte");
        const char *p3[] = {tenant_id, body};
        if ((k = pg_exec(d->conn, "UPDATE api.tenant_oidc SET jwks_doc = $2 WHERE tenant_id = $1", 2, p3, NULL, e)) < 0)
                return k;
        *ret = jwks_find(set, kid);
        return *ret ? 0 : err_set(e, -ENOKEY, "kid", "no key with this kid in the jwks");
}

/* ---- configuration (tenant_admin) */

void oidc_secret_aad(char aad[OIDC_SECRET_AAD_MAX], const char *tenant_id) {
        snprintf(aad, OIDC_SECRET_AAD_MAX, "%s/oidc/client_secret", tenant_id);
}

#define OIDC_COLUMNS                                                                                      \
        "issuer, audience, jwks_url, clock_skew_s, username_claim, role_mapping::text, enabled, " \
        DB_TS("updated_at") ", updated_by, client_secret_sealed IS NOT NULL"

static json_t *oidc_config_json(const PGresult *res, int row) {
        json_t *mapping = json_loads(PQgetvalue(res, row, 5), 0, NULL);
        return json_pack("{s:s, s:s, s:s, s:I, s:s, s:o, s:b, s:s, s:s, s:b}", "issuer", PQgetvalue(res, row, 0),
                         "audience", PQgetvalue(res, row, 1), "jwks_url", PQgetvalue(res, row, 2), "clock_skew_s",
                         (json_int_t)strtoll(PQgetvalue(res, row, 3), NULL, 10), "username_claim",
                         PQgetvalue(res, row, 4), "role_mapping", mapping ? mapping : json_object(), "enabled",
                         PQgetvalue(res, row, 6)[0] == 't', "updated_at", PQgetvalue(res, row, 7), "updated_by",
                         PQgetvalue(res, row, 8), "client_secret_set", PQgetvalue(res, row, 9)[0] == 't');
}

int oidc_config_get(struct api_req *r) {
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k = db_open_caller(&d, r, &e);
        if (k < 0)
                return db_fail(r, k, &e, "open database connection");
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {r->caller.tenant_id};
        k = pg_exec(d.conn, "SELECT " OIDC_COLUMNS " FROM api.tenant_oidc WHERE tenant_id = $1", 1, params, &res,
                    &e);
        if (k < 0)
                return db_fail(r, k, &e, "load oidc configuration");
        if (PQntuples(res) != 1)
                return api_fail(r, -ENOENT, "not_found", "the tenant has no OIDC configuration");
        r->out = oidc_config_json(res, 0);
        r->status = 200;
        return r->out ? 0 : api_fail(r, -ENOMEM, "internal", "out of memory");
}

/* A string member of at most max bytes without NUL or control characters;
 * *ret NULL when absent and optional. */
static int oidc_string(struct api_req *r, json_t *body, const char *key, bool required, size_t max,
                       const char **ret) {
        json_t *v = json_object_get(body, key);
        *ret = NULL;
        if (!v) {
                if (required)
                        return api_fail(r, -EINVAL, "missing_field", "%s is required", key);
                return 0;
        }
        const char *s = json_string_value(v);
        bool ok = s && json_string_length(v) > 0 && json_string_length(v) <= max && strlen(s) == json_string_length(v);
        for (const char *p = s; ok && *p; p++)
                ok = (unsigned char)*p >= 0x20 && *p != 0x7f;
        if (!ok)
                return api_fail(r, -EINVAL, "invalid_field", "%s must be a non-empty string of at most %zu bytes "
                                "without control characters", key, max);
        *ret = s;
        return 0;
}

/* https://, or http:// to a literal IP of PADDOCK_OIDC_HTTP_NETS, never a
 * literal inside the platform egress floor: the rule of jwks.h, applied to the
 * issuer too so that the two cannot disagree. */
static int oidc_url(struct api_req *r, const char *key, const char *url) {
        struct err_detail e = {0};
        _cleanup_(jwks_cache_freep) struct jwks_cache *c = NULL;
        struct jwks_cache_config cfg = {.url = url, .floor = r->api->floor, .http_nets = r->api->oidc_http_nets,
                                        .n_http_nets = r->api->n_oidc_http_nets};
        int k = jwks_cache_new(&cfg, &c, &e);
        if (k == -ENOMEM)
                return api_fail(r, k, "internal", "out of memory");
        if (k < 0)
                return api_fail(r, -EINVAL, "invalid_field",
                                "%s must be an https:// URL (http:// only to a literal IP of the operator's "
                                "PADDOCK_OIDC_HTTP_NETS), without credentials, outside the platform egress floor: %s",
                                key, e.message);
        return 0;
}

/* Every team id of the mapping must be a team of the caller's tenant. */
static int oidc_mapping_teams(struct api_req *r, struct db *d, json_t *mapping) {
        json_t *map = json_object_get(mapping, "map");
        const char *key;
        json_t *v;
        json_object_foreach(map, key, v) {
                const char *team = json_string_value(json_object_get(v, "team"));
                if (!strcmp(team, OIDC_TEAM_ALL))
                        continue;
                bool found = false;
                if (id_is_uuid(team)) {
                        struct err_detail e = {0};
                        _cleanup_pgres_ PGresult *res = NULL;
                        const char *params[] = {team, r->caller.tenant_id};
                        int k = pg_exec(d->conn, "SELECT 1 FROM api.teams WHERE id = $1 AND tenant_id = $2", 2,
                                        params, &res, &e);
                        if (k < 0)
                                return db_fail(r, k, &e, "look up team");
                        found = PQntuples(res) == 1;
                }
                if (!found)
                        return api_fail(r, -EINVAL, "invalid_field",
                                        "role_mapping: map.\"%s\".team is not a team of this tenant", key);
        }
        return 0;
}

int oidc_config_put(struct api_req *r) {
        _cleanup_json_ json_t *body = NULL;
        int k = api_body_object(r, &body);
        if (k < 0)
                return k;
        static const char *const known[] = {"issuer",       "audience", "jwks_url",      "clock_skew_s", "username_claim",
                                            "role_mapping", "enabled",  "client_secret", NULL};
        if ((k = api_known_fields(r, body, known)) < 0)
                return k;
        const char *issuer, *audience, *jwks_url, *username_claim;
        if ((k = oidc_string(r, body, "issuer", true, OIDC_URL_MAX, &issuer)) < 0 ||
            (k = oidc_url(r, "issuer", issuer)) < 0 ||
            (k = oidc_string(r, body, "audience", true, OIDC_AUDIENCE_MAX, &audience)) < 0 ||
            (k = oidc_string(r, body, "jwks_url", true, OIDC_URL_MAX, &jwks_url)) < 0 ||
            (k = oidc_url(r, "jwks_url", jwks_url)) < 0 ||
            (k = oidc_string(r, body, "username_claim", false, OIDC_CLAIM_MAX, &username_claim)) < 0)
                return k;
        if (username_claim && strpbrk(username_claim, " \t"))
                return api_fail(r, -EINVAL, "invalid_field", "username_claim must be a claim name without spaces");
        json_int_t skew = JWT_DEFAULT_CLOCK_SKEW;
        json_t *js = json_object_get(body, "clock_skew_s");
        if (js) {
                if (!json_is_integer(js) || json_integer_value(js) < 0 || json_integer_value(js) > JWT_MAX_CLOCK_SKEW)
                        return api_fail(r, -EINVAL, "invalid_field", "clock_skew_s must be an integer from 0 to %d",
                                        JWT_MAX_CLOCK_SKEW);
                skew = json_integer_value(js);
        }
        json_t *je = json_object_get(body, "enabled");
        if (je && !json_is_boolean(je))
                return api_fail(r, -EINVAL, "invalid_field", "enabled must be a boolean");
        /* write-only: a string sets it, null clears it, absent keeps it for the same issuer and audience */
        json_t *jcs = json_object_get(body, "client_secret");
        const char *client_secret = NULL;
        if (jcs && !json_is_null(jcs) && (k = oidc_string(r, body, "client_secret", true, OIDC_SECRET_MAX,
                                                           &client_secret)) < 0)
                return k;
        json_t *mapping = json_object_get(body, "role_mapping");
        if (!mapping)
                return api_fail(r, -EINVAL, "missing_field", "role_mapping is required");
        struct err_detail e = {0};
        _cleanup_(oidc_role_map_freep) struct oidc_role_map *map = NULL;
        k = oidc_role_map_parse(mapping, &map, &e);
        if (k == -ENOMEM)
                return api_fail(r, k, "internal", "out of memory");
        if (k < 0)
                return api_fail(r, -EINVAL, "invalid_field", "role_mapping: %s", e.message);
        _cleanup_free_ char *mapping_text = json_dumps(mapping, JSON_COMPACT | JSON_SORT_KEYS);
        if (!mapping_text)
                return api_fail(r, -ENOMEM, "internal", "out of memory");

        _cleanup_tx_ struct api_tx tx = {0};
        if ((k = api_tx_begin(r, &tx)) < 0)
                return k;
        if ((k = oidc_mapping_teams(r, &tx.d, mapping)) < 0)
                return k;
        _cleanup_free_ char *sealed = NULL;
        if (client_secret) {
                char aad[OIDC_SECRET_AAD_MAX];
                oidc_secret_aad(aad, r->caller.tenant_id);
                k = secrets_seal_value(r->api, tx.d.conn, r->caller.tenant_id, aad, client_secret,
                                       strlen(client_secret), &sealed, &tx.e);
                explicit_bzero((char *)client_secret, strlen(client_secret));
                if (k < 0)
                        return secrets_seal_fail(r, k, &tx.e);
        }
        char skew_s[24];
        snprintf(skew_s, sizeof skew_s, "%lld", (long long)skew);
        const char *params[] = {r->caller.tenant_id, issuer, audience, jwks_url, skew_s,
                                username_claim ? username_claim : OIDC_DEFAULT_USERNAME_CLAIM, mapping_text,
                                !je || json_is_true(je) ? "t" : "f", r->caller.user_id,
                                !jcs ? "keep" : sealed ? "set" : "clear", sealed};
        _cleanup_pgres_ PGresult *res = NULL;
        k = pg_exec(tx.d.conn,
                    "INSERT INTO api.tenant_oidc (tenant_id, issuer, audience, jwks_url, clock_skew_s, username_claim, "
                    "role_mapping, enabled, updated_at, updated_by, client_secret_sealed) "
                    "VALUES ($1, $2, $3, $4, $5::integer, $6, $7::jsonb, $8::boolean, now(), $9, "
                    "CASE WHEN $10 = 'set' THEN $11::bytea END) "
                    "ON CONFLICT (tenant_id) DO UPDATE SET issuer = EXCLUDED.issuer, audience = EXCLUDED.audience, "
                    "jwks_url = EXCLUDED.jwks_url, clock_skew_s = EXCLUDED.clock_skew_s, "
                    "username_claim = EXCLUDED.username_claim, role_mapping = EXCLUDED.role_mapping, "
                    "enabled = EXCLUDED.enabled, updated_at = now(), updated_by = EXCLUDED.updated_by, "
                    "jwks_doc = NULL, jwks_fetched_at = NULL, "
                    /* a kept secret never goes to another provider or client */
                    "client_secret_sealed = CASE WHEN $10 = 'keep' AND api.tenant_oidc.issuer = EXCLUDED.issuer "
                    "AND api.tenant_oidc.audience = EXCLUDED.audience THEN api.tenant_oidc.client_secret_sealed "
                    "ELSE EXCLUDED.client_secret_sealed END "
                    "RETURNING " OIDC_COLUMNS,
                    11, params, &res, &tx.e);
        if (k < 0 || PQntuples(res) != 1)
                return db_fail(r, k < 0 ? k : -EIO, &tx.e, "store oidc configuration");
        /* the client secret shows only as client_secret_set */
        _cleanup_json_ json_t *change = oidc_config_json(res, 0);
        if ((k = api_tx_audit(&tx, "tenant.oidc_update", "tenant", r->caller.tenant_id, change)) < 0 ||
            (k = api_tx_commit(&tx, "oidc configuration")) < 0)
                return k;
        log_ctx(LOG_INFO, LOG_KV("tenant", r->caller.tenant_id, "user", r->caller.user_id),
                "oidc configuration updated (issuer %s)", issuer);
        r->out = json_incref(change);
        r->status = 200;
        return r->out ? 0 : api_fail(r, -ENOMEM, "internal", "out of memory");
}

int oidc_config_delete(struct api_req *r) {
        _cleanup_tx_ struct api_tx tx = {0};
        int k = api_tx_begin(r, &tx);
        if (k < 0)
                return k;
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {r->caller.tenant_id};
        k = pg_exec(tx.d.conn, "DELETE FROM api.tenant_oidc WHERE tenant_id = $1 RETURNING tenant_id", 1, params,
                    &res, &tx.e);
        if (k < 0)
                return db_fail(r, k, &tx.e, "delete oidc configuration");
        if (PQntuples(res) != 1)
                return api_fail(r, -ENOENT, "not_found", "the tenant has no OIDC configuration");
        if ((k = api_tx_audit(&tx, "tenant.oidc_delete", "tenant", r->caller.tenant_id, NULL)) < 0 ||
            (k = api_tx_commit(&tx, "oidc configuration delete")) < 0)
                return k;
        r->status = 204;
        return 0;
}

/* ---- the login exchange (anyone) */

/* Refuses the token: counts the failure against the source, audits it in the
 * tenant's chain when the tenant is known (reason = the failed check, never
 * the token), answers 401 invalid_token naming the check. */
int oidc_reject(struct api_req *r, struct oidc_attempt *at, const char *check, const char *message) {
        ratelimit_login_failed(r->api, at->tenant, at->rl_user, at->peer);
        log_ctx(LOG_INFO, LOG_KV("tenant", at->tenant), "oidc login from %s refused: %s: %s",
                at->peer[0] ? at->peer : "unknown", check, message);
        if (at->tenant_id[0]) {
                struct err_detail e = {0};
                _cleanup_json_ json_t *detail = json_pack("{s:s, s:s}", "method", "oidc", "reason", check);
                api_audit_anonymous(r, at->tenant_id, "auth.login_failed", "user", NULL, "failure", detail, &e);
        }
        return api_fail(r, -EACCES, "invalid_token", "token rejected: %s: %s", check, message);
}

/* A verified token that may still not log in (no role, name conflict, ...):
 * audited, not counted against the source (the provider vouched for it). */
static int oidc_refuse(struct api_req *r, struct oidc_attempt *at, const char *username, int err,
                       const char *code, const char *reason, const char *message) {
        struct err_detail e = {0};
        _cleanup_json_ json_t *detail = json_pack("{s:s, s:s, s:s}", "method", "oidc", "reason", reason,
                                                  "username", username);
        api_audit_anonymous(r, at->tenant_id, "auth.login_failed", "user", NULL, "failure", detail, &e);
        log_ctx(LOG_INFO, LOG_KV("tenant", at->tenant_id), "oidc login of \"%s\" refused: %s", username, reason);
        return api_fail(r, err, code, "%s", message);
}

static bool oidc_username_ok(const char *s) {
        size_t n = strlen(s);
        return n > 0 && n <= OIDC_USERNAME_MAX &&
               strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@-") == n;
}

/* "{viewer,launcher}" for a role mask, in the fixed order of enum auth_role. */
static void oidc_roles_literal(unsigned mask, char *buf, size_t size) {
        size_t n = 0;
        buf[n++] = '{';
        for (unsigned bit = 1; bit < (1u << AUTH_ROLE_COUNT); bit <<= 1) {
                if (!(mask & bit))
                        continue;
                n += (size_t)snprintf(buf + n, size - n, "%s%s", n > 1 ? "," : "",
                                      auth_role_to_string((enum auth_role)bit));
        }
        snprintf(buf + n, size - n, "}");
}

/* Replaces the user's grants by g: tenant_admin from team "*" becomes the
 * tenant role; the other roles of "*" apply to every team of the tenant that
 * exists now; team grants of teams deleted since the mapping was written are
 * skipped. Runs inside the caller's transaction. */
static int oidc_replace_grants(struct db *d, const char *tenant_id, const char *user_id,
                               const struct oidc_grants *g, struct err_detail *e) {
        unsigned all = 0;
        for (size_t i = 0; i < g->n; i++)
                if (!strcmp(g->v[i].team, OIDC_TEAM_ALL))
                        all |= g->v[i].roles;
        const char *up[] = {user_id, tenant_id, (all & AUTH_ROLE_TENANT_ADMIN) ? "{tenant_admin}" : "{}"};
        int k = pg_exec(d->conn, "UPDATE api.users SET tenant_roles = $3::text[] WHERE id = $1 AND tenant_id = $2", 3,
                        up, NULL, e);
        if (k < 0)
                return k;
        if ((k = pg_exec(d->conn, "DELETE FROM api.team_members WHERE user_id = $1 AND tenant_id = $2", 2, up,
                         NULL, e)) < 0)
                return k;
        all &= ~(unsigned)AUTH_ROLE_TENANT_ADMIN;
        _cleanup_pgres_ PGresult *teams = NULL;
        if ((k = pg_exec(d->conn, "SELECT id FROM api.teams WHERE tenant_id = $1", 1, &up[1], &teams, e)) < 0)
                return k;
        for (int t = 0; t < PQntuples(teams); t++) {
                const char *team = PQgetvalue(teams, t, 0);
                unsigned mask = all;
                for (size_t i = 0; i < g->n; i++)
                        if (!strcmp(g->v[i].team, team))
                                mask |= g->v[i].roles;
                if (!mask)
                        continue;
                char roles[256];
                oidc_roles_literal(mask, roles, sizeof roles);
                const char *mp[] = {team, user_id, tenant_id, roles};
                if ((k = pg_exec(d->conn,
                                 "INSERT INTO api.team_members (team_id, user_id, tenant_id, roles) "
                                 "VALUES ($1, $2, $3, $4::text[])",
                                 4, mp, NULL, e)) < 0)
                        return k;
        }
        return 0;
}

int64_t oidc_attempt_begin(struct api_req *r, struct oidc_attempt *at, const char *tenant) {
        *at = (struct oidc_attempt){.tenant = tenant};
        /* Failures count against the source per tenant and overall (the
         * per-source budget of password logins). The per-user key of
         * ratelimit.c holds the source here, not a claim of a token that
         * failed verification, so no one can lock another person out; the
         * space keeps it apart from every real user name. */
        api_client_ip(r->wsi, r->api, at->peer);
        snprintf(at->rl_user, sizeof at->rl_user, "oidc from %s", at->peer);
        int64_t wait_s = ratelimit_login_check(r->api, at->tenant, at->rl_user, at->peer);

        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k;
        if ((k = db_open(&d, r->api, NULL, &e)) < 0)
                return db_fail(r, k, &e, "open database connection");
        if ((k = auth_tenant_id_by_name(&d, at->tenant, at->tenant_id, &e)) < 0 && k != -ENOENT)
                return db_fail(r, k, &e, "look up tenant");
        return wait_s;
}

int oidc_attempt_limited(struct api_req *r, struct oidc_attempt *at, int64_t wait_s) {
        if (at->tenant_id[0]) {
                struct err_detail e = {0};
                _cleanup_json_ json_t *detail = json_pack("{s:s, s:s}", "method", "oidc", "reason", "rate_limited");
                api_audit_anonymous(r, at->tenant_id, "auth.login_failed", "user", NULL, "failure", detail, &e);
        }
        r->retry_after_s = wait_s;
        return api_fail(r, -EAGAIN, "rate_limited", "too many failed logins; retry after %lld s", (long long)wait_s);
}

int oidc_login(struct api_req *r) {
        _cleanup_json_ json_t *body = NULL;
        int k = api_body_object(r, &body);
        if (k < 0)
                return k;
        if ((k = api_known_fields(r, body, (const char *const[]){"tenant", "token", NULL})) < 0)
                return k;
        const char *tenant;
        if ((k = oidc_string(r, body, "tenant", true, OIDC_TENANT_MAX, &tenant)) < 0)
                return k;
        json_t *jt = json_object_get(body, "token");
        if (!jt)
                return api_fail(r, -EINVAL, "missing_field", "token is required");
        if (!json_is_string(jt))
                return api_fail(r, -EINVAL, "invalid_field", "token must be a string");
        struct oidc_attempt at;
        int64_t wait_s = oidc_attempt_begin(r, &at, tenant);
        if (wait_s < 0)
                return (int)wait_s;
        if (wait_s > 0)
                return oidc_attempt_limited(r, &at, wait_s);
        return oidc_login_token(r, &at, json_string_value(jt), json_string_length(jt), NULL);
}

int oidc_login_token(struct api_req *r, struct oidc_attempt *at, const char *token, size_t token_len,
                     const char *nonce) {
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k;
        /* The token's form is checked before anything about the tenant, so
         * a malformed token is answered alike for every tenant name. */
        _cleanup_(jwt_decoded_freep) struct jwt_decoded *t = NULL;
        if ((k = jwt_decode(token, token_len, &t, &e)) < 0) {
                if (k == -ENOMEM)
                        return api_fail(r, k, "internal", "out of memory");
                return oidc_reject(r, at, e.code, e.message);
        }

        /* Unknown tenant, no configuration, disabled: one answer (no oracle). */
        static const char not_enabled[] = "OIDC login is not enabled for this tenant";
        if (!at->tenant_id[0])
                return oidc_reject(r, at, "config", not_enabled);
        if ((k = db_open(&d, r->api, at->tenant_id, &e)) < 0)
                return db_fail(r, k, &e, "open database connection");
        _cleanup_pgres_ PGresult *cres = NULL;
        const char *cp[] = {at->tenant_id};
        if ((k = pg_exec(d.conn,
                         "SELECT issuer, audience, jwks_url, clock_skew_s, username_claim, role_mapping::text "
                         "FROM api.tenant_oidc WHERE tenant_id = $1 AND enabled",
                         1, cp, &cres, &e)) < 0)
                return db_fail(r, k, &e, "load oidc configuration");
        if (PQntuples(cres) != 1)
                return oidc_reject(r, at, "config", not_enabled);
        const char *issuer = PQgetvalue(cres, 0, 0), *username_claim = PQgetvalue(cres, 0, 4);
        _cleanup_json_ json_t *mapping = json_loads(PQgetvalue(cres, 0, 5), 0, NULL);
        _cleanup_(oidc_role_map_freep) struct oidc_role_map *map = NULL;
        if (!mapping || oidc_role_map_parse(mapping, &map, &e) < 0) {
                log_ctx(LOG_ERROR, LOG_KV("tenant", at->tenant_id), "stored oidc role mapping is invalid: %s",
                        e.message);
                return api_fail(r, -EIO, "internal", "the tenant's OIDC configuration is invalid");
        }

        _cleanup_(jwk_unrefp) struct jwk *jwk = NULL;
        k = oidc_key(r->api, &d, at->tenant_id, PQgetvalue(cres, 0, 2), jwt_decoded_kid(t), &jwk, &e);
        if (k == -ENOKEY)
                return oidc_reject(r, at, "kid", e.message);
        if (k == -ENOMEM)
                return api_fail(r, k, "internal", "out of memory");
        if (k < 0) {
                /* the provider is unreachable or serves garbage: not the token's fault */
                log_ctx(LOG_WARN, LOG_KV("tenant", at->tenant_id), "could not get the oidc provider's keys: %s",
                        e.message);
                _cleanup_json_ json_t *detail = json_pack("{s:s, s:s}", "method", "oidc", "reason",
                                                          "jwks_unavailable");
                struct err_detail ae = {0};
                api_audit_anonymous(r, at->tenant_id, "auth.login_failed", "user", NULL, "failure", detail, &ae);
                return api_fail(r, -EAGAIN, "unavailable", "the identity provider's keys could not be fetched");
        }
        struct jwt_verify_params p;
        jwt_verify_params_init(&p);
        p.issuer = issuer;
        p.audience = PQgetvalue(cres, 0, 1);
        p.clock_skew_s = strtoll(PQgetvalue(cres, 0, 3), NULL, 10);
        _cleanup_json_ json_t *claims = NULL;
        if ((k = jwt_verify_decoded(t, jwk, &p, &claims, &e)) < 0) {
                if (k == -ENOMEM)
                        return api_fail(r, k, "internal", "out of memory");
                if (k == -EINVAL && !strcmp(e.code, "params")) {
                        log_ctx(LOG_ERROR, LOG_KV("tenant", at->tenant_id), "oidc configuration unusable: %s",
                                e.message);
                        return api_fail(r, -EIO, "internal", "the tenant's OIDC configuration is invalid");
                }
                return oidc_reject(r, at, e.code, e.message);
        }

        /* verified from here on; the nonce binds an ID token of the code flow to its sign-in */
        const char *got_nonce = json_string_value(json_object_get(claims, "nonce"));
        if (nonce && (!got_nonce || strcmp(got_nonce, nonce)))
                return oidc_reject(r, at, "nonce", "the token's nonce is not the one of this sign-in");
        const char *subject = json_string_value(json_object_get(claims, "sub"));
        if (!subject || !subject[0] || strlen(subject) > OIDC_SUBJECT_MAX)
                return oidc_reject(r, at, "sub", "token has no usable \"sub\" claim");
        const char *username = json_string_value(json_object_get(claims, username_claim));
        if (!username)
                username = subject;
        if (!oidc_username_ok(username))
                return oidc_reject(r, at, "username",
                                   "the user name claim must be 1-128 characters of A-Z a-z 0-9 . _ @ -");
        _cleanup_(oidc_grants_freep) struct oidc_grants *g = NULL;
        if (oidc_role_map_apply(map, claims, &g) < 0)
                return api_fail(r, -ENOMEM, "internal", "out of memory");
        if (g->n == 0)
                return oidc_refuse(r, at, username, -EPERM, "no_role", "no_role",
                                   "the token's claims grant no Paddock role in this tenant");

        if ((k = db_begin(&d, &e)) < 0)
                return db_fail(r, k, &e, "begin transaction");
        _cleanup_pgres_ PGresult *ures = NULL;
        const char *up[] = {at->tenant_id, username};
        k = pg_exec(d.conn,
                    "SELECT id, kind, oidc_issuer, oidc_subject, disabled FROM api.users "
                    "WHERE tenant_id = $1 AND username = $2 FOR UPDATE",
                    2, up, &ures, &e);
        if (k < 0) {
                db_rollback(&d);
                return db_fail(r, k, &e, "look up user");
        }
        char user_id[UUID_STR_LEN];
        bool created = false;
        if (PQntuples(ures) == 1) {
                const char *reason = NULL, *message = NULL;
                int err = -EEXIST;
                const char *code = "conflict";
                if (strcmp(PQgetvalue(ures, 0, 1), "oidc")) {
                        reason = "username_conflict";
                        message = "the user name belongs to a local user or service account of this tenant";
                } else if (strcmp(PQgetvalue(ures, 0, 2), issuer) || strcmp(PQgetvalue(ures, 0, 3), subject)) {
                        reason = "subject_conflict";
                        message = "the user name is bound to another identity of the provider";
                } else if (PQgetvalue(ures, 0, 4)[0] == 't') {
                        reason = "disabled", message = "the user is disabled";
                        err = -EPERM, code = "forbidden";
                }
                if (reason) {
                        db_rollback(&d);
                        return oidc_refuse(r, at, username, err, code, reason, message);
                }
                snprintf(user_id, sizeof user_id, "%s", PQgetvalue(ures, 0, 0));
        } else {
                if (id_new_uuid(user_id) < 0) {
                        db_rollback(&d);
                        return api_fail(r, -EIO, "internal", "could not generate an id");
                }
                const char *ip[] = {user_id, at->tenant_id, username, OIDC_NO_PASSWORD, issuer, subject};
                k = pg_exec(d.conn,
                            "INSERT INTO api.users (id, tenant_id, username, password_hash, kind, oidc_issuer, "
                            "oidc_subject) VALUES ($1, $2, $3, $4, 'oidc', $5, $6)",
                            6, ip, NULL, &e);
                if (k < 0) {
                        db_rollback(&d);
                        return db_fail(r, k, &e, "create user");
                }
                created = true;
        }
        if ((k = oidc_replace_grants(&d, at->tenant_id, user_id, g, &e)) < 0) {
                db_rollback(&d);
                return db_fail(r, k, &e, "replace role grants");
        }
        _cleanup_json_ json_t *change = json_pack("{s:s, s:s, s:s, s:s, s:o}", "method", "oidc", "issuer", issuer,
                                                  "subject", subject, "username", username, "grants",
                                                  oidc_grants_to_json(g));
        if (created) {
                /* the new user is the actor of its own provisioning */
                snprintf(r->caller.user_id, sizeof r->caller.user_id, "%s", user_id);
                snprintf(r->caller.tenant_id, sizeof r->caller.tenant_id, "%s", at->tenant_id);
                if ((k = api_audit(r, &d, "user.create", "user", user_id, "success", change)) < 0) {
                        db_rollback(&d);
                        return k;
                }
        }
        if ((k = auth_issue_token(r, &d, at->tenant_id, user_id, username, change)) < 0)
                return k;
        return 0;
}
