/* The dashboard's OIDC sign-in: the authorization-code flow with PKCE (S256)
 * against the tenant's provider (docs/CONTRACTS.md "OIDC login").
 *
 * The api is the OAuth client (client id = the configured audience; public
 * with PKCE, or confidential with the tenant's sealed client secret, sent as
 * client_secret_basic or, when the provider lists only that,
 * client_secret_post), so no provider token ever reaches the page. authorize makes a random state and a random browser
 * secret; the secret goes into an HttpOnly, SameSite=Lax cookie scoped to the
 * callback (the provider's redirect back is a top-level navigation from
 * another site), and the PKCE verifier and the nonce are derived from it, so
 * the database row of the sign-in (api.oidc_login_flows, migration 0027)
 * holds no secret: the hashes of the state and of the secret, the token
 * endpoint, an expiry. The callback takes the row (single use, bound to the
 * browser that started the sign-in), redeems the code at the token endpoint
 * with the verifier, and logs the ID token's user in exactly like POST
 * /v1/auth/oidc (oidc_login_token: signature, iss, aud, exp, and the nonce),
 * into the session cookie of a password login. Every failure is a redirect to
 * the login page with ?oidc_error=CODE: no token and no code in that URL.
 *
 * The provider's discovery document and token endpoint are fetched like its
 * JWKS (lib/auth/jwks.h jwks_fetch: bounded time and size, no redirect, the
 * platform egress floor on every address); the discovery document's answer
 * is kept per issuer and configuration in this process for
 * PADDOCK_OIDC_DISCOVERY_TTL_S, and forgotten when its token endpoint fails.
 * The redirect URI is PADDOCK_PUBLIC_URL + /v1/auth/oidc/callback. */
#include <errno.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "auth/base64url.h"
#include "auth/jwks.h"
#include "core/log.h"
#include "core/timeutil.h"
#include "pg/pg.h"

#define FLOW_COOKIE "paddock_oidc_flow"
#define FLOW_PATH "/v1/auth/oidc/callback"
#define FLOW_TTL_S 600
#define FLOW_SECRET_BYTES 32
#define FLOW_TENANT_MAX 128
#define FLOW_CONNECT_TIMEOUT_MS 2000
#define FLOW_TIMEOUT_MS 3000
#define FLOW_DOC_MAX (64u * 1024u)
#define FLOW_CODE_MAX 2048
#define DISCOVERY_CACHE_MAX 64

/* SHA-256 over label || s (label "" for a plain hash). */
static void sha256_of(const char *label, const char *s, unsigned char d[SHA256_DIGEST_LENGTH]) {
        char buf[64 + FLOW_TENANT_MAX + 2 * FLOW_SECRET_BYTES + 2];
        int n = snprintf(buf, sizeof buf, "%s%s", label, s);
        SHA256((const unsigned char *)buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1, d);
        explicit_bzero(buf, sizeof buf);
}

static void sha256_hex_of(const char *label, const char *s, char out[65]) {
        unsigned char d[SHA256_DIGEST_LENGTH];
        sha256_of(label, s, d);
        hex_encode(d, sizeof d, out);
}

/* base64url(SHA-256(label || s)): 43 characters of RFC 7636's alphabet */
static void sha256_b64u_of(const char *label, const char *s, char out[44]) {
        unsigned char d[SHA256_DIGEST_LENGTH];
        sha256_of(label, s, d);
        out[b64url_encode(d, sizeof d, out)] = '\0';
}

/* The PKCE verifier and the nonce of a sign-in, from the browser's secret. */
static void flow_derive(const char *secret, char verifier[44], char nonce[65]) {
        sha256_b64u_of("paddock-oidc-pkce-v1:", secret, verifier);
        sha256_hex_of("paddock-oidc-nonce-v1:", secret, nonce);
}

static void url_escape(FILE *f, const char *s) {
        for (; *s; s++) {
                unsigned char c = (unsigned char)*s;
                if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strchr("-._~", c))
                        fputc(c, f);
                else
                        fprintf(f, "%%%02X", c);
        }
}

static void redirect_uri(const struct api *a, char *buf, size_t size) {
        snprintf(buf, size, "%s" FLOW_PATH, a->public_url);
}

/* Ends the request as a redirect to where (owned by r now), dropping any
 * answer or problem recorded so far (a problem becomes ?oidc_error). */
static int flow_redirect(struct api_req *r, char *where) {
        json_decref(r->out);
        r->out = NULL;
        r->pcode = NULL;
        r->pdetail[0] = '\0';
        r->retry_after_s = 0;
        free(r->location);
        r->location = where;
        r->status = 302;
        return where ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

/* To the login page with the error code (and the tenant, no secret, to
 * fill the form again). */
static int flow_fail(struct api_req *r, const char *tenant, const char *code) {
        char *where = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&where, &len);
        if (!f)
                return flow_redirect(r, NULL);
        fprintf(f, "%s/?", r->api->public_url);
        if (tenant && *tenant) {
                fputs("tenant=", f);
                url_escape(f, tenant);
                fputc('&', f);
        }
        fputs("oidc_error=", f);
        url_escape(f, code);
        fclose(f);
        return flow_redirect(r, where);
}

/* The Set-Cookie of the flow cookie: value for FLOW_TTL_S, or (NULL) its removal. */
static int flow_cookie(struct api_req *r, const char *value) {
        const char *secure = auth_cookie_secure(r->api);
        free(r->set_cookie[2]);
        if (asprintf(&r->set_cookie[2], FLOW_COOKIE "=%s; Path=" FLOW_PATH "; Max-Age=%d; HttpOnly; SameSite=Lax%s",
                     value ? value : "", value ? FLOW_TTL_S : 0, secure) < 0) {
                r->set_cookie[2] = NULL;
                return -ENOMEM;
        }
        return 0;
}

/* How the api talks to the provider (discovery, token endpoint): the rules
 * and bounds of its JWKS fetch (lib/auth/jwks.h); form: POST it. */
static struct jwks_cache_config flow_fetch_config(struct api *a, const char *url, const char *form) {
        return (struct jwks_cache_config){
                .url = url,
                .connect_timeout_ms = FLOW_CONNECT_TIMEOUT_MS,
                .timeout_ms = FLOW_TIMEOUT_MS,
                .max_doc_size = FLOW_DOC_MAX,
                .floor = a->floor,
                .http_nets = a->oidc_http_nets,
                .n_http_nets = a->n_oidc_http_nets,
                .post_form = form,
        };
}

/* What a sign-in needs of the provider's discovery document. */
struct flow_provider {
        char *authz, *token_ep;
        bool post; /* client_secret_post: the provider does not list client_secret_basic */
};

static void flow_provider_done(struct flow_provider *p) {
        free(p->authz);
        free(p->token_ep);
        *p = (struct flow_provider){0};
}

/* The provider's endpoints from its discovery document (its "issuer" must be
 * the configured one). Returns 0, or a negative errno with e set. */
static int flow_discover_fetch(struct api *a, const char *issuer, struct flow_provider *ret, struct err_detail *e) {
        _cleanup_free_ char *url = NULL;
        size_t n = strlen(issuer);
        if (asprintf(&url, "%.*s/.well-known/openid-configuration", (int)(n && issuer[n - 1] == '/' ? n - 1 : n),
                     issuer) < 0)
                return -ENOMEM;
        struct jwks_cache_config cfg = flow_fetch_config(a, url, NULL);
        _cleanup_free_ char *body = NULL;
        size_t len = 0;
        int k = jwks_fetch(&cfg, &body, &len, e);
        if (k < 0)
                return k;
        _cleanup_json_ json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
        const char *iss = json_string_value(json_object_get(doc, "issuer"));
        const char *authz = json_string_value(json_object_get(doc, "authorization_endpoint"));
        const char *token = json_string_value(json_object_get(doc, "token_endpoint"));
        if (!iss || !authz || !token)
                return err_set(e, -EIO, "discovery",
                               "the discovery document has no issuer, authorization_endpoint or token_endpoint");
        if (strcmp(iss, issuer))
                return err_set(e, -EIO, "discovery", "the discovery document names another issuer");
        json_t *methods = json_object_get(doc, "code_challenge_methods_supported");
        if (methods) {
                bool s256 = false;
                size_t i;
                json_t *m;
                json_array_foreach(methods, i, m) s256 |= json_is_string(m) && !strcmp(json_string_value(m), "S256");
                if (!s256)
                        return err_set(e, -EIO, "discovery", "the provider does not support PKCE with S256");
        }
        /* absent, the methods are client_secret_basic alone (OpenID Connect Discovery 1.0 §3) */
        json_t *auths = json_object_get(doc, "token_endpoint_auth_methods_supported");
        bool basic = !json_is_array(auths), post = false;
        size_t i;
        json_t *m;
        json_array_foreach(auths, i, m) {
                basic |= json_is_string(m) && !strcmp(json_string_value(m), "client_secret_basic");
                post |= json_is_string(m) && !strcmp(json_string_value(m), "client_secret_post");
        }
        /* both endpoints under the rules of every URL the api fetches from (or sends a browser to) */
        _cleanup_(jwks_cache_freep) struct jwks_cache *c1 = NULL, *c2 = NULL;
        cfg.url = authz;
        if ((k = jwks_cache_new(&cfg, &c1, e)) < 0)
                return k;
        cfg.url = token;
        if ((k = jwks_cache_new(&cfg, &c2, e)) < 0)
                return k;
        *ret = (struct flow_provider){.authz = strdup(authz), .token_ep = strdup(token), .post = !basic && post};
        if (!ret->authz || !ret->token_ep) {
                flow_provider_done(ret);
                return -ENOMEM;
        }
        return 0;
}

/* The discovery cache of this process: per issuer and configuration version
 * (the tenant's updated_at, so a PUT takes effect at once in every worker),
 * bounded; the oldest entry makes room. */
static struct discovery_entry {
        char *issuer, *version;
        struct flow_provider p;
        int64_t fetched_ms;
} discovery_cache[DISCOVERY_CACHE_MAX];
static pthread_mutex_t discovery_lock = PTHREAD_MUTEX_INITIALIZER;

static void discovery_entry_drop(struct discovery_entry *d) {
        free(d->issuer);
        free(d->version);
        flow_provider_done(&d->p);
        *d = (struct discovery_entry){0};
}

/* Forgets what the cache holds of issuer (its token endpoint failed). */
static void flow_discovery_forget(const char *issuer) {
        pthread_mutex_lock(&discovery_lock);
        for (size_t i = 0; i < DISCOVERY_CACHE_MAX; i++)
                if (discovery_cache[i].issuer && !strcmp(discovery_cache[i].issuer, issuer))
                        discovery_entry_drop(&discovery_cache[i]);
        pthread_mutex_unlock(&discovery_lock);
}

/* A copy of issuer's endpoints for configuration version, from the cache
 * while younger than PADDOCK_OIDC_DISCOVERY_TTL_S, else fetched (and kept). */
static int flow_discover(struct api *a, const char *issuer, const char *version, struct flow_provider *ret,
                         struct err_detail *e) {
        int64_t now = time_mono_us() / 1000, ttl_ms = a->cfg.oidc_discovery_ttl_s * 1000;
        pthread_mutex_lock(&discovery_lock);
        for (size_t i = 0; i < DISCOVERY_CACHE_MAX; i++) {
                struct discovery_entry *d = &discovery_cache[i];
                if (!d->issuer || strcmp(d->issuer, issuer) || strcmp(d->version, version))
                        continue;
                if (now - d->fetched_ms >= ttl_ms) {
                        discovery_entry_drop(d);
                        break;
                }
                *ret = (struct flow_provider){.authz = strdup(d->p.authz), .token_ep = strdup(d->p.token_ep),
                                              .post = d->p.post};
                pthread_mutex_unlock(&discovery_lock);
                if (!ret->authz || !ret->token_ep) {
                        flow_provider_done(ret);
                        return -ENOMEM;
                }
                return 0;
        }
        pthread_mutex_unlock(&discovery_lock);
        int k = flow_discover_fetch(a, issuer, ret, e);
        if (k < 0 || ttl_ms <= 0)
                return k;
        struct discovery_entry fresh = {.issuer = strdup(issuer), .version = strdup(version), .fetched_ms = now,
                                        .p = {.authz = strdup(ret->authz), .token_ep = strdup(ret->token_ep),
                                              .post = ret->post}};
        if (!fresh.issuer || !fresh.version || !fresh.p.authz || !fresh.p.token_ep) {
                discovery_entry_drop(&fresh);
                return 0; /* not kept: fetched again next time */
        }
        pthread_mutex_lock(&discovery_lock);
        size_t slot = 0;
        for (size_t i = 0; i < DISCOVERY_CACHE_MAX; i++) {
                struct discovery_entry *d = &discovery_cache[i];
                if (d->issuer && !strcmp(d->issuer, issuer) && !strcmp(d->version, version)) {
                        slot = i; /* fetched meanwhile by another thread */
                        break;
                }
                if (!d->issuer || (discovery_cache[slot].issuer && d->fetched_ms < discovery_cache[slot].fetched_ms))
                        slot = i;
        }
        discovery_entry_drop(&discovery_cache[slot]);
        discovery_cache[slot] = fresh;
        pthread_mutex_unlock(&discovery_lock);
        return 0;
}

/* A name the api's tenants may have (bootstrap.c): also safe in a cookie. */
static bool flow_tenant_ok(const char *s) {
        size_t n = s ? strlen(s) : 0;
        return n > 0 && n <= FLOW_TENANT_MAX &&
               strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

/* oidc_attempt_begin() for the sign-in's routes: NULL to go on, else the
 * oidc_error to redirect with (a limited attempt audited). */
static const char *flow_attempt(struct api_req *r, struct oidc_attempt *at, const char *tenant) {
        int64_t wait_s = oidc_attempt_begin(r, at, tenant);
        if (wait_s < 0)
                return "unavailable";
        if (wait_s > 0) {
                oidc_attempt_limited(r, at, wait_s);
                return "rate_limited";
        }
        return NULL;
}

int oidc_flow_authorize(struct api_req *r) {
        char tbuf[FLOW_TENANT_MAX + 16];
        /* api_query answers a pointer into its buffer, past "name=" */
        const char *tenant = api_query(r, "tenant", tbuf, sizeof tbuf);
        if (!flow_tenant_ok(tenant))
                return flow_fail(r, NULL, "tenant");
        struct oidc_attempt at;
        const char *stop = flow_attempt(r, &at, tenant);
        if (stop)
                return flow_fail(r, tenant, stop);
        /* unknown tenant, no configuration, disabled: one answer (no oracle) */
        if (!at.tenant_id[0])
                return flow_fail(r, tenant, "not_enabled");
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k;
        if ((k = db_open(&d, r->api, at.tenant_id, &e)) < 0)
                return flow_fail(r, tenant, "unavailable");
        _cleanup_pgres_ PGresult *cres = NULL;
        const char *cp[] = {at.tenant_id};
        if ((k = pg_exec(d.conn,
                         "SELECT issuer, audience, updated_at::text FROM api.tenant_oidc WHERE tenant_id = $1 "
                         "AND enabled",
                         1, cp, &cres, &e)) < 0)
                return flow_fail(r, tenant, "unavailable");
        if (PQntuples(cres) != 1)
                return flow_fail(r, tenant, "not_enabled");
        const char *issuer = PQgetvalue(cres, 0, 0), *client_id = PQgetvalue(cres, 0, 1);
        _cleanup_(flow_provider_done) struct flow_provider prov = {0};
        if ((k = flow_discover(r->api, issuer, PQgetvalue(cres, 0, 2), &prov, &e)) < 0) {
                log_ctx(LOG_WARN, LOG_KV("tenant", at.tenant_id), "oidc discovery at %s failed: %s", issuer,
                        e.message);
                return flow_fail(r, tenant, "provider_unavailable");
        }

        char state[2 * 32 + 1], secret[2 * FLOW_SECRET_BYTES + 1], state_sha[65], secret_sha[65];
        char verifier[44], challenge[44], nonce[65];
        if (id_random_hex(state, 32) < 0 || id_random_hex(secret, FLOW_SECRET_BYTES) < 0)
                return flow_fail(r, tenant, "unavailable");
        sha256_hex_of("", state, state_sha);
        sha256_hex_of("", secret, secret_sha);
        flow_derive(secret, verifier, nonce);
        sha256_b64u_of("", verifier, challenge);

        char ttl[16];
        snprintf(ttl, sizeof ttl, "%d", FLOW_TTL_S);
        const char *ip[] = {state_sha, at.tenant_id, secret_sha, prov.token_ep, ttl,
                            prov.post ? "client_secret_post" : "client_secret_basic"};
        if ((k = db_begin(&d, &e)) < 0 ||
            (k = pg_exec(d.conn, "DELETE FROM api.oidc_login_flows WHERE tenant_id = $1 AND expires_at < now()", 1,
                         &ip[1], NULL, &e)) < 0 ||
            (k = pg_exec(d.conn,
                         "INSERT INTO api.oidc_login_flows (state_sha256, tenant_id, browser_sha256, token_endpoint, "
                         "expires_at, token_endpoint_auth) "
                         "VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5::int), $6)",
                         6, ip, NULL, &e)) < 0 ||
            (k = db_commit(&d, &e)) < 0) {
                db_rollback(&d);
                log_ctx(LOG_WARN, LOG_KV("tenant", at.tenant_id), "could not store an oidc sign-in: %s", e.message);
                return flow_fail(r, tenant, "unavailable");
        }

        char cookie[sizeof secret + 1 + FLOW_TENANT_MAX + 1], redirect[sizeof r->api->public_url + sizeof FLOW_PATH];
        snprintf(cookie, sizeof cookie, "%s.%s", secret, tenant);
        redirect_uri(r->api, redirect, sizeof redirect);
        char *where = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&where, &len);
        if (!f)
                return flow_redirect(r, NULL);
        fprintf(f, "%s%cresponse_type=code&scope=openid%%20profile&client_id=", prov.authz,
                strchr(prov.authz, '?') ? '&' : '?');
        url_escape(f, client_id);
        fputs("&redirect_uri=", f);
        url_escape(f, redirect);
        fprintf(f, "&state=%s&nonce=%s&code_challenge=%s&code_challenge_method=S256", state, nonce, challenge);
        fclose(f);
        explicit_bzero(secret, sizeof secret);
        explicit_bzero(verifier, sizeof verifier);
        k = flow_cookie(r, cookie);
        explicit_bzero(cookie, sizeof cookie);
        if (k < 0) {
                free(where);
                return api_errno(r, -ENOMEM, "out of memory");
        }
        log_ctx(LOG_INFO, LOG_KV("tenant", at.tenant_id), "oidc sign-in started from %s",
                at.peer[0] ? at.peer : "unknown");
        return flow_redirect(r, where);
}

/* Redeems code at the token endpoint, authenticated by client_secret (NULL:
 * a public client) in the request's body when post, else by HTTP Basic;
 * *ret_id_token (caller frees) is the response's id_token. Returns 0, or a
 * negative errno with e set (the provider's answer is never quoted: it may
 * hold tokens). */
static int flow_redeem(struct api *a, const char *token_ep, const char *client_id, const char *client_secret,
                       bool post, const char *code, const char *verifier, char **ret_id_token,
                       struct err_detail *e) {
        char redirect[sizeof a->public_url + sizeof FLOW_PATH];
        redirect_uri(a, redirect, sizeof redirect);
        char *form = NULL;
        size_t flen = 0;
        FILE *f = open_memstream(&form, &flen);
        if (!f)
                return -ENOMEM;
        fputs("grant_type=authorization_code&code=", f);
        url_escape(f, code);
        fputs("&redirect_uri=", f);
        url_escape(f, redirect);
        if (!client_secret || post) {
                fputs("&client_id=", f);
                url_escape(f, client_id);
        }
        if (client_secret && post) {
                fputs("&client_secret=", f);
                url_escape(f, client_secret);
        }
        fprintf(f, "&code_verifier=%s", verifier);
        fclose(f);
        /* RFC 6749 2.3.1: Basic over the form-urlencoded id and secret */
        char *basic = NULL;
        size_t blen = 0;
        if (client_secret && !post) {
                FILE *b = open_memstream(&basic, &blen);
                if (!b) {
                        explicit_bzero(form, flen);
                        free(form);
                        return -ENOMEM;
                }
                url_escape(b, client_id);
                fputc(':', b);
                url_escape(b, client_secret);
                fclose(b);
        }
        struct jwks_cache_config cfg = flow_fetch_config(a, token_ep, form);
        cfg.basic_auth = basic;
        _cleanup_free_ char *body = NULL;
        size_t len = 0;
        int k = jwks_fetch(&cfg, &body, &len, e);
        explicit_bzero(form, flen);
        free(form);
        if (basic)
                explicit_bzero(basic, blen);
        free(basic);
        if (k < 0)
                return err_set(e, k, "token_endpoint", "the token endpoint refused the code or failed");
        _cleanup_json_ json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
        explicit_bzero(body, len);
        const char *id_token = json_string_value(json_object_get(doc, "id_token"));
        if (!id_token)
                return err_set(e, -EIO, "token_endpoint", "the token endpoint's answer has no id_token");
        *ret_id_token = strdup(id_token);
        return *ret_id_token ? 0 : -ENOMEM;
}

int oidc_flow_callback(struct api_req *r) {
        /* the cookie goes whatever happens: a sign-in is tried once */
        if (flow_cookie(r, NULL) < 0)
                return api_errno(r, -ENOMEM, "out of memory");
        char cookie[2 * FLOW_SECRET_BYTES + 1 + FLOW_TENANT_MAX + 1];
        char sbuf[96], cbuf[FLOW_CODE_MAX + 16], ebuf[64];
        bool have_cookie = auth_cookie_from_wsi(r->wsi, FLOW_COOKIE, cookie, sizeof cookie) == 0;
        const char *tenant = have_cookie && strlen(cookie) > 2 * FLOW_SECRET_BYTES + 1 &&
                                             cookie[2 * FLOW_SECRET_BYTES] == '.'
                                     ? cookie + 2 * FLOW_SECRET_BYTES + 1
                                     : NULL;
        if (!tenant || !flow_tenant_ok(tenant) ||
            strspn(cookie, "0123456789abcdef") != 2 * FLOW_SECRET_BYTES)
                /* no sign-in started in this browser (or it expired): nothing to count it against */
                return flow_fail(r, NULL, "state");
        cookie[2 * FLOW_SECRET_BYTES] = '\0';
        const char *secret = cookie;

        struct oidc_attempt at;
        const char *stop = flow_attempt(r, &at, tenant);
        if (stop)
                return flow_fail(r, tenant, stop);
        if (!at.tenant_id[0]) {
                oidc_reject(r, &at, "state", "no sign-in of this browser is pending");
                return flow_fail(r, tenant, "state");
        }
        const char *state = api_query(r, "state", sbuf, sizeof sbuf);
        bool have_state = state && strlen(state) == 64;
        char state_sha[65] = "", secret_sha[65];
        if (have_state)
                sha256_hex_of("", state, state_sha);
        sha256_hex_of("", secret, secret_sha);

        /* the sign-in's row, taken whatever the outcome: state and code are single use */
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k;
        if ((k = db_open(&d, r->api, at.tenant_id, &e)) < 0)
                return flow_fail(r, tenant, "unavailable");
        _cleanup_pgres_ PGresult *res = NULL;
        const char *fp[] = {state_sha, at.tenant_id, secret_sha};
        if ((k = pg_exec(d.conn,
                         "DELETE FROM api.oidc_login_flows WHERE state_sha256 = $1 AND tenant_id = $2 "
                         "AND browser_sha256 = $3 RETURNING token_endpoint, expires_at > now(), token_endpoint_auth",
                         3, fp, &res, &e)) < 0)
                return flow_fail(r, tenant, "unavailable");
        if (!have_state || PQntuples(res) != 1 || PQgetvalue(res, 0, 1)[0] != 't') {
                oidc_reject(r, &at, "state", "the state is unknown, used, expired or of another browser");
                return flow_fail(r, tenant, "state");
        }
        if (api_query(r, "error", ebuf, sizeof ebuf)) {
                /* the user or the provider said no: not a guess, not counted */
                log_ctx(LOG_INFO, LOG_KV("tenant", at.tenant_id), "oidc sign-in ended by the provider");
                return flow_fail(r, tenant, "provider_denied");
        }
        const char *code = api_query(r, "code", cbuf, sizeof cbuf);
        if (!code || !code[0]) {
                oidc_reject(r, &at, "code", "the callback has no code");
                return flow_fail(r, tenant, "code");
        }
        _cleanup_pgres_ PGresult *cres = NULL;
        const char *cp[] = {at.tenant_id};
        if ((k = pg_exec(d.conn,
                         "SELECT audience, issuer, client_secret_sealed FROM api.tenant_oidc WHERE tenant_id = $1 "
                         "AND enabled",
                         1, cp, &cres, &e)) < 0)
                return flow_fail(r, tenant, "unavailable");
        if (PQntuples(cres) != 1)
                return flow_fail(r, tenant, "not_enabled");
        _cleanup_free_ uint8_t *client_secret = NULL;
        size_t secret_len = 0;
        if (!PQgetisnull(cres, 0, 2)) {
                char aad[OIDC_SECRET_AAD_MAX];
                oidc_secret_aad(aad, at.tenant_id);
                if ((k = secrets_open_value(r->api, d.conn, at.tenant_id, aad, PQgetvalue(cres, 0, 2), &client_secret,
                                            &secret_len, &e)) < 0) {
                        log_ctx(LOG_ERROR, LOG_KV("tenant", at.tenant_id), "oidc client secret: %s", e.message);
                        return flow_fail(r, tenant, "unavailable");
                }
        }
        db_close(&d);

        char verifier[44], nonce[65];
        flow_derive(secret, verifier, nonce);
        explicit_bzero(cookie, sizeof cookie);
        _cleanup_free_ char *id_token = NULL;
        k = flow_redeem(r->api, PQgetvalue(res, 0, 0), PQgetvalue(cres, 0, 0), (const char *)client_secret,
                        !strcmp(PQgetvalue(res, 0, 2), "client_secret_post"), code, verifier, &id_token, &e);
        explicit_bzero(cbuf, sizeof cbuf);
        explicit_bzero(verifier, sizeof verifier);
        if (client_secret)
                explicit_bzero(client_secret, secret_len);
        if (k < 0) {
                /* the next sign-in reads the discovery document again: it may have moved */
                flow_discovery_forget(PQgetvalue(cres, 0, 1));
                oidc_reject(r, &at, "code", e.message);
                return flow_fail(r, tenant, "code");
        }
        k = oidc_login_token(r, &at, id_token, strlen(id_token), nonce);
        explicit_bzero(id_token, strlen(id_token));
        if (k < 0)
                /* invalid_token, no_role, conflict, forbidden, unavailable, ... */
                return flow_fail(r, tenant, r->pcode ? r->pcode : "internal");
        if ((k = auth_session_take_token(r)) < 0)
                return flow_fail(r, tenant, "internal");
        /* the dashboard; the session cookies are set with this answer */
        char *where = NULL;
        if (asprintf(&where, "%s/#/runs", r->api->public_url) < 0)
                where = NULL;
        return flow_redirect(r, where);
}
