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


/* The run's policy (run_policy.h, borrowed; must outlive the hook): the
 * proxy decides host rules with it (level egress) before the allowlist. Call
 * before proxy_hook_prepare(). Accepts NULL. */
struct run_policy;
void proxy_hook_set_policy(struct proxy_hook *h, struct run_policy *rp);

/* The run's model gateway (gateway_hook.h), NULL when it has none; owned
 * by h. */
struct gateway_hook *proxy_hook_gateway(struct proxy_hook *h);

/* Before the sandbox is destroyed: stops the proxy (every connection closed,
 * its egress event emitted), wipes the config memfd, the secrets and the
 * private key. Accepts NULL; returns NULL. */
struct proxy_hook *proxy_hook_free(struct proxy_hook *h);
