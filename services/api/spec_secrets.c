/* The secrets and identity parts of a sandbox spec (spec_validate.h):
 * spec.secrets and their destinations (CONTRACTS.md "Secret destinations"),
 * spec.identity (CONTRACTS.md "Workload identity"). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "core/domain.h"
#include "net/addr_policy.h"
#include "net/host_match.h"

#define SECRETS_MAX 64
#define ENV_NAME_MAX 128
#define HEADER_NAME_MAX 128
#define IDENTITY_MAX 8
#define AUDIENCE_MAX 256
#define IDENTITY_FILE_MAX 64

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
        return domain_name_in(reserved, up) || !strncmp(up, "LD_", 3) || !strncmp(up, "PADDOCK_", 8);
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
        return !domain_name_in(framing, low);
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
                if (!catalog_clean_string(h) || host_rule_parse(json_string_value(h), &hr, &he) < 0 || hr.wildcard ||
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
        if (!catalog_clean_string(o))
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
        if (!catalog_clean_string(env) || !env_name_ok(json_string_value(env)))
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
        if (!catalog_clean_string(name) || !header_name_ok(json_string_value(name)))
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

int spec_validate_secrets(struct api_req *r, json_t *secrets) {
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
                if (!catalog_clean_string(name) || !spec_secret_name_ok(json_string_value(name)))
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
        if (!catalog_clean_string(v) || json_string_length(v) == 0 || json_string_length(v) > IDENTITY_FILE_MAX)
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
int spec_validate_identity(struct api_req *r, json_t *ids, json_t *secrets) {
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
                bool aud_ok = catalog_clean_string(aud) && json_string_length(aud) > 0 && json_string_length(aud) <= AUDIENCE_MAX;
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
