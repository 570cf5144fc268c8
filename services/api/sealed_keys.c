/* Signing keys sealed with the master key (sealed_keys.h; docs/CONTRACTS.md
 * "Reviews and the signed evidence bundle", "Workload identity"). */
#include "sealed_keys.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ids.h"
#include "core/macro.h"
#include "crypto/secretbox.h"

#define SK_PRIVATE_MAX 4096

static size_t key_aad(char *buf, size_t size, const struct sealed_keys *sk, const char *tenant_id, const char *kid) {
        return (size_t)snprintf(buf, size, "%s:%s/%s", sk->name, tenant_id, kid);
}

int sealed_keys_current(struct api *a, PGconn *conn, const struct sealed_keys *sk, const char *tenant_id, bool force,
                        char *ret_kid, size_t kid_size, struct err_detail *e) {
        int k;
        /* a current key is read without the lock (every signature); only
         * making one takes it, and looks again under it */
        if (!force && (k = sk->current(a, conn, tenant_id, ret_kid, kid_size, e)) != 0)
                return k < 0 ? k : 0;
        const char *params[] = {sk->name, tenant_id};
        k = pg_exec(conn, "SELECT pg_advisory_xact_lock(hashtextextended($1 || ':' || $2, 0))", 2, params, NULL, e);
        if (k < 0)
                return k;
        if (!force && (k = sk->current(a, conn, tenant_id, ret_kid, kid_size, e)) != 0)
                return k < 0 ? k : 0;
        char kid[64];
        k = sk->create(a, conn, tenant_id, kid, sizeof kid, e);
        if (k >= 0 && ret_kid)
                snprintf(ret_kid, kid_size, "%s", kid);
        return k;
}

int sealed_keys_store(struct api *a, PGconn *conn, const struct sealed_keys *sk, const char *tenant_id,
                      const char *kid, const char *public_value, const uint8_t *priv, size_t len,
                      struct err_detail *e) {
        if (len == 0 || len > SK_PRIVATE_MAX)
                return err_set(e, -EMSGSIZE, "crypto", "%s of %zu bytes", sk->what, len);
        char aad[200];
        size_t aadlen = key_aad(aad, sizeof aad, sk, tenant_id, kid);
        size_t sealed_len = SECRETBOX_SEALED_LEN(len);
        _cleanup_free_ uint8_t *sealed = malloc(sealed_len);
        _cleanup_free_ char *hex = malloc(2 * sealed_len + 3);
        if (!sealed || !hex)
                return -ENOMEM;
        if (secretbox_seal(a->master_key, priv, len, aad, aadlen, sealed) < 0)
                return err_set(e, -EIO, "crypto", "could not seal a %s", sk->what);
        memcpy(hex, "\\x", 2);
        hex_encode(sealed, sealed_len, hex + 2);
        char sql[256];
        snprintf(sql, sizeof sql, "INSERT INTO %s (tenant_id, kid, %s, sealed_private) VALUES ($1, $2, $3::%s, $4::bytea)",
                 sk->table, sk->public_column, sk->public_type);
        const char *params[] = {tenant_id, kid, public_value, hex};
        return pg_exec(conn, sql, 4, params, NULL, e);
}

int sealed_keys_open(struct api *a, PGconn *conn, const struct sealed_keys *sk, const char *tenant_id,
                     const char *kid, uint8_t *out, size_t size, size_t *ret_len, struct err_detail *e) {
        char sql[160];
        snprintf(sql, sizeof sql, "SELECT sealed_private FROM %s WHERE tenant_id = $1 AND kid = $2", sk->table);
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {tenant_id, kid};
        int k = pg_exec(conn, sql, 2, params, &res, e);
        if (k < 0)
                return k;
        if (PQntuples(res) != 1)
                return err_set(e, -ENOENT, "crypto", "%s %s not found", sk->what, kid);
        const char *hex = PQgetvalue(res, 0, 0);
        size_t n = strlen(hex);
        uint8_t sealed[SECRETBOX_SEALED_LEN(SK_PRIVATE_MAX)];
        if (strncmp(hex, "\\x", 2) || n % 2 || (n - 2) / 2 <= SECRETBOX_OVERHEAD || (n - 2) / 2 > sizeof sealed)
                return err_set(e, -EBADMSG, "crypto", "stored %s %s is malformed", sk->what, kid);
        size_t sl = (n - 2) / 2;
        for (size_t i = 0; i < sl; i++) {
                int hi = hex_value((unsigned char)hex[2 + 2 * i]), lo = hex_value((unsigned char)hex[3 + 2 * i]);
                if (hi < 0 || lo < 0)
                        return err_set(e, -EBADMSG, "crypto", "stored %s %s is malformed", sk->what, kid);
                sealed[i] = (uint8_t)(hi << 4 | lo);
        }
        if (sl - SECRETBOX_OVERHEAD > size)
                return err_set(e, -EMSGSIZE, "crypto", "stored %s %s is too large", sk->what, kid);
        char aad[200];
        size_t aadlen = key_aad(aad, sizeof aad, sk, tenant_id, kid);
        int m = secretbox_open(a->master_key, sealed, sl, aad, aadlen, out);
        if (m < 0) {
                OPENSSL_cleanse(out, size);
                return err_set(e, -EBADMSG, "crypto", "%s %s does not open with PADDOCK_MASTER_KEY", sk->what, kid);
        }
        *ret_len = (size_t)m;
        return 0;
}
