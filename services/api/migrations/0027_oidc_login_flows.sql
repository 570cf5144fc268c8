-- The dashboard's OIDC sign-in by the authorization-code flow with PKCE
-- (services/api/oidc_flow.c, docs/CONTRACTS.md "OIDC login"): one row per
-- sign-in started, between GET /v1/auth/oidc/authorize and its callback.
-- Nothing in it is secret: the state and the browser's flow cookie are kept
-- as SHA-256 only, and the PKCE verifier and the nonce are derived from the
-- cookie's secret, which only the browser holds. A callback deletes its row
-- (single use); rows older than expires_at are never accepted and go when
-- the tenant's next sign-in starts.
CREATE TABLE api.oidc_login_flows (
    state_sha256   text PRIMARY KEY CHECK (state_sha256 ~ '^[0-9a-f]{64}$'),
    tenant_id      uuid NOT NULL REFERENCES api.tenants(id) ON DELETE CASCADE,
    browser_sha256 text NOT NULL CHECK (browser_sha256 ~ '^[0-9a-f]{64}$'),
    token_endpoint text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL
);
CREATE INDEX oidc_login_flows_expires ON api.oidc_login_flows (tenant_id, expires_at);

ALTER TABLE api.oidc_login_flows ENABLE ROW LEVEL SECURITY;
ALTER TABLE api.oidc_login_flows FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api.oidc_login_flows
    USING (tenant_id = NULLIF(current_setting('paddock.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('paddock.tenant_id', true), '')::uuid);
