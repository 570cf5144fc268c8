/* A tenant's signing keys sealed with the master key (tenant_keys.c:
 * Ed25519 evidence keys; workload_identity.c: RSA workload identity keys):
 * the private key is stored only sealed (lib/crypto/secretbox.h, aad
 * "<name>:<tenant id>/<kid>", so a row copied to another tenant or kid does
 * not open), and a new key is made only under the tenant's advisory lock
 * for that kind, so two api workers or replicas never make two at once. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "request.h"

struct sealed_keys {
        const char *table;         /* "api.evidence_keys": (tenant_id, kid, <public_column>, sealed_private) */
        const char *name;          /* "paddock-evidence-key": the aad's prefix and the lock's name */
        const char *what;          /* "evidence key", in error messages */
        const char *public_column; /* the public half's column and its SQL type */
        const char *public_type;
        /* the tenant's current key's kid into ret_kid (may be NULL): 1, 0
         * when it has none (or it is due for a new one), or negative errno */
        int (*current)(struct api *a, PGconn *conn, const char *tenant_id, char *ret_kid, size_t kid_size,
                       struct err_detail *e);
        /* makes a key and stores it with sealed_keys_store(), under the lock */
        int (*create)(struct api *a, PGconn *conn, const char *tenant_id, char *ret_kid, size_t kid_size,
                      struct err_detail *e);
};

/* The tenant's current key (made first when it has none, or always when
 * force) into ret_kid (may be NULL), inside the caller's transaction on conn;
 * the lock is taken only to make one and held to the transaction's end.
 * 0 or negative errno with e. */
int sealed_keys_current(struct api *a, PGconn *conn, const struct sealed_keys *sk, const char *tenant_id, bool force,
                        char *ret_kid, size_t kid_size, struct err_detail *e);
/* Inserts a new key: its public half (text, cast to public_type) and priv
 * (len bytes, borrowed; the caller wipes it) sealed. 0 or negative errno. */
int sealed_keys_store(struct api *a, PGconn *conn, const struct sealed_keys *sk, const char *tenant_id,
                      const char *kid, const char *public_value, const uint8_t *priv, size_t len,
                      struct err_detail *e);
/* Opens key kid's private half into out (size bytes; *ret_len set); the
 * caller wipes it after use. 0 or negative errno with e. */
int sealed_keys_open(struct api *a, PGconn *conn, const struct sealed_keys *sk, const char *tenant_id,
                     const char *kid, uint8_t *out, size_t size, size_t *ret_len, struct err_detail *e);
