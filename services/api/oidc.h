/* Per-tenant OIDC configuration and the token-for-token login (oidc.c). */
#pragma once
#include "request.h"
#include "db.h"

/* ---- oidc.c: per-tenant OIDC configuration (tenant_admin) and the
 * token-for-token login exchange (anyone) */
/* The per-tenant JWKS caches; NULL on out-of-memory. _free accepts NULL. */
int oidc_config_get(struct api_req *r);
int oidc_config_put(struct api_req *r);
int oidc_config_delete(struct api_req *r);
int oidc_login(struct api_req *r);
