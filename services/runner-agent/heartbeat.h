/* NodeHeartbeat on paddock.nodes (key node id) every PADDOCK_HEARTBEAT_MS,
 * from its own thread: capacity, used slots/cpus/memory and running run ids. */
#pragma once
#include "agent.h"

struct heartbeat;

/* Starts the thread (first beat immediately). a is borrowed. NULL on failure. */
struct heartbeat *heartbeat_start(struct agent *a);
/* Stops and joins the thread; accepts NULL; returns NULL. */
struct heartbeat *heartbeat_stop(struct heartbeat *h);
