/* The per-run event stream on paddock.runs.events: RunEvent messages keyed by
 * run id with env.seq contiguous from 1; control-relevant ones (status,
 * approval_requested, approval_decided) are also copied, byte for byte, to
 * paddock.runs.status once the firehose acknowledged them. One run_events belongs to one run's
 * worker thread, which inits it; emitting is thread-safe (other threads of the
 * run, e.g. the egress proxy, emit too); the producer is shared. */
#pragma once
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kafka_producer;

struct run_events {
        struct kafka_producer *producer; /* borrowed */
        const char *producer_name;       /* borrowed, "runner-agent/<node>" */
        const char *tenant_id, *run_id, *team_id; /* borrowed for the run's lifetime */
        uint64_t seq;                    /* last seq handed out */
        bool pending_async;              /* output queued since the last flush */
        unsigned lost;                   /* events that could not be delivered */
        int seq_fd;                      /* -1, or a file (borrowed) where each seq is written
                                          * before its event is produced (events_persist_seq) */
        pthread_mutex_t lock;            /* events_emit/events_flush may be called from the
                                          * proxy's and the control consumer's threads too */
};

void events_init(struct run_events *ev, struct kafka_producer *p, const char *producer_name,
                 const char *tenant_id, const char *run_id, const char *team_id);

/* From now on, every seq is written to fd (borrowed, opened by the caller)
 * before its event is produced: "%020llu\n" at offset 0, an upper bound of
 * the seqs possibly delivered, so a runner restarted after a crash can end the
 * run with the next seq. */
void events_persist_seq(struct run_events *ev, int fd);

/* Destroys the lock; call once no other thread can emit any more. */
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

/* Waits until every queued output event is acknowledged. */
int events_flush(struct run_events *ev);
