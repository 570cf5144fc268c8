/* Lists: query arguments (single, repeated, comma-separated, times) and pages.
 *
 * Lists of objects that keep coming (runs, sandboxes) page newest first by
 * keyset on (created_at, id), never by OFFSET: a page boundary stays where it
 * was while new rows arrive, so following next_cursor shows every row once,
 * without gap or duplicate, and a deep page costs what the first does. The
 * cursor is base64url("1:<created_at in µs since the epoch>:<id>") of the last
 * row of a page: opaque to clients (the "1:" lets its form change later). It
 * carries no authority: every page applies the caller's visibility and
 * filters again, so a hand-made cursor can only start a page elsewhere in what
 * the caller may see anyway; one that does not decode is 400 naming cursor. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "auth/base64url.h"
#include "core/json_dump.h"
#include "core/timeutil.h"

#define CURSOR_MAX 128
/* microseconds of 9999-12-31T23:59:59.999999Z: every key fits PostgreSQL's range */
#define KEY_US_MAX 253402300799999999LL

/* The query fragment idx ("name=value", URL-decoded by lws) in a new string
 * (*ret, caller frees); 0 when there is no such fragment. */
static int query_fragment(struct api_req *r, int idx, char **ret) {
        *ret = NULL;
        if (!r->wsi)
                return 0;
        int len = lws_hdr_fragment_length(r->wsi, WSI_TOKEN_HTTP_URI_ARGS, idx);
        if (len < 0)
                return 0;
        _cleanup_free_ char *buf = malloc((size_t)len + 1);
        if (!buf)
                return -ENOMEM;
        if (lws_hdr_copy_fragment(r->wsi, buf, len + 1, WSI_TOKEN_HTTP_URI_ARGS, idx) < 0)
                return 0;
        *ret = TAKE_PTR(buf);
        return 1;
}

int api_query_each(struct api_req *r, const char *name, bool split, api_query_value_fn fn, void *userdata) {
        size_t nl = strlen(name);
        int count = 0;
        for (int idx = 0;; idx++) {
                _cleanup_free_ char *frag = NULL;
                int k = query_fragment(r, idx, &frag);
                if (k < 0)
                        return api_fail(r, k, "internal", "out of memory");
                if (k == 0)
                        return count;
                if (strncmp(frag, name, nl) || frag[nl] != '=')
                        continue;
                char *v = frag + nl + 1, *save = NULL;
                if (!split) {
                        if ((k = fn(r, v, userdata)) < 0)
                                return k;
                        count++;
                        continue;
                }
                for (char *piece = strtok_r(v, ",", &save); piece; piece = strtok_r(NULL, ",", &save)) {
                        if ((k = fn(r, piece, userdata)) < 0)
                                return k;
                        count++;
                }
        }
}

struct single {
        const char *name;
        char *buf;
        size_t size;
        bool seen;
};

static int single_value(struct api_req *r, const char *value, void *userdata) {
        struct single *s = userdata;
        if (s->seen)
                return api_errno(r, -EINVAL, "%s may be given once", s->name);
        s->seen = true;
        if (strlen(value) >= s->size)
                return api_errno(r, -EINVAL, "%s is longer than %zu characters", s->name, s->size - 1);
        snprintf(s->buf, s->size, "%s", value);
        return 0;
}

int api_query_single(struct api_req *r, const char *name, char *buf, size_t size, const char **ret) {
        struct single s = {.name = name, .buf = buf, .size = size};
        *ret = NULL;
        int k = api_query_each(r, name, false, single_value, &s);
        if (k < 0)
                return k;
        /* "?team=" is no filter: clients fill URL templates */
        if (s.seen && buf[0])
                *ret = buf;
        return 0;
}

int api_query_time(struct api_req *r, const char *name, char out_us[24], const char **ret) {
        char buf[64];
        const char *v;
        *ret = NULL;
        int k = api_query_single(r, name, buf, sizeof buf, &v);
        if (k < 0 || !v)
                return k;
        int64_t us;
        if (time_parse_rfc3339(v, &us) < 0)
                return api_errno(r, -EINVAL, "%s must be an RFC 3339 date-time such as 2026-01-02T03:04:05Z", name);
        snprintf(out_us, 24, "%lld", (long long)us);
        *ret = out_us;
        return 0;
}

int list_page_parse(struct api_req *r, struct list_page *p) {
        *p = (struct list_page){.limit = LIST_DEFAULT_LIMIT};
        char lbuf[24], cbuf[CURSOR_MAX + 1];
        const char *lim, *cur;
        int k = api_query_single(r, "limit", lbuf, sizeof lbuf, &lim);
        if (k < 0)
                return k;
        if (lim) {
                char *end;
                errno = 0;
                long v = strtol(lim, &end, 10);
                if (errno || end == lim || *end || v < 1 || v > LIST_MAX_LIMIT)
                        return api_errno(r, -EINVAL, "limit must be an integer from 1 to %d",
                                        LIST_MAX_LIMIT);
                p->limit = v;
        }
        snprintf(p->limit_plus_one, sizeof p->limit_plus_one, "%ld", p->limit + 1);
        if ((k = api_query_single(r, "cursor", cbuf, sizeof cbuf, &cur)) < 0) {
                if (r->pcode && !strcmp(r->pcode, "invalid_field"))
                        return api_errno(r, -EINVAL, "cursor is not one this server returned");
                return k;
        }
        if (!cur)
                return 0;
        uint8_t raw[B64URL_DECODED_LEN(CURSOR_MAX) + 1];
        size_t n = strlen(cur);
        int len = b64url_decode(cur, n, raw);
        raw[len > 0 ? len : 0] = '\0';
        /* "1:" digits ":" uuid, nothing else */
        const char *s = (const char *)raw, *us = s + 2;
        size_t nd = len > 2 ? strspn(us, "0123456789") : 0;
        if (len < 2 || (size_t)len != strlen(s) || strncmp(s, "1:", 2) || nd == 0 || nd > 18 || us[nd] != ':' ||
            !id_is_uuid(us + nd + 1) || strtoll(us, NULL, 10) > KEY_US_MAX)
                return api_errno(r, -EINVAL, "cursor is not one this server returned");
        snprintf(p->key_us, sizeof p->key_us, "%.*s", (int)nd, us);
        snprintf(p->key_id, sizeof p->key_id, "%s", us + nd + 1);
        p->after_us = p->key_us;
        p->after_id = p->key_id;
        return 0;
}

int list_answer(struct api_req *r, const struct list_page *p, const PGresult *res, list_row_fn row_write, int us_col,
                int id_col) {
        struct json_writer w = {0};
        json_writer_lit(&w, "{\"items\":[");
        int n = PQntuples(res);
        for (int i = 0; i < n && i < p->limit; i++) {
                if (i)
                        json_writer_lit(&w, ",");
                row_write(&w, res, i);
        }
        json_writer_lit(&w, "],\"next_cursor\":");
        /* the query asked for one row more than a page: if it came, there is a next page */
        if (n > p->limit) {
                char key[24 + UUID_STR_LEN + 4], enc[B64URL_ENCODED_LEN(sizeof key) + 1];
                int kl = snprintf(key, sizeof key, "1:%s:%s", PQgetvalue(res, (int)p->limit - 1, us_col),
                                  PQgetvalue(res, (int)p->limit - 1, id_col));
                b64url_encode((const uint8_t *)key, (size_t)kl, enc);
                json_writer_string(&w, enc);
        } else
                json_writer_lit(&w, "null");
        json_writer_lit(&w, "}");
        if (!(r->text = json_writer_take(&w, &r->text_len)))
                return api_errno(r, -ENOMEM, "out of memory");
        r->content_type = "application/json";
        r->status = 200;
        return 0;
}
