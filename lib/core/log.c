#include "core/log.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
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

/* The line of a plain message with a JSON context (or none) written as it
 * is built, without a second object: the same bytes as log_vemit's
 * general path, for less (issue 10 §4: the api writes an access line per
 * request). False when it does not apply: the context names one of the
 * line's own members, or the line is long. */
static bool log_line_fast(enum log_level level, json_t *jctx, const char *msg, const char *ts) {
        if (!plain(msg) || !plain(log_service) || (jctx && !json_is_object(jctx)))
                return false;
        for (const char *const *k = (const char *const[]){"ts", "level", "service", "msg", NULL}; *k; k++)
                if (json_object_get(jctx, *k))
                        return false;
        char line[4096];
        int n = snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",\"service\":\"%s\",\"msg\":\"%s\"", ts,
                         level_names[level], log_service, msg);
        if (n < 0 || (size_t)n >= sizeof line - 2)
                return false;
        size_t len = (size_t)n;
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
