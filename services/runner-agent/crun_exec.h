/* crun started from a sealed in-memory copy of its binary.
 *
 * Every `crun` invocation otherwise first protects itself against a
 * container overwriting the host binary through /proc/self/exe
 * (CVE-2019-5736): it bind-mounts itself read-only on a temporary file,
 * detaches the mount (umount2 MNT_DETACH waits for an RCU grace period) and
 * re-executes itself, loading its libraries twice. It skips all that when
 * /proc/self/exe is a memfd carrying the seals SEAL|SHRINK|GROW|WRITE, which
 * cannot be written by anyone (runc/crun cloned_binary.c is_self_cloned()).
 * So the runner-agent makes that copy once at start and execs it for every
 * run: the same protection, prepared ahead of time (10-20 ms less per launch,
 * bench/launch_latency.py crun phase). */
#pragma once

struct crun_exec {
        int fd;         /* the sealed memfd (close-on-exec); valid when path is set */
        char path[64];  /* what to exec: /proc/<our pid>/fd/<fd>, resolved in the child; "" if none */
};

/* Copies the executable at binary (not owned) into a memfd sealed against
 * any change and fills ce. Returns 0, or a negative errno (ce->fd is then -1
 * and the caller execs binary itself). */
int crun_exec_prepare(struct crun_exec *ce, const char *binary);
/* Closes the copy; accepts a ce never prepared or zeroed (path empty). */
void crun_exec_done(struct crun_exec *ce);
/* What to exec for crun: the sealed copy once prepared, else binary. */
static inline const char *crun_exec_path(const struct crun_exec *ce, const char *binary) {
        return ce->path[0] ? ce->path : binary;
}
