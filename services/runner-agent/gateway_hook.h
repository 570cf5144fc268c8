/* The model gateway's part of a run (gateway.h), as the two calls the egress
 * hook makes where it starts the proxy (proxy_hook.c): routes built from the
 * snapshot's model_routes with their keys opened from the sealed bundle
 * (secrets_model_key), the gateway bound in the sandbox netns, each call's
 * `model_call` event sent on the run's stream. Belongs to the run's worker
 * thread. */
#pragma once
#include "core/err.h"
#include "events.h"
#include "gateway.h"
#include "paddock/v1/runs.pb-c.h"
#include "secrets.h"

struct gateway_hook;

/* After secrets_run_wait(): starts the gateway when snap has model routes
 * (*ret NULL, 0 when it has none), with the snapshot's limits.max_tokens and
 * max_cost_usd enforced and a crossing told to on_limit (NULL: nobody). A
 * route with an unknown provider, no key, or an upstream the gateway refuses
 * is -EINVAL with reterr naming it: the run fails rather than run without its
 * gateway. Everything is borrowed until gateway_hook_stop(). */
int gateway_hook_start(const char *run_id, const char *netns_path, const Paddock__V1__SandboxSnapshot *snap,
                       const struct run_secrets *secrets, struct run_events *ev, gateway_limit_fn on_limit,
                       void *limit_userdata, struct gateway_hook **ret, struct err_detail *reterr);

/* Stops serving (every open call ends, its event is sent) and gives the
 * final totals and the per-model ones (*models malloc'd, the caller frees
 * it). Returns the number of models (0 without a gateway: *total zeroed), or
 * -ENOMEM. h may be NULL. */
int gateway_hook_usage(struct gateway_hook *h, struct gateway_totals *total, struct gateway_model_totals **models);

/* Stops the gateway (every open call ends, its event is sent); before the
 * secrets are freed. Accepts NULL; returns NULL. */
struct gateway_hook *gateway_hook_stop(struct gateway_hook *h);
