/* Start-up steps every service's main() shares. Unlike the rest of lib/, these
 * log at warn/error themselves: they stand for what each main() would log, and
 * keeping the lines in one place keeps the services' logs alike. */
#pragma once
#include <stddef.h>

#include "core/config.h"
#include "core/embedded.h"
#include "http/ops.h"
#include "pg/pg.h"

/* What service_init() needs to know about a daemon. */
struct service_spec {
        const char *name;            /* "billing": log field `service`, program "paddock-billing" */
        const char *summary;         /* one line for --help */
        const struct config_entry *table;
        size_t log_level_offset;     /* offsetof the PADDOCK_LOG_LEVEL string in the settings */
        size_t ops_addr_offset;      /* offsetof the PADDOCK_OPS_ADDR string in the settings */
        /* optional: validates service-specific settings after loading */
        int (*check)(const void *settings, struct err_detail *reterr);
        /* `paddock-<name> migrate`: applies these migrations to this schema
         * over the PADDOCK_PG_DSN string at pg_dsn_offset, then exits */
        const char *schema;
        const struct embedded_file *migrations;
        size_t pg_dsn_offset;
};

/* The part of main() every daemon shares: --help prints the configuration
 * table; `migrate` applies the schema's migrations and exits (run with the
 * schema owner's DSN, before the daemon, which connects as a role that may
 * not change the schema: docs/CONTRACTS.md); an unknown argument or an invalid setting (PADDOCK_LOG_LEVEL and
 * PADDOCK_OPS_ADDR included) exits CONFIG_EXIT_BAD; then logging is set up,
 * the effective configuration logged and the shutdown handlers installed.
 * Returns -1 when main() should go on (settings filled; free them with
 * config_free), otherwise the exit status for main() (settings freed). */
int service_init(const struct service_spec *spec, int argc, char **argv, void *settings);

/* An ops_ready_fn for daemons whose only dependency to report is PostgreSQL:
 * userdata is the struct pg_pool. */
int service_ready_pg(void *pool, struct ops_not_ready *why);

/* Applies schema's embedded migrations, waiting for PostgreSQL to become
 * reachable (each wait logged at warn) up to max_wait_ms (0: until shutdown).
 * Logs the outcome once. Returns the number applied, -ECANCELED on shutdown,
 * or the first permanent error. */
int service_migrate(struct pg_pool *pool, const char *schema, const struct embedded_file *migrations,
                    int max_wait_ms);

/* The `migrate` command: service_migrate() over a one-connection pool to dsn,
 * waiting up to a minute for PostgreSQL. Returns main()'s exit status. */
int service_migrate_main(const char *dsn, const char *schema, const struct embedded_file *migrations);
