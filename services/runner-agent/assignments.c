#include "assignments.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/macro.h"
#include "core/shutdown.h"
#include "core/timeutil.h"
#include "kafka/consume_loop.h"
#include "kafka/kafka.h"
#include "kafka/topics.h"
#include "drain.h"
#include "metrics_runner.h"
#include "orphans.h"
#include "run.h"

#define POLL_MS 500

int assignments_mark(struct agent *a, const char *run_id, const char *text) {
        _cleanup_free_ char *path = NULL, *tmp = NULL;
        if (asprintf(&path, "%s/%s", a->done_dir, run_id) < 0 || asprintf(&tmp, "%s.tmp", path) < 0)
                return -ENOMEM;
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        size_t len = strlen(text);
        int r = write(fd, text, len) == (ssize_t)len ? 0 : -EIO;
        /* the marker is what makes redelivery harmless: it must be on disk before the commit */
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        close(fd);
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0) {
                unlink(tmp);
                log_ctx(LOG_ERROR, LOG_KV("run", run_id), "could not write run marker %s: %s", path, strerror(-r));
        }
        return r;
}

static bool marker_exists(struct agent *a, const char *run_id) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", a->done_dir, run_id);
        return access(path, F_OK) == 0;
}

void assignments_reap(struct agent *a, bool cancel_all) {
        pthread_mutex_lock(&a->lock);
        if (cancel_all)
                for (unsigned i = 0; i < a->n_slots; i++)
                        if (a->slots[i].busy)
                                atomic_store(&a->slots[i].cancel, true);
        for (;;) {
                bool any_busy = false;
                for (unsigned i = 0; i < a->n_slots; i++) {
                        struct run_slot *s = &a->slots[i];
                        if (!s->busy)
                                continue;
                        if (s->finished) {
                                pthread_t t = s->thread;
                                pthread_mutex_unlock(&a->lock);
                                pthread_join(t, NULL);
                                pthread_mutex_lock(&a->lock);
                                s->busy = s->finished = false;
                                s->run_id[0] = 0;
                                metric_add(&runner_metric_runs_running, -1);
                        } else {
                                any_busy = true;
                        }
                }
                if (!cancel_all || !any_busy)
                        break;
                pthread_cond_wait(&a->cond, &a->lock);
        }
        pthread_mutex_unlock(&a->lock);
}

unsigned agent_running(struct agent *a, double *cpus, uint64_t *memory_mb, char ***run_ids) {
        unsigned n = 0;
        double c = 0;
        uint64_t m = 0;
        pthread_mutex_lock(&a->lock);
        char **ids = run_ids ? calloc(a->n_slots + 1, sizeof *ids) : NULL;
        for (unsigned i = 0; i < a->n_slots; i++) {
                struct run_slot *s = &a->slots[i];
                if (!s->busy || s->finished)
                        continue;
                if (ids)
                        ids[n] = strdup(s->run_id);
                n++;
                c += s->cpus;
                m += s->memory_mb;
        }
        pthread_mutex_unlock(&a->lock);
        if (cpus)
                *cpus = c;
        if (memory_mb)
                *memory_mb = m;
        if (run_ids)
                *run_ids = ids;
        return n;
}

/* Waits for a free slot (or shutdown). Consuming stops meanwhile, so the
 * message stays uncommitted; the consumer's max.poll.interval is set long
 * enough in main.c for the longest run. Returns the slot or NULL on shutdown. */
static struct run_slot *acquire_slot(struct agent *a) {
        for (;;) {
                assignments_reap(a, false);
                pthread_mutex_lock(&a->lock);
                for (unsigned i = 0; i < a->n_slots; i++)
                        if (!a->slots[i].busy) {
                                struct run_slot *s = &a->slots[i];
                                pthread_mutex_unlock(&a->lock);
                                return s;
                        }
                if (shutdown_requested()) {
                        pthread_mutex_unlock(&a->lock);
                        return NULL;
                }
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += 200 * 1000 * 1000;
                if (ts.tv_nsec >= 1000000000) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000;
                }
                pthread_cond_timedwait(&a->cond, &a->lock, &ts);
                pthread_mutex_unlock(&a->lock);
        }
}

static bool running_here(struct agent *a, const char *run_id) {
        bool found = false;
        pthread_mutex_lock(&a->lock);
        for (unsigned i = 0; i < a->n_slots; i++)
                if (a->slots[i].busy && !strcmp(a->slots[i].run_id, run_id))
                        found = true;
        pthread_mutex_unlock(&a->lock);
        return found;
}

/* The assignments route: applies one message of paddock.runs.assigned.
 * Returns 0 once the run is durably accepted here (its done/<run id> marker
 * is on disk and its worker started) or the message is not this node's to
 * run; KAFKA_SKIP or -EINVAL for a message that can never be run; another
 * negative errno leaves it uncommitted (shutting down before acceptance, or
 * the marker could not be written: the loop retries it until the stop). */
static int handle(void *userdata, const struct kafka_message *m, struct err_detail *err) {
        struct agent *a = userdata;
        int64_t received = time_mono_us();
        Paddock__V1__RunAssigned *ra = paddock__v1__run_assigned__unpack(NULL, m->len, m->value);
        if (!ra)
                return err_set(err, KAFKA_SKIP, "decode", "undecodable run assignment");
        if (!ra->node_id || strcmp(ra->node_id, a->node_id) != 0) {
                paddock__v1__run_assigned__free_unpacked(ra, NULL);
                return 0;
        }
        const Paddock__V1__RunRequested *req = ra->request;
        const char *run_id = ra->env && ra->env->run_id && ra->env->run_id[0] ? ra->env->run_id
                           : req && req->env ? req->env->run_id : NULL;
        /* the run id names paths and cgroups: only a canonical UUID is acceptable */
        if (!run_id || !id_is_uuid(run_id) || !req || !req->sandbox) {
                int r = err_set(err, -EINVAL, "run_assignment", "malformed run assignment for run %s (run id or sandbox missing)",
                                run_id && id_is_uuid(run_id) ? run_id : "(invalid)");
                paddock__v1__run_assigned__free_unpacked(ra, NULL);
                return r;
        }
        if (marker_exists(a, run_id) || running_here(a, run_id)) {
                log_ctx(LOG_INFO, LOG_KV("run", run_id), "run already accepted on this node, not starting it again");
                paddock__v1__run_assigned__free_unpacked(ra, NULL);
                return 0;
        }
        struct run_slot *slot = acquire_slot(a);
        if (!slot || shutdown_requested()) {
                /* stopping: leave it uncommitted for the next start */
                paddock__v1__run_assigned__free_unpacked(ra, NULL);
                return err_set(err, -ESHUTDOWN, "shutdown", "stopping before run %s was accepted", run_id);
        }
        int r = assignments_mark(a, run_id, "accepted\n");
        if (r < 0) {
                /* without the marker a redelivery could start it twice; leave it
                 * uncommitted and stop, since committing a later offset would skip it */
                log_ctx(LOG_ERROR, LOG_KV("run", run_id), "stopping: cannot record accepted runs");
                shutdown_request();
                paddock__v1__run_assigned__free_unpacked(ra, NULL);
                return err_set(err, kafka_error_is_permanent(r) ? -EIO : r, "marker",
                               "could not record run %s as accepted: %s", run_id, strerror(-r));
        }
        const Paddock__V1__Limits *lim = req->sandbox->limits;
        pthread_mutex_lock(&a->lock);
        slot->busy = true;
        slot->finished = false;
        snprintf(slot->run_id, sizeof slot->run_id, "%s", run_id);
        slot->cpus = lim && lim->cpus > 0 ? lim->cpus : 1.0;
        slot->memory_mb = lim && lim->memory_mb ? lim->memory_mb : 2048;
        atomic_store(&slot->cancel, false);
        slot->received_mono_us = received;
        slot->assigned = ra;
        slot->agent = a;
        r = pthread_create(&slot->thread, NULL, run_thread, slot);
        if (r != 0) {
                slot->busy = false;
                slot->assigned = NULL;
        }
        pthread_mutex_unlock(&a->lock);
        if (r != 0) {
                log_ctx(LOG_ERROR, LOG_KV("run", run_id), "could not start a worker thread: %s", strerror(r));
                shutdown_request();
                char path[4096];
                snprintf(path, sizeof path, "%s/%s", a->done_dir, run_id);
                unlink(path);
                paddock__v1__run_assigned__free_unpacked(ra, NULL);
                return err_set(err, -EAGAIN, "thread", "could not start run %s: %s", run_id, strerror(r));
        }
        metric_add(&runner_metric_runs_accepted, 1);
        metric_add(&runner_metric_runs_running, 1);
        log_ctx(LOG_INFO, LOG_KV("run", run_id, "tenant", req->env ? req->env->tenant_id : ""), "run accepted");
        return 0;
}

const struct kafka_route assignments_routes[] = {
        {TOPIC_RUNS_ASSIGNED, .handle = handle},
        {0}, /* clang: {NULL} leaves .handle "missing" */
};

/* Orphans inherited as subreaper (orphans.h): looked for every 10 s, reaped
 * once a zombie for a minute; only this thread runs it. */
#define ORPHANS_EVERY_US (10 * 1000000LL)
#define ORPHANS_MIN_AGE_US (60 * 1000000LL)

static void orphans_tick(void) {
        static struct orphan_reaper reaper;
        static int64_t next_us;
        int64_t now = time_mono_us();
        if (now < next_us)
                return;
        next_us = now + ORPHANS_EVERY_US;
        int n = orphans_reap(&reaper, now, ORPHANS_MIN_AGE_US);
        if (n > 0) {
                metric_add(&runner_metric_orphans_reaped, n);
                log_info("reaped %d orphaned process%s (zombie children no waiter of ours took)", n, n == 1 ? "" : "es");
        }
}

static void reap_tick(void *userdata) {
        assignments_reap(userdata, false);
        orphans_tick();
        runner_drain_tick(userdata); /* drained and idle: stop (drain.h) */
}

int assignments_loop(struct agent *a, struct kafka_consumer *c) {
        /* rounds of one message: each assignment is committed as soon as its
         * run is accepted, never held back by a later one waiting for a slot */
        const struct kafka_consume_loop_options lo = {.poll_timeout_ms = POLL_MS, .batch_max = 1, .tick = reap_tick};
        int r = kafka_consume_routes(c, assignments_routes, a, &lo);
        if (r < 0)
                log_error("consuming run assignments failed: %s", strerror(-r));
        return r;
}
