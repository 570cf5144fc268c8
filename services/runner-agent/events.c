#include "events.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "core/json_dump.h"
#include "core/log.h"
#include "core/macro.h"
#include "core/shutdown.h"
#include "core/timeutil.h"
#include "kafka/kafka.h"
#include "kafka/topics.h"
#include "paddock/v1/events.pb-c.h"
#include "proto/envelope.h"

#define EVENTS_SYNC_TIMEOUT_MS 10000
#define EVENTS_SYNC_ATTEMPTS 6
#define EVENTS_FLUSH_TIMEOUT_MS 30000
/* a full queue is retried after draining for this long at most */
#define EVENTS_BLOCK_SLICE_MS 100
/* records of a spool produced again per round trip (events_replay) */
#define EVENTS_REPLAY_CHUNK 256
/* from this size on, each record first looks whether the spool can be emptied */
#define EVENTS_SPOOL_TRIM_BYTES (1 << 20)

static void *linger_main(void *arg);

void events_init(struct run_events *ev, struct kafka_producer *p, const struct run_events_config *cfg,
                 const char *producer_name, const char *tenant_id, const char *run_id, const char *team_id) {
        *ev = (struct run_events){
                .producer = p,
                .cfg = cfg,
                .producer_name = producer_name,
                .tenant_id = tenant_id,
                .run_id = run_id,
                .team_id = team_id,
                .seq_fd = -1,
                .spool_fd = -1,
                /* the run's own count: another run's backlog or a heartbeat's
                 * failure is never waited for or blamed on it */
                .tally = kafka_tally_new(p),
        };
        pthread_mutex_init(&ev->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&ev->cond, &ca);
        pthread_condattr_destroy(&ca);
        /* signals stay with the main thread */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        ev->linger_started = pthread_create(&ev->linger, NULL, linger_main, ev) == 0;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (!ev->linger_started) /* then every event is its own record */
                log_ctx(LOG_WARN, LOG_KV("run", run_id), "could not start the event linger thread");
}

void events_persist(struct run_events *ev, int seq_fd, int spool_fd) {
        pthread_mutex_lock(&ev->lock);
        ev->seq_fd = seq_fd;
        ev->spool_fd = spool_fd;
        ev->spool_len = 0;
        pthread_mutex_unlock(&ev->lock);
}

bool events_overrun(const struct run_events *ev) {
        return atomic_load(&ev->overrun);
}

/* Records seq as possibly delivered. No fsync: this guards against a crash of
 * the process (page cache survives), which is what restarts recover from. */
static void persist_seq(struct run_events *ev, uint64_t seq) {
        if (ev->seq_fd < 0)
                return;
        char line[32];
        int n = snprintf(line, sizeof line, "%020llu\n", (unsigned long long)seq);
        if (pwrite(ev->seq_fd, line, (size_t)n, 0) != n)
                log_ctx(LOG_WARN, LOG_KV("run", ev->run_id), "could not persist seq %llu: %m",
                        (unsigned long long)seq);
}

/* Cuts the spool back to its first `to` bytes. */
static void spool_cut(struct run_events *ev, uint64_t to) {
        if (ev->spool_fd < 0)
                return;
        if (ftruncate(ev->spool_fd, (off_t)to) == 0) {
                ev->spool_len = to;
                return;
        }
        /* what it holds is not what the producer got any more */
        log_ctx(LOG_ERROR, LOG_KV("run", ev->run_id), "could not cut the run's event spool, not kept any more: %m");
        ev->spool_fd = -1;
}

/* Empties the spool: nothing of it is needed again. */
static void spool_trim(struct run_events *ev) {
        if (ev->spool_len > 0)
                spool_cut(ev, 0);
}

/* The spool (docs/CONTRACTS.md, runner "Restart after a crash"): what
 * librdkafka holds in memory dies with the process, so every record is
 * appended here before the producer gets it, and a restarted runner produces
 * the spool again before it ends the run. No fsync, like the seq file: it
 * guards against a crash of the process, and the page cache survives that. */
static void spool_append(struct run_events *ev) {
        if (ev->spool_fd < 0)
                return;
        uint8_t hdr[4] = {(uint8_t)(ev->len >> 24), (uint8_t)(ev->len >> 16), (uint8_t)(ev->len >> 8),
                          (uint8_t)ev->len};
        struct iovec iov[2] = {{hdr, sizeof hdr}, {ev->buf, ev->len}};
        ssize_t n = writev(ev->spool_fd, iov, 2);
        if (n == (ssize_t)(sizeof hdr + ev->len)) {
                ev->spool_len += (uint64_t)n;
                return;
        }
        log_ctx(LOG_WARN, LOG_KV("run", ev->run_id), "could not append to the run's event spool: %s",
                n < 0 ? strerror(errno) : "short write");
        if (n > 0) /* no torn record before a later one */
                spool_cut(ev, ev->spool_len);
}

/* The end of a wait for every queued record of the run (kafka_tally_wait's r):
 * acknowledged, the spool is emptied; else they are counted lost (the
 * terminal status says so) and stay in the spool until the next success. */
static int events_flushed_locked(struct run_events *ev, int r) {
        if (r < 0) {
                log_ctx(LOG_ERROR, LOG_KV("run", ev->run_id), "could not flush run events: %s", strerror(-r));
                ev->lost += ev->inflight;
        } else
                spool_trim(ev);
        ev->inflight = 0;
        ev->pending_async = false;
        return r;
}

static int events_flush_locked(struct run_events *ev) {
        if (!ev->pending_async)
                return 0;
        return events_flushed_locked(ev, kafka_tally_wait(ev->tally, EVENTS_FLUSH_TIMEOUT_MS));
}

/* True once the run waited block_budget_ms in total for the producer (then
 * it must end: events_overrun). */
static bool events_budget_spent(struct run_events *ev, const char *what) {
        if (atomic_load(&ev->overrun))
                return true;
        if (ev->blocked_us / 1000 < ev->cfg->block_budget_ms)
                return false;
        atomic_store(&ev->overrun, true);
        log_ctx(LOG_ERROR, LOG_KV("run", ev->run_id),
                "run events waited %lld ms for %s (PADDOCK_RUN_EVENT_BLOCK_BUDGET_MS): ending the run",
                (long long)(ev->blocked_us / 1000), what);
        return true;
}

/* Room in the spool for the open record: a full spool waits, in slices
 * counted in the block budget like a full producer queue, until what it
 * holds is acknowledged (never a silent drop). False once over budget. */
static bool spool_room_locked(struct run_events *ev) {
        uint64_t max = (uint64_t)ev->cfg->spool_mb << 20;
        /* a run that only writes output has no sync event to empty it: a
         * look without waiting keeps it near EVENTS_SPOOL_TRIM_BYTES */
        if (ev->spool_len >= EVENTS_SPOOL_TRIM_BYTES && ev->pending_async) {
                int r = kafka_tally_wait(ev->tally, 0);
                if (r != -ETIMEDOUT)
                        (void)events_flushed_locked(ev, r);
        }
        while (ev->spool_fd >= 0 && ev->spool_len > 0 && ev->spool_len + 4 + ev->len > max) {
                if (!ev->pending_async) { /* nothing of it is queued: acknowledged, or counted lost */
                        spool_trim(ev);
                        break;
                }
                if (events_budget_spent(ev, "a full event spool (PADDOCK_RUN_EVENT_SPOOL_MB)"))
                        return false;
                int64_t t0 = time_mono_us();
                int r = kafka_tally_wait(ev->tally, EVENTS_BLOCK_SLICE_MS);
                ev->blocked_us += time_mono_us() - t0;
                if (r != -ETIMEDOUT)
                        (void)events_flushed_locked(ev, r);
        }
        return true;
}

/* Waits before the next attempt of a send that is retried until delivered.
 * False once the process is stopping and EVENTS_SYNC_ATTEMPTS are spent. */
static bool events_retry_wait(int attempt) {
        int backoff_ms = attempt < 5 ? 200 * attempt : 2000;
        return !((shutdown_sleep_ms(backoff_ms) || shutdown_requested()) && attempt >= EVENTS_SYNC_ATTEMPTS);
}

/* The open record is over: forget it (its bytes are the producer's now, or lost). */
static void buf_reset(struct run_events *ev) {
        ev->len = 0;
        ev->n_buf = 0;
}

/* kafka_produce of the open record; a full queue blocks the caller
 * (backpressure: the agent's capture slows) until there is room, at most what
 * is left of the run's block budget. */
static int produce_waiting_locked(struct run_events *ev, struct err_detail *err) {
        for (;;) {
                int r = ev->tally ? kafka_produce_tallied(ev->tally, TOPIC_RUNS_EVENTS, ev->run_id, ev->buf, ev->len, err)
                                  : err_set(err, -ENOMEM, "", "out of memory");
                if (r != -ENOBUFS || events_budget_spent(ev, "a full producer queue"))
                        return r;
                int64_t t0 = time_mono_us();
                (void)kafka_producer_flush(ev->producer, EVENTS_BLOCK_SLICE_MS);
                ev->blocked_us += time_mono_us() - t0;
        }
}

/* Queues the open record without waiting for its acknowledgement, after
 * appending it to the spool. A full queue or spool blocks the caller until
 * there is room, at most what is left of the run's block budget; past it the
 * run is over budget and the record is counted lost. */
static int send_async_locked(struct run_events *ev) {
        if (ev->n_buf == 0)
                return 0;
        struct err_detail err = {0};
        persist_seq(ev, ev->buf_first_seq + ev->n_buf - 1);
        int r = spool_room_locked(ev) ? 0 : err_set(&err, -ENOSPC, "spool", "the run's event spool stayed full");
        if (r >= 0) {
                spool_append(ev);
                r = produce_waiting_locked(ev, &err);
        }
        if (r < 0) {
                log_ctx(LOG_ERROR, LOG_KV("run", ev->run_id), "could not queue %zu run events: %s", ev->n_buf,
                        err.message);
                ev->lost += ev->n_buf;
                buf_reset(ev);
                return r;
        }
        ev->pending_async = true;
        ev->inflight += ev->n_buf;
        buf_reset(ev);
        return 0;
}

/* Sends the open record and waits for its acknowledgement, after the records
 * queued before it, retrying the same bytes (a duplicate after a lost
 * acknowledgement is deduplicated downstream). Retried until delivered: a
 * later event must never take the seq after an undelivered one. Only a
 * shutdown ends the retries (after EVENTS_SYNC_ATTEMPTS), and then seq moves
 * back before the record: the restarted runner ends the run after the
 * persisted seq. */
static int send_sync_locked(struct run_events *ev, const char *kind) {
        struct err_detail err = {0};
        persist_seq(ev, ev->buf_first_seq + ev->n_buf - 1);
        int64_t t0 = time_mono_us();
        /* 0: every record before this one is acknowledged (or counted lost) */
        int flushed = events_flush_locked(ev);
        int64_t t1 = time_mono_us();
        uint64_t spool_before = ev->spool_len;
        spool_append(ev);
        int r;
        for (int attempt = 1;; attempt++) {
                r = kafka_produce_sync(ev->producer, TOPIC_RUNS_EVENTS, ev->run_id, ev->buf, ev->len,
                                       EVENTS_SYNC_TIMEOUT_MS, &err);
                if (r >= 0)
                        break;
                log_ctx(LOG_WARN, LOG_KV("run", ev->run_id, "kind", kind),
                        "could not produce run events (attempt %d): %s", attempt, err.message);
                if (!events_retry_wait(attempt))
                        break;
        }
        char ms[64];
        snprintf(ms, sizeof ms, "flush %.1f ms, produce %.1f ms", (double)(t1 - t0) / 1000.0,
                 (double)(time_mono_us() - t1) / 1000.0);
        log_ctx(LOG_DEBUG, LOG_KV("run", ev->run_id, "kind", kind, "timing", ms), "run events sent");
        if (r < 0) {
                log_ctx(LOG_ERROR, LOG_KV("run", ev->run_id, "kind", kind),
                        "run events not delivered before shutdown: %s", err.message);
                ev->lost += ev->n_buf;
                ev->seq = ev->buf_first_seq - 1;
                spool_cut(ev, spool_before); /* its seqs go to the next events */
                buf_reset(ev);
                return r;
        }
        if (flushed == 0)
                spool_trim(ev);
        buf_reset(ev);
        return 0;
}

static void *linger_main(void *arg) {
        struct run_events *ev = arg;
        pthread_mutex_lock(&ev->lock);
        while (!ev->stopping) {
                int64_t now = time_mono_us();
                int64_t due = ev->n_buf ? ev->buf_first_mono + ev->cfg->linger_ms * 1000 : now + 1000000;
                if (ev->n_buf && now >= due) {
                        (void)send_async_locked(ev);
                        continue;
                }
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                int64_t wait_us = due - now;
                ts.tv_sec += wait_us / 1000000;
                ts.tv_nsec += (wait_us % 1000000) * 1000;
                if (ts.tv_nsec >= 1000000000) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000;
                }
                pthread_cond_timedwait(&ev->cond, &ev->lock, &ts);
        }
        pthread_mutex_unlock(&ev->lock);
        return NULL;
}

void events_done(struct run_events *ev) {
        pthread_mutex_lock(&ev->lock);
        (void)send_async_locked(ev);
        (void)events_flush_locked(ev);
        ev->stopping = true;
        pthread_cond_signal(&ev->cond);
        pthread_mutex_unlock(&ev->lock);
        if (ev->linger_started)
                pthread_join(ev->linger, NULL);
        free(ev->buf);
        ev->buf = NULL;
        ev->tally = kafka_tally_free(ev->tally);
        pthread_cond_destroy(&ev->cond);
        pthread_mutex_destroy(&ev->lock);
}

int events_flush(struct run_events *ev) {
        pthread_mutex_lock(&ev->lock);
        int r = send_async_locked(ev);
        int k = events_flush_locked(ev);
        pthread_mutex_unlock(&ev->lock);
        return r < 0 ? r : k;
}

static int events_emit_locked(struct run_events *ev, const char *kind, const char *actor, json_t *data,
                              const char *status, bool terminal, bool sync);

/* The kinds the scheduler and the api act on (docs/CONTRACTS.md, topic
 * paddock.runs.status): copied there so that they never read the firehose. */
static bool events_control_relevant(const char *kind) {
        /* usage: at most one a second per run (gateway_hook.c), applied to
         * the run row by the api */
        return !strcmp(kind, "status") || !strcmp(kind, "approval_requested") || !strcmp(kind, "approval_decided") ||
               !strcmp(kind, "usage");
}

/* Produces the copy of a control-relevant event (the same bytes, seq and
 * message id as on paddock.runs.events, already acknowledged there) on
 * paddock.runs.status, waiting for the broker like a sync event, so that the
 * copies of one run are in seq order and a status consumer never sees an
 * event the history cannot get. Retried like a sync event; only a shutdown
 * gives up (counted as lost; the restarted runner ends the run). */
static int events_status_copy(struct run_events *ev, const char *kind, const void *buf, size_t len) {
        if (!events_control_relevant(kind))
                return 0;
        struct err_detail err = {0};
        int r;
        for (int attempt = 1;; attempt++) {
                r = kafka_produce_sync(ev->producer, TOPIC_RUNS_STATUS, ev->run_id, buf, len, EVENTS_SYNC_TIMEOUT_MS,
                                       &err);
                if (r >= 0)
                        return 0;
                log_ctx(LOG_WARN, LOG_KV("run", ev->run_id, "kind", kind),
                        "could not produce run status copy (attempt %d): %s", attempt, err.message);
                if (!events_retry_wait(attempt))
                        break;
        }
        log_ctx(LOG_ERROR, LOG_KV("run", ev->run_id, "kind", kind), "run status copy not delivered before shutdown: %s",
                err.message);
        ev->lost++;
        return r;
}

int events_emit(struct run_events *ev, const char *kind, const char *actor, json_t *data,
                const char *status, bool terminal, bool sync) {
        pthread_mutex_lock(&ev->lock);
        int r = events_emit_locked(ev, kind, actor, data, status, terminal, sync);
        pthread_mutex_unlock(&ev->lock);
        return r;
}

/* Appends one length-delimited RunEvent (field 1 of RunEventBatch). */
static int buf_append(struct run_events *ev, const uint8_t *p, size_t n) {
        size_t need = ev->len + n + 11;
        if (need > ev->cap) {
                size_t cap = ev->cap ? ev->cap : 4096;
                while (cap < need)
                        cap *= 2;
                uint8_t *b = realloc(ev->buf, cap);
                if (!b)
                        return -ENOMEM;
                ev->buf = b;
                ev->cap = cap;
        }
        ev->buf[ev->len++] = 0x0a; /* field 1, length-delimited */
        for (size_t v = n;; v >>= 7) {
                ev->buf[ev->len++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
                if (v <= 0x7f)
                        break;
        }
        memcpy(ev->buf + ev->len, p, n);
        ev->len += n;
        return 0;
}

static int events_emit_locked(struct run_events *ev, const char *kind, const char *actor, json_t *data,
                              const char *status, bool terminal, bool sync) {
        Paddock__V1__Envelope env;
        Paddock__V1__RunEvent msg = PADDOCK__V1__RUN_EVENT__INIT;
        char msgid[UUID_STR_LEN];
        /* an event's data and its encoding fit these (file events: a path
         * and a few fields); a larger one is allocated */
        char data_small[4096];
        uint8_t packed_small[4096];
        _cleanup_free_ char *data_big = NULL;
        _cleanup_free_ uint8_t *packed_big = NULL;
        const char *data_json;
        uint8_t *packed;
        int r;

        /* what could not be delivered is said, never silently dropped
         * (docs/CONTRACTS.md): the terminal status counts it */
        if (terminal) {
                (void)send_async_locked(ev);
                (void)events_flush_locked(ev);
                if (ev->lost > 0)
                        json_object_set_new(data, "events_lost", json_integer((json_int_t)ev->lost));
        }
        /* json_dump_fast: jansson's bytes without its per-character
         * callbacks, a fifth of the capture thread's CPU at 10k events/s
         * (issue 10 §4) */
        const size_t dump_flags = JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(9);
        size_t dlen = json_dump_fast(data, data_small, sizeof data_small, dump_flags);
        if (dlen > 0 && dlen < sizeof data_small) {
                data_small[dlen] = '\0';
                data_json = data_small;
        } else if (!(data_json = data_big = json_dumps(data, dump_flags)))
                return -ENOMEM;
        r = envelope_init(&env, ev->tenant_id, ev->run_id, ev->seq + 1, ev->producer_name, msgid);
        if (r < 0)
                return r;
        msg.env = &env;
        msg.kind = (char *)kind;
        msg.actor = (char *)actor;
        msg.data_json = (char *)data_json;
        msg.team_id = (char *)(ev->team_id ? ev->team_id : "");
        msg.status = (char *)(status ? status : "");
        msg.terminal = terminal;

        size_t len = paddock__v1__run_event__get_packed_size(&msg);
        packed = len <= sizeof packed_small ? packed_small : (packed_big = malloc(len));
        if (!packed)
                return -ENOMEM;
        paddock__v1__run_event__pack(&msg, packed);

        /* a full record goes first; so does everything when there is no linger thread */
        if (ev->n_buf > 0 && ((long long)ev->n_buf >= ev->cfg->max_events ||
                              (long long)(ev->len + len) > ev->cfg->max_bytes)) {
                r = send_async_locked(ev);
                if (r < 0 && r != -ENOBUFS && !atomic_load(&ev->overrun))
                        return r;
        }
        r = buf_append(ev, packed, len);
        if (r < 0) {
                ev->lost++;
                return r;
        }
        if (ev->n_buf++ == 0) {
                ev->buf_first_seq = ev->seq + 1;
                ev->buf_first_mono = time_mono_us();
                pthread_cond_signal(&ev->cond);
        }
        ev->seq++;
        /* a control-relevant event is acknowledged on the firehose before
         * its copy goes to paddock.runs.status (events_status_copy) */
        if (sync || events_control_relevant(kind)) {
                r = send_sync_locked(ev, kind);
                return r < 0 ? r : events_status_copy(ev, kind, packed, len);
        }
        if (!ev->linger_started || ev->cfg->linger_ms == 0)
                return send_async_locked(ev);
        return 0;
}

int events_status(struct run_events *ev, const char *status, const char *reason, int exit_code,
                  bool terminal) {
        json_t *d = json_pack("{s:s}", "status", status);
        if (!d)
                return -ENOMEM;
        if (reason)
                json_object_set_new(d, "reason", json_string(reason));
        if (exit_code >= 0)
                json_object_set_new(d, "exit_code", json_integer(exit_code));
        int r = events_emit(ev, "status", "platform", d, status, terminal, true);
        json_decref(d);
        return r;
}

int events_output(struct run_events *ev, const char *stream, const char *text, size_t len) {
        json_t *d = json_object();
        if (!d)
                return -ENOMEM;
        json_object_set_new(d, "stream", json_string(stream));
        json_object_set_new(d, "text", json_stringn(text, len));
        int r = events_emit(ev, "output", "agent", d, NULL, false, false);
        json_decref(d);
        return r;
}

/* Produces msgs[0..n) in order, retried like a sync event until each is
 * acknowledged; only a shutdown gives up. */
static int replay_chunk(struct run_events *ev, const struct kafka_outgoing *msgs, size_t n) {
        size_t done = 0;
        for (int attempt = 1; done < n; attempt++) {
                struct err_detail err = {0};
                int k = kafka_produce_sync_many(ev->producer, msgs + done, n - done, EVENTS_SYNC_TIMEOUT_MS, &err);
                if (k > 0)
                        done += (size_t)k;
                if (done == n)
                        break;
                log_ctx(LOG_WARN, LOG_KV("run", ev->run_id), "could not produce spooled run events (attempt %d): %s",
                        attempt, err.message);
                if (!events_retry_wait(attempt))
                        return -ESHUTDOWN;
        }
        return 0;
}

int events_replay(struct run_events *ev, int fd) {
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        size_t size = (size_t)st.st_size;
        _cleanup_free_ uint8_t *data = malloc(size ? size : 1);
        if (!data)
                return -ENOMEM;
        for (size_t got = 0; got < size;) {
                ssize_t n = pread(fd, data + got, size - got, (off_t)got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        size = got; /* shorter than it was: read what is there */
                        break;
                }
                got += (size_t)n;
        }
        struct kafka_outgoing msgs[EVENTS_REPLAY_CHUNK];
        size_t off = 0, n = 0;
        int records = 0;
        for (;;) {
                size_t len = 0;
                bool whole = size - off >= 4;
                if (whole) {
                        const uint8_t *h = data + off;
                        len = ((size_t)h[0] << 24) | ((size_t)h[1] << 16) | ((size_t)h[2] << 8) | h[3];
                        whole = len <= size - off - 4;
                }
                if (whole) {
                        msgs[n++] = (struct kafka_outgoing){TOPIC_RUNS_EVENTS, ev->run_id, data + off + 4, len};
                        off += 4 + len;
                }
                if (n == ELEMENTSOF(msgs) || (!whole && n > 0)) {
                        int r = replay_chunk(ev, msgs, n);
                        if (r < 0) {
                                log_ctx(LOG_ERROR, LOG_KV("run", ev->run_id),
                                        "spooled run events not delivered before shutdown");
                                return r;
                        }
                        records += (int)n;
                        n = 0;
                }
                if (!whole)
                        break;
        }
        if (off < size)
                log_ctx(LOG_WARN, LOG_KV("run", ev->run_id),
                        "the run's event spool ends with a torn record (%zu bytes, never produced): ignored", size - off);
        return records;
}
