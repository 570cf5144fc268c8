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
#include <malloc.h>
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
#include "s3/s3_config.h"

extern const struct embedded_file evidence_migrations[];

#define SERVICE "evidence"
#define GROUP_ID "paddock-evidence"
#define EVIDENCE_HEAP_KEEP (64 << 20)

struct settings {
        struct kafka_settings kafka;
        struct service_settings svc;
        struct s3_settings s3;
        long long max_artifact_bytes;
        long long siem_timeout_ms;
        long long round_max_events;
        long long retention_sweep_s;
        long long retention_batch;
        long long legal_hold_sync_s;
};

static const struct config_entry settings_table[] = {
        KAFKA_CONFIG_ENTRIES(struct settings, kafka),
        SERVICE_CONFIG_ENTRIES(struct settings, svc),
        SERVICE_CONFIG_BUSINESS_CLOCK_ENTRY(struct settings, svc),
        S3_CONFIG_ENTRIES(struct settings, s3),
        {"PADDOCK_EVIDENCE_MAX_ARTIFACT_BYTES", CONFIG_INT, "268435456", 1024, 4294967296.0, false,
         offsetof(struct settings, max_artifact_bytes),
         "largest artifact accepted; artifacts are assembled in memory before the upload"},
        {"PADDOCK_EVIDENCE_SIEM_TIMEOUT_MS", CONFIG_INT, "10000", 100, 600000, false,
         offsetof(struct settings, siem_timeout_ms),
         "how long to wait for Kafka to acknowledge a SIEM record before retrying its audit record"},
        {"PADDOCK_EVIDENCE_ROUND_MAX_EVENTS", CONFIG_INT, "10000", 1, 1000000, false,
         offsetof(struct settings, round_max_events),
         "most run events stored per transaction (whole records): a poll round from a backlog is made durable "
         "in steps of this size, so its first events do not wait for its last"},
        /* the retention sweeper (retention_sweep.c, docs/CONTRACTS.md "Retention and legal hold") */
        {"PADDOCK_EVIDENCE_RETENTION_SWEEP_S", CONFIG_INT, "3600", 1, 86400, false,
         offsetof(struct settings, retention_sweep_s),
         "seconds between retention sweeps, which delete the evidence of runs whose retention expired"},
        {"PADDOCK_EVIDENCE_RETENTION_BATCH", CONFIG_INT, "100", 1, 100000, false,
         offsetof(struct settings, retention_batch),
         "most runs a retention sweep deletes (the next sweep goes on)"},
        {"PADDOCK_EVIDENCE_LEGAL_HOLD_SYNC_S", CONFIG_INT, "60", 1, 86400, false,
         offsetof(struct settings, legal_hold_sync_s),
         "seconds between reconciles of S3 object legal holds with the legal holds set in the api (also done "
         "before every retention sweep)"},
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
        struct service svc;
        struct kafka_consumer *consumer;
        struct artifacts_store_config artifacts;
        struct audit_store_config audit;
        struct events_store_config events;
        struct retention_config retention;
        struct retention_sweeper *sweeper;
        char instance[64]; /* host name, for the audit records the sweeper writes */
};

/* A poll round's run event records, in one transaction (a kafka_handle_batch_fn). */
static int handle_events(void *userdata, const struct kafka_message *msgs, size_t n, int *verdicts,
                         struct err_detail *err) {
        struct app *app = userdata;
        PGconn *conn = pg_pool_acquire(app->svc.pg, 5000, err);
        if (!conn)
                return err->errnum < 0 ? err->errnum : -ECONNRESET;
        int r = events_store_batch(conn, &app->events, msgs, n, verdicts, err);
        pg_pool_release(app->svc.pg, conn);
        return r;
}

/* One artifact chunk (a kafka_handle_fn). */
static int handle_artifact(void *userdata, const struct kafka_message *m, struct err_detail *err) {
        struct app *app = userdata;
        PGconn *conn = pg_pool_acquire(app->svc.pg, 5000, err);
        if (!conn)
                return err->errnum < 0 ? err->errnum : -ECONNRESET;
        int r = artifacts_store_chunk(conn, &app->artifacts, m, err);
        pg_pool_release(app->svc.pg, conn);
        return r;
}

/* One audit record (a kafka_handle_fn). */
static int handle_audit(void *userdata, const struct kafka_message *m, struct err_detail *err) {
        struct app *app = userdata;
        PGconn *conn = pg_pool_acquire(app->svc.pg, 5000, err);
        if (!conn)
                return err->errnum < 0 ? err->errnum : -ECONNRESET;
        int r = audit_store(conn, &app->audit, m->value, m->len, err);
        pg_pool_release(app->svc.pg, conn);
        return r;
}

static int check_settings(const void *settings, struct err_detail *reterr) {
        return s3_settings_check(&((const struct settings *)settings)->s3, reterr);
}

static const struct service_spec spec = {
        .name = SERVICE,
        .summary = "Paddock evidence: stores run events, assembles artifacts into S3, keeps the audit hash chain.",
        .table = settings_table,
        .svc_offset = offsetof(struct settings, svc),
        .kafka_offset = offsetof(struct settings, kafka),
        .check = check_settings,
        .schema = "evidence",
        .migrations = evidence_migrations,
        .pg_pool_size = 3, /* the consumer, the retention sweeper, and one spare */
        .bus_identity = "evidence",
        .producer = true, /* the SIEM feed (audit_store.c) */
        .ready = SERVICE_READY_PG,
};

static int run(struct settings *cfg) {
        struct app app = {.artifacts.max_bytes = (uint64_t)cfg->max_artifact_bytes,
                          .audit.siem_timeout_ms = (int)cfg->siem_timeout_ms,
                          .events.round_max_events = cfg->round_max_events,
                          .events.siem_timeout_ms = (int)cfg->siem_timeout_ms};
        struct err_detail err = {0};
        int ret = service_start(&spec, cfg, &app.svc);
        if (ret != 0)
                goto out;
        ret = 1;
        app.audit.producer = app.svc.producer;
        app.events.producer = app.svc.producer;
        struct s3_config s3c;
        s3_settings_config(&cfg->s3, 60000, &s3c);
        app.artifacts.s3 = s3_client_new(&s3c);
        if (!app.artifacts.s3) {
                log_error("out of memory");
                goto out;
        }
        /* Usually created by the deployment; creating it here makes a fresh
         * stack work, and failing here is not fatal: uploads retry. */
        int r = s3_create_bucket(app.artifacts.s3, &err);
        if (r < 0 && r != -EEXIST)
                log_warn("could not create bucket %s: %s", cfg->s3.bucket, err.message);
        /* object lock where the store has it on the bucket (docs/CONTRACTS.md "Retention and legal hold") */
        r = s3_bucket_object_lock(app.artifacts.s3, &err);
        app.artifacts.object_lock = r == 1;
        if (r < 0)
                log_warn("could not read the object lock configuration of bucket %s: %s", cfg->s3.bucket, err.message);
        else
                log_info("bucket %s object lock: %s", cfg->s3.bucket, r == 1 ? "enabled (GOVERNANCE retention per artifact)"
                                                                           : "not enabled");

        static const struct kafka_route routes[] = {
                {TOPIC_RUNS_EVENTS, .handle_batch = handle_events},
                {TOPIC_ARTIFACTS, .handle = handle_artifact},
                {TOPIC_AUDIT, .handle = handle_audit},
                {NULL},
        };
        app.consumer = kafka_consumer_new_routes(&app.svc.kafka, GROUP_ID, routes, "earliest", &err);
        if (!app.consumer) {
                log_error("could not create kafka consumer: %s", err.message);
                goto out;
        }
        if (gethostname(app.instance, sizeof app.instance - 1) < 0 || !app.instance[0])
                snprintf(app.instance, sizeof app.instance, "%s", "evidence");
        app.retention = (struct retention_config){.pg = app.svc.pg,
                                                  .s3 = app.artifacts.s3,
                                                  .audit = &app.audit,
                                                  .instance = app.instance,
                                                  .interval_ms = (int)cfg->retention_sweep_s * 1000,
                                                  .hold_interval_ms = (int)cfg->legal_hold_sync_s * 1000,
                                                  .batch = (int)cfg->retention_batch};
        app.sweeper = retention_sweeper_start(&app.retention);
        if (!app.sweeper) {
                log_error("could not start the retention sweeper");
                goto out;
        }
        log_info("evidence started");

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
        app.sweeper = retention_sweeper_stop(app.sweeper);
        kafka_consumer_free(app.consumer);
        s3_client_free(app.artifacts.s3);
        service_stop(&app.svc);
        return ret;
}

int main(int argc, char **argv) {
        struct settings cfg = {0};
        /* Before any thread: freed memory stays in the heap for the next
         * round instead of going back to the kernel. With glibc's defaults a
         * round's buffers (the decoded records' arena, librdkafka's
         * decompressed fetches: hundreds of KiB each) were mmap'd or trimmed
         * and faulted in again, zeroed, every round: clear_page was a quarter
         * of evidence's CPU at ingest (issue 10 §4; docs/CONTRACTS.md "Ingest
         * costs"). Each malloc arena keeps at most EVIDENCE_HEAP_KEEP free at
         * its top. */
        mallopt(M_MMAP_THRESHOLD, EVIDENCE_HEAP_KEEP / 2);
        mallopt(M_TRIM_THRESHOLD, EVIDENCE_HEAP_KEEP);
        int r = service_init(&spec, argc, argv, &cfg);
        if (r >= 0)
                return r;
        metrics_register(&m_consumed);
        metrics_register(&m_skipped);
        metrics_register(&m_retries);
        events_store_register_metrics();
        artifacts_store_register_metrics();
        audit_store_register_metrics();
        retention_register_metrics();
        bus_auth_register_metrics();

        int ret = run(&cfg);
        config_free(settings_table, &cfg);
        return ret;
}
