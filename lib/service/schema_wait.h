/* Services wait for their schema instead of crash-looping (issue 16;
 * docs/CONTRACTS.md "Services wait for their schema"). In Kubernetes the
 * migrate Job (deploy/k8s) runs the schema owner's `paddock-<svc> migrate`
 * while the Deployments start as runtime roles that may not change the
 * schema: a daemon that finds migrations pending says so once, keeps
 * /healthz alive and answers /readyz 503 "schema <name> version N, need M"
 * until the Job has run, polling with backoff. */
#pragma once
#include <stdatomic.h>
#include <stdbool.h>

#include "core/embedded.h"
#include "http/ops.h"
#include "pg/pg.h"

/* What the wait has seen; written by the waiting thread, read by the ops
 * server's (atomics). Zero-initialised: not waiting. */
struct service_schema_wait {
        const char *schema;     /* borrowed, set when the wait starts */
        _Atomic int have;       /* embedded migrations recorded in <schema>.schema_migrations */
        _Atomic int need;       /* embedded migrations */
        _Atomic bool waiting;
};

/* Polls ms between checks: from SERVICE_SCHEMA_POLL_MIN_MS, doubled up to
 * SERVICE_SCHEMA_POLL_MAX_MS (the Job's run is minutes, not milliseconds). */
#define SERVICE_SCHEMA_POLL_MIN_MS 500
#define SERVICE_SCHEMA_POLL_MAX_MS 10000

/* The number of migrations (embedded, NULL-name terminated) recorded in
 * <schema>.schema_migrations: 0 when the schema or the table is missing.
 * Returns it, or a negative errno when PostgreSQL cannot be asked (*reterr
 * says why). pool and migrations are borrowed; thread-safe. */
int service_schema_version(struct pg_pool *pool, const char *schema, const struct embedded_file *migrations,
                           struct err_detail *reterr);

/* Brings the schema up to date for start-up: service_migrate() (which
 * applies what is pending when the role owns the schema, as in the local
 * stack); when the role may not (-EACCES), logs once at warn, sets *w
 * (w->waiting) and polls service_schema_version() with backoff until every
 * migration is recorded, then logs once at info and clears w->waiting.
 * Returns 0 once up to date, -ECANCELED on shutdown, or the first other
 * error (logged). pool, schema and migrations are borrowed; w must outlive
 * the readers (the ops server). */
int service_wait_schema(struct pg_pool *pool, const char *schema, const struct embedded_file *migrations,
                        int migrate_wait_ms, struct service_schema_wait *w);

/* For an ops_ready_fn: -EAGAIN with *why = {"schema", "schema api version
 * N, need M ..."} while w is waiting, else 0. Thread-safe. */
int service_schema_ready(const struct service_schema_wait *w, struct ops_not_ready *why);
