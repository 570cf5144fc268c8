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
        struct service_settings svc;
        long long metrics_interval_s;
        long long metrics_teams;
        long long metrics_rules;
};

static const struct config_entry settings_table[] = {
        KAFKA_CONFIG_ENTRIES(struct settings, kafka),
        SERVICE_CONFIG_ENTRIES(struct settings, svc),
        SERVICE_CONFIG_BUSINESS_CLOCK_ENTRY(struct settings, svc),
        {"PADDOCK_BILLING_METRICS_INTERVAL_S", CONFIG_INT, "15", 1, 3600, false,
         offsetof(struct settings, metrics_interval_s),
         "how often the per-team usage and governance figures on /metrics are computed (seconds)"},
        {"PADDOCK_BILLING_METRICS_TEAMS", CONFIG_INT, "20", 1, 1000, false, offsetof(struct settings, metrics_teams),
         "teams with labels of their own on /metrics (the highest cost first); the rest sum to team=\"other\""},
        {"PADDOCK_BILLING_METRICS_RULES", CONFIG_INT, "20", 1, 1000, false, offsetof(struct settings, metrics_rules),
         "policy rules per tenant with labels of their own on /metrics (the most decisions first); the rest sum to "
         "rule=\"other\""},
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
        struct service svc;
        struct kafka_consumer *consumer;
};

/* Applies one message (a kafka_handle_fn). */
static int handle_message(void *userdata, const struct kafka_message *m, struct err_detail *err) {
        struct app *app = userdata;
        PGconn *conn = pg_pool_acquire(app->svc.pg, 5000, err);
        if (!conn)
                return err->errnum < 0 ? err->errnum : -ECONNRESET;
        int r;
        if (strcmp(m->topic, TOPIC_USAGE) == 0)
                r = usage_store(conn, m, err);
        else
                r = err_set(err, -EINVAL, "topic", "unexpected topic");
        pg_pool_release(app->svc.pg, conn);
        return r;
}

static const struct service_spec spec = {
        .name = SERVICE,
        .summary = "Paddock billing: counts each run's usage once, per run and per team and day.",
        .table = settings_table,
        .svc_offset = offsetof(struct settings, svc),
        .kafka_offset = offsetof(struct settings, kafka),
        .schema = "billing",
        .migrations = billing_migrations,
        .pg_pool_size = 3, /* the consumer, the metrics thread, the readiness check */
        /* billing produces nothing: it verifies, never signs */
        .ready = SERVICE_READY_PG,
};

static int run(struct settings *cfg) {
        struct app app = {0};
        struct err_detail err = {0};
        int r, ret = service_start(&spec, cfg, &app.svc);
        if (ret != 0)
                goto out;
        ret = 1;
        /* one UsageRecord per run: low volume, each applied in its own
         * transaction (a batch route would save little); the route table
         * keeps the round's offsets committed once (lib/kafka/consume_loop.h) */
        static const struct kafka_route routes[] = {{TOPIC_USAGE, .handle = handle_message}, {NULL}};
        app.consumer = kafka_consumer_new_routes(&app.svc.kafka, GROUP_ID, routes, "earliest", &err);
        if (!app.consumer) {
                log_error("could not create kafka consumer: %s", err.message);
                goto out;
        }
        if ((r = metrics_figures_start(app.svc.pg, cfg->metrics_interval_s, cfg->metrics_teams,
                                       cfg->metrics_rules)) < 0) {
                log_error("could not start the metrics thread: %s", strerror(-r));
                goto out;
        }
        log_info("billing started");

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
        metrics_figures_stop();
        kafka_consumer_free(app.consumer);
        service_stop(&app.svc);
        return ret;
}

int main(int argc, char **argv) {
        struct settings cfg = {0};
        int r = service_init(&spec, argc, argv, &cfg);
        if (r >= 0)
                return r;
        metrics_register(&m_consumed);
        metrics_register(&m_skipped);
        metrics_register(&m_retries);
        usage_store_register_metrics();
        metrics_figures_register();
        bus_auth_register_metrics();

        int ret = run(&cfg);
        config_free(settings_table, &cfg);
        return ret;
}
