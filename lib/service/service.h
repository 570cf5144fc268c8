/* Start-up steps every service's main() shares. Unlike the rest of lib/, these
 * log at warn/error themselves: they stand for what each main() would log, and
 * keeping the lines in one place keeps the services' logs alike. */
#pragma once
#include "core/embedded.h"
#include "pg/pg.h"

/* Applies schema's embedded migrations, waiting for PostgreSQL to become
 * reachable (each wait logged at warn) up to max_wait_ms (0: until shutdown).
 * Logs the outcome once. Returns the number applied, -ECANCELED on shutdown,
 * or the first permanent error. */
int service_migrate(struct pg_pool *pool, const char *schema, const struct embedded_file *migrations,
                    int max_wait_ms);
