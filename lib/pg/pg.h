/* PostgreSQL helpers over libpq: a small blocking connection pool, parameterized
 * statements with SQLSTATE translated once, and versioned migrations.
 *   23505 -> -EEXIST, 23503 -> -ENOENT, 40001/40P01 -> -EAGAIN,
 *   class 08 and lost connections -> -ECONNRESET, class 22 -> -EINVAL, else -EIO;
 * the SQLSTATE and message go to *reterr. */
#pragma once
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/embedded.h"
#include "core/err.h"

struct pg_pool;

/* Creates a pool of up to size connections to dsn, opened lazily. Caller owns it.
 * NULL only on out-of-memory. */
struct pg_pool *pg_pool_new(const char *dsn, unsigned size);
/* Closes every connection; accepts NULL; returns NULL. */
struct pg_pool *pg_pool_free(struct pg_pool *pool);
/* Borrows a healthy connection, (re)connecting if needed; waits up to
 * timeout_ms for a free one. Returns NULL with *reterr (-ECONNRESET, -ETIMEDOUT).
 * Thread-safe. Give it back with pg_pool_release(). */
PGconn *pg_pool_acquire(struct pg_pool *pool, int timeout_ms, struct err_detail *reterr);
/* Returns conn to the pool; a broken connection or one left inside a
 * transaction is reset/closed rather than reused, and every session setting
 * (RESET ALL: paddock.tenant_id included) is reset, so a connection never
 * carries one borrower's tenant into the next. Thread-safe. */
void pg_pool_release(struct pg_pool *pool, PGconn *conn);
/* pg_pool_release() for a borrower that set nothing for the session (every
 * setting transaction-local, set_config(..., true)) and ended its last
 * transaction: no RESET ALL round trip, the session has nothing to reset.
 * A connection found inside a transaction is rolled back and reset as
 * pg_pool_release() does. Thread-safe. */
void pg_pool_release_clean(struct pg_pool *pool, PGconn *conn);

/* The one translation of a SQLSTATE into a negative errno (services never
 * compare SQLSTATEs; the code stays in err_detail.code for logs):
 * 23505 unique -> -EEXIST; 23503 foreign key -> -ENOENT (the row referred to
 * is missing; on a DELETE: the row is still referred to, which a caller
 * reports as -EBUSY); 23502/23514/22xxx bad value -> -EINVAL;
 * 40001/40P01 serialization/deadlock -> -EAGAIN; 57014 statement timeout
 * -> -ETIMEDOUT; class 08 and 57P01-57P03 (connection, shutdown) ->
 * -ECONNRESET; 42P01/3F000 undefined table/schema -> -ENOPKG (another
 * service's schema not migrated yet); anything else -EIO (42501 too:
 * -EACCES would read as a bad token to the api's authentication). */
int pg_sqlstate_errno(const char *state);
/* Runs sql with text parameters (NULL entries are SQL NULL). On success returns
 * 0 and, if ret is not NULL, the result (caller PQclear()s it; otherwise it is
 * cleared here). On failure returns the translated negative errno. */
int pg_exec(PGconn *conn, const char *sql, int nparams, const char *const *params,
            PGresult **ret, struct err_detail *reterr);
/* pg_exec() in two steps, so the caller works while the server runs sql:
 * pg_send() sends it (no result yet); pg_wait() waits for and returns its
 * result as pg_exec() does. Nothing else may use conn in between. */
int pg_send(PGconn *conn, const char *sql, int nparams, const char *const *params, struct err_detail *reterr);
int pg_wait(PGconn *conn, PGresult **ret, struct err_detail *reterr);
/* Runs sql, a "COPY ... FROM STDIN" statement, sending data[0..len) (in the
 * statement's format, borrowed) as its input: the bulk path of batched
 * consumers (one round trip for many rows). Returns 0 or the translated
 * negative errno, like pg_exec(). */
int pg_copy_in(PGconn *conn, const char *sql, const char *data, size_t len, struct err_detail *reterr);
/* A binary COPY sent while its rows are built (issue 10 §4: the server
 * parses the first rows while the client builds the next, instead of after
 * the last): pg_copy_stream_start() runs sql (a "COPY ... FROM STDIN (FORMAT
 * binary)") and initialises b; the caller appends rows with the pg_copy_*
 * field calls and calls pg_copy_stream_send() between rows, which sends what
 * b holds once it holds PG_COPY_STREAM_BYTES (-EIO once a send failed);
 * pg_copy_stream_end() sends the rest and the trailer and returns the COPY's
 * result like pg_exec(), or, given why, aborts the COPY (nothing of it is
 * stored) and returns -EIO (-ENOMEM if b ran out of memory). Every started
 * stream must be ended; b is the caller's to pg_copy_buf_done(). */
#define PG_COPY_STREAM_BYTES (256 * 1024)
struct pg_copy_buf;
int pg_copy_stream_start(PGconn *conn, const char *sql, struct pg_copy_buf *b, struct err_detail *reterr);
int pg_copy_stream_send(PGconn *conn, struct pg_copy_buf *b);
int pg_copy_stream_end(PGconn *conn, struct pg_copy_buf *b, const char *why, struct err_detail *reterr);
int pg_begin(PGconn *conn, struct err_detail *reterr);
int pg_commit(PGconn *conn, struct err_detail *reterr);
/* Rolls back, ignoring errors (used on failure paths). */
void pg_rollback(PGconn *conn);

/* Sets the session's paddock.tenant_id, the setting every row-level-security
 * policy keys on (docs/CONTRACTS.md "Tenant isolation in PostgreSQL"); NULL
 * or "" sets it empty, under which tenant-owned tables show no rows at all.
 * Session-level: it lasts until pg_pool_release() resets the connection, so
 * callers set it at the start of every unit of work on a borrowed
 * connection. Returns 0 or the pg_exec() error. */
int pg_set_tenant(PGconn *conn, const char *tenant_id, struct err_detail *reterr);
/* pg_set_tenant() for the current transaction only (set_config(..., true)):
 * it ends with COMMIT or ROLLBACK, so no later statement on the connection
 * runs as that tenant. -EINVAL when conn is not inside a transaction. */
int pg_set_tenant_local(PGconn *conn, const char *tenant_id, struct err_detail *reterr);
/* Ends the current transaction with end ("COMMIT", "ROLLBACK", or NULL when
 * there is none), begins a new one and sets paddock.tenant_id (a UUID, or
 * NULL/"" for none) for it, in one round trip: for callers that keep every
 * statement inside a transaction carrying its tenant. Returns 0; -EIO
 * (25P02) when the COMMIT rolled an aborted transaction back (the new one
 * is begun all the same); -EINVAL for a tenant that is not a UUID; or the
 * translated error of the first statement that failed (then the statements
 * after it did not run: no transaction is open). */
int pg_tx_restart(PGconn *conn, const char *end, const char *tenant_id, struct err_detail *reterr);
/* pg_tx_restart() and then sql, a statement without parameters (the caller
 * writes it; any literal in it validated, never input as such), in the same
 * round trip; *ret (caller PQclear()s it) is sql's result. For a request's
 * first statement, e.g. the bearer token lookup: one round trip instead of
 * two. Returns as pg_tx_restart(), or sql's translated error. */
int pg_tx_restart_then(PGconn *conn, const char *end, const char *tenant_id, const char *sql, PGresult **ret,
                       struct err_detail *reterr);

/* A statement the service prepares by name once per connection and then
 * only executes: no parse, no plan per request (a generic plan once
 * PostgreSQL finds it no worse). Define one static const per statement;
 * name must be unique in the process, sql has nparams text parameters $1... */
struct pg_stmt {
        const char *name;
        const char *sql;
        int nparams;
};

/* One step of pg_exec_pipeline(): a prepared statement with its text
 * parameters (NULL entries are SQL NULL), or (stmt NULL) the parameterless
 * command sql, e.g. "BEGIN" or "COMMIT". */
struct pg_step {
        const struct pg_stmt *stmt;
        const char *sql;
        const char *const *params;
};

/* Runs steps[0..n) in one round trip (libpq pipeline mode), preparing on
 * conn first any statement not yet prepared on it (in the same round
 * trip): e.g. {BEGIN, token lookup} or {row query, COMMIT}. Without a
 * BEGIN among them the steps share one implicit transaction that ends
 * with the round trip. rets (n entries, may be NULL) receives each step's
 * result (caller PQclear()s them; NULL for a step that did not run).
 * Returns 0, or the translated error of the first step that failed (the
 * later ones did not run; a transaction the steps were in is aborted).
 * Not thread-safe on one conn (no libpq call is). */
int pg_exec_pipeline(PGconn *conn, const struct pg_step *steps, size_t n, PGresult **rets,
                     struct err_detail *reterr);
/* pg_exec_pipeline() of the one statement stmt: pg_exec() prepared. */
int pg_exec_stmt(PGconn *conn, const struct pg_stmt *stmt, const char *const *params, PGresult **ret,
                 struct err_detail *reterr);

/* Applies the embedded migrations (sorted by name, e.g. "0001_init.sql") that
 * are not yet recorded in <schema>.schema_migrations, each in its own
 * transaction, under an advisory lock so concurrent starts are safe. Creates the
 * schema if needed. Each migration runs with search_path "<schema>, public", so
 * unqualified names land in the schema. schema must be a lower-case identifier.
 * When every migration is already recorded it only reads schema_migrations, so
 * a service's runtime role (which may not create or alter anything) gets 0;
 * a runtime role facing pending migrations fails with -EACCES (SQLSTATE 42501),
 * whose message says to run the migrating command with the owner's DSN.
 * Returns the number applied or a negative errno (*reterr names the migration). */
int pg_migrate(PGconn *conn, const char *schema, const struct embedded_file *migrations,
               struct err_detail *reterr);
/* Reports one failed attempt of pg_migrate_wait() while PostgreSQL is
 * unreachable: attempt counts from 1, delay_ms is the wait before the next one,
 * err says why (borrowed for the call). lib/ logs at debug only, so this is
 * where a service logs its waiting. Called from pg_migrate_wait()'s thread. */
typedef void (*pg_retry_fn)(void *userdata, unsigned attempt, int delay_ms, const struct err_detail *err);

struct pg_migrate_wait_options {
        int max_wait_ms;      /* 0: wait until shutdown; else give up after about this long */
        int retry_min_ms;     /* 0: 100, first wait, doubled per attempt */
        int retry_max_ms;     /* 0: 5000, ceiling of the wait */
        pg_retry_fn on_retry; /* optional */
        void *userdata;       /* for on_retry */
};

/* pg_migrate() on a connection from pool, for service start: PostgreSQL may
 * come up after the service (local stack, Kubernetes), so while it is
 * unreachable or the migration hits a transient error (-ECONNRESET,
 * -ETIMEDOUT, -EAGAIN) it retries with exponential backoff instead of failing.
 * opts may be NULL (defaults). Returns the number of migrations applied; the
 * first permanent error (e.g. a bad migration); the last transient error once
 * max_wait_ms has passed; or -ECANCELED as soon as core/shutdown reports a
 * shutdown. *reterr says why. pool and migrations are borrowed. */
int pg_migrate_wait(struct pg_pool *pool, const char *schema, const struct embedded_file *migrations,
                    const struct pg_migrate_wait_options *opts, struct err_detail *reterr);
/* Runs a trivial query on a pooled connection (for /readyz). Returns 0, or
 * a negative errno with *reterr saying why (no connection free within 5 s,
 * could not connect, the query failed). */
int pg_pool_ping(struct pg_pool *pool, struct err_detail *reterr);
