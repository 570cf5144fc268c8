/* Request bodies: JSON objects parsed strictly (duplicate keys, NUL, depth)
 * with the field at fault named, and the check for unknown fields. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "api.h"

#define BODY_MAX_DEPTH 32
#define BODY_PATH_MAX 200

/* Appends a path step (".key", "key" at the root, or "[i]") to path, ending
 * it in "..." when full. */
static void body_path_push(char *path, size_t *len, const char *key, size_t index) {
        size_t room = BODY_PATH_MAX - *len;
        int n = !key ? snprintf(path + *len, room, "[%zu]", index)
                     : snprintf(path + *len, room, "%s%s", *len ? "." : "", key);
        if (n < 0 || (size_t)n >= room) {
                snprintf(path + BODY_PATH_MAX - 4, 4, "...");
                *len = BODY_PATH_MAX - 1;
        } else
                *len += (size_t)n;
}

/* Walks a parsed body: no deeper than BODY_MAX_DEPTH, no NUL in any string
 * (NUL is parsed only to name the field that holds it). */
static int body_walk(struct api_req *r, json_t *v, char *path, size_t len, int depth) {
        if (json_is_string(v)) {
                if (strlen(json_string_value(v)) != json_string_length(v))
                        return api_errno(r, -EINVAL, "%s must not contain NUL (\\u0000)",
                                        len ? path : "body");
                return 0;
        }
        if (!json_is_object(v) && !json_is_array(v))
                return 0;
        if (depth >= BODY_MAX_DEPTH)
                return api_fail(r, -EINVAL, "invalid_json", "request body nests deeper than %d levels at %s",
                                BODY_MAX_DEPTH, len ? path : "(root)");
        const char *key;
        json_t *item;
        size_t i;
        int k;
        if (json_is_object(v)) {
                json_object_foreach(v, key, item) {
                        size_t l = len;
                        body_path_push(path, &l, key, 0);
                        if ((k = body_walk(r, item, path, l, depth + 1)) < 0)
                                return k;
                        path[len] = '\0';
                }
        } else
                json_array_foreach(v, i, item) {
                        size_t l = len;
                        body_path_push(path, &l, NULL, i);
                        if ((k = body_walk(r, item, path, l, depth + 1)) < 0)
                                return k;
                        path[len] = '\0';
                }
        return 0;
}

int api_body_object(struct api_req *r, json_t **ret) {
        if (!r->body || r->body_len == 0)
                return api_fail(r, -EINVAL, "invalid_json", "request body must be a JSON object");
        json_error_t jerr;
        json_t *j = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
        if (!j) {
                switch (json_error_code(&jerr)) {
                case json_error_invalid_utf8:
                        return api_fail(r, -EINVAL, "invalid_json",
                                        "request body is not valid UTF-8 (line %d column %d)", jerr.line,
                                        jerr.column);
                case json_error_duplicate_key: {
                        /* jansson's text is "duplicate object key near '\"key\"'" */
                        const char *near = strstr(jerr.text, "near '");
                        int n = near ? (int)strlen(near + 6) - 1 : 0;
                        return api_fail(r, -EINVAL, "invalid_json", "duplicate key %.*s at line %d column %d",
                                        n > 0 ? n : 0, near ? near + 6 : "", jerr.line, jerr.column);
                }
                default:
                        if (strstr(jerr.text, "maximum parsing depth"))
                                return api_fail(r, -EINVAL, "invalid_json",
                                                "request body nests deeper than %d levels (line %d column %d)",
                                                BODY_MAX_DEPTH, jerr.line, jerr.column);
                        return api_fail(r, -EINVAL, "invalid_json", "malformed JSON at line %d column %d: %s",
                                        jerr.line, jerr.column, jerr.text);
                }
        }
        if (!json_is_object(j)) {
                json_decref(j);
                return api_fail(r, -EINVAL, "invalid_json", "request body must be a JSON object");
        }
        char path[BODY_PATH_MAX] = "";
        int k = body_walk(r, j, path, 0, 0);
        if (k < 0) {
                json_decref(j);
                return k;
        }
        *ret = j;
        return 0;
}

int api_known_fields(struct api_req *r, json_t *body, const char *const *known) {
        const char *key;
        json_t *v;
        json_object_foreach(body, key, v) {
                bool ok = false;
                for (const char *const *k = known; *k && !ok; k++)
                        ok = !strcmp(key, *k);
                if (!ok)
                        return api_fail(r, -EINVAL, "unknown_field", "%s is not a known field", key);
        }
        return 0;
}

int api_body_none(struct api_req *r) {
        if (r->body_len == 0)
                return 0;
        _cleanup_json_ json_t *body = NULL;
        int k = api_body_object(r, &body);
        if (k < 0)
                return k;
        return api_known_fields(r, body, (const char *const[]){NULL});
}
