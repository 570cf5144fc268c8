/* Workload identity (issue 12 §6, docs/CONTRACTS.md "Workload identity"): the
 * api is an OIDC issuer per tenant, <PADDOCK_PUBLIC_URL>/v1/tenants/<tenant
 * id>/oidc, so that a cloud's IAM (AWS AssumeRoleWithWebIdentity, GCP
 * workload identity federation, Azure federated credentials) or any service
 * can trust a run's token with conditions on its claims, and no definition
 * needs a static cloud key.
 *
 * Keys: RSA 2048 per tenant (RS256 is what every cloud accepts), made on
 * first use; the newest signs; a newer one is made once the newest is
 * PADDOCK_WORKLOAD_KEY_ROTATE_DAYS old (or on POST .../rotate), and a
 * replaced key stays in the JWKS one more period, so a verifier's cached set
 * and a token signed just before the rotation still verify. The private key
 * is stored only sealed with the master key (migration 0022, sealed_keys.h)
 * and lives in clear only inside workload_identity_mint(), wiped before it
 * returns. Making a key takes the tenant's advisory lock, so two api
 * replicas never make two at once.
 *
 * Tokens are minted by sealing.c when the runner announces the run's key,
 * put in the sealed bundle with the run's secrets, and never stored, logged
 * or put in an event in clear. */
#include <errno.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "auth/base64url.h"
#include "auth/jwks.h"
#include "auth/jwt.h"
#include "core/ids.h"
#include "core/log.h"
#include "pg/pg.h"
#include "sealed_keys.h"

#define WI_RSA_BITS 2048
#define WI_PRIVATE_DER_MAX 4096

int workload_identity_configure(struct api *a, struct err_detail *e) {
        const char *u = a->cfg.public_url;
        if (!u || !u[0]) {
                snprintf(a->public_url, sizeof a->public_url, "http://%s", a->cfg.addr ? a->cfg.addr : "127.0.0.1:8080");
                return 0;
        }
        size_t n = strlen(u);
        while (n && u[n - 1] == '/')
                n--;
        size_t scheme = !strncmp(u, "https://", 8) ? 8 : !strncmp(u, "http://", 7) ? 7 : 0;
        if (!scheme)
                return err_set(e, -EINVAL, "invalid", "must start with https:// or http://");
        if (n <= scheme || n >= sizeof a->public_url)
                return err_set(e, -EINVAL, "invalid", "must name a host (at most %zu characters)", sizeof a->public_url - 1);
        for (size_t i = scheme; i < n; i++)
                if (strchr("/?#@\\ ", u[i]) || (unsigned char)u[i] < 0x21 || (unsigned char)u[i] > 0x7e)
                        return err_set(e, -EINVAL, "invalid", "must be scheme://host[:port], without user, path, query "
                                       "or fragment");
        memcpy(a->public_url, u, n);
        a->public_url[n] = '\0';
        return 0;
}

static int issuer_of(const struct api *a, const char *tenant_id, char *buf, size_t size) {
        int n = snprintf(buf, size, "%s/v1/tenants/%s/oidc", a->public_url, tenant_id);
        return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* base64url of a BIGNUM parameter of pkey; caller frees. */
static char *bn_b64url(EVP_PKEY *pkey, const char *param) {
        BIGNUM *bn = NULL;
        if (!EVP_PKEY_get_bn_param(pkey, param, &bn))
                return NULL;
        int len = BN_num_bytes(bn);
        uint8_t *raw = malloc((size_t)len + 1);
        char *out = raw ? malloc(B64URL_ENCODED_LEN((size_t)len) + 1) : NULL;
        if (out) {
                BN_bn2bin(bn, raw);
                b64url_encode(raw, (size_t)len, out);
        }
        free(raw);
        BN_free(bn);
        return out;
}

static const struct sealed_keys workload_keys;

/* Makes a key pair and stores it: public JWK (kid = its RFC 7638 thumbprint)
 * and the sealed PKCS#8 DER private key. 0 or negative errno with e. */
static int key_create(struct api *a, PGconn *conn, const char *tenant_id, char *ret_kid, size_t kid_size,
                      struct err_detail *e) {
        EVP_PKEY *pkey = EVP_RSA_gen(WI_RSA_BITS);
        if (!pkey)
                return err_set(e, -EIO, "crypto", "could not generate an RSA key");
        _cleanup_free_ char *n = bn_b64url(pkey, OSSL_PKEY_PARAM_RSA_N), *ex = bn_b64url(pkey, OSSL_PKEY_PARAM_RSA_E);
        uint8_t *der = NULL;
        int der_len = i2d_PrivateKey(pkey, &der);
        EVP_PKEY_free(pkey);
        if (!n || !ex || der_len <= 0 || der_len > WI_PRIVATE_DER_MAX) {
                if (der_len > 0)
                        OPENSSL_clear_free(der, (size_t)der_len);
                return err_set(e, -EIO, "crypto", "could not encode an RSA key");
        }
        /* RFC 7638: the thumbprint of the required members in lexical order */
        _cleanup_free_ char *canon = NULL;
        if (asprintf(&canon, "{\"e\":\"%s\",\"kty\":\"RSA\",\"n\":\"%s\"}", ex, n) < 0) {
                OPENSSL_clear_free(der, (size_t)der_len);
                return -ENOMEM;
        }
        uint8_t dig[SHA256_DIGEST_LENGTH];
        SHA256((const uint8_t *)canon, strlen(canon), dig);
        char kid[B64URL_ENCODED_LEN(SHA256_DIGEST_LENGTH) + 1];
        b64url_encode(dig, sizeof dig, kid);
        _cleanup_json_ json_t *jwk = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "kty", "RSA", "use", "sig", "alg",
                                               "RS256", "kid", kid, "n", n, "e", ex);
        _cleanup_free_ char *jwk_text = jwk ? json_dumps(jwk, JSON_COMPACT) : NULL;
        int k = jwk_text ? sealed_keys_store(a, conn, &workload_keys, tenant_id, kid, jwk_text, der, (size_t)der_len, e)
                         : -ENOMEM;
        OPENSSL_clear_free(der, (size_t)der_len);
        if (k < 0)
                return k;
        snprintf(ret_kid, kid_size, "%s", kid);
        log_ctx(LOG_INFO, LOG_KV("tenant", tenant_id, "kid", kid), "new workload identity signing key");
        return 0;
}

/* The tenant's current signing key's kid into ret_kid (may be NULL): 1 if it
 * has one younger than a rotation period, 0 if not, or an error. */
static int key_current(struct api *a, PGconn *conn, const char *tenant_id, char *ret_kid, size_t kid_size,
                       struct err_detail *e) {
        char days[24];
        snprintf(days, sizeof days, "%lld", a->cfg.workload_key_rotate_days);
        const char *params[] = {tenant_id, days};
        _cleanup_pgres_ PGresult *res = NULL;
        int k = pg_exec(conn,
                        "SELECT kid FROM api.workload_keys WHERE tenant_id = $1 "
                        "AND created_at > clock_timestamp() - make_interval(days => $2::int) "
                        "ORDER BY created_at DESC LIMIT 1",
                        2, params, &res, e);
        if (k < 0)
                return k;
        if (PQntuples(res) != 1)
                return 0;
        if (ret_kid)
                snprintf(ret_kid, kid_size, "%s", PQgetvalue(res, 0, 0));
        return 1;
}

static const struct sealed_keys workload_keys = {
        .table = "api.workload_keys",
        .name = "paddock-workload-key",
        .what = "workload identity key",
        .public_column = "public_jwk",
        .public_type = "jsonb",
        .current = key_current,
        .create = key_create,
};

/* Makes the tenant a signing key when it has none, when its newest is a
 * rotation period old, or when force, inside the caller's transaction. */
static int key_ensure(struct api *a, PGconn *conn, const char *tenant_id, bool force, char *ret_kid, size_t kid_size,
                      struct err_detail *e) {
        return sealed_keys_current(a, conn, &workload_keys, tenant_id, force, ret_kid, kid_size, e);
}

/* The tenant's published public keys, newest first: the signing key and those
 * replaced less than a rotation period ago. */
static int keys_published(struct api *a, PGconn *conn, const char *tenant_id, json_t **ret, struct err_detail *e) {
        char days[24];
        snprintf(days, sizeof days, "%lld", a->cfg.workload_key_rotate_days);
        const char *params[] = {tenant_id, days};
        _cleanup_pgres_ PGresult *res = NULL;
        int k = pg_exec(conn,
                        "SELECT public_jwk::text FROM (SELECT public_jwk, created_at, "
                        "  lead(created_at) OVER (ORDER BY created_at) AS replaced_at "
                        "  FROM api.workload_keys WHERE tenant_id = $1) k "
                        "WHERE replaced_at IS NULL OR replaced_at > clock_timestamp() - make_interval(days => $2::int) "
                        "ORDER BY created_at DESC",
                        2, params, &res, e);
        if (k < 0)
                return k;
        json_t *keys = json_array();
        for (int i = 0; keys && i < PQntuples(res); i++)
                json_array_append_new(keys, json_loads(PQgetvalue(res, i, 0), 0, NULL));
        if (!keys)
                return -ENOMEM;
        *ret = keys;
        return 0;
}

/* Opens the tenant's public routes' connection: 404 for a malformed or
 * unknown tenant id (the same answer, no oracle beyond what the issuer URL
 * publishes anyway). */
static int open_tenant(struct api_req *r, struct db *d, const char *tenant_id) {
        struct err_detail e = {0};
        if (!tenant_id || !id_is_uuid(tenant_id))
                return api_errno(r, -ENOENT, "tenant not found");
        int k = db_open(d, r->api, tenant_id, &e);
        if (k < 0)
                return db_fail(r, k, &e, "open database connection");
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {tenant_id};
        k = pg_exec(d->conn, "SELECT 1 FROM api.tenants WHERE id = $1", 1, params, &res, &e);
        if (k < 0)
                return db_fail(r, k, &e, "look up tenant");
        if (PQntuples(res) != 1)
                return api_errno(r, -ENOENT, "tenant not found");
        return 0;
}

int workload_identity_discovery(struct api_req *r) {
        const char *tenant_id = r->params[0];
        _cleanup_db_ struct db d = {0};
        int k = open_tenant(r, &d, tenant_id);
        if (k < 0)
                return k;
        char iss[700], jwks[760], introspect[780];
        if (issuer_of(r->api, tenant_id, iss, sizeof iss) < 0)
                return api_fail(r, -ENAMETOOLONG, "internal", "issuer URL too long");
        snprintf(jwks, sizeof jwks, "%s/jwks", iss);
        snprintf(introspect, sizeof introspect, "%s/introspect", iss);
        r->out = json_pack("{s:s, s:s, s:s, s:[s], s:[s], s:[s], s:[s,s,s,s,s,s,s,s]}", "issuer", iss, "jwks_uri", jwks,
                           "introspection_endpoint", introspect,
                           "id_token_signing_alg_values_supported", "RS256", "response_types_supported", "id_token",
                           "subject_types_supported", "public", "claims_supported", "iss", "sub", "aud", "iat", "nbf",
                           "exp", "jti", "paddock");
        r->status = 200;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

int workload_identity_jwks(struct api_req *r) {
        const char *tenant_id = r->params[0];
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k = open_tenant(r, &d, tenant_id);
        if (k < 0)
                return k;
        /* keys are made on first use: a relying party may be set up before
         * the tenant's first run */
        if ((k = db_begin(&d, &e)) < 0 || (k = key_ensure(r->api, d.conn, tenant_id, false, NULL, 0, &e)) < 0) {
                db_rollback(&d);
                return db_fail(r, k, &e, "make workload identity key");
        }
        json_t *keys = NULL;
        if ((k = keys_published(r->api, d.conn, tenant_id, &keys, &e)) < 0) {
                db_rollback(&d);
                return db_fail(r, k, &e, "list workload identity keys");
        }
        r->out = json_pack("{s:o}", "keys", keys);
        if ((k = db_commit(&d, &e)) < 0)
                return db_fail(r, k, &e, "commit workload identity key");
        r->status = 200;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

int workload_identity_rotate(struct api_req *r) {
        int k = api_body_none(r);
        if (k < 0)
                return k;
        _cleanup_tx_ struct api_tx tx = {0};
        if ((k = api_tx_begin(r, &tx)) < 0)
                return k;
        char kid[64];
        if ((k = key_ensure(r->api, tx.d.conn, r->caller.tenant_id, true, kid, sizeof kid, &tx.e)) < 0)
                return db_fail(r, k, &tx.e, "rotate workload identity key");
        json_t *keys = NULL;
        if ((k = keys_published(r->api, tx.d.conn, r->caller.tenant_id, &keys, &tx.e)) < 0)
                return db_fail(r, k, &tx.e, "list workload identity keys");
        _cleanup_json_ json_t *change = json_pack("{s:s}", "kid", kid);
        if ((k = api_tx_audit(&tx, "tenant.workload_key_rotate", "tenant", r->caller.tenant_id, change)) < 0) {
                json_decref(keys);
                return k;
        }
        if ((k = api_tx_commit(&tx, "workload identity key")) < 0) {
                json_decref(keys);
                return k;
        }
        json_t *kids = json_array();
        size_t i;
        json_t *it;
        json_array_foreach(keys, i, it)
                json_array_append(kids, json_object_get(it, "kid"));
        json_decref(keys);
        r->out = json_pack("{s:s, s:o}", "kid", kid, "published_kids", kids);
        r->status = 200;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

/* The tenant's signing key, opened: *ret_pkey (caller frees) and its kid. */
static int key_signing(struct api *a, PGconn *conn, const char *tenant_id, EVP_PKEY **ret_pkey, char *kid,
                       size_t kid_size, struct err_detail *e) {
        int k = key_ensure(a, conn, tenant_id, false, kid, kid_size, e);
        if (k < 0)
                return k;
        uint8_t der[WI_PRIVATE_DER_MAX];
        size_t der_len = 0;
        if ((k = sealed_keys_open(a, conn, &workload_keys, tenant_id, kid, der, sizeof der, &der_len, e)) < 0)
                return k;
        const uint8_t *p = der;
        EVP_PKEY *pkey = d2i_AutoPrivateKey(NULL, &p, (long)der_len);
        OPENSSL_cleanse(der, sizeof der);
        if (!pkey)
                return err_set(e, -EBADMSG, "crypto", "workload identity key %s is not an RSA key", kid);
        *ret_pkey = pkey;
        return 0;
}

/* base64url of a JSON object, appended to out at *off. */
static int append_b64url_json(json_t *o, char *out, size_t size, size_t *off) {
        _cleanup_free_ char *s = json_dumps(o, JSON_COMPACT);
        if (!s)
                return -ENOMEM;
        size_t n = strlen(s);
        if (*off + B64URL_ENCODED_LEN(n) + 1 > size)
                return -EMSGSIZE;
        *off += b64url_encode((const uint8_t *)s, n, out + *off);
        OPENSSL_cleanse(s, n);
        return 0;
}

int workload_identity_mint(struct api *a, PGconn *conn, const struct workload_claims *c, char **ret, size_t *ret_len,
                           struct err_detail *e) {
        EVP_PKEY *pkey = NULL;
        char kid[64], iss[700], sub[320], jti[UUID_STR_LEN];
        int k = key_signing(a, conn, c->tenant_id, &pkey, kid, sizeof kid, e);
        if (k < 0)
                return k;
        if (issuer_of(a, c->tenant_id, iss, sizeof iss) < 0 || id_new_uuid(jti) < 0) {
                EVP_PKEY_free(pkey);
                return err_set(e, -EIO, "crypto", "could not make the token's issuer or id");
        }
        snprintf(sub, sizeof sub, "tenant:%s:team:%s:definition:%s:run:%s", c->tenant_id, c->team_id, c->sandbox_id,
                 c->run_id);
        json_int_t now = (json_int_t)time(NULL);
        _cleanup_json_ json_t *hdr = json_pack("{s:s, s:s, s:s}", "alg", "RS256", "typ", "JWT", "kid", kid);
        _cleanup_json_ json_t *claims = json_pack(
                "{s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:{s:s, s:s, s:s, s:I, s:s}}", "iss", iss, "sub", sub, "aud",
                c->audience, "iat", now, "nbf", now, "exp", now + (json_int_t)c->ttl_s, "jti", jti, "paddock", "tenant",
                c->tenant_id, "team", c->team_id, "definition", c->sandbox_id, "version", (json_int_t)c->version, "run",
                c->run_id);
        size_t size = 8192, off = 0;
        char *tok = calloc(1, size);
        if (!hdr || !claims || !tok) {
                free(tok);
                EVP_PKEY_free(pkey);
                return -ENOMEM;
        }
        k = append_b64url_json(hdr, tok, size, &off);
        if (k >= 0) {
                tok[off++] = '.';
                k = append_b64url_json(claims, tok, size, &off);
        }
        if (k < 0) {
                free(tok);
                EVP_PKEY_free(pkey);
                return err_set(e, k, "token", "workload identity token too large");
        }
        uint8_t sig[WI_RSA_BITS / 8 * 2];
        size_t sig_len = sizeof sig;
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        bool ok = md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pkey) == 1 &&
                  EVP_DigestSign(md, sig, &sig_len, (const uint8_t *)tok, off) == 1;
        EVP_MD_CTX_free(md);
        EVP_PKEY_free(pkey);
        if (!ok || off + 1 + B64URL_ENCODED_LEN(sig_len) + 1 > size) {
                OPENSSL_clear_free(tok, size);
                return err_set(e, -EIO, "crypto", "could not sign a workload identity token");
        }
        tok[off++] = '.';
        off += b64url_encode(sig, sig_len, tok + off);
        *ret = tok;
        *ret_len = off;
        return 0;
}

/* POST /v1/tenants/{tenant}/oidc/introspect {token}: RFC 7662's answer for a
 * relying party that must stop trusting a token once its run ends, before its
 * exp (docs/CONTRACTS.md "Workload identity"). Public, like the JWKS: whoever
 * holds a token may ask about it, and learns nothing beyond its claims, which
 * the token carries anyway. Active only when the signature verifies with a
 * published key of this tenant, iss is this tenant's issuer, exp/nbf hold on
 * the real clock, and the run it names is not in a terminal status. Every
 * inactive answer is the same `{"active": false}` (RFC 7662 §2.2). */
int workload_identity_introspect(struct api_req *r) {
        const char *tenant_id = r->params[0];
        _cleanup_json_ json_t *body = NULL;
        int k = api_body_object(r, &body);
        if (k < 0)
                return k;
        if ((k = api_known_fields(r, body, (const char *const[]){"token", NULL})) < 0)
                return k;
        const char *token = json_string_value(json_object_get(body, "token"));
        if (!token || !*token)
                return api_errno(r, -EINVAL, "token: a non-empty string is required");
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        if ((k = open_tenant(r, &d, tenant_id)) < 0)
                return k;
        r->status = 200;
        r->out = json_pack("{s:b}", "active", false);
        if (!r->out)
                return api_errno(r, -ENOMEM, "out of memory");

        _cleanup_(jwt_decoded_freep) struct jwt_decoded *t = NULL;
        if (jwt_decode(token, strlen(token), &t, &e) < 0)
                return 0;
        const char *aud = json_string_value(json_object_get(jwt_decoded_claims(t), "aud"));
        const char *kid = jwt_decoded_kid(t);
        if (!aud || !kid)
                return 0;
        json_t *keys = NULL;
        if ((k = keys_published(r->api, d.conn, tenant_id, &keys, &e)) < 0)
                return db_fail(r, k, &e, "list workload identity keys");
        _cleanup_json_ json_t *set = json_pack("{s:o}", "keys", keys);
        _cleanup_free_ char *set_text = set ? json_dumps(set, JSON_COMPACT) : NULL;
        if (!set_text)
                return api_errno(r, -ENOMEM, "out of memory");
        _cleanup_(jwks_freep) struct jwks *jwks = NULL;
        if (jwks_parse(set_text, strlen(set_text), &jwks, &e) < 0)
                return 0; /* a tenant without keys has issued nothing */
        _cleanup_(jwk_unrefp) struct jwk *key = jwks_find(jwks, kid);
        char iss[700];
        if (!key || issuer_of(r->api, tenant_id, iss, sizeof iss) < 0)
                return 0;
        struct jwt_verify_params p;
        jwt_verify_params_init(&p);
        p.issuer = iss;
        p.audience = aud;
        p.clock_skew_s = 0; /* the issuer's own clock: no skew to forgive */
        _cleanup_json_ json_t *claims = NULL;
        if (jwt_verify_decoded(t, key, &p, &claims, &e) < 0)
                return 0;
        json_t *pd = json_object_get(claims, "paddock");
        const char *run_id = json_string_value(json_object_get(pd, "run"));
        const char *claim_tenant = json_string_value(json_object_get(pd, "tenant"));
        if (!run_id || !id_is_uuid(run_id) || !claim_tenant || strcmp(claim_tenant, tenant_id))
                return 0;
        _cleanup_pgres_ PGresult *res = NULL;
        if ((k = pg_exec(d.conn, "SELECT status FROM api.runs WHERE id = $1 AND tenant_id = $2", 2,
                         (const char *const[]){run_id, tenant_id}, &res, &e)) < 0)
                return db_fail(r, k, &e, "look up the token's run");
        if (PQntuples(res) != 1 || runs_status_terminal(PQgetvalue(res, 0, 0)))
                return 0;
        json_decref(r->out);
        r->out = json_deep_copy(claims);
        if (!r->out || json_object_set_new(r->out, "active", json_true()) < 0 ||
            json_object_set_new(r->out, "token_type", json_string("Bearer")) < 0)
                return api_errno(r, -ENOMEM, "out of memory");
        return 0;
}
