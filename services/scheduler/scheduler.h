/* The scheduler's features, called from main.c's single consumer thread.
 * Every handler takes a borrowed connection and one message value (borrowed),
 * returns >= 0 when the effect is committed in PostgreSQL (or there was
 * nothing to do), -EBADMSG/-EINVAL for a message that can never be processed,
 * and another negative errno (-ECONNRESET, -EAGAIN, ...) for a transient
 * failure that is worth retrying. */
#pragma once
#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "core/domain.h"
#include "core/err.h"
#include "core/macro.h"
#include "kafka/kafka.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(PGresult *, PQclear);

/* The scheduling policy from the configuration table (main.c). */
struct sched_policy {
        long long team_max_concurrent; /* runs of one team assigned at once, unless scheduler.team_limits says */
        long long node_dead_after_ms;  /* 0: 3 heartbeat intervals of the node, at least 6 s */
        long long pending_timeout_s;   /* a run pending this long fails with "no capacity" */
        long long max_attempts;        /* placements of a run that never started before it fails */
        long long start_timeout_s;     /* an assigned run with no event this long is taken back */
        long long cancel_grace_s;      /* a cancelled assigned run with no event this long is ended here */
};

/* What the periodic passes share: borrowed, alive for the whole process. */
struct sched {
        struct kafka_producer *producer;
        const char *producer_id; /* envelope producer, "scheduler/<host>" */
        const struct sched_policy *policy;
};

/* The SQL expression "node n is dead after this interval", with the
 * configured PADDOCK_NODE_DEAD_AFTER_MS as parameter $1 (text of an integer). */
#define SCHED_SQL_DEAD_AFTER                                                                  \
        "(CASE WHEN $1::bigint > 0 THEN $1::bigint"                                           \
        " ELSE GREATEST(6000, 3 * n.heartbeat_interval_ms) END * interval '1 millisecond')"

/* nodes.c: upserts scheduler.nodes from a NodeHeartbeat; a newer heartbeat
 * brings a dead node back. */
/* signer: the record's verified producer; a heartbeat about another node than
 * the signer is refused (counted, 0 returned). */
int nodes_handle_heartbeat(PGconn *conn, const char *signer, const void *data, size_t len, struct err_detail *reterr);

/* runs.c: stores a RunRequested as a pending run (once per run id), with the
 * cpus, memory and catalog image (if any) it needs. */
int runs_handle_requested(PGconn *conn, const void *data, size_t len, struct err_detail *reterr);
/* runs.c: applies a RunEvent of paddock.runs.status: any event marks the run
 * started (last_seq, the highest seq seen, > 0), its first terminal status
 * marks it finished, freeing its slot; a later terminal one (a node's late
 * report after a platform verdict) changes nothing. Returns 1 if the run
 * finished now (placement may have work), 0 otherwise. */
/* signer: the record's verified producer; a node's event about a run not
 * assigned to it is refused (counted, 0 returned); only the scheduler's own
 * verdicts carry seq 0. */
int runs_handle_event(PGconn *conn, const char *signer, const void *data, size_t len, struct err_detail *reterr);

/* placement.c: assigns pending runs to live nodes with room for them (slots,
 * cpus, memory) that have the run's image, honouring per-team concurrency
 * limits, producing RunAssigned (key node id) before marking each run
 * assigned. Returns the number of runs assigned or a negative errno (runs not
 * yet assigned stay pending). */
int placement_run(PGconn *conn, const struct sched *s, struct err_detail *reterr);
/* placement.c: refreshes the pending/assigned/live-node gauges. */
int placement_update_gauges(PGconn *conn, const struct sched *s, struct err_detail *reterr);
/* placement.c: registers the placement metrics (once, from main). */
void placement_register_metrics(void);
/* placement.c: takes the transaction-scoped lock that serialises placement
 * and the sweeps across scheduler replicas (inside a transaction). */
int placement_lock(PGconn *conn, struct err_detail *reterr);

/* platform_events.c: produces the terminal status event (status "failed" or
 * "cancelled") of run_id with env.seq 0 (actor platform, the given reason) on
 * paddock.runs.events, then on paddock.runs.status, waiting for each
 * acknowledgement. tenant is required, team may be NULL. */
int platform_end_run(const struct sched *s, const char *run_id, const char *tenant, const char *team,
                     const char *status, const char *reason, struct err_detail *reterr);
/* platform_events.c: produces a RunControl cancel of run_id addressed to
 * node_id on paddock.runs.control, so a runner-agent that comes back drops or
 * stops a run that was moved away from it or failed. */
int platform_cancel_run(const struct sched *s, const char *run_id, const char *tenant, const char *node_id,
                        const char *reason, struct err_detail *reterr);

/* A run assigned to a node that is taken back from it (borrowed strings). */
struct evict_run {
        const char *run_id, *tenant, *team; /* team may be NULL */
        uint64_t last_seq;                  /* 0: never seen started (no event of it on runs.status) */
        long long attempts;
};
struct evict_tally {
        unsigned failed, gave_up, moved;
};
/* evict.c: inside the caller's transaction, fails a started run (reason:
 * cause) or puts a run that never started back to pending excluding node_id
 * (failing it after max_attempts), and sends node_id a cancel for it. Adds
 * the outcome to t; call evict_count(t) once the transaction committed. */
int evict_run(PGconn *conn, const struct sched *s, const char *node_id, const struct evict_run *e,
              const char *cause, struct evict_tally *t, struct err_detail *reterr);
void evict_count(const struct evict_tally *t);
void evict_register_metrics(void);

/* dead_nodes.c: declares dead every node whose heartbeat is older than the
 * dead-after interval: its started runs fail, its other runs go back to
 * pending (or fail after policy->max_attempts placements), and each gets a
 * cancel addressed to the node. Returns the number of nodes declared dead. */
int dead_nodes_sweep(PGconn *conn, const struct sched *s, struct err_detail *reterr);
/* dead_nodes.c: registers the dead-node metrics (once, from main). */
void dead_nodes_register_metrics(void);

/* control.c: applies a RunControl cancel from the api: a pending run is
 * dropped (never placed), an assigned one is marked so that stalled_sweep
 * ends it if its node never reports. Cancels the scheduler itself produced
 * are ignored. */
int control_handle(PGconn *conn, const struct sched *s, const void *data, size_t len, struct err_detail *reterr);

/* stalled.c: settles assigned runs that never produced an event: cancelled
 * ones after policy->cancel_grace_s (ended "cancelled"), the others after
 * policy->start_timeout_s (taken back from the node like a dead node's).
 * Returns the number of runs settled. */
int stalled_sweep(PGconn *conn, const struct sched *s, struct err_detail *reterr);
/* stalled.c: registers the never-started metric (once, from main). */
void stalled_register_metrics(void);

/* pending.c: fails every run pending longer than policy->pending_timeout_s
 * ("no live node has image ..." when that is why, else "no capacity").
 * Returns the number of runs failed. */
int pending_sweep(PGconn *conn, const struct sched *s, struct err_detail *reterr);
/* pending.c: registers the pending-timeout metric (once, from main). */
void pending_register_metrics(void);
