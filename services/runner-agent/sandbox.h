/* One sandbox's host-side resources: the run dir (OCI bundle, workspace,
 * baseline), the bind-mounted network namespace and the crun container.
 * A sandbox belongs to one worker thread. */
#pragma once
#include <stdbool.h>
#include <sys/types.h>

#include "agent.h"
#include "agent_cli.h"
#include "core/domain.h"
#include "core/err.h"

struct sandbox {
        char run_id[UUID_STR_LEN];
        char id[UUID_STR_LEN];     /* what its paths are named after: the run id, or a pooled sandbox's own (pool.h) */
        char container_id[64];     /* "paddock-<id>" */
        char *run_dir;             /* runs/<id> */
        char *config_path;         /* runs/<id>/config.json */
        char *pid_file;            /* runs/<id>/container.pid, written by crun */
        char *workspace, *baseline;
        char *netns_path;          /* netns/<id> */
        char *cgroup_path;         /* "<PADDOCK_RUNNER_CGROUP_PARENT>/<id>", relative to each hierarchy */
        unsigned slot;             /* run slot: the user namespace's host range (agent.h) */
        uid_t agent_uid;           /* host uid/gid of the sandbox user (workspace owner) */
        gid_t agent_gid;
        pid_t init_pid;            /* the container's init (our child: we are a subreaper), 0 before start */
        /* egress (proxy_hook.h): extra process env (proxy variables, env
         * secrets), NULL-terminated, borrowed; and when it holds secrets the
         * memfd path config.json goes to instead of config_path (crun --config) */
        const char *const *extra_env;
        const char *config_override;
        struct sandbox_netns_job *netns_job; /* between sandbox_netns_begin and _wait */
        char *seccomp_key;         /* set when crun compiles the profile: learn its program (seccomp.h) */
        struct agent_cli_launch *cli; /* a CLI agent's launch (agent_cli.h), borrowed; NULL: none */
        bool identity_files;       /* runs/<id>/identity holds token files (identity_file.h) */
};

/* Computes the paths (named after run_id, which is also sb->id) and the host
 * ids of user-namespace range `slot` (agent.h; destroying a leftover needs no
 * ids: any slot will do); returns 0 or -ENOMEM. */
int sandbox_init(struct sandbox *sb, const struct agent *a, const char *run_id, unsigned slot);
/* True when parent (PADDOCK_RUNNER_CGROUP_PARENT) is a relative cgroup path
 * of [A-Za-z0-9._-] components, none "." or "..": it is joined to each
 * hierarchy's root, so it must not climb out of it. Pure. */
bool runner_cgroup_parent_valid(const char *parent);
void sandbox_done(struct sandbox *sb);

/* Creates runs/<id>/{workspace,baseline}. workspace is a tmpfs of disk_mb MiB
 * (the run's disk limit: a full workspace answers ENOSPC) owned by the host uid
 * the sandbox user maps to. */
int sandbox_make_dirs(struct sandbox *sb, uint64_t disk_mb, struct err_detail *reterr);

/* Starts creating a network namespace holding only an up loopback, bind-mounted
 * on netns/<id>, in a thread of its own, so that it overlaps the rest of
 * provisioning (unshare(CLONE_NEWNET) is the slow part: issue 10 §4). Returns
 * 0, or a negative errno with *reterr and nothing to wait for. */
int sandbox_netns_begin(struct sandbox *sb, struct err_detail *reterr);
/* Waits for the namespace begun by sandbox_netns_begin and returns its result
 * (a failed one is removed again); 0 when none is pending. Must be called
 * before the sandbox is destroyed. */
int sandbox_netns_wait(struct sandbox *sb, struct err_detail *reterr);

/* Writes the OCI config.json for the request's agent command and limits: user
 * namespace (container 0..65535 -> the slot's host range, agent.h), pid, mount,
 * ipc, uts, cgroup and our network namespaces, no capabilities, no_new_privs,
 * the seccomp profile (seccomp.h), runc's masked and read-only paths, read-only
 * root, size-limited /tmp, cgroup limits (cpus, memory without swap, pids). */
int sandbox_write_bundle(struct sandbox *sb, const struct agent *a,
                         const Paddock__V1__RunRequested *req, struct err_detail *reterr);

/* The environment every sandbox process starts with, before the run's own
 * (sb->extra_env, the prompt's, a CLI's); NULL-terminated. */
extern const char *const sandbox_base_env[];

/* Starts `crun run --detach` for the bundle; stdout/stderr pipes returned (the
 * container keeps them after crun exits). *pid is crun's: once it exits 0 the
 * container runs and sandbox_read_pid() gives its init, which is reparented to
 * us (node_prep makes the agent a child subreaper) and must be reaped with
 * waitpid. A detached container and its cgroup stay until `crun delete`, so
 * its limit counters can be read after it ended. */
int sandbox_start(struct sandbox *sb, const struct agent *a, int *out_fd, int *err_fd, pid_t *pid);

/* Reads the container init pid crun wrote; 0 if not there yet. */
pid_t sandbox_read_pid(struct sandbox *sb);
/* After crun started the sandbox from a bundle without a compiled filter:
 * keeps crun's compiled program for the next bundles (seccomp.h). */
void sandbox_seccomp_learn(struct sandbox *sb, const struct agent *a);

/* `crun kill <id> KILL`; returns crun's exit code or a negative errno. */
int sandbox_kill(struct sandbox *sb, const struct agent *a);
/* `crun kill --all <id> TERM`: every process of the container, a CLI's whole
 * process tree; returns crun's exit code or a negative errno. */
int sandbox_terminate(struct sandbox *sb, const struct agent *a);
