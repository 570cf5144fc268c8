/* Governance catalog (API.md "Governance catalog"): tenant-owned items of seven
 * kinds, each with a kind-specific body validated here, in state draft until
 * a security_admin (or tenant_admin) approves it. Any change returns an item
 * to draft, so what a definition uses is always what was approved. The
 * managed items every tenant starts with are seeded by the database
 * (migrations/0004_catalog.sql); `paddock-api import-skills` adds skills from
 * a folder of SKILL.md directories. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "api.h"
#include "core/log.h"
#include "net/host_match.h"
#include "pg/pg.h"
#include "policy/policy_engine.h"

#define CATALOG_NAME_MAX 128
#define DESCRIPTION_MAX 4096
#define PROFILE_RULES_MAX 256
#define SKILL_FILES_MAX 64
#define SKILL_BYTES_MAX (256 * 1024)
#define CONNECTOR_ITEMS_MAX 64
#define CONNECTOR_ITEM_MAX 4096
#define LIST_LIMIT_DEFAULT 200
#define LIST_LIMIT_MAX 500
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

static bool clean_string(json_t *v) {
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
        if (v && (!clean_string(v) || json_string_length(v) > max))
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
                if (!clean_string(v) ||
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
                        if (!clean_string(v) || json_string_length(v) == 0 || json_string_length(v) > CONNECTOR_ITEM_MAX)
                                return err_set(e, -EINVAL, "invalid_field", "body.command[%zu] must be a non-empty string",
                                               i);
                }
                return 0;
        }
        if (!strcmp(t, "http")) {
                if (cmd)
                        return err_set(e, -EINVAL, "invalid_field", "body.command is for transport \"stdio\"");
                if (!clean_string(url) || json_string_length(url) > CONNECTOR_ITEM_MAX ||
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
                if (!clean_string(sn) || !spec_secret_name_ok(json_string_value(sn)))
                        return err_set(e, -EINVAL, "invalid_field",
                                       "body.secret.name must name a team secret: [A-Z_][A-Z0-9_]{0,63}");
                if (!sh)
                        return err_set(e, -EINVAL, "missing_field", "body.secret.header is required");
                if (!clean_string(sh) || !spec_header_name_ok(json_string_value(sh)))
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
        if (!clean_string(v) || json_string_length(v) > UPSTREAM_MAX)
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
        if (!clean_string(ks) || !spec_secret_name_ok(json_string_value(ks)))
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
                if (!clean_string(id) || n == 0 || n > MODEL_ID_MAX ||
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

/* ---- lookups (spec validation and resolution, policy.c) */

int catalog_lookup(struct db *d, const char *tenant_id, const char *kind, const char *ref, json_t **ret,
                   struct err_detail *e) {
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {tenant_id, kind, ref};
        /* an id, or (for people writing specs by hand) a name */
        int k = pg_exec(d->conn,
                        "SELECT id::text, name, state, body::text FROM api.catalog_items "
                        "WHERE tenant_id = $1 AND kind = $2 AND (id::text = $3 OR name = $3)",
                        3, params, &res, e);
        if (k < 0)
                return k;
        if (PQntuples(res) != 1)
                return -ENOENT;
        json_t *body = json_loads(PQgetvalue(res, 0, 3), 0, NULL);
        if (!body)
                return -EIO;
        *ret = json_pack("{s:s, s:s, s:s, s:o}", "id", PQgetvalue(res, 0, 0), "name", PQgetvalue(res, 0, 1),
                         "state", PQgetvalue(res, 0, 2), "body", body);
        return *ret ? 0 : -ENOMEM;
}

/* ---- HTTP */

#define ITEM_COLUMNS                                                                                     \
        "id::text, kind, name, state, managed, body::text, created_by, " DB_TS("created_at") ", " \
        DB_TS("updated_at") ", approved_by, " DB_TS("approved_at")

/* What an approval names (API.md "Governance catalog": approved by
 * content): the SHA-256 of the body's canonical JSON (spec_canonical: sorted
 * keys, compact), so a reviewer approves exactly the body it read. */
static int item_content_sha256(json_t *body, char out[65]) {
        _cleanup_free_ char *canon = NULL;
        return spec_canonical(body, &canon, out);
}

static json_t *item_json(const PGresult *res, int row) {
        json_t *body = json_loads(PQgetvalue(res, row, 5), 0, NULL);
        char sha[65] = "";
        if (body)
                item_content_sha256(body, sha);
        return json_pack("{s:s, s:s, s:s, s:s, s:b, s:o, s:s, s:s, s:s, s:o, s:o, s:s}", "id", PQgetvalue(res, row, 0),
                         "kind", PQgetvalue(res, row, 1), "name", PQgetvalue(res, row, 2), "state",
                         PQgetvalue(res, row, 3), "managed", PQgetvalue(res, row, 4)[0] == 't', "body",
                         body ? body : json_object(), "created_by", PQgetvalue(res, row, 6), "created_at",
                         PQgetvalue(res, row, 7), "updated_at", PQgetvalue(res, row, 8), "approved_by",
                         db_json_str(res, row, 9), "approved_at", db_json_str(res, row, 10), "content_sha256",
                         sha);
}

/* Opens the tenant's database and checks the caller's permission on the
 * catalog: reads need membership of a team of the tenant (any role),
 * writes the route's permission in some team (tenant_admin holds all). */
static int catalog_open(struct api_req *r, struct db *d, bool write) {
        if (!catalog_kind_valid(r->params[0]))
                return api_errno(r, -ENOENT, "no such catalog kind (images, skills, prompt-templates, egress-profiles, connectors, "
                                "models, policy-packs)");
        struct err_detail e = {0};
        int k = db_open_caller(d, r, &e);
        if (k < 0)
                return db_fail(r, k, &e, "open database connection");
        k = api_authz_tenant(d, &r->caller, write ? r->perm : PERM_USER, &e);
        if (k == -EPERM)
                return api_errno(r, -EPERM, write ? (r->perm == PERM_CATALOG_APPROVE
                                                 ? "approving catalog items needs the security_admin role"
                                                 : "changing the catalog needs the sandbox_author role")
                                      : "reading the catalog needs a role in a team of the tenant");
        if (k < 0)
                return db_fail(r, k, &e, "check catalog permission");
        return 0;
}

int catalog_list(struct api_req *r) {
        _cleanup_db_ struct db d = {0};
        int k = catalog_open(r, &d, false);
        if (k < 0)
                return k;
        char lbuf[16], cbuf[CATALOG_NAME_MAX + 8], sbuf[16];
        int limit = LIST_LIMIT_DEFAULT;
        const char *l = api_query(r, "limit", lbuf, sizeof lbuf);
        if (l) {
                char *end;
                long n = strtol(l, &end, 10);
                if (*end || n < 1 || n > LIST_LIMIT_MAX)
                        return api_errno(r, -EINVAL, "limit must be 1 to %d", LIST_LIMIT_MAX);
                limit = (int)n;
        }
        const char *cursor = api_query(r, "cursor", cbuf, sizeof cbuf);
        const char *state = api_query(r, "state", sbuf, sizeof sbuf);
        if (state && strcmp(state, "draft") && strcmp(state, "approved"))
                return api_errno(r, -EINVAL, "state must be \"draft\" or \"approved\"");
        char lim[16];
        snprintf(lim, sizeof lim, "%d", limit + 1);
        struct err_detail e = {0};
        _cleanup_pgres_ PGresult *res = NULL;
        /* the cursor is the last name seen: names are unique per kind */
        const char *params[] = {r->caller.tenant_id, r->params[0], cursor ? cursor : "", lim, state};
        k = pg_exec(d.conn,
                    "SELECT " ITEM_COLUMNS " FROM api.catalog_items WHERE tenant_id = $1 AND kind = $2 "
                    "AND name > $3 AND ($5::text IS NULL OR state = $5) ORDER BY name LIMIT $4::integer",
                    5, params, &res, &e);
        if (k < 0)
                return db_fail(r, k, &e, "list catalog items");
        json_t *items = json_array();
        int n = PQntuples(res);
        for (int i = 0; i < n && i < limit; i++)
                json_array_append_new(items, item_json(res, i));
        r->out = json_pack("{s:o, s:o}", "items", items, "next_cursor",
                           n > limit ? json_string(PQgetvalue(res, limit - 1, 2)) : json_null());
        r->status = 200;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

static int load_item(struct api_req *r, struct db *d, PGresult **res) {
        struct err_detail e = {0};
        if (!id_is_uuid(r->params[1]))
                return api_errno(r, -ENOENT, "catalog item not found");
        const char *params[] = {r->params[1], r->caller.tenant_id, r->params[0]};
        int k = pg_exec(d->conn,
                        "SELECT " ITEM_COLUMNS " FROM api.catalog_items WHERE id = $1 AND tenant_id = $2 AND kind = $3",
                        3, params, res, &e);
        if (k < 0)
                return db_fail(r, k, &e, "load catalog item");
        if (PQntuples(*res) != 1)
                return api_errno(r, -ENOENT, "catalog item not found");
        return 0;
}

int catalog_get(struct api_req *r) {
        _cleanup_db_ struct db d = {0};
        int k = catalog_open(r, &d, false);
        if (k < 0)
                return k;
        _cleanup_pgres_ PGresult *res = NULL;
        if ((k = load_item(r, &d, &res)) < 0)
                return k;
        r->out = item_json(res, 0);
        r->status = 200;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

/* Reads {name?, body?} of a create (both required) or patch. */
static int parse_item(struct api_req *r, json_t *in, bool create, const char **name, json_t **body) {
        int k = api_known_fields(r, in, (const char *const[]){"name", "body", NULL});
        if (k < 0)
                return k;
        json_t *jn = json_object_get(in, "name");
        *body = json_object_get(in, "body");
        if (create && !jn)
                return api_fail(r, -EINVAL, "missing_field", "name is required");
        if (create && !*body)
                return api_fail(r, -EINVAL, "missing_field", "body is required");
        if (jn && (!clean_string(jn) || !catalog_name_ok(json_string_value(jn))))
                return api_errno(r, -EINVAL, "name must be 1 to %d characters of A-Z a-z 0-9 . _ - starting with a letter or digit",
                                CATALOG_NAME_MAX);
        *name = jn ? json_string_value(jn) : NULL;
        struct err_detail e = {0};
        if (*body && catalog_validate_body(r->api->floor, r->params[0], *body, &e) < 0)
                return api_fail(r, -EINVAL, e.code, "%s", e.message);
        /* what the CLIs call the MCP server (mcp__<name>__<tool>,
         * docs/CONTRACTS.md "MCP connectors") */
        if (jn && !strcmp(r->params[0], "connectors") && !catalog_connector_name_ok(json_string_value(jn)))
                return api_errno(r, -EINVAL, "name of a connector must be 1 to %d characters of a-z 0-9 _, without \"__\" or a "
                                "\"_\" at either end (the MCP server name the agent and the policy see)",
                                CATALOG_NAME_MAX);
        return 0;
}

static int finish_write(struct api_req *r, struct db *d, const char *action, const char *id, json_t *change) {
        struct err_detail e = {0};
        int k = api_audit(r, d, action, "catalog_item", id, "success", change);
        if (k < 0) {
                db_rollback(d);
                return k;
        }
        if ((k = db_commit(d, &e)) < 0)
                return db_fail(r, k, &e, "commit catalog change");
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {id, r->caller.tenant_id};
        if ((k = pg_exec(d->conn, "SELECT " ITEM_COLUMNS " FROM api.catalog_items WHERE id = $1 AND tenant_id = $2",
                         2, params, &res, &e)) < 0)
                return db_fail(r, k, &e, "load catalog item");
        r->out = PQntuples(res) == 1 ? item_json(res, 0) : NULL;
        return r->out ? 0 : api_errno(r, -ENOMEM, "out of memory");
}

int catalog_create(struct api_req *r) {
        _cleanup_db_ struct db d = {0};
        int k = catalog_open(r, &d, true);
        if (k < 0)
                return k;
        _cleanup_json_ json_t *in = NULL;
        if ((k = api_body_object(r, &in)) < 0)
                return k;
        const char *name;
        json_t *body;
        if ((k = parse_item(r, in, true, &name, &body)) < 0)
                return k;
        char id[UUID_STR_LEN], actor[UUID_STR_LEN + 8];
        if (id_new_uuid(id) < 0)
                return api_errno(r, -EIO, "could not generate an id");
        snprintf(actor, sizeof actor, "user:%s", r->caller.user_id);
        _cleanup_free_ char *bodys = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
        if (!bodys)
                return api_errno(r, -ENOMEM, "out of memory");
        struct err_detail e = {0};
        if ((k = db_begin(&d, &e)) < 0)
                return db_fail(r, k, &e, "begin");
        const char *params[] = {id, r->caller.tenant_id, r->params[0], name, bodys, actor};
        k = pg_exec(d.conn,
                    "INSERT INTO api.catalog_items (id, tenant_id, kind, name, body, created_by) "
                    "VALUES ($1, $2, $3, $4, $5::jsonb, $6)",
                    6, params, NULL, &e);
        if (k == -EEXIST) {
                db_rollback(&d);
                return api_errno(r, -EEXIST, "name: a %s item named %s exists", r->params[0], name);
        }
        if (k < 0) {
                db_rollback(&d);
                return db_fail(r, k, &e, "insert catalog item");
        }
        _cleanup_json_ json_t *change = json_pack("{s:s, s:s, s:O}", "kind", r->params[0], "name", name, "body", body);
        if ((k = finish_write(r, &d, "catalog.create", id, change)) < 0)
                return k;
        r->status = 201;
        return 0;
}

int catalog_patch(struct api_req *r) {
        _cleanup_db_ struct db d = {0};
        int k = catalog_open(r, &d, true);
        if (k < 0)
                return k;
        _cleanup_json_ json_t *in = NULL;
        if ((k = api_body_object(r, &in)) < 0)
                return k;
        const char *name;
        json_t *body;
        if ((k = parse_item(r, in, false, &name, &body)) < 0)
                return k;
        _cleanup_pgres_ PGresult *cur = NULL;
        if ((k = load_item(r, &d, &cur)) < 0)
                return k;
        _cleanup_free_ char *bodys = body ? json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        if (body && !bodys)
                return api_errno(r, -ENOMEM, "out of memory");
        struct err_detail e = {0};
        if ((k = db_begin(&d, &e)) < 0)
                return db_fail(r, k, &e, "begin");
        /* any change needs approval again */
        const char *params[] = {r->params[1], r->caller.tenant_id, name, bodys};
        k = pg_exec(d.conn,
                    "UPDATE api.catalog_items SET name = coalesce($3, name), body = coalesce($4::jsonb, body), "
                    "state = 'draft', approved_by = NULL, approved_at = NULL, updated_at = now() "
                    "WHERE id = $1 AND tenant_id = $2",
                    4, params, NULL, &e);
        if (k == -EEXIST) {
                db_rollback(&d);
                return api_errno(r, -EEXIST, "name: a %s item named %s exists", r->params[0], name);
        }
        if (k < 0) {
                db_rollback(&d);
                return db_fail(r, k, &e, "update catalog item");
        }
        _cleanup_json_ json_t *change = json_pack("{s:s, s:s?, s:O?, s:s}", "kind", r->params[0], "name", name,
                                                  "body", body, "state", "draft");
        if ((k = finish_write(r, &d, "catalog.update", r->params[1], change)) < 0)
                return k;
        r->status = 200;
        return 0;
}

int catalog_approve(struct api_req *r) {
        _cleanup_db_ struct db d = {0};
        int k = catalog_open(r, &d, true);
        if (k < 0)
                return k;
        /* approved by content: the request names the content_sha256 the
         * reviewer read (GET), so a change made meanwhile is never approved */
        _cleanup_json_ json_t *in = NULL;
        if ((k = api_body_object(r, &in)) < 0)
                return k;
        if ((k = api_known_fields(r, in, (const char *const[]){"content_sha256", "comment", NULL})) < 0)
                return k;
        json_t *jc = json_object_get(in, "comment"), *jh = json_object_get(in, "content_sha256");
        if (jc && (!clean_string(jc) || json_string_length(jc) > DESCRIPTION_MAX))
                return api_errno(r, -EINVAL, "comment must be a string");
        if (!jh)
                return api_fail(r, -EINVAL, "missing_field",
                                "content_sha256 is required: the content_sha256 of the item you reviewed");
        const char *want = json_string_value(jh);
        if (!want || strlen(want) != 64 || strspn(want, "0123456789abcdef") != 64)
                return api_errno(r, -EINVAL, "content_sha256 must be 64 lower-case hex digits");
        if (!id_is_uuid(r->params[1]))
                return api_errno(r, -ENOENT, "catalog item not found");
        char actor[UUID_STR_LEN + 8];
        snprintf(actor, sizeof actor, "user:%s", r->caller.user_id);
        struct err_detail e = {0};
        if ((k = db_begin(&d, &e)) < 0)
                return db_fail(r, k, &e, "begin");
        /* locked: a concurrent change waits until this approval is decided */
        _cleanup_pgres_ PGresult *cur = NULL;
        const char *lp[] = {r->params[1], r->caller.tenant_id, r->params[0]};
        k = pg_exec(d.conn,
                    "SELECT " ITEM_COLUMNS " FROM api.catalog_items WHERE id = $1 AND tenant_id = $2 AND kind = $3 "
                    "FOR UPDATE",
                    3, lp, &cur, &e);
        if (k < 0 || PQntuples(cur) != 1) {
                db_rollback(&d);
                return k < 0 ? db_fail(r, k, &e, "load catalog item")
                             : api_errno(r, -ENOENT, "catalog item not found");
        }
        json_t *body = json_loads(PQgetvalue(cur, 0, 5), 0, NULL);
        char have[65];
        if (!body || item_content_sha256(body, have) < 0) {
                json_decref(body);
                db_rollback(&d);
                return api_errno(r, -EIO, "could not hash the catalog item");
        }
        if (strcmp(have, want)) {
                json_decref(body);
                db_rollback(&d);
                return api_errno(r, -EEXIST, "content_sha256: the item changed since it was reviewed (now %s); review it again",
                                have);
        }
        const char *params[] = {r->params[1], r->caller.tenant_id, actor};
        k = pg_exec(d.conn,
                    "UPDATE api.catalog_items SET state = 'approved', approved_by = $3, approved_at = now() "
                    "WHERE id = $1 AND tenant_id = $2",
                    3, params, NULL, &e);
        if (k < 0) {
                json_decref(body);
                db_rollback(&d);
                return db_fail(r, k, &e, "approve catalog item");
        }
        /* the approved content is what the hash in the audit record covers */
        _cleanup_json_ json_t *change = json_pack("{s:s, s:s, s:o, s:s, s:s}", "kind", r->params[0], "name",
                                                  PQgetvalue(cur, 0, 2), "body", body, "state", "approved",
                                                  "content_sha256", have);
        if ((k = finish_write(r, &d, "catalog.approve", r->params[1], change)) < 0)
                return k;
        log_ctx(LOG_INFO, LOG_KV("tenant", r->caller.tenant_id, "item", r->params[1], "user", r->caller.user_id),
                "catalog item approved");
        r->status = 200;
        return 0;
}

/* ---- `paddock-api import-skills --tenant NAME DIR` */

/* Appends the regular files under dir (relative names prefixed by rel) to
 * files, skipping SKILL.md at the top and dot files; bounded in count and size. */
static int collect_files(const char *dir, const char *rel, int depth, json_t *files, size_t *total,
                         struct err_detail *e) {
        if (depth > 4)
                return 0;
        struct dirent **ents = NULL;
        int n = scandir(dir, &ents, NULL, alphasort);
        if (n < 0)
                return err_set(e, -errno, "io", "%s: %s", dir, strerror(errno));
        int k = 0;
        for (int i = 0; i < n; i++) {
                const char *nm = ents[i]->d_name;
                if (k < 0 || nm[0] == '.' || (depth == 0 && !strcmp(nm, "SKILL.md")))
                        continue;
                char path[4096], relp[1024];
                snprintf(path, sizeof path, "%s/%s", dir, nm);
                snprintf(relp, sizeof relp, "%s%s%s", rel, rel[0] ? "/" : "", nm);
                struct stat st;
                if (lstat(path, &st) < 0)
                        continue;
                if (S_ISDIR(st.st_mode)) {
                        k = collect_files(path, relp, depth + 1, files, total, e);
                        continue;
                }
                if (!S_ISREG(st.st_mode))
                        continue; /* no symlinks out of the folder */
                if (json_object_size(files) >= SKILL_FILES_MAX || *total + (size_t)st.st_size > SKILL_BYTES_MAX) {
                        k = err_set(e, -E2BIG, "too_large", "%s: a skill may hold at most %d files and %d bytes",
                                    path, SKILL_FILES_MAX, SKILL_BYTES_MAX);
                        continue;
                }
                FILE *f = fopen(path, "re");
                if (!f) {
                        k = err_set(e, -errno, "io", "%s: %s", path, strerror(errno));
                        continue;
                }
                char *buf = malloc((size_t)st.st_size + 1);
                size_t got = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
                fclose(f);
                if (buf) {
                        json_object_set_new(files, relp, json_stringn(buf, got));
                        *total += got;
                }
                free(buf);
        }
        for (int i = 0; i < n; i++)
                free(ents[i]);
        free(ents);
        return k;
}

/* SKILL.md: "---" line, "key: value" lines (name, description), "---" line,
 * then the instructions. */
static int parse_skill_md(const char *text, char **name, char **desc, const char **instructions,
                          struct err_detail *e) {
        if (strncmp(text, "---\n", 4))
                return err_set(e, -EINVAL, "invalid_field", "SKILL.md must start with a \"---\" front matter line");
        const char *s = text + 4;
        for (;;) {
                const char *nl = strchr(s, '\n');
                if (!nl)
                        return err_set(e, -EINVAL, "invalid_field", "SKILL.md: front matter is not closed by \"---\"");
                size_t len = (size_t)(nl - s);
                if (len == 3 && !strncmp(s, "---", 3)) {
                        *instructions = nl + 1;
                        break;
                }
                const char *colon = memchr(s, ':', len);
                if (colon) {
                        const char *v = colon + 1;
                        while (v < nl && *v == ' ')
                                v++;
                        size_t vl = (size_t)(nl - v);
                        while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\r'))
                                vl--;
                        if (vl >= 2 && (v[0] == '"' || v[0] == '\'') && v[vl - 1] == v[0])
                                v++, vl -= 2;
                        size_t kl = (size_t)(colon - s);
                        if (kl == 4 && !strncmp(s, "name", 4)) {
                                free(*name);
                                *name = strndup(v, vl);
                        } else if (kl == 11 && !strncmp(s, "description", 11)) {
                                free(*desc);
                                *desc = strndup(v, vl);
                        }
                }
                s = nl + 1;
        }
        if (!*name || !catalog_name_ok(*name))
                return err_set(e, -EINVAL, "invalid_field", "SKILL.md: name: must be 1 to %d characters of A-Z a-z 0-9 . _ -",
                               CATALOG_NAME_MAX);
        return 0;
}

static char *read_text(const char *path, size_t max, struct err_detail *e) {
        FILE *f = fopen(path, "re");
        if (!f) {
                err_set(e, -errno, "io", "%s: %s", path, strerror(errno));
                return NULL;
        }
        char *buf = malloc(max + 1);
        size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
        fclose(f);
        if (!buf || n > max) {
                free(buf);
                err_set(e, -E2BIG, "too_large", "%s is larger than %zu bytes", path, max);
                return NULL;
        }
        buf[n] = '\0';
        return buf;
}

/* Imports one skill directory; prints what happened. */
static int import_one(struct api *a, struct db *d, const char *tenant_id, const char *dir, struct err_detail *e) {
        char md[4200];
        snprintf(md, sizeof md, "%s/SKILL.md", dir);
        _cleanup_free_ char *text = read_text(md, SKILL_BYTES_MAX, e);
        if (!text)
                return e->errnum ? e->errnum : -EIO;
        _cleanup_free_ char *name = NULL, *desc = NULL;
        const char *instructions = NULL;
        int k = parse_skill_md(text, &name, &desc, &instructions, e);
        if (k < 0)
                return k;
        _cleanup_json_ json_t *files = json_object();
        size_t total = strlen(instructions);
        if ((k = collect_files(dir, "", 0, files, &total, e)) < 0)
                return k;
        _cleanup_json_ json_t *body = json_pack("{s:s, s:s, s:O}", "description", desc ? desc : "", "instructions",
                                                instructions, "files", files);
        if (!body)
                return err_set(e, -EINVAL, "invalid_field", "%s: not valid UTF-8", md);
        if ((k = catalog_validate_body(NULL, "skills", body, e)) < 0)
                return k;
        _cleanup_free_ char *bodys = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
        char id[UUID_STR_LEN];
        if (!bodys || id_new_uuid(id) < 0)
                return -ENOMEM;
        /* idempotent by name: unchanged stays (and stays approved), a change
         * is stored as a draft that needs approval again */
        _cleanup_pgres_ PGresult *res = NULL;
        const char *params[] = {id, tenant_id, name, bodys};
        if ((k = db_begin(d, e)) < 0)
                return k;
        k = pg_exec(d->conn,
                    "INSERT INTO api.catalog_items AS c (id, tenant_id, kind, name, body, created_by) "
                    "VALUES ($1, $2, 'skills', $3, $4::jsonb, 'import') "
                    "ON CONFLICT (tenant_id, kind, name) DO UPDATE SET body = EXCLUDED.body, state = 'draft', "
                    "approved_by = NULL, approved_at = NULL, updated_at = now() WHERE c.body <> EXCLUDED.body "
                    "RETURNING (xmax = 0), id::text",
                    4, params, &res, e);
        bool changed = k >= 0 && PQntuples(res) == 1;
        const char *action = changed && PQgetvalue(res, 0, 0)[0] == 't' ? "catalog.create" : "catalog.update";
        /* audited like a write through the api, before it commits */
        _cleanup_json_ json_t *change = json_pack("{s:s, s:s, s:s}", "kind", "skills", "name", name, "body", bodys);
        if (k >= 0 && changed)
                k = api_audit_operator(a, d, tenant_id, action, "catalog_item", PQgetvalue(res, 0, 1), change, e);
        if (k < 0 || (k = db_commit(d, e)) < 0) {
                db_rollback(d);
                return k;
        }
        if (!changed)
                printf("unchanged %s\n", name);
        else
                printf("%s %s %s\n", PQgetvalue(res, 0, 0)[0] == 't' ? "created" : "updated", name,
                       PQgetvalue(res, 0, 1));
        return 0;
}

int catalog_import_skills_main(struct api *a, int argc, char **argv) {
        const char *tenant = NULL;
        static const struct option opts[] = {{"tenant", required_argument, NULL, 't'}, {NULL, 0, NULL, 0}};
        int c;
        optind = 1;
        while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                if (c == 't')
                        tenant = optarg;
                else
                        return 64;
        }
        if (!tenant || optind != argc - 1) {
                fprintf(stderr, "usage: paddock-api import-skills --tenant NAME DIR\n"
                                "  imports DIR/*/SKILL.md as draft skills of the tenant (by name: changed ones are updated)\n");
                return 64;
        }
        const char *root = argv[optind];
        if (api_migrate(a, 30) < 0)
                return 1;
        struct err_detail e = {0};
        _cleanup_db_ struct db d = {0};
        if (db_open(&d, a, NULL, &e) < 0) {
                log_error("could not connect to postgresql: %s", e.message);
                return 1;
        }
        char tenant_id[UUID_STR_LEN];
        int k = auth_tenant_id_by_name(&d, tenant, tenant_id, &e);
        if (k == -ENOENT) {
                fprintf(stderr, "paddock-api: no tenant named \"%s\"\n", tenant);
                return 1;
        }
        if (k < 0 || (k = db_set_tenant(&d, tenant_id, &e)) < 0) {
                log_error("could not look up tenant: %s", e.message);
                return 1;
        }
        struct dirent **ents = NULL;
        int n = scandir(root, &ents, NULL, alphasort);
        if (n < 0) {
                fprintf(stderr, "paddock-api: %s: %s\n", root, strerror(errno));
                return 1;
        }
        int rc = 0, found = 0;
        for (int i = 0; i < n; i++) {
                char dir[4096], md[4200];
                snprintf(dir, sizeof dir, "%s/%s", root, ents[i]->d_name);
                snprintf(md, sizeof md, "%s/SKILL.md", dir);
                struct stat st;
                if (ents[i]->d_name[0] != '.' && stat(md, &st) == 0 && S_ISREG(st.st_mode)) {
                        found++;
                        struct err_detail ie = {0};
                        if (import_one(a, &d, tenant_id, dir, &ie) < 0) {
                                fprintf(stderr, "paddock-api: %s: %s\n", dir, ie.message[0] ? ie.message : "failed");
                                rc = 1;
                        }
                }
                free(ents[i]);
        }
        free(ents);
        if (!found) {
                fprintf(stderr, "paddock-api: no */SKILL.md under %s\n", root);
                rc = 1;
        }
        return rc;
}
