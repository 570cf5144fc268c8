-- Workload identity (issue 12 §6, docs/CONTRACTS.md "Workload identity"): the
-- RS256 keys with which the api, as an OIDC issuer per tenant, signs the
-- short-lived tokens of runs. The private key is stored only sealed with the
-- master key (lib/crypto/secretbox.h, aad "paddock-workload-key:<tenant
-- id>/<kid>", so a row copied to another tenant or kid does not open); the
-- public JWK is what GET .../oidc/jwks publishes. The newest key of a tenant
-- signs; a key stays published for one rotation period after a newer one
-- replaced it (workload_identity.c).
CREATE TABLE api.workload_keys (
    tenant_id      uuid NOT NULL REFERENCES api.tenants(id) ON DELETE CASCADE,
    kid            text NOT NULL CHECK (kid ~ '^[A-Za-z0-9_-]{1,64}$'),
    public_jwk     jsonb NOT NULL,
    sealed_private bytea NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, kid)
);
CREATE INDEX workload_keys_newest ON api.workload_keys (tenant_id, created_at DESC);

ALTER TABLE api.workload_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api.workload_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api.workload_keys
    USING (tenant_id = NULLIF(current_setting('paddock.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('paddock.tenant_id', true), '')::uuid);
