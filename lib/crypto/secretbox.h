/* Secrets at rest (ARCHITECTURE.md §4): envelope encryption with AES-256-GCM.
 *
 * Each tenant has a random 32-byte data key; the database stores it only wrapped
 * (sealed) by the master key that the service reads from its environment. Secret
 * values are sealed with the tenant's data key. Both blobs have the layout
 *     version (1 byte) || nonce (12, random) || ciphertext || tag (16)
 * where the version byte says what the blob is (SECRETBOX_V1_DATA for a sealed
 * value, SECRETBOX_V1_KEY for a wrapped data key) and is authenticated together
 * with a fixed domain label and the caller's aad, so a wrapped key can never be
 * opened as a secret value or the reverse. Callers should pass the tenant id
 * (and for values also the secret's id or name) as aad so that rows cannot be
 * swapped between tenants.
 *
 * Nonces are random (RAND_bytes): with 96-bit nonces a single key stays far from
 * the collision bound below ~2^32 seals, far above a tenant's secret count.
 *
 * Thread-safety: every function is thread-safe; nothing is cached. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define SECRETBOX_KEY_LEN 32
#define SECRETBOX_V1_DATA 0x01
#define SECRETBOX_V1_KEY 0x81
#define SECRETBOX_OVERHEAD (1 + 12 + 16)
#define SECRETBOX_SEALED_LEN(n) ((size_t)(n) + SECRETBOX_OVERHEAD)
#define SECRETBOX_WRAPPED_KEY_LEN SECRETBOX_SEALED_LEN(SECRETBOX_KEY_LEN)   /* 61 */
#define SECRETBOX_MAX_PLAINTEXT (1u << 20)

/* Parses the master key from configuration text: 64 hex digits (either case) or
 * base64 of exactly 32 bytes (standard or URL-safe alphabet, padding optional).
 * Surrounding whitespace (a trailing newline from a mounted secret) is ignored.
 * The error never quotes the text. s is borrowed; ret is written only on success.
 * Returns 0 or -EINVAL (reterr optional, code "master_key": wrong length, bad
 * digit, bad padding, or an all-zero key). */
int secretbox_parse_master_key(const char *s, uint8_t ret[SECRETBOX_KEY_LEN], struct err_detail *reterr);

/* Makes a new random data key into ret. Returns 0 or -EIO. */
int secretbox_new_data_key(uint8_t ret[SECRETBOX_KEY_LEN]);

/* Wraps data_key with master into ret_blob (SECRETBOX_WRAPPED_KEY_LEN bytes).
 * aad (may be NULL if aadlen is 0) should be the tenant id. All borrowed.
 * Returns SECRETBOX_WRAPPED_KEY_LEN, -ENOMEM or -EIO. */
int secretbox_wrap_key(const uint8_t master[SECRETBOX_KEY_LEN], const uint8_t data_key[SECRETBOX_KEY_LEN],
                       const void *aad, size_t aadlen, uint8_t *ret_blob);

/* Unwraps a blob from secretbox_wrap_key() into ret_data_key. Returns 0,
 * -EBADMSG (wrong master key, wrong aad, tampered, wrong length or version),
 * -ENOMEM or -EIO. ret_data_key is written only on success. */
int secretbox_unwrap_key(const uint8_t master[SECRETBOX_KEY_LEN], const uint8_t *blob, size_t bloblen,
                         const void *aad, size_t aadlen, uint8_t ret_data_key[SECRETBOX_KEY_LEN]);

/* Seals len bytes of plaintext with data_key into ret_blob, which must hold
 * SECRETBOX_SEALED_LEN(len) bytes. All borrowed; plaintext may be NULL if len is 0.
 * Returns the number of bytes written, -EMSGSIZE (len > SECRETBOX_MAX_PLAINTEXT),
 * -ENOMEM or -EIO. */
int secretbox_seal(const uint8_t data_key[SECRETBOX_KEY_LEN], const void *plaintext, size_t len,
                   const void *aad, size_t aadlen, uint8_t *ret_blob);

/* Opens a sealed blob into ret_plaintext, which must hold bloblen -
 * SECRETBOX_OVERHEAD bytes (the caller owns it and should wipe it after use).
 * Returns the plaintext length, -EBADMSG (wrong key, aad mismatch, tampered,
 * truncated, unknown version), -EMSGSIZE, -ENOMEM or -EIO. */
int secretbox_open(const uint8_t data_key[SECRETBOX_KEY_LEN], const uint8_t *blob, size_t bloblen,
                   const void *aad, size_t aadlen, uint8_t *ret_plaintext);
