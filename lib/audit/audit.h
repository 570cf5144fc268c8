/* Audit records of control-plane writes (ARCHITECTURE.md §2, paddock.audit):
 * who did what to which object, from where, with what outcome and a hash of
 * the change. Producers (api, evidence) call audit_emit() before they
 * acknowledge the write; evidence appends the records to a per-tenant hash
 * chain (audit_chain.h) and verifies it (audit_verify.h).
 *
 * Secrets: callers must never put a secret (password, token, secret value,
 * key) into change or detail. As defense in depth audit_scrub() drops every
 * object member whose key looks like one (see audit_key_is_sensitive()) from
 * both before they are hashed or serialized, at every nesting level; evidence
 * scrubs the detail it stores again. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "audit/audit_hash.h"
#include "core/err.h"
#include "core/ids.h"
#include "kafka/kafka.h"

#define AUDIT_ACTOR_MAX 256
#define AUDIT_ACTION_MAX 64
#define AUDIT_OBJECT_TYPE_MAX 64
#define AUDIT_OBJECT_ID_MAX 256
#define AUDIT_SOURCE_IP_MAX 64
#define AUDIT_DETAIL_MAX 65536 /* bytes of detail_json */

enum audit_outcome { AUDIT_SUCCESS, AUDIT_FAILURE };

struct audit_entry {
        const char *tenant_id;    /* UUID; the Kafka key and the chain it joins */
        const char *actor;        /* "user:<id>" or "service:<name>" */
        const char *action;       /* "<object>.<verb>": "auth.login", "auth.login_failed",
                                   * "sandbox.create", "sandbox.publish", "run.launch",
                                   * "run.cancel", "secret.put", "approval.decide", ... */
        const char *object_type;  /* e.g. "sandbox", "run", "user"; may be NULL */
        const char *object_id;    /* may be NULL */
        const char *source_ip;    /* the client's address as seen by the api; may be NULL */
        enum audit_outcome outcome;
        json_t *change;           /* borrowed; what was written (hashed, not sent); may be NULL */
        json_t *detail;           /* borrowed; a small JSON object sent as detail_json; may be NULL */
        const char *producer;     /* "<service>/<instance>", e.g. "api/host-1" */
        const char *message_id;   /* optional UUID kept across the caller's retries
                                   * of the same logical record; NULL: a fresh one */
        int timeout_ms;           /* broker acknowledgement wait; 0: 5000 */
};

/* True if an object member named key must never be audited: its lower-cased
 * name equals, or ends with, one of "secret", "password", "passwd",
 * "passphrase", "token", "value", "api_key", "apikey", "private_key",
 * "credential", "credentials", "authorization", "cookie". So "client_secret",
 * "access_token" and "value" are dropped, "secret_name" and "token_id" kept. */
bool audit_key_is_sensitive(const char *key);
/* Removes every sensitive member (above) from v in place, recursing into
 * objects and arrays. v may be NULL. Returns the number of members dropped. */
size_t audit_scrub(json_t *v);

/* Writes the hex SHA-256 of the canonical JSON of change into out: a scrubbed
 * deep copy of change dumped with JSON_SORT_KEYS | JSON_COMPACT |
 * JSON_ENCODE_ANY (jansson's escaping; non-ASCII as UTF-8). A NULL change gives
 * the empty string (no change). change is borrowed and left unchanged.
 * Returns 0, -ENOMEM, or -EINVAL if it cannot be serialized. Thread-safe. */
int audit_change_hash(json_t *change, char out[static AUDIT_HASH_HEX_LEN + 1]);

/* Validates e and packs it into a paddock.v1.AuditRecord. On success *ret is
 * a malloc'd buffer the caller frees, *ret_len its length, and msgid_out (if
 * not NULL, UUID_STR_LEN bytes) receives the envelope's message id. Returns 0,
 * -EINVAL with *reterr naming the field, -ENOMEM or -EIO (no random id).
 * Thread-safe. */
int audit_record_encode(const struct audit_entry *e, void **ret, size_t *ret_len,
                        char *msgid_out, struct err_detail *reterr);

/* Encodes e (above) and produces it on paddock.audit keyed by its tenant id,
 * waiting until the broker acknowledged it, so that a write is audited before
 * it is acknowledged to the client: a caller that gets an error must fail the
 * request (or roll its write back). p is borrowed. Returns 0, -EINVAL (bad
 * entry), or kafka_produce_sync()'s errors. Thread-safe. */
int audit_emit(struct kafka_producer *p, const struct audit_entry *e, struct err_detail *reterr);

/* Lower-case hex SHA-256 of len bytes into out (65 bytes). Returns 0 or -EIO. */
int audit_sha256_hex(const void *data, size_t len, char out[static AUDIT_HASH_HEX_LEN + 1]);
