-- Team secrets (encrypted at rest, lib/crypto/secretbox.h) and approvals.

-- One random data key per tenant, stored only wrapped by the master key
-- (PADDOCK_MASTER_KEY; aad = tenant id). Rotating the master key rewraps these
-- rows and touches no secret.
CREATE TABLE api.tenant_keys (
    tenant_id    uuid PRIMARY KEY REFERENCES api.tenants(id),
    wrapped_key  bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Values sealed with the tenant's data key, aad = tenant id/team id/name, so a
-- row copied to another team, tenant or name does not open. Never a plaintext.
CREATE TABLE api.team_secrets (
    team_id     uuid NOT NULL REFERENCES api.teams(id) ON DELETE CASCADE,
    name        text NOT NULL CHECK (name ~ '^[A-Z_][A-Z0-9_]{0,63}$'),
    tenant_id   uuid NOT NULL REFERENCES api.tenants(id),
    sealed      bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  uuid NOT NULL REFERENCES api.users(id),
    PRIMARY KEY (team_id, name)
);

-- Approvals asked by a run (egress "ask" today). id is the runner's
-- approval_id; tenant and team come from the run, never from the event.
CREATE TABLE api.approvals (
    id          text PRIMARY KEY,
    run_id      uuid NOT NULL REFERENCES api.runs(id),
    tenant_id   uuid NOT NULL REFERENCES api.tenants(id),
    team_id     uuid NOT NULL REFERENCES api.teams(id),
    kind        text NOT NULL,
    what        jsonb NOT NULL,
    rule        text,
    deadline    timestamptz NOT NULL,
    status      text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'approved', 'denied', 'expired')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    decided_by  text,
    decided_at  timestamptz,
    comment     text
);
CREATE INDEX approvals_tenant_status ON api.approvals (tenant_id, status, created_at);
CREATE INDEX approvals_run ON api.approvals (run_id);
