/* The one vocabulary of errors the public API answers with: each stable
 * problem `code` with the negative errno it stands for, its HTTP status and
 * title; one table (problem.c) shared by the api (responses) and the CLI
 * (messages). A handler names an errno and, only for a finer code of the
 * same errno (missing_field, rate_limited, ...), that code. */
#pragma once

struct http_problem {
        int status;        /* e.g. 400 */
        const char *code;  /* e.g. "invalid_field" */
        const char *title; /* e.g. "Bad Request" */
};

/* The default problem of err: -EINVAL -> 400 invalid_field,
 * -EACCES/-EKEYREJECTED -> 401 unauthorized, -EKEYEXPIRED -> 401
 * token_expired, -EPERM -> 403 forbidden, -ENOENT -> 404 not_found,
 * -EEXIST/-EBUSY -> 409 conflict, -EDQUOT -> 402 quota_exceeded,
 * -E2BIG/-EMSGSIZE/-EFBIG -> 413 too_large, -EAGAIN/-ECONNRESET/-ETIMEDOUT
 * -> 503 unavailable, anything else (positive included) 500 internal. */
struct http_problem http_problem_from_errno(int err);
/* The problem of code when it is one of the vocabulary's codes, else
 * http_problem_from_errno(err) (code NULL: derived from err). */
struct http_problem http_problem_of(int err, const char *code);
/* Returns a malloc'd application/problem+json body
 * {"type","title","status","detail","code"} (caller frees), NULL on OOM. */
char *http_problem_json(const struct http_problem *p, const char *detail);
