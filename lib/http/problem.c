#include "http/problem.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

struct http_problem http_problem_from_errno(int err) {
        switch (err) {
        case -EINVAL:
                return (struct http_problem){400, "invalid_field", "Bad Request"};
        case -EACCES:
        case -EKEYREJECTED:
                return (struct http_problem){401, "unauthorized", "Unauthorized"};
        case -EPERM:
                return (struct http_problem){403, "forbidden", "Forbidden"};
        case -ENOENT:
                return (struct http_problem){404, "not_found", "Not Found"};
        case -EEXIST:
                return (struct http_problem){409, "conflict", "Conflict"};
        case -E2BIG:
        case -EMSGSIZE:
                return (struct http_problem){413, "too_large", "Content Too Large"};
        case -EDQUOT:
                return (struct http_problem){429, "quota_exceeded", "Too Many Requests"};
        case -EAGAIN:
        case -ECONNRESET:
        case -ETIMEDOUT:
                return (struct http_problem){503, "unavailable", "Service Unavailable"};
        default:
                return (struct http_problem){500, "internal", "Internal Server Error"};
        }
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
