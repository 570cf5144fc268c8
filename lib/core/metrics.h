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
        _Atomic long long *cell; /* NULL, or this process's slot of a shared metric (metrics_share) */
};

/* Registers m (not owned, must outlive the process). Not thread-safe: call from main(). */
void metrics_register(struct metric *m);
static inline void metric_add(struct metric *m, long long n) { atomic_fetch_add(m->cell ? m->cell : &m->value, n); }
static inline void metric_set(struct metric *m, long long n) { atomic_store(m->cell ? m->cell : &m->value, n); }

/* Several processes forked from one (the api's workers) each count in a slot
 * of their own in a MAP_SHARED mapping, and metrics_render() in any of them
 * writes every metric's sum over the slots: one scrape sees the whole
 * service (docs/CONTRACTS.md "The api's ops port"). Each process writes only
 * its own slot, with atomics, so no lock is shared across processes. The
 * processes run the same code, so they register the same metrics in the same
 * order: a metric's position in that order is its cell in every slot.
 *
 * metrics_share(): call once, before any fork; makes nslots slots (1..64) of
 * METRICS_SHARE_MAX metrics each; returns 0, -EINVAL or -ENOMEM. Not
 * thread-safe. metrics_share_slot(): in a forked process, before it counts
 * anything and before its threads start: what it registered and registers
 * from now on writes to slot (< nslots); a gauge starts at 0 (a replaced
 * worker's open sessions are gone), a counter goes on from the slot's value
 * (sums never go down). Returns 0 or -EINVAL. A metric beyond
 * METRICS_SHARE_MAX stays process-local. */
#define METRICS_SHARE_MAX 256
int metrics_share(unsigned nslots);
int metrics_share_slot(unsigned slot);
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
