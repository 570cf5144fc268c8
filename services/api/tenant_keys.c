/* Per-tenant Ed25519 evidence-signing keys (issue 14 §2, docs/CONTRACTS.md
 * "Reviews and the signed evidence bundle"): the key that signs the manifest
 * of a run's evidence bundle, and GET /v1/tenant/keys, which publishes the
 * public halves so that `paddock evidence verify` checks a bundle offline.
 *
 * A tenant gets its key on first use (a bundle, or the key list), and a new
 * one on POST /v1/tenant/keys/rotate, made under a per-tenant advisory lock
 * so two api workers or replicas never make two (sealed_keys.h). The raw
 * private key is stored only sealed with the master key and is in clear only
 * inside tenant_keys_sign(), wiped before it returns. One key is active; a
 * rotated one is retired (retired_at) but never deleted: a bundle made years
 * ago names its kid and must still verify against the list. */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <string.h>

#include "api.h"
#include "auth/base64url.h"
#include "core/log.h"
#include "crypto/sign.h"
#include "pg/pg.h"
#include "sealed_keys.h"

#define TK_RAW_LEN 32

static int key_create(struct api *a, PGconn *conn, const char *tenant_id, char *ret_kid, size_t kid_size,
                      struct err_detail *e);

static int key_active(struct api *a, PGconn *conn, const char *tenant_id, char *ret_kid, size_t kid_size,
                      struct err_detail *e) {
        (void)a;
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {tenant_id};
        int k = pg_exec(conn, "SELECT kid FROM api.evidence_keys WHERE tenant_id = $1 AND status = 'active'", 1,
                        params, &res, e);
        if (k < 0)
                return k;
        if (PQntuples(res) != 1)
                return 0;
        if (ret_kid)
                snprintf(ret_kid, kid_size, "%s", PQgetvalue(res, 0, 0));
        return 1;
}

static const struct sealed_keys evidence_keys = {
        .table = "api.evidence_keys",
        .name = "paddock-evidence-key",
        .what = "evidence key",
        .public_column = "public_key",
        .public_type = "text",
        .current = key_active,
        .create = key_create,
};

/* Makes the tenant's new active key, retiring the one before (rotation):
 * kid = base64url(SHA-256(raw public key)) cut to 22 characters (128 bits:
 * names, not protects). Under sealed_keys' lock. 0 or negative errno. */
static int key_create(struct api *a, PGconn *conn, const char *tenant_id, char *ret_kid, size_t kid_size,
                      struct err_detail *e) {
        uint8_t priv[TK_RAW_LEN], pub[TK_RAW_LEN];
        size_t pl = sizeof pub;
        if (RAND_bytes(priv, sizeof priv) != 1)
                return err_set(e, -EIO, "crypto", "could not make an evidence key");
        EVP_PKEY *pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, priv, sizeof priv);
        bool ok = pkey && EVP_PKEY_get_raw_public_key(pkey, pub, &pl) == 1 && pl == sizeof pub;
        EVP_PKEY_free(pkey);
        if (!ok) {
                OPENSSL_cleanse(priv, sizeof priv);
                return err_set(e, -EIO, "crypto", "could not make an evidence key");
        }
        uint8_t dig[SHA256_DIGEST_LENGTH];
        SHA256(pub, sizeof pub, dig);
        char kid[B64URL_ENCODED_LEN(SHA256_DIGEST_LENGTH) + 1];
        b64url_encode(dig, sizeof dig, kid);
        kid[22] = '\0';
        char pub_b64[SIGN_PUBLIC_KEY_B64_LEN + 1];
        EVP_EncodeBlock((unsigned char *)pub_b64, pub, sizeof pub);
        const char *params[] = {tenant_id};
        int k = pg_exec(conn,
                        "UPDATE api.evidence_keys SET status = 'retired', retired_at = clock_timestamp() "
                        "WHERE tenant_id = $1 AND status = 'active'",
                        1, params, NULL, e);
        if (k >= 0)
                k = sealed_keys_store(a, conn, &evidence_keys, tenant_id, kid, pub_b64, priv, sizeof priv, e);
        OPENSSL_cleanse(priv, sizeof priv);
        if (k < 0)
                return k;
        snprintf(ret_kid, kid_size, "%s", kid);
        log_ctx(LOG_INFO, LOG_KV("tenant", tenant_id, "kid", kid), "new evidence signing key");
        return 0;
}

int tenant_keys_active(struct api *a, PGconn *conn, const char *tenant_id, char *ret_kid, size_t kid_size,
                       struct err_detail *e) {
        return sealed_keys_current(a, conn, &evidence_keys, tenant_id, false, ret_kid, kid_size, e);
}

int tenant_keys_sign(struct api *a, PGconn *conn, const char *tenant_id, const char *kid, const void *msg,
                     size_t len, uint8_t sig[SIGN_SIGNATURE_LEN], struct err_detail *e) {
        uint8_t priv[TK_RAW_LEN];
        size_t n = 0;
        int k = sealed_keys_open(a, conn, &evidence_keys, tenant_id, kid, priv, sizeof priv, &n, e);
        if (k < 0)
                return k;
        EVP_PKEY *pkey = n == TK_RAW_LEN ? EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, priv, sizeof priv)
                                         : NULL;
        OPENSSL_cleanse(priv, sizeof priv);
        size_t sl = SIGN_SIGNATURE_LEN;
        EVP_MD_CTX *md = pkey ? EVP_MD_CTX_new() : NULL;
        bool ok = md && EVP_DigestSignInit(md, NULL, NULL, NULL, pkey) == 1 &&
                  EVP_DigestSign(md, sig, &sl, msg, len) == 1 && sl == SIGN_SIGNATURE_LEN;
        EVP_MD_CTX_free(md);
        EVP_PKEY_free(pkey);
        if (!ok)
                return err_set(e, -EIO, "crypto", "could not sign with evidence key %s", kid);
        return 0;
}

/* The tenant's keys, newest first, as GET /v1/tenant/keys publishes them. */
static int keys_published(PGconn *conn, const char *tenant_id, json_t **ret, struct err_detail *e) {
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {tenant_id};
        int k = pg_exec(conn,
                        "SELECT kid, public_key, " DB_TS("created_at") ", status, "
                        "CASE WHEN retired_at IS NULL THEN NULL ELSE " DB_TS("retired_at") " END "
                        "FROM api.evidence_keys WHERE tenant_id = $1 ORDER BY created_at DESC, kid",
                        1, params, &res, e);
        if (k < 0)
                return k;
        json_t *keys = json_array();
        for (int i = 0; keys && i < PQntuples(res); i++)
                json_array_append_new(
                        keys, json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "kid", PQgetvalue(res, i, 0), "alg",
                                        "Ed25519", "public_key", PQgetvalue(res, i, 1), "created_at",
                                        PQgetvalue(res, i, 2), "status", PQgetvalue(res, i, 3), "retired_at",
                                        PQgetisnull(res, i, 4) ? json_null() : json_string(PQgetvalue(res, i, 4))));
        if (!keys)
                return -ENOMEM;
        *ret = keys;
        return 0;
}

int tenant_keys_list(struct api_req *r) {
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k;
        if ((k = db_open_caller(&d, r, &e)) < 0)
                return db_fail(r, k, &e, "open database connection");
        /* made on first use: a verifier may fetch the list before the first bundle */
        json_t *keys = NULL;
        if ((k = db_begin(&d, &e)) < 0 || (k = tenant_keys_active(r->api, d.conn, r->caller.tenant_id, NULL, 0, &e)) < 0 ||
            (k = keys_published(d.conn, r->caller.tenant_id, &keys, &e)) < 0) {
                db_rollback(&d);
                return db_fail(r, k, &e, "list evidence keys");
        }
        r->out = json_pack("{s:o}", "keys", keys);
        if ((k = db_commit(&d, &e)) < 0)
                return db_fail(r, k, &e, "commit evidence key");
        r->status = 200;
        return r->out ? 0 : api_fail(r, -ENOMEM, "internal", "out of memory");
}

/* POST /v1/tenant/keys/rotate: a new active key now; the one before is
 * retired but stays published, so bundles it signed keep verifying. */
int tenant_keys_rotate(struct api_req *r) {
        int k = api_body_none(r);
        if (k < 0)
                return k;
        _cleanup_tx_ struct api_tx tx = {0};
        if ((k = api_tx_begin(r, &tx)) < 0)
                return k;
        char kid[64];
        if ((k = sealed_keys_current(r->api, tx.d.conn, &evidence_keys, r->caller.tenant_id, true, kid, sizeof kid,
                                     &tx.e)) < 0)
                return db_fail(r, k, &tx.e, "rotate evidence key");
        json_t *keys = NULL;
        if ((k = keys_published(tx.d.conn, r->caller.tenant_id, &keys, &tx.e)) < 0)
                return db_fail(r, k, &tx.e, "list evidence keys");
        r->out = json_pack("{s:s, s:o}", "kid", kid, "keys", keys);
        _cleanup_json_ json_t *change = json_pack("{s:s}", "kid", kid);
        if ((k = api_tx_audit(&tx, "tenant.evidence_key_rotate", "tenant", r->caller.tenant_id, change)) < 0 ||
            (k = api_tx_commit(&tx, "evidence key")) < 0)
                return k;
        r->status = 200;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}
