/* Start-up steps every service's main() shares. Unlike the rest of lib/, these
 * log at warn/error themselves: they stand for what each main() would log, and
 * keeping the lines in one place keeps the services' logs alike.
 *
 * A daemon's main() is: service_init() (command line, settings, logging,
 * signals), its own checks and metrics, service_start() (PostgreSQL pool, bus
 * keys, producer, ops server, migrations), its consumers, service_stop(). */
#pragma once
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/config.h"
#include "core/embedded.h"
#include "http/ops.h"
#include "kafka/bus_auth.h"
#include "kafka/kafka.h"
#include "kafka/kafka_config.h"
#include "pg/pg.h"
#include "service/schema_wait.h"
#include "service/service_config.h"

/* What /readyz of a daemon's ops server checks (service_spec.ready). */
enum {
        SERVICE_READY_PG = 1 << 0,    /* the pool reaches PostgreSQL */
        SERVICE_READY_KAFKA = 1 << 1, /* the producer reaches a broker */
};

/* What service_init() and service_start() need to know about a daemon. */
struct service_spec {
        const char *name;            /* "billing": log field `service`, program "paddock-billing" */
        const char *summary;         /* one line for --help */
        const struct config_entry *table;
        size_t svc_offset;           /* offsetof the struct service_settings in the settings */
        size_t kafka_offset;         /* offsetof the struct kafka_settings in the settings */
        /* optional: validates service-specific settings after loading
         * (the Kafka transport settings are checked before it) */
        int (*check)(const void *settings, struct err_detail *reterr);
        /* commands besides `migrate` that main() runs itself (NULL-terminated;
         * their arguments follow them), e.g. the api's "bootstrap" */
        const char *const *commands;
        /* `paddock-<name> migrate`: applies these migrations to this schema
         * over PADDOCK_PG_DSN, then exits; service_start() applies them too */
        const char *schema;
        const struct embedded_file *migrations;
        int migrate_wait_ms;         /* service_start(): how long to wait for PostgreSQL (0: until shutdown) */
        int pg_pool_size;            /* service_start(): PostgreSQL connections (0: none) */
        const char *bus_identity;    /* signs records as this ("evidence"); NULL: only verifies */
        bool producer;               /* service_start() creates a producer */
        const char *const *producer_extra; /* ...with these librdkafka properties ({key, value, ..., NULL}) */
        const char *const *warm;     /* ...and looks up these topics' leaders (NULL-terminated; NULL: none) */
        const char *warm_note;       /* what may be slower when that fails: "the first launch" */
        int warm_timeout_ms;         /* how long the look-up may take (0: 1000) */
        unsigned ready;              /* SERVICE_READY_*: what /readyz checks */
};

/* What service_start() made (service_stop() frees it), and the few inputs a
 * daemon knows only at run time. Zero-initialise, set the inputs, start. */
struct service {
        /* inputs (optional) */
        const char *identity;    /* overrides spec->bus_identity ("node:<id>") */
        const char *signing_key; /* overrides PADDOCK_SIGNING_KEY (the node's key in its state dir) */
        const char *key_hint;    /* added to a bus key error: "enroll this node first" */
        const char *client_id;   /* Kafka client id; NULL: "paddock-<name>" */
        ops_ready_fn ready;      /* checked after spec->ready (e.g. "still starting") */
        void *ready_userdata;
        /* outputs */
        const struct service_spec *spec;
        struct pg_pool *pg;               /* NULL unless spec->pg_pool_size (a pool set beforehand is kept) */
        struct bus_auth *auth;
        struct kafka_options kafka;       /* for the daemon's consumers (borrows the settings) */
        struct kafka_producer *producer;  /* NULL unless spec->producer */
        struct ops_server *ops;           /* NULL without PADDOCK_OPS_ADDR */
        struct service_schema_wait schema; /* /readyz 503 while waiting for the migrate job (schema_wait.h) */
        int ready_stall_s;                /* PADDOCK_READY_STALL_S, for /readyz */
        char client_id_[128];
};

/* The part of main() every daemon shares: --help (anywhere on the command
 * line) prints the configuration table; `migrate` applies the schema's
 * migrations and exits, reading only PADDOCK_PG_DSN and PADDOCK_LOG_LEVEL
 * (the migrate Job gets the DSN and nothing else; run with the schema
 * owner's DSN, before the daemon,
 * which connects as a role that may not change the schema:
 * docs/CONTRACTS.md); an unknown argument or an invalid setting (the shared
 * ones of service_config.h and kafka_config.h included) exits CONFIG_EXIT_BAD;
 * then logging is set up, the effective configuration logged and the shutdown
 * handlers installed. Returns -1 when main() should go on (settings filled;
 * free them with config_free; argv[1] may be one of spec->commands),
 * otherwise the exit status for main() (settings freed). */
int service_init(const struct service_spec *spec, int argc, char **argv, void *settings);

/* The start every daemon repeats, in this order, each step only if the spec
 * asks for it: the PostgreSQL pool; the bus keys (kafka_settings_auth) and the
 * Kafka options for the daemon's clients; the producer, warmed; the ops server
 * on PADDOCK_OPS_ADDR ("ops server listening", with /readyz checking
 * spec->ready, then s->ready); the migrations (waiting spec->migrate_wait_ms),
 * or, for a role that may not apply them, the wait for the migrate job
 * (service_wait_schema).
 * Each failure is logged once. settings (borrowed, must outlive s) are the
 * daemon's. Returns 0, or main()'s exit status: CONFIG_EXIT_BAD when the bus
 * keys or the producer's settings are unusable, 1 otherwise. Call
 * service_stop() either way. */
int service_start(const struct service_spec *spec, void *settings, struct service *s);
/* Stops the ops server and frees what service_start() made (the producer
 * flushed first); safe after a failed start and twice. */
void service_stop(struct service *s);

/* An ops_ready_fn for daemons whose only dependency to report is PostgreSQL:
 * userdata is the struct pg_pool. */
int service_ready_pg(void *pool, struct ops_not_ready *why);

/* Applies schema's embedded migrations, waiting for PostgreSQL to become
 * reachable (each wait logged at warn) up to max_wait_ms (0: until shutdown).
 * Logs the outcome once. Returns the number applied, -ECANCELED on shutdown,
 * or the first permanent error. */
int service_migrate(struct pg_pool *pool, const char *schema, const struct embedded_file *migrations,
                    int max_wait_ms);

/* The `migrate` command: service_migrate() over a one-connection pool to dsn,
 * waiting up to a minute for PostgreSQL. Returns main()'s exit status. */
int service_migrate_main(const char *dsn, const char *schema, const struct embedded_file *migrations);
