#include "core/log.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>

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

static void log_vemit(enum log_level level, const char *const *ctx, json_t *jctx, const char *fmt, va_list ap) {
        char msg[2048], ts[40];
        vsnprintf(msg, sizeof msg, fmt, ap);
        time_format_rfc3339(time_now_us(), ts, sizeof ts);

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
        char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
        json_decref(o);
        if (line) {
                pthread_mutex_lock(&log_lock);
                fprintf(stderr, "%s\n", line);
                pthread_mutex_unlock(&log_lock);
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
