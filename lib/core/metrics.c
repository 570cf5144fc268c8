#include "core/metrics.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define METRICS_SHARE_MAX_SLOTS 64

static struct metric *registry;
static metrics_text_fn text_fn;
static void *text_userdata;

/* metrics_share(): METRICS_SHARE_MAX cells per slot, slot-major */
static _Atomic long long *shared;
static unsigned shared_slots;
static int my_slot = -1;    /* metrics_share_slot() */
static size_t next_cell;    /* the next registered metric's cell in my_slot */

void metrics_register_text(metrics_text_fn fn, void *userdata) {
        text_fn = fn;
        text_userdata = userdata;
}

static void share_cell(struct metric *m) {
        if (next_cell >= METRICS_SHARE_MAX)
                return;
        m->cell = &shared[(size_t)my_slot * METRICS_SHARE_MAX + next_cell++];
        if (m->type == METRIC_GAUGE)
                atomic_store(m->cell, 0);
}

void metrics_register(struct metric *m) {
        m->next = registry;
        registry = m;
        if (my_slot >= 0)
                share_cell(m);
}

int metrics_share(unsigned nslots) {
        if (nslots < 1 || nslots > METRICS_SHARE_MAX_SLOTS || shared)
                return -EINVAL;
        /* anonymous mappings start zeroed */
        void *p = mmap(NULL, (size_t)nslots * METRICS_SHARE_MAX * sizeof(_Atomic long long),
                       PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
                return -ENOMEM;
        shared = p;
        shared_slots = nslots;
        return 0;
}

int metrics_share_slot(unsigned slot) {
        if (!shared || slot >= shared_slots || my_slot >= 0)
                return -EINVAL;
        my_slot = (int)slot;
        /* registration order: the registry is a stack, so walk it backwards */
        size_t n = 0;
        for (struct metric *m = registry; m; m = m->next)
                n++;
        for (size_t k = n; k-- > 0;) {
                struct metric *m = registry;
                for (size_t j = 0; j < k; j++)
                        m = m->next;
                share_cell(m);
        }
        return 0;
}

/* A metric's value: its sum over the slots when shared, else its own. */
static long long metric_value(const struct metric *m) {
        if (!m->cell)
                return atomic_load(&m->value);
        size_t i = (size_t)(m->cell - shared) % METRICS_SHARE_MAX;
        long long sum = 0;
        for (unsigned s = 0; s < shared_slots; s++)
                sum += atomic_load(&shared[(size_t)s * METRICS_SHARE_MAX + i]);
        return sum;
}

char *metrics_render(void) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f)
                return NULL;
        const char *prev = NULL;
        for (struct metric *m = registry; m; prev = m->name, m = m->next) {
                if (!prev || strcmp(prev, m->name))
                        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name,
                                m->type == METRIC_COUNTER ? "counter" : "gauge");
                fprintf(f, "%s%s%s%s %lld\n", m->name, m->labels ? "{" : "", m->labels ? m->labels : "",
                        m->labels ? "}" : "", metric_value(m));
        }
        if (text_fn && text_fn(f, text_userdata) < 0) {
                fclose(f);
                free(buf);
                return NULL;
        }
        if (fclose(f) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}
