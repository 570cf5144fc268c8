/* The egress policy of one run, compiled from SandboxSnapshot.egress: which
 * CONNECT / absolute-form targets the proxy may reach. Rules are evaluated in
 * order; host rules (net/host_match.h) match names only, IP/CIDR rules
 * (net/addr_policy.h) match literals. Above every rule stands the platform
 * egress floor (addr_floor_contains: loopback, link-local, metadata, the
 * node's own addresses, the operator's ranges), which nothing opens. Other
 * non-public addresses (private, carrier NAT, reserved) are reached only
 * through an IP/CIDR rule of an approved catalog egress profile (source
 * "profile:<id>"), never an inline rule — also when an allowed name resolves
 * to one (DNS rebinding). docs/CONTRACTS.md, "Egress". Immutable after
 * compilation: thread-safe to read. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/domain.h"
#include "core/err.h"
#include "net/addr_policy.h"
#include "net/host_match.h"
#include "paddock/v1/runs.pb-c.h"
#include "policy/policy_engine.h"

#define EGRESS_RULE_TEXT_MAX 280

struct egress_rule {
        char text[EGRESS_RULE_TEXT_MAX];   /* "host:port" as written, for events */
        bool is_ip;
        struct addr_allow ip;
        struct host_rule host;
        uint16_t port;                     /* 0: 80 and 443 */
        bool from_catalog;                 /* source "profile:<id>" or "connector:<id>", an approved
                                            * catalog item's rule: may reach non-public addresses */
};

struct egress_policy {
        struct egress_rule *rules;
        size_t n_rules;
        bool ask;                          /* unknown = "ask", else deny */
        uint32_t ask_timeout_s;
        struct addr_floor *floor;          /* borrowed, the process's (egress_policy_set_floor) */
};

enum egress_verdict { EGRESS_DENY, EGRESS_ALLOW, EGRESS_ASK };

struct egress_check {
        enum egress_verdict verdict;
        const char *rule;                  /* matching rule text (borrowed from the policy) or "unknown" */
        char reason[200];
        bool literal;                      /* the target is an IP literal: addr holds it */
        struct sockaddr_storage addr;
        bool by_policy;                    /* the run's policy rule `rule` denied it or asks */
        uint32_t ask_timeout_s;            /* for a policy ask: the run policy's (0: the egress one) */
};

/* Sets the platform egress floor every policy compiled afterwards uses
 * (borrowed for the life of the process; NULL: the fixed classes only). Call
 * once from main() before any run starts. */
void egress_policy_set_floor(struct addr_floor *floor);

/* Compiles p (borrowed; NULL means deny everything). A rule that does not
 * parse fails the whole policy (-EINVAL, reterr names it): an unreadable rule
 * must never silently widen or narrow the policy. *ret owned by the caller. */
int egress_policy_compile(const Paddock__V1__EgressPolicy *p, struct egress_policy **ret, struct err_detail *reterr);
struct egress_policy *egress_policy_free(struct egress_policy *p);

/* Decides on a target before any name resolution: an IP literal in any
 * spelling inside the floor is denied (reason "platform egress floor: <class>"),
 * otherwise allowed only by an IP/CIDR rule covering it and the port (a
 * profile's rule for a non-public literal); a name by the first matching host
 * rule; anything else is EGRESS_ASK or EGRESS_DENY by p->ask. A malformed host
 * is denied. */
void egress_policy_check_target(const struct egress_policy *p, const char *host, uint16_t port,
                                struct egress_check *ret);

/* The run's policy (lib/policy, level egress; docs/CONTRACTS.md "Policy
 * engine") before the egress allowlist: pd (NULL: no policy) is the engine's
 * decision for host, pd_rule (borrowed, may be NULL) the deciding rule's
 * source. deny → EGRESS_DENY naming the rule; otherwise
 * egress_policy_check_target() decides, and a policy ask turns an allowed
 * target into EGRESS_ASK (rule = pd_rule). A policy allow, or an approval of a
 * policy ask, never opens what the allowlist or the platform floor refuses. */
void egress_policy_check(const struct egress_policy *p, const struct policy_decision *pd, const char *pd_rule,
                         uint32_t pd_ask_timeout_s, const char *host, uint16_t port, struct egress_check *ret);

/* True if the proxy may connect to a (a resolved or literal address, or the
 * peer of a connected socket) on port: never inside the floor; public
 * addresses always; other addresses only under an IP/CIDR rule of an egress
 * profile for that port. *ret_rule (optional) receives the IP rule text that
 * allowed a non-public address. On false, why (optional) says why: "platform
 * egress floor: loopback (127.0.0.1)" or "private address 10.0.0.1 is not in an
 * IP rule of an approved egress profile for port 443"; *ret_floor (optional)
 * tells whether the floor refused it. */
bool egress_policy_address_ok(const struct egress_policy *p, const struct sockaddr_storage *a, uint16_t port,
                              const char **ret_rule, char *why, size_t why_size, bool *ret_floor);
