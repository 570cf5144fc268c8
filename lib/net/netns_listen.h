/* A loopback listener inside a sandbox's network namespace: how the egress
 * proxy and the model gateway (services/runner-agent) are reachable by the
 * sandbox and by nothing else (docs/CONTRACTS.md, ARCHITECTURE §5). */
#pragma once
#include <stddef.h>
#include <stdint.h>

/* Listens on 127.0.0.1:port (0: any port) with the given backlog inside the
 * network namespace at netns_path, or in the caller's own when NULL. setns()
 * runs in a short-lived thread of its own, so no other code of ours ever
 * runs inside the sandbox's namespace; the socket stays bound there. Returns
 * the non-blocking, close-on-exec listening fd (the caller's) with *ret_port
 * its port, or a negative errno with what[0..what_len) naming the step that
 * failed (socket, bind/listen, open netns, setns, thread). */
int netns_listen_loopback(const char *netns_path, uint16_t port, int backlog, uint16_t *ret_port, char *what,
                          size_t what_len);
