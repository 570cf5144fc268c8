/* Per-tenant Ed25519 evidence-signing keys (issue 14 §2, docs/CONTRACTS.md
 * "Reviews and the signed evidence bundle"): the key that signs the manifest
 * of a run's evidence bundle, and GET /v1/tenant/keys, which publishes the
 * public halves so that `paddock evidence verify` checks a bundle offline.
 *
 * A tenant gets its key on first use (a bundle, or the key list), made under
 * a per-tenant advisory lock so two api workers or replicas never make two.
 * The raw private key is stored only sealed with the master key, like the
 * workload identity keys (workload_identity.c), and is in clear only inside
 * tenant_keys_sign(), wiped before it returns. Keys are never deleted: a
 * bundle made years ago must still verify against the list. */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <string.h>

#include "api.h"
#include "auth/base64url.h"
#include "core/log.h"
#include "crypto/secretbox.h"
#include "crypto/sign.h"
#include "pg/pg.h"

#define TK_AAD_PREFIX "paddock-evidence-key:"
#define TK_RAW_LEN 32

static size_t key_aad(char *buf, size_t size, const char *tenant_id, const char *kid) {
        return (size_t)snprintf(buf, size, TK_AAD_PREFIX "%s/%s", tenant_id, kid);
}

/* Makes the tenant's key: kid = base64url(SHA-256(raw public key)) cut to 22
 * characters (128 bits: names, not protects). 0 or negative errno with e. */
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
        char aad[160];
        size_t aadlen = key_aad(aad, sizeof aad, tenant_id, kid);
        uint8_t sealed[SECRETBOX_SEALED_LEN(TK_RAW_LEN)];
        int k = secretbox_seal(a->master_key, priv, sizeof priv, aad, aadlen, sealed);
        OPENSSL_cleanse(priv, sizeof priv);
        if (k < 0)
                return err_set(e, -EIO, "crypto", "could not seal an evidence key");
        char hex[2 * sizeof sealed + 3] = "\\x";
        hex_encode(sealed, sizeof sealed, hex + 2);
        const char *params[] = {tenant_id, kid, pub_b64, hex};
        k = pg_exec(conn,
                    "INSERT INTO api.evidence_keys (tenant_id, kid, public_key, sealed_private) "
                    "VALUES ($1, $2, $3, $4::bytea)",
                    4, params, NULL, e);
        if (k < 0)
                return k;
        snprintf(ret_kid, kid_size, "%s", kid);
        log_ctx(LOG_INFO, LOG_KV("tenant", tenant_id, "kid", kid), "new evidence signing key");
        return 0;
}

static int key_active(PGconn *conn, const char *tenant_id, char *ret_kid, size_t kid_size, struct err_detail *e) {
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

/* The tenant's active key (made first when it has none), inside the
 * caller's transaction on conn; only making one takes the lock. */
static int key_ensure(struct api *a, PGconn *conn, const char *tenant_id, char *ret_kid, size_t kid_size,
                      struct err_detail *e) {
        int k = key_active(conn, tenant_id, ret_kid, kid_size, e);
        if (k != 0)
                return k < 0 ? k : 0;
        const char *params[] = {tenant_id};
        k = pg_exec(conn, "SELECT pg_advisory_xact_lock(hashtextextended('paddock-evidence-key:' || $1, 0))", 1,
                    params, NULL, e);
        if (k < 0)
                return k;
        if ((k = key_active(conn, tenant_id, ret_kid, kid_size, e)) != 0)
                return k < 0 ? k : 0;
        char kid[64];
        k = key_create(a, conn, tenant_id, kid, sizeof kid, e);
        if (k >= 0 && ret_kid)
                snprintf(ret_kid, kid_size, "%s", kid);
        return k;
}

int tenant_keys_active(struct api *a, PGconn *conn, const char *tenant_id, char *ret_kid, size_t kid_size,
                       struct err_detail *e) {
        return key_ensure(a, conn, tenant_id, ret_kid, kid_size, e);
}

int tenant_keys_sign(struct api *a, PGconn *conn, const char *tenant_id, const void *msg, size_t len,
                     uint8_t sig[SIGN_SIGNATURE_LEN], char *ret_kid, size_t kid_size, struct err_detail *e) {
        char kid[64];
        int k = key_ensure(a, conn, tenant_id, kid, sizeof kid, e);
        if (k < 0)
                return k;
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {tenant_id, kid};
        k = pg_exec(conn, "SELECT sealed_private FROM api.evidence_keys WHERE tenant_id = $1 AND kid = $2", 2, params,
                    &res, e);
        if (k < 0)
                return k;
        if (PQntuples(res) != 1)
                return err_set(e, -EIO, "crypto", "evidence key %s vanished", kid);
        const char *hex = PQgetvalue(res, 0, 0);
        uint8_t sealed[SECRETBOX_SEALED_LEN(TK_RAW_LEN)];
        if (strncmp(hex, "\\x", 2) || strlen(hex + 2) != 2 * sizeof sealed)
                return err_set(e, -EBADMSG, "crypto", "stored evidence key %s is malformed", kid);
        for (size_t i = 0; i < sizeof sealed; i++) {
                int hi = hex_value((unsigned char)hex[2 + 2 * i]), lo = hex_value((unsigned char)hex[3 + 2 * i]);
                if (hi < 0 || lo < 0)
                        return err_set(e, -EBADMSG, "crypto", "stored evidence key %s is malformed", kid);
                sealed[i] = (uint8_t)(hi << 4 | lo);
        }
        uint8_t priv[TK_RAW_LEN];
        char aad[160];
        size_t aadlen = key_aad(aad, sizeof aad, tenant_id, kid);
        if (secretbox_open(a->master_key, sealed, sizeof sealed, aad, aadlen, priv) != TK_RAW_LEN) {
                OPENSSL_cleanse(priv, sizeof priv);
                return err_set(e, -EBADMSG, "crypto", "evidence key %s does not open with PADDOCK_MASTER_KEY", kid);
        }
        EVP_PKEY *pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, priv, sizeof priv);
        OPENSSL_cleanse(priv, sizeof priv);
        size_t sl = SIGN_SIGNATURE_LEN;
        EVP_MD_CTX *md = pkey ? EVP_MD_CTX_new() : NULL;
        bool ok = md && EVP_DigestSignInit(md, NULL, NULL, NULL, pkey) == 1 &&
                  EVP_DigestSign(md, sig, &sl, msg, len) == 1 && sl == SIGN_SIGNATURE_LEN;
        EVP_MD_CTX_free(md);
        EVP_PKEY_free(pkey);
        if (!ok)
                return err_set(e, -EIO, "crypto", "could not sign with evidence key %s", kid);
        snprintf(ret_kid, kid_size, "%s", kid);
        return 0;
}

int tenant_keys_list(struct api_req *r) {
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k;
        if ((k = db_open_caller(&d, r, &e)) < 0)
                return db_fail(r, k, &e, "open database connection");
        /* made on first use: a verifier may fetch the list before the first bundle */
        if ((k = db_begin(&d, &e)) < 0 || (k = key_ensure(r->api, d.conn, r->caller.tenant_id, NULL, 0, &e)) < 0) {
                db_rollback(&d);
                return db_fail(r, k, &e, "make evidence key");
        }
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {r->caller.tenant_id};
        k = pg_exec(d.conn,
                    "SELECT kid, public_key, " DB_TS("created_at") ", status FROM api.evidence_keys "
                    "WHERE tenant_id = $1 ORDER BY created_at DESC, kid",
                    1, params, &res, &e);
        if (k < 0) {
                db_rollback(&d);
                return db_fail(r, k, &e, "list evidence keys");
        }
        if ((k = db_commit(&d, &e)) < 0)
                return db_fail(r, k, &e, "commit evidence key");
        json_t *keys = json_array();
        for (int i = 0; keys && i < PQntuples(res); i++)
                json_array_append_new(keys, json_pack("{s:s, s:s, s:s, s:s, s:s}", "kid", PQgetvalue(res, i, 0), "alg",
                                                      "Ed25519", "public_key", PQgetvalue(res, i, 1), "created_at",
                                                      PQgetvalue(res, i, 2), "status", PQgetvalue(res, i, 3)));
        r->out = keys ? json_pack("{s:o}", "keys", keys) : NULL;
        r->status = 200;
        return r->out ? 0 : api_fail(r, -ENOMEM, "internal", "out of memory");
}
