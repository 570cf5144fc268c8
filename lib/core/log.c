#include "core/log.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/json_dump.h"
#include "core/timeutil.h"

static const char *log_service = "paddock";
static enum log_level log_min = LOG_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_init(const char *service, enum log_level min_level) {
        log_service = service;
        log_min = min_level;
}

int log_level_from_string(const char *s, enum log_level *ret) {
        for (size_t i = 0; i < ELEMENTSOF(level_names); i++)
                if (strcmp(s, level_names[i]) == 0) {
                        *ret = (enum log_level)i;
                        return 0;
                }
        return -EINVAL;
}

/* One line and its newline in one write (stderr is unbuffered). */
static void log_write(const char *line, size_t len) {
        struct iovec iov[2] = {{(void *)line, len}, {(void *)"\n", 1}};
        pthread_mutex_lock(&log_lock);
        while (iov[1].iov_len) {
                ssize_t n = writev(STDERR_FILENO, iov[0].iov_len ? iov : iov + 1, iov[0].iov_len ? 2 : 1);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                for (int i = 0; i < 2 && n > 0; i++) {
                        size_t k = (size_t)n < iov[i].iov_len ? (size_t)n : iov[i].iov_len;
                        iov[i].iov_base = (char *)iov[i].iov_base + k;
                        iov[i].iov_len -= k;
                        n -= (ssize_t)k;
                }
        }
        pthread_mutex_unlock(&log_lock);
}

#define LINE_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10))

/* True if s prints in JSON as it is: printable ASCII without '"' or '\'. */
static bool plain(const char *s) {
        for (; *s; s++)
                if (*s < 0x20 || *s > 0x7e || *s == '"' || *s == '\\')
                        return false;
        return true;
}

/* The line's own members, '{' included, '}' not, when msg and the
 * service print as they are; the length, or 0 when they do not or size
 * is short. Copied, not formatted (issue 10 §4: a line per request). */
static size_t line_head(char *line, size_t size, enum log_level level, const char *msg, const char *ts) {
        const char *parts[] = {"{\"ts\":\"", ts, "\",\"level\":\"", level_names[level], "\",\"service\":\"", log_service,
                               "\",\"msg\":\"", msg, "\""};
        if (!plain(msg) || !plain(log_service))
                return 0;
        size_t len = 0;
        for (size_t i = 0; i < ELEMENTSOF(parts); i++) {
                size_t n = strlen(parts[i]);
                if (n >= size - len)
                        return 0;
                memcpy(line + len, parts[i], n);
                len += n;
        }
        return len;
}

#define LINE_MAX_FAST 4096

/* The line of a plain message with a JSON context (or none) written as it
 * is built, without a second object: the same bytes as log_vemit's
 * general path, for less (issue 10 §4: the api writes an access line per
 * request). False when it does not apply: the context names one of the
 * line's own members, or the line is long. */
static bool log_line_fast(enum log_level level, json_t *jctx, const char *msg, const char *ts) {
        if (jctx && !json_is_object(jctx))
                return false;
        for (const char *const *k = (const char *const[]){"ts", "level", "service", "msg", NULL}; *k; k++)
                if (json_object_get(jctx, *k))
                        return false;
        char line[LINE_MAX_FAST];
        size_t len = line_head(line, sizeof line - 2, level, msg, ts);
        if (len == 0)
                return false;
        if (json_object_size(jctx)) {
                /* "{...}" of the context, its brace turned into the comma */
                size_t k = json_dump_fast(jctx, line + len, sizeof line - len, LINE_FLAGS);
                if (k == 0 || k > sizeof line - len - 1)
                        return false;
                line[len] = ',';
                len += k;
        } else
                line[len++] = '}';
        log_write(line, len);
        return true;
}

static void log_vemit(enum log_level level, const char *const *ctx, json_t *jctx, const char *fmt, va_list ap) {
        char msg[2048], ts[40];
        vsnprintf(msg, sizeof msg, fmt, ap);
        time_format_rfc3339(time_now_us(), ts, sizeof ts);
        if (!ctx && log_line_fast(level, jctx, msg, ts))
                return;

        json_t *o = json_object();
        json_object_set_new(o, "ts", json_string(ts));
        json_object_set_new(o, "level", json_string(level_names[level]));
        json_object_set_new(o, "service", json_string(log_service));
        /* json_stringn_nocheck would keep invalid UTF-8; replace it instead */
        json_t *m = json_string(msg);
        json_object_set_new(o, "msg", m ? m : json_string("(message not valid utf-8)"));
        for (size_t i = 0; ctx && ctx[i] && ctx[i + 1]; i += 2) {
                json_t *v = json_string(ctx[i + 1]);
                if (v)
                        json_object_set_new(o, ctx[i], v);
        }
        const char *key;
        json_t *v;
        json_object_foreach(jctx, key, v) {
                /* the line's own members stay what they are */
                if (strcmp(key, "ts") && strcmp(key, "level") && strcmp(key, "service") && strcmp(key, "msg"))
                        json_object_set(o, key, v);
        }
        char *line = json_dumps(o, LINE_FLAGS);
        json_decref(o);
        if (line) {
                log_write(line, strlen(line));
                free(line);
        }
}

void log_emit(enum log_level level, const char *const *ctx, const char *fmt, ...) {
        if (level < log_min)
                return;
        int saved_errno = errno;
        va_list ap;
        va_start(ap, fmt);
        log_vemit(level, ctx, NULL, fmt, ap);
        va_end(ap);
        errno = saved_errno;
}

void log_emit_json(enum log_level level, json_t *ctx, const char *fmt, ...) {
        if (level < log_min)
                return;
        int saved_errno = errno;
        va_list ap;
        va_start(ap, fmt);
        log_vemit(level, NULL, ctx, fmt, ap);
        va_end(ap);
        errno = saved_errno;
}

void log_emit_members(enum log_level level, const char *members, size_t n, const char *msg) {
        if (level < log_min)
                return;
        int saved_errno = errno;
        char line[LINE_MAX_FAST], ts[40];
        time_format_rfc3339(time_now_us(), ts, sizeof ts);
        size_t len = line_head(line, sizeof line, level, msg, ts);
        if (len && n + 2 < sizeof line - len) {
                if (n) {
                        line[len++] = ',';
                        memcpy(line + len, members, n);
                        len += n;
                }
                line[len++] = '}';
                log_write(line, len);
        } else {
                /* a long line or message: log_emit_json's general path */
                char *o = malloc(n + 3);
                json_t *ctx = NULL;
                if (o) {
                        o[0] = '{';
                        memcpy(o + 1, members, n);
                        memcpy(o + 1 + n, "}", 2);
                        ctx = json_loadb(o, n + 2, 0, NULL);
                        free(o);
                }
                log_emit_json(level, ctx, "%s", msg);
                json_decref(ctx);
        }
        errno = saved_errno;
}
