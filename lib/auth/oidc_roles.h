/* Mapping verified OIDC claims to Paddock role grants (API.md roles), as a
 * tenant admin configures it per identity provider:
 *
 *   {"claim": "groups",
 *    "map": {"paddock-admins": {"team": "*", "roles": ["tenant_admin"]},
 *            "eng":            {"team": "<team id>", "roles": ["launcher", "viewer"]}}}
 *
 * "claim" names a claim of the token, or a dotted path into nested objects
 * ("realm_access.roles" for Keycloak); its value is a string or an array of
 * strings (other elements are ignored). Each value equal (case-sensitive) to a
 * key of "map" grants that entry's roles in its team; "*" means the whole
 * tenant. tenant_admin can only be granted tenant-wide, since it covers the
 * tenant (API.md). Unknown members, unknown roles and empty role lists make the
 * configuration invalid; a token can never grant more than the configuration.
 *
 * Thread-safety: a parsed map is immutable and may be shared by threads. */
#pragma once
#include <jansson.h>
#include <stddef.h>

#include "core/err.h"

enum auth_role {
        AUTH_ROLE_TENANT_ADMIN = 1u << 0,
        AUTH_ROLE_SECURITY_ADMIN = 1u << 1,
        AUTH_ROLE_SANDBOX_AUTHOR = 1u << 2,
        AUTH_ROLE_LAUNCHER = 1u << 3,
        AUTH_ROLE_APPROVER = 1u << 4,
        AUTH_ROLE_REVIEWER = 1u << 5,
        AUTH_ROLE_VIEWER = 1u << 6,
};
#define AUTH_ROLE_COUNT 7
#define OIDC_TEAM_ALL "*"
#define OIDC_MAX_MAP_ENTRIES 256
#define OIDC_MAX_NAME_LEN 256

/* "tenant_admin" ... "viewer" → the bit; returns 0 or -EINVAL. */
int auth_role_from_string(const char *s, enum auth_role *ret);
/* The bit → its name, or NULL when not exactly one known role. */
const char *auth_role_to_string(enum auth_role role);

struct oidc_role_map;

/* Validates config (borrowed) and builds a map (caller owns, oidc_role_map_free).
 * Returns 0, -EINVAL (reterr: code "role_mapping", message naming the member
 * and reason) or -ENOMEM. */
int oidc_role_map_parse(const json_t *config, struct oidc_role_map **ret, struct err_detail *reterr);
struct oidc_role_map *oidc_role_map_free(struct oidc_role_map *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct oidc_role_map *, oidc_role_map_free);

struct oidc_role_grant {
        char *team;             /* team id, or OIDC_TEAM_ALL */
        unsigned roles;         /* OR of enum auth_role, never 0 */
};

struct oidc_grants {
        size_t n;
        struct oidc_role_grant *v;      /* one entry per team, in first-match order */
};

/* Applies m to verified claims (borrowed). *ret (caller owns, oidc_grants_free)
 * holds the union of the roles of every matching entry, merged per team; no
 * match gives n == 0 (the caller decides whether such a user may log in).
 * A missing claim is not an error. Returns 0 or -ENOMEM. */
int oidc_role_map_apply(const struct oidc_role_map *m, const json_t *claims, struct oidc_grants **ret);
struct oidc_grants *oidc_grants_free(struct oidc_grants *g);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct oidc_grants *, oidc_grants_free);

/* [{"team": "...", "roles": ["launcher", ...]}, ...] with roles in the fixed
 * order of enum auth_role; new reference (caller decrefs), NULL on ENOMEM. */
json_t *oidc_grants_to_json(const struct oidc_grants *g);
