/* paddock-billing: counts each run's usage once, per run and per team and
 * UTC day (ARCHITECTURE.md §3.8).
 *
 * One consumer thread reads paddock.usage; a message's offset is
 * committed only after its effect is committed in PostgreSQL. Messages that
 * can never be processed are logged, counted and skipped; transient failures
 * (PostgreSQL unreachable, serialization failures) are retried on the
 * same message with backoff, so nothing is lost or reordered. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/embedded.h"
#include "core/log.h"
#include "core/macro.h"
#include "core/metrics.h"
#include "core/shutdown.h"
#include "core/timeutil.h"
#include "http/ops.h"
#include "kafka/consume_loop.h"
#include "kafka/kafka.h"
#include "kafka/kafka_config.h"
#include "kafka/topics.h"
#include "pg/pg.h"
#include "service/service.h"
#include "billing.h"

extern const struct embedded_file billing_migrations[];

#define SERVICE "billing"
#define GROUP_ID "paddock-billing"

struct settings {
        struct kafka_settings kafka;
        char *pg_dsn;
        char *ops_addr;
        char *log_level;
};

static const struct config_entry settings_table[] = {
        KAFKA_CONFIG_ENTRIES(struct settings, kafka),
        {"PADDOCK_PG_DSN", CONFIG_STRING, NULL, 0, 0, true, offsetof(struct settings, pg_dsn),
         "PostgreSQL connection string (libpq); billing owns schema \"billing\""},
        {"PADDOCK_OPS_ADDR", CONFIG_STRING, "127.0.0.1:0", 0, 0, false, offsetof(struct settings, ops_addr),
         "host:port of /healthz, /readyz and /metrics (port 0 picks a free port, logged at start)"},
        {"PADDOCK_LOG_LEVEL", CONFIG_STRING, "info", 0, 0, false, offsetof(struct settings, log_level),
         "minimum log level: debug, info, warn or error"},
        {NULL},
};

static struct metric m_consumed = {.name = "paddock_billing_messages_processed_total",
                                   .help = "Messages whose effect was committed", .type = METRIC_COUNTER};
static struct metric m_skipped = {.name = "paddock_billing_messages_skipped_total",
                                  .help = "Messages that could never be processed (undecodable or invalid), skipped",
                                  .type = METRIC_COUNTER};
static struct metric m_retries = {.name = "paddock_billing_retries_total",
                                  .help = "Transient failures retried (PostgreSQL unreachable, conflicts)",
                                  .type = METRIC_COUNTER};

struct app {
        struct pg_pool *pool;
        struct kafka_consumer *consumer;
};

/* Applies one message (a kafka_handle_fn). */
static int handle_message(void *userdata, const struct kafka_message *m, struct err_detail *err) {
        struct app *app = userdata;
        PGconn *conn = pg_pool_acquire(app->pool, 5000, err);
        if (!conn)
                return err->errnum < 0 ? err->errnum : -ECONNRESET;
        int r;
        if (strcmp(m->topic, TOPIC_USAGE) == 0)
                r = usage_store(conn, m, err);
        else
                r = err_set(err, -EINVAL, "topic", "unexpected topic");
        pg_pool_release(app->pool, conn);
        return r;
}

static int migrate(struct pg_pool *pool) {
        return service_migrate(pool, "billing", billing_migrations, 0);
}

static int run(struct settings *cfg) {
        struct app app = {0};
        struct bus_auth *auth = NULL;
        char ops_host[256];
        int ops_port, ret = 1;
        struct ops_server *ops = NULL;
        struct err_detail err = {0};
        (void)ops_parse_addr(cfg->ops_addr, ops_host, sizeof ops_host, &ops_port); /* validated in main */

        app.pool = pg_pool_new(cfg->pg_dsn, 2);
        if (!app.pool) {
                log_error("out of memory");
                goto out;
        }
        ops = ops_server_start(ops_host, ops_port, service_ready_pg, app.pool, &err);
        if (!ops) {
                log_error("could not start ops server on %s: %s", cfg->ops_addr, err.message);
                goto out;
        }
        char port_s[16];
        snprintf(port_s, sizeof port_s, "%d", ops_server_port(ops));
        log_ctx(LOG_INFO, LOG_KV("addr", ops_host, "port", port_s), "ops server listening");

        if (migrate(app.pool) < 0)
                goto out;
        int r;
        /* billing produces nothing: it verifies, never signs */
        r = kafka_settings_auth(&cfg->kafka, NULL, &auth, &err);
        if (r < 0) {
                log_error("could not load the bus keys: %s", err.message);
                goto out;
        }
        struct kafka_options ko;
        kafka_settings_options(&cfg->kafka, "paddock-billing", auth, &ko);
        static const char *const topics[] = {TOPIC_USAGE, NULL};
        app.consumer = kafka_consumer_new(&ko, GROUP_ID, topics, "earliest", &err);
        if (!app.consumer) {
                log_error("could not create kafka consumer: %s", err.message);
                goto out;
        }
        log_info("billing started");

        /* one UsageRecord per run: low volume, each applied in its own
         * transaction (a batch route would save little); the route table
         * keeps the round's offsets committed once (lib/kafka/consume_loop.h) */
        static const struct kafka_route routes[] = {{TOPIC_USAGE, .handle = handle_message}, {NULL}};
        struct kafka_consume_loop_options lo = {.processed = &m_consumed, .skipped = &m_skipped, .retries = &m_retries};
        kafka_settings_loop_options(&cfg->kafka, &lo);
        r = kafka_consume_routes(app.consumer, routes, &app, &lo);
        if (r < 0) {
                log_error("kafka consumer failed: %s", strerror(-r));
                goto out;
        }
        log_info("shutting down");
        ret = 0;
out:
        ops_server_stop(ops);
        kafka_consumer_free(app.consumer);
        bus_auth_free(auth);
        pg_pool_free(app.pool);
        return ret;
}

static int check_settings(const void *settings, struct err_detail *reterr) {
        return kafka_settings_check(&((const struct settings *)settings)->kafka, reterr);
}

int main(int argc, char **argv) {
        static const struct service_spec spec = {
                .check = check_settings,
                .name = SERVICE,
                .summary = "Paddock billing: counts each run's usage once, per run and per team and day.",
                .table = settings_table,
                .log_level_offset = offsetof(struct settings, log_level),
                .ops_addr_offset = offsetof(struct settings, ops_addr),
                .schema = "billing",
                .migrations = billing_migrations,
                .pg_dsn_offset = offsetof(struct settings, pg_dsn),
        };
        struct settings cfg = {0};
        int r = service_init(&spec, argc, argv, &cfg);
        if (r >= 0)
                return r;
        metrics_register(&m_consumed);
        metrics_register(&m_skipped);
        metrics_register(&m_retries);
        usage_store_register_metrics();
        bus_auth_register_metrics();

        int ret = run(&cfg);
        config_free(settings_table, &cfg);
        return ret;
}
