#include "proxy_policy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "core/macro.h"

static struct addr_floor *process_floor;

void egress_policy_set_floor(struct addr_floor *floor) {
        process_floor = floor;
}

static bool port_matches(uint16_t rule_port, uint16_t port) {
        return rule_port ? rule_port == port : (port == 80 || port == 443);
}

static int compile_rule(const Paddock__V1__EgressRule *r, struct egress_rule *out, struct err_detail *reterr) {
        const char *host = r->host ? r->host : "";
        if (r->port > 65535)
                return err_set(reterr, -EINVAL, "egress", "rule \"%s\": port %u out of range", host, r->port);
        out->port = (uint16_t)r->port;
        /* an approved catalog item's rule may name a non-public range: an
         * egress profile's, or an http connector's origin (its url checked
         * like a profile's rules, api catalog.c); never an inline allow */
        out->from_catalog = r->source && (!strncmp(r->source, "profile:", 8) || !strncmp(r->source, "connector:", 10));
        if (strchr(host, ':'))
                snprintf(out->text, sizeof out->text, out->port ? "[%s]:%u" : "%s", host, out->port);
        else
                snprintf(out->text, sizeof out->text, out->port ? "%s:%u" : "%s", host, out->port);
        if (addr_allow_parse(host, &out->ip) == 0) {
                out->is_ip = true;
                return 0;
        }
        if (strchr(host, '/'))
                return err_set(reterr, -EINVAL, "egress", "rule \"%s\": invalid CIDR", host);
        char buf[HOST_RULE_NAME_MAX + 16];
        snprintf(buf, sizeof buf, out->port ? "%s:%u" : "%s", host, out->port);
        struct err_detail e = {0};
        if (host_rule_parse(buf, &out->host, &e) < 0)
                return err_set(reterr, -EINVAL, "egress", "rule \"%s\": %s", host, e.message);
        return 0;
}

int egress_policy_compile(const Paddock__V1__EgressPolicy *p, struct egress_policy **ret, struct err_detail *reterr) {
        _cleanup_free_ struct egress_policy *pol = calloc(1, sizeof *pol);
        if (!pol)
                return -ENOMEM;
        size_t n = p ? p->n_rules : 0;
        _cleanup_free_ struct egress_rule *rules = calloc(n + 1, sizeof *rules);
        if (!rules)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                int r = compile_rule(p->rules[i], &rules[i], reterr);
                if (r < 0)
                        return r;
        }
        if (p && p->unknown && p->unknown[0] && strcmp(p->unknown, "deny") && strcmp(p->unknown, "ask"))
                return err_set(reterr, -EINVAL, "egress", "unknown must be \"deny\" or \"ask\", not \"%s\"", p->unknown);
        pol->ask = p && p->unknown && !strcmp(p->unknown, "ask");
        pol->ask_timeout_s = p && p->ask_timeout_s ? p->ask_timeout_s : RUN_DEFAULT_ASK_TIMEOUT_S;
        pol->n_rules = n;
        pol->floor = process_floor;
        pol->rules = TAKE_PTR(rules);
        *ret = TAKE_PTR(pol);
        return 0;
}

struct egress_policy *egress_policy_free(struct egress_policy *p) {
        if (p) {
                free(p->rules);
                free(p);
        }
        return NULL;
}

/* True if rule r covers address a exactly (prefix match), independent of its class. */
static bool ip_rule_covers(const struct egress_rule *r, const struct sockaddr_storage *a) {
        const uint8_t *bytes;
        int fam;
        uint8_t mapped[4];
        if (a->ss_family == AF_INET) {
                fam = AF_INET;
                bytes = (const uint8_t *)&((const struct sockaddr_in *)a)->sin_addr;
        } else if (a->ss_family == AF_INET6) {
                const struct in6_addr *v6 = &((const struct sockaddr_in6 *)a)->sin6_addr;
                if (IN6_IS_ADDR_V4MAPPED(v6) && r->ip.family == AF_INET) {
                        memcpy(mapped, v6->s6_addr + 12, 4);
                        fam = AF_INET;
                        bytes = mapped;
                } else {
                        fam = AF_INET6;
                        bytes = v6->s6_addr;
                }
        } else
                return false;
        if (fam != r->ip.family)
                return false;
        unsigned full = r->ip.prefix_len / 8, bits = r->ip.prefix_len % 8;
        if (memcmp(bytes, r->ip.prefix, full) != 0)
                return false;
        if (bits) {
                uint8_t mask = (uint8_t)(0xff << (8 - bits));
                if ((bytes[full] & mask) != (r->ip.prefix[full] & mask))
                        return false;
        }
        return true;
}

/* The first IP rule for port covering a; for a non-public IPv6 address that
 * embeds an IPv4 one (NAT64, 6to4, compat), addr_policy_permits() also
 * matches the embedded address. A non-public address is covered only by a
 * profile's rule: an inline rule never reaches one (issue 9, point 1). */
static const struct egress_rule *covering_ip_rule(const struct egress_policy *p, const struct sockaddr_storage *a,
                                                  uint16_t port) {
        bool public = addr_classify(a) == ADDR_CLASS_PUBLIC;
        for (size_t i = 0; i < p->n_rules; i++) {
                const struct egress_rule *r = &p->rules[i];
                if (r->is_ip && port_matches(r->port, port) && (public || r->from_catalog) &&
                    (ip_rule_covers(r, a) || (addr_classify(a) != ADDR_CLASS_PUBLIC &&
                                              addr_policy_permits(a, &r->ip, 1))))
                        return r;
        }
        return NULL;
}

void egress_policy_check_target(const struct egress_policy *p, const char *host, uint16_t port,
                                struct egress_check *ret) {
        *ret = (struct egress_check){.verdict = EGRESS_DENY, .rule = "unknown"};
        int k = addr_parse_host_literal(host, &ret->addr);
        if (k < 0) {
                snprintf(ret->reason, sizeof ret->reason, "malformed host");
                return;
        }
        if (k == 1) {
                ret->literal = true;
                char why[96];
                if (addr_floor_contains(p->floor, &ret->addr, why, sizeof why)) {
                        snprintf(ret->reason, sizeof ret->reason, "platform egress floor: %s", why);
                        return;
                }
                const struct egress_rule *r = covering_ip_rule(p, &ret->addr, port);
                if (r) {
                        ret->verdict = EGRESS_ALLOW;
                        ret->rule = r->text;
                        return;
                }
                enum addr_class c = addr_classify(&ret->addr);
                snprintf(ret->reason, sizeof ret->reason,
                         c == ADDR_CLASS_PUBLIC ? "IP literal (%s address) not allowed by an explicit IP rule for port %u"
                                                : "IP literal (%s address) not allowed by an IP rule of an approved "
                                                  "egress profile for port %u",
                         addr_class_name(c), port);
                return;
        }
        /* localhost, metadata.google.internal, ...: the floor by name, before
         * any rule and without asking DNS about a name that is refused anyway */
        const char *what;
        if (addr_name_is_local(host, &what)) {
                snprintf(ret->reason, sizeof ret->reason, "platform egress floor: %s (%s)", what, host);
                return;
        }
        for (size_t i = 0; i < p->n_rules; i++) {
                const struct egress_rule *r = &p->rules[i];
                if (!r->is_ip && host_rule_matches(&r->host, host, port)) {
                        ret->verdict = EGRESS_ALLOW;
                        ret->rule = r->text;
                        return;
                }
        }
        if (p->ask) {
                ret->verdict = EGRESS_ASK;
                snprintf(ret->reason, sizeof ret->reason, "no rule matches: approval required");
        } else
                snprintf(ret->reason, sizeof ret->reason, "no rule matches %s:%u", host, port);
}

void egress_policy_check(const struct egress_policy *p, const struct policy_decision *pd, const char *pd_rule,
                         uint32_t pd_ask_timeout_s, const char *host, uint16_t port, struct egress_check *ret) {
        if (pd && pd->action == POLICY_DENY) {
                *ret = (struct egress_check){.verdict = EGRESS_DENY, .rule = pd_rule ? pd_rule : "policy",
                                             .by_policy = true};
                snprintf(ret->reason, sizeof ret->reason, "policy rule %s denies host %s",
                         pd_rule ? pd_rule : "(unnamed)", host);
                return;
        }
        egress_policy_check_target(p, host, port, ret);
        if (ret->verdict == EGRESS_DENY || !pd || pd->action != POLICY_ASK)
                return;
        /* allowed or asked by the allowlist: the person decides (one approval) */
        ret->verdict = EGRESS_ASK;
        ret->rule = pd_rule ? pd_rule : "policy";
        ret->by_policy = true;
        ret->ask_timeout_s = pd_ask_timeout_s;
        snprintf(ret->reason, sizeof ret->reason, "policy rule %s asks for host %s", pd_rule ? pd_rule : "(unnamed)",
                 host);
}

bool egress_policy_address_ok(const struct egress_policy *p, const struct sockaddr_storage *a, uint16_t port,
                              const char **ret_rule, char *why, size_t why_size, bool *ret_floor) {
        char what[96], t[INET6_ADDRSTRLEN];
        if (ret_floor)
                *ret_floor = false;
        if (addr_floor_contains(p->floor, a, what, sizeof what)) {
                if (ret_floor)
                        *ret_floor = true;
                if (why && why_size) {
                        addr_format(a, t, sizeof t);
                        snprintf(why, why_size, "platform egress floor: %s (%s)", what, t);
                }
                return false;
        }
        enum addr_class c = addr_classify(a);
        if (c == ADDR_CLASS_PUBLIC)
                return true;
        const struct egress_rule *r = covering_ip_rule(p, a, port);
        if (r && ret_rule)
                *ret_rule = r->text;
        if (!r && why && why_size) {
                addr_format(a, t, sizeof t);
                snprintf(why, why_size, "%s address %s is not in an IP rule of an approved egress profile for port %u",
                         addr_class_name(c), t, port);
        }
        return r != NULL;
}
