/* Validation of a sandbox spec (spec_validate.c; its parts spec_egress.c, spec_secrets.c): bad input is refused with a 400 naming the field,
 * before anything is written. */
#pragma once
#include "request.h"
#include "db.h"

/* ---- spec_validate.c */
/* Validates spec (the value at JSON path "spec"); on error records the
 * problem on r and returns negative. */
int spec_validate(struct api_req *r, json_t *spec);
/* sha256 hex of json_dumps(spec, JSON_SORT_KEYS|JSON_COMPACT); ret owned by caller. */
int spec_canonical(json_t *spec, char **ret_json, char sha_hex[65]);
/* Parses a "0644"-style mode (3-4 octal digits, at most 0777). */
int spec_parse_mode(const char *s, unsigned *ret);
/* A relative path without "..", empty components or a leading "/". */
bool spec_path_ok(const char *p, size_t len);
/* Parses one egress.allow entry (CONTRACTS.md "Egress rules"): a host rule
 * "host[:port]" / "*.domain[:port]" (lib/net/host_match.h), or an IP rule
 * "a.b.c.d[/n][:port]", "v6[/n]" or "[v6[/n]]:port" (lib/net/addr_policy.h).
 * Writes the normalized host ("*.example.com", "10.0.0.0/8", "::1") into host,
 * the port (0 = 80 and 443) and whether it is an IP rule. -EINVAL with e. */
int spec_egress_rule_parse(const char *s, char *host, size_t size, uint32_t *ret_port, bool *ret_ip,
                           struct err_detail *e);
/* The https origin of a validated or unvalidated spec.secrets[].as.header
 * (CONTRACTS.md "Secret destinations"): {"origin": "https://host[:port]"}
 * (a name or a canonical IP literal, IPv6 in brackets; port default 443) or
 * the older {"host": "name"}, meaning https://name:443. Writes the lower-case
 * host (IPv6 without brackets) and the port. -EINVAL with e (optional; e->code
 * is the offending key, "origin" or "host"). */
int spec_header_origin(json_t *hdr, char *host, size_t size, uint16_t *ret_port, struct err_detail *e);
/* Where a rule parsed by spec_egress_rule_parse (host, ip) may lead
 * (CONTRACTS.md "The platform egress floor"): nowhere inside the floor (a
 * range wholly inside it, a name like localhost or metadata.google.internal);
 * for an inline rule of a definition (inline_rule), public addresses only
 * (a private, carrier-NAT or reserved range needs an approved catalog egress
 * profile). Returns 0 or -EINVAL with e saying why (no field name). */
int spec_egress_rule_reach(struct addr_floor *floor, const char *host, bool ip, bool inline_rule,
                           struct err_detail *e);
/* True for a team secret name: [A-Z_][A-Z0-9_]{0,63}. */
bool spec_secret_name_ok(const char *s);
/* An HTTP header name a secret may set (a token, not a framing or proxy header). */
bool spec_header_name_ok(const char *s);
#define SPEC_CPUS_MIN 0.1
#define SPEC_CPUS_MAX 64.0

/* ---- the parts spec_validate() calls (each records the problem on r and
 * returns negative, naming the field) */
/* spec.egress: allow rules, catalog profiles, unknown (spec_egress.c) */
int spec_validate_egress(struct api_req *r, json_t *egress);
/* spec.secrets (spec_secrets.c) */
int spec_validate_secrets(struct api_req *r, json_t *secrets);
/* spec.identity, whose destinations must not collide with secrets' (spec_secrets.c) */
int spec_validate_identity(struct api_req *r, json_t *ids, json_t *secrets);
/* An array of at most 64 catalog ids or names at field (spec_validate.c) */
int spec_validate_refs(struct api_req *r, json_t *refs, const char *field);
