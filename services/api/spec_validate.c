/* Field-by-field validation of a sandbox spec (API.md "A spec"). Every
 * documented field is validated (types, ranges, globs, host syntax, catalog
 * references: approved ones only, policy_resolve), anything undocumented is
 * refused as unknown. What runs enforce today: agent types command,
 * claude-code and codex, agent.model, models (the run's model gateway),
 * files, egress (allow, profiles, unknown), secrets, limits (timeout, cgroup
 * sizes, max_tokens and max_cost_usd), image, prompt, skills and policy
 * (rules, packs, ask_timeout_s: issue 12). The other
 * documented fields (artifacts, retention_days)
 * are validated in full and then refused with 400 "unsupported" naming the
 * first of them, so a client never believes a setting took effect. The
 * egress part is spec_egress.c, the secrets and identity spec_secrets.c. */
#include <errno.h>
#include <openssl/sha.h>
#include <string.h>

#include "api.h"
#include "core/domain.h"
#include "policy/policy_engine.h"

#define CMD_MAX_ITEMS 256
#define CMD_MAX_ITEM 4096
#define FILES_MAX 256
#define FILE_PATH_MAX 1024
#define FILES_CONTENT_MAX (1024 * 1024)
#define TIMEOUT_MAX 86400

#define CATALOG_REFS_MAX 64

#define GLOB_MAX 1024
#define ARTIFACT_PATHS_MAX 64
#define MODEL_MAX 128
#define RETENTION_DAYS_MAX 3650
#define MAX_TOKENS_MAX 10000000000LL
#define MAX_COST_USD_MAX 1000000.0

/* The first valid but not yet enforced field met, refused once the whole
 * spec has been validated (a client fixes the real errors first). Set and
 * cleared within one spec_validate() call; per thread, as handlers are. */
static __thread char unsupported_field[96];

static void defer_unsupported(const char *field) {
        if (!unsupported_field[0])
                snprintf(unsupported_field, sizeof unsupported_field, "%s", field);
}

static const char *const spec_fields[] = {"agent",  "image",  "prompt",    "skills",    "models",   "files",
                                          "connectors", "egress", "secrets", "policy", "limits",
                                          "artifacts", "retention_days", "identity", NULL};

static int validate_agent(struct api_req *r, json_t *agent) {
        if (!json_is_object(agent))
                return api_errno(r, -EINVAL, "spec.agent must be an object");
        const char *key;
        json_t *v;
        json_object_foreach(agent, key, v) {
                if (!strcmp(key, "type") || !strcmp(key, "command"))
                        continue;
                if (!strcmp(key, "effort")) {
                        static const char *const efforts[] = {"low", "medium", "high", "xhigh", NULL};
                        if (!catalog_clean_string(v) || !domain_name_in(efforts, json_string_value(v)))
                                return api_errno(r, -EINVAL, "spec.agent.effort must be one of \"low\", \"medium\", \"high\", "
                                                "\"xhigh\"");
                        continue;
                }
                if (!strcmp(key, "model")) {
                        size_t n = json_string_length(v);
                        if (!catalog_clean_string(v) || n == 0 || n > MODEL_MAX ||
                            strspn(json_string_value(v), "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                                         "0123456789._:/@-") != n)
                                return api_errno(r, -EINVAL, "spec.agent.model must be 1-%d characters of A-Z a-z 0-9 . _ : / @ -",
                                                MODEL_MAX);
                        continue; /* one of spec.models' ids: policy_resolve */
                }
                return api_fail(r, -EINVAL, "unknown_field", "spec.agent.%s is not a known field", key);
        }
        json_t *type = json_object_get(agent, "type");
        bool agent_cli = false;
        if (type) {
                if (!json_is_string(type))
                        return api_errno(r, -EINVAL, "spec.agent.type must be a string");
                const char *t = json_string_value(type);
                agent_cli = !strcmp(t, "claude-code") || !strcmp(t, "codex");
                if (!agent_cli && strcmp(t, "command"))
                        return api_errno(r, -EINVAL, "spec.agent.type must be one of \"command\", \"claude-code\", \"codex\"");
        }
        if (json_object_get(agent, "effort") && !agent_cli)
                return api_errno(r, -EINVAL, "spec.agent.effort applies to agent types claude-code and codex only");
        json_t *cmd = json_object_get(agent, "command");
        if (!cmd && agent_cli)
                return 0; /* an agent CLI needs no command */
        if (!cmd)
                return api_fail(r, -EINVAL, "missing_field", "spec.agent.command is required");
        if (!json_is_array(cmd) || json_array_size(cmd) == 0 || json_array_size(cmd) > CMD_MAX_ITEMS)
                return api_errno(r, -EINVAL, "spec.agent.command must be a non-empty array of at most %d strings", CMD_MAX_ITEMS);
        size_t i;
        json_array_foreach(cmd, i, v) {
                if (!catalog_clean_string(v) || json_string_length(v) == 0 || json_string_length(v) > CMD_MAX_ITEM)
                        return api_errno(r, -EINVAL, "spec.agent.command[%zu] must be a non-empty string of at most %d bytes",
                                        i, CMD_MAX_ITEM);
        }
        return 0;
}

static bool path_ok(const char *p, size_t len) {
        if (len == 0 || len > FILE_PATH_MAX || p[0] == '/')
                return false;
        /* no "." or ".." component anywhere, and no empty component: the
         * runner-agent refuses them too, so the API must not accept them */
        for (const char *s = p; *s;) {
                size_t n = strcspn(s, "/");
                if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
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

bool spec_path_ok(const char *p, size_t len) {
        return path_ok(p, len);
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
                return api_errno(r, -EINVAL, "spec.files must be an array of at most %d files", FILES_MAX);
        size_t i, total = 0;
        json_t *f;
        json_array_foreach(files, i, f) {
                if (!json_is_object(f))
                        return api_errno(r, -EINVAL, "spec.files[%zu] must be an object", i);
                const char *key;
                json_t *v;
                json_object_foreach(f, key, v) {
                        if (strcmp(key, "path") && strcmp(key, "content") && strcmp(key, "mode"))
                                return api_fail(r, -EINVAL, "unknown_field", "spec.files[%zu].%s is not a known field", i, key);
                }
                json_t *path = json_object_get(f, "path");
                if (!path)
                        return api_fail(r, -EINVAL, "missing_field", "spec.files[%zu].path is required", i);
                if (!catalog_clean_string(path) || !path_ok(json_string_value(path), json_string_length(path)))
                        return api_errno(r, -EINVAL, "spec.files[%zu].path must be a relative path without \".\" or \"..\" parts of at most %d bytes",
                                        i, FILE_PATH_MAX);
                for (size_t j = 0; j < i; j++)
                        if (!strcmp(json_string_value(json_object_get(json_array_get(files, j), "path")),
                                    json_string_value(path)))
                                return api_errno(r, -EINVAL, "spec.files[%zu].path repeats spec.files[%zu].path", i, j);
                json_t *content = json_object_get(f, "content");
                if (!content)
                        return api_fail(r, -EINVAL, "missing_field", "spec.files[%zu].content is required", i);
                if (!json_is_string(content))
                        return api_errno(r, -EINVAL, "spec.files[%zu].content must be a string", i);
                total += json_string_length(content);
                if (total > FILES_CONTENT_MAX)
                        return api_errno(r, -EINVAL, "spec.files[%zu].content: files may hold at most %d bytes in total", i, FILES_CONTENT_MAX);
                json_t *mode = json_object_get(f, "mode");
                unsigned m;
                if (mode && (!json_is_string(mode) || spec_parse_mode(json_string_value(mode), &m) < 0))
                        return api_errno(r, -EINVAL, "spec.files[%zu].mode must be an octal string such as \"0644\" (at most 0777)", i);
        }
        return 0;
}

/* Integer limit in [min, max]; the bounds keep a definition from asking for
 * a sandbox no node could place or that starves the node. */
static int limit_int(struct api_req *r, const char *key, json_t *v, long long min, long long max) {
        if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
                return api_errno(r, -EINVAL, "spec.limits.%s must be an integer from %lld to %lld",
                                key, min, max);
        return 0;
}

static int validate_limits(struct api_req *r, json_t *limits) {
        if (!json_is_object(limits))
                return api_errno(r, -EINVAL, "spec.limits must be an object");
        const char *key;
        json_t *v;
        json_object_foreach(limits, key, v) {
                int k = 0;
                if (!strcmp(key, "timeout_s"))
                        k = limit_int(r, key, v, 1, TIMEOUT_MAX);
                else if (!strcmp(key, "cpus")) {
                        if (!json_is_number(v) || json_number_value(v) < SPEC_CPUS_MIN ||
                            json_number_value(v) > SPEC_CPUS_MAX)
                                return api_errno(r, -EINVAL, "spec.limits.cpus must be a number from 0.1 to 64");
                } else if (!strcmp(key, "memory_mb"))
                        k = limit_int(r, key, v, 64, 262144);
                else if (!strcmp(key, "disk_mb"))
                        k = limit_int(r, key, v, 16, 1048576);
                else if (!strcmp(key, "pids"))
                        k = limit_int(r, key, v, 16, 65536);
                else if (!strcmp(key, "max_tokens"))
                        k = limit_int(r, key, v, 1, MAX_TOKENS_MAX);
                else if (!strcmp(key, "max_cost_usd")) {
                        if (!json_is_number(v) || json_number_value(v) <= 0 || json_number_value(v) > MAX_COST_USD_MAX)
                                return api_errno(r, -EINVAL, "spec.limits.max_cost_usd must be a number above 0 and at most %.0f",
                                                MAX_COST_USD_MAX);
                } else
                        return api_fail(r, -EINVAL, "unknown_field", "spec.limits.%s is not a known field", key);
                if (k < 0)
                        return k;
        }
        return 0;
}

/* An array of catalog references (ids or names); whether they exist and
 * are approved is checked by policy_resolve(). */
int spec_validate_refs(struct api_req *r, json_t *refs, const char *field) {
        if (!json_is_array(refs) || json_array_size(refs) > CATALOG_REFS_MAX)
                return api_errno(r, -EINVAL, "%s must be an array of at most %d catalog ids", field,
                                CATALOG_REFS_MAX);
        size_t i;
        json_t *v;
        json_array_foreach(refs, i, v) {
                if (!catalog_clean_string(v) || json_string_length(v) == 0 || json_string_length(v) > 128)
                        return api_errno(r, -EINVAL, "%s[%zu] must be a catalog id", field, i);
                for (size_t j = 0; j < i; j++)
                        if (!strcmp(json_string_value(json_array_get(refs, j)), json_string_value(v)))
                                return api_errno(r, -EINVAL, "%s[%zu] repeats %s[%zu]", field, i, field, j);
        }
        return 0;
}

static int validate_prompt(struct api_req *r, json_t *prompt) {
        if (!json_is_object(prompt))
                return api_errno(r, -EINVAL, "spec.prompt must be an object {template, vars}");
        const char *key;
        json_t *v;
        json_object_foreach(prompt, key, v) {
                if (strcmp(key, "template") && strcmp(key, "vars"))
                        return api_fail(r, -EINVAL, "unknown_field", "spec.prompt.%s is not a known field", key);
        }
        json_t *t = json_object_get(prompt, "template"), *vars = json_object_get(prompt, "vars");
        if (!t)
                return api_fail(r, -EINVAL, "missing_field", "spec.prompt.template is required");
        if (!catalog_clean_string(t) || json_string_length(t) == 0 || json_string_length(t) > 128)
                return api_errno(r, -EINVAL, "spec.prompt.template must be a catalog id");
        if (vars && !json_is_object(vars))
                return api_errno(r, -EINVAL, "spec.prompt.vars must be an object");
        return 0;
}

/* Definitions may only use approved catalog items: resolve the spec the way
 * a run will (policy.c) and report what does not resolve. */
static int validate_catalog_refs(struct api_req *r, json_t *spec) {
        json_t *eg = json_object_get(spec, "egress");
        const char *type = json_string_value(json_object_get(json_object_get(spec, "agent"), "type"));
        /* an agent CLI needs spec.models, an agent.model one of their ids */
        bool agent_cli = type && strcmp(type, "command");
        if (!json_object_get(spec, "image") && !json_object_get(spec, "prompt") && !json_object_get(spec, "skills") &&
            !json_object_get(spec, "connectors") && !json_object_get(eg, "profiles") && !json_object_get(spec, "models") &&
            !json_object_get(json_object_get(spec, "agent"), "model") && !agent_cli &&
            !json_object_get(json_object_get(spec, "policy"), "packs"))
                return 0;
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        int k = db_open_caller(&d, r, &e);
        if (k < 0)
                return db_fail(r, k, &e, "open database connection");
        _cleanup_json_ json_t *pol = NULL;
        k = policy_resolve(&d, r->caller.tenant_id, spec, &pol, &e);
        if (k == -EINVAL)
                return api_fail(r, -EINVAL, !strcmp(e.code, "missing_field") || !strcmp(e.code, "unknown_field")
                                                    ? e.code : "invalid_field", "%s", e.message);
        if (k < 0)
                return db_fail(r, k, &e, "resolve catalog items");
        return 0;
}


/* A glob of policy rules and artifact paths: 1-GLOB_MAX bytes, no control
 * characters, brackets closed. relative: also a workspace path (no leading
 * "/", no "." or ".." component). */
static bool glob_ok(json_t *v, bool relative) {
        if (!catalog_clean_string(v) || json_string_length(v) == 0 || json_string_length(v) > GLOB_MAX)
                return false;
        const char *s = json_string_value(v);
        int depth = 0;
        for (const char *c = s; *c; c++) {
                if ((unsigned char)*c < 0x20 || *c == 0x7f)
                        return false;
                if (*c == '[' && depth++ > 0)
                        return false;
                if (*c == ']' && depth > 0)
                        depth--;
        }
        return depth == 0 && (!relative || path_ok(s, strlen(s)));
}

/* spec.policy (docs/CONTRACTS.md "Policy engine"): the rules are checked by
 * the engine that will decide with them (lib/policy), so what is accepted
 * here is exactly what a run can evaluate; its error names the rule field.
 * Packs are catalog references, resolved (approved only) by policy_resolve. */
static int validate_policy(struct api_req *r, json_t *policy) {
        if (!json_is_object(policy))
                return api_errno(r, -EINVAL, "spec.policy must be an object {rules, packs?, ask_timeout_s?}");
        const char *key;
        json_t *v;
        json_object_foreach(policy, key, v) {
                if (strcmp(key, "rules") && strcmp(key, "packs") && strcmp(key, "ask_timeout_s"))
                        return api_fail(r, -EINVAL, "unknown_field", "spec.policy.%s is not a known field", key);
        }
        json_t *rules = json_object_get(policy, "rules");
        if (!rules)
                return api_fail(r, -EINVAL, "missing_field", "spec.policy.rules is required");
        if (!json_is_array(rules) || json_array_size(rules) > POLICY_RULES_MAX)
                return api_errno(r, -EINVAL, "spec.policy.rules must be an array of at most %d rules",
                                POLICY_RULES_MAX);
        struct err_detail e = {0};
        struct policy_engine *pe = NULL;
        int k = policy_engine_new(rules, "spec.policy.rules", &pe, &e);
        policy_engine_free(pe);
        if (k == -EINVAL)
                return api_errno(r, -EINVAL, "%s", e.message);
        if (k < 0)
                return api_fail(r, k, "internal", "could not check spec.policy.rules");
        if ((v = json_object_get(policy, "packs")) && (k = spec_validate_refs(r, v, "spec.policy.packs")) < 0)
                return k;
        if ((v = json_object_get(policy, "ask_timeout_s")) &&
            (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > POLICY_ASK_TIMEOUT_MAX_S))
                return api_errno(r, -EINVAL, "spec.policy.ask_timeout_s must be an integer from 1 to %d",
                                POLICY_ASK_TIMEOUT_MAX_S);
        return 0;
}

static int validate_artifacts(struct api_req *r, json_t *artifacts) {
        if (!json_is_object(artifacts))
                return api_errno(r, -EINVAL, "spec.artifacts must be an object {paths}");
        const char *key;
        json_t *v;
        json_object_foreach(artifacts, key, v) {
                if (strcmp(key, "paths"))
                        return api_fail(r, -EINVAL, "unknown_field", "spec.artifacts.%s is not a known field", key);
        }
        json_t *paths = json_object_get(artifacts, "paths");
        if (!paths)
                return api_fail(r, -EINVAL, "missing_field", "spec.artifacts.paths is required");
        if (!json_is_array(paths) || json_array_size(paths) > ARTIFACT_PATHS_MAX)
                return api_errno(r, -EINVAL, "spec.artifacts.paths must be an array of at most %d globs",
                                ARTIFACT_PATHS_MAX);
        size_t i;
        json_array_foreach(paths, i, v) {
                if (!glob_ok(v, true))
                        return api_errno(r, -EINVAL, "spec.artifacts.paths[%zu] must be a workspace-relative glob of 1-%d characters",
                                        i, GLOB_MAX);
        }
        defer_unsupported("spec.artifacts");
        return 0;
}

static int spec_validate_fields(struct api_req *r, json_t *spec);

int spec_validate(struct api_req *r, json_t *spec) {
        unsupported_field[0] = '\0';
        int k = spec_validate_fields(r, spec);
        if (k >= 0 && unsupported_field[0])
                k = api_fail(r, -EINVAL, "unsupported",
                             "%s is valid but not supported yet: runs of this version would not enforce it",
                             unsupported_field);
        unsupported_field[0] = '\0';
        return k;
}

static int spec_validate_fields(struct api_req *r, json_t *spec) {
        if (!spec)
                return api_fail(r, -EINVAL, "missing_field", "spec is required");
        if (!json_is_object(spec))
                return api_errno(r, -EINVAL, "spec must be an object");
        const char *key;
        json_t *v;
        json_object_foreach(spec, key, v) {
                if (!domain_name_in(spec_fields, key))
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
        if ((v = json_object_get(spec, "egress")) && (k = spec_validate_egress(r, v)) < 0)
                return k;
        if ((v = json_object_get(spec, "secrets")) && (k = spec_validate_secrets(r, v)) < 0)
                return k;
        if ((v = json_object_get(spec, "identity")) &&
            (k = spec_validate_identity(r, v, json_object_get(spec, "secrets"))) < 0)
                return k;
        if ((v = json_object_get(spec, "image")) &&
            (!catalog_clean_string(v) || json_string_length(v) == 0 || json_string_length(v) > 128))
                return api_errno(r, -EINVAL, "spec.image must be a catalog image id or name");
        if ((v = json_object_get(spec, "prompt")) && (k = validate_prompt(r, v)) < 0)
                return k;
        if ((v = json_object_get(spec, "skills")) && (k = spec_validate_refs(r, v, "spec.skills")) < 0)
                return k;
        if ((v = json_object_get(spec, "models")) && (k = spec_validate_refs(r, v, "spec.models")) < 0)
                return k;
        if ((v = json_object_get(spec, "connectors"))) {
                if ((k = spec_validate_refs(r, v, "spec.connectors")) < 0)
                        return k;
        }
        if ((v = json_object_get(spec, "policy")) && (k = validate_policy(r, v)) < 0)
                return k;
        if ((v = json_object_get(spec, "artifacts")) && (k = validate_artifacts(r, v)) < 0)
                return k;
        if ((v = json_object_get(spec, "retention_days"))) {
                if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > RETENTION_DAYS_MAX)
                        return api_errno(r, -EINVAL, "spec.retention_days must be an integer from 1 to %d",
                                        RETENTION_DAYS_MAX);
                /* enforced by evidence's retention sweeper, up to the tenant's maximum (retention.c) */
                long long max_days;
                if ((k = retention_max_days(r, &max_days)) < 0)
                        return k;
                if (json_integer_value(v) > max_days)
                        return api_errno(r, -EINVAL, "spec.retention_days must be an integer from 1 to %lld (the tenant's max_days)",
                                        max_days);
        }
        if ((k = validate_catalog_refs(r, spec)) < 0)
                return k;
        /* MCP servers are given to an agent CLI in its own config; a command
         * agent has no MCP client to give them to, and attaching them silently
         * would promise tools nobody calls (docs/CONTRACTS.md "MCP connectors") */
        const char *t = json_string_value(json_object_get(json_object_get(spec, "agent"), "type"));
        if (json_array_size(json_object_get(spec, "connectors")) > 0 && (!t || !strcmp(t, "command")))
                return api_errno(r, -EINVAL, "spec.connectors: agent type command has no MCP client (connectors are for agent types "
                                "claude-code and codex)");
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

