/* The audit chain's record hash alone (canonical bytes and SHA-256, defined
 * in audit_chain.h), without PostgreSQL or Kafka: the CLI verifies an
 * evidence bundle's audit.jsonl offline with it (docs/CONTRACTS.md "Audit
 * chain"), and links no libpq or librdkafka. */
#pragma once
#include <stdint.h>

#define AUDIT_HASH_HEX_LEN 64
#define AUDIT_CHAIN_GENESIS "0000000000000000000000000000000000000000000000000000000000000000"

/* One record's hashed fields (all borrowed, NUL-terminated, never NULL). */
struct audit_chain_fields {
        const char *tenant_id;
        uint64_t seq;
        const char *message_id;
        const char *ts;
        const char *actor;
        const char *action;
        const char *object_type;
        const char *object_id;
        const char *source_ip;
        const char *outcome;
        const char *change_sha256;
        const char *detail;
};

/* Computes the hash of f chained to prev_hash (see above) into out.
 * Returns 0, -ENOMEM or -EIO. Thread-safe. */
int audit_chain_hash(const char *prev_hash, const struct audit_chain_fields *f,
                     char out[static AUDIT_HASH_HEX_LEN + 1]);
