#include "core/config.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

static const char *const type_names[] = {"string", "int", "bool", "double"};

static int parse_one(const struct config_entry *e, const char *raw, void *field,
                     struct err_detail *reterr) {
        char *end;
        switch (e->type) {
        case CONFIG_STRING: {
                char *copy = strdup(raw);
                if (!copy)
                        return -ENOMEM;
                free(*(char **)field);
                *(char **)field = copy;
                return 0;
        }
        case CONFIG_INT: {
                errno = 0;
                long long v = strtoll(raw, &end, 10);
                if (errno || end == raw || *end)
                        return err_set(reterr, -EINVAL, "config", "%s: \"%s\" is not an integer", e->name, raw);
                if ((double)v < e->min || (double)v > e->max)
                        return err_set(reterr, -EINVAL, "config", "%s: %lld is outside [%.0f, %.0f]", e->name, v, e->min, e->max);
                *(long long *)field = v;
                return 0;
        }
        case CONFIG_DOUBLE: {
                errno = 0;
                double v = strtod(raw, &end);
                if (errno || end == raw || *end || !isfinite(v))
                        return err_set(reterr, -EINVAL, "config", "%s: \"%s\" is not a number", e->name, raw);
                if (v < e->min || v > e->max)
                        return err_set(reterr, -EINVAL, "config", "%s: %g is outside [%g, %g]", e->name, v, e->min, e->max);
                *(double *)field = v;
                return 0;
        }
        case CONFIG_BOOL:
                if (!strcmp(raw, "1") || !strcmp(raw, "true") || !strcmp(raw, "yes"))
                        *(bool *)field = true;
                else if (!strcmp(raw, "0") || !strcmp(raw, "false") || !strcmp(raw, "no"))
                        *(bool *)field = false;
                else
                        return err_set(reterr, -EINVAL, "config", "%s: \"%s\" is not a boolean (true/false)", e->name, raw);
                return 0;
        }
        return -EINVAL;
}

int config_load(const struct config_entry *table, void *settings, struct err_detail *reterr) {
        for (const struct config_entry *e = table; e->name; e++) {
                const char *raw = getenv(e->name);
                if (!raw || !*raw)
                        raw = e->default_value;
                if (!raw)
                        return err_set(reterr, -EINVAL, "config", "%s: required but not set", e->name);
                int r = parse_one(e, raw, (char *)settings + e->offset, reterr);
                if (r < 0)
                        return r;
        }
        return 0;
}

void config_free(const struct config_entry *table, void *settings) {
        for (const struct config_entry *e = table; e->name; e++)
                if (e->type == CONFIG_STRING) {
                        char **f = (char **)((char *)settings + e->offset);
                        free(*f);
                        *f = NULL;
                }
}

void config_print_help(FILE *out, const char *program, const char *summary,
                       const struct config_entry *table) {
        fprintf(out, "Usage: %s [--help]\n%s\n\nConfiguration (environment variables):\n", program, summary);
        for (const struct config_entry *e = table; e->name; e++) {
                fprintf(out, "  %-32s %-6s ", e->name, type_names[e->type]);
                if (e->default_value)
                        fprintf(out, "default %s", e->sensitive && *e->default_value ? "(hidden)" : (*e->default_value ? e->default_value : "\"\""));
                else
                        fprintf(out, "required");
                if (e->type == CONFIG_INT)
                        fprintf(out, ", range [%.0f, %.0f]", e->min, e->max);
                else if (e->type == CONFIG_DOUBLE)
                        fprintf(out, ", range [%g, %g]", e->min, e->max);
                if (e->sensitive)
                        fprintf(out, ", sensitive");
                fprintf(out, "\n      %s\n", e->description);
        }
}

void config_log(const struct config_entry *table, const void *settings) {
        for (const struct config_entry *e = table; e->name; e++) {
                const char *field = (const char *)settings + e->offset;
                char value[256];
                if (e->sensitive)
                        snprintf(value, sizeof value, "(hidden)");
                else if (e->type == CONFIG_STRING)
                        snprintf(value, sizeof value, "%s", *(char *const *)field ? *(char *const *)field : "");
                else if (e->type == CONFIG_INT)
                        snprintf(value, sizeof value, "%lld", *(const long long *)field);
                else if (e->type == CONFIG_DOUBLE)
                        snprintf(value, sizeof value, "%g", *(const double *)field);
                else
                        snprintf(value, sizeof value, "%s", *(const bool *)field ? "true" : "false");
                log_ctx(LOG_INFO, LOG_KV("setting", e->name, "value", value), "configuration");
        }
}
