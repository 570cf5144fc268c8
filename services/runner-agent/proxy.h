/* The egress proxy (ARCHITECTURE.md §3, issue 3 point 3): per run, an HTTP
 * proxy listening on 127.0.0.1:3128 INSIDE the sandbox network namespace (the
 * socket is made by a short-lived thread that setns()es into it, so nothing of
 * ours runs in the sandbox), served from the runner-agent. It speaks CONNECT
 * (tunnels) and absolute-form plain HTTP, enforces the run's egress policy
 * (proxy_policy.h), resolves names itself and refuses non-public addresses
 * unless an explicit IP/CIDR rule allows them, compares the TLS SNI of a
 * tunnel with its CONNECT host, holds `ask` destinations until an approval
 * arrives, sends plain-HTTP requests for a secret header's origin over its
 * own verified TLS connection with the header added (never in clear), frames
 * request bodies (Content-Length or chunked; nothing after the body is
 * forwarded), charges each run a budget of connections, fds and buffer
 * memory within a node-wide one, and reports every request as one `egress`
 * event (refusals at accept time aggregated, at most one event a second).
 *
 * Threads (issue 10 §4): a fixed set for the whole process, whatever the
 * number of connections. Event loops (epoll), one per core up to four: the
 * first accepts on every run's listening socket and deals the connections
 * to the loops in turn, so relaying uses every core; the loop that holds a
 * connection reads its request head and a tunnel's ClientHello, connects
 * upstream (non-blocking; the connect timeout is its timer), drives the TLS
 * handshake to a secret header's origin, and relays every byte with splice()
 * through a pipe per direction (zero copy): tunnels, and plain-HTTP requests
 * after their rewritten head (a chunked body and the proxy's own TLS go
 * through framed buffers); the idle timeout and the other deadlines are its
 * timers, and each connection's egress event is emitted when it ends.
 * PROXY_WORKERS worker threads take the decisions (the policy, a durable
 * approval event) and PROXY_RESOLVERS threads resolve names, so neither a
 * black-holed address nor a slow DNS server holds a decision; a name the
 * run resolved less than 5 s ago is connected by its loop at once (its
 * addresses checked again, docs/CONTRACTS.md "Egress proxy"). A request
 * waiting for an approval holds no thread: it is parked on its run until the
 * decision, its deadline or the run's end. All functions are thread-safe. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "paddock/v1/runs.pb-c.h"
#include "policy/policy_engine.h"

#define PROXY_PORT 3128
#define PROXY_URL "http://127.0.0.1:3128"

#define PROXY_HEAD_MAX 16384          /* request line + headers of a client request */
#define PROXY_HEAD_TIMEOUT_MS 30000   /* to receive a complete request head */
#define PROXY_CONNECT_TIMEOUT_MS 10000 /* TCP connect, and the TLS handshake to a secret header's origin */
#define PROXY_HELLO_TIMEOUT_MS 10000  /* to receive the TLS ClientHello of a tunnel */

/* The operator's bounds (runner-agent settings PADDOCK_EGRESS_*, see
 * docs/CONTRACTS.md "Egress proxy"). A connection is charged its client fd
 * and head buffer when accepted, and its upstream fd and relay buffers
 * (pipes for a tunnel) before it connects upstream; everything is released
 * when it ends. */
struct proxy_settings {
        unsigned run_max_conns;          /* open client connections of one run */
        unsigned run_max_fds;            /* fds held for one run's connections (client, upstream, pipes) */
        uint64_t run_max_buffer_bytes;   /* buffer memory held for one run's connections */
        unsigned node_max_conns;         /* all runs of this process together */
        int idle_timeout_ms;             /* a relay with no byte either way for this long ends */
        uint64_t max_body_bytes;         /* largest request body (Content-Length or chunked data) */
        const char *ca_bundle;           /* PEM file of the CAs trusted for secret header origins;
                                          * NULL or "": the system's; borrowed for the process lifetime */
        unsigned loops;                  /* event loop threads (each accepts and relays its own
                                          * connections); 0: one per online CPU, at most
                                          * PROXY_LOOPS_DEFAULT_MAX; never more than PROXY_LOOPS_MAX */
};

#define PROXY_LOOPS_MAX 16
#define PROXY_LOOPS_DEFAULT_MAX 4

#define PROXY_SETTINGS_DEFAULT                                                                         \
        {.run_max_conns = 256, .run_max_fds = 1024, .run_max_buffer_bytes = 64ULL << 20,               \
         .node_max_conns = 4096, .idle_timeout_ms = 600000, .max_body_bytes = 256ULL << 20, .ca_bundle = NULL}

/* Applies s (copied) before the first proxy_run_start(): loads the CAs (an
 * unreadable or empty bundle is -EINVAL with reterr naming the file), raises
 * the soft RLIMIT_NOFILE to the hard one and keeps the node's fd budget below
 * it. Without this call the defaults and the system CAs apply. Not
 * thread-safe: call from main(). */
int proxy_configure(const struct proxy_settings *s, struct err_detail *reterr);

/* Registers the proxy's metrics (paddock_runner_egress_*); from main(). */
void proxy_metrics_register(void);

struct proxy_run;

/* Receives the run's events (kind "egress", "approval_requested",
 * "approval_decided"); data is borrowed. sync asks for a durable, ordered
 * send (approvals); egress events may be queued. Called from proxy threads. */
typedef void (*proxy_event_fn)(void *userdata, const char *kind, json_t *data, bool sync);

/* A header the proxy adds to requests for the https origin host:port. The
 * agent asks for it in plain HTTP (`http://host/...` or `http://host:port/...`);
 * the proxy connects to the origin over TLS (SNI, certificate verified for
 * host), adds the header replacing any of that name the client sent, and
 * relays the answer. A plain-HTTP request for host on another port, or TRACE,
 * is refused: the value never leaves in clear nor echoed back. CONNECT tunnels
 * stay opaque (nothing added). host is lower case, an IP literal without
 * brackets; the strings are borrowed until proxy_run_stop(); value is never
 * logged. */
struct proxy_header {
        const char *host, *name;
        uint16_t port;
        const char *value;
        size_t value_len;
};

/* Starts serving a run: compiles policy (borrowed; NULL denies everything),
 * creates the listening socket on 127.0.0.1:PROXY_PORT inside the network
 * namespace bind-mounted at netns_path (NULL: in the caller's namespace on an
 * ephemeral port, for benchmarks and tests), and registers run_id for
 * proxy_on_approval(). run_id and the event callback's userdata are borrowed
 * until proxy_run_stop(). Returns 0 and *ret, or a negative errno with reterr. */
int proxy_run_start(const char *run_id, const char *netns_path, const Paddock__V1__EgressPolicy *policy,
                    proxy_event_fn on_event, void *userdata, struct proxy_run **ret, struct err_detail *reterr);

/* The port the run's proxy listens on. */
int proxy_run_port(const struct proxy_run *pr);

/* Sets the secret headers (see struct proxy_header); call before the agent
 * starts. Borrowed until proxy_run_stop(). */
void proxy_run_set_headers(struct proxy_run *pr, const struct proxy_header *headers, size_t n);

/* The run's policy at the egress level (docs/CONTRACTS.md "Policy engine"):
 * called for each request's host before the allowlist (egress_policy_check);
 * returns the engine's decision and sets *ret_rule (borrowed for the run) to
 * the deciding rule's source. Called from proxy worker threads. */
typedef struct policy_decision (*proxy_policy_fn)(void *userdata, const char *host, uint16_t port,
                                                  const char **ret_rule);

/* Sets it (userdata borrowed until proxy_run_stop()) and the run policy's ask
 * timeout; call before the agent starts. */
void proxy_run_set_policy(struct proxy_run *pr, proxy_policy_fn fn, void *userdata, uint32_t ask_timeout_s);

/* Closes the listening socket, aborts every connection (each still emits its
 * egress event), denies pending approvals, waits until all connection threads
 * are gone and frees pr. Accepts NULL; returns NULL. */
struct proxy_run *proxy_run_stop(struct proxy_run *pr);

/* A decision for one of run_id's pending approvals, from paddock.runs.control
 * (borrowed). Unknown runs and approvals are ignored (logged at debug): a
 * decision may arrive after the run ended or be a duplicate delivery. */
void proxy_on_approval(const char *run_id, const Paddock__V1__ApprovalDecision *d);

/* Environment entries ("NAME=value", static) that point the agent at its
 * proxy; NULL-terminated. */
extern const char *const proxy_env[];
