/* The egress proxy (ARCHITECTURE.md §3, issue 3 point 3): per run, an HTTP
 * proxy listening on 127.0.0.1:3128 INSIDE the sandbox network namespace (the
 * socket is made by a short-lived thread that setns()es into it, so nothing of
 * ours runs in the sandbox), served from the runner-agent. It speaks CONNECT
 * (tunnels) and absolute-form plain HTTP, enforces the run's egress policy
 * (proxy_policy.h), resolves names itself and refuses non-public addresses
 * unless an explicit IP/CIDR rule allows them, compares the TLS SNI of a
 * tunnel with its CONNECT host, holds `ask` destinations until an approval
 * arrives, adds secret headers to plain-HTTP requests for their host, and
 * reports every request as one `egress` event.
 *
 * Threads: one accept thread (epoll over every run's listening socket) for
 * the whole process, and one thread per client connection: a connection may
 * block for minutes on a pending approval, and blocking code per connection
 * keeps the hold, the timeouts and the teardown simple; tunnels are relayed
 * with splice(). All functions are thread-safe. */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "paddock/v1/runs.pb-c.h"

#define PROXY_PORT 3128
#define PROXY_URL "http://127.0.0.1:3128"

#define PROXY_MAX_CONNS_PER_RUN 256
#define PROXY_HEAD_MAX 16384          /* request line + headers of a client request */
#define PROXY_HEAD_TIMEOUT_MS 30000   /* to receive a complete request head */
#define PROXY_CONNECT_TIMEOUT_MS 10000
#define PROXY_HELLO_TIMEOUT_MS 10000  /* to receive the TLS ClientHello of a tunnel */
#define PROXY_IDLE_TIMEOUT_MS 600000  /* a relay with no byte either way for this long ends */

struct proxy_run;

/* Receives the run's events (kind "egress", "approval_requested",
 * "approval_decided"); data is borrowed. sync asks for a durable, ordered
 * send (approvals); egress events may be queued. Called from proxy threads. */
typedef void (*proxy_event_fn)(void *userdata, const char *kind, json_t *data, bool sync);

/* A header the proxy adds to plain-HTTP requests whose host equals host
 * (case-insensitive), replacing any header of that name the client sent. The
 * strings are borrowed until proxy_run_stop(); value is never logged. */
struct proxy_header {
        const char *host, *name;
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
