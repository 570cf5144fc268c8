/* lib/pg/pg_copy.h: rows built in the binary COPY format, and binary array
 * parameters, come back from a real PostgreSQL (PADDOCK_PG_DSN; without it
 * only the checks that need no server run) exactly as given, NULLs and
 * awkward text included. */
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

/* The array header (pg_array_finish): element count and has-null flag. */
static void test_array_header(void **state) {
        (void)state;
        struct pg_copy_buf b;
        pg_array_init(&b, PG_OID_INT8, 0);
        for (int k = 0; k < 300; k++)
                pg_copy_int8(&b, k);
        assert_int_equal(pg_array_finish(&b), 0);
        const unsigned char *h = (const unsigned char *)b.data;
        static const unsigned char want[20] = {0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 1, 44, 0, 0, 0, 1};
        assert_memory_equal(h, want, sizeof want);
        assert_int_equal(b.len, 20 + 300 * 12);
        pg_copy_buf_done(&b);
        pg_array_init(&b, PG_OID_TEXT, 0);
        pg_copy_text(&b, "x", false);
        pg_copy_null(&b);
        assert_int_equal(pg_array_finish(&b), 0);
        assert_int_equal(((const unsigned char *)b.data)[7], 1);
        assert_int_equal(((const unsigned char *)b.data)[15], 2);
        pg_copy_buf_done(&b);
}

/* Binary array parameters through unnest() come back as given: NULLs,
 * extreme integers, a 1 MB text, jsonb with unicode, an empty array; an
 * element type that is not the parameter's is refused. */
static void test_array_round_trip(void **state) {
        (void)state;
        PGconn *conn = connect_or_skip();
        struct err_detail err = {0};
        enum { N = 5 };
        struct pg_copy_buf a[6];
        pg_array_init(&a[0], PG_OID_UUID, 0);
        pg_array_init(&a[1], PG_OID_INT8, 0);
        pg_array_init(&a[2], PG_OID_TEXT, 0);
        pg_array_init(&a[3], PG_OID_JSONB, 0);
        pg_array_init(&a[4], PG_OID_BOOL, 0);
        pg_array_init(&a[5], PG_OID_TIMESTAMPTZ, 0);
        size_t big_len = 1 << 20;
        char *big = malloc(big_len + 1);
        assert_non_null(big);
        for (size_t i = 0; i < big_len; i++)
                big[i] = (char)('a' + i % 26);
        big[big_len] = '\0';
        static const char *json[N] = {"{\"k\": \"\xc3\xa9t\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80\"}",
                                      "[1, 2]", NULL, "{}", "\"\\u00e9\""};
        static const char *want_json[N] = {"{\"k\": \"\xc3\xa9t\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80\"}",
                                           "[1, 2]", NULL, "{}", "\"\xc3\xa9\""};
        static const int64_t ints[N] = {INT64_MIN, INT64_MAX, 0, -1, 42};
        for (int k = 0; k < N; k++) {
                assert_int_equal(pg_copy_uuid(&a[0], k == 2 ? "" : "c94b638c-d913-4a8c-b30e-bdf40a2e6663"), 0);
                if (k == 3)
                        pg_copy_null(&a[1]);
                else
                        pg_copy_int8(&a[1], ints[k]);
                if (k == 1)
                        pg_copy_text(&a[2], big, false);
                else
                        pg_copy_text(&a[2], k == 4 ? "" : "\xc3\xa9t\xc3\xa9\ttab", true);
                if (json[k])
                        pg_copy_jsonb(&a[3], json[k], strlen(json[k]));
                else
                        pg_copy_null(&a[3]);
                pg_copy_bool(&a[4], k % 2);
                pg_copy_timestamptz(&a[5], INT64_C(1796428800123456) + k * 1000000); /* 2026-12-05T00:00:0k.123456Z */
        }
        const char *v[7];
        int len[7], fmt[7];
        for (int c = 0; c < 6; c++) {
                assert_int_equal(pg_array_finish(&a[c]), 0);
                v[c] = a[c].data;
                len[c] = (int)a[c].len;
                fmt[c] = 1;
        }
        struct pg_copy_buf empty;
        pg_array_init(&empty, PG_OID_UUID, 0);
        assert_int_equal(pg_array_finish(&empty), 0);
        v[6] = empty.data;
        len[6] = (int)empty.len;
        fmt[6] = 1;
        assert_int_equal(pg_exec(conn, "SET TIME ZONE 'UTC'", 0, NULL, NULL, &err), 0);
        assert_int_equal(pg_send_params(conn,
                                        "SELECT u, n, t, j, b, ts, (SELECT count(*) FROM unnest($7::uuid[]))"
                                        " FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::jsonb[],"
                                        "             $5::boolean[], $6::timestamptz[]) WITH ORDINALITY"
                                        "   AS x(u, n, t, j, b, ts, o) ORDER BY o",
                                        7, v, len, fmt, &err),
                         0);
        PGresult *res = NULL;
        assert_int_equal(pg_wait(conn, &res, &err), 0);
        assert_int_equal(PQntuples(res), N);
        for (int k = 0; k < N; k++) {
                if (k == 2)
                        assert_true(PQgetisnull(res, k, 0));
                else
                        assert_string_equal(PQgetvalue(res, k, 0), "c94b638c-d913-4a8c-b30e-bdf40a2e6663");
                char n[32];
                snprintf(n, sizeof n, "%lld", (long long)ints[k]);
                if (k == 3)
                        assert_true(PQgetisnull(res, k, 1));
                else
                        assert_string_equal(PQgetvalue(res, k, 1), n);
                if (k == 1)
                        assert_string_equal(PQgetvalue(res, k, 2), big);
                else if (k == 4)
                        assert_true(PQgetisnull(res, k, 2));
                else
                        assert_string_equal(PQgetvalue(res, k, 2), "\xc3\xa9t\xc3\xa9\ttab");
                if (want_json[k])
                        assert_string_equal(PQgetvalue(res, k, 3), want_json[k]);
                else
                        assert_true(PQgetisnull(res, k, 3));
                assert_string_equal(PQgetvalue(res, k, 4), k % 2 ? "t" : "f");
                char ts[40];
                snprintf(ts, sizeof ts, "2026-12-05 00:00:0%d.123456+00", k);
                assert_string_equal(PQgetvalue(res, k, 5), ts);
                assert_string_equal(PQgetvalue(res, k, 6), "0");
        }
        PQclear(res);
        /* jsonb elements as a text[] parameter: the server refuses the element type */
        assert_int_equal(pg_send_params(conn, "SELECT cardinality($1::text[])", 1, &v[3], &len[3], &fmt[3], &err),
                         0);
        res = NULL;
        assert_int_equal(pg_wait(conn, &res, &err), -EIO);
        assert_null(res);
        assert_string_equal(err.code, "42804");
        for (int c = 0; c < 6; c++)
                pg_copy_buf_done(&a[c]);
        pg_copy_buf_done(&empty);
        free(big);
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
                cmocka_unit_test(test_array_header),
                cmocka_unit_test(test_array_round_trip),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
