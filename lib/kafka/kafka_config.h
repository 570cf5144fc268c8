/* The Kafka settings every daemon shares, in one place (STYLE.md: one common
 * table, embedded): the broker, the consumer timings, the transport security
 * passed through to librdkafka, and the bus signing keys (bus_auth.h).
 * A service embeds `struct kafka_settings kafka;` in its settings and puts
 * KAFKA_CONFIG_ENTRIES(struct settings, kafka) in its table. */
#pragma once
#include <stddef.h>

#include "core/config.h"
#include "core/err.h"
#include "kafka/bus_auth.h"
#include "kafka/kafka.h"

struct kafka_consume_loop_options;

struct kafka_settings {
        char *bootstrap;
        long long session_timeout_ms;
        long long fetch_wait_ms;
        long long control_fetch_wait_ms;
        long long linger_ms;
        long long consume_batch_max;
        long long consume_linger_ms;
        long long ready_stall_s;
        char *signing_key;
        char *trusted_keys;
        char *security_protocol;
        char *ssl_ca_location;
        char *ssl_certificate_location;
        char *ssl_key_location;
        char *sasl_mechanism;
        char *sasl_username;
        char *sasl_password;
        const char *props_[20]; /* private: the librdkafka list built by kafka_settings_options */
};

#define KAFKA_CONFIG_OFF_(st, m, f) (offsetof(st, m) + offsetof(struct kafka_settings, f))
/* The entries, to splice into a service's config table. */
#define KAFKA_CONFIG_ENTRIES(st, m)                                                                                    \
        {"PADDOCK_KAFKA_BOOTSTRAP", CONFIG_STRING, "", 0, 0, false, KAFKA_CONFIG_OFF_(st, m, bootstrap),            \
         "Kafka bootstrap servers, host:port[,host:port...]"},                                                        \
        {"PADDOCK_KAFKA_SESSION_TIMEOUT_MS", CONFIG_INT, "6000", 1000, 3600000, false,                               \
         KAFKA_CONFIG_OFF_(st, m, session_timeout_ms),                                                                \
         "consumer group session timeout; how long a dead member holds its partitions"},                             \
        {"PADDOCK_KAFKA_FETCH_WAIT_MS", CONFIG_INT, "500", 1, 10000, false, KAFKA_CONFIG_OFF_(st, m, fetch_wait_ms), \
         "longest a consumer fetch waits for data; the local stack lowers it for the mock cluster"},                 \
        {"PADDOCK_KAFKA_CONTROL_FETCH_WAIT_MS", CONFIG_INT, "500", 1, 10000, false,                                  \
         KAFKA_CONFIG_OFF_(st, m, control_fetch_wait_ms),                                                             \
         "PADDOCK_KAFKA_FETCH_WAIT_MS of the low-volume consumers on the launch path (the scheduler's runs, the "     \
         "runner-agent's assignments, the api's run statuses and its websocket fan-out): the local stack lowers it " \
         "further, since the mock cluster answers a waiting fetch only at the wait's end (kafka_options_control)"},  \
        {"PADDOCK_KAFKA_LINGER_MS", CONFIG_INT, "0", 0, 1000, false, KAFKA_CONFIG_OFF_(st, m, linger_ms),           \
         "how long a producer holds records to batch them (librdkafka linger.ms); 0: none, since every record "     \
         "on the launch and control path waits for its acknowledgement and the runner-agent batches its run "       \
         "events itself (PADDOCK_RUN_EVENT_LINGER_MS)"},                                                              \
        {"PADDOCK_CONSUME_BATCH_MAX", CONFIG_INT, "1000", 1, 100000, false,                                          \
         KAFKA_CONFIG_OFF_(st, m, consume_batch_max),                                                                 \
         "most messages a batched consumer (evidence, billing) takes per poll round and applies in one "             \
         "transaction"},                                                                                              \
        {"PADDOCK_CONSUME_LINGER_MS", CONFIG_INT, "5", 0, 10000, false, KAFKA_CONFIG_OFF_(st, m, consume_linger_ms), \
         "how long a batched consumer waits for more messages after the first of a round"},                         \
        {"PADDOCK_READY_STALL_S", CONFIG_INT, "30", 0, 3600, false, KAFKA_CONFIG_OFF_(st, m, ready_stall_s),        \
         "/readyz answers 503 when a consumer has made no progress for this long while its partitions have lag "    \
         "(kafka/consume_loop.h; 0: never)"},                                                                         \
        {"PADDOCK_SIGNING_KEY", CONFIG_STRING, "", 0, 0, false, KAFKA_CONFIG_OFF_(st, m, signing_key),              \
         "this process's Ed25519 private key (PEM, mode 0600) signing every record it produces "                    \
         "(docs/CONTRACTS.md, signed messages)"},                                                                     \
        {"PADDOCK_TRUSTED_KEYS", CONFIG_STRING, "", 0, 0, false, KAFKA_CONFIG_OFF_(st, m, trusted_keys),            \
         "file of \"identity base64-public-key\" lines: the producers whose records are accepted"},                  \
        {"PADDOCK_KAFKA_SECURITY_PROTOCOL", CONFIG_STRING, "plaintext", 0, 0, false,                                  \
         KAFKA_CONFIG_OFF_(st, m, security_protocol), "librdkafka security.protocol: plaintext, ssl, "              \
         "sasl_plaintext or sasl_ssl"},                                                                               \
        {"PADDOCK_KAFKA_SSL_CA_LOCATION", CONFIG_STRING, "", 0, 0, false, KAFKA_CONFIG_OFF_(st, m, ssl_ca_location), \
         "librdkafka ssl.ca.location: CA bundle the broker certificate is checked against (empty: system CAs)"},      \
        {"PADDOCK_KAFKA_SSL_CERTIFICATE_LOCATION", CONFIG_STRING, "", 0, 0, false,                                    \
         KAFKA_CONFIG_OFF_(st, m, ssl_certificate_location), "librdkafka ssl.certificate.location (mutual TLS)"},    \
        {"PADDOCK_KAFKA_SSL_KEY_LOCATION", CONFIG_STRING, "", 0, 0, false,                                            \
         KAFKA_CONFIG_OFF_(st, m, ssl_key_location), "librdkafka ssl.key.location (mutual TLS)"},                    \
        {"PADDOCK_KAFKA_SASL_MECHANISM", CONFIG_STRING, "", 0, 0, false, KAFKA_CONFIG_OFF_(st, m, sasl_mechanism),   \
         "librdkafka sasl.mechanism, e.g. SCRAM-SHA-512"},                                                            \
        {"PADDOCK_KAFKA_SASL_USERNAME", CONFIG_STRING, "", 0, 0, false, KAFKA_CONFIG_OFF_(st, m, sasl_username),     \
         "librdkafka sasl.username"},                                                                                 \
        {"PADDOCK_KAFKA_SASL_PASSWORD", CONFIG_STRING, "", 0, 0, true, KAFKA_CONFIG_OFF_(st, m, sasl_password),      \
         "librdkafka sasl.password"}

/* Gives o, filled by kafka_settings_options from ks, the fetch wait of a
 * low-volume consumer on the launch path (PADDOCK_KAFKA_CONTROL_FETCH_WAIT_MS):
 * a real broker answers a waiting fetch when data arrives, librdkafka's mock
 * cluster only when the wait ends, so every hop of a launch pays up to the
 * wait there; a short one only where records are few keeps the idle fetches
 * of the firehose consumers rare (docs/CONTRACTS.md "Consumer fetch waits"). */
void kafka_options_control(struct kafka_options *o, const struct kafka_settings *ks);

/* Fills the batch settings of a kafka_consume_routes loop from ks. */
void kafka_settings_loop_options(const struct kafka_settings *ks, struct kafka_consume_loop_options *lo);

/* Validates the transport settings (for a service_spec check). */
int kafka_settings_check(const struct kafka_settings *ks, struct err_detail *reterr);
/* Loads the bus keys: identity is who this process signs as ("api",
 * "node:<id>", NULL for a consumer that never produces). Refuses to run
 * without PADDOCK_TRUSTED_KEYS (and, with an identity, PADDOCK_SIGNING_KEY):
 * an unauthenticated bus is what issue 9 §2 closes. */
int kafka_settings_auth(const struct kafka_settings *ks, const char *identity, struct bus_auth **ret,
                        struct err_detail *reterr);
/* Fills *o for client_id from ks (bootstrap, timings, transport security) and
 * auth (borrowed). ks must outlive o; o->extra is left NULL. */
void kafka_settings_options(struct kafka_settings *ks, const char *client_id, struct bus_auth *auth,
                            struct kafka_options *o);
