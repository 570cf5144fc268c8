#include "http/problem.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The one table. A row with errno 0 is a finer code only ever named
 * explicitly; the first row of an errno is its default. */
static const struct {
        int err;
        int status;
        const char *code;
        const char *title;
} problems[] = {
        {-EINVAL, 400, "invalid_field", "Bad Request"},
        {-EINVAL, 400, "invalid_json", "Bad Request"},
        {-EINVAL, 400, "unknown_field", "Bad Request"},
        {-EINVAL, 400, "missing_field", "Bad Request"},
        {-EINVAL, 400, "unsupported", "Bad Request"},
        {-EACCES, 401, "unauthorized", "Unauthorized"},
        {-EKEYREJECTED, 401, "unauthorized", "Unauthorized"},
        {-EACCES, 401, "invalid_token", "Unauthorized"},
        {-EKEYEXPIRED, 401, "token_expired", "Unauthorized"},
        /* a team budget at 100 % (services/api/budgets.c, docs/CONTRACTS.md "Budgets") */
        {-EDQUOT, 402, "quota_exceeded", "Payment Required"},
        {-EPERM, 403, "forbidden", "Forbidden"},
        {-EPERM, 403, "password_change_required", "Forbidden"},
        {-EPERM, 403, "no_role", "Forbidden"},
        {-EPERM, 403, "csrf_failed", "Forbidden"},
        {-ENOENT, 404, "not_found", "Not Found"},
        {-EOPNOTSUPP, 405, "method_not_allowed", "Method Not Allowed"},
        {-EEXIST, 409, "conflict", "Conflict"},
        /* still in use: a row other rows refer to (SQLSTATE 23503 on DELETE) */
        {-EBUSY, 409, "conflict", "Conflict"},
        /* a run's evidence deleted after its retention (services/api/retention.c) */
        {-EIDRM, 410, "gone", "Gone"},
        {-E2BIG, 413, "too_large", "Content Too Large"},
        {-EMSGSIZE, 413, "too_large", "Content Too Large"},
        {-EFBIG, 413, "too_large", "Content Too Large"},
        {-EUSERS, 429, "rate_limited", "Too Many Requests"},
        {-EIO, 500, "internal", "Internal Server Error"},
        {-EAGAIN, 503, "unavailable", "Service Unavailable"},
        {-ECONNRESET, 503, "unavailable", "Service Unavailable"},
        {-ETIMEDOUT, 503, "unavailable", "Service Unavailable"},
};

#define N_PROBLEMS (sizeof problems / sizeof problems[0])

static struct http_problem row(size_t i) {
        return (struct http_problem){problems[i].status, problems[i].code, problems[i].title};
}

struct http_problem http_problem_from_errno(int err) {
        for (size_t i = 0; i < N_PROBLEMS; i++)
                if (problems[i].err == err)
                        return row(i);
        return (struct http_problem){500, "internal", "Internal Server Error"};
}

struct http_problem http_problem_of(int err, const char *code) {
        if (code)
                for (size_t i = 0; i < N_PROBLEMS; i++)
                        if (!strcmp(problems[i].code, code))
                                return row(i);
        return http_problem_from_errno(err);
}

char *http_problem_json(const struct http_problem *p, const char *detail) {
        char type[128];
        /* A stable, dereferenceable-looking type per code (RFC 9457 §3.1.1). */
        snprintf(type, sizeof type, "urn:paddock:problem:%s", p->code ? p->code : "internal");
        json_t *o = json_object();
        if (!o)
                return NULL;
        json_object_set_new(o, "type", json_string(type));
        json_object_set_new(o, "title", json_string(p->title ? p->title : ""));
        json_object_set_new(o, "status", json_integer(p->status));
        /* Detail may carry user input: json_string rejects invalid UTF-8, so fall back. */
        json_t *d = detail ? json_string(detail) : NULL;
        json_object_set_new(o, "detail", d ? d : json_string(detail ? "(detail not valid utf-8)" : ""));
        json_object_set_new(o, "code", json_string(p->code ? p->code : "internal"));
        char *body = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(o);
        return body;
}
