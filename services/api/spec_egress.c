/* The egress part of a sandbox spec (spec_validate.h): spec.egress, and
 * the grammar and reach of one egress rule (CONTRACTS.md "Egress rules",
 * "The platform egress floor"). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "net/addr_policy.h"
#include "net/host_match.h"

#define EGRESS_ALLOW_MAX 256

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


int spec_validate_egress(struct api_req *r, json_t *egress) {
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
                        if (!catalog_clean_string(v))
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
        if (profiles && (k = spec_validate_refs(r, profiles, "spec.egress.profiles")) < 0)
                return k;
        json_t *unknown = json_object_get(egress, "unknown");
        if (unknown && (!json_is_string(unknown) || (strcmp(json_string_value(unknown), "deny") &&
                                                     strcmp(json_string_value(unknown), "ask"))))
                return api_errno(r, -EINVAL, "spec.egress.unknown must be \"deny\" or \"ask\"");
        return 0;
}
