/* The model gateway (issue 11 §3, session decision 4): per run, a plain-HTTP
 * endpoint on 127.0.0.1:GATEWAY_PORT INSIDE the sandbox network namespace
 * (bound there by a short-lived thread, like the egress proxy: nothing of
 * ours runs in the sandbox) that speaks the Anthropic Messages API
 * (POST /v1/messages, any query such as ?beta=true) and the OpenAI Responses
 * API (POST /v1/responses). Each call goes to the run's route for its
 * provider and model over TLS the gateway originates (lib/net/tls_client.h:
 * the one path shared with the proxy's header secrets, certificate verified),
 * with whatever key the agent sent (x-api-key, Authorization) removed and the
 * route's real key set; the key never enters the sandbox. The answer is
 * relayed as it arrives (SSE chunk by chunk, never the whole response
 * buffered), its usage is parsed from the stream (Anthropic message_start /
 * message_delta, OpenAI response.completed, or the JSON body of a
 * non-streaming call) and each call becomes one `model_call` event:
 * {provider, model, status, input_tokens, output_tokens, cache_read_tokens,
 * cache_write_tokens, latency_ms, ttft_ms, cost_usd, error?}. Failures
 * (upstream unreachable, TLS refused, 4xx/5xx, a stream cut short) reach the
 * agent in the provider's error shape and the event carries the status and
 * the reason. Token and cost totals are kept per run (gateway_run_totals) and
 * per model (gateway_run_model_totals). The run's limits (gateway_limits:
 * max_tokens, max_cost_usd) are enforced on the live count: a call that
 * starts with a limit reached is refused without reaching the upstream, a
 * streamed answer that crosses one is cut there (docs/CONTRACTS.md "Model
 * gateway").
 * Threads: one accept thread per run and one per open call (a run holds at
 * most max_conns); blocking I/O bounded by timeouts. All functions are
 * thread-safe. */
#pragma once
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

struct addr_floor;

#define GATEWAY_PORT 3129
#define GATEWAY_URL "http://127.0.0.1:3129"
#define GATEWAY_HEAD_MAX 65536         /* request or response head */

enum gateway_provider { GATEWAY_ANTHROPIC, GATEWAY_OPENAI };

/* The operator's bounds; GATEWAY_SETTINGS_DEFAULT unless gateway_configure(). */
struct gateway_settings {
        const char *ca_bundle;        /* PEM CAs trusted for upstreams; NULL or "": the system's (borrowed for the process) */
        int connect_timeout_ms;       /* resolve + TCP connect + TLS handshake to the upstream */
        int idle_timeout_ms;          /* no byte from the agent (request) or the upstream (answer) for this long */
        uint64_t max_body_bytes;      /* largest request body (Content-Length) */
        unsigned run_max_conns;       /* calls open at once per run */
        struct addr_floor *floor;     /* the platform egress floor (borrowed; NULL: none): an upstream
                                       * address inside it is never connected to, whatever its name
                                       * resolves to (docs/CONTRACTS.md "The platform egress floor") */
};

#define GATEWAY_SETTINGS_DEFAULT                                                                        \
        {.ca_bundle = NULL, .connect_timeout_ms = 10000, .idle_timeout_ms = 600000,                     \
         .max_body_bytes = 32ULL << 20, .run_max_conns = 32, .floor = NULL}

/* Applies s (copied) before the first gateway_run_start(): loads the CAs (an
 * unreadable or empty bundle is -EINVAL with reterr naming the file). Not
 * thread-safe: call from main() or a test's setup. */
int gateway_configure(const struct gateway_settings *s, struct err_detail *reterr);

/* One route: calls for provider whose model is in models (none listed: any
 * model) go to upstream ("https://host[:port][/prefix]", IPv6 in brackets)
 * with key in the provider's header (x-api-key for Anthropic, Authorization:
 * Bearer for OpenAI). Prices in USD per million tokens. Every string is
 * borrowed until gateway_run_stop(); key is never logged nor put in an event. */
struct gateway_route {
        enum gateway_provider provider;
        const char *upstream;
        const char *const *models;
        size_t n_models;
        const char *key;
        size_t key_len;
        double usd_per_mtok_input, usd_per_mtok_output, usd_per_mtok_cache_read, usd_per_mtok_cache_write;
};

/* Receives each call's event (kind "model_call"); data is borrowed. Called
 * from the gateway's threads, once per call, after the call ended. */
typedef void (*gateway_event_fn)(void *userdata, const char *kind, json_t *data);

/* input_tokens .. cache_write_tokens are the providers' own figures (OpenAI's
 * input_tokens include its cached ones, Anthropic's do not); tokens_in is
 * every token the model read whatever the provider (input + cache reads +
 * cache writes) and tokens_out what it wrote: tokens_in + tokens_out is what
 * max_tokens counts and what billing calls tokens_in / tokens_out. */
struct gateway_totals {
        uint64_t calls, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens;
        uint64_t tokens_in, tokens_out;
        double cost_usd;
};

/* One model's share of a run's totals: provider and the model id the calls
 * asked for (the catalog's id, which the price comes from). */
struct gateway_model_totals {
        enum gateway_provider provider;
        char model[256];
        struct gateway_totals t;
};

/* At most this many models are kept apart per run (the model name comes from
 * the agent); calls for further ones, or for a name that is not shaped like a
 * model id (lib/core/ids.h id_is_model), are counted under the model "*". */
#define GATEWAY_MODELS_MAX 64

/* Reports that a limit was reached, once per run: limit "max_tokens" or
 * "max_cost_usd", its value, and what the run had used when it was crossed
 * (or, reached exactly, when the next call was refused). Called from a
 * gateway thread, outside the gateway's locks. */
typedef void (*gateway_limit_fn)(void *userdata, const char *limit, double value, double used);

/* A run's limits (the snapshot's limits.max_tokens / max_cost_usd); 0: none. */
struct gateway_limits {
        uint64_t max_tokens;           /* tokens_in + tokens_out of every call */
        double max_cost_usd;
        gateway_limit_fn on_limit;     /* NULL: nobody told */
        void *userdata;                /* borrowed until gateway_run_stop() */
};

struct gateway_run;

/* Starts serving a run: validates and copies the routes' shape (an upstream
 * that is not https://host[:port][/prefix], or a key with a line break, is
 * -EINVAL with reterr naming the route), and listens on 127.0.0.1:GATEWAY_PORT
 * inside the network namespace bind-mounted at netns_path (NULL: in the
 * caller's namespace on an ephemeral port, for tests and benchmarks).
 * limits (copied; NULL: none) are enforced on every call. run_id and
 * userdata are borrowed until gateway_run_stop(). Returns 0 and *ret, or a
 * negative errno with reterr. */
int gateway_run_start(const char *run_id, const char *netns_path, const struct gateway_route *routes, size_t n_routes,
                      const struct gateway_limits *limits, gateway_event_fn on_event, void *userdata,
                      struct gateway_run **ret, struct err_detail *reterr);

/* The port the run's gateway listens on. */
int gateway_run_port(const struct gateway_run *gr);

/* The run's totals so far (every ended call). */
void gateway_run_totals(struct gateway_run *gr, struct gateway_totals *ret);

/* The same per model, in the order first called: *ret malloc'd (the caller
 * frees it; NULL when none). Returns the count, or -ENOMEM. */
int gateway_run_model_totals(struct gateway_run *gr, struct gateway_model_totals **ret);

/* Stops serving: closes the listening socket, aborts every open call (each
 * still emits its event) and waits for them, so the totals are final. gr
 * stays readable until gateway_run_stop(); calling it again does nothing. */
void gateway_run_drain(struct gateway_run *gr);

/* gateway_run_drain(), then frees gr. Accepts NULL; returns NULL. */
struct gateway_run *gateway_run_stop(struct gateway_run *gr);
