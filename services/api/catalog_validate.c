/* Governance catalog, the kinds and their bodies (API.md "Governance
 * catalog"): which kinds exist, and the validation of each kind's body
 * before anything is stored (-EINVAL naming the field). Storage and
 * approval: catalog.c; `paddock-api import-skills`: catalog_import.c. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "net/host_match.h"
#include "policy/policy_engine.h"

#define PROFILE_RULES_MAX 256
#define CONNECTOR_ITEMS_MAX 64
#define CONNECTOR_ITEM_MAX 4096
#define MODELS_MAX 64
#define MODEL_ID_MAX 128
#define UPSTREAM_MAX 512
#define USD_PER_MTOK_MAX 1000000.0

static const char *const kinds[] = {"images", "skills", "prompt-templates", "egress-profiles", "connectors",
                                   "models", "policy-packs", NULL};

bool catalog_kind_valid(const char *kind) {
        for (const char *const *k = kinds; *k; k++)
                if (!strcmp(*k, kind))
                        return true;
        return false;
}

bool catalog_name_ok(const char *s) {
        size_t n = s ? strlen(s) : 0;
        return n >= 1 && n <= CATALOG_NAME_MAX &&
               strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") >= 1 &&
               strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

bool catalog_clean_string(json_t *v) {
        return json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v);
}

/* Rejects keys of o outside allowed (NULL-terminated). */
static int only_keys(json_t *o, const char *const *allowed, struct err_detail *e) {
        const char *key;
        json_t *v;
        json_object_foreach(o, key, v) {
                const char *const *a = allowed;
                for (; *a; a++)
                        if (!strcmp(*a, key))
                                break;
                if (!*a)
                        return err_set(e, -EINVAL, "unknown_field", "body.%s is not a known field", key);
        }
        return 0;
}

static int opt_string(json_t *o, const char *key, size_t max, struct err_detail *e) {
        json_t *v = json_object_get(o, key);
        if (v && (!catalog_clean_string(v) || json_string_length(v) > max))
                return err_set(e, -EINVAL, "invalid_field", "body.%s must be a string of at most %zu bytes", key, max);
        return 0;
}

static int validate_image(json_t *b, struct err_detail *e) {
        static const char *const keys[] = {"description", NULL};
        int k = only_keys(b, keys, e);
        return k < 0 ? k : opt_string(b, "description", DESCRIPTION_MAX, e);
}

/* The body of the kinds made of rules (egress profiles, policy packs):
 * {description?, rules: 1..max}; *ret is body.rules (borrowed). */
static int rules_body(json_t *b, size_t max, json_t **ret, struct err_detail *e) {
        static const char *const keys[] = {"description", "rules", NULL};
        int k = only_keys(b, keys, e);
        if (k < 0 || (k = opt_string(b, "description", DESCRIPTION_MAX, e)) < 0)
                return k;
        json_t *rules = *ret = json_object_get(b, "rules");
        if (!rules)
                return err_set(e, -EINVAL, "missing_field", "body.rules is required");
        if (!json_is_array(rules) || json_array_size(rules) == 0 || json_array_size(rules) > max)
                return err_set(e, -EINVAL, "invalid_field", "body.rules must be an array of 1 to %zu rules", max);
        return 0;
}

static int validate_profile(struct addr_floor *floor, json_t *b, struct err_detail *e) {
        json_t *rules;
        int k = rules_body(b, PROFILE_RULES_MAX, &rules, e);
        if (k < 0)
                return k;
        size_t i;
        json_t *v;
        json_array_foreach(rules, i, v) {
                char host[300];
                uint32_t port;
                bool ip;
                struct err_detail re = {0};
                /* a profile may name private ranges (an internal mirror), never the floor */
                if (!catalog_clean_string(v) ||
                    spec_egress_rule_parse(json_string_value(v), host, sizeof host, &port, &ip, &re) < 0 ||
                    spec_egress_rule_reach(floor, host, ip, false, &re) < 0)
                        return err_set(e, -EINVAL, "invalid_field", "body.rules[%zu]: %s", i,
                                       re.message[0] ? re.message : "must be a string \"host[:port]\"");
        }
        return 0;
}

/* A policy pack (issue 12 §1, docs/CONTRACTS.md "Policy engine"): rules a
 * security team writes once and definitions add by reference after their
 * own (spec.policy.packs). Checked by the engine that will decide with them. */
static int validate_policy_pack(json_t *b, struct err_detail *e) {
        json_t *rules;
        int k = rules_body(b, POLICY_RULES_MAX, &rules, e);
        if (k < 0)
                return k;
        struct policy_engine *pe = NULL;
        k = policy_engine_new(rules, "body.rules", &pe, e);
        policy_engine_free(pe);
        if (k == -EINVAL)
                snprintf(e->code, sizeof e->code, "invalid_field");
        return k;
}

static int validate_skill(json_t *b, struct err_detail *e) {
        static const char *const keys[] = {"description", "instructions", "files", NULL};
        int k = only_keys(b, keys, e);
        if (k < 0 || (k = opt_string(b, "description", DESCRIPTION_MAX, e)) < 0 ||
            (k = opt_string(b, "instructions", SKILL_BYTES_MAX, e)) < 0)
                return k;
        json_t *files = json_object_get(b, "files");
        size_t total = json_string_length(json_object_get(b, "instructions"));
        if (files) {
                if (!json_is_object(files) || json_object_size(files) > SKILL_FILES_MAX)
                        return err_set(e, -EINVAL, "invalid_field",
                                       "body.files must be an object {path: content} of at most %d files",
                                       SKILL_FILES_MAX);
                const char *path;
                json_t *v;
                json_object_foreach(files, path, v) {
                        if (!spec_path_ok(path, strlen(path)) || !strcmp(path, "SKILL.md"))
                                return err_set(e, -EINVAL, "invalid_field",
                                               "body.files: \"%.128s\" must be a relative path without \"..\" "
                                               "(and not SKILL.md)", path);
                        if (!json_is_string(v))
                                return err_set(e, -EINVAL, "invalid_field", "body.files[\"%.128s\"] must be a string",
                                               path);
                        total += json_string_length(v);
                }
        }
        if (total > SKILL_BYTES_MAX)
                return err_set(e, -EINVAL, "invalid_field", "body: a skill may hold at most %d bytes", SKILL_BYTES_MAX);
        return 0;
}

int catalog_connector_origin(const char *url, char *host, size_t size, uint16_t *ret_port, bool *ret_tls,
                             struct err_detail *e) {
        bool tls = !strncasecmp(url, "https://", 8);
        if (!tls && strncasecmp(url, "http://", 7))
                return err_set(e, -EINVAL, "invalid_field", "must be an http(s) URL");
        const char *a = url + (tls ? 8 : 7), *end = a + strcspn(a, "/?#");
        char auth[HOST_RULE_NAME_MAX + 16];
        if (end == a || (size_t)(end - a) >= sizeof auth)
                return err_set(e, -EINVAL, "invalid_field", "must name a host of at most %d characters",
                               HOST_RULE_NAME_MAX);
        memcpy(auth, a, (size_t)(end - a));
        auth[end - a] = '\0';
        if (strchr(auth, '@'))
                return err_set(e, -EINVAL, "invalid_field", "must not hold a user");
        uint32_t port = 0;
        bool ip = false;
        struct err_detail pe = {0};
        if (spec_egress_rule_parse(auth, host, size, &port, &ip, &pe) < 0)
                return err_set(e, -EINVAL, "invalid_field", "invalid host or port: %s", pe.message);
        if (host[0] == '*' || strchr(host, '/'))
                return err_set(e, -EINVAL, "invalid_field", "must name one host (no wildcard, no CIDR)");
        *ret_port = port ? (uint16_t)port : (tls ? 443 : 80);
        *ret_tls = tls;
        return ip ? 1 : 0;
}

/* Codex 0.171 rewrites "-" to "_" in the tool names it shows the model and
 * its hooks (server "a-b": tool "mcp__a_b__echo"), Claude keeps it: only
 * [a-z0-9_] gives every CLI, the hook and the policy the catalog's name.
 * "__" and a "_" at either end would make mcp__<name>__<tool> ambiguous. */
bool catalog_connector_name_ok(const char *s) {
        size_t n = strlen(s);
        return n >= 1 && n <= CATALOG_NAME_MAX && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_") == n &&
               !strstr(s, "__") && s[0] != '_' && s[n - 1] != '_';
}

/* A connectors item (docs/CONTRACTS.md "MCP connectors"): stdio {command}
 * the CLI starts in the sandbox, or http {url, secret?} reached through the
 * egress proxy, which adds the secret header for that origin (over TLS it
 * verifies only, like a header secret). The host is checked like a catalog
 * egress profile's: private ranges may be named, never the floor. */
static int validate_connector(struct addr_floor *floor, json_t *b, struct err_detail *e) {
        static const char *const keys[] = {"description", "transport", "command", "url", "secret", NULL};
        int k = only_keys(b, keys, e);
        if (k < 0 || (k = opt_string(b, "description", DESCRIPTION_MAX, e)) < 0)
                return k;
        json_t *tr = json_object_get(b, "transport"), *cmd = json_object_get(b, "command"),
               *url = json_object_get(b, "url"), *sec = json_object_get(b, "secret");
        if (!tr)
                return err_set(e, -EINVAL, "missing_field", "body.transport is required");
        const char *t = json_is_string(tr) ? json_string_value(tr) : "";
        if (!strcmp(t, "stdio")) {
                if (url)
                        return err_set(e, -EINVAL, "invalid_field", "body.url is for transport \"http\"");
                if (sec)
                        return err_set(e, -EINVAL, "invalid_field",
                                       "body.secret is for transport \"http\" (a stdio server runs in the sandbox)");
                if (!json_is_array(cmd) || json_array_size(cmd) == 0 || json_array_size(cmd) > CONNECTOR_ITEMS_MAX)
                        return err_set(e, -EINVAL, "invalid_field",
                                       "body.command must be a non-empty array of at most %d strings",
                                       CONNECTOR_ITEMS_MAX);
                size_t i;
                json_t *v;
                json_array_foreach(cmd, i, v) {
                        if (!catalog_clean_string(v) || json_string_length(v) == 0 || json_string_length(v) > CONNECTOR_ITEM_MAX)
                                return err_set(e, -EINVAL, "invalid_field", "body.command[%zu] must be a non-empty string",
                                               i);
                }
                return 0;
        }
        if (!strcmp(t, "http")) {
                if (cmd)
                        return err_set(e, -EINVAL, "invalid_field", "body.command is for transport \"stdio\"");
                if (!catalog_clean_string(url) || json_string_length(url) > CONNECTOR_ITEM_MAX ||
                    (strncmp(json_string_value(url), "https://", 8) && strncmp(json_string_value(url), "http://", 7)))
                        return err_set(e, -EINVAL, "invalid_field", "body.url must be an http(s) URL");
                char host[HOST_RULE_NAME_MAX + 1];
                uint16_t port;
                bool tls;
                struct err_detail oe = {0}, re = {0};
                if ((k = catalog_connector_origin(json_string_value(url), host, sizeof host, &port, &tls, &oe)) < 0)
                        return err_set(e, -EINVAL, "invalid_field", "body.url %s", oe.message);
                if (spec_egress_rule_reach(floor, host, k == 1, false, &re) < 0)
                        return err_set(e, -EINVAL, "invalid_field", "body.url: %s", re.message);
                if (!sec)
                        return 0;
                if (!json_is_object(sec))
                        return err_set(e, -EINVAL, "invalid_field",
                                       "body.secret must be {\"name\": team secret, \"header\": header name}");
                const char *key;
                json_t *v;
                json_object_foreach(sec, key, v) {
                        if (strcmp(key, "name") && strcmp(key, "header"))
                                return err_set(e, -EINVAL, "unknown_field", "body.secret.%s is not a known field", key);
                }
                json_t *sn = json_object_get(sec, "name"), *sh = json_object_get(sec, "header");
                if (!sn)
                        return err_set(e, -EINVAL, "missing_field", "body.secret.name is required");
                if (!catalog_clean_string(sn) || !spec_secret_name_ok(json_string_value(sn)))
                        return err_set(e, -EINVAL, "invalid_field",
                                       "body.secret.name must name a team secret: [A-Z_][A-Z0-9_]{0,63}");
                if (!sh)
                        return err_set(e, -EINVAL, "missing_field", "body.secret.header is required");
                if (!catalog_clean_string(sh) || !spec_header_name_ok(json_string_value(sh)))
                        return err_set(e, -EINVAL, "invalid_field",
                                       "body.secret.header must be an HTTP header name (token, not a framing or proxy "
                                       "header)");
                if (!tls)
                        return err_set(e, -EINVAL, "invalid_field",
                                       "body.url must start with https:// for a secret (the proxy adds a header "
                                       "secret only over TLS it verifies)");
                return 0;
        }
        return err_set(e, -EINVAL, "invalid_field", "body.transport must be \"stdio\" or \"http\"");
}

/* "https://host[:port][/prefix]" (docs/CONTRACTS.md "Model catalog"): the
 * scheme and authority checked like a header secret's origin (the gateway
 * sends the key only over TLS it verifies), an IP literal outside the
 * platform egress floor, a name that is not this node's or a metadata
 * service's; the prefix a plain path the gateway puts before /v1/... */
static int validate_upstream(struct addr_floor *floor, json_t *v, struct err_detail *e) {
        if (!catalog_clean_string(v) || json_string_length(v) > UPSTREAM_MAX)
                return err_set(e, -EINVAL, "invalid_field", "body.upstream must be a string \"https://host[:port][/prefix]\"");
        const char *s = json_string_value(v);
        if (strncasecmp(s, "https://", 8))
                return err_set(e, -EINVAL, "invalid_field",
                               "body.upstream must start with https:// (the gateway sends the key only over TLS it "
                               "verifies)");
        const char *path = strchr(s + 8, '/');
        size_t alen = path ? (size_t)(path - s) : strlen(s);
        char origin[UPSTREAM_MAX + 1], host[HOST_RULE_NAME_MAX + 1];
        memcpy(origin, s, alen);
        origin[alen] = '\0';
        _cleanup_json_ json_t *hdr = json_pack("{s:s}", "origin", origin);
        uint16_t port;
        struct err_detail oe = {0};
        if (!hdr || spec_header_origin(hdr, host, sizeof host, &port, &oe) < 0)
                return err_set(e, -EINVAL, "invalid_field", "body.upstream %s", oe.message[0] ? oe.message : "is invalid");
        bool ip = strchr(host, ':') || strspn(host, "0123456789.") == strlen(host);
        struct err_detail re = {0};
        if (spec_egress_rule_reach(floor, host, ip, false, &re) < 0)
                return err_set(e, -EINVAL, "invalid_field", "body.upstream: %s", re.message);
        if (path) {
                size_t n = strlen(path);
                /* no query, fragment, dot segments or escapes: the prefix is
                 * joined to the agent's path as it is */
                if (n > 1 && (strspn(path, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-~") != n ||
                              strstr(path, "//") || strstr(path, "/./") || strstr(path, "/../") ||
                              (n >= 2 && !strcmp(path + n - 2, "/.")) || (n >= 3 && !strcmp(path + n - 3, "/.."))))
                        return err_set(e, -EINVAL, "invalid_field",
                                       "body.upstream: the path prefix may hold A-Z a-z 0-9 / . _ - ~ only, without "
                                       "empty, \".\" or \"..\" segments");
        }
        return 0;
}

static int validate_price(json_t *p, size_t i, const char *key, bool required, struct err_detail *e) {
        json_t *v = json_object_get(p, key);
        if (!v && !required)
                return 0;
        if (!v)
                return err_set(e, -EINVAL, "missing_field", "body.models[%zu].usd_per_mtok.%s is required", i, key);
        if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > USD_PER_MTOK_MAX)
                return err_set(e, -EINVAL, "invalid_field",
                               "body.models[%zu].usd_per_mtok.%s must be a number from 0 to %.0f (USD per million "
                               "tokens)", i, key, USD_PER_MTOK_MAX);
        return 0;
}

/* A models item (docs/CONTRACTS.md "Model catalog"): what a run may call
 * through its model gateway and what it costs; the key is a team secret the
 * item names, so each team brings its own. */
static int validate_models(struct addr_floor *floor, json_t *b, struct err_detail *e) {
        static const char *const keys[] = {"description", "provider", "upstream", "key_secret", "models", NULL};
        int k = only_keys(b, keys, e);
        if (k < 0 || (k = opt_string(b, "description", DESCRIPTION_MAX, e)) < 0)
                return k;
        for (const char *const *req = (const char *const[]){"provider", "upstream", "key_secret", "models", NULL}; *req;
             req++)
                if (!json_object_get(b, *req))
                        return err_set(e, -EINVAL, "missing_field", "body.%s is required", *req);
        const char *prov = json_string_value(json_object_get(b, "provider"));
        if (!prov || (strcmp(prov, "anthropic") && strcmp(prov, "openai")))
                return err_set(e, -EINVAL, "invalid_field", "body.provider must be \"anthropic\" or \"openai\"");
        if ((k = validate_upstream(floor, json_object_get(b, "upstream"), e)) < 0)
                return k;
        json_t *ks = json_object_get(b, "key_secret");
        if (!catalog_clean_string(ks) || !spec_secret_name_ok(json_string_value(ks)))
                return err_set(e, -EINVAL, "invalid_field",
                               "body.key_secret must name a team secret: [A-Z_][A-Z0-9_]{0,63}");
        json_t *models = json_object_get(b, "models");
        if (!json_is_array(models) || json_array_size(models) == 0 || json_array_size(models) > MODELS_MAX)
                return err_set(e, -EINVAL, "invalid_field", "body.models must be an array of 1 to %d models", MODELS_MAX);
        size_t i;
        json_t *m;
        json_array_foreach(models, i, m) {
                if (!json_is_object(m))
                        return err_set(e, -EINVAL, "invalid_field", "body.models[%zu] must be an object {id, usd_per_mtok}",
                                       i);
                const char *key;
                json_t *v;
                json_object_foreach(m, key, v) {
                        if (strcmp(key, "id") && strcmp(key, "usd_per_mtok"))
                                return err_set(e, -EINVAL, "unknown_field", "body.models[%zu].%s is not a known field", i,
                                               key);
                }
                json_t *id = json_object_get(m, "id"), *p = json_object_get(m, "usd_per_mtok");
                if (!id)
                        return err_set(e, -EINVAL, "missing_field", "body.models[%zu].id is required", i);
                /* the characters spec.agent.model accepts (spec_validate.c) */
                size_t n = json_string_length(id);
                if (!catalog_clean_string(id) || n == 0 || n > MODEL_ID_MAX ||
                    strspn(json_string_value(id), "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                                  "0123456789._:/@-") != n)
                        return err_set(e, -EINVAL, "invalid_field",
                                       "body.models[%zu].id must be 1-%d characters of A-Z a-z 0-9 . _ : / @ -", i,
                                       MODEL_ID_MAX);
                for (size_t j = 0; j < i; j++)
                        if (!strcmp(json_string_value(json_object_get(json_array_get(models, j), "id")),
                                    json_string_value(id)))
                                return err_set(e, -EINVAL, "invalid_field", "body.models[%zu].id repeats body.models[%zu].id",
                                               i, j);
                if (!p)
                        return err_set(e, -EINVAL, "missing_field", "body.models[%zu].usd_per_mtok is required", i);
                if (!json_is_object(p))
                        return err_set(e, -EINVAL, "invalid_field",
                                       "body.models[%zu].usd_per_mtok must be an object {input, output, cache_read?, "
                                       "cache_write?}", i);
                json_object_foreach(p, key, v) {
                        if (strcmp(key, "input") && strcmp(key, "output") && strcmp(key, "cache_read") &&
                            strcmp(key, "cache_write"))
                                return err_set(e, -EINVAL, "unknown_field",
                                               "body.models[%zu].usd_per_mtok.%s is not a known field", i, key);
                }
                if ((k = validate_price(p, i, "input", true, e)) < 0 || (k = validate_price(p, i, "output", true, e)) < 0 ||
                    (k = validate_price(p, i, "cache_read", false, e)) < 0 ||
                    (k = validate_price(p, i, "cache_write", false, e)) < 0)
                        return k;
        }
        return 0;
}

int catalog_validate_body(struct addr_floor *floor, const char *kind, json_t *body, struct err_detail *e) {
        if (!json_is_object(body))
                return err_set(e, -EINVAL, "invalid_field", "body must be an object");
        if (!strcmp(kind, "images"))
                return validate_image(body, e);
        if (!strcmp(kind, "egress-profiles"))
                return validate_profile(floor, body, e);
        if (!strcmp(kind, "prompt-templates"))
                return prompt_template_validate(body, e);
        if (!strcmp(kind, "skills"))
                return validate_skill(body, e);
        if (!strcmp(kind, "connectors"))
                return validate_connector(floor, body, e);
        if (!strcmp(kind, "models"))
                return validate_models(floor, body, e);
        if (!strcmp(kind, "policy-packs"))
                return validate_policy_pack(body, e);
        return err_set(e, -EINVAL, "invalid_field", "unknown kind");
}

