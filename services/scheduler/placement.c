/* Placement: pending runs, oldest first, go to the live node with the most
 * free slots. A node is live while its last heartbeat is younger than three
 * of its heartbeat intervals; its free slots are its capacity minus the runs
 * assigned to it that have not finished.
 *
 * Each run is placed in its own transaction that holds the run row
 * (FOR UPDATE SKIP LOCKED, so a second replica would take another run):
 * RunAssigned is produced and acknowledged first, then the run is marked
 * assigned. If the process dies in between, the run is still pending on
 * restart and is assigned again (attempt unchanged, normally to the same node,
 * which deduplicates by run id): at-least-once, never lost. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/log.h"
#include "core/macro.h"
#include "core/metrics.h"
#include "kafka/topics.h"
#include "paddock/v1/runs.pb-c.h"
#include "pg/pg.h"
#include "proto/envelope.h"
#include "scheduler.h"

#define PLACEMENT_BATCH 64          /* runs per pass, so heartbeats are not starved */
#define PLACEMENT_PRODUCE_TIMEOUT_MS 10000

static struct metric m_assigned = {.name = "paddock_scheduler_runs_assigned_total",
                                   .help = "Runs assigned to a node", .type = METRIC_COUNTER};
static struct metric m_pending = {.name = "paddock_scheduler_runs_pending",
                                  .help = "Runs waiting for a free slot", .type = METRIC_GAUGE};
static struct metric m_active = {.name = "paddock_scheduler_runs_active",
                                 .help = "Runs assigned to a node and not finished", .type = METRIC_GAUGE};
static struct metric m_dropped = {.name = "paddock_scheduler_runs_unplaceable_total",
                                  .help = "Stored requests that could not be decoded and were dropped",
                                  .type = METRIC_COUNTER};

void placement_register_metrics(void) {
        metrics_register(&m_assigned);
        metrics_register(&m_pending);
        metrics_register(&m_active);
        metrics_register(&m_dropped);
}

static void requested_freep(Paddock__V1__RunRequested **p) {
        if (*p)
                paddock__v1__run_requested__free_unpacked(*p, NULL);
}

static void pq_freememp(unsigned char **p) {
        if (*p)
                PQfreemem(*p);
}

/* Produces the assignment of run_id to node_id. request_text is the bytea
 * column in PostgreSQL's text (hex) output form. */
static int produce_assignment(struct kafka_producer *producer, const char *producer_id,
                              const char *node_id, const char *request_text, unsigned attempt,
                              struct err_detail *reterr) {
        size_t len = 0;
        _cleanup_(pq_freememp) unsigned char *raw = PQunescapeBytea((const unsigned char *)request_text, &len);
        if (!raw)
                return -ENOMEM;
        _cleanup_(requested_freep) Paddock__V1__RunRequested *req =
                paddock__v1__run_requested__unpack(NULL, len, raw);
        if (!req || !req->env)
                return err_set(reterr, -EBADMSG, "decode", "stored request is not a RunRequested");

        Paddock__V1__Envelope env;
        char msgid[UUID_STR_LEN];
        int r = envelope_init(&env, req->env->tenant_id, req->env->run_id, 0, producer_id, msgid);
        if (r < 0)
                return err_set(reterr, r, "envelope", "could not create a message id");
        Paddock__V1__RunAssigned a = PADDOCK__V1__RUN_ASSIGNED__INIT;
        a.env = &env;
        a.node_id = (char *)node_id;
        a.request = req;
        a.attempt = attempt;

        size_t n = paddock__v1__run_assigned__get_packed_size(&a);
        _cleanup_free_ uint8_t *buf = malloc(n ? n : 1);
        if (!buf)
                return -ENOMEM;
        paddock__v1__run_assigned__pack(&a, buf);
        return kafka_produce_sync(producer, TOPIC_RUNS_ASSIGNED, node_id, buf, n,
                                  PLACEMENT_PRODUCE_TIMEOUT_MS, reterr);
}

/* Places the oldest pending run. Returns 1 if one was placed, 0 if there is
 * nothing to place (no pending run, or no node with a free slot). */
static int place_one(PGconn *conn, struct kafka_producer *producer, const char *producer_id,
                     struct err_detail *reterr) {
        /* declared before the first goto: cleanup runs on every path */
        _cleanup_(PQclearp) PGresult *run = NULL, *node = NULL;
        int r = pg_begin(conn, reterr);
        if (r < 0)
                return r;

        r = pg_exec(conn,
                    "SELECT run_id, tenant_id, request, attempts FROM scheduler.runs"
                    " WHERE state = 'pending' AND request IS NOT NULL"
                    " ORDER BY created_at, run_id LIMIT 1 FOR UPDATE SKIP LOCKED",
                    0, NULL, &run, reterr);
        if (r < 0 || PQntuples(run) == 0)
                goto rollback;

        /* Every run needs one slot, so if the oldest run does not fit nothing
         * fits: it keeps its place in the queue until capacity appears. */
        r = pg_exec(conn,
                    "SELECT n.node_id FROM scheduler.nodes n"
                    " CROSS JOIN LATERAL (SELECT count(*) AS busy FROM scheduler.runs r"
                    "   WHERE r.state = 'assigned' AND r.node_id = n.node_id) b"
                    " WHERE n.last_seen > now() - 3 * n.heartbeat_interval_ms * interval '1 millisecond'"
                    "   AND n.capacity_slots - b.busy > 0"
                    " ORDER BY n.capacity_slots - b.busy DESC, n.node_id LIMIT 1",
                    0, NULL, &node, reterr);
        if (r < 0 || PQntuples(node) == 0)
                goto rollback;

        const char *run_id = PQgetvalue(run, 0, 0), *tenant = PQgetvalue(run, 0, 1);
        const char *node_id = PQgetvalue(node, 0, 0);
        unsigned attempt = (unsigned)strtoul(PQgetvalue(run, 0, 3), NULL, 10) + 1;

        r = produce_assignment(producer, producer_id, node_id, PQgetvalue(run, 0, 2), attempt, reterr);
        if (r == -EBADMSG) {
                /* Validated when stored, so only corruption gets here; finishing
                 * the run keeps it from blocking the queue forever. */
                log_ctx(LOG_ERROR, LOG_KV("run", run_id, "tenant", tenant),
                        "dropping run whose stored request cannot be decoded");
                metric_add(&m_dropped, 1);
                const char *p[] = {run_id};
                r = pg_exec(conn, "UPDATE scheduler.runs SET state = 'finished', finished_at = now()"
                                  " WHERE run_id = $1", 1, p, NULL, reterr);
                if (r < 0)
                        goto rollback;
                r = pg_commit(conn, reterr);
                return r < 0 ? r : 1;
        }
        if (r < 0)
                goto rollback;

        const char *params[] = {run_id, node_id};
        r = pg_exec(conn,
                    "UPDATE scheduler.runs SET state = 'assigned', node_id = $2,"
                    " attempts = attempts + 1, assigned_at = now() WHERE run_id = $1",
                    (int)ELEMENTSOF(params), params, NULL, reterr);
        if (r < 0)
                goto rollback;
        r = pg_commit(conn, reterr);
        if (r < 0)
                return r;
        char attempt_s[16];
        snprintf(attempt_s, sizeof attempt_s, "%u", attempt);
        log_ctx(LOG_INFO, LOG_KV("run", run_id, "tenant", tenant, "node", node_id, "attempt", attempt_s),
                "assigned run to node");
        metric_add(&m_assigned, 1);
        return 1;

rollback:
        pg_rollback(conn);
        return r < 0 ? r : 0;
}

int placement_run(PGconn *conn, struct kafka_producer *producer, const char *producer_id,
                  struct err_detail *reterr) {
        int placed = 0;
        for (int i = 0; i < PLACEMENT_BATCH; i++) {
                int r = place_one(conn, producer, producer_id, reterr);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                placed++;
        }
        return placed;
}

int placement_update_gauges(PGconn *conn, struct err_detail *reterr) {
        _cleanup_(PQclearp) PGresult *res = NULL;
        int r = pg_exec(conn,
                        "SELECT count(*) FILTER (WHERE state = 'pending' AND request IS NOT NULL),"
                        " count(*) FILTER (WHERE state = 'assigned') FROM scheduler.runs"
                        " WHERE state <> 'finished'",
                        0, NULL, &res, reterr);
        if (r < 0)
                return r;
        metric_set(&m_pending, strtoll(PQgetvalue(res, 0, 0), NULL, 10));
        metric_set(&m_active, strtoll(PQgetvalue(res, 0, 1), NULL, 10));
        return 0;
}
