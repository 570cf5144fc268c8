#include "service/service.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/shutdown.h"
#include "http/ops.h"

int service_ready_pg(void *pool, struct ops_not_ready *why) {
        struct err_detail e = {0};
        int r = pg_pool_ping(pool, &e);
        return r < 0 ? ops_not_ready_set(why, r, "postgresql", "%s", e.message) : 0;
}

static void migrate_waiting(void *userdata, unsigned attempt, int delay_ms, const struct err_detail *err) {
        (void)userdata;
        (void)attempt;
        log_warn("could not reach postgresql, retrying in %d ms: %s", delay_ms, err->message);
}

int service_migrate(struct pg_pool *pool, const char *schema, const struct embedded_file *migrations,
                    int max_wait_ms) {
        struct err_detail err = {0};
        struct pg_migrate_wait_options o = {.max_wait_ms = max_wait_ms, .on_retry = migrate_waiting};
        int r = pg_migrate_wait(pool, schema, migrations, &o, &err);
        if (r >= 0)
                log_info("schema %s is up to date (%d migrations applied)", schema, r);
        else if (r != -ECANCELED)
                log_error("could not migrate schema %s: %s", schema, err.message);
        return r;
}

int service_migrate_main(const char *dsn, const char *schema, const struct embedded_file *migrations) {
        if (!dsn || !*dsn) {
                log_error("invalid configuration: PADDOCK_PG_DSN is required to migrate");
                return CONFIG_EXIT_BAD;
        }
        struct pg_pool *pool = pg_pool_new(dsn, 1);
        if (!pool)
                return 1;
        int r = service_migrate(pool, schema, migrations, 60 * 1000);
        pg_pool_free(pool);
        return r < 0 ? 1 : 0;
}

int service_init(const struct service_spec *spec, int argc, char **argv, void *settings) {
        char program[64];
        snprintf(program, sizeof program, "paddock-%s", spec->name);
        if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
                config_print_help(stdout, program, spec->summary, spec->table);
                return 0;
        }
        bool migrate = argc == 2 && spec->schema && strcmp(argv[1], "migrate") == 0;
        if (argc > 1 && !migrate) {
                fprintf(stderr, "%s: unknown argument \"%s\" (see --help)\n", program, argv[1]);
                return CONFIG_EXIT_BAD;
        }

        struct err_detail err = {0};
        enum log_level level = LOG_INFO;
        log_init(spec->name, LOG_INFO);
        int r = config_load(spec->table, settings, &err);
        const char *log_level = *(char *const *)((const char *)settings + spec->log_level_offset);
        const char *ops_addr = *(char *const *)((const char *)settings + spec->ops_addr_offset);
        char host[256];
        int port;
        if (r >= 0 && log_level_from_string(log_level, &level) < 0)
                r = err_set(&err, -EINVAL, "config", "PADDOCK_LOG_LEVEL: \"%s\" is not debug, info, warn or error", log_level);
        if (r >= 0 && ops_parse_addr(ops_addr, host, sizeof host, &port) < 0)
                r = err_set(&err, -EINVAL, "config", "PADDOCK_OPS_ADDR: \"%s\" is not host:port", ops_addr);
        if (r >= 0 && spec->check)
                r = spec->check(settings, &err);
        if (r < 0) {
                log_error("invalid configuration: %s", err.message);
                config_free(spec->table, settings);
                return CONFIG_EXIT_BAD;
        }
        log_init(spec->name, level);
        if (migrate) {
                const char *dsn = *(char *const *)((const char *)settings + spec->pg_dsn_offset);
                r = service_migrate_main(dsn, spec->schema, spec->migrations);
                config_free(spec->table, settings);
                return r;
        }
        config_log(spec->table, settings);

        r = shutdown_install();
        if (r < 0) {
                log_error("could not install signal handlers: %s", strerror(-r));
                config_free(spec->table, settings);
                return 1;
        }
        return -1;
}
