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
 * the reason. Token and cost totals are kept per run (gateway_run_totals).
 * Threads: one accept thread per run and one per open call (a run holds at
 * most max_conns); blocking I/O bounded by timeouts. All functions are
 * thread-safe. */
#pragma once
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

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
};

#define GATEWAY_SETTINGS_DEFAULT                                                                        \
        {.ca_bundle = NULL, .connect_timeout_ms = 10000, .idle_timeout_ms = 600000,                     \
         .max_body_bytes = 32ULL << 20, .run_max_conns = 32}

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

struct gateway_totals {
        uint64_t calls, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens;
        double cost_usd;
};

struct gateway_run;

/* Starts serving a run: validates and copies the routes' shape (an upstream
 * that is not https://host[:port][/prefix], or a key with a line break, is
 * -EINVAL with reterr naming the route), and listens on 127.0.0.1:GATEWAY_PORT
 * inside the network namespace bind-mounted at netns_path (NULL: in the
 * caller's namespace on an ephemeral port, for tests and benchmarks).
 * run_id and userdata are borrowed until gateway_run_stop(). Returns 0 and
 * *ret, or a negative errno with reterr. */
int gateway_run_start(const char *run_id, const char *netns_path, const struct gateway_route *routes, size_t n_routes,
                      gateway_event_fn on_event, void *userdata, struct gateway_run **ret,
                      struct err_detail *reterr);

/* The port the run's gateway listens on. */
int gateway_run_port(const struct gateway_run *gr);

/* The run's totals so far (every ended call). */
void gateway_run_totals(struct gateway_run *gr, struct gateway_totals *ret);

/* Closes the listening socket, aborts every open call (each still emits its
 * event), waits for their threads and frees gr. Accepts NULL; returns NULL. */
struct gateway_run *gateway_run_stop(struct gateway_run *gr);
