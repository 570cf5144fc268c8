/* Sealed secrets for one run (ARCHITECTURE.md §3 step 4).
 *
 * The runner-agent makes a key pair per run and publishes the public key; api
 * seals the run's secrets to it; only that runner-agent can open them, and only
 * while the run lives: seal_keypair_free() wipes the private key, so the
 * ciphertext left in Kafka can never be opened again.
 *
 * Construction (version 1, fixed; change the label to change it):
 *   e        = fresh X25519 key pair per message
 *   shared   = X25519(e.priv, recipient_pub)   (all-zero result refused)
 *   key      = HKDF-SHA256(ikm = shared, salt = e.pub || recipient_pub,
 *                          info = "paddock-seal-v1", 32 bytes)
 *   ct||tag  = AES-256-GCM(key, random 12-byte nonce, aad, plaintext)
 * The aad is required and must name the run (at least its id), so a message
 * sealed for run A cannot be opened as run B's even if both keys were held.
 * The three outputs map to SealedSecrets.{ephemeral_public_key,nonce,ciphertext}.
 *
 * Thread-safety: all functions are thread-safe; a key pair may be used by
 * several threads for seal_decrypt() at once, but must not be freed meanwhile. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "core/macro.h"

#define SEAL_PUBLIC_KEY_LEN 32
#define SEAL_NONCE_LEN 12
#define SEAL_TAG_LEN 16
#define SEAL_MAX_PLAINTEXT (1u << 20)   /* secrets are small; bounds what a peer can make us allocate */

struct seal_keypair;

/* Generates a key pair from OpenSSL's CSPRNG. On success *ret is a new key pair
 * owned by the caller (free with seal_keypair_free()). Returns 0, -ENOMEM, or
 * -EIO if the generator failed. */
int seal_keypair_new(struct seal_keypair **ret);

/* Wipes the private key (OPENSSL_cleanse) and frees kp. Accepts NULL; returns NULL. */
struct seal_keypair *seal_keypair_free(struct seal_keypair *kp);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct seal_keypair *, seal_keypair_free);

/* The public key, SEAL_PUBLIC_KEY_LEN bytes, owned by kp and valid until it is freed. */
const uint8_t *seal_keypair_public_key(const struct seal_keypair *kp);

/* Seals len bytes of plaintext to recipient_pub. Writes the ephemeral public key,
 * the nonce, and len + SEAL_TAG_LEN bytes of ciphertext (tag last) into caller
 * buffers. Everything is borrowed; plaintext may be NULL if len is 0.
 * Returns 0; -EINVAL if aad is empty or recipient_pub is a low-order point;
 * -EMSGSIZE if len > SEAL_MAX_PLAINTEXT; -ENOMEM; -EIO (OpenSSL failure). */
int seal_encrypt(const uint8_t recipient_pub[SEAL_PUBLIC_KEY_LEN], const void *plaintext, size_t len,
                 const void *aad, size_t aadlen,
                 uint8_t ret_ephemeral_pub[SEAL_PUBLIC_KEY_LEN], uint8_t ret_nonce[SEAL_NONCE_LEN],
                 uint8_t *ret_ciphertext);

/* Opens a sealed message with kp. ciphertext is ctlen bytes including the tag;
 * ret_plaintext receives ctlen - SEAL_TAG_LEN bytes (the caller owns it and
 * should wipe it after use). Everything is borrowed.
 * Returns 0; -EBADMSG if the message does not authenticate (other key pair,
 * other aad, tampered ephemeral key, nonce or ciphertext, or ctlen < SEAL_TAG_LEN);
 * -EINVAL if aad is empty; -EMSGSIZE; -ENOMEM; -EIO. */
int seal_decrypt(const struct seal_keypair *kp, const uint8_t ephemeral_pub[SEAL_PUBLIC_KEY_LEN],
                 const uint8_t nonce[SEAL_NONCE_LEN], const uint8_t *ciphertext, size_t ctlen,
                 const void *aad, size_t aadlen, uint8_t *ret_plaintext);
