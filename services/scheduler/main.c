/* paddock-scheduler: consumes node heartbeats, run requests and run status
 * events (paddock.runs.status, never the event firehose), and assigns pending runs to live nodes with room for them, within per-team
 * concurrency limits (ARCHITECTURE.md §3.2). Nodes that stop heartbeating are
 * declared dead (their runs failed or moved) and runs that wait too long fail,
 * so no run is ever left stuck.
 *
 * One consumer thread handles runs.requested, runs.status and runs.control,
 * another the heartbeats; a message's offset is
 * committed only after its effect is committed in PostgreSQL. Messages that
 * can never be processed are logged, counted and skipped; transient failures
 * (PostgreSQL unreachable, serialization failures) are retried on the same
 * message with backoff, so nothing is lost or reordered. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
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
#include "scheduler.h"

extern const struct embedded_file scheduler_migrations[];

#define SERVICE "scheduler"
#define GROUP_ID "paddock-scheduler"
/* Heartbeats have a consumer (and group) of their own, polled by a thread of
 * their own: liveness must never wait behind a backlog of run events (a busy
 * run's tens of thousands of file events once made the scheduler declare a
 * live node dead; ARCHITECTURE.md §1, volume). */
#define NODES_GROUP_ID "paddock-scheduler-nodes"
#define PLACEMENT_PERIOD_US 1000000
/* After this long with heartbeats flowing, the heartbeat backlog of a restart
 * is consumed and an old last_seen means a dead node, not an unread heartbeat. */
#define DEAD_SWEEP_SETTLE_US 2000000
/* ...or after this long at all (no heartbeat at all: no node is alive). */
#define DEAD_SWEEP_GRACE_US 30000000
/* A node is declared dead only while the heartbeat consumer is caught up (a
 * poll found nothing new this recently): a heartbeat not read yet is never
 * taken for a missing one. */
#define DEAD_SWEEP_CAUGHT_UP_US 3000000

struct settings {
        struct kafka_settings kafka;
        struct service_settings svc;
        struct sched_policy policy;
};

static const struct config_entry settings_table[] = {
        KAFKA_CONFIG_ENTRIES(struct settings, kafka),
        SERVICE_CONFIG_ENTRIES(struct settings, svc),
        {"PADDOCK_TEAM_MAX_CONCURRENT", CONFIG_INT, "10", 0, 1000000, false,
         offsetof(struct settings, policy.team_max_concurrent),
         "runs of one team assigned at the same time; scheduler.team_limits overrides it per team"},
        {"PADDOCK_NODE_DEAD_AFTER_MS", CONFIG_INT, "0", 0, 86400000, false,
         offsetof(struct settings, policy.node_dead_after_ms),
         "a node silent this long is dead: its started runs fail, the others are moved"
         " (0: 3 of its heartbeat intervals, at least 6000)"},
        {"PADDOCK_PENDING_TIMEOUT_S", CONFIG_INT, "3600", 1, 31536000, false,
         offsetof(struct settings, policy.pending_timeout_s),
         "a run not placed this long after it became pending fails with \"no capacity\""},
        {"PADDOCK_MAX_ATTEMPTS", CONFIG_INT, "3", 1, 100, false, offsetof(struct settings, policy.max_attempts),
         "placements of a run whose nodes died before it started, before it fails"},
        {"PADDOCK_START_TIMEOUT_S", CONFIG_INT, "300", 1, 86400, false,
         offsetof(struct settings, policy.start_timeout_s),
         "an assigned run its node reports nothing of this long is taken back and placed elsewhere"},
        {"PADDOCK_CANCEL_GRACE_S", CONFIG_INT, "15", 1, 3600, false, offsetof(struct settings, policy.cancel_grace_s),
         "a run cancelled while assigned that its node reports nothing of this long ends as cancelled"},
        {NULL},
};

static struct metric m_consumed = {.name = "paddock_scheduler_messages_processed_total",
                                   .help = "Messages whose effect was committed", .type = METRIC_COUNTER};
static struct metric m_skipped = {.name = "paddock_scheduler_messages_skipped_total",
                                  .help = "Messages that could never be processed (undecodable or invalid), skipped",
                                  .type = METRIC_COUNTER};
static struct metric m_retries = {.name = "paddock_scheduler_retries_total",
                                  .help = "Transient failures retried (PostgreSQL unreachable, conflicts)",
                                  .type = METRIC_COUNTER};

struct app {
        struct service svc;                    /* PostgreSQL pool, producer, ops server */
        struct kafka_consumer *consumer;       /* runs.requested, runs.status, runs.control */
        struct kafka_consumer *nodes_consumer; /* paddock.nodes only, polled by nodes_thread */
        char producer_id[320];
        struct sched sched;
        atomic_bool place_now; /* a handled message changed demand or capacity (either thread) */
        int64_t next_place;   /* time_mono_us() of the next periodic placement */
        int64_t started;      /* time_mono_us() at start */
        _Atomic int64_t first_message; /* time_mono_us() of the first heartbeat, 0 before */
        _Atomic uint64_t heartbeats;   /* heartbeats handled (nodes thread) */
        uint64_t heartbeats_seen;      /* heartbeats at the previous nodes tick (nodes thread) */
        _Atomic int64_t nodes_caught_up; /* time_mono_us() of the last heartbeat poll that found nothing */
};

/* The scheduler's routes (kafka_handle_fns), each applying one message in
 * its own transaction; a change that can free or need a slot asks for
 * placement right after the commit. */
static int no_conn(const struct err_detail *err) {
        return err->errnum < 0 ? err->errnum : -ECONNRESET;
}

static int handle_heartbeat(void *userdata, const struct kafka_message *m, struct err_detail *err) {
        struct app *app = userdata;
        PGconn *conn = pg_pool_acquire(app->svc.pg, 5000, err);
        if (!conn)
                return no_conn(err);
        int r = nodes_handle_heartbeat(conn, m->signer, m->value, m->len, err);
        pg_pool_release(app->svc.pg, conn);
        if (r >= 0)
                app->place_now = true;
        if (!app->first_message)
                app->first_message = time_mono_us();
        app->heartbeats++;
        return r;
}

static int handle_requested(void *userdata, const struct kafka_message *m, struct err_detail *err) {
        struct app *app = userdata;
        PGconn *conn = pg_pool_acquire(app->svc.pg, 5000, err);
        if (!conn)
                return no_conn(err);
        int r = runs_handle_requested(conn, m->value, m->len, err);
        pg_pool_release(app->svc.pg, conn);
        if (r >= 0)
                app->place_now = true;
        return r;
}

static int handle_status(void *userdata, const struct kafka_message *m, struct err_detail *err) {
        struct app *app = userdata;
        PGconn *conn = pg_pool_acquire(app->svc.pg, 5000, err);
        if (!conn)
                return no_conn(err);
        int r = runs_handle_event(conn, m->signer, m->value, m->len, err);
        pg_pool_release(app->svc.pg, conn);
        if (r > 0)
                app->place_now = true;
        return r;
}

static int handle_control(void *userdata, const struct kafka_message *m, struct err_detail *err) {
        struct app *app = userdata;
        PGconn *conn = pg_pool_acquire(app->svc.pg, 5000, err);
        if (!conn)
                return no_conn(err);
        int r = control_handle(conn, &app->sched, m->value, m->len, err);
        pg_pool_release(app->svc.pg, conn);
        if (r >= 0)
                app->place_now = true;
        return r;
}

/* never paddock.runs.events: a busy run's firehose must not delay a placement
 * or a verdict (docs/CONTRACTS.md, consumer groups) */
static const struct kafka_route run_routes[] = {
        {TOPIC_RUNS_REQUESTED, .handle = handle_requested},
        {TOPIC_RUNS_STATUS, .handle = handle_status},
        {TOPIC_RUNS_CONTROL, .handle = handle_control},
        {NULL},
};
/* heartbeats: their own consumer and thread, so no backlog delays them */
static const struct kafka_route node_routes[] = {{TOPIC_NODES, .handle = handle_heartbeat}, {NULL}};

/* After every heartbeat poll (a kafka_tick_fn): no heartbeat handled since
 * the last one means the poll found nothing, so the consumer is caught up. */
static void nodes_tick(void *userdata) {
        struct app *app = userdata;
        uint64_t n = app->heartbeats;
        if (n == app->heartbeats_seen)
                app->nodes_caught_up = time_mono_us();
        app->heartbeats_seen = n;
}

/* The heartbeat consumer's loop (its own consumer and thread). */
static void *nodes_thread(void *userdata) {
        struct app *app = userdata;
        struct kafka_consume_loop_options lo = {.poll_timeout_ms = 200, .processed = &m_consumed,
                                                .skipped = &m_skipped, .retries = &m_retries,
                                                .tick = nodes_tick};
        int r = kafka_consume_routes(app->nodes_consumer, node_routes, app, &lo);
        if (r < 0) {
                log_error("kafka heartbeat consumer failed: %s", strerror(-r));
                shutdown_request();
        }
        return NULL;
}

static const char *err_text(const struct err_detail *err, int r) {
        return err->message[0] ? err->message : strerror(-r);
}

/* The dead-node sweep waits until a restart's heartbeat backlog is read, and
 * runs only while the heartbeat consumer is caught up: liveness is decided by
 * missing heartbeats, never by a consumer's lag. */
static bool dead_sweep_allowed(const struct app *app) {
        int64_t now = time_mono_us();
        return ((app->first_message && now - app->first_message >= DEAD_SWEEP_SETTLE_US) ||
                now - app->started >= DEAD_SWEEP_GRACE_US) &&
               now - app->nodes_caught_up <= DEAD_SWEEP_CAUGHT_UP_US;
}

/* One pass: placement first (a run just requested is on the launch path:
 * the sweeps' round trips before it were a few ms of every launch, issue 10
 * §4; the pick already skips silent nodes), then dead nodes and
 * never-started runs, placing again when they put runs back to pending,
 * then the pending timeout (a run placeable now should not fail). Each step
 * failing is logged and retried on the next pass. */
static void place(struct app *app) {
        struct err_detail err = {0};
        PGconn *conn = pg_pool_acquire(app->svc.pg, 2000, &err);
        if (!conn) {
                log_warn("could not place runs: %s", err.message);
                return;
        }
        int r, moved = 0;
        if ((r = placement_run(conn, &app->sched, &err)) < 0)
                log_warn("could not place runs: %s", err_text(&err, r));
        err = (struct err_detail){0};
        if (dead_sweep_allowed(app) && (r = dead_nodes_sweep(conn, &app->sched, &err)) != 0) {
                if (r < 0)
                        log_warn("could not check for dead nodes: %s", err_text(&err, r));
                moved += r > 0;
        }
        err = (struct err_detail){0};
        if ((r = stalled_sweep(conn, &app->sched, &err)) != 0) {
                if (r < 0)
                        log_warn("could not check for runs never started: %s", err_text(&err, r));
                moved += r > 0;
        }
        err = (struct err_detail){0};
        if (moved && (r = placement_run(conn, &app->sched, &err)) < 0)
                log_warn("could not place runs: %s", err_text(&err, r));
        err = (struct err_detail){0};
        if ((r = pending_sweep(conn, &app->sched, &err)) < 0)
                log_warn("could not fail overdue pending runs: %s", err_text(&err, r));
        err = (struct err_detail){0};
        if ((r = placement_update_gauges(conn, &app->sched, &err)) < 0)
                log_warn("could not count runs: %s", err_text(&err, r));
        pg_pool_release(app->svc.pg, conn);
}

/* Runs after every poll (a kafka_tick_fn): placement right after a relevant
 * message, and at least every PLACEMENT_PERIOD_US for runs whose node died. */
static void place_tick(void *userdata) {
        struct app *app = userdata;
        if (app->place_now || time_mono_us() >= app->next_place) {
                place(app);
                app->place_now = false;
                app->next_place = time_mono_us() + PLACEMENT_PERIOD_US;
        }
}

static const struct service_spec spec = {
        .name = SERVICE,
        .summary = "Paddock scheduler: assigns requested runs to nodes with room, within team limits.",
        .table = settings_table,
        .svc_offset = offsetof(struct settings, svc),
        .kafka_offset = offsetof(struct settings, kafka),
        .schema = "scheduler",
        .migrations = scheduler_migrations,
        .pg_pool_size = 3, /* the event loop, the heartbeat loop, placement */
        .bus_identity = "scheduler",
        .producer = true,
        .warm = (const char *const[]){TOPIC_RUNS_ASSIGNED, TOPIC_RUNS_CONTROL, TOPIC_RUNS_EVENTS,
                                      TOPIC_RUNS_STATUS, NULL},
        .warm_note = "the first placement",
        .ready = SERVICE_READY_PG | SERVICE_READY_KAFKA,
};

static int run(struct settings *cfg) {
        struct app app = {0};
        char host[256] = "unknown";
        gethostname(host, sizeof host - 1);
        snprintf(app.producer_id, sizeof app.producer_id, "scheduler/%s", host);
        app.started = time_mono_us();

        struct err_detail err = {0};
        int ret = service_start(&spec, cfg, &app.svc);
        if (ret != 0)
                goto out;
        ret = 1;

        /* on the launch path: the short fetch wait (kafka_config.h) */
        struct kafka_options run_opts = app.svc.kafka;
        kafka_options_control(&run_opts, &cfg->kafka);
        app.consumer = kafka_consumer_new_routes(&run_opts, GROUP_ID, run_routes, "earliest", &err);
        if (!app.consumer) {
                log_error("could not create kafka consumer: %s", err.message);
                goto out;
        }
        app.nodes_consumer = kafka_consumer_new_routes(&app.svc.kafka, NODES_GROUP_ID, node_routes, "earliest", &err);
        if (!app.nodes_consumer) {
                log_error("could not create kafka heartbeat consumer: %s", err.message);
                goto out;
        }
        app.sched = (struct sched){.producer = app.svc.producer, .producer_id = app.producer_id,
                                   .policy = &cfg->policy};
        log_info("scheduler started");

        app.place_now = true;
        struct kafka_consume_loop_options lo = {.poll_timeout_ms = 200, .processed = &m_consumed,
                                                .skipped = &m_skipped, .retries = &m_retries,
                                                .tick = place_tick};
        pthread_t nodes;
        int r = pthread_create(&nodes, NULL, nodes_thread, &app);
        if (r != 0) {
                log_error("could not start the heartbeat consumer thread: %s", strerror(r));
                goto out;
        }
        r = kafka_consume_routes(app.consumer, run_routes, &app, &lo);
        if (r < 0)
                log_error("kafka consumer failed: %s", strerror(-r));
        shutdown_request(); /* the heartbeat loop stops too */
        pthread_join(nodes, NULL);
        if (r < 0)
                goto out;
        log_info("shutting down");
        ret = 0;
out:
        kafka_consumer_free(app.nodes_consumer);
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
        bus_auth_register_metrics();
        placement_register_metrics();
        dead_nodes_register_metrics();
        pending_register_metrics();
        evict_register_metrics();
        stalled_register_metrics();

        int ret = run(&cfg);
        config_free(settings_table, &cfg);
        return ret;
}
