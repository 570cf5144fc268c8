/* Who said it (issue 9 §2, docs/CONTRACTS.md "Signed messages on the bus").
 *
 * Every record a Paddock process produces carries two headers:
 *   paddock-signer  the producer's identity: "api", "scheduler", "evidence",
 *                   "billing" (every replica of a service shares its key) or
 *                   "node:<node_id>" for an enrolled runner node
 *   paddock-sig     the raw 64-byte Ed25519 signature over
 *                   "paddock-bus-v1\0" || topic || "\0" || value
 * The topic is in the signed bytes so that a message cannot be replayed onto
 * another topic; the key is not signed (it only picks the partition).
 *
 * A consumer refuses a record that is unsigned, whose signature does not
 * verify, whose signer it does not know, or whose signer may not speak on
 * that topic (bus_auth_allowed: the one table of who may say what). The
 * refusal happens once, in kafka_consumer_poll(): logged at warn, counted in
 * paddock_bus_refused_total{reason}, committed, never handed to a handler.
 * What a signer may say about a particular run (only the node the scheduler
 * assigned it) is checked by the handlers, which know the payload.
 *
 * Keys: the process's own private key (PADDOCK_SIGNING_KEY) and a trusted-keys
 * file (PADDOCK_TRUSTED_KEYS), one "identity base64-public-key" per line, '#'
 * comments. The file is read again when an unknown signer shows up and the
 * file changed since (enrolling a node = adding its line).
 *
 * Thread-safety: all functions are thread-safe once bus_auth_new() returned. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/macro.h"
#include "crypto/sign.h"

#define BUS_AUTH_HEADER_SIGNER "paddock-signer"
#define BUS_AUTH_HEADER_SIG "paddock-sig"
#define BUS_AUTH_DOMAIN "paddock-bus-v1"   /* followed by a NUL in the signed bytes */
#define BUS_AUTH_SIGNER_MAX 128            /* "node:" + a node id, NUL included */

enum bus_refusal {
        BUS_REFUSED_UNSIGNED,        /* no or malformed headers */
        BUS_REFUSED_UNKNOWN_SIGNER,  /* no key for the claimed identity */
        BUS_REFUSED_BAD_SIGNATURE,   /* the signature does not verify */
        BUS_REFUSED_NOT_ALLOWED,     /* a known signer that may not speak on this topic */
        BUS_REFUSED_WRONG_SUBJECT,   /* handlers: a signer speaking about what is not its own
                                      * (another node's run or heartbeat, a second run key) */
        BUS_REFUSED_COUNT_
};

struct bus_auth;

/* identity: who this process signs as (NULL with key_path NULL: a consumer
 * that never produces); key_path: its private key (sign_key_load rules);
 * trusted_keys_path: the trusted-keys file (required). Errors name the file
 * and line. The result is owned by the caller and must outlive every producer
 * and consumer given it. */
int bus_auth_new(const char *identity, const char *key_path, const char *trusted_keys_path,
                 struct bus_auth **ret, struct err_detail *reterr);
struct bus_auth *bus_auth_free(struct bus_auth *a);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct bus_auth *, bus_auth_free);

/* The identity this process signs as, or NULL. */
const char *bus_auth_identity(const struct bus_auth *a);
/* Signs a record for topic. Returns 0, -ENOKEY without a signing key, or -ENOMEM/-EIO. */
int bus_auth_sign(const struct bus_auth *a, const char *topic, const void *value, size_t len,
                  uint8_t sig[SIGN_SIGNATURE_LEN]);
/* Checks a consumed record: signer is the header value (signer_len bytes, not
 * NUL-terminated), sig the signature header. Returns 0 if the record may be
 * handed on, else the negative reason (-(int)BUS_REFUSED_x - 1). */
int bus_auth_verify(struct bus_auth *a, const char *topic, const char *signer, size_t signer_len,
                    const void *sig, size_t sig_len, const void *value, size_t len);
/* The trusted public key of identity as base64 (44 chars + NUL), re-reading
 * a changed file as for an unknown signer. Returns 0, or -ENOENT. */
int bus_auth_public_key(struct bus_auth *a, const char *identity, char out[SIGN_PUBLIC_KEY_B64_LEN + 1]);
/* The table of who may produce on which topic (docs/CONTRACTS.md). */
bool bus_auth_allowed(const char *topic, const char *signer);
/* The reason's metric label ("unsigned", "unknown_signer", ...). */
const char *bus_refusal_name(enum bus_refusal r);

/* True if signer is "node:<node_id>" for exactly this node_id. */
bool bus_auth_is_node(const char *signer, const char *node_id);
/* Counts a refusal decided by a handler (BUS_REFUSED_WRONG_SUBJECT) in the
 * same metric, and logs it at warn with the topic and claimed signer. */
void bus_auth_refuse(const char *topic, const char *signer, enum bus_refusal why, const char *detail);
/* Registers paddock_bus_refused_total{reason=...}: call once from main(),
 * before forking workers (the counters are shared with them). */
void bus_auth_register_metrics(void);
