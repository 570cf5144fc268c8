/* The api as an OIDC issuer for runs (workload_identity.c). */
#pragma once
#include "request.h"
#include "db.h"

/* ---- workload_identity.c: the api as an OIDC issuer for runs (docs/CONTRACTS.md
 * "Workload identity") */
/* Checks and normalises cfg.public_url into a->public_url (default
 * http://<PADDOCK_API_ADDR>). 0 or -EINVAL with e naming the reason. */
int workload_identity_configure(struct api *a, struct err_detail *e);
int workload_identity_discovery(struct api_req *r);
int workload_identity_jwks(struct api_req *r);
/* POST /v1/tenant/workload-identity/rotate: a new signing key now. */
int workload_identity_rotate(struct api_req *r);
/* POST /v1/tenants/{tenant}/oidc/introspect {token}: RFC 7662, public;
 * active only while the token's run has not ended. */
int workload_identity_introspect(struct api_req *r);
/* The token of one spec.identity entry of a run (sealing.c): RS256 JWT
 * signed with the tenant's current key (made first if there is none or it is
 * due), sub naming tenant, team, definition and run, aud, exp = now + ttl_s.
 * c holds the claims' inputs (borrowed). *ret (caller wipes and frees) is the
 * NUL-terminated token; it is never logged. Runs on conn (tenant setting
 * applied, inside the caller's transaction). 0 or negative errno with e. */
struct workload_claims {
        const char *tenant_id, *team_id, *sandbox_id, *run_id, *audience;
        long long version;
        long long ttl_s;
};
int workload_identity_mint(struct api *a, PGconn *conn, const struct workload_claims *c, char **ret, size_t *ret_len,
                           struct err_detail *e);
