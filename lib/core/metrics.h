/* Process-wide Prometheus counters and gauges. A service declares its metrics
 * as static `struct metric` objects and registers them once at start;
 * increments are lock-free. metrics_render() writes the text exposition format. */
#pragma once
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>

enum metric_type { METRIC_COUNTER, METRIC_GAUGE };

struct metric {
        const char *name;   /* e.g. "paddock_events_persisted_total" */
        const char *help;
        enum metric_type type;
        _Atomic long long value;
        struct metric *next; /* registry link, set by metrics_register */
        const char *labels; /* optional, e.g. "reason=\"unsigned\"": one series of a family; register a
                             * family's series one after another so HELP and TYPE are written once */
};

/* Registers m (not owned, must outlive the process). Not thread-safe: call from main(). */
void metrics_register(struct metric *m);
static inline void metric_add(struct metric *m, long long n) { atomic_fetch_add(&m->value, n); }
static inline void metric_set(struct metric *m, long long n) { atomic_store(&m->value, n); }
/* Writes further metric families (HELP, TYPE and samples in the text
 * exposition format) to f at the end of every metrics_render(): for series
 * whose labels are only known at run time (billing's per-team figures).
 * Returns 0 or a negative errno. Called from the thread that renders. */
typedef int (*metrics_text_fn)(FILE *f, void *userdata);
/* Registers the one metrics_text_fn of the process (a second call replaces
 * it; NULL removes it). Not thread-safe: call from main(). */
void metrics_register_text(metrics_text_fn fn, void *userdata);
/* Renders every registered metric. Returns a malloc'd string (caller frees) or NULL on OOM. */
char *metrics_render(void);
