#include "service/service.h"

#include <errno.h>

#include "core/log.h"

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
