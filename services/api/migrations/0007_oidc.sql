-- OIDC login per tenant (services/api/oidc.c, docs/CONTRACTS.md "OIDC login").
-- One identity provider per tenant, configured by its tenant_admin. Nothing
-- secret is stored: the provider's keys are public and fetched from jwks_url.
CREATE TABLE api.tenant_oidc (
    tenant_id      uuid PRIMARY KEY REFERENCES api.tenants(id),
    issuer         text NOT NULL,
    audience       text NOT NULL,
    jwks_url       text NOT NULL,
    clock_skew_s   integer NOT NULL DEFAULT 60 CHECK (clock_skew_s BETWEEN 0 AND 600),
    -- the claim naming the Paddock user; "sub" when the token lacks it
    username_claim text NOT NULL DEFAULT 'preferred_username',
    -- lib/auth/oidc_roles.h format, validated by the api before it is stored
    role_mapping   jsonb NOT NULL,
    enabled        boolean NOT NULL DEFAULT true,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    updated_by     uuid NOT NULL REFERENCES api.users(id),
    -- the provider's key set as last fetched (public keys), shared by every
    -- api worker and replica; NULL until the first login after a change
    jwks_doc        text,
    jwks_fetched_at timestamptz
);

-- Users provisioned by an OIDC login are users rows of kind 'oidc': no
-- password (password_hash is not a valid scrypt encoding, and password login
-- only accepts kind 'user'), and bound to the provider's subject so that a
-- recycled user name at the provider cannot take over someone else's user.
ALTER TABLE api.users DROP CONSTRAINT users_kind_check;
ALTER TABLE api.users ADD CONSTRAINT users_kind_check CHECK (kind IN ('user', 'service', 'oidc'));
ALTER TABLE api.users ADD COLUMN oidc_issuer text;
ALTER TABLE api.users ADD COLUMN oidc_subject text;
ALTER TABLE api.users ADD CONSTRAINT users_oidc_identity CHECK (
    (kind = 'oidc') = (oidc_issuer IS NOT NULL AND oidc_subject IS NOT NULL));

ALTER TABLE api.tenant_oidc ENABLE ROW LEVEL SECURITY;
ALTER TABLE api.tenant_oidc FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api.tenant_oidc USING (tenant_id = NULLIF(current_setting('paddock.tenant_id', true), '')::uuid) WITH CHECK (tenant_id = NULLIF(current_setting('paddock.tenant_id', true), '')::uuid);
