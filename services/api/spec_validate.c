/* Field-by-field validation of a sandbox spec (API.md "A spec"). This
 * increment accepts agent (type "command"), files and limits.timeout_s; the
 * other documented fields are refused as not supported yet, and anything
 * undocumented as unknown, so a client never believes a setting took effect. */
#include <errno.h>
#include <openssl/sha.h>
#include <string.h>

#include "api.h"

#define CMD_MAX_ITEMS 256
#define CMD_MAX_ITEM 4096
#define FILES_MAX 256
#define FILE_PATH_MAX 1024
#define FILES_CONTENT_MAX (1024 * 1024)
#define TIMEOUT_MAX 86400

static const char *const spec_unsupported[] = {"image", "prompt", "skills", "connectors", "egress",
                                               "secrets", "policy", "artifacts", "retention_days", NULL};
static const char *const limits_unsupported[] = {"cpus", "memory_mb", "disk_mb", "pids", "max_tokens",
                                                 "max_cost_usd", NULL};

static bool in_list(const char *const *list, const char *s) {
        for (; *list; list++)
                if (!strcmp(*list, s))
                        return true;
        return false;
}

/* jansson strings may hold NUL bytes (\u0000): never let one through */
static bool clean_string(json_t *v) {
        return json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v);
}

static int validate_agent(struct api_req *r, json_t *agent) {
        if (!json_is_object(agent))
                return api_fail(r, -EINVAL, "invalid_field", "spec.agent must be an object");
        const char *key;
        json_t *v;
        json_object_foreach(agent, key, v) {
                if (!strcmp(key, "type") || !strcmp(key, "command"))
                        continue;
                if (!strcmp(key, "model"))
                        return api_fail(r, -EINVAL, "unsupported", "spec.agent.model is not supported yet");
                return api_fail(r, -EINVAL, "unknown_field", "spec.agent.%s is not a known field", key);
        }
        json_t *type = json_object_get(agent, "type");
        if (type) {
                if (!json_is_string(type))
                        return api_fail(r, -EINVAL, "invalid_field", "spec.agent.type must be a string");
                const char *t = json_string_value(type);
                if (!strcmp(t, "claude-code") || !strcmp(t, "codex"))
                        return api_fail(r, -EINVAL, "unsupported",
                                        "spec.agent.type \"%s\" is not supported yet (only \"command\")", t);
                if (strcmp(t, "command"))
                        return api_fail(r, -EINVAL, "invalid_field",
                                        "spec.agent.type must be one of \"command\", \"claude-code\", \"codex\"");
        }
        json_t *cmd = json_object_get(agent, "command");
        if (!cmd)
                return api_fail(r, -EINVAL, "missing_field", "spec.agent.command is required");
        if (!json_is_array(cmd) || json_array_size(cmd) == 0 || json_array_size(cmd) > CMD_MAX_ITEMS)
                return api_fail(r, -EINVAL, "invalid_field",
                                "spec.agent.command must be a non-empty array of at most %d strings", CMD_MAX_ITEMS);
        size_t i;
        json_array_foreach(cmd, i, v) {
                if (!clean_string(v) || json_string_length(v) == 0 || json_string_length(v) > CMD_MAX_ITEM)
                        return api_fail(r, -EINVAL, "invalid_field",
                                        "spec.agent.command[%zu] must be a non-empty string of at most %d bytes",
                                        i, CMD_MAX_ITEM);
        }
        return 0;
}

static bool path_ok(const char *p, size_t len) {
        if (len == 0 || len > FILE_PATH_MAX || p[0] == '/')
                return false;
        /* no ".." component anywhere, and no empty component */
        for (const char *s = p; *s;) {
                size_t n = strcspn(s, "/");
                if (n == 0 || (n == 2 && s[0] == '.' && s[1] == '.'))
                        return false;
                s += n;
                if (*s == '/') {
                        s++;
                        if (!*s)
                                return false;
                }
        }
        return true;
}

int spec_parse_mode(const char *s, unsigned *ret) {
        size_t n = strlen(s);
        if (n < 3 || n > 4 || strspn(s, "01234567") != n)
                return -EINVAL;
        unsigned m = (unsigned)strtoul(s, NULL, 8);
        if (m > 0777)
                return -EINVAL;
        *ret = m;
        return 0;
}

static int validate_files(struct api_req *r, json_t *files) {
        if (!json_is_array(files) || json_array_size(files) > FILES_MAX)
                return api_fail(r, -EINVAL, "invalid_field", "spec.files must be an array of at most %d files", FILES_MAX);
        size_t i, total = 0;
        json_t *f;
        json_array_foreach(files, i, f) {
                if (!json_is_object(f))
                        return api_fail(r, -EINVAL, "invalid_field", "spec.files[%zu] must be an object", i);
                const char *key;
                json_t *v;
                json_object_foreach(f, key, v) {
                        if (strcmp(key, "path") && strcmp(key, "content") && strcmp(key, "mode"))
                                return api_fail(r, -EINVAL, "unknown_field", "spec.files[%zu].%s is not a known field", i, key);
                }
                json_t *path = json_object_get(f, "path");
                if (!path)
                        return api_fail(r, -EINVAL, "missing_field", "spec.files[%zu].path is required", i);
                if (!clean_string(path) || !path_ok(json_string_value(path), json_string_length(path)))
                        return api_fail(r, -EINVAL, "invalid_field",
                                        "spec.files[%zu].path must be a relative path without \"..\" of at most %d bytes",
                                        i, FILE_PATH_MAX);
                for (size_t j = 0; j < i; j++)
                        if (!strcmp(json_string_value(json_object_get(json_array_get(files, j), "path")),
                                    json_string_value(path)))
                                return api_fail(r, -EINVAL, "invalid_field", "spec.files[%zu].path repeats spec.files[%zu].path", i, j);
                json_t *content = json_object_get(f, "content");
                if (!content)
                        return api_fail(r, -EINVAL, "missing_field", "spec.files[%zu].content is required", i);
                if (!json_is_string(content))
                        return api_fail(r, -EINVAL, "invalid_field", "spec.files[%zu].content must be a string", i);
                total += json_string_length(content);
                if (total > FILES_CONTENT_MAX)
                        return api_fail(r, -EINVAL, "invalid_field",
                                        "spec.files[%zu].content: files may hold at most %d bytes in total", i, FILES_CONTENT_MAX);
                json_t *mode = json_object_get(f, "mode");
                unsigned m;
                if (mode && (!json_is_string(mode) || spec_parse_mode(json_string_value(mode), &m) < 0))
                        return api_fail(r, -EINVAL, "invalid_field",
                                        "spec.files[%zu].mode must be an octal string such as \"0644\" (at most 0777)", i);
        }
        return 0;
}

static int validate_limits(struct api_req *r, json_t *limits) {
        if (!json_is_object(limits))
                return api_fail(r, -EINVAL, "invalid_field", "spec.limits must be an object");
        const char *key;
        json_t *v;
        json_object_foreach(limits, key, v) {
                if (!strcmp(key, "timeout_s")) {
                        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > TIMEOUT_MAX)
                                return api_fail(r, -EINVAL, "invalid_field",
                                                "spec.limits.timeout_s must be an integer from 1 to %d", TIMEOUT_MAX);
                } else if (in_list(limits_unsupported, key))
                        return api_fail(r, -EINVAL, "unsupported", "spec.limits.%s is not supported yet", key);
                else
                        return api_fail(r, -EINVAL, "unknown_field", "spec.limits.%s is not a known field", key);
        }
        return 0;
}

int spec_validate(struct api_req *r, json_t *spec) {
        if (!spec)
                return api_fail(r, -EINVAL, "missing_field", "spec is required");
        if (!json_is_object(spec))
                return api_fail(r, -EINVAL, "invalid_field", "spec must be an object");
        const char *key;
        json_t *v;
        json_object_foreach(spec, key, v) {
                if (!strcmp(key, "agent") || !strcmp(key, "files") || !strcmp(key, "limits"))
                        continue;
                if (in_list(spec_unsupported, key))
                        return api_fail(r, -EINVAL, "unsupported", "spec.%s is not supported yet", key);
                return api_fail(r, -EINVAL, "unknown_field", "spec.%s is not a known field", key);
        }
        json_t *agent = json_object_get(spec, "agent");
        if (!agent)
                return api_fail(r, -EINVAL, "missing_field", "spec.agent is required");
        int k = validate_agent(r, agent);
        if (k < 0)
                return k;
        if ((v = json_object_get(spec, "files")) && (k = validate_files(r, v)) < 0)
                return k;
        if ((v = json_object_get(spec, "limits")) && (k = validate_limits(r, v)) < 0)
                return k;
        return 0;
}

int spec_canonical(json_t *spec, char **ret_json, char sha_hex[65]) {
        char *s = json_dumps(spec, JSON_SORT_KEYS | JSON_COMPACT);
        if (!s)
                return -ENOMEM;
        unsigned char d[SHA256_DIGEST_LENGTH];
        SHA256((const unsigned char *)s, strlen(s), d);
        hex_encode(d, sizeof d, sha_hex);
        *ret_json = s;
        return 0;
}
