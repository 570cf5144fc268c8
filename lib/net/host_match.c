/* Egress host rules: parse, normalise, match. */
#include "net/host_match.h"
#include "net/addr_policy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ERR_CODE "host_rule"

/* Validates an ASCII host name and writes it lower-cased without the trailing
 * dot into out[HOST_RULE_NAME_MAX + 1]. On failure *reason says why (static). */
static int normalize_name(const char *s, size_t len, char *out, const char **reason, char *badc) {
        if (len > 0 && s[len - 1] == '.')
                len--;
        if (len == 0) {
                *reason = "empty host name";
                return -EINVAL;
        }
        if (len > HOST_RULE_NAME_MAX) {
                *reason = "host name longer than 253 characters";
                return -EINVAL;
        }
        size_t label_start = 0;
        for (size_t i = 0; i <= len; i++) {
                if (i < len && s[i] != '.') {
                        unsigned char c = (unsigned char)s[i];
                        if (c >= 0x80) {
                                *reason = "non-ASCII host name: write internationalised names in punycode (xn--...)";
                                return -EINVAL;
                        }
                        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                              (c >= '0' && c <= '9') || c == '-' || c == '_')) {
                                *reason = "invalid character in host name";
                                *badc = (char)c;
                                return -EINVAL;
                        }
                        out[i] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
                        continue;
                }
                size_t l = i - label_start;
                if (l == 0) {
                        *reason = "empty label in host name";
                        return -EINVAL;
                }
                if (l > 63) {
                        *reason = "label longer than 63 characters";
                        return -EINVAL;
                }
                if (s[label_start] == '-' || s[i - 1] == '-') {
                        *reason = "label starts or ends with '-'";
                        return -EINVAL;
                }
                if (i < len)
                        out[i] = '.';
                label_start = i + 1;
        }
        out[len] = 0;
        return 0;
}

static int parse_port(const char *p, uint16_t *ret) {
        size_t n = strlen(p);
        if (n == 0 || n > 5 || strspn(p, "0123456789") != n || p[0] == '0')
                return -EINVAL;
        unsigned long v = strtoul(p, NULL, 10);
        if (v < 1 || v > 65535)
                return -EINVAL;
        *ret = (uint16_t)v;
        return 0;
}

int host_rule_parse(const char *s, struct host_rule *ret, struct err_detail *reterr) {
        struct host_rule r = {};
        const char *reason = NULL;
        char badc = 0;

        if (!s || !*s)
                return err_set(reterr, -EINVAL, ERR_CODE, "empty egress host rule");
        if (!ret)
                return err_set(reterr, -EINVAL, ERR_CODE, "no result given");

        size_t len = strnlen(s, HOST_RULE_NAME_MAX + 16);
        if (len > HOST_RULE_NAME_MAX + 8)
                return err_set(reterr, -EINVAL, ERR_CODE, "egress host rule longer than %d characters",
                               HOST_RULE_NAME_MAX + 8);

        const char *colon = strchr(s, ':');
        if (s[0] == '[' || (colon && strchr(colon + 1, ':')))
                return err_set(reterr, -EINVAL, ERR_CODE,
                               "egress host rule is an IP literal: allow addresses with an IP/CIDR rule");
        if (colon) {
                if (parse_port(colon + 1, &r.port) < 0)
                        return err_set(reterr, -EINVAL, ERR_CODE,
                                       "egress host rule has an invalid port: must be 1-65535");
                len = (size_t)(colon - s);
        }

        const char *name = s;
        if (len >= 2 && s[0] == '*' && s[1] == '.') {
                r.wildcard = true;
                name += 2, len -= 2;
        }
        if (memchr(name, '*', len))
                return err_set(reterr, -EINVAL, ERR_CODE,
                               "wildcard '*' is only allowed as the whole first label, as in '*.example.com'");

        if (normalize_name(name, len, r.name, &reason, &badc) < 0) {
                if (badc > 0x20 && badc < 0x7f)
                        return err_set(reterr, -EINVAL, ERR_CODE, "egress host rule: %s: '%c'", reason, badc);
                if (badc)
                        return err_set(reterr, -EINVAL, ERR_CODE, "egress host rule: %s: byte 0x%02x",
                                       reason, (unsigned char)badc);
                return err_set(reterr, -EINVAL, ERR_CODE, "egress host rule: %s", reason);
        }
        if (r.wildcard && !strchr(r.name, '.'))
                return err_set(reterr, -EINVAL, ERR_CODE,
                               "wildcard over a single label ('*.%s') is too broad", r.name);

        struct sockaddr_storage ss;
        int k = addr_parse_host_literal(r.name, &ss);
        if (k > 0)
                return err_set(reterr, -EINVAL, ERR_CODE,
                               "egress host rule is an IP literal: allow addresses with an IP/CIDR rule");
        if (k < 0)
                return err_set(reterr, -EINVAL, ERR_CODE,
                               "egress host rule ends in a numeric label: neither a name nor an IP address");

        *ret = r;
        return 0;
}

bool host_rule_matches(const struct host_rule *r, const char *host, int port) {
        char name[HOST_RULE_NAME_MAX + 1];
        const char *reason;
        char badc;

        if (!r || !host)
                return false;
        if (r->port ? port != r->port : (port != 80 && port != 443))
                return false;
        size_t len = strnlen(host, HOST_RULE_NAME_MAX + 2);
        if (len > HOST_RULE_NAME_MAX + 1 || normalize_name(host, len, name, &reason, &badc) < 0)
                return false;

        if (!r->wildcard)
                return strcmp(name, r->name) == 0;

        /* "*.example.com": at least one whole label before ".example.com". */
        size_t n = strlen(name), rn = strlen(r->name);
        return n > rn + 1 && name[n - rn - 1] == '.' && strcmp(name + n - rn, r->name) == 0;
}
