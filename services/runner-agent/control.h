/* paddock.runs.control on the runner-agent: its own consumer thread (group
 * paddock-runner-control-<node>, from the earliest offset, on
 * kafka_consume_routes: a poll round is committed once its messages are
 * handled). Messages addressed to this node (node_id ours, or
 * empty and the run known here) are dispatched: cancel -> the run's worker
 * (crun kill within a poll of the message's arrival; a cancel for a run not
 * started here is kept as a tombstone so its later assignment ends at once);
 * approval -> proxy_on_approval; sealed secrets -> secrets_on_sealed. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "agent.h"
#include "core/err.h"
#include "paddock/v1/runs.pb-c.h"

struct control;

/* Starts the consumer thread. a is borrowed for the thread's lifetime.
 * Returns NULL with *reterr if the consumer cannot be created. */
struct control *control_start(struct agent *a, struct err_detail *reterr);
/* Stops and joins the thread, leaves the group; accepts NULL; returns NULL. */
struct control *control_stop(struct control *c);

/* If a cancel for run_id arrived before the run (cancelled/<run id>), removes
 * the tombstone, fills who asked and why, and returns true. Thread-safe. */
bool control_tombstone_take(struct agent *a, const char *run_id, char *by, size_t by_size, char *reason,
                            size_t reason_size);

/* Hooks of the egress part (proxy.c, secrets.c), called from the control
 * thread when linked in; weak so the runner builds without them. They must
 * not block for long: cancels of other runs wait behind them. */
void proxy_on_approval(const char *run_id, const Paddock__V1__ApprovalDecision *d) __attribute__((weak));
void secrets_on_sealed(const char *run_id, const Paddock__V1__SealedSecrets *s) __attribute__((weak));
/* True when the run's key material is verified destroyed ("keys" in the
 * destroyed event). Called by the run's worker after cleanup. */
bool secrets_run_destroyed(const char *run_id) __attribute__((weak));
