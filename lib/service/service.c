#include "service/service.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/business_clock.h"
#include "core/log.h"
#include "core/shutdown.h"
#include "http/ops.h"
#include "kafka/consume_loop.h"

/* /readyz asks a broker for metadata; the warm-up looks up leaders once */
#define SERVICE_READY_KAFKA_TIMEOUT_MS 1000
#define SERVICE_WARM_TIMEOUT_MS 1000 /* unless the spec says otherwise */

int service_ready_pg(void *pool, struct ops_not_ready *why) {
        struct err_detail e = {0};
        int r = pg_pool_ping(pool, &e);
        return r < 0 ? ops_not_ready_set(why, r, "postgresql", "%s", e.message) : 0;
}

static void migrate_waiting(void *userdata, unsigned attempt, int delay_ms, const struct err_detail *err) {
        (void)userdata;
        (void)attempt;
        log_warn("could not reach postgresql, retrying in %d ms: %s", delay_ms, err->message);
}

int service_migrate(struct pg_pool *pool, const char *schema, const struct embedded_file *migrations,
                    int max_wait_ms) {
        struct err_detail err = {0};
        struct pg_migrate_wait_options o = {.max_wait_ms = max_wait_ms, .on_retry = migrate_waiting};
        int r = pg_migrate_wait(pool, schema, migrations, &o, &err);
        if (r >= 0)
                log_info("schema %s is up to date (%d migrations applied)", schema, r);
        else if (r != -ECANCELED)
                log_error("could not migrate schema %s: %s", schema, err.message);
        return r;
}

int service_migrate_main(const char *dsn, const char *schema, const struct embedded_file *migrations) {
        if (!dsn || !*dsn) {
                log_error("invalid configuration: PADDOCK_PG_DSN is required to migrate");
                return CONFIG_EXIT_BAD;
        }
        struct pg_pool *pool = pg_pool_new(dsn, 1);
        if (!pool)
                return 1;
        int r = service_migrate(pool, schema, migrations, 60 * 1000);
        pg_pool_free(pool);
        return r < 0 ? 1 : 0;
}

static struct service_settings *svc_of(const struct service_spec *spec, void *settings) {
        return (struct service_settings *)((char *)settings + spec->svc_offset);
}

static struct kafka_settings *kafka_of(const struct service_spec *spec, void *settings) {
        return (struct kafka_settings *)((char *)settings + spec->kafka_offset);
}

static bool is_command(const struct service_spec *spec, const char *arg) {
        for (const char *const *c = spec->commands; c && *c; c++)
                if (strcmp(*c, arg) == 0)
                        return true;
        return false;
}

/* `migrate` needs the schema owner's DSN and nothing else (issue 16: the
 * migrate Job gets only that secret), so it reads only these entries of the
 * daemon's table: Kafka, S3 and keys stay unset and unchecked. */
static int migrate_main(const struct service_spec *spec, void *settings) {
        struct config_entry table[3] = {0};
        size_t n = 0;
        for (const struct config_entry *e = spec->table; e->name && n < 2; e++)
                if (strcmp(e->name, "PADDOCK_PG_DSN") == 0 || strcmp(e->name, "PADDOCK_LOG_LEVEL") == 0)
                        table[n++] = *e;
        struct err_detail err = {0};
        enum log_level level = LOG_INFO;
        int r = config_load(table, settings, &err);
        const struct service_settings *svc = svc_of(spec, settings);
        if (r >= 0 && svc->log_level && log_level_from_string(svc->log_level, &level) < 0)
                r = err_set(&err, -EINVAL, "config", "PADDOCK_LOG_LEVEL: \"%s\" is not debug, info, warn or error",
                            svc->log_level);
        if (r < 0) {
                log_error("invalid configuration: %s", err.message);
                config_free(table, settings);
                return CONFIG_EXIT_BAD;
        }
        log_init(spec->name, level);
        r = service_migrate_main(svc->pg_dsn, spec->schema, spec->migrations);
        config_free(table, settings);
        return r;
}

int service_init(const struct service_spec *spec, int argc, char **argv, void *settings) {
        char program[64];
        snprintf(program, sizeof program, "paddock-%s", spec->name);
        for (int i = 1; i < argc; i++)
                if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
                        config_print_help(stdout, program, spec->summary, spec->table);
                        return 0;
                }
        bool migrate = argc == 2 && spec->schema && strcmp(argv[1], "migrate") == 0;
        if (argc > 1 && !migrate && !is_command(spec, argv[1])) {
                fprintf(stderr, "%s: unknown argument \"%s\" (see --help)\n", program, argv[1]);
                return CONFIG_EXIT_BAD;
        }

        struct err_detail err = {0};
        enum log_level level = LOG_INFO;
        log_init(spec->name, LOG_INFO);
        if (migrate)
                return migrate_main(spec, settings);
        int r = config_load(spec->table, settings, &err);
        const struct service_settings *svc = svc_of(spec, settings);
        char host[256];
        int port;
        if (r >= 0 && log_level_from_string(svc->log_level, &level) < 0)
                r = err_set(&err, -EINVAL, "config", "PADDOCK_LOG_LEVEL: \"%s\" is not debug, info, warn or error",
                            svc->log_level);
        /* NULL: the daemon has no ops port of its own (the api) */
        if (r >= 0 && svc->ops_addr && ops_parse_addr(svc->ops_addr, host, sizeof host, &port) < 0)
                r = err_set(&err, -EINVAL, "config", "PADDOCK_OPS_ADDR: \"%s\" is not host:port", svc->ops_addr);
        if (r >= 0)
                r = kafka_settings_check(kafka_of(spec, settings), &err);
        if (r >= 0 && svc->business_clock_file && business_clock_init(svc->business_clock_file) < 0)
                r = err_set(&err, -ENOMEM, "config", "PADDOCK_BUSINESS_CLOCK_FILE: out of memory");
        if (r >= 0 && spec->check)
                r = spec->check(settings, &err);
        if (r < 0) {
                log_error("invalid configuration: %s", err.message);
                config_free(spec->table, settings);
                return CONFIG_EXIT_BAD;
        }
        log_init(spec->name, level);
        config_log(spec->table, settings);

        r = shutdown_install();
        if (r < 0) {
                log_error("could not install signal handlers: %s", strerror(-r));
                config_free(spec->table, settings);
                return 1;
        }
        return -1;
}

/* /readyz of a daemon's ops server (an ops_ready_fn over the struct service). */
static int service_ready(void *userdata, struct ops_not_ready *why) {
        struct service *s = userdata;
        int r;
        if ((r = service_schema_ready(&s->schema, why)) < 0)
                return r;
        if ((s->spec->ready & SERVICE_READY_PG) && (r = service_ready_pg(s->pg, why)) < 0)
                return r;
        if (s->spec->ready & SERVICE_READY_KAFKA) {
                struct err_detail e = {0};
                r = kafka_producer_ping(s->producer, SERVICE_READY_KAFKA_TIMEOUT_MS, &e);
                if (r < 0)
                        return ops_not_ready_set(why, r, "kafka", "%s", e.message);
        }
        /* a consumer that stopped progressing with lag is not ready even
         * though its dependencies answer (issue 15: evidence appended nothing
         * for a minute after the broker was frozen and resumed while /readyz
         * said ready); checked after them, since a dependency down is the
         * better reason */
        char stalled[256];
        if ((r = kafka_consume_stalled(s->ready_stall_s, stalled, sizeof stalled)) < 0)
                return ops_not_ready_set(why, r, "kafka", "%s", stalled);
        return s->ready ? s->ready(s->ready_userdata, why) : 0;
}

int service_start(const struct service_spec *spec, void *settings, struct service *s) {
        struct service_settings *svc = svc_of(spec, settings);
        struct kafka_settings *ks = kafka_of(spec, settings);
        struct err_detail err = {0};
        s->spec = spec;
        s->ready_stall_s = (int)ks->ready_stall_s;

        if (spec->pg_pool_size > 0 && !s->pg) {
                s->pg = pg_pool_new(svc->pg_dsn, spec->pg_pool_size);
                if (!s->pg) {
                        log_error("out of memory");
                        return 1;
                }
        }

        const char *identity = s->identity ? s->identity : spec->bus_identity;
        int r;
        if (s->signing_key)
                r = *ks->trusted_keys ? bus_auth_new(identity, s->signing_key, ks->trusted_keys, &s->auth, &err)
                                      : err_set(&err, -EINVAL, "config", "PADDOCK_TRUSTED_KEYS is not set");
        else
                r = kafka_settings_auth(ks, identity, &s->auth, &err);
        if (r < 0) {
                if (s->key_hint)
                        log_error("could not load the bus keys (%s): %s", s->key_hint, err.message);
                else
                        log_error("could not load the bus keys: %s", err.message);
                return CONFIG_EXIT_BAD;
        }
        if (!s->client_id) {
                snprintf(s->client_id_, sizeof s->client_id_, "paddock-%s", spec->name);
                s->client_id = s->client_id_;
        }
        kafka_settings_options(ks, s->client_id, s->auth, &s->kafka);

        if (spec->producer) {
                struct kafka_options po = s->kafka;
                po.extra = spec->producer_extra;
                s->producer = kafka_producer_new(&po, &err);
                if (!s->producer) {
                        log_error("could not create kafka producer: %s", err.message);
                        return CONFIG_EXIT_BAD;
                }
                if (spec->warm && kafka_producer_warm(s->producer, spec->warm,
                                                   spec->warm_timeout_ms ? spec->warm_timeout_ms : SERVICE_WARM_TIMEOUT_MS) < 0)
                        log_warn("could not look up the topics' partition leaders yet; %s may be slower",
                                 spec->warm_note ? spec->warm_note : "the first record");
        }

        if (svc->ops_addr) {
                char host[256], port_s[16];
                int port;
                (void)ops_parse_addr(svc->ops_addr, host, sizeof host, &port); /* validated by service_init */
                s->ops = ops_server_start(host, port, service_ready, s, &err);
                if (!s->ops) {
                        log_error("could not start ops server on %s: %s", svc->ops_addr, err.message);
                        return 1;
                }
                snprintf(port_s, sizeof port_s, "%d", ops_server_port(s->ops));
                log_ctx(LOG_INFO, LOG_KV("addr", host, "port", port_s), "ops server listening");
        }

        if (spec->schema && s->pg &&
            service_wait_schema(s->pg, spec->schema, spec->migrations, spec->migrate_wait_ms, &s->schema) < 0)
                return 1;
        return 0;
}

void service_stop(struct service *s) {
        s->ops = ops_server_stop(s->ops);
        s->producer = kafka_producer_free(s->producer);
        s->auth = bus_auth_free(s->auth);
        s->pg = pg_pool_free(s->pg);
}
