/* JSON logs, one object per line on stderr:
 *   {"ts":"...","level":"info","service":"api","msg":"...", ...context}
 * Thread-safe. Context is given as a NULL-terminated list of key/value string
 * pairs. Never pass a secret. lib/ code logs at debug at most. */
#pragma once
#include "core/macro.h"

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Sets the service name and minimum level; call once from main(). */
void log_init(const char *service, enum log_level min_level);
/* Parses "debug|info|warn|error"; returns -EINVAL otherwise. */
int log_level_from_string(const char *s, enum log_level *ret);

/* log_emit(level, ctx, fmt, ...): ctx is a NULL-terminated array of
 * {key, value, key, value, ..., NULL} or NULL. */
void log_emit(enum log_level level, const char *const *ctx, const char *fmt, ...) _printf_(3, 4);

/* log_emit() with the context as a JSON object (borrowed, may be NULL) whose
 * members keep their JSON types (numbers, booleans, null): for lines that
 * tools aggregate, such as an HTTP access line. Reals print with up to 10
 * significant digits. */
struct json_t;
void log_emit_json(enum log_level level, struct json_t *ctx, const char *fmt, ...) _printf_(3, 4);

/* log_emit_json() of a plain message msg and a context written as JSON
 * members already (members[0, n): "key":value pairs, comma-separated,
 * no braces, none named ts, level, service or msg), put in the line as
 * they are: the same line, without a context object to build and dump
 * (an access line per request, issue 10 §4). A member's reals are the
 * caller's to write with 10 significant digits, as the line's are. */
void log_emit_members(enum log_level level, const char *members, size_t n, const char *msg);

#define log_debug(...) log_emit(LOG_DEBUG, NULL, __VA_ARGS__)
#define log_info(...)  log_emit(LOG_INFO, NULL, __VA_ARGS__)
#define log_warn(...)  log_emit(LOG_WARN, NULL, __VA_ARGS__)
#define log_error(...) log_emit(LOG_ERROR, NULL, __VA_ARGS__)
/* With context: log_ctx(LOG_INFO, LOG_KV("run", id, "tenant", t), "started"). */
#define LOG_KV(...) ((const char *const[]){__VA_ARGS__, NULL})
#define log_ctx(level, kv, ...) log_emit(level, kv, __VA_ARGS__)
