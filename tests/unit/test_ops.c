/* ops endpoint: a real libwebsockets server on loopback, a plain socket client. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>

#include "core/log.h"
#include "core/metrics.h"
#include "http/ops.h"

static struct metric requests_total = {.name = "paddock_unit_requests_total", .help = "requests seen by the unit test", .type = METRIC_COUNTER};
static struct metric queue_depth = {.name = "paddock_unit_queue_depth", .help = "queue depth in the unit test", .type = METRIC_GAUGE};

struct readiness {
        bool ready;
        int calls;
};

static int ready_fn(void *userdata, struct ops_not_ready *why) {
        struct readiness *r = userdata;
        r->calls++;
        if (r->ready)
                return 0;
        return ops_not_ready_set(why, -ECONNRESET, "kafka", "no broker answered within %d ms", 1000);
}

/* The body parsed as a JSON object with exactly the keys given (NULL-ended
 * key, value pairs). */
static void assert_json_body(const char *body, ...) {
        json_error_t jerr;
        json_t *o = json_loads(body, 0, &jerr);
        assert_non_null(o);
        assert_true(json_is_object(o));
        va_list ap;
        va_start(ap, body);
        size_t n = 0;
        for (const char *k; (k = va_arg(ap, const char *)); n++) {
                const char *want = va_arg(ap, const char *);
                assert_non_null(json_string_value(json_object_get(o, k)));
                assert_string_equal(json_string_value(json_object_get(o, k)), want);
        }
        va_end(ap);
        assert_int_equal(json_object_size(o), n);
        json_decref(o);
}

struct response {
        int status;
        char headers[2048];
        char body[8192];
};

/* One GET over a fresh connection; reads the status line, headers and exactly
 * Content-Length body bytes. */
static int http_get(int port, const char *method, const char *path, struct response *out) {
        memset(out, 0, sizeof *out);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        struct timeval tv = {10, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
                close(fd);
                return -errno;
        }
        char req[256];
        int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", method, path);
        if (write(fd, req, (size_t)n) != n) {
                close(fd);
                return -EIO;
        }
        char buf[16384];
        size_t len = 0;
        char *body = NULL;
        long clen = -1;
        for (;;) {
                ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);
                if (r <= 0)
                        break;
                len += (size_t)r;
                buf[len] = '\0';
                if (!body && (body = strstr(buf, "\r\n\r\n"))) {
                        body += 4;
                        const char *cl = strcasestr(buf, "content-length:");
                        if (cl)
                                clen = strtol(cl + 15, NULL, 10);
                }
                if (body && clen >= 0 && (long)(buf + len - body) >= clen)
                        break;
                if (len == sizeof buf - 1)
                        break;
        }
        close(fd);
        if (!body || sscanf(buf, "HTTP/1.%*d %d", &out->status) != 1)
                return -EPROTO;
        snprintf(out->headers, sizeof out->headers, "%.*s", (int)(body - buf), buf);
        snprintf(out->body, sizeof out->body, "%s", body);
        return 0;
}

static void test_endpoints(void **state) {
        struct readiness rd = {.ready = true};
        struct err_detail err = {0};
        struct ops_server *s = ops_server_start("127.0.0.1", 0, ready_fn, &rd, &err);
        assert_non_null(s);
        int port = ops_server_port(s);
        assert_true(port > 0 && port < 65536);

        struct response r;
        assert_int_equal(http_get(port, "GET", "/healthz", &r), 0);
        assert_int_equal(r.status, 200);
        assert_non_null(strcasestr(r.headers, "content-type: application/json"));
        assert_string_equal(r.body, "{\"status\":\"ok\"}");

        assert_int_equal(http_get(port, "GET", "/readyz", &r), 0);
        assert_int_equal(r.status, 200);
        assert_non_null(strcasestr(r.headers, "content-type: application/json"));
        assert_json_body(r.body, "status", "ready", NULL);
        assert_int_equal(rd.calls, 1);

        rd.ready = false;
        assert_int_equal(http_get(port, "GET", "/readyz", &r), 0);
        assert_int_equal(r.status, 503);
        assert_non_null(strcasestr(r.headers, "content-type: application/json"));
        assert_json_body(r.body, "status", "not_ready", "dependency", "kafka",
                         "reason", "no broker answered within 1000 ms", NULL);
        /* liveness does not depend on readiness */
        assert_int_equal(http_get(port, "GET", "/healthz", &r), 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(r.body, "{\"status\":\"ok\"}");

        metric_add(&requests_total, 5);
        metric_set(&queue_depth, 7);
        assert_int_equal(http_get(port, "GET", "/metrics", &r), 0);
        assert_int_equal(r.status, 200);
        assert_non_null(strcasestr(r.headers, "content-type: text/plain; version=0.0.4"));
        assert_non_null(strstr(r.body, "# TYPE paddock_unit_requests_total counter\npaddock_unit_requests_total 5\n"));
        assert_non_null(strstr(r.body, "# TYPE paddock_unit_queue_depth gauge\npaddock_unit_queue_depth 7\n"));

        assert_int_equal(http_get(port, "GET", "/nope", &r), 0);
        assert_int_equal(r.status, 404);
        assert_int_equal(http_get(port, "GET", "/healthz/extra", &r), 0);
        assert_int_equal(r.status, 404);

        assert_null(ops_server_stop(s));
        /* nothing listens any more */
        assert_true(http_get(port, "GET", "/healthz", &r) < 0);
}

static int quoting_fn(void *userdata, struct ops_not_ready *why) {
        (void)userdata;
        return ops_not_ready_set(why, -ECONNRESET, "postgresql", "could not connect: \"%s\"\n\xff", "x\\y");
}

static int silent_fn(void *userdata, struct ops_not_ready *why) {
        (void)userdata;
        (void)why;
        return -ETIMEDOUT;
}

/* ops_readiness is what the api answers with too: valid JSON whatever the
 * reason holds, and a reason even when the check gave none. */
static void test_readiness_body(void **state) {
        char *body = NULL;
        assert_int_equal(ops_readiness(NULL, NULL, &body), 200);
        assert_json_body(body, "status", "ready", NULL);
        free(body);

        assert_int_equal(ops_readiness(quoting_fn, NULL, &body), 503);
        assert_json_body(body, "status", "not_ready", "dependency", "postgresql",
                         "reason", "could not connect: \"x\\y\"\n?", NULL);
        free(body);

        assert_int_equal(ops_readiness(silent_fn, NULL, &body), 503);
        assert_json_body(body, "status", "not_ready", "dependency", "unknown", "reason", strerror(ETIMEDOUT), NULL);
        free(body);
}

static void test_two_servers_and_busy_port(void **state) {
        struct err_detail err = {0};
        struct ops_server *a = ops_server_start("127.0.0.1", 0, NULL, NULL, &err);
        assert_non_null(a);
        struct ops_server *b = ops_server_start("127.0.0.1", 0, NULL, NULL, &err);
        assert_non_null(b);
        assert_int_not_equal(ops_server_port(a), ops_server_port(b));
        struct response r;
        assert_int_equal(http_get(ops_server_port(b), "GET", "/readyz", &r), 0);
        assert_int_equal(r.status, 200); /* no ready_fn: always ready */
        assert_json_body(r.body, "status", "ready", NULL);

        assert_null(ops_server_start("127.0.0.1", ops_server_port(a), NULL, NULL, &err));
        assert_true(err.errnum < 0);
        assert_null(ops_server_start("127.0.0.1", 70000, NULL, NULL, &err));
        assert_int_equal(err.errnum, -EINVAL);
        ops_server_stop(b);
        ops_server_stop(a);
        assert_null(ops_server_stop(NULL));
}

int main(void) {
        log_init("test", LOG_WARN);
        metrics_register(&requests_total);
        metrics_register(&queue_depth);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_endpoints),
                cmocka_unit_test(test_readiness_body),
                cmocka_unit_test(test_two_servers_and_busy_port),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
