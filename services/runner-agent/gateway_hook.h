/* The model gateway's part of a run (gateway.h), as the calls the egress
 * hook makes where it starts the proxy (proxy_hook.c): routes built from the
 * snapshot's model_routes with their keys opened from the sealed bundle
 * (secrets_model_key), the gateway bound in the sandbox netns, each call's
 * `model_call` event sent on the run's stream, followed by a `usage` event
 * with the run's running totals at most once a second (docs/CONTRACTS.md
 * "Model gateway"); run.c puts the final totals in the `usage` event before
 * the terminal status (gateway_hook_final_usage). Belongs to the run's worker
 * thread. */
#pragma once
#include <jansson.h>

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

/* The run's final totals: stops serving (every open call ends and its
 * model_call is sent) and fills *ret and the per-model ones (*models
 * malloc'd, the caller frees it); zeros and none when h is NULL (no model
 * routes). No live usage event follows. Returns the number of models, or
 * -ENOMEM. Call before gateway_hook_stop(). */
int gateway_hook_final_usage(struct gateway_hook *h, struct gateway_totals *ret, struct gateway_model_totals **models);

/* Sets the `usage` event's figures on data (a JSON object, borrowed):
 * model_calls, input_tokens, output_tokens, cache_read_tokens,
 * cache_write_tokens, cost_usd. 0 or -ENOMEM. */
int gateway_usage_json(json_t *data, const struct gateway_totals *t);

/* Stops the gateway (every open call ends, its event is sent); before the
 * secrets are freed. Accepts NULL; returns NULL. */
struct gateway_hook *gateway_hook_stop(struct gateway_hook *h);
