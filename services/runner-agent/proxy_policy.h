/* The egress policy of one run, compiled from SandboxSnapshot.egress: which
 * CONNECT / absolute-form targets the proxy may reach. Rules are evaluated in
 * order; host rules (net/host_match.h) match names only, IP/CIDR rules
 * (net/addr_policy.h) match literals and are the only way a non-public address
 * (loopback, private, link-local, metadata, ...) is ever reached — also when an
 * allowed name resolves to one (DNS rebinding). Immutable after compilation:
 * thread-safe to read. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/err.h"
#include "net/addr_policy.h"
#include "net/host_match.h"
#include "paddock/v1/runs.pb-c.h"

#define EGRESS_RULE_TEXT_MAX 280
#define EGRESS_DEFAULT_ASK_TIMEOUT_S 300

struct egress_rule {
        char text[EGRESS_RULE_TEXT_MAX];   /* "host:port" as written, for events */
        bool is_ip;
        struct addr_allow ip;
        struct host_rule host;
        uint16_t port;                     /* 0: 80 and 443 */
};

struct egress_policy {
        struct egress_rule *rules;
        size_t n_rules;
        bool ask;                          /* unknown = "ask", else deny */
        uint32_t ask_timeout_s;
};

enum egress_verdict { EGRESS_DENY, EGRESS_ALLOW, EGRESS_ASK };

struct egress_check {
        enum egress_verdict verdict;
        const char *rule;                  /* matching rule text (borrowed from the policy) or "unknown" */
        char reason[200];
        bool literal;                      /* the target is an IP literal: addr holds it */
        struct sockaddr_storage addr;
};

/* Compiles p (borrowed; NULL means deny everything). A rule that does not
 * parse fails the whole policy (-EINVAL, reterr names it): an unreadable rule
 * must never silently widen or narrow the policy. *ret owned by the caller. */
int egress_policy_compile(const Paddock__V1__EgressPolicy *p, struct egress_policy **ret, struct err_detail *reterr);
struct egress_policy *egress_policy_free(struct egress_policy *p);

/* Decides on a target before any name resolution: an IP literal in any
 * spelling is allowed only by an IP/CIDR rule covering it and the port; a
 * name by the first matching host rule; anything else is EGRESS_ASK or
 * EGRESS_DENY by p->ask. A malformed host is denied. */
void egress_policy_check_target(const struct egress_policy *p, const char *host, uint16_t port,
                                struct egress_check *ret);

/* True if the proxy may connect to a (a resolved or literal address) on port:
 * public addresses always, others only under an IP/CIDR rule for that port.
 * *ret_rule (optional) receives the IP rule text that allowed a non-public
 * address. */
bool egress_policy_address_ok(const struct egress_policy *p, const struct sockaddr_storage *a, uint16_t port,
                              const char **ret_rule);
