/* One sandbox's host-side resources: the run dir (OCI bundle, workspace,
 * baseline), the bind-mounted network namespace and the crun container.
 * A sandbox belongs to one worker thread. */
#pragma once
#include <stdbool.h>
#include <sys/types.h>

#include "agent.h"
#include "core/err.h"

struct sandbox {
        char run_id[UUID_STR_LEN];
        char container_id[64];     /* "paddock-<run id>" */
        char *run_dir;             /* runs/<id> */
        char *config_path;         /* runs/<id>/config.json */
        char *pid_file;            /* runs/<id>/container.pid, written by crun */
        char *workspace, *baseline;
        char *netns_path;          /* netns/<id> */
        char *cgroup_path;         /* "paddock/<id>", relative to each hierarchy */
};

/* Computes the paths; returns 0 or -ENOMEM. */
int sandbox_init(struct sandbox *sb, const struct agent *a, const char *run_id);
void sandbox_done(struct sandbox *sb);

/* Creates runs/<id>/{workspace,baseline}. workspace is owned by the sandbox user. */
int sandbox_make_dirs(struct sandbox *sb, struct err_detail *reterr);

/* Creates a network namespace holding only an up loopback and bind-mounts it
 * on netns/<id>. */
int sandbox_create_netns(struct sandbox *sb, struct err_detail *reterr);

/* Writes the OCI config.json for the request's agent command and limits. */
int sandbox_write_bundle(struct sandbox *sb, const struct agent *a,
                         const Paddock__V1__RunRequested *req, struct err_detail *reterr);

/* Starts `crun run` for the bundle; stdout/stderr pipes returned. */
int sandbox_start(struct sandbox *sb, const struct agent *a, int *out_fd, int *err_fd, pid_t *pid);

/* Reads the container init pid crun wrote; 0 if not there yet. */
pid_t sandbox_read_pid(struct sandbox *sb);

/* `crun kill <id> KILL`; returns crun's exit code or a negative errno. */
int sandbox_kill(struct sandbox *sb, const struct agent *a);
