/* Thin librdkafka wrapper: an idempotent producer (acks=all), a consumer
 * group member with manual commits, and a consumer of the partitions chosen
 * keys go to (kafka_consumer_follow_keys). librdkafka errors are translated here once
 * (e.g. timeouts -> -ETIMEDOUT, transport/all-brokers-down -> -ECONNRESET,
 * unknown topic -> -ENOENT, others -EIO) with the original name and text in
 * *reterr. Only standard client features are used, so real Kafka works unchanged. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/macro.h"
#include "kafka/bus_auth.h"

struct kafka_options {
        const char *bootstrap;      /* "host:port,host:port" */
        const char *client_id;      /* e.g. "paddock-api" */
        int session_timeout_ms;     /* consumers; 0 = librdkafka default (45 s). Local stack uses 6000 */
        int fetch_wait_max_ms;      /* consumers; 0 = librdkafka default (500 ms). A real broker answers a
                                     * fetch as soon as data arrives; librdkafka's mock cluster waits the
                                     * full time, so the local stack sets 10 to keep launch latency low */
        int linger_ms;              /* producers: librdkafka linger.ms (PADDOCK_KAFKA_LINGER_MS); 0 = none */
        const char *const *extra;   /* optional NULL-terminated {key, value, ...} librdkafka properties */
        const char *const *security;/* optional, like extra: the transport settings every daemon shares
                                     * (security.protocol, ssl.*, sasl.*: lib/kafka/kafka_config.h) */
        struct bus_auth *auth;      /* borrowed, outlives the client. Producers sign every record with its
                                     * key; consumers hand on only records it verifies (bus_auth.h).
                                     * NULL: unsigned and unchecked (unit tests only) */
};

struct kafka_producer;

/* Creates an idempotent producer (enable.idempotence=true, acks=all).
 * Returns NULL with *reterr on bad configuration. Caller owns the result. */
struct kafka_producer *kafka_producer_new(const struct kafka_options *opts, struct err_detail *reterr);
/* Frees p after flushing outstanding messages for up to 5 s; accepts NULL; returns NULL. */
struct kafka_producer *kafka_producer_free(struct kafka_producer *p);
/* Produces one message and waits until the broker acknowledged it or
 * timeout_ms passed. key and value are copied. Thread-safe.
 * Returns 0, -ETIMEDOUT, or another negative errno with *reterr. */
int kafka_produce_sync(struct kafka_producer *p, const char *topic, const char *key,
                       const void *value, size_t len, int timeout_ms, struct err_detail *reterr);
/* One message of kafka_produce_sync_many(); every pointer borrowed. */
struct kafka_outgoing {
        const char *topic;
        const char *key;
        const void *value;
        size_t len;
};
/* Queues msgs[0..n) in that order and waits until the broker acknowledged
 * each or timeout_ms passed: one linger and one round trip for the lot
 * instead of one per message; messages of one key keep their order (the
 * producer is idempotent). Returns how many leading messages were
 * acknowledged (n: all); when fewer, *reterr says why the first of the
 * others was not. Thread-safe. */
int kafka_produce_sync_many(struct kafka_producer *p, const struct kafka_outgoing *msgs, size_t n, int timeout_ms,
                            struct err_detail *reterr);
/* Queues one message without waiting (for high-rate streams such as output
 * events); a later failed delivery is counted and makes the next
 * kafka_producer_flush() return -EIO. Thread-safe. */
int kafka_produce(struct kafka_producer *p, const char *topic, const char *key,
                  const void *value, size_t len, struct err_detail *reterr);
/* Waits until every queued message is acknowledged. Returns 0, -ETIMEDOUT, or
 * -EIO if any kafka_produce() delivery since the last flush failed (a
 * tallied message's failure counts only in its tally). */
int kafka_producer_flush(struct kafka_producer *p, int timeout_ms);

/* One caller's own count of the messages it queued without waiting: how many
 * are still unacknowledged and how many failed. A run's records wait for and
 * answer for themselves only, whatever else shares the producer (another
 * run's backlog, heartbeats). */
struct kafka_tally;
/* NULL when out of memory. */
struct kafka_tally *kafka_tally_new(struct kafka_producer *p);
/* Frees t, or lets the last delivery report of its messages free it; accepts
 * NULL; returns NULL. */
struct kafka_tally *kafka_tally_free(struct kafka_tally *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct kafka_tally *, kafka_tally_free);
/* kafka_produce(), counted in t. */
int kafka_produce_tallied(struct kafka_tally *t, const char *topic, const char *key, const void *value, size_t len,
                          struct err_detail *reterr);
/* Waits until every message counted in t is acknowledged or failed, sending
 * what lingers at once. Returns 0, -ETIMEDOUT (timeout_ms 0: only a look),
 * or -EIO if any of them failed since the last call that did not time out. */
int kafka_tally_wait(struct kafka_tally *t, int timeout_ms);

struct kafka_consumer;

/* One consumed message; borrowed from the consumer until kafka_message_release(). */
struct kafka_message {
        const char *topic;
        int32_t partition;
        int64_t offset;
        const char *key;      /* not NUL-terminated */
        size_t key_len;
        const void *value;
        size_t len;
        /* the record's timestamp in ms (CreateTime: set by the producer), -1
         * if it has none; for latency figures per hop (bench/stream.py) */
        int64_t timestamp_ms;
        /* With kafka_options.auth: the verified producer identity ("api",
         * "node:<id>", ...) and its signature over bus_auth's signed bytes;
         * "" and unsigned without auth. */
        char signer[BUS_AUTH_SIGNER_MAX];
        uint8_t sig[SIGN_SIGNATURE_LEN];
        bool is_signed;
        bool refused;         /* only with kafka_consumer_defer_refusals(): the record failed
                               * bus_auth (already logged and counted); value is not to be
                               * applied, only committed with its batch */
        void *handle;         /* private: the rd_kafka_message_t */
};

/* Joins group_id and subscribes to the NULL-terminated topics, with
 * enable.auto.commit=false and auto.offset.reset = offset_reset
 * ("earliest" or "latest"); topics NULL: no group membership, the
 * partitions are chosen by kafka_consumer_follow_keys(). Caller owns the result. */
struct kafka_consumer *kafka_consumer_new(const struct kafka_options *opts, const char *group_id,
                                          const char *const *topics, const char *offset_reset,
                                          struct err_detail *reterr);
/* Leaves the group and frees c; accepts NULL; returns NULL. Uncommitted messages are redelivered. */
struct kafka_consumer *kafka_consumer_free(struct kafka_consumer *c);
/* Waits up to timeout_ms for a message. Returns 1 with *msg filled, 0 on timeout
 * (partition EOF and transient broker errors also give 0), or a negative errno on
 * a fatal error. With an auth, a record it refuses is logged, counted,
 * committed and gives 0 (bus_auth.h). Not thread-safe: one thread polls a consumer. */
int kafka_consumer_poll(struct kafka_consumer *c, int timeout_ms, struct kafka_message *msg);

/* Filter on the record key, called by kafka_consumer_poll() on its thread
 * before anything else is done with a record: false skips it (poll gives 0),
 * unverified and uncommitted. For a consumer that wants few keys of a busy
 * topic and commits nothing (the api's fan-out: an Ed25519 verify per record
 * of every run would bound it, issue 10 point 4). key is not NUL-terminated. */
typedef bool (*kafka_key_filter_fn)(void *userdata, const void *key, size_t key_len);
void kafka_consumer_set_key_filter(struct kafka_consumer *c, kafka_key_filter_fn fn, void *userdata);
/* Assigns c (made with topics NULL) exactly the partitions of topic that a
 * producer sends one of keys[0, n) to (librdkafka's default partitioner,
 * which every producer of this library uses: CRC-32 of the key modulo the
 * partition count, read from metadata and again after a minute), so with
 * n == 0 it fetches nothing. A partition newly assigned starts `back`
 * records before its end, one still wanted keeps its position, the others
 * are unassigned. Returns how many partitions are assigned, or a negative
 * errno with *reterr. Thread: the one that polls c. */
int kafka_consumer_follow_keys(struct kafka_consumer *c, const char *topic, const char *const *keys, size_t n,
                               int64_t back, struct err_detail *reterr);
/* Ends a kafka_consumer_poll() waiting on another thread now (it returns 0),
 * or the next one if none waits. Thread-safe. */
void kafka_consumer_wake(struct kafka_consumer *c);
/* With defer true, a record bus_auth refuses is returned (1) with
 * msg->refused set instead of being committed at once, so a caller holding
 * earlier messages of the same partition uncommitted (the batched consume
 * loop) commits it with them, never ahead of them. */
void kafka_consumer_defer_refusals(struct kafka_consumer *c, bool defer);
/* Synchronously commits, for each (topic, partition) among msgs[0..n), the
 * highest offset + 1. Call only after every message's effect is durable.
 * Returns 0 or negative errno with *reterr. */
int kafka_consumer_commit_many(struct kafka_consumer *c, const struct kafka_message *msgs, size_t n,
                               struct err_detail *reterr);
/* Returns the message's memory to librdkafka. */
void kafka_message_release(struct kafka_message *msg);
/* The consumer's lag over its current assignment, for /readyz
 * (kafka/consume_loop.h): for each assigned partition, the high watermark
 * asked of its leader now (not the cached one, which stops moving when
 * fetching stops) minus the consumer's position, or its committed offset
 * when it has not consumed from the partition since the assignment (0 when
 * it has neither). Stops at the first broker that does not answer within
 * timeout_ms. Fills the partition with the most lag (topic copied into
 * topic[topic_size], "" when none lags). Returns the total lag (>= 0), or a
 * negative errno (-ETIMEDOUT: a broker did not answer). Thread: the one that
 * polls c. */
int64_t kafka_consumer_lag(struct kafka_consumer *c, int timeout_ms, char *topic, size_t topic_size,
                           int32_t *ret_partition, int64_t *ret_lag);
/* How long c has been in its group without an assignment (since it
 * subscribed, or since a rebalance revoked its partitions), in ms; 0 while
 * it holds one (even an empty one: more members than partitions). *group
 * (may be NULL) gets c's group id. Thread-safe. */
int64_t kafka_consumer_unassigned_ms(struct kafka_consumer *c, const char **group);
/* Synchronously commits msg's offset + 1 for its partition. Call only after
 * the message's effect is durable. Returns 0 or negative errno with *reterr. */
int kafka_consumer_commit(struct kafka_consumer *c, const struct kafka_message *msg,
                          struct err_detail *reterr);
/* Fetches the metadata (partition leaders) of the NULL-terminated topics now,
 * so the first message produced to each does not wait for that lookup (a run's
 * first events were ~1 s late without it). Returns 0, or -ECONNRESET if a
 * lookup failed (harmless: producing looks the topic up again). */
int kafka_producer_warm(struct kafka_producer *p, const char *const *topics, int timeout_ms);
/* For /readyz: 0 if a broker answered a metadata request within timeout_ms,
 * else -ECONNRESET with *reterr (may be NULL) holding librdkafka's error.
 * Usable from any thread. */
int kafka_producer_ping(struct kafka_producer *p, int timeout_ms, struct err_detail *reterr);
