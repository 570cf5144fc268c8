#include "gateway_hook.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/macro.h"
#include "gateway.h"

struct gateway_hook {
        struct run_events *ev;
        struct gateway_route *routes;
        struct gateway_run *gw;
};

static void on_event(void *userdata, const char *kind, json_t *data) {
        struct gateway_hook *h = userdata;
        events_emit(h->ev, kind, "platform", data, NULL, false, false);
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
        int r = gateway_run_start(run_id, netns_path, h->routes, snap->n_model_routes, &lim, on_event, h, &h->gw,
                                  reterr);
        if (r < 0) {
                gateway_hook_stop(h);
                return r;
        }
        *ret = h;
        return 0;
}

int gateway_hook_usage(struct gateway_hook *h, struct gateway_totals *total, struct gateway_model_totals **models) {
        *total = (struct gateway_totals){0};
        *models = NULL;
        if (!h || !h->gw)
                return 0;
        gateway_run_drain(h->gw);
        gateway_run_totals(h->gw, total);
        return gateway_run_model_totals(h->gw, models);
}

struct gateway_hook *gateway_hook_stop(struct gateway_hook *h) {
        if (!h)
                return NULL;
        h->gw = gateway_run_stop(h->gw);
        free(h->routes);
        free(h);
        return NULL;
}
