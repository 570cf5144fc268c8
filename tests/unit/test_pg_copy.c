/* lib/pg/pg_copy.h: rows built in the binary COPY format come back from a
 * real PostgreSQL (PADDOCK_PG_DSN; without it only the checks that need no
 * server run) exactly as given, NULLs and awkward text included. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <libpq-fe.h>

#include "core/log.h"
#include "pg/pg.h"
#include "pg/pg_copy.h"

static const char *dsn;

static void test_uuid_refused(void **state) {
        (void)state;
        struct pg_copy_buf b;
        pg_copy_buf_init(&b, 0);
        size_t len = b.len;
        assert_int_equal(pg_copy_uuid(&b, "c94b638c-d913-4a8c-b30e-bdf40a2e666"), -EINVAL);    /* short */
        assert_int_equal(pg_copy_uuid(&b, "c94b638c-d913-4a8c-b30e-bdf40a2e66633"), -EINVAL);  /* long */
        assert_int_equal(pg_copy_uuid(&b, "c94b638cd-913-4a8c-b30e-bdf40a2e6663"), -EINVAL);   /* dash moved */
        assert_int_equal(pg_copy_uuid(&b, "g94b638c-d913-4a8c-b30e-bdf40a2e6663"), -EINVAL);   /* not hex */
        assert_int_equal(b.len, len); /* nothing written */
        assert_int_equal(pg_copy_uuid(&b, "C94B638C-d913-4a8c-b30e-bdf40a2e6663"), 0);
        assert_int_equal(b.len, len + 4 + 16);
        /* what a caller writing one uuid in many rows parses once: the same 16 bytes */
        unsigned char u[16];
        assert_int_equal(pg_uuid_parse("C94B638C-d913-4a8c-b30e-bdf40a2e6663", u), 0);
        assert_memory_equal(u, b.data + len + 4, 16);
        assert_int_equal(pg_uuid_parse("c94b638c-d913-4a8c-b30e-bdf40a2e666", u), -EINVAL);
        assert_int_equal(pg_uuid_parse("c94b638c-d913-4a8c-b30e-bdf40a2e66633", u), -EINVAL);
        assert_int_equal(pg_copy_buf_finish(&b), 0);
        pg_copy_buf_done(&b);
}

/* A connection to PADDOCK_PG_DSN; the test is skipped without one. */
static PGconn *connect_or_skip(void) {
        if (!dsn)
                skip();
        PGconn *conn = PQconnectdb(dsn);
        assert_int_equal(PQstatus(conn), CONNECTION_OK);
        return conn;
}

static void test_round_trip(void **state) {
        (void)state;
        PGconn *conn = connect_or_skip();
        struct err_detail err = {0};
        assert_int_equal(pg_exec(conn,
                                 "CREATE TEMP TABLE t (id uuid, n bigint, i int, ts timestamptz, s text, j jsonb,"
                                 " b boolean, raw bytea)",
                                 0, NULL, NULL, &err),
                         0);
        static const char tricky[] = "tab\there\nnew line\\back\\\\slashes\rcr \\N end";
        static const unsigned char raw[] = {0, 1, 0xff, '\\', '\n', 0x80};
        struct pg_copy_buf b;
        pg_copy_buf_init(&b, 16);
        pg_copy_row(&b, 8);
        assert_int_equal(pg_copy_uuid(&b, "c94b638c-d913-4a8c-b30e-bdf40a2e6663"), 0);
        pg_copy_int8(&b, INT64_C(-9000000000));
        pg_copy_int4(&b, -7);
        pg_copy_timestamptz(&b, INT64_C(1796428800123456)); /* 2026-12-05T00:00:00.123456Z */
        pg_copy_text(&b, tricky, false);
        pg_copy_jsonb(&b, "{\"a\": [1, \"x\\ty\"]}", strlen("{\"a\": [1, \"x\\ty\"]}"));
        pg_copy_bool(&b, true);
        pg_copy_bytes(&b, raw, sizeof raw);
        pg_copy_row(&b, 8); /* every column NULL */
        assert_int_equal(pg_copy_uuid(&b, ""), 0);
        pg_copy_null(&b);
        pg_copy_null(&b);
        pg_copy_null(&b);
        pg_copy_text(&b, "", true);
        pg_copy_null(&b);
        pg_copy_null(&b);
        pg_copy_null(&b);
        for (int k = 0; k < 1000; k++) { /* past the initial reservation */
                pg_copy_row(&b, 8);
                pg_copy_null(&b);
                pg_copy_int8(&b, k);
                for (int c = 0; c < 6; c++)
                        pg_copy_null(&b);
        }
        assert_int_equal(pg_copy_buf_finish(&b), 0);
        assert_int_equal(pg_copy_in(conn, "COPY t FROM STDIN (FORMAT binary)", b.data, b.len, &err), 0);
        pg_copy_buf_done(&b);
        PGresult *res = NULL;
        assert_int_equal(pg_exec(conn,
                                 "SELECT id, n, i, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US'), s,"
                                 " j::text, b, encode(raw, 'hex') FROM t ORDER BY n NULLS FIRST LIMIT 2",
                                 0, NULL, &res, &err),
                         0);
        for (int c = 0; c < 8; c++)
                assert_true(PQgetisnull(res, 0, c));
        assert_string_equal(PQgetvalue(res, 1, 0), "c94b638c-d913-4a8c-b30e-bdf40a2e6663");
        assert_string_equal(PQgetvalue(res, 1, 1), "-9000000000");
        assert_string_equal(PQgetvalue(res, 1, 2), "-7");
        assert_string_equal(PQgetvalue(res, 1, 3), "2026-12-05T00:00:00.123456");
        assert_string_equal(PQgetvalue(res, 1, 4), tricky);
        assert_string_equal(PQgetvalue(res, 1, 5), "{\"a\": [1, \"x\\ty\"]}");
        assert_string_equal(PQgetvalue(res, 1, 6), "t");
        assert_string_equal(PQgetvalue(res, 1, 7), "0001ff5c0a80");
        PQclear(res);
        assert_int_equal(pg_exec(conn, "SELECT count(*) FROM t", 0, NULL, &res, &err), 0);
        assert_string_equal(PQgetvalue(res, 0, 0), "1002");
        PQclear(res);
        /* what is not JSON is refused by the server (class 22: -EINVAL) */
        pg_copy_buf_init(&b, 0);
        pg_copy_row(&b, 8);
        for (int c = 0; c < 5; c++)
                pg_copy_null(&b);
        pg_copy_jsonb(&b, "{not json", 9);
        pg_copy_null(&b);
        pg_copy_null(&b);
        assert_int_equal(pg_copy_buf_finish(&b), 0);
        assert_int_equal(pg_copy_in(conn, "COPY t FROM STDIN (FORMAT binary)", b.data, b.len, &err), -EINVAL);
        pg_copy_buf_done(&b);
        PQfinish(conn);
}

/* pg_copy_stream_*: rows sent while built arrive whole across several
 * sends; an aborted stream stores nothing and leaves the connection usable;
 * pg_send()/pg_wait() return what pg_exec() would. */
static void test_stream(void **state) {
        (void)state;
        PGconn *conn = connect_or_skip();
        struct err_detail err = {0};
        assert_int_equal(pg_exec(conn, "CREATE TEMP TABLE s (n bigint, j jsonb)", 0, NULL, NULL, &err), 0);
        static const char json[] = "{\"path\": \"node_modules/pkg/lib/index.js\", \"mode\": \"create\"}";
        struct pg_copy_buf b = {0};
        const int rows = 20000; /* about 1.4 MB: several sends of PG_COPY_STREAM_BYTES */
        assert_int_equal(pg_copy_stream_start(conn, "COPY s FROM STDIN (FORMAT binary)", &b, &err), 0);
        for (int k = 1; k <= rows; k++) {
                pg_copy_row(&b, 2);
                pg_copy_int8(&b, k);
                pg_copy_jsonb(&b, json, strlen(json));
                assert_int_equal(pg_copy_stream_send(conn, &b), 0);
                assert_true(b.len < PG_COPY_STREAM_BYTES);
        }
        assert_true(b.sent >= 4 * PG_COPY_STREAM_BYTES);
        assert_int_equal(pg_copy_stream_end(conn, &b, NULL, &err), 0);
        pg_copy_buf_done(&b);
        /* given up halfway, after some rows were sent: none is stored */
        assert_int_equal(pg_copy_stream_start(conn, "COPY s FROM STDIN (FORMAT binary)", &b, &err), 0);
        for (int k = 0; k < 5000; k++) {
                pg_copy_row(&b, 2);
                pg_copy_int8(&b, -1);
                pg_copy_jsonb(&b, json, strlen(json));
                assert_int_equal(pg_copy_stream_send(conn, &b), 0);
        }
        assert_true(b.sent > 0);
        assert_int_equal(pg_copy_stream_end(conn, &b, "given up", NULL), -EIO);
        pg_copy_buf_done(&b);
        assert_int_equal(pg_send(conn, "SELECT count(*), count(DISTINCT n), min(n), max(n) FROM s", 0, NULL, &err), 0);
        PGresult *res = NULL;
        assert_int_equal(pg_wait(conn, &res, &err), 0);
        assert_string_equal(PQgetvalue(res, 0, 0), "20000");
        assert_string_equal(PQgetvalue(res, 0, 1), "20000");
        assert_string_equal(PQgetvalue(res, 0, 2), "1");
        assert_string_equal(PQgetvalue(res, 0, 3), "20000");
        PQclear(res);
        /* a failing statement: pg_wait() gives its error, no result */
        assert_int_equal(pg_send(conn, "SELECT 1/0", 0, NULL, &err), 0);
        res = (PGresult *)&err; /* set to NULL on failure */
        assert_int_equal(pg_wait(conn, &res, &err), -EINVAL);
        assert_null(res);
        assert_string_equal(err.code, "22012");
        PQfinish(conn);
}

int main(void) {
        dsn = getenv("PADDOCK_PG_DSN");
        if (dsn && !*dsn)
                dsn = NULL;
        log_init("test", LOG_WARN);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_uuid_refused),
                cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_stream),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
