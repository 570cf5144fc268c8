/* The warm sandbox pool (issue 10 §4; docs/CONTRACTS.md "Sandbox pool"):
 * PADDOCK_RUNNER_WARM_POOL sandboxes per image, prepared ahead of any run by
 * a background thread, so that a run claims one instead of waiting for crun.
 *
 * A pooled sandbox is everything of a fresh one that does not depend on the
 * run: run dir and workspace tmpfs (the default disk size), the network
 * namespace holding only loopback, the exec capture's listening socket, the
 * OCI bundle with the same namespaces, user-namespace range, seccomp profile,
 * masked paths and default cgroup limits, and `crun create`: the container
 * exists, its pid 1 (paddock-pool-init, pool_init.c, given as a sealed memfd)
 * blocked before its exec, no seccomp filter loaded yet and nothing of any run
 * inside. A run claims one (pool_claim) only when nothing it needs is fixed at
 * create time differently: a command agent (not a CLI), no prompt file, no
 * identity files, default limits (cpus, memory, pids, disk), the same image.
 * It then writes its workspace files, starts its proxy, gateway and capture
 * like a fresh run, hands its argv and environment (secrets included) to the
 * init through a pipe and starts the container (pool_sandbox_start). Each
 * sandbox serves one run and is destroyed with it (cleanup_destroy); the
 * thread refills in the background. pool_stop destroys what is unclaimed.
 * Each sandbox has a user-namespace range of its own beyond the run slots'
 * (agent.h), held until it is destroyed. */
#pragma once
#include <stdbool.h>
#include <sys/types.h>

#include "agent.h"
#include "sandbox.h"

struct pool;

struct pool_sandbox {
        struct sandbox sb;      /* named after its own id (sb.id); run_id becomes the run's at claim */
        pid_t init_pid;         /* the container's pid 1 (our child: we are a subreaper) */
        int init_pidfd;         /* pidfd of init_pid, opened at create: orphans.c may reap the init
                                 * and its pid be reused, the pidfd still means that process */
        int out_fd, err_fd;     /* its stdout/stderr pipes (read ends) */
        int spec_fd;            /* write end of the init's pipe: the run's argv and env */
        int capture_fd;         /* the exec capture's listening socket (crun connected at create) */
        unsigned range;         /* the pool's user-namespace range index */
        bool started;           /* pool_sandbox_start ran: the init is the run's */
        bool fresh;             /* its init died before the start: the run's container is a fresh
                                 * one in the same sandbox (pool_sandbox_refresh) */
        char image[256];        /* "" = the node's root */
        struct pool_sandbox *next;
};

/* Starts the refill thread for a->cfg->warm_pool sandboxes per image (0:
 * returns NULL, no pool). The init binary is paddock-pool-init next to
 * a->cfg->hook_binary. Returns NULL when off or on failure (logged: runs
 * then provision fresh). */
struct pool *pool_start(struct agent *a);

/* Stops the thread and destroys every unclaimed sandbox. Accepts NULL. */
void pool_stop(struct pool *p);

/* A prepared sandbox for req, or NULL (no pool, not eligible, none ready:
 * provision fresh). The caller owns it: pool_sandbox_take() then, once
 * cleanup_destroy() removed it, pool_release(). Never waits for a refill. */
struct pool_sandbox *pool_claim(struct pool *p, const Paddock__V1__RunRequested *req);

/* Wakes the refill: called once a run is running (a claim does not, so
 * that crun create does not compete with the run's start). Accepts NULL. */
void pool_refill(struct pool *p);

/* Moves the claimed sandbox into *sb for run run_id (its paths keep the
 * sandbox's own id). */
void pool_sandbox_take(struct pool_sandbox *ps, struct sandbox *sb, const char *run_id);

/* Starts the claimed sandbox (what `crun start` does: its exec fifo) and
 * hands the init the request's command and env (the base env, then
 * sb->extra_env). Hands over the stdout/stderr read ends as sandbox_start()
 * does; no crun process to wait for. Returns 0 or a negative errno. */
int pool_sandbox_start(struct pool_sandbox *ps, const struct agent *a, const struct sandbox *sb,
                       const Paddock__V1__RunRequested *req, int *out_fd, int *err_fd);

/* After pool_sandbox_start failed: whether the init is gone (died after
 * the claim; reaped here unless orphans.c did). If so, replaces the dead
 * container by the request's own bundle in the same sandbox (dirs, netns,
 * user range kept) and marks ps->fresh: the caller then starts it as a
 * fresh sandbox (sandbox_start) with a capture listening anew, and the run
 * goes on instead of failing. Returns 1 (refreshed), 0 (the init lives:
 * the start failed for another reason) or a negative errno (reterr). */
int pool_sandbox_refresh(struct pool_sandbox *ps, const struct agent *a, struct sandbox *sb,
                         const Paddock__V1__RunRequested *req, struct err_detail *reterr);

/* Before cleanup_destroy(sb): a claimed sandbox never started (the run
 * failed or was cancelled first) has its blocked init killed and reaped. */
void pool_sandbox_stop_unstarted(struct pool_sandbox *ps, struct sandbox *sb);

/* After the run's sandbox was destroyed: frees its range and what is left
 * of ps, and wakes the refill. Accepts NULL. */
void pool_release(struct pool *p, struct pool_sandbox *ps);
