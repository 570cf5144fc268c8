/* Egress allow rules by host name: "host[:port]" or "*.domain[:port]", as
 * written in a sandbox definition, and the proxy's match of a CONNECT / Host:
 * target against them. Pure functions, no I/O, no global state: thread-safe.
 *
 * Semantics (decided here, documented for definition authors):
 *  * names are ASCII only; internationalised names must be written in punycode
 *    ("xn--bcher-kva.example"), both in rules and in requests;
 *  * case-insensitive; one trailing dot is ignored ("Example.COM." == "example.com");
 *  * "*.example.com" matches one or more labels under example.com
 *    ("a.example.com", "a.b.example.com") but not the apex "example.com"; the
 *    wildcard is only allowed as the whole first label, over at least two labels
 *    ("*.com" is refused);
 *  * no port means ports 80 and 443 only; ":N" means exactly port N;
 *  * IP literals are not host rules: addresses are allowed with IP/CIDR rules
 *    (net/addr_policy.h), so a rule cannot smuggle in "127.1". */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "core/err.h"

#define HOST_RULE_NAME_MAX 253

struct host_rule {
        char name[HOST_RULE_NAME_MAX + 1];  /* lower case, no trailing dot, without "*." */
        bool wildcard;                       /* rule was "*.name" */
        uint16_t port;                       /* 0: 80 or 443 */
};

/* Parses and validates one rule. s is borrowed; *ret is written only on success.
 * Returns 0, or -EINVAL with reterr (optional) naming the reason: empty,
 * non-ASCII (use punycode), bad character, empty or over-long label, label
 * starting or ending with '-', name over 253 characters, misplaced or too broad
 * wildcard, IP literal, bad port (must be 1-65535). */
int host_rule_parse(const char *s, struct host_rule *ret, struct err_detail *reterr);

/* True if host (as sent by the client, without port) on port matches the rule.
 * An invalid host (non-ASCII, bad characters, empty labels) never matches.
 * Arguments are borrowed. */
bool host_rule_matches(const struct host_rule *r, const char *host, int port);
