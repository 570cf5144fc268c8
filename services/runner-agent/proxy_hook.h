/* The egress part of one run's lifecycle, as the few calls run.c makes: the
 * per-run key in the provisioning event, the proxy inside the sandbox netns,
 * the wait for sealed secrets and their injection, and the teardown before
 * `destroyed`. Belongs to the run's worker thread. */
#pragma once
#include <stdbool.h>

#include "core/err.h"
#include "events.h"
#include "gateway.h"
#include "paddock/v1/runs.pb-c.h"
#include "sandbox.h"

struct proxy_hook;

/* Generates the run's key pair when snap references secrets and emits the
 * `provisioning` status event (with data.public_key then). run_id, snap and ev
 * are borrowed for the hook's lifetime. Never fails the run: on error the
 * event goes out without a key and proxy_hook_prepare() reports it. */
struct proxy_hook *proxy_hook_provisioning(const char *run_id, const Paddock__V1__SandboxSnapshot *snap,
                                           struct run_events *ev);

/* After the network namespace exists and before the bundle is written:
 * starts the egress proxy in it, waits for the sealed secrets (if any), and
 * sets sb->extra_env (proxy variables + env secrets) and, when secrets are in
 * that env, sb->config_override: a memfd path, so config.json never reaches a
 * disk; it is wiped once the container has started. Returns 0 or a negative
 * errno with reterr (the run fails with its message). */
int proxy_hook_prepare(struct proxy_hook *h, struct sandbox *sb, struct err_detail *reterr);

/* Where the model gateway tells that the run reached a model limit
 * (gateway.h gateway_limit_fn, userdata borrowed); before proxy_hook_prepare(). */
void proxy_hook_on_model_limit(struct proxy_hook *h, gateway_limit_fn fn, void *userdata);

/* Once the agent is gone, before proxy_hook_free(): stops the model gateway
 * and gives its final totals and per-model ones (gateway_hook_usage: *models
 * malloc'd). Returns the number of models, 0 without a gateway. */
int proxy_hook_model_usage(struct proxy_hook *h, struct gateway_totals *total, struct gateway_model_totals **models);

/* Before the sandbox is destroyed: stops the proxy (every connection closed,
 * its egress event emitted), wipes the config memfd, the secrets and the
 * private key. Accepts NULL; returns NULL. */
struct proxy_hook *proxy_hook_free(struct proxy_hook *h);
