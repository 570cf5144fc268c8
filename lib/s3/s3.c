/* S3 client: libcurl does the SigV4 header signing (CURLOPT_AWS_SIGV4); we add
 * what curl 7.88 leaves out (x-amz-content-sha256) and compute presigned URLs
 * ourselves. See docs/LOCAL-STACK.md for the pitfalls this
 * file works around. */
#include "s3/s3.h"
#include "s3/s3_xml.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "core/ids.h"

/* SHA-256 of the empty string: the payload hash of GET/HEAD/DELETE. */
#define S3_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/* Error bodies are small XML documents; cap what we keep of them. */
#define S3_ERROR_BODY_MAX (16 * 1024)
#define S3_PRESIGN_MAX_EXPIRES 604800

struct s3_client {
        char *endpoint; /* without trailing '/' */
        char *region;
        char *bucket;
        char *access_key;
        char *secret_key;
        char *sigv4;    /* "aws:amz:<region>:s3" */
        long timeout_ms;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result = CURLE_OK;

/* curl_global_init is not thread-safe; do it exactly once. */
static void s3_curl_global_init(void) {
        curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void curl_easy_cleanupp(CURL **p) {
        if (*p)
                curl_easy_cleanup(*p);
}

static void curl_slist_free_allp(struct curl_slist **p) {
        if (*p)
                curl_slist_free_all(*p);
}

static void secure_freep(char **p) {
        if (*p) {
                explicit_bzero(*p, strlen(*p));
                free(*p);
        }
}

struct s3_client *s3_client_new(const struct s3_config *cfg) {
        if (!cfg || !cfg->endpoint || !cfg->region || !cfg->bucket || !cfg->access_key ||
            !cfg->secret_key)
                return NULL;
        pthread_once(&curl_once, s3_curl_global_init);
        if (curl_init_result != CURLE_OK)
                return NULL;

        struct s3_client *c = calloc(1, sizeof *c);
        if (!c)
                return NULL;
        c->endpoint = strdup(cfg->endpoint);
        c->region = strdup(cfg->region);
        c->bucket = strdup(cfg->bucket);
        c->access_key = strdup(cfg->access_key);
        c->secret_key = strdup(cfg->secret_key);
        c->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 30000;
        if (!c->endpoint || !c->region || !c->bucket || !c->access_key || !c->secret_key ||
            asprintf(&c->sigv4, "aws:amz:%s:s3", cfg->region) < 0) {
                c->sigv4 = NULL;
                return s3_client_free(c);
        }
        size_t n = strlen(c->endpoint);
        while (n > 0 && c->endpoint[n - 1] == '/')
                c->endpoint[--n] = '\0';
        return c;
}

struct s3_client *s3_client_free(struct s3_client *c) {
        if (!c)
                return NULL;
        free(c->endpoint);
        free(c->region);
        free(c->bucket);
        free(c->access_key);
        secure_freep(&c->secret_key);
        free(c->sigv4);
        free(c);
        return NULL;
}

char *s3_uri_encode(const char *s, int keep_slash) {
        static const char hex[] = "0123456789ABCDEF";
        if (!s)
                return NULL;
        size_t n = strlen(s);
        char *out = malloc(3 * n + 1);
        if (!out)
                return NULL;
        char *o = out;
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                unsigned char ch = *p;
                if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                    (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' ||
                    ch == '~' || (ch == '/' && keep_slash)) {
                        *o++ = (char)ch;
                } else {
                        *o++ = '%';
                        *o++ = hex[ch >> 4];
                        *o++ = hex[ch & 0x0f];
                }
        }
        *o = '\0';
        return out;
}

static void sha256_hex(const void *data, size_t len, char out[SHA256_DIGEST_LENGTH * 2 + 1]) {
        unsigned char md[SHA256_DIGEST_LENGTH];
        SHA256(data, len, md);
        hex_encode(md, sizeof md, out);
}

static int hmac_sha256(const void *key, size_t key_len, const char *msg,
                       unsigned char out[SHA256_DIGEST_LENGTH]) {
        unsigned int out_len = 0;
        if (!HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)msg, strlen(msg), out,
                  &out_len) ||
            out_len != SHA256_DIGEST_LENGTH)
                return -EIO;
        return 0;
}

/* Keys are checked here once so every operation refuses the same inputs. */
static int s3_check_key(const char *key, struct err_detail *reterr) {
        if (!key || !*key)
                return err_set(reterr, -EINVAL, "key", "object key must not be empty");
        if (strlen(key) > 1024)
                return err_set(reterr, -EINVAL, "key", "object key longer than 1024 bytes");
        return 0;
}

/* Path-style URL of the bucket, or of key within it. */
static int s3_object_url(const struct s3_client *c, const char *key, char **ret) {
        _cleanup_free_ char *bucket = s3_uri_encode(c->bucket, 0);
        _cleanup_free_ char *ekey = key ? s3_uri_encode(key, 1) : NULL;
        if (!bucket || (key && !ekey))
                return -ENOMEM;
        if (asprintf(ret, "%s/%s%s%s", c->endpoint, bucket, key ? "/" : "", key ? ekey : "") < 0)
                return -ENOMEM;
        return 0;
}

struct s3_upload {
        const char *data;
        size_t len;
        size_t off;
};

static size_t s3_read_cb(char *buf, size_t size, size_t nmemb, void *userdata) {
        struct s3_upload *u = userdata;
        size_t want = size * nmemb, left = u->len - u->off;
        size_t n = want < left ? want : left;
        if (n > 0)
                memcpy(buf, u->data + u->off, n);
        u->off += n;
        return n;
}

struct s3_download {
        CURL *curl;
        char *data;
        size_t len;
        size_t cap;
        size_t max_len;  /* for a success body */
        bool too_big;
};

static size_t s3_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata) {
        struct s3_download *d = userdata;
        size_t n = size * nmemb;
        long status = 0;
        curl_easy_getinfo(d->curl, CURLINFO_RESPONSE_CODE, &status);
        bool error_body = status >= 300;
        size_t limit = error_body ? S3_ERROR_BODY_MAX : d->max_len;

        if (d->len + n > limit) {
                if (!error_body) {
                        d->too_big = true;
                        return 0; /* aborts the transfer */
                }
                n = limit - d->len; /* keep the start of an error document */
                if (n == 0)
                        return size * nmemb;
        }
        if (d->len + n + 1 > d->cap) {
                size_t cap = d->cap ? d->cap : 4096;
                while (cap < d->len + n + 1)
                        cap *= 2;
                char *p = realloc(d->data, cap);
                if (!p)
                        return 0;
                d->data = p;
                d->cap = cap;
        }
        memcpy(d->data + d->len, ptr, n);
        d->len += n;
        d->data[d->len] = '\0';
        return size * nmemb;
}

/* Copies the text of <tag>...</tag> from an S3 error document (s3_xml.h). */
void s3_xml_tag(const char *xml, const char *tag, char *out, size_t size) {
        char open[64], close[64];
        out[0] = '\0';
        if (!xml)
                return;
        snprintf(open, sizeof open, "<%s>", tag);
        snprintf(close, sizeof close, "</%s>", tag);
        const char *b = strstr(xml, open);
        if (!b)
                return;
        b += strlen(open);
        const char *e = strstr(b, close);
        if (!e)
                return;
        size_t n = (size_t)(e - b);
        if (n >= size)
                n = size - 1;
        memcpy(out, b, n);
        out[n] = '\0';
}

/* The one place HTTP statuses become errnos (see s3.h). */
static int s3_status_to_errno(long status) {
        if (status >= 200 && status < 300)
                return 0;
        switch (status) {
        case 404:
                return -ENOENT;
        case 401:
        case 403:
                return -EACCES;
        case 409:
                return -EEXIST;
        case 400:
        case 411:
                return -EINVAL;
        case 412:
                return -ESTALE;
        case 413:
                return -E2BIG;
        default:
                break;
        }
        return -EIO;
}

static int s3_curl_to_errno(CURLcode cc) {
        switch (cc) {
        case CURLE_COULDNT_CONNECT:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
                return -ECONNRESET;
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_OUT_OF_MEMORY:
                return -ENOMEM;
        default:
                return -EIO;
        }
}

struct s3_request {
        const char *method;      /* GET PUT HEAD DELETE */
        const char *key;         /* NULL: the bucket itself */
        const void *body;        /* PUT only */
        size_t body_len;
        const char *content_type;
        size_t max_len;          /* GET: body limit */
        char **ret_data;         /* GET: body */
        size_t *ret_len;
        uint64_t *ret_size;      /* HEAD: Content-Length */
        /* object lock (issue 14 §3) */
        const char *query;       /* signed query, already encoded ("versionId=..."), or NULL */
        const char *const *extra_headers; /* more request headers, NULL-terminated, or NULL */
        char *ret_version_id;    /* the answer's x-amz-version-id ("" when none), S3_VERSION_ID_MAX bytes */
};

static size_t s3_header_cb(char *buf, size_t size, size_t nitems, void *userdata) {
        char *out = userdata;
        size_t n = size * nitems;
        static const char name[] = "x-amz-version-id:";
        if (n > sizeof name - 1 && strncasecmp(buf, name, sizeof name - 1) == 0) {
                const char *v = buf + sizeof name - 1;
                size_t vl = n - (sizeof name - 1);
                while (vl > 0 && (*v == ' ' || *v == '\t'))
                        v++, vl--;
                while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
                        vl--;
                if (vl < S3_VERSION_ID_MAX) {
                        memcpy(out, v, vl);
                        out[vl] = '\0';
                }
        }
        return n;
}

static int s3_perform(struct s3_client *c, const struct s3_request *r, struct err_detail *reterr) {
        _cleanup_(curl_easy_cleanupp) CURL *curl = NULL;
        _cleanup_(curl_slist_free_allp) struct curl_slist *headers = NULL;
        _cleanup_free_ char *url = NULL;
        char payload_hash[SHA256_DIGEST_LENGTH * 2 + 1];
        char hdr[128];
        struct s3_upload up = {.data = r->body, .len = r->body_len};
        struct s3_download down = {.max_len = r->max_len};
        bool is_put = strcmp(r->method, "PUT") == 0;
        bool is_head = strcmp(r->method, "HEAD") == 0;
        int k;

        k = s3_object_url(c, r->key, &url);
        if (k < 0)
                return err_set(reterr, k, "ENOMEM", "out of memory");
        if (r->query) {
                char *u = NULL;
                if (asprintf(&u, "%s?%s", url, r->query) < 0)
                        return err_set(reterr, -ENOMEM, "ENOMEM", "out of memory");
                free(url);
                url = u;
        }

        curl = curl_easy_init();
        if (!curl)
                return err_set(reterr, -ENOMEM, "ENOMEM", "could not create curl handle");

        /* curl 7.88 signs x-amz-content-sha256 when present but never adds it. */
        if (is_put && r->body_len > 0)
                sha256_hex(r->body, r->body_len, payload_hash);
        else
                snprintf(payload_hash, sizeof payload_hash, "%s", S3_EMPTY_SHA256);
        snprintf(hdr, sizeof hdr, "x-amz-content-sha256: %s", payload_hash);
        struct curl_slist *h = curl_slist_append(headers, hdr);
        if (!h)
                return err_set(reterr, -ENOMEM, "ENOMEM", "out of memory");
        headers = h;
        if (r->content_type && *r->content_type) {
                _cleanup_free_ char *ct = NULL;
                if (strpbrk(r->content_type, "\r\n"))
                        return err_set(reterr, -EINVAL, "content_type",
                                       "content type must not contain line breaks");
                if (asprintf(&ct, "Content-Type: %s", r->content_type) < 0)
                        return err_set(reterr, -ENOMEM, "ENOMEM", "out of memory");
                h = curl_slist_append(headers, ct);
                if (!h)
                        return err_set(reterr, -ENOMEM, "ENOMEM", "out of memory");
                headers = h;
        }

        for (const char *const *x = r->extra_headers; x && *x; x++) {
                if (strpbrk(*x, "\r\n"))
                        return err_set(reterr, -EINVAL, "header", "header must not contain line breaks");
                h = curl_slist_append(headers, *x);
                if (!h)
                        return err_set(reterr, -ENOMEM, "ENOMEM", "out of memory");
                headers = h;
        }
        if (r->ret_version_id) {
                r->ret_version_id[0] = '\0';
                curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, s3_header_cb);
                curl_easy_setopt(curl, CURLOPT_HEADERDATA, r->ret_version_id);
        }
        down.curl = curl;
        curl_easy_setopt(curl, CURLOPT_URL, url);
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, c->timeout_ms);
        curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, c->timeout_ms);
        curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(curl, CURLOPT_AWS_SIGV4, c->sigv4);
        curl_easy_setopt(curl, CURLOPT_USERNAME, c->access_key);
        curl_easy_setopt(curl, CURLOPT_PASSWORD, c->secret_key);
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, s3_write_cb);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, &down);

        if (is_put) {
                curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
                curl_easy_setopt(curl, CURLOPT_READFUNCTION, s3_read_cb);
                curl_easy_setopt(curl, CURLOPT_READDATA, &up);
                /* Without a length curl goes chunked and RGW answers 411. */
                curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->body_len);
        } else if (is_head) {
                curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
        } else if (strcmp(r->method, "GET") != 0) {
                curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, r->method);
        }

        CURLcode cc = curl_easy_perform(curl);
        if (down.too_big) {
                free(down.data);
                return err_set(reterr, -E2BIG, "E2BIG", "object %s is larger than %zu bytes",
                               r->key ? r->key : "", r->max_len);
        }
        if (cc != CURLE_OK) {
                free(down.data);
                return err_set(reterr, s3_curl_to_errno(cc), "CURL", "s3 %s failed: %s",
                               r->method, curl_easy_strerror(cc));
        }

        long status = 0;
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        k = s3_status_to_errno(status);
        if (k < 0) {
                char code[64], msg[256], st[16];
                s3_xml_tag(down.data, "Code", code, sizeof code);
                s3_xml_tag(down.data, "Message", msg, sizeof msg);
                free(down.data);
                snprintf(st, sizeof st, "%ld", status);
                return err_set(reterr, k, st, "s3 %s %s: http %ld%s%s%s%s", r->method,
                               r->key ? r->key : c->bucket, status, *code ? " " : "", code,
                               *msg ? ": " : "", msg);
        }

        if (r->ret_size) {
                curl_off_t cl = -1;
                curl_easy_getinfo(curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
                *r->ret_size = cl >= 0 ? (uint64_t)cl : 0;
        }
        if (r->ret_data) {
                if (!down.data) {
                        down.data = malloc(1); /* an empty object is still a buffer */
                        if (!down.data)
                                return err_set(reterr, -ENOMEM, "ENOMEM", "out of memory");
                        down.data[0] = '\0';
                }
                *r->ret_data = down.data;
                *r->ret_len = down.len;
        } else {
                free(down.data);
        }
        return 0;
}

int s3_create_bucket(struct s3_client *c, struct err_detail *reterr) {
        /* RGW and us-east-1 S3 answer 200 to re-creating one's own bucket, so
         * look first to be able to report -EEXIST as s3.h promises. */
        struct s3_request head = {.method = "HEAD"};
        int k = s3_perform(c, &head, reterr);
        if (k >= 0)
                return err_set(reterr, -EEXIST, "200", "bucket %s already exists", c->bucket);
        if (k != -ENOENT)
                return k;
        struct s3_request put = {.method = "PUT"};
        return s3_perform(c, &put, reterr);
}

int s3_put_object(struct s3_client *c, const char *key, const void *data, size_t len,
                  const char *content_type, struct err_detail *reterr) {
        int k = s3_check_key(key, reterr);
        if (k < 0)
                return k;
        if (len > 0 && !data)
                return err_set(reterr, -EINVAL, "data", "no data for a non-empty object");
        struct s3_request r = {
                .method = "PUT",
                .key = key,
                .body = data,
                .body_len = len,
                .content_type = content_type,
        };
        return s3_perform(c, &r, reterr);
}

int s3_get_object(struct s3_client *c, const char *key, size_t max_len, char **ret_data,
                  size_t *ret_len, struct err_detail *reterr) {
        int k = s3_check_key(key, reterr);
        if (k < 0)
                return k;
        if (!ret_data || !ret_len)
                return err_set(reterr, -EINVAL, "ret_data", "no place for the object");
        struct s3_request r = {
                .method = "GET",
                .key = key,
                .max_len = max_len,
                .ret_data = ret_data,
                .ret_len = ret_len,
        };
        return s3_perform(c, &r, reterr);
}

int s3_head_object(struct s3_client *c, const char *key, uint64_t *ret_size,
                   struct err_detail *reterr) {
        uint64_t size = 0;
        int k = s3_check_key(key, reterr);
        if (k < 0)
                return k;
        struct s3_request r = {.method = "HEAD", .key = key, .ret_size = &size};
        k = s3_perform(c, &r, reterr);
        if (k >= 0 && ret_size)
                *ret_size = size;
        return k;
}

int s3_delete_object(struct s3_client *c, const char *key, struct err_detail *reterr) {
        int k = s3_check_key(key, reterr);
        if (k < 0)
                return k;
        struct s3_request r = {.method = "DELETE", .key = key};
        return s3_perform(c, &r, reterr);
}

/* The Host header a client will send for endpoint: scheme and path dropped,
 * the default port omitted (browsers and curl leave it out). */
static int s3_endpoint_host(const char *endpoint, char **ret) {
        bool https = strncasecmp(endpoint, "https://", 8) == 0;
        const char *p = strstr(endpoint, "://");
        p = p ? p + 3 : endpoint;
        size_t n = strcspn(p, "/?#");
        if (n == 0)
                return -EINVAL;
        char *host = strndup(p, n);
        if (!host)
                return -ENOMEM;
        for (char *q = host; *q; q++)
                *q = (char)tolower((unsigned char)*q);
        char *colon = strrchr(host, ':');
        if (colon && !strchr(colon, ']') &&
            strcmp(colon + 1, https ? "443" : "80") == 0)
                *colon = '\0';
        *ret = host;
        return 0;
}

int s3_presign_get(struct s3_client *c, const char *key, int expires_s, char **ret_url,
                   struct err_detail *reterr) {
        _cleanup_free_ char *host = NULL, *bucket = NULL, *ekey = NULL, *cred = NULL,
                            *ecred = NULL, *query = NULL, *canonical = NULL, *to_sign = NULL,
                            *url = NULL;
        _cleanup_(secure_freep) char *secret = NULL;
        char amz_date[17], date[9], canonical_hash[SHA256_DIGEST_LENGTH * 2 + 1];
        char signature[SHA256_DIGEST_LENGTH * 2 + 1];
        unsigned char k1[SHA256_DIGEST_LENGTH], k2[SHA256_DIGEST_LENGTH];
        struct tm tm;
        int k;

        k = s3_check_key(key, reterr);
        if (k < 0)
                return k;
        if (expires_s < 1 || expires_s > S3_PRESIGN_MAX_EXPIRES)
                return err_set(reterr, -EINVAL, "expires_s",
                               "expiry must be between 1 and %d seconds", S3_PRESIGN_MAX_EXPIRES);
        if (!ret_url)
                return err_set(reterr, -EINVAL, "ret_url", "no place for the url");

        k = s3_endpoint_host(c->endpoint, &host);
        if (k < 0)
                return err_set(reterr, k, "endpoint", "cannot take the host of the s3 endpoint");

        time_t now = time(NULL);
        if (!gmtime_r(&now, &tm))
                return err_set(reterr, -EIO, "time", "cannot read the clock");
        strftime(amz_date, sizeof amz_date, "%Y%m%dT%H%M%SZ", &tm);
        strftime(date, sizeof date, "%Y%m%d", &tm);

        bucket = s3_uri_encode(c->bucket, 0);
        ekey = s3_uri_encode(key, 1);
        if (!bucket || !ekey ||
            asprintf(&cred, "%s/%s/%s/s3/aws4_request", c->access_key, date, c->region) < 0)
                return err_set(reterr, -ENOMEM, "ENOMEM", "out of memory");
        ecred = s3_uri_encode(cred, 0);
        if (!ecred)
                return err_set(reterr, -ENOMEM, "ENOMEM", "out of memory");

        /* Parameters in byte order, as the canonical request requires. */
        if (asprintf(&query,
                     "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=%s&X-Amz-Date=%s"
                     "&X-Amz-Expires=%d&X-Amz-SignedHeaders=host",
                     ecred, amz_date, expires_s) < 0)
                return err_set(reterr, -ENOMEM, "ENOMEM", "out of memory");
        if (asprintf(&canonical, "GET\n/%s/%s\n%s\nhost:%s\n\nhost\nUNSIGNED-PAYLOAD", bucket,
                     ekey, query, host) < 0)
                return err_set(reterr, -ENOMEM, "ENOMEM", "out of memory");
        sha256_hex(canonical, strlen(canonical), canonical_hash);
        if (asprintf(&to_sign, "AWS4-HMAC-SHA256\n%s\n%s/%s/s3/aws4_request\n%s", amz_date, date,
                     c->region, canonical_hash) < 0)
                return err_set(reterr, -ENOMEM, "ENOMEM", "out of memory");

        /* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), "s3"), "aws4_request") */
        if (asprintf(&secret, "AWS4%s", c->secret_key) < 0)
                return err_set(reterr, -ENOMEM, "ENOMEM", "out of memory");
        if (hmac_sha256(secret, strlen(secret), date, k1) < 0 ||
            hmac_sha256(k1, sizeof k1, c->region, k2) < 0 ||
            hmac_sha256(k2, sizeof k2, "s3", k1) < 0 ||
            hmac_sha256(k1, sizeof k1, "aws4_request", k2) < 0 ||
            hmac_sha256(k2, sizeof k2, to_sign, k1) < 0) {
                explicit_bzero(k1, sizeof k1);
                explicit_bzero(k2, sizeof k2);
                return err_set(reterr, -EIO, "HMAC", "hmac-sha256 failed");
        }
        hex_encode(k1, sizeof k1, signature);
        explicit_bzero(k1, sizeof k1);
        explicit_bzero(k2, sizeof k2);

        if (asprintf(&url, "%s/%s/%s?%s&X-Amz-Signature=%s", c->endpoint, bucket, ekey, query,
                     signature) < 0)
                return err_set(reterr, -ENOMEM, "ENOMEM", "out of memory");
        *ret_url = TAKE_PTR(url);
        return 0;
}

/* Content-MD5 (base64 of the MD5 of the body): S3 requires it on a PUT
 * carrying object lock headers. */
static int s3_content_md5(const void *data, size_t len, char out[32]) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int ml = 0;
        if (!EVP_Digest(data, len, md, &ml, EVP_md5(), NULL) || ml != 16)
                return -EIO;
        EVP_EncodeBlock((unsigned char *)out, md, 16);
        return 0;
}

int s3_put_object_locked(struct s3_client *c, const char *key, const void *data, size_t len,
                         const char *content_type, int64_t retain_until_s, bool legal_hold,
                         char ret_version_id[S3_VERSION_ID_MAX], struct err_detail *reterr) {
        int k = s3_check_key(key, reterr);
        if (k < 0)
                return k;
        if (len > 0 && !data)
                return err_set(reterr, -EINVAL, "data", "no data for a non-empty object");
        char md5[32], until[32], h_md5[64], h_until[96];
        if (s3_content_md5(data ? data : "", len, md5) < 0)
                return err_set(reterr, -EIO, "MD5", "could not compute md5");
        time_t t = (time_t)retain_until_s;
        struct tm tm;
        if (!gmtime_r(&t, &tm))
                return err_set(reterr, -EINVAL, "retain_until", "retain-until date out of range");
        strftime(until, sizeof until, "%Y-%m-%dT%H:%M:%SZ", &tm);
        snprintf(h_md5, sizeof h_md5, "Content-MD5: %s", md5);
        snprintf(h_until, sizeof h_until, "x-amz-object-lock-retain-until-date: %s", until);
        const char *const extra[] = {h_md5, "x-amz-object-lock-mode: GOVERNANCE", h_until,
                                     legal_hold ? "x-amz-object-lock-legal-hold: ON" : NULL, NULL};
        struct s3_request r = {
                .method = "PUT",
                .key = key,
                .body = data,
                .body_len = len,
                .content_type = content_type,
                .extra_headers = extra,
                .ret_version_id = ret_version_id,
        };
        return s3_perform(c, &r, reterr);
}

/* The signed query naming one version, after the sorted parameters before
 * ("legal-hold=&"; "" for none): *ret malloc'd. */
static int version_query(const char *key, const char *before, const char *version_id, char **ret,
                         struct err_detail *reterr) {
        int k = s3_check_key(key, reterr);
        if (k < 0)
                return k;
        if (!version_id || !*version_id || strlen(version_id) >= S3_VERSION_ID_MAX)
                return err_set(reterr, -EINVAL, "version_id", "no version id");
        _cleanup_free_ char *ev = s3_uri_encode(version_id, 0);
        if (!ev || asprintf(ret, "%sversionId=%s", before, ev) < 0)
                return err_set(reterr, -ENOMEM, "ENOMEM", "out of memory");
        return 0;
}

int s3_put_object_legal_hold(struct s3_client *c, const char *key, const char *version_id, bool on,
                             struct err_detail *reterr) {
        _cleanup_free_ char *q = NULL;
        int k = version_query(key, "legal-hold=&", version_id, &q, reterr);
        if (k < 0)
                return k;
        char body[128], md5[32], h_md5[64];
        int n = snprintf(body, sizeof body, "<LegalHold xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                                            "<Status>%s</Status></LegalHold>", on ? "ON" : "OFF");
        if (s3_content_md5(body, (size_t)n, md5) < 0)
                return err_set(reterr, -EIO, "MD5", "could not compute md5");
        snprintf(h_md5, sizeof h_md5, "Content-MD5: %s", md5);
        const char *const extra[] = {h_md5, NULL};
        struct s3_request r = {.method = "PUT", .key = key, .query = q, .body = body, .body_len = (size_t)n,
                               .content_type = "application/xml", .extra_headers = extra};
        return s3_perform(c, &r, reterr);
}

int s3_delete_object_version(struct s3_client *c, const char *key, const char *version_id, bool bypass_governance,
                             struct err_detail *reterr) {
        _cleanup_free_ char *q = NULL;
        int k = version_query(key, "", version_id, &q, reterr);
        if (k < 0)
                return k;
        const char *const extra[] = {"x-amz-bypass-governance-retention: true", NULL};
        struct s3_request r = {.method = "DELETE", .key = key, .query = q, .extra_headers = bypass_governance ? extra : NULL};
        return s3_perform(c, &r, reterr);
}

int s3_bucket_object_lock(struct s3_client *c, struct err_detail *reterr) {
        char *body = NULL;
        size_t len = 0;
        struct s3_request r = {.method = "GET", .query = "object-lock=", .max_len = 16384, .ret_data = &body,
                               .ret_len = &len};
        int k = s3_perform(c, &r, reterr);
        if (k == -ENOENT)
                return 0; /* ObjectLockConfigurationNotFoundError: a bucket without object lock */
        if (k < 0)
                return k;
        char enabled[32];
        s3_xml_tag(body, "ObjectLockEnabled", enabled, sizeof enabled);
        free(body);
        return strcmp(enabled, "Enabled") == 0 ? 1 : 0;
}
