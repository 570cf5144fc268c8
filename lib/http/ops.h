/* The operations endpoints of every service. The daemons serve them on their
 * own port (ops_server_start); the api serves the same answers on its main
 * port (services/api/ops.c), built by the functions below so that there is
 * one format:
 *   GET /healthz  200 {"status":"ok"} while the process runs
 *   GET /readyz   200 {"status":"ready"}, or 503
 *                 {"status":"not_ready","dependency":"kafka","reason":"..."}
 *                 naming the first dependency found unreachable and why
 *   GET /metrics  200 metrics_render() (Prometheus text format)
 * The ops server runs libwebsockets in its own thread. */
#pragma once
#include <stddef.h>

#include "core/err.h"
#include "core/macro.h"

/* Why a service is not ready. */
struct ops_not_ready {
        char dependency[32]; /* "postgresql", "kafka", ... */
        char reason[448];    /* PostgreSQL message style */
};

/* Returns 0 when the dependencies are reachable, else a negative errno with
 * *why filled (ops_not_ready_set does both). Called from the server thread. */
typedef int (*ops_ready_fn)(void *userdata, struct ops_not_ready *why);

/* Fills *why and returns err, for `return ops_not_ready_set(why, r, "kafka",
 * "%s", e.message);` in an ops_ready_fn. */
int ops_not_ready_set(struct ops_not_ready *why, int err, const char *dependency, const char *fmt, ...)
        _printf_(4, 5);

/* The body of /healthz. */
#define OPS_HEALTHZ_BODY "{\"status\":\"ok\"}"
/* The content type of /healthz and /readyz. */
#define OPS_HEALTH_CONTENT_TYPE "application/json"

/* Calls ready_fn (NULL: always ready) and returns the HTTP status of /readyz
 * (200 or 503) with its JSON body in *ret_body (caller frees), or -ENOMEM.
 * Thread-safe if ready_fn is. */
int ops_readiness(ops_ready_fn ready_fn, void *userdata, char **ret_body);

struct ops_server;

/* Splits "host:port" or "[v6]:port" (the PADDOCK_*_ADDR settings) into host
 * (copied into host[host_size], brackets removed) and *ret_port (0-65535;
 * 0 asks for any free port). Returns 0, or -EINVAL leaving the outputs
 * unspecified. Pure and thread-safe. */
int ops_parse_addr(const char *hostport, char *host, size_t host_size, int *ret_port);

/* Starts listening on bind_addr:port (port 0 picks one; see ops_server_port).
 * ready_fn is called from the server thread. Caller owns the result. */
struct ops_server *ops_server_start(const char *bind_addr, int port, ops_ready_fn ready_fn,
                                    void *userdata, struct err_detail *reterr);
int ops_server_port(const struct ops_server *s);
/* Stops the thread and frees s; accepts NULL; returns NULL. */
struct ops_server *ops_server_stop(struct ops_server *s);
