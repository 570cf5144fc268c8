/* The operations endpoint every service except api serves on its own port:
 * GET /healthz (200 while the process runs), GET /readyz (200 or 503 with the
 * reason from ready_fn), GET /metrics (metrics_render()). Runs libwebsockets
 * in its own thread. */
#pragma once
#include <stddef.h>

#include "core/err.h"

/* Returns 0 when dependencies are reachable, else negative with a reason in why. */
typedef int (*ops_ready_fn)(void *userdata, char *why, size_t why_size);

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
