#include "control.h"
#include "run_policy.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/ids.h"
#include "core/log.h"
#include "core/macro.h"
#include "core/shutdown.h"
#include "core/timeutil.h"
#include "kafka/consume_loop.h"
#include "kafka/kafka.h"
#include "kafka/topics.h"

#define CONTROL_POLL_MS 100

struct control {
        struct agent *a;
        struct kafka_consumer *consumer;
        pthread_t thread;
        atomic_bool stop;
};

static char *tombstone_path(const struct agent *a, const char *run_id) {
        char *p;
        return asprintf(&p, "%s/cancelled/%s", a->state_dir, run_id) < 0 ? NULL : p;
}

bool control_tombstone_take(struct agent *a, const char *run_id, char *by, size_t by_size, char *reason,
                            size_t reason_size) {
        _cleanup_free_ char *path = tombstone_path(a, run_id);
        if (!path)
                return false;
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f)
                return false;
        char line[512];
        by[0] = reason[0] = 0;
        if (fgets(line, sizeof line, f)) {
                line[strcspn(line, "\n")] = 0;
                snprintf(by, by_size, "%s", line);
        }
        if (fgets(line, sizeof line, f)) {
                line[strcspn(line, "\n")] = 0;
                snprintf(reason, reason_size, "%s", line);
        }
        unlink(path);
        if (!by[0])
                snprintf(by, by_size, "unknown");
        if (!reason[0])
                snprintf(reason, reason_size, "cancelled before the run started");
        return true;
}

/* Newlines would break the tombstone's two lines. */
static void one_line(char *dst, size_t size, const char *src) {
        snprintf(dst, size, "%s", src ? src : "");
        for (char *p = dst; *p; p++)
                if (*p == '\n' || *p == '\r')
                        *p = ' ';
}

static int tombstone_write(struct agent *a, const char *run_id, const char *by, const char *reason) {
        _cleanup_free_ char *path = tombstone_path(a, run_id), *tmp = NULL;
        if (!path || asprintf(&tmp, "%s.tmp", path) < 0)
                return -ENOMEM;
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        char b[128], r[256];
        one_line(b, sizeof b, by);
        one_line(r, sizeof r, reason);
        int k = dprintf(fd, "%s\n%s\n", b, r) > 0 ? 0 : -EIO;
        /* committed after this: it must survive a crash */
        if (k == 0 && fsync(fd) < 0)
                k = -errno;
        close(fd);
        if (k == 0 && rename(tmp, path) < 0)
                k = -errno;
        if (k < 0)
                unlink(tmp);
        return k;
}

/* The run's ending as recorded by the done marker: "" none, "accepted", or a
 * terminal status. */
static void marker_of(struct agent *a, const char *run_id, char *buf, size_t size) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", a->done_dir, run_id);
        buf[0] = 0;
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (f && fgets(buf, (int)size, f))
                buf[strcspn(buf, "\n")] = 0;
}

/* Sets the slot's cancel request; true if the run is busy here. */
static bool cancel_running(struct agent *a, const char *run_id, const Paddock__V1__CancelRun *cr, int64_t received) {
        bool found = false;
        pthread_mutex_lock(&a->lock);
        for (unsigned i = 0; i < a->n_slots; i++) {
                struct run_slot *s = &a->slots[i];
                if (!s->busy || s->finished || strcmp(s->run_id, run_id))
                        continue;
                found = true;
                if (!atomic_load(&s->cancel)) {
                        one_line(s->cancel_by, sizeof s->cancel_by,
                                 cr->requested_by && cr->requested_by[0] ? cr->requested_by : "unknown");
                        one_line(s->cancel_reason, sizeof s->cancel_reason,
                                 cr->reason && cr->reason[0] ? cr->reason : "cancelled");
                        s->cancel_mono_us = received;
                        atomic_store(&s->cancel, true);
                        if (s->wake_fd > 0) {
                                uint64_t one = 1;
                                if (write(s->wake_fd, &one, sizeof one) < 0)
                                        log_ctx(LOG_WARN, LOG_KV("run", run_id), "could not wake the run: %m");
                        }
                }
        }
        pthread_mutex_unlock(&a->lock);
        return found;
}

static bool known_here(struct agent *a, const char *run_id) {
        bool found = false;
        pthread_mutex_lock(&a->lock);
        for (unsigned i = 0; i < a->n_slots; i++)
                if (a->slots[i].busy && !strcmp(a->slots[i].run_id, run_id))
                        found = true;
        pthread_mutex_unlock(&a->lock);
        return found;
}

static void handle_cancel(struct agent *a, const char *run_id, const Paddock__V1__CancelRun *cr, int64_t received) {
        const char *by = cr->requested_by && cr->requested_by[0] ? cr->requested_by : "unknown";
        if (cancel_running(a, run_id, cr, received)) {
                log_ctx(LOG_INFO, LOG_KV("run", run_id, "requested_by", by), "cancel received for a running run");
                return;
        }
        char marker[64];
        marker_of(a, run_id, marker, sizeof marker);
        if (marker[0] && strcmp(marker, "accepted") != 0) {
                log_ctx(LOG_INFO, LOG_KV("run", run_id, "status", marker), "cancel for a run that already ended, ignored");
                return;
        }
        int r = tombstone_write(a, run_id, by, cr->reason && cr->reason[0] ? cr->reason : "cancelled");
        if (r < 0)
                log_ctx(LOG_ERROR, LOG_KV("run", run_id), "could not record the cancel: %s", strerror(-r));
        /* the assignment may have been accepted between the two looks */
        if (cancel_running(a, run_id, cr, received))
                log_ctx(LOG_INFO, LOG_KV("run", run_id, "requested_by", by), "cancel received for a run just started");
        else
                log_ctx(LOG_INFO, LOG_KV("run", run_id, "requested_by", by),
                        "cancel for a run not started here, remembered");
}

/* The control route: applies one message of paddock.runs.control. Returns 0
 * once handled (a cancel's tombstone is on disk before that) or not ours;
 * KAFKA_SKIP / -EINVAL for a message that can never be handled. */
static int handle(void *userdata, const struct kafka_message *m, struct err_detail *err) {
        struct control *c = userdata;
        struct agent *a = c->a;
        int64_t received = time_mono_us();
        Paddock__V1__RunControl *rc = paddock__v1__run_control__unpack(NULL, m->len, m->value);
        if (!rc)
                return err_set(err, KAFKA_SKIP, "decode", "undecodable control message");
        const char *run_id = rc->env && rc->env->run_id ? rc->env->run_id : "";
        bool ours = rc->node_id && rc->node_id[0] && !strcmp(rc->node_id, a->node_id);
        bool anyone = !rc->node_id || !rc->node_id[0];
        int r = 0;
        if (!id_is_uuid(run_id)) {
                r = err_set(err, -EINVAL, "run_id", "control message without a valid run id");
        } else if (!ours && !anyone) {
                /* another node's run */
        } else if (strcmp(m->signer, "api") && rc->action_case != PADDOCK__V1__RUN_CONTROL__ACTION_CANCEL) {
                /* only the api decides approvals and seals secrets; the
                 * scheduler may only cancel (docs/CONTRACTS.md, signed messages) */
                bus_auth_refuse(m->topic, m->signer, BUS_REFUSED_WRONG_SUBJECT, "only the api decides approvals and sends secrets");
        } else if (rc->action_case == PADDOCK__V1__RUN_CONTROL__ACTION_CANCEL && rc->cancel) {
                /* unaddressed cancels are remembered too: the run may be
                 * assigned here after the api sent it */
                handle_cancel(a, run_id, rc->cancel, received);
        } else if (!ours && !known_here(a, run_id)) {
                /* approvals and secrets only concern runs we hold */
        } else if (rc->action_case == PADDOCK__V1__RUN_CONTROL__ACTION_APPROVAL && rc->approval) {
                /* a held tool call, exec or file open (run_policy.h), else the egress proxy's */
                if (run_policy_on_approval(run_id, rc->approval))
                        ;
                else if (proxy_on_approval)
                        proxy_on_approval(run_id, rc->approval);
                else
                        log_ctx(LOG_WARN, LOG_KV("run", run_id), "approval received but no egress proxy is built in");
        } else if (rc->action_case == PADDOCK__V1__RUN_CONTROL__ACTION_SECRETS && rc->secrets) {
                if (secrets_on_sealed)
                        secrets_on_sealed(run_id, rc->secrets);
                else
                        log_ctx(LOG_WARN, LOG_KV("run", run_id), "sealed secrets received but no secrets support is built in");
        }
        paddock__v1__run_control__free_unpacked(rc, NULL);
        return r;
}

static const struct kafka_route control_routes[] = {
        {TOPIC_RUNS_CONTROL, .handle = handle},
        {0}, /* clang: {NULL} leaves .handle "missing" */
};

static void *control_thread(void *userdata) {
        struct control *c = userdata;
        /* a short poll keeps control_stop prompt; no linger, so a cancel is
         * handled as soon as it is fetched (docs/CONTRACTS.md: within 1 s) */
        const struct kafka_consume_loop_options lo = {.poll_timeout_ms = CONTROL_POLL_MS, .batch_max = 100,
                                                      .stop = &c->stop};
        int r = kafka_consume_routes(c->consumer, control_routes, c, &lo);
        if (r < 0) {
                log_error("consuming run control messages failed: %s", strerror(-r));
                shutdown_request();
        }
        return NULL;
}

struct control *control_start(struct agent *a, struct err_detail *reterr) {
        _cleanup_free_ struct control *c = calloc(1, sizeof *c);
        if (!c) {
                err_set(reterr, -ENOMEM, "oom", "out of memory");
                return NULL;
        }
        c->a = a;
        char client_id[300], group[320];
        snprintf(client_id, sizeof client_id, "paddock-runner-control-%s", a->node_id);
        snprintf(group, sizeof group, "paddock-runner-control-%s", a->node_id);
        struct kafka_options o;
        kafka_settings_options(&a->cfg->kafka, client_id, a->auth, &o);
        c->consumer = kafka_consumer_new_routes(&o, group, control_routes, "earliest", reterr);
        if (!c->consumer)
                return NULL;
        int r = pthread_create(&c->thread, NULL, control_thread, c);
        if (r != 0) {
                kafka_consumer_free(c->consumer);
                err_set(reterr, -r, "thread", "could not start the control thread: %s", strerror(r));
                return NULL;
        }
        return TAKE_PTR(c);
}

struct control *control_stop(struct control *c) {
        if (!c)
                return NULL;
        atomic_store(&c->stop, true);
        pthread_join(c->thread, NULL);
        kafka_consumer_free(c->consumer);
        free(c);
        return NULL;
}
