/* lib/s3 against a real S3 server (the local stack's Ceph RGW): the
 * PADDOCK_S3_* variables of endpoints.env; skipped (77) without them. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "core/ids.h"
#include "core/macro.h"
#include "s3/s3.h"

#define EXIT_SKIP 77

static struct s3_config cfg;
static char prefix[64]; /* every key of this run lives under it */

static void s3_client_freep(struct s3_client **c) { s3_client_free(*c); }
#define _cleanup_s3_ _cleanup_(s3_client_freep)

static char *key_for(const char *name) {
        char *k = NULL;
        assert_true(asprintf(&k, "%s/%s", prefix, name) > 0);
        return k;
}

/* Bytes 0..255 repeated with a varying step, so any shift or truncation shows. */
static char *pattern(size_t len) {
        char *p = malloc(len ? len : 1);
        assert_non_null(p);
        for (size_t i = 0; i < len; i++)
                p[i] = (char)((i * 7 + i / 251) & 0xff);
        return p;
}

struct fetch {
        char *data;
        size_t len;
};

static size_t fetch_cb(char *ptr, size_t size, size_t nmemb, void *userdata) {
        struct fetch *f = userdata;
        size_t n = size * nmemb;
        char *d = realloc(f->data, f->len + n + 1);
        if (!d)
                return 0;
        memcpy(d + f->len, ptr, n);
        f->data = d;
        f->len += n;
        return n;
}

/* Plain GET without any credentials, as a browser following a presigned URL. */
static long plain_get(const char *url, struct fetch *f) {
        CURL *curl = curl_easy_init();
        long status = 0;
        assert_non_null(curl);
        curl_easy_setopt(curl, CURLOPT_URL, url);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, fetch_cb);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, f);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT, 30L);
        assert_int_equal(curl_easy_perform(curl), CURLE_OK);
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(curl);
        return status;
}

static void test_round_trip_binary(void **state) {
        _cleanup_s3_ struct s3_client *c = s3_client_new(&cfg);
        /* Odd characters exercise the path encoding that SigV4 signs. */
        _cleanup_free_ char *key = key_for("dir one/bin+ary é&=?.dat");
        const size_t len = 3 * 1024 * 1024 + 17; /* above curl's Expect: 100-continue size */
        _cleanup_free_ char *data = pattern(len);
        _cleanup_free_ char *got = NULL;
        struct err_detail e = {};
        size_t got_len = 0;
        uint64_t size = 0;

        assert_non_null(c);
        assert_int_equal(s3_put_object(c, key, data, len, "application/octet-stream", &e), 0);
        assert_int_equal(s3_head_object(c, key, &size, &e), 0);
        assert_int_equal(size, len);
        assert_int_equal(s3_get_object(c, key, len, &got, &got_len, &e), 0);
        assert_int_equal(got_len, len);
        assert_memory_equal(got, data, len);

        /* One byte over the caller's limit is refused, not truncated. */
        char *small = NULL;
        size_t small_len = 0;
        assert_int_equal(s3_get_object(c, key, len - 1, &small, &small_len, &e), -E2BIG);
        assert_null(small);

        /* Overwrite with other bytes and read them back. */
        data[0] ^= 0x5a;
        assert_int_equal(s3_put_object(c, key, data, len, NULL, &e), 0);
        free(TAKE_PTR(got));
        assert_int_equal(s3_get_object(c, key, len, &got, &got_len, &e), 0);
        assert_memory_equal(got, data, len);

        assert_int_equal(s3_delete_object(c, key, &e), 0);
        assert_int_equal(s3_head_object(c, key, &size, &e), -ENOENT);
        free(TAKE_PTR(got));
        assert_int_equal(s3_get_object(c, key, len, &got, &got_len, &e), -ENOENT);
        assert_string_equal(e.code, "404");
        assert_non_null(strstr(e.message, "NoSuchKey"));
}

static void test_empty_object(void **state) {
        _cleanup_s3_ struct s3_client *c = s3_client_new(&cfg);
        _cleanup_free_ char *key = key_for("empty");
        _cleanup_free_ char *got = NULL;
        struct err_detail e = {};
        size_t got_len = 99;
        uint64_t size = 99;

        assert_int_equal(s3_put_object(c, key, NULL, 0, "text/plain", &e), 0);
        assert_int_equal(s3_head_object(c, key, &size, &e), 0);
        assert_int_equal(size, 0);
        assert_int_equal(s3_get_object(c, key, 10, &got, &got_len, &e), 0);
        assert_non_null(got);
        assert_int_equal(got_len, 0);
        assert_int_equal(s3_delete_object(c, key, &e), 0);
}

static void test_head_missing(void **state) {
        _cleanup_s3_ struct s3_client *c = s3_client_new(&cfg);
        _cleanup_free_ char *key = key_for("never-written");
        struct err_detail e = {};
        uint64_t size = 0;

        assert_int_equal(s3_head_object(c, key, &size, &e), -ENOENT);
        assert_int_equal(e.errnum, -ENOENT);
        assert_string_equal(e.code, "404");
        /* S3 deletes are idempotent: a missing key is not an error. */
        assert_int_equal(s3_delete_object(c, key, &e), 0);
}

static void test_invalid_arguments(void **state) {
        _cleanup_s3_ struct s3_client *c = s3_client_new(&cfg);
        struct err_detail e = {};
        char *url = NULL;

        assert_int_equal(s3_put_object(c, "", "x", 1, NULL, &e), -EINVAL);
        assert_int_equal(s3_put_object(c, "k", NULL, 1, NULL, &e), -EINVAL);
        assert_int_equal(s3_put_object(c, "k", "x", 1, "text/plain\r\nX-Evil: 1", &e), -EINVAL);
        assert_int_equal(s3_presign_get(c, "k", 0, &url, &e), -EINVAL);
        assert_int_equal(s3_presign_get(c, "k", 604801, &url, &e), -EINVAL);
        assert_null(url);
}

static void test_bucket_exists(void **state) {
        _cleanup_s3_ struct s3_client *c = s3_client_new(&cfg);
        struct err_detail e = {};
        assert_int_equal(s3_create_bucket(c, &e), -EEXIST);
}

static void test_wrong_secret(void **state) {
        struct s3_config bad = cfg;
        bad.secret_key = "not-the-secret-key-of-this-user";
        _cleanup_s3_ struct s3_client *c = s3_client_new(&bad);
        _cleanup_s3_ struct s3_client *good = s3_client_new(&cfg);
        _cleanup_free_ char *key = key_for("wrong-secret");
        _cleanup_free_ char *got = NULL;
        struct err_detail e = {};
        size_t got_len = 0;
        uint64_t size = 0;

        assert_int_equal(s3_put_object(c, key, "abc", 3, NULL, &e), -EACCES);
        assert_string_equal(e.code, "403");
        /* The message carries S3's code, never the secret. */
        assert_null(strstr(e.message, bad.secret_key));
        assert_int_equal(s3_head_object(good, key, &size, &e), -ENOENT);

        assert_int_equal(s3_put_object(good, key, "abc", 3, NULL, &e), 0);
        assert_int_equal(s3_get_object(c, key, 10, &got, &got_len, &e), -EACCES);
        assert_int_equal(s3_delete_object(c, key, &e), -EACCES);
        assert_int_equal(s3_head_object(good, key, &size, &e), 0);
        assert_int_equal(s3_delete_object(good, key, &e), 0);
}

static void test_unreachable_endpoint(void **state) {
        struct s3_config down = cfg;
        /* Port 9 (discard) on loopback: nothing listens there in the stack. */
        down.endpoint = "http://127.0.0.1:9";
        down.timeout_ms = 2000;
        _cleanup_s3_ struct s3_client *c = s3_client_new(&down);
        struct err_detail e = {};
        uint64_t size;
        int k = s3_head_object(c, "k", &size, &e);
        assert_true(k == -ECONNRESET || k == -ETIMEDOUT || k == -EIO);
}

static void test_presign_get(void **state) {
        _cleanup_s3_ struct s3_client *c = s3_client_new(&cfg);
        _cleanup_free_ char *key = key_for("presigned dir/report (1).bin");
        _cleanup_free_ char *url = NULL;
        const size_t len = 70000;
        _cleanup_free_ char *data = pattern(len);
        struct err_detail e = {};
        struct fetch f = {};

        assert_int_equal(s3_put_object(c, key, data, len, NULL, &e), 0);
        assert_int_equal(s3_presign_get(c, key, 300, &url, &e), 0);
        assert_non_null(strstr(url, "X-Amz-Algorithm=AWS4-HMAC-SHA256"));
        assert_non_null(strstr(url, "X-Amz-Expires=300"));
        assert_non_null(strstr(url, "X-Amz-SignedHeaders=host"));
        assert_null(strstr(url, cfg.secret_key));

        assert_int_equal(plain_get(url, &f), 200);
        assert_int_equal(f.len, len);
        assert_memory_equal(f.data, data, len);
        free(f.data);

        /* Flip one hex digit of the signature (the last thing in the URL). */
        size_t n = strlen(url);
        url[n - 1] = url[n - 1] == '0' ? '1' : '0';
        f = (struct fetch){};
        assert_int_equal(plain_get(url, &f), 403);
        free(f.data);

        /* A signed URL for one key does not open another. */
        url[n - 1] = url[n - 1] == '0' ? '1' : '0';
        _cleanup_free_ char *other = NULL;
        char *q = strchr(url, '?');
        assert_non_null(q);
        assert_true(asprintf(&other, "%s/%s/%s/other%s", cfg.endpoint, cfg.bucket, prefix, q) > 0);
        f = (struct fetch){};
        long st = plain_get(other, &f);
        assert_int_equal(st, 403);
        free(f.data);

        assert_int_equal(s3_delete_object(c, key, &e), 0);
}

static void test_presign_expired(void **state) {
        _cleanup_s3_ struct s3_client *c = s3_client_new(&cfg);
        _cleanup_free_ char *key = key_for("expiring");
        _cleanup_free_ char *url = NULL;
        struct err_detail e = {};
        struct fetch f = {};

        assert_int_equal(s3_put_object(c, key, "soon gone", 9, "text/plain", &e), 0);
        assert_int_equal(s3_presign_get(c, key, 1, &url, &e), 0);
        sleep(3);
        assert_int_equal(plain_get(url, &f), 403);
        free(f.data);
        assert_int_equal(s3_delete_object(c, key, &e), 0);
}

static void test_presign_wrong_secret(void **state) {
        struct s3_config bad = cfg;
        bad.secret_key = "not-the-secret-key-of-this-user";
        _cleanup_s3_ struct s3_client *good = s3_client_new(&cfg);
        _cleanup_s3_ struct s3_client *c = s3_client_new(&bad);
        _cleanup_free_ char *key = key_for("presign-bad");
        _cleanup_free_ char *url = NULL;
        struct err_detail e = {};
        struct fetch f = {};

        assert_int_equal(s3_put_object(good, key, "x", 1, NULL, &e), 0);
        assert_int_equal(s3_presign_get(c, key, 60, &url, &e), 0);
        assert_int_equal(plain_get(url, &f), 403);
        free(f.data);
        assert_int_equal(s3_delete_object(good, key, &e), 0);
}

static void check_encode(const char *in, int keep_slash, const char *want) {
        _cleanup_free_ char *got = s3_uri_encode(in, keep_slash);
        assert_non_null(got);
        assert_string_equal(got, want);
}

static void test_uri_encode(void **state) {
        check_encode("", 1, "");
        check_encode("AZaz09-._~", 0, "AZaz09-._~");
        check_encode("a b/c", 1, "a%20b/c");
        check_encode("a b/c", 0, "a%20b%2Fc");
        check_encode("+=&?#%", 1, "%2B%3D%26%3F%23%25");
        check_encode("é", 1, "%C3%A9");
        check_encode("\x01\xff", 1, "%01%FF");
        check_encode("runs/0b5c/artifacts/diff.patch", 1, "runs/0b5c/artifacts/diff.patch");
        assert_null(s3_uri_encode(NULL, 1));
}

/* Object lock on a test-made object (the stack's bucket has it): a version
 * put with legal hold ON cannot be deleted even with bypass-governance; set
 * OFF, bypass-governance deletes it; ON again by PUT ?legal-hold also holds. */
static void test_legal_hold(void **state) {
        _cleanup_s3_ struct s3_client *c = s3_client_new(&cfg);
        struct err_detail e = {0};
        if (s3_bucket_object_lock(c, &e) != 1)
                skip(); /* a bucket made without object lock */
        _cleanup_free_ char *key = key_for("held");
        char v1[S3_VERSION_ID_MAX], v2[S3_VERSION_ID_MAX];
        int64_t until = (int64_t)time(NULL) + 3600;
        assert_int_equal(s3_put_object_locked(c, key, "held", 4, "text/plain", until, true, v1, &e), 0);
        assert_true(v1[0]);
        assert_int_equal(s3_delete_object_version(c, key, v1, true, &e), -EACCES);
        assert_int_equal(s3_put_object_legal_hold(c, key, v1, false, &e), 0);
        assert_int_equal(s3_delete_object_version(c, key, v1, true, &e), 0);
        assert_int_equal(s3_put_object_locked(c, key, "free", 4, "text/plain", until, false, v2, &e), 0);
        assert_int_equal(s3_put_object_legal_hold(c, key, v2, true, &e), 0);
        assert_int_equal(s3_put_object_legal_hold(c, key, v2, true, &e), 0); /* idempotent */
        assert_int_equal(s3_delete_object_version(c, key, v2, true, &e), -EACCES);
        assert_int_equal(s3_put_object_legal_hold(c, key, v2, false, &e), 0);
        assert_int_equal(s3_delete_object_version(c, key, v2, true, &e), 0);
        assert_int_equal(s3_put_object_legal_hold(c, key, "", true, &e), -EINVAL);
}

int main(void) {
        static const char *const vars[] = {"PADDOCK_S3_ENDPOINT", "PADDOCK_S3_BUCKET",
                                           "PADDOCK_S3_ACCESS_KEY", "PADDOCK_S3_SECRET_KEY",
                                           "PADDOCK_S3_REGION"};
        char uuid[UUID_STR_LEN];

        for (size_t i = 0; i < ELEMENTSOF(vars); i++)
                if (!getenv(vars[i]) || !*getenv(vars[i])) {
                        fprintf(stderr, "test_s3: %s not set, skipping (run the local stack)\n", vars[i]);
                        return EXIT_SKIP;
                }
        cfg = (struct s3_config){
                .endpoint = getenv("PADDOCK_S3_ENDPOINT"),
                .bucket = getenv("PADDOCK_S3_BUCKET"),
                .access_key = getenv("PADDOCK_S3_ACCESS_KEY"),
                .secret_key = getenv("PADDOCK_S3_SECRET_KEY"),
                .region = getenv("PADDOCK_S3_REGION"),
                .timeout_ms = 30000,
        };
        if (id_new_uuid(uuid) < 0)
                return EXIT_FAILURE;
        snprintf(prefix, sizeof prefix, "unit-test/%s", uuid);
        curl_global_init(CURL_GLOBAL_DEFAULT);

        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_uri_encode),
                cmocka_unit_test(test_invalid_arguments),
                cmocka_unit_test(test_round_trip_binary),
                cmocka_unit_test(test_empty_object),
                cmocka_unit_test(test_head_missing),
                cmocka_unit_test(test_bucket_exists),
                cmocka_unit_test(test_wrong_secret),
                cmocka_unit_test(test_unreachable_endpoint),
                cmocka_unit_test(test_presign_get),
                cmocka_unit_test(test_presign_expired),
                cmocka_unit_test(test_presign_wrong_secret),
                cmocka_unit_test(test_legal_hold),
        };
        int r = cmocka_run_group_tests_name("s3", tests, NULL, NULL);
        curl_global_cleanup();
        return r;
}
