/* The sandbox workspace: the definition's managed files written before the
 * agent starts (and copied to baseline/, the starting state; the diff
 * against it afterwards is workspace_diff.h). */
#pragma once
#include <stddef.h>
#include <sys/types.h>

#include "core/err.h"
#include "paddock/v1/runs.pb-c.h"

/* Checks a managed file path: relative, no "..", ".", or empty components,
 * no NUL, at most 4096 bytes. Returns 0 or -EINVAL with reterr naming it. */
int workspace_validate_path(const char *path, struct err_detail *reterr);

/* Host owner of what the sandbox user may change. */
struct workspace_owner {
        uid_t uid;
        gid_t gid;
};

/* Opens (creating, owned by *own when given) each parent directory of rel
 * below root_fd with O_NOFOLLOW, so nothing already in the tree can redirect
 * a write. rel is modified during the call and restored. Returns the fd of
 * the last directory (owned by the caller) and rel's base name in *base, or
 * a negative errno. */
int workspace_open_parent(int root_fd, char *rel, const struct workspace_owner *own, const char **base);

/* Writes every file into workspace (owned by *owner, the sandbox user) and
 * baseline (owned by root), creating parent directories, never following a
 * symlink and never overwriting (O_EXCL). Returns 0 or a negative errno with
 * reterr. */
int workspace_write_files(const char *workspace, const char *baseline, const struct workspace_owner *owner,
                          Paddock__V1__ManagedFile *const *files, size_t n_files,
                          struct err_detail *reterr);
