/* The one place that maps a negative errno to an HTTP status and a stable
 * problem `code`, shared by api (responses) and the CLI (messages). */
#pragma once

struct http_problem {
        int status;        /* e.g. 400 */
        const char *code;  /* e.g. "invalid_field" */
        const char *title; /* e.g. "Bad Request" */
};

/* -EINVAL -> 400 invalid_field, -EACCES/-EKEYREJECTED -> 401 unauthorized,
 * -EPERM -> 403 forbidden, -ENOENT -> 404 not_found, -EEXIST -> 409 conflict,
 * -E2BIG/-EMSGSIZE -> 413 too_large, -EDQUOT -> 429 quota_exceeded,
 * -EAGAIN/-ECONNRESET/-ETIMEDOUT -> 503 unavailable, else 500 internal. */
struct http_problem http_problem_from_errno(int err);
/* Returns a malloc'd application/problem+json body
 * {"type","title","status","detail","code"} (caller frees), NULL on OOM. */
char *http_problem_json(const struct http_problem *p, const char *detail);
