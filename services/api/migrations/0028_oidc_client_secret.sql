-- OIDC confidential clients (services/api/oidc.c, oidc_flow.c; docs/CONTRACTS.md
-- "OIDC login"): the tenant's optional client secret, stored only sealed with
-- the tenant's data key like team secrets (services/api/secrets.c, aad
-- "<tenant id>/oidc/client_secret"), never in clear; and how a sign-in
-- authenticates at the token endpoint, read from the provider's discovery
-- document when the sign-in starts (token_endpoint_auth_methods_supported).
ALTER TABLE api.tenant_oidc ADD COLUMN client_secret_sealed bytea;
ALTER TABLE api.oidc_login_flows ADD COLUMN token_endpoint_auth text NOT NULL DEFAULT 'client_secret_basic'
    CHECK (token_endpoint_auth IN ('client_secret_basic', 'client_secret_post'));
