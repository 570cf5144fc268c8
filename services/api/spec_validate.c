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
 * first of them, so a client never believes a setting took effect. */
#include <errno.h>
#include <openssl/sha.h>
#include <string.h>

#include "api.h"
#include "net/addr_policy.h"
#include "net/host_match.h"
#include "policy/policy_engine.h"

#define CMD_MAX_ITEMS 256
#define CMD_MAX_ITEM 4096
#define FILES_MAX 256
#define FILE_PATH_MAX 1024
#define FILES_CONTENT_MAX (1024 * 1024)
#define TIMEOUT_MAX 86400

#define EGRESS_ALLOW_MAX 256
#define CATALOG_REFS_MAX 64
#define SECRETS_MAX 64
#define ENV_NAME_MAX 128
#define HEADER_NAME_MAX 128
#define IDENTITY_MAX 8
#define AUDIENCE_MAX 256
#define IDENTITY_FILE_MAX 64

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
                return api_errno(r, -EINVAL, "spec.agent must be an object");
        const char *key;
        json_t *v;
        json_object_foreach(agent, key, v) {
                if (!strcmp(key, "type") || !strcmp(key, "command"))
                        continue;
                if (!strcmp(key, "effort")) {
                        static const char *const efforts[] = {"low", "medium", "high", "xhigh", NULL};
                        if (!clean_string(v) || !in_list(efforts, json_string_value(v)))
                                return api_errno(r, -EINVAL, "spec.agent.effort must be one of \"low\", \"medium\", \"high\", "
                                                "\"xhigh\"");
                        continue;
                }
                if (!strcmp(key, "model")) {
                        size_t n = json_string_length(v);
                        if (!clean_string(v) || n == 0 || n > MODEL_MAX ||
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
                if (!clean_string(v) || json_string_length(v) == 0 || json_string_length(v) > CMD_MAX_ITEM)
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
                if (!clean_string(path) || !path_ok(json_string_value(path), json_string_length(path)))
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

/* "N" with 1 <= N <= 65535, digits only (no sign, no spaces). */
static int parse_port(const char *s, uint32_t *ret) {
        size_t n = strlen(s);
        if (n == 0 || n > 5 || strspn(s, "0123456789") != n || s[0] == '0')
                return -EINVAL;
        unsigned long p = strtoul(s, NULL, 10);
        if (p > 65535)
                return -EINVAL;
        *ret = (uint32_t)p;
        return 0;
}

int spec_egress_rule_parse(const char *s, char *host, size_t size, uint32_t *ret_port, bool *ret_ip,
                           struct err_detail *e) {
        char buf[HOST_RULE_NAME_MAX + 16];
        uint32_t port = 0;
        size_t n = strlen(s);
        if (n == 0 || n >= sizeof buf)
                return err_set(e, -EINVAL, "egress", "must be 1 to %zu characters", sizeof buf - 1);
        memcpy(buf, s, n + 1);
        char *addr = NULL;
        if (buf[0] == '[') {
                /* IPv6 (optionally /len) with a port must be bracketed: "[::1]:8080" */
                char *close = strchr(buf, ']');
                if (!close)
                        return err_set(e, -EINVAL, "egress", "missing \"]\" after an IPv6 address");
                *close = '\0';
                if (close[1] == ':') {
                        if (parse_port(close + 2, &port) < 0)
                                return err_set(e, -EINVAL, "egress", "port must be 1-65535");
                } else if (close[1])
                        return err_set(e, -EINVAL, "egress", "only \":port\" may follow \"]\"");
                addr = buf + 1;
                if (!strchr(addr, ':'))
                        return err_set(e, -EINVAL, "egress", "brackets are only for IPv6 addresses");
        } else if (strchr(buf, ':') && strchr(buf, ':') != strrchr(buf, ':')) {
                addr = buf; /* bare IPv6: every ':' belongs to the address, no port */
        } else {
                char *colon = strchr(buf, ':');
                if (colon) {
                        *colon = '\0';
                        if (parse_port(colon + 1, &port) < 0)
                                return err_set(e, -EINVAL, "egress", "port must be 1-65535");
                }
                /* a CIDR or a dotted quad is an IP rule; any other IP spelling
                 * ("127.1", "0x7f.1") is refused by host_rule_parse below */
                if (strchr(buf, '/') || strspn(buf, "0123456789.") == strlen(buf))
                        addr = buf;
        }
        if (addr) {
                struct addr_allow a;
                if (addr_allow_parse(addr, &a) < 0)
                        return err_set(e, -EINVAL, "egress",
                                       "not a valid IP address or CIDR (canonical form, no host bits beyond "
                                       "the prefix, prefix length >= 1)");
                if (strlen(addr) + 1 > size)
                        return err_set(e, -EINVAL, "egress", "too long");
                snprintf(host, size, "%s", addr);
                *ret_port = port;
                *ret_ip = true;
                return 0;
        }
        struct host_rule hr;
        struct err_detail he = {0};
        /* host_rule_parse sees the original text (with its port) */
        if (host_rule_parse(s, &hr, &he) < 0)
                return err_set(e, -EINVAL, "egress", "%s", he.message[0] ? he.message : "not a valid host rule");
        if (strlen(hr.name) + 3 > size)
                return err_set(e, -EINVAL, "egress", "too long");
        snprintf(host, size, "%s%s", hr.wildcard ? "*." : "", hr.name);
        *ret_port = hr.port;
        *ret_ip = false;
        return 0;
}

int spec_egress_rule_reach(struct addr_floor *floor, const char *host, bool ip, bool inline_rule,
                           struct err_detail *e) {
        char why[96];
        const char *what;
        if (!ip) {
                if (addr_name_is_local(host, &what))
                        return err_set(e, -EINVAL, "egress",
                                       "%s names this node or a metadata service (%s): the platform egress floor "
                                       "refuses it", host, what);
                return 0;
        }
        struct addr_allow a;
        if (addr_allow_parse(host, &a) < 0)
                return err_set(e, -EINVAL, "egress", "not a valid IP address or CIDR");
        if (addr_floor_covers(floor, &a, why, sizeof why))
                return err_set(e, -EINVAL, "egress",
                               "%s is inside the platform egress floor (%s), which no rule can open", host, why);
        enum addr_class c;
        if (inline_rule && !addr_allow_is_public(&a, &c))
                return err_set(e, -EINVAL, "egress",
                               "%s is not public (%s): an inline rule may name public addresses only; a "
                               "non-public range needs an approved catalog egress profile", host, addr_class_name(c));
        return 0;
}

/* An array of catalog references (ids or names); whether they exist and
 * are approved is checked by policy_resolve(). */
static int validate_refs(struct api_req *r, json_t *refs, const char *field) {
        if (!json_is_array(refs) || json_array_size(refs) > CATALOG_REFS_MAX)
                return api_errno(r, -EINVAL, "%s must be an array of at most %d catalog ids", field,
                                CATALOG_REFS_MAX);
        size_t i;
        json_t *v;
        json_array_foreach(refs, i, v) {
                if (!clean_string(v) || json_string_length(v) == 0 || json_string_length(v) > 128)
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
        if (!clean_string(t) || json_string_length(t) == 0 || json_string_length(t) > 128)
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

static int validate_egress(struct api_req *r, json_t *egress) {
        int k;
        if (!json_is_object(egress))
                return api_errno(r, -EINVAL, "spec.egress must be an object");
        const char *key;
        json_t *v;
        json_object_foreach(egress, key, v) {
                if (!strcmp(key, "allow") || !strcmp(key, "unknown"))
                        continue;
                if (!strcmp(key, "profiles"))
                        continue;
                return api_fail(r, -EINVAL, "unknown_field", "spec.egress.%s is not a known field", key);
        }
        json_t *allow = json_object_get(egress, "allow");
        if (allow) {
                if (!json_is_array(allow) || json_array_size(allow) > EGRESS_ALLOW_MAX)
                        return api_errno(r, -EINVAL, "spec.egress.allow must be an array of at most %d rules", EGRESS_ALLOW_MAX);
                size_t i;
                json_array_foreach(allow, i, v) {
                        if (!clean_string(v))
                                return api_errno(r, -EINVAL, "spec.egress.allow[%zu] must be a string \"host[:port]\" or "
                                                "\"IP[/len]\" (\"[IPv6]:port\" with a port)", i);
                        char host[HOST_RULE_NAME_MAX + 8];
                        uint32_t port;
                        bool ip;
                        struct err_detail e = {0};
                        if (spec_egress_rule_parse(json_string_value(v), host, sizeof host, &port, &ip, &e) < 0 ||
                            spec_egress_rule_reach(r->api->floor, host, ip, true, &e) < 0)
                                return api_errno(r, -EINVAL, "spec.egress.allow[%zu]: %s", i,
                                                e.message);
                }
        }
        json_t *profiles = json_object_get(egress, "profiles");
        if (profiles && (k = validate_refs(r, profiles, "spec.egress.profiles")) < 0)
                return k;
        json_t *unknown = json_object_get(egress, "unknown");
        if (unknown && (!json_is_string(unknown) || (strcmp(json_string_value(unknown), "deny") &&
                                                     strcmp(json_string_value(unknown), "ask"))))
                return api_errno(r, -EINVAL, "spec.egress.unknown must be \"deny\" or \"ask\"");
        return 0;
}

bool spec_secret_name_ok(const char *s) {
        size_t n = strlen(s);
        return n >= 1 && n <= 64 && !(s[0] >= '0' && s[0] <= '9') &&
               strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == n;
}

/* Environment variables the platform sets or the dynamic loader reads: a
 * secret must not redirect the proxy or inject code. */
static bool env_name_reserved(const char *s) {
        static const char *const reserved[] = {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "PATH",
                                               "HOME", NULL};
        char up[ENV_NAME_MAX + 1];
        size_t i = 0;
        for (; s[i] && i < ENV_NAME_MAX; i++)
                up[i] = (char)((s[i] >= 'a' && s[i] <= 'z') ? s[i] - 32 : s[i]);
        up[i] = '\0';
        return in_list(reserved, up) || !strncmp(up, "LD_", 3) || !strncmp(up, "PADDOCK_", 8);
}

static bool env_name_ok(const char *s) {
        size_t n = strlen(s);
        return n >= 1 && n <= ENV_NAME_MAX && !(s[0] >= '0' && s[0] <= '9') &&
               strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") == n;
}

/* RFC 9110 token, minus the headers that frame the message or address the
 * proxy itself (the proxy owns those). */
static bool header_name_ok(const char *s) {
        static const char *const framing[] = {"host", "content-length", "transfer-encoding", "connection",
                                              "upgrade", "te", "trailer", "keep-alive", "proxy-connection",
                                              "proxy-authorization", "proxy-authenticate", NULL};
        size_t n = strlen(s);
        if (n == 0 || n > HEADER_NAME_MAX ||
            strspn(s, "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") != n)
                return false;
        char low[HEADER_NAME_MAX + 1];
        for (size_t i = 0; i <= n; i++)
                low[i] = (char)((s[i] >= 'A' && s[i] <= 'Z') ? s[i] + 32 : s[i]);
        return !in_list(framing, low);
}

bool spec_header_name_ok(const char *s) {
        return header_name_ok(s);
}

int spec_header_origin(json_t *hdr, char *host, size_t size, uint16_t *ret_port, struct err_detail *e) {
        json_t *o = json_object_get(hdr, "origin"), *h = json_object_get(hdr, "host");
        if (o && h)
                return err_set(e, -EINVAL, "origin", "give origin or host, not both");
        if (h) {
                /* the older form: a host name, meaning https://host:443 */
                struct host_rule hr;
                struct err_detail he = {0};
                if (!clean_string(h) || host_rule_parse(json_string_value(h), &hr, &he) < 0 || hr.wildcard ||
                    hr.port != 0)
                        return err_set(e, -EINVAL, "host", "must be a host name (no wildcard, no port, no IP literal)%s%s",
                                       he.message[0] ? ": " : "", he.message);
                if (strlen(hr.name) + 1 > size)
                        return err_set(e, -EINVAL, "host", "too long");
                snprintf(host, size, "%s", hr.name);
                *ret_port = 443;
                return 0;
        }
        if (!o)
                return err_set(e, -EINVAL, "origin", "is required");
        if (!clean_string(o))
                return err_set(e, -EINVAL, "origin", "must be a string \"https://host[:port]\"");
        const char *s = json_string_value(o);
        if (strncasecmp(s, "https://", 8))
                return err_set(e, -EINVAL, "origin",
                               "must start with https:// (the proxy sends a header secret only over TLS it verifies)");
        char auth[HOST_RULE_NAME_MAX + 16];
        size_t n = strlen(s + 8);
        if (n && s[8 + n - 1] == '/')
                n--; /* "https://host/" is the same origin */
        if (n == 0 || n >= sizeof auth)
                return err_set(e, -EINVAL, "origin", "must name a host of at most %d characters", HOST_RULE_NAME_MAX);
        memcpy(auth, s + 8, n);
        auth[n] = '\0';
        if (strpbrk(auth, "/?#@\\"))
                return err_set(e, -EINVAL, "origin", "must be https://host[:port], without user, path, query or fragment");
        if (auth[0] != '[' && strchr(auth, ':') != strrchr(auth, ':'))
                return err_set(e, -EINVAL, "origin", "an IPv6 address must be in brackets: https://[v6]:port");
        uint32_t port = 0;
        bool ip = false;
        struct err_detail pe = {0};
        if (spec_egress_rule_parse(auth, host, size, &port, &ip, &pe) < 0)
                return err_set(e, -EINVAL, "origin", "invalid host or port: %s", pe.message);
        if (host[0] == '*' || strchr(host, '/'))
                return err_set(e, -EINVAL, "origin", "must name one host (no wildcard, no CIDR)");
        *ret_port = port ? (uint16_t)port : 443;
        return 0;
}

/* The env destination of a secret or identity token (at names its "as",
 * e.g. "spec.secrets[0].as"). */
static int validate_dest_env(struct api_req *r, const char *at, json_t *env) {
        if (!clean_string(env) || !env_name_ok(json_string_value(env)))
                return api_errno(r, -EINVAL, "%s.env must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*, at most %d "
                                "characters)", at, ENV_NAME_MAX);
        if (env_name_reserved(json_string_value(env)))
                return api_errno(r, -EINVAL, "%s.env: %s is reserved by the platform", at,
                                json_string_value(env));
        return 0;
}

/* The header destination of a secret or identity token: an https origin the
 * proxy adds it for, and a header name it may add. */
static int validate_dest_header(struct api_req *r, const char *at, json_t *hdr) {
        if (!json_is_object(hdr))
                return api_errno(r, -EINVAL, "%s.header must be an object", at);
        const char *key;
        json_t *v;
        json_object_foreach(hdr, key, v) {
                if (strcmp(key, "origin") && strcmp(key, "host") && strcmp(key, "name"))
                        return api_fail(r, -EINVAL, "unknown_field", "%s.header.%s is not a known field", at, key);
        }
        json_t *name = json_object_get(hdr, "name");
        if (!json_object_get(hdr, "origin") && !json_object_get(hdr, "host"))
                return api_fail(r, -EINVAL, "missing_field", "%s.header.origin is required", at);
        if (!name)
                return api_fail(r, -EINVAL, "missing_field", "%s.header.name is required", at);
        char host[HOST_RULE_NAME_MAX + 1];
        uint16_t port;
        struct err_detail oe = {0};
        if (spec_header_origin(hdr, host, sizeof host, &port, &oe) < 0)
                return api_errno(r, -EINVAL, "%s.header.%s %s", at, oe.code, oe.message);
        if (!clean_string(name) || !header_name_ok(json_string_value(name)))
                return api_errno(r, -EINVAL, "%s.header.name must be an HTTP header name (token, at most %d characters, not a "
                                "framing or proxy header)", at, HEADER_NAME_MAX);
        return 0;
}

/* Two destinations given as {"header": {...}} are the same origin and header
 * name, however spelled (host form, port 443 or none). */
static bool same_header(json_t *hdr, json_t *phdr) {
        char h1[HOST_RULE_NAME_MAX + 1], h2[HOST_RULE_NAME_MAX + 1];
        uint16_t p1 = 0, p2 = 0;
        return hdr && phdr && spec_header_origin(hdr, h1, sizeof h1, &p1, NULL) == 0 &&
               spec_header_origin(phdr, h2, sizeof h2, &p2, NULL) == 0 && p1 == p2 && !strcasecmp(h1, h2) &&
               !strcasecmp(json_string_value(json_object_get(hdr, "name")),
                           json_string_value(json_object_get(phdr, "name")));
}

static int validate_secret_as(struct api_req *r, size_t i, json_t *as) {
        if (!json_is_object(as) || json_object_size(as) != 1)
                return api_errno(r, -EINVAL, "spec.secrets[%zu].as must be {\"env\": VAR} or {\"header\": {\"origin\", \"name\"}}", i);
        char at[64];
        snprintf(at, sizeof at, "spec.secrets[%zu].as", i);
        json_t *env = json_object_get(as, "env"), *hdr = json_object_get(as, "header");
        if (env)
                return validate_dest_env(r, at, env);
        if (!hdr) {
                const char *key = json_object_iter_key(json_object_iter(as));
                return api_fail(r, -EINVAL, "unknown_field", "spec.secrets[%zu].as.%s is not a known field", i, key);
        }
        return validate_dest_header(r, at, hdr);
}

static int validate_secrets(struct api_req *r, json_t *secrets) {
        if (!json_is_array(secrets) || json_array_size(secrets) > SECRETS_MAX)
                return api_errno(r, -EINVAL, "spec.secrets must be an array of at most %d entries",
                                SECRETS_MAX);
        size_t i;
        json_t *s;
        json_array_foreach(secrets, i, s) {
                if (!json_is_object(s))
                        return api_errno(r, -EINVAL, "spec.secrets[%zu] must be an object", i);
                const char *key;
                json_t *v;
                json_object_foreach(s, key, v) {
                        if (strcmp(key, "name") && strcmp(key, "as"))
                                return api_fail(r, -EINVAL, "unknown_field", "spec.secrets[%zu].%s is not a known field",
                                                i, key);
                }
                json_t *name = json_object_get(s, "name"), *as = json_object_get(s, "as");
                if (!name)
                        return api_fail(r, -EINVAL, "missing_field", "spec.secrets[%zu].name is required", i);
                if (!clean_string(name) || !spec_secret_name_ok(json_string_value(name)))
                        return api_errno(r, -EINVAL, "spec.secrets[%zu].name must match [A-Z_][A-Z0-9_]{0,63}", i);
                if (!as)
                        return api_fail(r, -EINVAL, "missing_field", "spec.secrets[%zu].as is required", i);
                int k = validate_secret_as(r, i, as);
                if (k < 0)
                        return k;
                /* one destination gets one value: the same env variable, or the
                 * same header for the same host, twice is a mistake */
                json_t *env = json_object_get(as, "env"), *hdr = json_object_get(as, "header");
                for (size_t j = 0; j < i; j++) {
                        json_t *pas = json_object_get(json_array_get(secrets, j), "as");
                        json_t *penv = json_object_get(pas, "env"), *phdr = json_object_get(pas, "header");
                        bool dup = false;
                        if (env && penv)
                                dup = !strcmp(json_string_value(env), json_string_value(penv));
                        else if (hdr && phdr)
                                dup = same_header(hdr, phdr); /* the same origin however spelled */
                        if (dup)
                                return api_errno(r, -EINVAL, "spec.secrets[%zu].as repeats the destination of spec.secrets[%zu]", i, j);
                }
        }
        return 0;
}

/* A file name under /paddock/identity: [A-Za-z0-9._-], not "." or "..". */
static bool identity_file_ok(json_t *v) {
        if (!clean_string(v) || json_string_length(v) == 0 || json_string_length(v) > IDENTITY_FILE_MAX)
                return false;
        const char *s = json_string_value(v);
        if (!strcmp(s, ".") || !strcmp(s, ".."))
                return false;
        return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == strlen(s);
}

/* spec.identity (docs/CONTRACTS.md "Workload identity"): a token per
 * audience, delivered like a secret: {"env": VAR}, {"file": NAME} (read-only
 * /paddock/identity/NAME) or {"header": {"host"|"origin", "name"}} (added by
 * the proxy, https origins only, as header secrets). A destination is given
 * once across spec.secrets and spec.identity. */
static int validate_identity(struct api_req *r, json_t *ids, json_t *secrets) {
        if (!json_is_array(ids) || json_array_size(ids) > IDENTITY_MAX)
                return api_errno(r, -EINVAL, "spec.identity must be an array of at most %d entries",
                                IDENTITY_MAX);
        size_t i;
        json_t *it;
        json_array_foreach(ids, i, it) {
                if (!json_is_object(it))
                        return api_errno(r, -EINVAL, "spec.identity[%zu] must be an object", i);
                const char *key;
                json_t *v;
                json_object_foreach(it, key, v) {
                        if (strcmp(key, "audience") && strcmp(key, "as"))
                                return api_fail(r, -EINVAL, "unknown_field", "spec.identity[%zu].%s is not a known field",
                                                i, key);
                }
                json_t *aud = json_object_get(it, "audience"), *as = json_object_get(it, "as");
                if (!aud)
                        return api_fail(r, -EINVAL, "missing_field", "spec.identity[%zu].audience is required", i);
                bool aud_ok = clean_string(aud) && json_string_length(aud) > 0 && json_string_length(aud) <= AUDIENCE_MAX;
                for (const char *c = aud_ok ? json_string_value(aud) : ""; *c; c++)
                        aud_ok &= (unsigned char)*c > 0x20 && *c != 0x7f;
                if (!aud_ok)
                        return api_errno(r, -EINVAL, "spec.identity[%zu].audience must be 1-%d printable characters without spaces", i,
                                        AUDIENCE_MAX);
                if (!as)
                        return api_fail(r, -EINVAL, "missing_field", "spec.identity[%zu].as is required", i);
                if (!json_is_object(as) || json_object_size(as) != 1)
                        return api_errno(r, -EINVAL, "spec.identity[%zu].as must be {\"env\": VAR}, {\"file\": NAME} or "
                                        "{\"header\": {\"host\", \"name\"}}", i);
                json_t *env = json_object_get(as, "env"), *file = json_object_get(as, "file"),
                       *hdr = json_object_get(as, "header");
                char at[64];
                snprintf(at, sizeof at, "spec.identity[%zu].as", i);
                int k = 0;
                if (env) {
                        k = validate_dest_env(r, at, env);
                } else if (file) {
                        if (!identity_file_ok(file))
                                return api_errno(r, -EINVAL, "spec.identity[%zu].as.file must be a file name of 1-%d characters "
                                                "[A-Za-z0-9._-], not . or ..", i, IDENTITY_FILE_MAX);
                } else if (hdr) {
                        k = validate_dest_header(r, at, hdr);
                } else {
                        key = json_object_iter_key(json_object_iter(as));
                        return api_fail(r, -EINVAL, "unknown_field", "spec.identity[%zu].as.%s is not a known field", i,
                                        key);
                }
                if (k < 0)
                        return k;
                /* one destination, one value: across identity and secrets */
                for (size_t j = 0; j < i + json_array_size(secrets); j++) {
                        json_t *pas = json_object_get(j < i ? json_array_get(ids, j) : json_array_get(secrets, j - i), "as");
                        json_t *penv = json_object_get(pas, "env"), *pfile = json_object_get(pas, "file");
                        bool dup = (env && json_is_string(penv) && !strcmp(json_string_value(env), json_string_value(penv))) ||
                                   (file && json_is_string(pfile) && !strcmp(json_string_value(file), json_string_value(pfile))) ||
                                   (hdr && same_header(hdr, json_object_get(pas, "header")));
                        if (dup && j < i)
                                return api_errno(r, -EINVAL, "spec.identity[%zu].as repeats the destination of spec.identity[%zu]", i, j);
                        if (dup)
                                return api_errno(r, -EINVAL, "spec.identity[%zu].as repeats the destination of spec.secrets[%zu]", i,
                                                j - i);
                }
        }
        return 0;
}

/* A glob of policy rules and artifact paths: 1-GLOB_MAX bytes, no control
 * characters, brackets closed. relative: also a workspace path (no leading
 * "/", no "." or ".." component). */
static bool glob_ok(json_t *v, bool relative) {
        if (!clean_string(v) || json_string_length(v) == 0 || json_string_length(v) > GLOB_MAX)
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
        if ((v = json_object_get(policy, "packs")) && (k = validate_refs(r, v, "spec.policy.packs")) < 0)
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
                if (!in_list(spec_fields, key))
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
        if ((v = json_object_get(spec, "egress")) && (k = validate_egress(r, v)) < 0)
                return k;
        if ((v = json_object_get(spec, "secrets")) && (k = validate_secrets(r, v)) < 0)
                return k;
        if ((v = json_object_get(spec, "identity")) &&
            (k = validate_identity(r, v, json_object_get(spec, "secrets"))) < 0)
                return k;
        if ((v = json_object_get(spec, "image")) &&
            (!clean_string(v) || json_string_length(v) == 0 || json_string_length(v) > 128))
                return api_errno(r, -EINVAL, "spec.image must be a catalog image id or name");
        if ((v = json_object_get(spec, "prompt")) && (k = validate_prompt(r, v)) < 0)
                return k;
        if ((v = json_object_get(spec, "skills")) && (k = validate_refs(r, v, "spec.skills")) < 0)
                return k;
        if ((v = json_object_get(spec, "models")) && (k = validate_refs(r, v, "spec.models")) < 0)
                return k;
        if ((v = json_object_get(spec, "connectors"))) {
                if ((k = validate_refs(r, v, "spec.connectors")) < 0)
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
