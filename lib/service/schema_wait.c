#include "service/schema_wait.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/shutdown.h"
#include "service/service.h"

int service_schema_version(struct pg_pool *pool, const char *schema, const struct embedded_file *migrations,
                           struct err_detail *reterr) {
        PGconn *conn = pg_pool_acquire(pool, 5000, reterr);
        if (!conn)
                return reterr && reterr->errnum < 0 ? reterr->errnum : -ECONNRESET;
        /* schema is a lower-case identifier (pg_migrate checks it first) */
        char sql[160];
        snprintf(sql, sizeof sql, "SELECT name FROM %s.schema_migrations", schema);
        PGresult *res = NULL;
        int have = 0;
        /* to_regclass: NULL, not an error, while the schema or the table is missing */
        int r = pg_exec(conn, "SELECT to_regclass($1 || '.schema_migrations') IS NOT NULL", 1,
                        (const char *const[]){schema}, &res, reterr);
        bool exists = r >= 0 && PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
        res = NULL;
        if (r >= 0 && exists && (r = pg_exec(conn, sql, 0, NULL, &res, reterr)) >= 0) {
                for (size_t i = 0; migrations && migrations[i].name; i++)
                        for (int row = 0; row < PQntuples(res); row++)
                                if (strcmp(PQgetvalue(res, row, 0), migrations[i].name) == 0) {
                                        have++;
                                        break;
                                }
                PQclear(res);
        }
        pg_pool_release(pool, conn);
        return r < 0 ? r : have;
}

int service_wait_schema(struct pg_pool *pool, const char *schema, const struct embedded_file *migrations,
                        int migrate_wait_ms, struct service_schema_wait *w) {
        int r = service_migrate(pool, schema, migrations, migrate_wait_ms);
        if (r != -EACCES)
                return r < 0 ? r : 0;
        int need = 0;
        while (migrations && migrations[need].name)
                need++;
        w->schema = schema;
        atomic_store(&w->need, need);
        atomic_store(&w->have, 0);
        atomic_store(&w->waiting, true);
        bool said = false;
        for (int delay = SERVICE_SCHEMA_POLL_MIN_MS;;) {
                struct err_detail e = {0};
                int have = service_schema_version(pool, schema, migrations, &e);
                if (have >= need)
                        break;
                if (have >= 0) {
                        atomic_store(&w->have, have);
                        if (!said)
                                log_ctx(LOG_WARN, LOG_KV("schema", schema),
                                        "schema %s is at version %d, need %d: waiting for its migrate job "
                                        "(`paddock-<service> migrate` with the schema owner's DSN)",
                                        schema, have, need);
                        said = true;
                } else {
                        log_ctx(LOG_DEBUG, LOG_KV("schema", schema), "could not read the schema version: %s",
                                e.message);
                }
                if (shutdown_sleep_ms(delay))
                        return -ECANCELED;
                delay = delay * 2 > SERVICE_SCHEMA_POLL_MAX_MS ? SERVICE_SCHEMA_POLL_MAX_MS : delay * 2;
        }
        atomic_store(&w->have, need);
        atomic_store(&w->waiting, false);
        log_ctx(LOG_INFO, LOG_KV("schema", schema), "schema %s is up to date (version %d)", schema, need);
        return 0;
}

int service_schema_ready(const struct service_schema_wait *w, struct ops_not_ready *why) {
        if (!atomic_load(&w->waiting))
                return 0;
        return ops_not_ready_set(why, -EAGAIN, "schema",
                                 "schema %s version %d, need %d (waiting for its migrate job)", w->schema,
                                 atomic_load(&w->have), atomic_load(&w->need));
}
