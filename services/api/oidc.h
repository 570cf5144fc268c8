/* Per-tenant OIDC configuration and the logins it allows: the token-for-token
 * exchange (oidc.c) and the dashboard's authorization-code flow with PKCE
 * (oidc_flow.c), which provision and map users by the same code. */
#pragma once
#include "request.h"
#include "db.h"
#include "http/client_addr.h"

/* ---- oidc.c: per-tenant OIDC configuration (tenant_admin) and the
 * token-for-token login exchange (anyone) */
int oidc_config_get(struct api_req *r);
int oidc_config_put(struct api_req *r);
int oidc_config_delete(struct api_req *r);
int oidc_login(struct api_req *r);
/* The tenant's optional client secret for the code flow (migration 0028):
 * sealed like a team secret (secrets_seal_value) with this aad. */
#define OIDC_SECRET_MAX 1024
#define OIDC_SECRET_AAD_MAX (UUID_STR_LEN + 32)
void oidc_secret_aad(char aad[OIDC_SECRET_AAD_MAX], const char *tenant_id);

/* One OIDC login attempt, by either route. */
struct oidc_attempt {
        const char *tenant;               /* the name the client gave (borrowed) */
        char tenant_id[UUID_STR_LEN];     /* "" until known */
        char peer[HTTP_CLIENT_ADDR_MAX];
        char rl_user[96];                 /* rate-limit key: the source, see oidc_attempt_begin */
};
/* Starts an attempt for tenant: the source address, its rate-limit key, the
 * tenant's id ("" when there is no such tenant). Returns the seconds the
 * source must wait (> 0: limited, answer with oidc_attempt_limited()), 0, or a
 * negative errno with the problem recorded. */
int64_t oidc_attempt_begin(struct api_req *r, struct oidc_attempt *at, const char *tenant);
/* Audits the limited attempt and records 429 rate_limited; returns -EAGAIN. */
int oidc_attempt_limited(struct api_req *r, struct oidc_attempt *at, int64_t wait_s);
/* Refuses the attempt at check: counts the failure against the source,
 * audits it, records 401 invalid_token; returns -EACCES. */
int oidc_reject(struct api_req *r, struct oidc_attempt *at, const char *check, const char *message);
/* Verifies token (the tenant's enabled configuration, its JWKS; nonce, when
 * not NULL, must be the token's "nonce" claim), provisions and maps its user
 * and issues a login token (auth_issue_token: r->out holds it). Returns 0
 * or a negative errno with the problem recorded. */
int oidc_login_token(struct api_req *r, struct oidc_attempt *at, const char *token, size_t token_len,
                     const char *nonce);

/* ---- oidc_flow.c: the dashboard's sign-in by the authorization-code flow
 * with PKCE (docs/CONTRACTS.md "OIDC login"); browser routes that answer
 * with redirects only, never a token in a body or a URL */
/* GET /v1/auth/oidc/authorize?tenant=T: 302 to the provider. */
int oidc_flow_authorize(struct api_req *r);
/* GET /v1/auth/oidc/callback?code&state: 302 to the dashboard with the
 * session cookies, or to its login page with ?oidc_error=CODE. */
int oidc_flow_callback(struct api_req *r);
