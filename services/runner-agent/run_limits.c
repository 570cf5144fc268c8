#include "run_limits.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>

#include "core/log.h"
#include "core/macro.h"

int limits_init(struct limits_watch *w, const struct agent *a, const struct sandbox *sb, uint64_t memory_mb,
                uint64_t pids, uint64_t disk_mb, uint64_t timeout_s) {
        *w = (struct limits_watch){.workspace = sb->workspace, .memory_mb = memory_mb, .pids = pids,
                                   .disk_mb = disk_mb, .timeout_s = timeout_s};
        int r;
        if (a->cgroup_mode == CGROUP_MODE_V2)
                r = asprintf(&w->memory_events, "/sys/fs/cgroup/%s/memory.events", sb->cgroup_path) < 0 ||
                    asprintf(&w->pids_events, "/sys/fs/cgroup/%s/pids.events", sb->cgroup_path) < 0 ||
                    asprintf(&w->cpu_stat, "/sys/fs/cgroup/%s/cpu.stat", sb->cgroup_path) < 0;
        else
                r = asprintf(&w->memory_events, "/sys/fs/cgroup/memory/%s/memory.oom_control", sb->cgroup_path) < 0 ||
                    asprintf(&w->pids_events, "/sys/fs/cgroup/pids/%s/pids.events", sb->cgroup_path) < 0 ||
                    asprintf(&w->cpu_stat, "/sys/fs/cgroup/cpuacct/%s/cpuacct.usage", sb->cgroup_path) < 0;
        w->cpu_v1 = a->cgroup_mode != CGROUP_MODE_V2;
        return r ? -ENOMEM : 0;
}

void limits_done(struct limits_watch *w) {
        free(w->memory_events);
        free(w->pids_events);
        free(w->cpu_stat);
        *w = (struct limits_watch){0};
}

/* Value of "key N" in a flat keyed file; false if absent (cgroup gone). */
static bool read_key(const char *path, const char *key, uint64_t *ret) {
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        char line[256];
        size_t kl = strlen(key);
        if (!f)
                return false;
        while (fgets(line, sizeof line, f))
                if (!strncmp(line, key, kl) && line[kl] == ' ') {
                        *ret = strtoull(line + kl + 1, NULL, 10);
                        return true;
                }
        return false;
}

void limits_poll(struct limits_watch *w) {
        uint64_t v;
        /* counters only grow; a vanished file keeps the last value */
        if (w->memory_events && read_key(w->memory_events, "oom_kill", &v) && v > w->oom_kills)
                w->oom_kills = v;
        if (w->pids_events && read_key(w->pids_events, "max", &v) && v > w->pids_max_hits)
                w->pids_max_hits = v;
        /* CPU time (usage record): v2 "usage_usec N" in cpu.stat, v1 one number of ns */
        if (w->cpu_stat && !w->cpu_v1 && read_key(w->cpu_stat, "usage_usec", &v) && v > w->cpu_usage_usec)
                w->cpu_usage_usec = v;
        if (w->cpu_stat && w->cpu_v1) {
                _cleanup_fclose_ FILE *f = fopen(w->cpu_stat, "re");
                unsigned long long ns;
                if (f && fscanf(f, "%llu", &ns) == 1 && ns / 1000 > w->cpu_usage_usec)
                        w->cpu_usage_usec = ns / 1000;
        }
        struct statfs s;
        if (!w->disk_full && w->workspace && statfs(w->workspace, &s) == 0 && s.f_blocks > 0 && s.f_bfree == 0)
                w->disk_full = true;
}

void limits_event(struct run_events *ev, const char *limit, uint64_t value, const char *fmt, ...) {
        char detail[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(detail, sizeof detail, fmt, ap);
        va_end(ap);
        json_t *d = json_pack("{s:s,s:I,s:s}", "limit", limit, "value", (json_int_t)value, "detail", detail);
        events_emit(ev, "limit", "platform", d, NULL, false, true);
        json_decref(d);
        log_ctx(LOG_INFO, LOG_KV("run", ev->run_id, "limit", limit), "%s", detail);
}

void limits_report(struct limits_watch *w, struct run_events *ev) {
        if (w->oom_kills && !w->memory_reported) {
                w->memory_reported = true;
                limits_event(ev, "memory", w->memory_mb, "the kernel killed %" PRIu64 " process%s at the memory limit of %" PRIu64 " MiB",
                       w->oom_kills, w->oom_kills == 1 ? "" : "es", w->memory_mb);
        }
        if (w->pids_max_hits && !w->pids_reported) {
                w->pids_reported = true;
                limits_event(ev, "pids", w->pids, "%" PRIu64 " fork%s refused at the limit of %" PRIu64 " processes",
                       w->pids_max_hits, w->pids_max_hits == 1 ? "" : "s", w->pids);
        }
        if (w->disk_full && !w->disk_reported) {
                w->disk_reported = true;
                limits_event(ev, "disk", w->disk_mb, "the workspace filled its %" PRIu64 " MiB", w->disk_mb);
        }
        if (w->timed_out && !w->timeout_reported) {
                w->timeout_reported = true;
                limits_event(ev, "timeout", w->timeout_s, "the run exceeded its timeout of %" PRIu64 " s", w->timeout_s);
        }
}

#define PIDS_EXHAUSTED_S 3
#define PIDS_QUIET_US 1000000 /* no refused fork for this long ends the pressure */

bool limits_pids_exhausted(struct limits_watch *w, int64_t now) {
        if (w->pids_max_hits > w->pids_seen) {
                w->pids_seen = w->pids_max_hits;
                w->pids_last_rise = now;
                if (!w->pids_pressure_since)
                        w->pids_pressure_since = now;
        } else if (w->pids_pressure_since && now - w->pids_last_rise > PIDS_QUIET_US) {
                w->pids_pressure_since = 0;
        }
        return w->pids_pressure_since && now - w->pids_pressure_since >= PIDS_EXHAUSTED_S * 1000000LL;
}

const char *limits_blame(const struct limits_watch *w) {
        if (w->oom_kills)
                return "memory";
        if (w->pids_max_hits)
                return "pids";
        if (w->disk_full)
                return "disk";
        return NULL;
}
