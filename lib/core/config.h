/* Configuration from the environment through one table per service
 * (name, type, default, bounds, sensitivity, description). Only main() calls
 * config_load(); everything is validated before anything is applied, and a
 * bad value makes main() exit with CONFIG_EXIT_BAD (78, EX_CONFIG). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "core/err.h"

#define CONFIG_EXIT_BAD 78

enum config_type { CONFIG_STRING, CONFIG_INT, CONFIG_BOOL, CONFIG_DOUBLE };

struct config_entry {
        const char *name;          /* environment variable, e.g. "PADDOCK_PG_DSN" */
        enum config_type type;
        const char *default_value; /* NULL: required */
        double min, max;           /* bounds for INT and DOUBLE (inclusive) */
        bool sensitive;            /* never printed or logged */
        size_t offset;             /* offsetof(struct settings, field) */
        const char *description;
};
/* Field types in the settings struct: STRING char * (owned, freed by
 * config_free), INT long long, BOOL bool, DOUBLE double. Table ends with {NULL}. */

/* Reads every entry from getenv() into settings. On the first invalid or
 * missing value returns -EINVAL with reterr naming the variable and the reason;
 * settings are then partially filled and must be freed with config_free(). */
int config_load(const struct config_entry *table, void *settings, struct err_detail *reterr);
/* Frees the owned strings of settings (not settings itself). */
void config_free(const struct config_entry *table, void *settings);
/* Prints the table (name, type, default, bounds, description) for --help. */
void config_print_help(FILE *out, const char *program, const char *summary,
                       const struct config_entry *table);
/* Logs the effective configuration at info, sensitive values masked. */
void config_log(const struct config_entry *table, const void *settings);
