#include "core/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct metric *registry;
static metrics_text_fn text_fn;
static void *text_userdata;

void metrics_register_text(metrics_text_fn fn, void *userdata) {
        text_fn = fn;
        text_userdata = userdata;
}

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
