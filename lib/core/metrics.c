#include "core/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct metric *registry;

void metrics_register(struct metric *m) {
        m->next = registry;
        registry = m;
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
                        m->labels ? "}" : "", (long long)atomic_load(&m->value));
        }
        if (fclose(f) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}
