/* Detecting the limits a run hit: memory (OOM kills in its cgroup), pids (fork
 * refused at pids.max), disk (its workspace tmpfs full) and the wall clock.
 * Reads the run's cgroup counters, which stay readable until the container is
 * deleted (the sandbox runs detached, so that happens only in cleanup), on
 * cgroup v1 (memory.oom_control, pids.events) and v2 (memory.events,
 * pids.events). One limits_watch belongs to one run's worker thread.
 * (Not named limits.h: the service directory is on the include path, and that
 * name would shadow the C library's <limits.h>.) */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "agent.h"
#include "core/macro.h"
#include "events.h"
#include "sandbox.h"

struct limits_watch {
        char *memory_events;     /* v1 memory.oom_control, v2 memory.events */
        char *pids_events;
        char *cpu_stat;          /* v2 cpu.stat (usage_usec), v1 cpuacct.usage (ns): the usage record's cpu_seconds */
        bool cpu_v1;
        uint64_t cpu_usage_usec; /* the largest seen: the cgroup's CPU time so far */
        const char *workspace;   /* borrowed */
        uint64_t memory_mb, pids, disk_mb, timeout_s;
        uint64_t oom_kills, pids_max_hits;
        bool disk_full;          /* the workspace had no free block at a look */
        bool timed_out;
        uint64_t pids_seen;      /* pids_max_hits at the last pressure check */
        int64_t pids_pressure_since, pids_last_rise; /* monotonic us, 0: none */
        bool memory_reported, pids_reported, disk_reported, timeout_reported;
};

/* Fills the paths for sb's cgroup. Limit values are the ones configured in
 * the bundle. Returns 0 or -ENOMEM. */
int limits_init(struct limits_watch *w, const struct agent *a, const struct sandbox *sb, uint64_t memory_mb,
                uint64_t pids, uint64_t disk_mb, uint64_t timeout_s);
void limits_done(struct limits_watch *w);

/* Reads the counters (cheap: three small files and a statfs). Call while the
 * run is alive and once more after its process ended, before cleanup. */
void limits_poll(struct limits_watch *w);

/* Emits one `limit` event per limit hit and not yet reported:
 * {"limit":"memory|pids|disk|timeout","value":N,"detail":"..."}. */
void limits_report(struct limits_watch *w, struct run_events *ev);

/* Emits one `limit` event {"limit", "value", "detail"} (docs/CONTRACTS.md) and
 * logs it; for limits outside the watch, such as the workspace diff's. */
void limits_event(struct run_events *ev, const char *limit, uint64_t value, const char *fmt, ...) _printf_(4, 5);

/* True when forks have kept failing at pids.max for PIDS_EXHAUSTED_S seconds
 * (a fork bomb never ends by itself): the run is then killed and ends
 * limit_exceeded. now is time_mono_us(). */
bool limits_pids_exhausted(struct limits_watch *w, int64_t now);

/* The limit to blame for a failed run ("memory", "pids", "disk"), or NULL. */
const char *limits_blame(const struct limits_watch *w);
