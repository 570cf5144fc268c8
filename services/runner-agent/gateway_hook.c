#include "gateway_hook.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/macro.h"
#include "core/timeutil.h"
#include "gateway.h"

/* At most one live `usage` event per run per second (session decision 4):
 * it is copied to paddock.runs.status, which must stay low-volume. */
#define USAGE_INTERVAL_US 1000000

struct gateway_hook {
        struct run_events *ev;
        struct gateway_route *routes;
        pthread_mutex_t lock;          /* everything below */
        struct gateway_run *gw;
        int64_t last_usage_us;         /* monotonic time of the last live usage event */
        bool final;                    /* gateway_hook_final_usage() ran: no more live events */
};

int gateway_usage_json(json_t *data, const struct gateway_totals *t) {
        if (json_object_set_new(data, "model_calls", json_integer((json_int_t)t->calls)) < 0 ||
            json_object_set_new(data, "input_tokens", json_integer((json_int_t)t->input_tokens)) < 0 ||
            json_object_set_new(data, "output_tokens", json_integer((json_int_t)t->output_tokens)) < 0 ||
            json_object_set_new(data, "cache_read_tokens", json_integer((json_int_t)t->cache_read_tokens)) < 0 ||
            json_object_set_new(data, "cache_write_tokens", json_integer((json_int_t)t->cache_write_tokens)) < 0 ||
            json_object_set_new(data, "cost_usd", json_real(t->cost_usd)) < 0)
                return -ENOMEM;
        return 0;
}

/* After each call: its model_call, then the running totals when the last
 * live usage event is a second old or more. A call ending within the second
 * is counted by the next event (the next call's, or the final one before
 * the terminal status): the figures only lag, they are never lost. */
static void on_event(void *userdata, const char *kind, json_t *data) {
        struct gateway_hook *h = userdata;
        events_emit(h->ev, kind, "platform", data, NULL, false, false);
        if (strcmp(kind, "model_call"))
                return;
        pthread_mutex_lock(&h->lock);
        /* h->gw is NULL only if a call ended before gateway_run_start()
         * returned, which cannot happen before the agent starts; the next
         * call or the final event catches up */
        int64_t now = time_mono_us();
        if (!h->final && h->gw && now - h->last_usage_us >= USAGE_INTERVAL_US) {
                h->last_usage_us = now;
                struct gateway_totals t;
                gateway_run_totals(h->gw, &t);
                json_t *d = json_object();
                if (d && gateway_usage_json(d, &t) >= 0)
                        events_emit(h->ev, "usage", "platform", d, NULL, false, false);
                json_decref(d);
        }
        pthread_mutex_unlock(&h->lock);
}

int gateway_hook_start(const char *run_id, const char *netns_path, const Paddock__V1__SandboxSnapshot *snap,
                       const struct run_secrets *secrets, struct run_events *ev, gateway_limit_fn on_limit,
                       void *limit_userdata, struct gateway_hook **ret, struct err_detail *reterr) {
        *ret = NULL;
        if (!snap || snap->n_model_routes == 0)
                return 0;
        struct gateway_hook *h = calloc(1, sizeof *h);
        if (!h || !(h->routes = calloc(snap->n_model_routes, sizeof *h->routes))) {
                free(h);
                return err_set(reterr, -ENOMEM, "gateway", "out of memory");
        }
        pthread_mutex_init(&h->lock, NULL);
        h->ev = ev;
        for (size_t i = 0; i < snap->n_model_routes; i++) {
                const Paddock__V1__ModelRoute *m = snap->model_routes[i];
                struct gateway_route *r = &h->routes[i];
                if (!m->provider || (strcmp(m->provider, "anthropic") && strcmp(m->provider, "openai"))) {
                        gateway_hook_stop(h);
                        return err_set(reterr, -EINVAL, "gateway", "model route %zu: unknown provider", i);
                }
                r->provider = !strcmp(m->provider, "openai") ? GATEWAY_OPENAI : GATEWAY_ANTHROPIC;
                r->upstream = m->upstream;
                r->models = (const char *const *)m->models;
                r->n_models = m->n_models;
                r->key = secrets_model_key(secrets, i, &r->key_len);
                r->usd_per_mtok_input = m->usd_per_mtok_input;
                r->usd_per_mtok_output = m->usd_per_mtok_output;
                r->usd_per_mtok_cache_read = m->usd_per_mtok_cache_read;
                r->usd_per_mtok_cache_write = m->usd_per_mtok_cache_write;
                if (!r->key) {
                        gateway_hook_stop(h);
                        return err_set(reterr, -EINVAL, "gateway", "model route %zu has no key", i);
                }
        }
        struct gateway_limits lim = {.on_limit = on_limit, .userdata = limit_userdata};
        if (snap->limits) {
                lim.max_tokens = snap->limits->max_tokens;
                lim.max_cost_usd = snap->limits->max_cost_usd;
        }
        struct gateway_run *gw = NULL;
        int r = gateway_run_start(run_id, netns_path, h->routes, snap->n_model_routes, &lim, on_event, h, &gw, reterr);
        if (r < 0) {
                gateway_hook_stop(h);
                return r;
        }
        pthread_mutex_lock(&h->lock);
        h->gw = gw;
        pthread_mutex_unlock(&h->lock);
        *ret = h;
        return 0;
}

int gateway_hook_final_usage(struct gateway_hook *h, struct gateway_totals *ret, struct gateway_model_totals **models) {
        *ret = (struct gateway_totals){0};
        *models = NULL;
        if (!h)
                return 0;
        pthread_mutex_lock(&h->lock);
        struct gateway_run *gw = h->gw;
        pthread_mutex_unlock(&h->lock);
        if (!gw)
                return 0;
        /* every open call ends and sends its model_call (on_event: the
         * totals follow) before this returns; gw stays readable until
         * gateway_hook_stop() */
        gateway_run_drain(gw);
        pthread_mutex_lock(&h->lock);
        h->final = true;
        gateway_run_totals(gw, ret);
        pthread_mutex_unlock(&h->lock);
        return gateway_run_model_totals(gw, models);
}

struct gateway_hook *gateway_hook_stop(struct gateway_hook *h) {
        if (!h)
                return NULL;
        pthread_mutex_lock(&h->lock);
        struct gateway_run *gw = h->gw;
        pthread_mutex_unlock(&h->lock);
        gateway_run_stop(gw);
        pthread_mutex_destroy(&h->lock);
        free(h->routes);
        free(h);
        return NULL;
}
