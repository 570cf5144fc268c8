/* The per-run event stream on paddock.runs.events: RunEvent messages with
 * env.seq contiguous from 1, sent as RunEventBatch records keyed by run id
 * (issue 10): events are buffered for up to linger_ms or a cap of events or
 * bytes, one record per run per linger, so a consumer verifies one signature
 * per record instead of per event. A sync event (status, approvals) closes
 * the record it joins and waits for the broker's acknowledgement, so the
 * order on the partition is the seq order; control-relevant ones (status,
 * approval_requested, approval_decided) are then copied, byte for byte, to
 * paddock.runs.status. Backpressure: when librdkafka's
 * (bounded) queue is full the emitting thread waits, slowing the agent's
 * capture, never dropping; past block_budget_ms of waiting the run is over
 * budget (events_overrun) and ends limit_exceeded; events that could not be
 * delivered are counted and the terminal status carries "events_lost": N.
 * Crash recovery: each seq is persisted before its event is produced, and
 * each record is first appended to the run's spool, emptied once every
 * record queued before is acknowledged; a restarted runner produces the
 * spool again before it ends the run (events_persist, events_replay).
 * One run_events belongs to one run's worker thread, which inits it;
 * emitting is thread-safe (other threads of the run, e.g. the egress proxy,
 * emit too); the producer is shared. */
#pragma once
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kafka_producer;
struct kafka_tally;

/* PADDOCK_RUN_EVENT_* settings (runner-agent main.c). */
struct run_events_config {
        long long linger_ms;       /* longest an event waits in the open record */
        long long max_events;      /* events per record */
        long long max_bytes;       /* bytes per record (an event larger than it goes alone) */
        long long block_budget_ms; /* longest a run waits in total for a full producer queue or spool */
        long long spool_mb;        /* most MiB of records not yet acknowledged in the run's spool */
};

struct run_events {
        struct kafka_producer *producer; /* borrowed */
        struct kafka_tally *tally;       /* owned: the run's records not yet acknowledged or failed */
        const struct run_events_config *cfg; /* borrowed */
        const char *producer_name;       /* borrowed, "runner-agent/<node>" */
        const char *tenant_id, *run_id, *team_id; /* borrowed for the run's lifetime */
        uint64_t seq;                    /* last seq handed out */
        bool pending_async;              /* records queued since the last flush */
        unsigned long long inflight;     /* events in them */
        unsigned long long lost;         /* events that could not be delivered (an upper bound) */
        uint8_t *buf;                    /* the open record: RunEventBatch wire bytes */
        size_t len, cap, n_buf;
        uint64_t buf_first_seq;
        int64_t buf_first_mono;          /* when its first event came */
        int64_t blocked_us;              /* waited so far for a full queue */
        atomic_bool overrun;             /* past block_budget_ms: the run must end */
        pthread_cond_t cond;             /* wakes the linger thread */
        pthread_t linger;
        bool linger_started, stopping;
        int seq_fd;                      /* -1, or a file (borrowed) where each seq is written
                                          * before its event is produced (events_persist) */
        int spool_fd;                    /* -1, or the run's spool (borrowed, O_APPEND) */
        uint64_t spool_len;              /* bytes in it */
        pthread_mutex_t lock;            /* events_emit/events_flush may be called from the
                                          * proxy's and the control consumer's threads too */
};

/* Starts the run's linger thread (cfg borrowed, outlives ev). */
void events_init(struct run_events *ev, struct kafka_producer *p, const struct run_events_config *cfg,
                 const char *producer_name, const char *tenant_id, const char *run_id, const char *team_id);

/* From now on, every seq is written to seq_fd before its event is produced:
 * "%020llu\n" at offset 0, an upper bound of the seqs possibly delivered, so
 * a runner restarted after a crash can end the run with the next seq; and
 * every record is appended to spool_fd (opened O_APPEND, empty) before it is
 * handed to the producer: a 4-byte big-endian length, then the RunEventBatch
 * bytes. The spool is truncated to empty once everything queued before is
 * acknowledged (or counted lost); past cfg->spool_mb the run waits for that,
 * within its block budget. Both fds are borrowed (-1: not kept); (-1, -1)
 * stops before the caller closes them. */
void events_persist(struct run_events *ev, int seq_fd, int spool_fd);

/* Produces again, in order, every record of a spool (fd, borrowed, read from
 * offset 0) a crashed process left, waiting for each acknowledgement and
 * retrying like a sync event; a torn last record (the process died while
 * appending it, before producing it) is ignored. A record already delivered
 * is the same bytes with the same signature: consumers drop the duplicate.
 * Not thread-safe with emitting on ev: call before any event of it.
 * Returns the number of records; -ESHUTDOWN (logged) when the process stops
 * before every record is acknowledged: the spool must stay for the next
 * start; another negative errno when it cannot be read. */
int events_replay(struct run_events *ev, int fd);

/* Sends what is buffered, stops the linger thread and destroys the lock;
 * call once no other thread can emit any more. */
void events_done(struct run_events *ev);

/* Sends one event, thread-safe: seq is assigned and produced under ev.lock.
 * data (borrowed, a JSON object) becomes data_json. status is
 * set for kind "status". sync events flush queued output first and wait for
 * the broker's acknowledgement (retrying with the same message id), so the
 * order on the partition is the seq order. Returns 0 or a negative errno
 * (already logged). */
int events_emit(struct run_events *ev, const char *kind, const char *actor, json_t *data,
                const char *status, bool terminal, bool sync);

/* status event; reason may be NULL, exit_code < 0 leaves it out. */
int events_status(struct run_events *ev, const char *status, const char *reason, int exit_code,
                  bool terminal);

/* output event (actor "agent", queued asynchronously); text must be valid UTF-8. */
int events_output(struct run_events *ev, const char *stream, const char *text, size_t len);

/* Sends the open record and waits until every queued record is acknowledged. */
int events_flush(struct run_events *ev);

/* True once the run waited longer than block_budget_ms for the producer
 * queue: the run must end limit_exceeded (run.c). Thread-safe. */
bool events_overrun(const struct run_events *ev);
