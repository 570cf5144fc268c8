/* Ed25519 signatures for the bus (issue 9 §2, docs/CONTRACTS.md "Signed
 * messages"): every service and every enrolled runner node holds a private
 * key; consumers verify each message against the producer's public key.
 *
 * Keys: the private key is a PKCS#8 PEM file (`openssl genpkey -algorithm
 * ed25519`) that must not be readable by group or others (0600, like an ssh
 * key); a public key travels as the standard base64 of its raw 32 bytes.
 *
 * Thread-safety: every function is thread-safe; a key may be used by several
 * threads at once but must not be freed meanwhile. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/macro.h"

#define SIGN_PUBLIC_KEY_LEN 32
#define SIGN_SIGNATURE_LEN 64
#define SIGN_PUBLIC_KEY_B64_LEN 44   /* base64 of 32 bytes, padded, without NUL */

struct sign_key;

/* Loads a private key from the PEM file at path. Refuses a file readable or
 * writable by group or others (-EPERM) and any key that is not Ed25519
 * (-EINVAL); a missing file gives -ENOENT. *ret is owned by the caller.
 * Errors name the file in *reterr. */
int sign_key_load(const char *path, struct sign_key **ret, struct err_detail *reterr);
/* Creates a fresh key and writes it to path (PEM, mode 0600, O_EXCL: an
 * existing file is never overwritten, -EEXIST). *ret may be NULL. */
int sign_key_generate(const char *path, struct sign_key **ret, struct err_detail *reterr);
/* Wipes and frees k; accepts NULL; returns NULL. */
struct sign_key *sign_key_free(struct sign_key *k);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct sign_key *, sign_key_free);

/* Writes the key's public half as base64 (44 chars + NUL) into out. */
int sign_key_public_b64(const struct sign_key *k, char out[SIGN_PUBLIC_KEY_B64_LEN + 1]);
/* Signs the concatenation of the n parts (Ed25519 signs one message, so the
 * parts are joined into one buffer first). Returns 0 or -ENOMEM / -EIO. */
int sign_parts(const struct sign_key *k, const void *const *parts, const size_t *lens, size_t n,
               uint8_t sig[SIGN_SIGNATURE_LEN]);

/* Decodes a public key given as base64 (standard or URL-safe, padding
 * optional, surrounding whitespace ignored) of exactly 32 bytes. Returns 0 or
 * -EINVAL. */
int sign_public_key_parse(const char *b64, uint8_t out[SIGN_PUBLIC_KEY_LEN]);
/* True if sig is a valid signature by pub over the concatenated parts. */
bool sign_verify_parts(const uint8_t pub[SIGN_PUBLIC_KEY_LEN], const void *const *parts, const size_t *lens,
                       size_t n, const uint8_t *sig, size_t sig_len);
