#include "run_policy.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/macro.h"
#include "core/timeutil.h"
#include "events.h"

#define ASK_TIMEOUT_MAX_S 86400
#define GRANTS_MAX 64

struct ask {
        char id[UUID_STR_LEN];
        int64_t deadline_mono;
        bool decided, approved;
        char by[RUN_POLICY_BY_MAX];
        run_policy_answer_fn fn;
        void *userdata;
        struct ask *next;
};

struct grant {
        char *command;
        int64_t until_mono;
};

struct run_policy {
        const char *run_id;
        struct run_events *ev;
        struct policy_engine *engine;
        unsigned ask_timeout_s;

        pthread_mutex_t lock; /* asks, closing, grants */
        pthread_cond_t cond;  /* an ask decided or added, or closing */
        struct ask *asks;
        bool closing;
        bool joined;          /* run_policy_close took the thread */
        pthread_t thread;
        struct grant grants[GRANTS_MAX];
        size_t n_grants;
        atomic_uint pending;  /* asks made and not yet answered (run_policy_waiting) */

        struct run_policy *next; /* in registry.runs */
};

/* Every live run's policy, for decisions arriving on the control topic. */
static struct {
        pthread_mutex_t lock;
        struct run_policy *runs;
} registry = {.lock = PTHREAD_MUTEX_INITIALIZER};

static const char *const request_fields[] = {"tool", "command", "path", "host", "mcp_server", "mcp_tool"};

/* The request's present fields into d (borrowed), then extra's keys. */
static void request_json(json_t *d, const struct policy_request *req, json_t *extra) {
        const char *v[] = {req->tool, req->command, req->path, req->host, req->mcp_server, req->mcp_tool};
        for (size_t i = 0; i < ELEMENTSOF(v); i++)
                if (v[i])
                        json_object_set_new(d, request_fields[i], json_string(v[i]));
        if (json_is_object(extra))
                json_object_update_missing(d, extra);
}

static json_t *rule_json(const struct run_policy *rp, int rule) {
        const char *src = policy_rule_source(rp->engine, rule);
        if (src)
                return json_string(src);
        if (rule < 0)
                return json_null();
        char name[48];
        snprintf(name, sizeof name, "rules[%d]", rule);
        return json_string(name);
}

/* ---- the approvals thread: answers decided and expired asks */

static struct ask *take_ready_locked(struct run_policy *rp, int64_t now, int64_t *next_deadline) {
        *next_deadline = INT64_MAX;
        for (struct ask **p = &rp->asks; *p; p = &(*p)->next) {
                struct ask *a = *p;
                if (!a->decided && rp->closing) {
                        a->decided = true;
                        snprintf(a->by, sizeof a->by, "run_ended");
                }
                if (!a->decided && now >= a->deadline_mono) {
                        a->decided = true;
                        snprintf(a->by, sizeof a->by, "timeout");
                }
                if (a->decided) {
                        *p = a->next;
                        return a;
                }
                if (a->deadline_mono < *next_deadline)
                        *next_deadline = a->deadline_mono;
        }
        return NULL;
}

static void answer(struct run_policy *rp, struct ask *a) {
        /* what the runner applied is the truth (approvals.c in the api reads it) */
        if (strcmp(a->by, "run_ended")) {
                json_t *d = json_pack("{s:s, s:s, s:s}", "approval_id", a->id, "decision", a->approved ? "approve" : "deny",
                                      "by", a->by);
                if (d)
                        events_emit(rp->ev, "approval_decided", "platform", d, NULL, false, true);
                json_decref(d);
        }
        log_ctx(LOG_INFO, LOG_KV("run", rp->run_id, "approval", a->id, "by", a->by),
                a->approved ? "held action approved" : "held action denied");
        a->fn(a->userdata, a->approved, a->id, a->by);
        free(a);
        atomic_fetch_sub(&rp->pending, 1);
}

static void *approvals_thread(void *userdata) {
        struct run_policy *rp = userdata;
        pthread_mutex_lock(&rp->lock);
        for (;;) {
                int64_t next;
                struct ask *a = take_ready_locked(rp, time_mono_us(), &next);
                if (a) {
                        pthread_mutex_unlock(&rp->lock);
                        answer(rp, a);
                        pthread_mutex_lock(&rp->lock);
                        continue;
                }
                if (rp->closing)
                        break;
                if (next == INT64_MAX)
                        pthread_cond_wait(&rp->cond, &rp->lock);
                else {
                        struct timespec ts = {.tv_sec = next / 1000000, .tv_nsec = (next % 1000000) * 1000};
                        pthread_cond_timedwait(&rp->cond, &rp->lock, &ts);
                }
        }
        pthread_mutex_unlock(&rp->lock);
        return NULL;
}

/* ---- life */

int run_policy_new(const char *run_id, const Paddock__V1__SandboxSnapshot *snap, struct run_events *ev,
                   struct run_policy **ret, struct err_detail *reterr) {
        *ret = NULL;
        json_t *pol = NULL;
        const char *text = snap && snap->policy_json ? snap->policy_json : "";
        if (text[0]) {
                json_error_t je;
                pol = json_loads(text, JSON_REJECT_DUPLICATES, &je);
                if (!json_is_object(pol)) {
                        json_decref(pol);
                        return err_set(reterr, -EINVAL, "policy", "policy_json is not a JSON object: %s", je.text);
                }
        }
        json_t *jt = json_object_get(pol, "ask_timeout_s");
        struct run_policy *rp = NULL;
        int r = 0;
        if (jt && (!json_is_integer(jt) || json_integer_value(jt) < 1 || json_integer_value(jt) > ASK_TIMEOUT_MAX_S))
                r = err_set(reterr, -EINVAL, "policy", "policy_json.ask_timeout_s must be 1-%d", ASK_TIMEOUT_MAX_S);
        else if (!(rp = calloc(1, sizeof *rp)))
                r = -ENOMEM;
        else {
                rp->run_id = run_id;
                rp->ev = ev;
                rp->ask_timeout_s = jt ? (unsigned)json_integer_value(jt) : RUN_DEFAULT_ASK_TIMEOUT_S;
                r = policy_engine_new_effective(json_object_get(pol, "rules"), "policy_json.rules", &rp->engine,
                                                reterr);
        }
        json_decref(pol);
        if (r < 0) {
                free(rp);
                return r;
        }
        pthread_mutex_init(&rp->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&rp->cond, &ca);
        pthread_condattr_destroy(&ca);
        if (pthread_create(&rp->thread, NULL, approvals_thread, rp) != 0) {
                pthread_cond_destroy(&rp->cond);
                pthread_mutex_destroy(&rp->lock);
                policy_engine_free(rp->engine);
                free(rp);
                return err_set(reterr, -EAGAIN, "policy", "could not start the approvals thread");
        }
        pthread_mutex_lock(&registry.lock);
        rp->next = registry.runs;
        registry.runs = rp;
        pthread_mutex_unlock(&registry.lock);
        *ret = rp;
        return 0;
}

void run_policy_close(struct run_policy *rp) {
        if (!rp)
                return;
        pthread_mutex_lock(&rp->lock);
        bool joined = rp->joined;
        rp->closing = true;
        rp->joined = true;
        pthread_cond_signal(&rp->cond);
        pthread_mutex_unlock(&rp->lock);
        if (!joined)
                pthread_join(rp->thread, NULL); /* every pending ask answered "run_ended" */
}

struct run_policy *run_policy_free(struct run_policy *rp) {
        if (!rp)
                return NULL;
        pthread_mutex_lock(&registry.lock);
        for (struct run_policy **p = &registry.runs; *p; p = &(*p)->next)
                if (*p == rp) {
                        *p = rp->next;
                        break;
                }
        pthread_mutex_unlock(&registry.lock);
        run_policy_close(rp);
        for (size_t i = 0; i < rp->n_grants; i++)
                free(rp->grants[i].command);
        pthread_cond_destroy(&rp->cond);
        pthread_mutex_destroy(&rp->lock);
        policy_engine_free(rp->engine);
        free(rp);
        return NULL;
}

const struct policy_engine *run_policy_engine(const struct run_policy *rp) {
        return rp ? rp->engine : NULL;
}

unsigned run_policy_ask_timeout_s(const struct run_policy *rp) {
        return rp ? rp->ask_timeout_s : RUN_DEFAULT_ASK_TIMEOUT_S;
}

bool run_policy_waiting(struct run_policy *rp) {
        return rp && atomic_load(&rp->pending) > 0;
}

/* ---- decisions */

struct policy_decision run_policy_decide(struct run_policy *rp, const char *level, const struct policy_request *req,
                                         json_t *extra, bool always_emit) {
        if (!rp)
                return (struct policy_decision){.action = POLICY_ALLOW, .rule = -1};
        struct policy_decision d = policy_decide(rp->engine, req);
        if (d.rule < 0 && !always_emit)
                return d;
        json_t *data = json_pack("{s:s, s:s, s:o, s:i}", "level", level, "action", policy_action_name(d.action), "rule",
                                 rule_json(rp, d.rule), "rule_index", d.rule);
        if (data) {
                request_json(data, req, extra);
                events_emit(rp->ev, "policy_decision", "platform", data, NULL, false, false);
        }
        json_decref(data);
        return d;
}

int run_policy_ask(struct run_policy *rp, const char *kind, const struct policy_request *req, int rule,
                   json_t *extra, run_policy_answer_fn fn, void *userdata, char approval_id[UUID_STR_LEN]) {
        if (!rp || !fn)
                return -EINVAL;
        struct ask *a = calloc(1, sizeof *a);
        if (!a || id_new_uuid(a->id) < 0) {
                free(a);
                return -ENOMEM;
        }
        a->fn = fn;
        a->userdata = userdata;
        a->deadline_mono = time_mono_us() + (int64_t)rp->ask_timeout_s * 1000000;
        memcpy(approval_id, a->id, UUID_STR_LEN);
        char deadline[64];
        time_format_rfc3339(time_now_us() + (int64_t)rp->ask_timeout_s * 1000000, deadline, sizeof deadline);
        json_t *d = json_pack("{s:s, s:s, s:o, s:i, s:s, s:i}", "approval_id", a->id, "kind", kind, "rule",
                              rule_json(rp, rule), "rule_index", rule, "deadline", deadline, "timeout_s",
                              (int)rp->ask_timeout_s);
        if (!d) {
                free(a);
                return -ENOMEM;
        }
        request_json(d, req, extra);
        /* on the bus before anyone can decide it: the api learns of the ask
         * from this event (paddock.runs.status) */
        int r = events_emit(rp->ev, "approval_requested", "platform", d, NULL, false, true);
        json_decref(d);
        if (r < 0) {
                free(a);
                return r;
        }
        pthread_mutex_lock(&rp->lock);
        if (rp->closing) { /* the thread is gone or going: answer here */
                pthread_mutex_unlock(&rp->lock);
                snprintf(a->by, sizeof a->by, "run_ended");
                fn(userdata, false, a->id, a->by);
                free(a);
                return 0;
        }
        a->next = rp->asks;
        rp->asks = a;
        atomic_fetch_add(&rp->pending, 1);
        pthread_cond_signal(&rp->cond);
        pthread_mutex_unlock(&rp->lock);
        log_ctx(LOG_INFO, LOG_KV("run", rp->run_id, "approval", approval_id, "kind", kind), "action waits for approval");
        return 0;
}

struct waiter {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool done, approved;
        char by[RUN_POLICY_BY_MAX];
};

static void on_waited(void *userdata, bool approved, const char *approval_id, const char *by) {
        (void)approval_id;
        struct waiter *w = userdata;
        pthread_mutex_lock(&w->lock);
        w->approved = approved;
        snprintf(w->by, sizeof w->by, "%s", by);
        w->done = true;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->lock);
}

bool run_policy_ask_wait(struct run_policy *rp, const char *kind, const struct policy_request *req, int rule,
                         json_t *extra, char by[RUN_POLICY_BY_MAX], char approval_id[UUID_STR_LEN]) {
        struct waiter w = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
        approval_id[0] = '\0';
        if (run_policy_ask(rp, kind, req, rule, extra, on_waited, &w, approval_id) < 0) {
                snprintf(by, RUN_POLICY_BY_MAX, "error");
                return false;
        }
        pthread_mutex_lock(&w.lock);
        while (!w.done)
                pthread_cond_wait(&w.cond, &w.lock);
        pthread_mutex_unlock(&w.lock);
        snprintf(by, RUN_POLICY_BY_MAX, "%s", w.by);
        return w.approved;
}

/* ---- grants */

void run_policy_grant_command(struct run_policy *rp, const char *command, unsigned ttl_s) {
        if (!rp || !command)
                return;
        int64_t now = time_mono_us();
        pthread_mutex_lock(&rp->lock);
        size_t slot = rp->n_grants;
        for (size_t i = 0; i < rp->n_grants; i++)
                if (rp->grants[i].until_mono <= now) { /* reuse an expired one */
                        slot = i;
                        break;
                }
        if (slot == GRANTS_MAX) /* full: replace the oldest-ending one */
                for (size_t i = slot = 0; i < GRANTS_MAX; i++)
                        if (rp->grants[i].until_mono < rp->grants[slot].until_mono)
                                slot = i;
        char *copy = strdup(command);
        if (copy) {
                if (slot < rp->n_grants)
                        free(rp->grants[slot].command);
                else
                        rp->n_grants++;
                rp->grants[slot] = (struct grant){copy, now + (int64_t)ttl_s * 1000000};
        }
        pthread_mutex_unlock(&rp->lock);
}

bool run_policy_command_granted(struct run_policy *rp, const char *command) {
        if (!rp || !command)
                return false;
        int64_t now = time_mono_us();
        bool found = false;
        pthread_mutex_lock(&rp->lock);
        for (size_t i = 0; i < rp->n_grants && !found; i++)
                found = rp->grants[i].until_mono > now && !strcmp(rp->grants[i].command, command);
        pthread_mutex_unlock(&rp->lock);
        return found;
}

/* ---- decisions from the control topic */

bool run_policy_on_approval(const char *run_id, const Paddock__V1__ApprovalDecision *d) {
        if (!run_id || !d || !d->approval_id)
                return false;
        char by[RUN_POLICY_BY_MAX];
        const char *who = d->decided_by && d->decided_by[0] ? d->decided_by : "unknown";
        snprintf(by, sizeof by, strchr(who, ':') ? "%s" : "user:%s", who);
        bool taken = false;
        pthread_mutex_lock(&registry.lock);
        for (struct run_policy *rp = registry.runs; rp && !taken; rp = rp->next) {
                if (strcmp(rp->run_id, run_id))
                        continue;
                pthread_mutex_lock(&rp->lock);
                for (struct ask *a = rp->asks; a; a = a->next)
                        if (!strcmp(a->id, d->approval_id)) {
                                if (!a->decided) {
                                        a->decided = true;
                                        a->approved = d->approved;
                                        snprintf(a->by, sizeof a->by, "%s", by);
                                        pthread_cond_signal(&rp->cond);
                                }
                                taken = true;
                                break;
                        }
                pthread_mutex_unlock(&rp->lock);
        }
        pthread_mutex_unlock(&registry.lock);
        return taken;
}
