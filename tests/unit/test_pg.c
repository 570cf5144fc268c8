/* pg wrapper against a real PostgreSQL named by PADDOCK_PG_DSN (skipped without). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/log.h"
#include "pg/pg.h"

static const char *dsn;
static struct pg_pool *pool;
static char schema[64];

static int group_setup(void **state) {
        snprintf(schema, sizeof schema, "unit_pg_%d", (int)getpid());
        pool = pg_pool_new(dsn, 2);
        return pool ? 0 : -1;
}

static int group_teardown(void **state) {
        PGconn *c = pg_pool_acquire(pool, 5000, NULL);
        if (c) {
                char sql[128];
                snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE", schema);
                pg_exec(c, sql, 0, NULL, NULL, NULL);
                pg_pool_release(pool, c);
        }
        pg_pool_free(pool);
        return 0;
}

/* Deliberately out of order: pg_migrate sorts by name. */
static const struct embedded_file migrations_v1[] = {
        {"0002_note.sql", "ALTER TABLE items ADD COLUMN note text;", 0},
        {"0001_init.sql", "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);\n"
                          "CREATE INDEX items_name ON items (name);", 0},
        {NULL, NULL, 0},
};

static const struct embedded_file migrations_v2[] = {
        {"0001_init.sql", "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);\n"
                          "CREATE INDEX items_name ON items (name);", 0},
        {"0002_note.sql", "ALTER TABLE items ADD COLUMN note text;", 0},
        {"0003_broken.sql", "CREATE TABLE half (x int);\nCREAT TABLE oops (y int);", 0},
        {NULL, NULL, 0},
};

static void test_migrate_idempotent(void **state) {
        struct err_detail err = {0};
        PGconn *c = pg_pool_acquire(pool, 5000, &err);
        assert_non_null(c);
        assert_int_equal(pg_migrate(c, schema, migrations_v1, &err), 2);
        assert_int_equal(pg_migrate(c, schema, migrations_v1, &err), 0);

        char sql[256];
        PGresult *res = NULL;
        snprintf(sql, sizeof sql, "SELECT name FROM %s.schema_migrations ORDER BY name", schema);
        assert_int_equal(pg_exec(c, sql, 0, NULL, &res, &err), 0);
        assert_int_equal(PQntuples(res), 2);
        assert_string_equal(PQgetvalue(res, 0, 0), "0001_init.sql");
        assert_string_equal(PQgetvalue(res, 1, 0), "0002_note.sql");
        PQclear(res);

        /* A failing migration is rolled back entirely and not recorded. */
        int r = pg_migrate(c, schema, migrations_v2, &err);
        assert_true(r < 0);
        assert_string_equal(err.code, "42601");
        assert_non_null(strstr(err.message, "0003_broken.sql"));
        assert_int_equal(PQtransactionStatus(c), PQTRANS_IDLE);
        snprintf(sql, sizeof sql, "SELECT to_regclass('%s.half') IS NULL, "
                 "(SELECT count(*) FROM %s.schema_migrations)", schema, schema);
        assert_int_equal(pg_exec(c, sql, 0, NULL, &res, &err), 0);
        assert_string_equal(PQgetvalue(res, 0, 0), "t");
        assert_string_equal(PQgetvalue(res, 0, 1), "2");
        PQclear(res);

        /* The advisory lock was released: another session can take it at once. */
        PGconn *other = pg_pool_acquire(pool, 5000, &err);
        assert_non_null(other);
        const char *params[] = {schema};
        assert_int_equal(pg_exec(other, "SELECT pg_try_advisory_lock(hashtext($1))", 1, params, &res, &err), 0);
        assert_string_equal(PQgetvalue(res, 0, 0), "t");
        PQclear(res);
        assert_int_equal(pg_exec(other, "SELECT pg_advisory_unlock(hashtext($1))", 1, params, NULL, &err), 0);
        pg_pool_release(pool, other);

        assert_int_equal(pg_migrate(c, "Bad-Name", migrations_v1, &err), -EINVAL);
        pg_pool_release(pool, c);
}

struct migrator {
        char schema[80];
        int result;
};

static void *migrate_thread(void *arg) {
        struct migrator *m = arg;
        PGconn *c = pg_pool_acquire(pool, 10000, NULL);
        m->result = c ? pg_migrate(c, m->schema, migrations_v1, NULL) : -ECONNRESET;
        if (c)
                pg_pool_release(pool, c);
        return NULL;
}

/* Two services starting at once: one applies everything, the other nothing. */
static void test_migrate_concurrently(void **state) {
        struct migrator m[2];
        pthread_t t[2];
        for (int i = 0; i < 2; i++) {
                snprintf(m[i].schema, sizeof m[i].schema, "%s_race", schema);
                assert_int_equal(pthread_create(&t[i], NULL, migrate_thread, &m[i]), 0);
        }
        for (int i = 0; i < 2; i++)
                pthread_join(t[i], NULL);
        assert_true(m[0].result >= 0 && m[1].result >= 0);
        assert_int_equal(m[0].result + m[1].result, 2);
        PGconn *c = pg_pool_acquire(pool, 5000, NULL);
        assert_non_null(c);
        char sql[128];
        snprintf(sql, sizeof sql, "DROP SCHEMA %s CASCADE", m[0].schema);
        assert_int_equal(pg_exec(c, sql, 0, NULL, NULL, NULL), 0);
        pg_pool_release(pool, c);
}

/* The one SQLSTATE -> errno table (pg.h), without a server. */
static void test_sqlstate_errno(void **state) {
        assert_int_equal(pg_sqlstate_errno("23505"), -EEXIST);
        assert_int_equal(pg_sqlstate_errno("23503"), -ENOENT);
        assert_int_equal(pg_sqlstate_errno("23502"), -EINVAL);
        assert_int_equal(pg_sqlstate_errno("23514"), -EINVAL);
        assert_int_equal(pg_sqlstate_errno("22P02"), -EINVAL);
        assert_int_equal(pg_sqlstate_errno("22012"), -EINVAL);
        assert_int_equal(pg_sqlstate_errno("40001"), -EAGAIN);
        assert_int_equal(pg_sqlstate_errno("40P01"), -EAGAIN);
        assert_int_equal(pg_sqlstate_errno("57014"), -ETIMEDOUT);
        assert_int_equal(pg_sqlstate_errno("08006"), -ECONNRESET);
        assert_int_equal(pg_sqlstate_errno("08001"), -ECONNRESET);
        assert_int_equal(pg_sqlstate_errno("57P01"), -ECONNRESET);
        assert_int_equal(pg_sqlstate_errno("42P01"), -ENOPKG);
        assert_int_equal(pg_sqlstate_errno("3F000"), -ENOPKG);
        assert_int_equal(pg_sqlstate_errno("42601"), -EIO);
        assert_int_equal(pg_sqlstate_errno("42501"), -EIO);
        assert_int_equal(pg_sqlstate_errno("23"), -EIO);
        assert_int_equal(pg_sqlstate_errno(""), -EIO);
        assert_int_equal(pg_sqlstate_errno(NULL), -EIO);
}

/* What a real server says reaches callers as the table's errno, with the
 * SQLSTATE kept in err.code. */
static void test_sqlstate_from_server(void **state) {
        struct err_detail err = {0};
        char sql[512];
        PGconn *c = pg_pool_acquire(pool, 5000, &err);
        assert_non_null(c);
        snprintf(sql, sizeof sql, "CREATE TABLE %s.parent (id int PRIMARY KEY)", schema);
        assert_int_equal(pg_exec(c, sql, 0, NULL, NULL, &err), 0);
        snprintf(sql, sizeof sql,
                 "CREATE TABLE %s.child (id int PRIMARY KEY, parent int NOT NULL REFERENCES %s.parent, "
                 "n int CHECK (n > 0))",
                 schema, schema);
        assert_int_equal(pg_exec(c, sql, 0, NULL, NULL, &err), 0);
        snprintf(sql, sizeof sql, "INSERT INTO %s.parent VALUES (1)", schema);
        assert_int_equal(pg_exec(c, sql, 0, NULL, NULL, &err), 0);
        snprintf(sql, sizeof sql, "INSERT INTO %s.child VALUES (1, 1, 1)", schema);
        assert_int_equal(pg_exec(c, sql, 0, NULL, NULL, &err), 0);
        /* a foreign key to a missing row, on insert */
        snprintf(sql, sizeof sql, "INSERT INTO %s.child VALUES (2, 7, 1)", schema);
        assert_int_equal(pg_exec(c, sql, 0, NULL, NULL, &err), -ENOENT);
        assert_string_equal(err.code, "23503");
        /* a row still referred to, on delete: the same SQLSTATE and errno */
        snprintf(sql, sizeof sql, "DELETE FROM %s.parent WHERE id = 1", schema);
        assert_int_equal(pg_exec(c, sql, 0, NULL, NULL, &err), -ENOENT);
        assert_string_equal(err.code, "23503");
        snprintf(sql, sizeof sql, "INSERT INTO %s.child VALUES (3, 1, 0)", schema);
        assert_int_equal(pg_exec(c, sql, 0, NULL, NULL, &err), -EINVAL);
        assert_string_equal(err.code, "23514");
        snprintf(sql, sizeof sql, "INSERT INTO %s.child VALUES (4, NULL, 1)", schema);
        assert_int_equal(pg_exec(c, sql, 0, NULL, NULL, &err), -EINVAL);
        assert_string_equal(err.code, "23502");
        assert_int_equal(pg_exec(c, "CREATE TABLE no_such_schema_here.t (x int)", 0, NULL, NULL, &err), -ENOPKG);
        assert_string_equal(err.code, "3F000");
        snprintf(sql, sizeof sql, "SELECT 1 FROM %s.no_such_table", schema);
        assert_int_equal(pg_exec(c, sql, 0, NULL, NULL, &err), -ENOPKG);
        assert_string_equal(err.code, "42P01");
        assert_int_equal(pg_exec(c, "SET statement_timeout = 50", 0, NULL, NULL, &err), 0);
        assert_int_equal(pg_exec(c, "SELECT pg_sleep(5)", 0, NULL, NULL, &err), -ETIMEDOUT);
        assert_string_equal(err.code, "57014");
        pg_pool_release(pool, c); /* RESET ALL: the timeout goes with the session */
}

static void test_error_translation(void **state) {
        struct err_detail err = {0};
        char sql[256];
        PGconn *c = pg_pool_acquire(pool, 5000, &err);
        assert_non_null(c);
        snprintf(sql, sizeof sql, "INSERT INTO %s.items (id, name) VALUES ($1, $2)", schema);
        const char *row[] = {"1", "one"};
        assert_int_equal(pg_exec(c, sql, 2, row, NULL, &err), 0);
        assert_int_equal(pg_exec(c, sql, 2, row, NULL, &err), -EEXIST);
        assert_int_equal(err.errnum, -EEXIST);
        assert_string_equal(err.code, "23505");
        assert_non_null(strstr(err.message, "items_pkey"));

        int r = pg_exec(c, "SELEC 1", 0, NULL, NULL, &err);
        assert_true(r < 0);
        assert_string_equal(err.code, "42601");

        const char *bad[] = {"abc"};
        assert_int_equal(pg_exec(c, "SELECT $1::int", 1, bad, NULL, &err), -EINVAL);
        assert_string_equal(err.code, "22P02");

        /* NULL parameter is SQL NULL; results are handed over. */
        const char *nul[] = {NULL};
        PGresult *res = NULL;
        assert_int_equal(pg_exec(c, "SELECT $1::text IS NULL", 1, nul, &res, &err), 0);
        assert_string_equal(PQgetvalue(res, 0, 0), "t");
        PQclear(res);

        /* COMMIT of an aborted transaction is a failure, not a silent rollback. */
        assert_int_equal(pg_begin(c, &err), 0);
        assert_true(pg_exec(c, "SELECT 1/0", 0, NULL, NULL, &err) < 0);
        assert_string_equal(err.code, "22012");
        assert_true(pg_commit(c, &err) < 0);
        assert_int_equal(PQtransactionStatus(c), PQTRANS_IDLE);

        assert_int_equal(pg_begin(c, &err), 0);
        const char *row2[] = {"2", "two"};
        assert_int_equal(pg_exec(c, sql, 2, row2, NULL, &err), 0);
        pg_rollback(c);
        assert_int_equal(PQtransactionStatus(c), PQTRANS_IDLE);
        pg_pool_release(pool, c);
}

static void test_pool_limits(void **state) {
        struct err_detail err = {0};
        PGconn *a = pg_pool_acquire(pool, 1000, &err);
        PGconn *b = pg_pool_acquire(pool, 1000, &err);
        assert_non_null(a);
        assert_non_null(b);
        assert_ptr_not_equal(a, b);
        assert_null(pg_pool_acquire(pool, 200, &err));
        assert_int_equal(err.errnum, -ETIMEDOUT);
        pg_pool_release(pool, b);
        PGconn *again = pg_pool_acquire(pool, 1000, &err);
        assert_ptr_equal(again, b); /* reused, not reconnected */
        pg_pool_release(pool, again);
        pg_pool_release(pool, a);
        assert_int_equal(pg_pool_ping(pool, NULL), 0);
}

static void test_release_inside_transaction(void **state) {
        struct err_detail err = {0};
        char sql[256];
        struct pg_pool *one = pg_pool_new(dsn, 1);
        assert_non_null(one);
        PGconn *c = pg_pool_acquire(one, 5000, &err);
        assert_non_null(c);
        assert_int_equal(pg_begin(c, &err), 0);
        snprintf(sql, sizeof sql, "INSERT INTO %s.items (id, name) VALUES (42, 'abandoned')", schema);
        assert_int_equal(pg_exec(c, sql, 0, NULL, NULL, &err), 0);
        pg_pool_release(one, c); /* forgot to commit or roll back */

        c = pg_pool_acquire(one, 5000, &err);
        assert_non_null(c);
        assert_int_equal(PQtransactionStatus(c), PQTRANS_IDLE);
        PGresult *res = NULL;
        snprintf(sql, sizeof sql, "SELECT count(*) FROM %s.items WHERE id = 42", schema);
        assert_int_equal(pg_exec(c, sql, 0, NULL, &res, &err), 0);
        assert_string_equal(PQgetvalue(res, 0, 0), "0");
        PQclear(res);

        /* Same for a transaction left in the failed state. */
        assert_int_equal(pg_begin(c, &err), 0);
        assert_true(pg_exec(c, "SELECT 1/0", 0, NULL, NULL, &err) < 0);
        assert_int_equal(PQtransactionStatus(c), PQTRANS_INERROR);
        pg_pool_release(one, c);
        c = pg_pool_acquire(one, 5000, &err);
        assert_non_null(c);
        assert_int_equal(PQtransactionStatus(c), PQTRANS_IDLE);
        pg_pool_release(one, c);
        pg_pool_free(one);
}

/* paddock.tenant_id as the connection sees it now ("" when unset). */
static void expect_tenant(PGconn *c, const char *want) {
        PGresult *res = NULL;
        struct err_detail err = {0};
        assert_int_equal(pg_exec(c, "SELECT coalesce(current_setting('paddock.tenant_id', true), '')", 0, NULL, &res,
                                 &err),
                         0);
        if (strcmp(PQgetvalue(res, 0, 0), want))
                fail_msg("paddock.tenant_id is \"%s\", want \"%s\"", PQgetvalue(res, 0, 0), want);
        PQclear(res);
}

#define TENANT_A "11111111-1111-4111-8111-111111111111"
#define TENANT_B "22222222-2222-4222-8222-222222222222"

/* A pooled connection never carries one borrower's tenant (row-level
 * security) or other settings into the next borrower. */
static void test_release_resets_the_session(void **state) {
        struct err_detail err = {0};
        struct pg_pool *one = pg_pool_new(dsn, 1);
        assert_non_null(one);
        PGconn *c = pg_pool_acquire(one, 5000, &err);
        assert_non_null(c);
        assert_int_equal(pg_set_tenant(c, TENANT_A, &err), 0);
        assert_int_equal(pg_exec(c, "SET application_name = 'borrower-a'", 0, NULL, NULL, &err), 0);
        expect_tenant(c, TENANT_A);
        pg_pool_release(one, c);

        c = pg_pool_acquire(one, 5000, &err);
        assert_non_null(c);
        expect_tenant(c, "");
        PGresult *res = NULL;
        assert_int_equal(pg_exec(c, "SELECT current_setting('application_name')", 0, NULL, &res, &err), 0);
        assert_string_not_equal(PQgetvalue(res, 0, 0), "borrower-a");
        PQclear(res);
        pg_pool_release(one, c);
        pg_pool_free(one);
}

/* The transaction-local tenant: it ends with its transaction. */
static void test_tenant_is_transaction_local(void **state) {
        struct err_detail err = {0};
        PGconn *c = pg_pool_acquire(pool, 5000, &err);
        assert_non_null(c);
        /* outside a transaction there is nothing for it to last for */
        assert_int_equal(pg_set_tenant_local(c, TENANT_A, &err), -EINVAL);
        expect_tenant(c, "");
        assert_int_equal(pg_tx_restart(c, NULL, TENANT_A, &err), 0);
        assert_int_equal(PQtransactionStatus(c), PQTRANS_INTRANS);
        expect_tenant(c, TENANT_A);
        assert_int_equal(pg_tx_restart(c, "COMMIT", TENANT_B, &err), 0);
        expect_tenant(c, TENANT_B);
        assert_int_equal(pg_set_tenant_local(c, TENANT_A, &err), 0);
        expect_tenant(c, TENANT_A);
        assert_int_equal(pg_tx_restart(c, "ROLLBACK", "", &err), 0);
        expect_tenant(c, "");
        assert_int_equal(pg_tx_restart(c, "COMMIT", TENANT_B, &err), 0);
        assert_int_equal(pg_commit(c, &err), 0);
        expect_tenant(c, "");
        /* a COMMIT of an aborted transaction says so, and the next one begins */
        assert_int_equal(pg_tx_restart(c, NULL, TENANT_A, &err), 0);
        assert_true(pg_exec(c, "SELECT 1/0", 0, NULL, NULL, &err) < 0);
        assert_int_equal(pg_tx_restart(c, "COMMIT", TENANT_B, &err), -EIO);
        assert_string_equal(err.code, "25P02");
        expect_tenant(c, TENANT_B);
        /* the tenant is written into the statement: only a UUID is */
        assert_int_equal(pg_tx_restart(c, "ROLLBACK", "x'); SELECT ('", &err), -EINVAL);
        assert_int_equal(pg_tx_restart(c, "ROLLBACK", NULL, &err), 0);
        pg_pool_release(pool, c);
}

/* pg_tx_restart_then(): the statement's result, in the same transaction,
 * with the tenant it set; its error leaves nothing behind. */
static void test_tx_restart_then(void **state) {
        struct err_detail err = {0};
        PGconn *c = pg_pool_acquire(pool, 5000, &err);
        assert_non_null(c);
        PGresult *res = NULL;
        assert_int_equal(pg_tx_restart_then(c, NULL, NULL,
                                            "SELECT 41 + 1, set_config('paddock.tenant_id', '" TENANT_A "', true)",
                                            &res, &err),
                         0);
        assert_non_null(res);
        assert_string_equal(PQgetvalue(res, 0, 0), "42");
        PQclear(res);
        assert_int_equal(PQtransactionStatus(c), PQTRANS_INTRANS);
        expect_tenant(c, TENANT_A);
        assert_int_equal(pg_tx_restart_then(c, "COMMIT", TENANT_B, "SELECT current_setting('paddock.tenant_id')", &res,
                                            &err),
                         0);
        assert_string_equal(PQgetvalue(res, 0, 0), TENANT_B);
        PQclear(res);
        assert_int_equal(pg_tx_restart_then(c, "ROLLBACK", NULL, "SELECT 1/0", &res, &err), -EINVAL);
        assert_null(res);
        assert_string_equal(err.code, "22012");
        pg_pool_release(pool, c);
}

/* pg_pool_release_clean(): no reset of a session that set nothing; one
 * found inside a transaction is rolled back and reset all the same. */
static void test_release_clean(void **state) {
        struct err_detail err = {0};
        struct pg_pool *one = pg_pool_new(dsn, 1);
        assert_non_null(one);
        PGconn *c = pg_pool_acquire(one, 5000, &err);
        assert_non_null(c);
        assert_int_equal(pg_tx_restart(c, NULL, TENANT_A, &err), 0);
        assert_int_equal(pg_commit(c, &err), 0);
        pg_pool_release_clean(one, c);
        c = pg_pool_acquire(one, 5000, &err);
        expect_tenant(c, "");
        /* a session setting left by a borrower bailing out mid-transaction */
        assert_int_equal(pg_set_tenant(c, TENANT_A, &err), 0);
        assert_int_equal(pg_begin(c, &err), 0);
        pg_pool_release_clean(one, c);
        c = pg_pool_acquire(one, 5000, &err);
        assert_non_null(c);
        assert_int_equal(PQtransactionStatus(c), PQTRANS_IDLE);
        expect_tenant(c, "");
        pg_pool_release(one, c);
        pg_pool_free(one);
}

static long prepared_count(PGconn *c, const char *name) {
        const char *params[] = {name};
        PGresult *res = NULL;
        assert_int_equal(pg_exec(c, "SELECT count(*) FROM pg_prepared_statements WHERE name = $1", 1, params, &res, NULL),
                         0);
        long n = atol(PQgetvalue(res, 0, 0));
        PQclear(res);
        return n;
}

static const struct pg_stmt stmt_add = {"unit_pg_add", "SELECT $1::int + $2::int, current_setting('paddock.tenant_id', true)",
                                        2};
static const struct pg_stmt stmt_div = {"unit_pg_div", "SELECT 1 / $1::int", 1};

/* pg_exec_stmt(): prepared once per connection (the Parse rides on the
 * first execution's round trip), then only executed; prepared again on a
 * connection that was reset (a new server session). */
static void test_exec_stmt_prepares_once(void **state) {
        struct err_detail err = {0};
        PGconn *c = pg_pool_acquire(pool, 5000, &err);
        assert_non_null(c);
        assert_int_equal(prepared_count(c, "unit_pg_add"), 0);
        for (int i = 0; i < 3; i++) {
                PGresult *res = NULL;
                assert_int_equal(pg_exec_stmt(c, &stmt_add, (const char *const[]){"40", "2"}, &res, &err), 0);
                assert_string_equal(PQgetvalue(res, 0, 0), "42");
                PQclear(res);
                assert_int_equal(prepared_count(c, "unit_pg_add"), 1);
        }
        /* outside a pipeline again: plain statements work as before */
        assert_int_equal(pg_exec(c, "SELECT 1", 0, NULL, NULL, &err), 0);
        PQreset(c);
        assert_int_equal(prepared_count(c, "unit_pg_add"), 0);
        PGresult *res = NULL;
        assert_int_equal(pg_exec_stmt(c, &stmt_add, (const char *const[]){"1", "1"}, &res, &err), 0);
        assert_string_equal(PQgetvalue(res, 0, 0), "2");
        PQclear(res);
        assert_int_equal(prepared_count(c, "unit_pg_add"), 1);
        pg_pool_release(pool, c);
}

/* pg_exec_pipeline(): BEGIN, a setting, a statement and COMMIT in one
 * round trip, each result returned; a failing step stops the later ones,
 * returns its error and no result, and leaves the connection usable. */
static void test_exec_pipeline(void **state) {
        struct err_detail err = {0};
        PGconn *c = pg_pool_acquire(pool, 5000, &err);
        assert_non_null(c);
        static const struct pg_stmt set_tenant = {"unit_pg_set_tenant",
                                                  "SELECT set_config('paddock.tenant_id', $1, true)", 1};
        const char *tenant[] = {TENANT_A}, *add[] = {"2", "3"};
        PGresult *rets[4];
        assert_int_equal(pg_exec_pipeline(c,
                                          (const struct pg_step[]){{.sql = "BEGIN"},
                                                                   {.stmt = &set_tenant, .params = tenant},
                                                                   {.stmt = &stmt_add, .params = add},
                                                                   {.sql = "COMMIT"}},
                                          4, rets, &err),
                         0);
        assert_string_equal(PQgetvalue(rets[2], 0, 0), "5");
        assert_string_equal(PQgetvalue(rets[2], 0, 1), TENANT_A); /* the setting of the step before */
        assert_string_equal(PQcmdStatus(rets[3]), "COMMIT");
        for (int i = 0; i < 4; i++)
                PQclear(rets[i]);
        assert_int_equal(PQtransactionStatus(c), PQTRANS_IDLE);
        expect_tenant(c, ""); /* transaction-local: gone with the COMMIT */

        /* without BEGIN the steps share one implicit transaction */
        assert_int_equal(pg_exec_pipeline(c,
                                          (const struct pg_step[]){{.stmt = &set_tenant, .params = tenant},
                                                                   {.stmt = &stmt_add, .params = add}},
                                          2, rets, &err),
                         0);
        assert_string_equal(PQgetvalue(rets[1], 0, 1), TENANT_A);
        PQclear(rets[0]);
        PQclear(rets[1]);
        expect_tenant(c, "");

        /* division by zero in the second step: the third does not run */
        const char *zero[] = {"0"};
        assert_int_equal(pg_exec_pipeline(c,
                                          (const struct pg_step[]){{.sql = "BEGIN"},
                                                                   {.stmt = &stmt_div, .params = zero},
                                                                   {.stmt = &stmt_add, .params = add}},
                                          3, rets, &err),
                         -EINVAL);
        assert_string_equal(err.code, "22012");
        for (int i = 0; i < 3; i++)
                assert_null(rets[i]);
        assert_int_equal(PQtransactionStatus(c), PQTRANS_INERROR);
        pg_rollback(c);
        /* the failed pipeline still prepared what it parsed: the next one only executes */
        const char *one[] = {"1"};
        PGresult *res = NULL;
        assert_int_equal(pg_exec_stmt(c, &stmt_div, one, &res, &err), 0);
        assert_string_equal(PQgetvalue(res, 0, 0), "1");
        PQclear(res);
        assert_int_equal(prepared_count(c, "unit_pg_div"), 1);

        /* a statement that does not parse: an error, nothing recorded as prepared */
        static const struct pg_stmt bad = {"unit_pg_bad", "SELEC 1", 0};
        assert_int_equal(pg_exec_stmt(c, &bad, NULL, &res, &err), -EIO);
        assert_null(res);
        assert_string_equal(err.code, "42601");
        assert_int_equal(pg_exec_stmt(c, &bad, NULL, &res, &err), -EIO);
        assert_string_equal(err.code, "42601");
        assert_int_equal(pg_exec(c, "SELECT 1", 0, NULL, NULL, &err), 0);
        pg_pool_release(pool, c);
}

static const char *conn_option(PGconn *c, const char *key, char *buf, size_t size) {
        PQconninfoOption *opts = PQconninfo(c);
        buf[0] = '\0';
        for (PQconninfoOption *o = opts; o && o->keyword; o++)
                if (!strcmp(o->keyword, key) && o->val)
                        snprintf(buf, size, "%s", o->val);
        PQconninfoFree(opts);
        return buf;
}

/* The pool bounds connection attempts (connect_timeout=5) unless the DSN says otherwise. */
static void test_connect_timeout(void **state) {
        char val[32], with[1024];
        struct err_detail err = {0};
        PGconn *c = pg_pool_acquire(pool, 5000, &err);
        assert_non_null(c);
        if (!strstr(dsn, "connect_timeout"))
                assert_string_equal(conn_option(c, "connect_timeout", val, sizeof val), "5");
        pg_pool_release(pool, c);

        /* key=value and URI DSNs both keep their own value */
        if (strstr(dsn, "://"))
                snprintf(with, sizeof with, "%s%sconnect_timeout=7", dsn, strchr(dsn, '?') ? "&" : "?");
        else
                snprintf(with, sizeof with, "%s connect_timeout=7", dsn);
        struct pg_pool *p = pg_pool_new(with, 1);
        assert_non_null(p);
        c = pg_pool_acquire(p, 5000, &err);
        assert_non_null(c);
        assert_string_equal(conn_option(c, "connect_timeout", val, sizeof val), "7");
        pg_pool_release(p, c);
        pg_pool_free(p);
}

static void test_unreachable(void **state) {
        struct err_detail err = {0};
        struct pg_pool *bad = pg_pool_new("host=127.0.0.1 port=1 dbname=x connect_timeout=2", 1);
        assert_non_null(bad);
        assert_null(pg_pool_acquire(bad, 1000, &err));
        assert_int_equal(err.errnum, -ECONNRESET);
        assert_int_equal(pg_pool_ping(bad, &err), -ECONNRESET);
        assert_non_null(strstr(err.message, "could not connect"));
        /* the failed attempt gave its slot back */
        assert_null(pg_pool_acquire(bad, 1000, &err));
        assert_int_equal(err.errnum, -ECONNRESET);
        assert_null(pg_pool_free(bad));
        assert_null(pg_pool_free(NULL));
}

int main(void) {
        dsn = getenv("PADDOCK_PG_DSN");
        if (!dsn || !*dsn) {
                /* the table needs no server: it is checked even then */
                const struct CMUnitTest offline[] = {cmocka_unit_test(test_sqlstate_errno)};
                int failed = cmocka_run_group_tests(offline, NULL, NULL);
                fprintf(stderr, "PADDOCK_PG_DSN not set: skipping the rest\n");
                return failed ? failed : 77;
        }
        log_init("test", LOG_WARN);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_migrate_idempotent),
                cmocka_unit_test(test_migrate_concurrently),
                cmocka_unit_test(test_sqlstate_errno),
                cmocka_unit_test(test_sqlstate_from_server),
                cmocka_unit_test(test_error_translation),
                cmocka_unit_test(test_pool_limits),
                cmocka_unit_test(test_release_inside_transaction),
                cmocka_unit_test(test_release_resets_the_session),
                cmocka_unit_test(test_tenant_is_transaction_local),
                cmocka_unit_test(test_tx_restart_then),
                cmocka_unit_test(test_release_clean),
                cmocka_unit_test(test_exec_stmt_prepares_once),
                cmocka_unit_test(test_exec_pipeline),
                cmocka_unit_test(test_connect_timeout),
                cmocka_unit_test(test_unreachable),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
