/* Egress address policy: which IP addresses a sandbox's egress proxy (and the
 * api's own outbound fetches) may connect to. Everything but the floor's node
 * addresses is pure (no I/O, no DNS, no global state); all of it is thread-safe.
 *
 * The proxy calls addr_parse_host_literal() on the host of every CONNECT / Host:
 * so that no spelling of an IP literal escapes as a "name", and then
 * addr_policy_permits() on every address it is about to connect to (a literal,
 * or each address a name resolved to), so a name pointing at 127.0.0.1 or at the
 * cloud metadata service is refused as well. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/config.h"
#include "core/err.h"
#include "core/macro.h"

enum addr_class {
        ADDR_CLASS_PUBLIC,
        ADDR_CLASS_LOOPBACK,     /* 127/8, ::1 */
        ADDR_CLASS_PRIVATE,      /* 10/8, 172.16/12, 192.168/16, fc00::/7, fec0::/10, 64:ff9b:1::/48 */
        ADDR_CLASS_LINK_LOCAL,   /* 169.254/16, fe80::/10 */
        ADDR_CLASS_METADATA,     /* cloud instance metadata / host endpoints, see addr_policy.c */
        ADDR_CLASS_CARRIER_NAT,  /* 100.64/10 */
        ADDR_CLASS_UNSPECIFIED,  /* 0/8, :: (Linux connects 0.0.0.0 to the local host) */
        ADDR_CLASS_MULTICAST,    /* 224/4, ff00::/8 */
        ADDR_CLASS_BROADCAST,    /* 255.255.255.255 */
        ADDR_CLASS_RESERVED,     /* documentation, benchmarking, IETF special purpose, 240/4,
                                  * Teredo, anything outside 2000::/3, unknown families */
        _ADDR_CLASS_MAX,
};

/* Parses host (without port) as an IP literal, accepting every spelling that
 * glibc's inet_aton()/getaddrinfo() or a browser would accept, so that the
 * caller can classify it: dotted quad, 1-3 part short forms (127.1), each part
 * decimal, octal (leading 0) or hex (0x), a single 32-bit integer, IPv6 with or
 * without [brackets], one trailing dot. Following the WHATWG URL rule, a host
 * whose last label is numeric is an IPv4 literal or malformed, never a name.
 * host is borrowed; *ret is written only on success, port 0.
 * Returns 1 if host is a literal (*ret filled), 0 if it is a syntactically valid
 * DNS name, -EINVAL if malformed: bad IPv4 ("1.2.3.4.5", "256.1.1.1",
 * "0x1ffffffff"), bad IPv6, an IPv6 zone id ("fe80::1%eth0"), empty labels or
 * labels over 63 characters or starting/ending with "-",
 * whitespace or any byte outside the host alphabet (glibc's inet_aton accepts
 * "127.0.0.1 junk", so such hosts must never reach a resolver), non-ASCII
 * (punycode is required), or longer than 253 characters. */
int addr_parse_host_literal(const char *host, struct sockaddr_storage *ret);

/* Classifies an AF_INET or AF_INET6 address. IPv6 addresses that embed an IPv4
 * address (IPv4-mapped ::ffff:0:0/96, IPv4-compatible ::/96, NAT64 64:ff9b::/96,
 * 6to4 2002::/16) get the class of the embedded address. Other families are
 * ADDR_CLASS_RESERVED. */
enum addr_class addr_classify(const struct sockaddr_storage *a);

/* Stable lower-case name ("public", "loopback", "link_local", ...), for logs and
 * error bodies; "invalid" for out-of-range values. Static storage. */
const char *addr_class_name(enum addr_class c);

/* One explicit IP/CIDR allow rule of a sandbox definition. */
struct addr_allow {
        int family;               /* AF_INET or AF_INET6 */
        uint8_t prefix[16];       /* network address; first 4 bytes for AF_INET */
        unsigned prefix_len;      /* 1..32 or 1..128 */
};

/* Parses "a.b.c.d", "a.b.c.d/n", "v6", "v6/n" or "[v6]" strictly (canonical
 * dotted quad only: rules are written by people, not attackers, and must mean
 * one thing). A single address is a /32 or /128. Rejects with -EINVAL: host bits
 * set beyond the prefix ("10.1.2.3/8" is ambiguous), a zero prefix length (it
 * would allow every address including cloud metadata), zone ids, bad lengths.
 * s is borrowed; *ret is written only on success. */
int addr_allow_parse(const char *s, struct addr_allow *ret);

/* True if the proxy may connect to a: public addresses always; every other
 * class only when one of explicit_allows[0..n) contains the address (or, for an
 * IPv6 address embedding an IPv4 one, the embedded address). Unknown families
 * are never permitted. Arguments are borrowed; explicit_allows may be NULL if
 * n is 0. */
bool addr_policy_permits(const struct sockaddr_storage *a, const struct addr_allow *explicit_allows, size_t n);

/* True if no address of r is anything but public (addr_classify): what an
 * inline `egress.allow` rule of a definition may name (docs/CONTRACTS.md,
 * "Egress"). Otherwise false and *ret_class (optional) names the class of the
 * first non-public range r overlaps. IPv6 rules outside 2000::/3 and those
 * inside embedding prefixes (6to4, Teredo) are never public. */
bool addr_allow_is_public(const struct addr_allow *r, enum addr_class *ret_class);

/* Parses a comma-separated list of addr_allow_parse() ranges (spaces around
 * entries ignored; "" is an empty list). On error returns -EINVAL with reterr
 * naming the offending entry; *ret (caller frees) and *ret_n are written only
 * on success (*ret may be NULL for an empty list). */
int addr_allow_list_parse(const char *csv, struct addr_allow **ret, size_t *ret_n, struct err_detail *reterr);

/* Writes a's address (no port) into buf (INET6_ADDRSTRLEN suffices), "?"
 * for a family other than AF_INET and AF_INET6. For logs and error bodies. */
void addr_format(const struct sockaddr_storage *a, char *buf, size_t size);

/* Writes r as "a.b.c.d/n" or "v6/n" into buf (INET6_ADDRSTRLEN + 4 suffices). */
void addr_allow_format(const struct addr_allow *r, char *buf, size_t size);

/* ---- the platform egress floor (docs/CONTRACTS.md, "The platform egress floor") ----
 *
 * Addresses nothing may open: no inline rule, catalog profile, approval or `ask`
 * decision. The fixed classes (ADDR_FLOOR_CLASSES: loopback, unspecified,
 * link-local, cloud metadata, multicast, broadcast), the addresses of this
 * node's own interfaces, and the operator's ranges (PADDOCK_EGRESS_FLOOR:
 * pod/service CIDRs, the control plane). An IPv6 address is also judged by
 * every IPv4 address it embeds (mapped, compatible, NAT64 64:ff9b::/96 and the
 * local-use 64:ff9b:1::/48 in both RFC 6052 positions, 6to4, Teredo), since a
 * translator on the path may deliver it there. */

/* The one configuration entry both the runner-agent and the api embed in their
 * tables (struct field: char *), so that the name, default and description
 * cannot drift apart. Validate the value with addr_floor_new(). */
#define ADDR_FLOOR_CONFIG_ENTRY(offset)                                                                      \
        {"PADDOCK_EGRESS_FLOOR", CONFIG_STRING, "", 0, 0, false, (offset),                                   \
         "comma-separated CIDRs added to the platform egress floor (pod and service CIDRs, the control "     \
         "plane): no egress rule, profile or approval reaches them; loopback, link-local, metadata, "        \
         "multicast, broadcast and this node's addresses are always in it"}

struct addr_floor;

/* Makes a floor from the operator's ranges (PADDOCK_EGRESS_FLOOR syntax, see
 * addr_allow_list_parse; "" or NULL: none). Returns 0 and *ret (caller owns,
 * addr_floor_free), -EINVAL with reterr naming the bad entry, or -ENOMEM. */
int addr_floor_new(const char *ranges, struct addr_floor **ret, struct err_detail *reterr);
struct addr_floor *addr_floor_free(struct addr_floor *f);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct addr_floor *, addr_floor_free);

/* True if a (AF_INET or AF_INET6; other families too) is inside the floor;
 * then why (optional) receives "loopback", "link_local", "metadata", ...,
 * "node address" or "operator range 10.96.0.0/12". The node's addresses come
 * from getifaddrs(), re-read at most once a second (an address added to an
 * interface is in the floor within a second). f NULL: the fixed classes only.
 * Thread-safe. */
bool addr_floor_contains(struct addr_floor *f, const struct sockaddr_storage *a, char *why, size_t why_size);

/* True if every address of rule r is inside the floor (a fixed class range,
 * an operator range, or exactly one of the node's addresses): what a catalog
 * egress profile must not name. why as above. f NULL: fixed classes only. */
bool addr_floor_covers(struct addr_floor *f, const struct addr_allow *r, char *why, size_t why_size);

/* The fixed classes, for effective-policy: NULL-terminated, static. */
extern const char *const addr_floor_class_names[];

/* The operator's ranges, for effective-policy. */
size_t addr_floor_n_ranges(const struct addr_floor *f);
const struct addr_allow *addr_floor_range(const struct addr_floor *f, size_t i);

/* Names that lead to the node itself or to a metadata service by definition,
 * whatever DNS says ("localhost", "*.localhost", "localhost.localdomain",
 * "metadata.google.internal", ...). name is a host rule's name without port,
 * lower case, wildcard as "*.suffix". True if the name or, for a wildcard, any
 * name it matches is such a name; *ret_what (optional, static) says which. */
bool addr_name_is_local(const char *name, const char **ret_what);
