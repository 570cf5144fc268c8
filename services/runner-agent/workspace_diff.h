/* The workspace diff: what the run changed, as `git diff` shows it (added and
 * removed files, empty ones included, binary files with their hashes,
 * renames, mode changes), bounded in every dimension a hostile workspace
 * controls (issue 9 point 4).
 *
 * The runner-agent walks baseline/ and workspace/ itself (at most max_files
 * entries each, never following a symlink or crossing a mount), compares
 * them, and stages only the changed files (hard links of the workspace's,
 * copies of the baseline's) for `git diff --no-index`, which runs as an
 * unprivileged uid of the run's own range with only CAP_DAC_READ_SEARCH (to
 * read files the agent made unreadable), an address-space cap, no config but
 * ours and a deadline. A changed file larger than max_file_bytes is listed
 * with its size and SHA-256 instead of diffed. Whatever is left out (files
 * beyond the count, files too big, the deadline, output beyond max_output,
 * the tool failing at its memory cap) is named in `truncated`: the diff is
 * cut, never silently incomplete. Call once every sandbox process is gone. */
#pragma once
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/err.h"

struct workspace_diff_limits {
        size_t max_files;          /* entries walked per tree */
        uint64_t max_file_bytes;   /* larger changed files: size and sha256 only */
        size_t max_output;         /* bytes of diff text */
        uint64_t memory_bytes;     /* RLIMIT_AS of the diff tool */
        int timeout_ms;            /* the whole diff: walk, compare, hash and tool */
        uid_t uid;                 /* unprivileged ids the tool runs as */
        gid_t gid;
        uint64_t disk_mb;          /* size of the workspace tmpfs (grown for staging) */
        const char *git;           /* absolute path of git */
};

struct workspace_diff {
        char *text;                /* malloc'd, NUL-terminated, may be empty */
        size_t len;
        /* what was left out: [{"reason": "files|file_size|timeout|output|memory|tool|staging",
         * "limit"?, "path"?, "size"?, "sha256"?, "detail"}], empty when complete */
        json_t *truncated;
};

/* Diffs <run_dir>/baseline against <run_dir>/workspace. Returns 0 with *out
 * filled (caller frees with workspace_diff_done()), or a negative errno with
 * reterr when nothing could be produced at all. Not thread-safe for one
 * run_dir; distinct runs may diff concurrently. */
int workspace_diff_run(const char *run_dir, const struct workspace_diff_limits *lim, struct workspace_diff *out,
                       struct err_detail *reterr);

void workspace_diff_done(struct workspace_diff *d);
