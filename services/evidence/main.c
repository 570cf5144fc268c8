/* paddock-evidence: persists every run event into the session history,
 * assembles artifact chunks into tenant-scoped S3 objects, appends audit
 * records to the per-tenant hash chain and publishes the SIEM feed
 * (ARCHITECTURE.md §3.7).
 *
 * One consumer thread handles all three topics through one route table
 * (lib/kafka/consume_loop.h): run events in batches, a poll round per
 * transaction; offsets are committed only after the effects are committed
 * in PostgreSQL. Messages that
 * can never be processed are logged, counted and skipped; transient failures
 * (PostgreSQL or S3 unreachable, serialization failures) are retried on the
 * same message with backoff, so nothing is lost or reordered. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
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
#include "evidence.h"
#include "s3/s3.h"

extern const struct embedded_file evidence_migrations[];

#define SERVICE "evidence"
#define GROUP_ID "paddock-evidence"

struct settings {
        struct kafka_settings kafka;
        char *pg_dsn;
        char *ops_addr;
        char *log_level;
        char *s3_endpoint;
        char *s3_bucket;
        char *s3_access_key;
        char *s3_secret_key;
        char *s3_region;
        long long max_artifact_bytes;
        long long siem_timeout_ms;
};

static const struct config_entry settings_table[] = {
        KAFKA_CONFIG_ENTRIES(struct settings, kafka),
        {"PADDOCK_PG_DSN", CONFIG_STRING, NULL, 0, 0, true, offsetof(struct settings, pg_dsn),
         "PostgreSQL connection string (libpq); evidence owns schema \"evidence\""},
        {"PADDOCK_OPS_ADDR", CONFIG_STRING, "127.0.0.1:0", 0, 0, false, offsetof(struct settings, ops_addr),
         "host:port of /healthz, /readyz and /metrics (port 0 picks a free port, logged at start)"},
        {"PADDOCK_LOG_LEVEL", CONFIG_STRING, "info", 0, 0, false, offsetof(struct settings, log_level),
         "minimum log level: debug, info, warn or error"},
        {"PADDOCK_S3_ENDPOINT", CONFIG_STRING, NULL, 0, 0, false, offsetof(struct settings, s3_endpoint),
         "S3-compatible endpoint URL, e.g. http://127.0.0.1:7480 (path-style)"},
        {"PADDOCK_S3_BUCKET", CONFIG_STRING, NULL, 0, 0, false, offsetof(struct settings, s3_bucket),
         "bucket holding artifacts under tenants/<tenant>/runs/<run>/<name>"},
        {"PADDOCK_S3_ACCESS_KEY", CONFIG_STRING, NULL, 0, 0, false, offsetof(struct settings, s3_access_key),
         "S3 access key id"},
        {"PADDOCK_S3_SECRET_KEY", CONFIG_STRING, NULL, 0, 0, true, offsetof(struct settings, s3_secret_key),
         "S3 secret access key"},
        {"PADDOCK_S3_REGION", CONFIG_STRING, "us-east-1", 0, 0, false, offsetof(struct settings, s3_region),
         "S3 region used in SigV4 signatures"},
        {"PADDOCK_EVIDENCE_MAX_ARTIFACT_BYTES", CONFIG_INT, "268435456", 1024, 4294967296.0, false,
         offsetof(struct settings, max_artifact_bytes),
         "largest artifact accepted; artifacts are assembled in memory before the upload"},
        {"PADDOCK_EVIDENCE_SIEM_TIMEOUT_MS", CONFIG_INT, "10000", 100, 600000, false,
         offsetof(struct settings, siem_timeout_ms),
         "how long to wait for Kafka to acknowledge a SIEM record before retrying its audit record"},
        {NULL},
};

static struct metric m_consumed = {.name = "paddock_evidence_messages_processed_total",
                                   .help = "Messages whose effect was committed", .type = METRIC_COUNTER};
static struct metric m_skipped = {.name = "paddock_evidence_messages_skipped_total",
                                  .help = "Messages that could never be processed (undecodable or invalid), skipped",
                                  .type = METRIC_COUNTER};
static struct metric m_retries = {.name = "paddock_evidence_retries_total",
                                  .help = "Transient failures retried (PostgreSQL unreachable, conflicts)",
                                  .type = METRIC_COUNTER};

struct app {
        struct pg_pool *pool;
        struct kafka_consumer *consumer;
        struct artifacts_store_config artifacts;
        struct audit_store_config audit;
};

/* A poll round's run event records, in one transaction (a kafka_handle_batch_fn). */
static int handle_events(void *userdata, const struct kafka_message *msgs, size_t n, int *verdicts,
                         struct err_detail *err) {
        struct app *app = userdata;
        PGconn *conn = pg_pool_acquire(app->pool, 5000, err);
        if (!conn)
                return err->errnum < 0 ? err->errnum : -ECONNRESET;
        int r = events_store_batch(conn, msgs, n, verdicts, err);
        pg_pool_release(app->pool, conn);
        return r;
}

/* One artifact chunk (a kafka_handle_fn). */
static int handle_artifact(void *userdata, const struct kafka_message *m, struct err_detail *err) {
        struct app *app = userdata;
        PGconn *conn = pg_pool_acquire(app->pool, 5000, err);
        if (!conn)
                return err->errnum < 0 ? err->errnum : -ECONNRESET;
        int r = artifacts_store_chunk(conn, &app->artifacts, m, err);
        pg_pool_release(app->pool, conn);
        return r;
}

/* One audit record (a kafka_handle_fn). */
static int handle_audit(void *userdata, const struct kafka_message *m, struct err_detail *err) {
        struct app *app = userdata;
        PGconn *conn = pg_pool_acquire(app->pool, 5000, err);
        if (!conn)
                return err->errnum < 0 ? err->errnum : -ECONNRESET;
        int r = audit_store(conn, &app->audit, m->value, m->len, err);
        pg_pool_release(app->pool, conn);
        return r;
}

static int migrate(struct pg_pool *pool) {
        return service_migrate(pool, "evidence", evidence_migrations, 0);
}

static int run(struct settings *cfg) {
        struct bus_auth *auth = NULL;
        struct app app = {.artifacts.max_bytes = (uint64_t)cfg->max_artifact_bytes,
                          .audit.siem_timeout_ms = (int)cfg->siem_timeout_ms};
        char ops_host[256];
        int ops_port, ret = 1;
        struct ops_server *ops = NULL;
        struct err_detail err = {0};
        (void)ops_parse_addr(cfg->ops_addr, ops_host, sizeof ops_host, &ops_port); /* validated in main */

        app.pool = pg_pool_new(cfg->pg_dsn, 2);
        struct s3_config s3c = {.endpoint = cfg->s3_endpoint, .region = cfg->s3_region, .bucket = cfg->s3_bucket,
                                .access_key = cfg->s3_access_key, .secret_key = cfg->s3_secret_key,
                                .timeout_ms = 60000};
        app.artifacts.s3 = s3_client_new(&s3c);
        if (!app.pool || !app.artifacts.s3) {
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
        /* Usually created by the deployment; creating it here makes a fresh
         * stack work, and failing here is not fatal: uploads retry. */
        int r = s3_create_bucket(app.artifacts.s3, &err);
        if (r < 0 && r != -EEXIST)
                log_warn("could not create bucket %s: %s", cfg->s3_bucket, err.message);

        r = kafka_settings_auth(&cfg->kafka, "evidence", &auth, &err);
        if (r < 0) {
                log_error("could not load the bus keys: %s", err.message);
                goto out;
        }
        struct kafka_options ko;
        kafka_settings_options(&cfg->kafka, "paddock-evidence", auth, &ko);
        app.audit.producer = kafka_producer_new(&ko, &err);
        if (!app.audit.producer) {
                log_error("could not create kafka producer: %s", err.message);
                goto out;
        }
        static const char *const topics[] = {TOPIC_RUNS_EVENTS, TOPIC_ARTIFACTS, TOPIC_AUDIT, NULL};
        app.consumer = kafka_consumer_new(&ko, GROUP_ID, topics, "earliest", &err);
        if (!app.consumer) {
                log_error("could not create kafka consumer: %s", err.message);
                goto out;
        }
        log_info("evidence started");

        static const struct kafka_route routes[] = {
                {TOPIC_RUNS_EVENTS, .handle_batch = handle_events},
                {TOPIC_ARTIFACTS, .handle = handle_artifact},
                {TOPIC_AUDIT, .handle = handle_audit},
                {NULL},
        };
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
        kafka_producer_free(app.audit.producer);
        s3_client_free(app.artifacts.s3);
        bus_auth_free(auth);
        pg_pool_free(app.pool);
        return ret;
}

/* Settings service_init() cannot know about (a service_spec check). */
static int check_settings(const void *settings, struct err_detail *reterr) {
        const struct settings *cfg = settings;
        int r = kafka_settings_check(&cfg->kafka, reterr);
        if (r < 0)
                return r;
        if (strncmp(cfg->s3_endpoint, "http://", 7) != 0 && strncmp(cfg->s3_endpoint, "https://", 8) != 0)
                return err_set(reterr, -EINVAL, "config", "PADDOCK_S3_ENDPOINT: \"%s\" is not an http(s) URL",
                               cfg->s3_endpoint);
        return 0;
}

int main(int argc, char **argv) {
        static const struct service_spec spec = {
                .name = SERVICE,
                .summary = "Paddock evidence: stores run events, assembles artifacts into S3, keeps the audit hash chain.",
                .table = settings_table,
                .log_level_offset = offsetof(struct settings, log_level),
                .ops_addr_offset = offsetof(struct settings, ops_addr),
                .schema = "evidence",
                .migrations = evidence_migrations,
                .pg_dsn_offset = offsetof(struct settings, pg_dsn),
                .check = check_settings,
        };
        struct settings cfg = {0};
        int r = service_init(&spec, argc, argv, &cfg);
        if (r >= 0)
                return r;
        metrics_register(&m_consumed);
        metrics_register(&m_skipped);
        metrics_register(&m_retries);
        events_store_register_metrics();
        artifacts_store_register_metrics();
        audit_store_register_metrics();
        bus_auth_register_metrics();

        int ret = run(&cfg);
        config_free(settings_table, &cfg);
        return ret;
}
