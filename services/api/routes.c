/* The one route table of the api: every endpoint with the permission it
 * needs (authz.c maps permissions to roles), and the lookup of a request's
 * method and path in it. The HTTP layer is http.c. */
#include <stdlib.h>
#include <string.h>

#include "api.h"

/* Every endpoint of the api, with the permission it needs: the one place
 * that says who may call what (tests/e2e/test_e2e_rbac_matrix.py mirrors
 * it). PERM_ADMIN is checked here; team permissions by the handler against
 * the object's team (api_authz_team); list endpoints filter their items. */
static const struct api_route routes[] = {
        {"GET", "/healthz", ops_healthz, PERM_NONE},
        {"GET", "/readyz", ops_readyz, PERM_NONE},
        {"POST", "/v1/auth/login", auth_login, PERM_NONE},
        {"POST", "/v1/auth/oidc", oidc_login, PERM_NONE},
        {"GET", "/v1/auth/oidc/authorize", oidc_flow_authorize, PERM_NONE},
        {"GET", "/v1/auth/oidc/callback", oidc_flow_callback, PERM_NONE},
        /* PERM_SELF: also for a caller who must change its one-time password first */
        {"POST", "/v1/auth/logout", auth_logout, PERM_SELF},
        {"GET", "/v1/me", auth_me, PERM_SELF},
        {"POST", "/v1/me/password", auth_password_change, PERM_SELF},
        {"GET", "/v1/teams", teams_list, PERM_USER},
        {"POST", "/v1/teams", teams_create, PERM_ADMIN},
        {"GET", "/v1/teams/{id}", teams_get, PERM_VIEWER},
        {"PATCH", "/v1/teams/{id}", teams_patch, PERM_ADMIN},
        {"DELETE", "/v1/teams/{id}", teams_delete, PERM_ADMIN},
        {"GET", "/v1/teams/{id}/members", members_list, PERM_ADMIN},
        {"PUT", "/v1/teams/{id}/members/{user}", members_put, PERM_ADMIN},
        {"PATCH", "/v1/teams/{id}/members/{user}", members_patch, PERM_ADMIN},
        {"GET", "/v1/users", users_list, PERM_ADMIN},
        {"POST", "/v1/users", users_create, PERM_ADMIN},
        {"PATCH", "/v1/users/{id}", users_patch, PERM_ADMIN},
        {"DELETE", "/v1/users/{id}", users_delete, PERM_ADMIN},
        {"GET", "/v1/tenant/oidc", oidc_config_get, PERM_ADMIN},
        {"PUT", "/v1/tenant/oidc", oidc_config_put, PERM_ADMIN},
        {"DELETE", "/v1/tenant/oidc", oidc_config_delete, PERM_ADMIN},
        {"GET", "/v1/service-accounts", service_accounts_list, PERM_ADMIN},
        {"POST", "/v1/service-accounts", service_accounts_create, PERM_ADMIN},
        {"DELETE", "/v1/service-accounts/{id}", service_accounts_delete, PERM_ADMIN},
        {"POST", "/v1/service-accounts/{id}/tokens", service_accounts_token_create, PERM_ADMIN},
        {"DELETE", "/v1/service-accounts/{id}/tokens/{token}", service_accounts_token_revoke, PERM_ADMIN},
        {"GET", "/v1/teams/{id}/secrets", secrets_list, PERM_VIEWER},
        {"PUT", "/v1/teams/{id}/secrets/{name}", secrets_put, PERM_SANDBOX_AUTHOR},
        {"DELETE", "/v1/teams/{id}/secrets/{name}", secrets_delete, PERM_SANDBOX_AUTHOR},
        /* team budgets (budgets.c): viewers read, the tenant admin sets */
        {"GET", "/v1/teams/{id}/budget", budgets_get, PERM_VIEWER},
        {"PUT", "/v1/teams/{id}/budget", budgets_put, PERM_ADMIN},
        /* lists filter to the teams the caller may view; {id} takes a name too */
        {"GET", "/v1/sandboxes", sandboxes_list, PERM_VIEWER},
        {"POST", "/v1/sandboxes", sandboxes_create, PERM_SANDBOX_AUTHOR},
        {"GET", "/v1/sandboxes/{id}", sandboxes_get, PERM_VIEWER},
        {"PUT", "/v1/sandboxes/{id}/draft", sandboxes_put_draft, PERM_SANDBOX_AUTHOR},
        {"POST", "/v1/sandboxes/{id}/versions", sandboxes_publish, PERM_SANDBOX_AUTHOR},
        {"GET", "/v1/sandboxes/{id}/versions/{v}", sandboxes_get_version, PERM_VIEWER},
        {"GET", "/v1/sandboxes/{id}/versions/{v}/effective-policy", policy_effective, PERM_VIEWER},
        {"GET", "/v1/runs", runs_list, PERM_VIEWER},
        {"POST", "/v1/runs", runs_create, PERM_LAUNCHER},
        {"GET", "/v1/runs/{id}", runs_get, PERM_VIEWER},
        {"POST", "/v1/runs/{id}/relaunch", runs_relaunch, PERM_LAUNCHER},
        {"POST", "/v1/runs/{id}/cancel", runs_cancel, PERM_CANCEL},
        {"GET", "/v1/runs/{id}/events", events_list, PERM_VIEWER},
        /* upgraded requests are served by stream.c (stream_filter checks PERM_VIEWER) */
        {"GET", "/v1/runs/{id}/stream", stream_plain_http, PERM_VIEWER},
        {"POST", "/v1/runs/{id}/stream-ticket", stream_ticket_create, PERM_VIEWER},
        {"GET", "/v1/runs/{id}/artifacts", artifacts_list, PERM_REVIEWER},
        {"GET", "/v1/runs/{id}/artifacts/{name}", artifacts_get, PERM_REVIEWER},
        /* reviews and the signed evidence bundle (reviews.c, evidence_bundle.c):
         * a reviewer reviews (never the run's launcher) and exports; anyone
         * who views the run sees its reviews; the evidence-signing public
         * keys are for every user of the tenant, rotation the tenant admin's
         * (tenant_keys.c) */
        {"POST", "/v1/runs/{id}/reviews", reviews_create, PERM_REVIEWER},
        {"GET", "/v1/runs/{id}/reviews", reviews_list, PERM_VIEWER},
        {"GET", "/v1/runs/{id}/evidence", evidence_bundle_get, PERM_REVIEWER},
        {"GET", "/v1/tenant/keys", tenant_keys_list, PERM_USER},
        {"POST", "/v1/tenant/keys/rotate", tenant_keys_rotate, PERM_ADMIN},
        {"GET", "/v1/approvals", approvals_list, PERM_APPROVER},
        {"GET", "/v1/approvals/{id}", approvals_get, PERM_APPROVER},
        {"POST", "/v1/approvals/{id}/decision", approvals_decide, PERM_APPROVER},
        /* security_admin joins PERM_ADMIN here once it is a tenant role */
        /* the catalog is tenant-wide: reads need a role in some team of the
         * tenant, writes the permission in some team (api_authz_tenant) */
        {"GET", "/v1/catalog/{kind}", catalog_list, PERM_VIEWER},
        {"POST", "/v1/catalog/{kind}", catalog_create, PERM_SANDBOX_AUTHOR},
        {"GET", "/v1/catalog/{kind}/{id}", catalog_get, PERM_VIEWER},
        {"PATCH", "/v1/catalog/{kind}/{id}", catalog_patch, PERM_SANDBOX_AUTHOR},
        {"POST", "/v1/catalog/{kind}/{id}/approve", catalog_approve, PERM_CATALOG_APPROVE},
        /* nodes are the platform's, not a tenant's: any authenticated user */
        {"GET", "/v1/nodes", nodes_list, PERM_USER},
        /* a drain moves every tenant's runs off a node: tenant_admin */
        {"POST", "/v1/nodes/{id}/drain", nodes_drain, PERM_ADMIN},
        {"DELETE", "/v1/nodes/{id}/drain", nodes_undrain, PERM_ADMIN},
        /* usage of the teams the caller may view */
        {"GET", "/v1/usage", usage_get, PERM_VIEWER},
        /* governance figures of the caller's teams (governance.c) */
        {"GET", "/v1/governance/metrics", governance_metrics, PERM_VIEWER},
        {"GET", "/v1/audit", audit_api_list, PERM_ADMIN},
        {"GET", "/v1/audit/verify", audit_api_verify, PERM_ADMIN},
        /* workload identity (workload_identity.c): the issuer's documents
         * are public, as OIDC relying parties (cloud IAM) fetch them without
         * credentials; rotating the signing key is the tenant admin's */
        {"GET", "/v1/tenants/{tenant}/oidc/.well-known/openid-configuration", workload_identity_discovery, PERM_NONE},
        {"GET", "/v1/tenants/{tenant}/oidc/jwks", workload_identity_jwks, PERM_NONE},
        {"POST", "/v1/tenants/{tenant}/oidc/introspect", workload_identity_introspect, PERM_NONE},
        {"POST", "/v1/tenant/workload-identity/rotate", workload_identity_rotate, PERM_ADMIN},
        /* retention and legal hold (retention.c, holds.c): the auditor
         * passes PERM_ADMIN where api_auditor_route() says so (authz.c) */
        {"GET", "/v1/tenant/retention", retention_get, PERM_ADMIN},
        {"PUT", "/v1/tenant/retention", retention_put, PERM_ADMIN},
        {"GET", "/v1/holds", holds_list, PERM_ADMIN},
        {"PUT", "/v1/holds/{kind}/{id}", holds_put, PERM_ADMIN},
        {"DELETE", "/v1/holds/{kind}/{id}", holds_delete, PERM_ADMIN},
};

/* Splits pattern and path on '/', capturing {x} segments. */
static bool route_match(const char *pattern, const char *path, char **caps) {
        size_t ncap = 0;
        const char *p = pattern, *s = path;
        while (*p && *s) {
                if (*p != '/' || *s != '/')
                        return false;
                p++, s++;
                /* strchrnul, not strcspn with a one-character set: twice
                 * per route tried, every request (issue 10 §4) */
                size_t pl = (size_t)(strchrnul(p, '/') - p), sl = (size_t)(strchrnul(s, '/') - s);
                if (*p == '{') {
                        if (sl == 0 || ncap >= API_MAX_PARAMS)
                                return false;
                        caps[ncap] = strndup(s, sl);
                        ncap++;
                } else if (pl != sl || strncmp(p, s, pl) != 0)
                        goto fail;
                p += pl, s += sl;
        }
        if (*p || *s)
                goto fail;
        return true;
fail:
        for (size_t i = 0; i < ncap; i++) {
                free(caps[i]);
                caps[i] = NULL;
        }
        return false;
}

const struct api_route *routes_find(const char *method, const char *path, char **caps, bool *ret_path_known) {
        /* the routes of the method first, in the table's order (the same
         * first match, without matching the path against every other
         * method's: issue 10 §4); the path against the others only when
         * none matched, for 405 rather than 404 */
        for (size_t i = 0; i < ELEMENTSOF(routes); i++)
                if (!strcmp(routes[i].method, method) && route_match(routes[i].pattern, path, caps)) {
                        *ret_path_known = true;
                        return &routes[i];
                }
        *ret_path_known = false;
        for (size_t i = 0; i < ELEMENTSOF(routes) && !*ret_path_known; i++)
                if (strcmp(routes[i].method, method) && route_match(routes[i].pattern, path, caps)) {
                        *ret_path_known = true;
                        for (size_t k = 0; k < API_MAX_PARAMS; k++) {
                                free(caps[k]);
                                caps[k] = NULL;
                        }
                }
        return NULL;
}
