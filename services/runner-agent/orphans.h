/* Orphaned processes the runner-agent inherits, reaped.
 *
 * The runner-agent is its node's child subreaper (node_prep.c) so that a
 * detached sandbox's init comes back to it. So does any helper process crun
 * leaves behind when its own parent exits first, and nobody waits for
 * those: they stayed zombies, about one every few runs (32 after one
 * `./dev test`), each holding a pid for the agent's lifetime. A zombie child
 * that none of our waiters (subprocess_run, run.c's supervision, images.c)
 * reaped within min_age is such an orphan: those waiters reap their own
 * children within milliseconds of the exit, so the age keeps this from ever
 * taking an exit status another thread is waiting for. */
#pragma once
#include <stdint.h>
#include <sys/types.h>

#define ORPHANS_TRACKED 256

struct orphan_reaper {
        pid_t pid[ORPHANS_TRACKED];        /* zombie children seen at the last pass */
        int64_t seen_us[ORPHANS_TRACKED]; /* when each was first seen a zombie */
        unsigned n;
};

/* One pass at now_us: finds this process's zombie children (/proc/<pid>/stat:
 * state Z, parent us) and reaps those first seen as zombies at least
 * min_age_us before; the others are remembered for a later pass. Returns the
 * number reaped, or a negative errno when /proc cannot be read. */
int orphans_reap(struct orphan_reaper *o, int64_t now_us, int64_t min_age_us);
