-- api schema: tenants, identity, sandbox definitions, runs.
-- Every tenant-owned row carries tenant_id so that row-level security keyed on
-- the per-connection setting paddock.tenant_id (set by db_open) can be enabled
-- later without changing a query.

CREATE TABLE api.tenants (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api.users (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES api.tenants(id),
    username      text NOT NULL,
    -- scrypt$N$r$p$salt_hex$hash_hex, never the password
    password_hash text NOT NULL,
    -- tenant-wide grants (tenant_admin); team grants live in team_members
    tenant_roles  text[] NOT NULL DEFAULT '{}',
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, username)
);

CREATE TABLE api.teams (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES api.tenants(id),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name)
);

CREATE TABLE api.team_members (
    team_id     uuid NOT NULL REFERENCES api.teams(id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES api.users(id) ON DELETE CASCADE,
    tenant_id   uuid NOT NULL REFERENCES api.tenants(id),
    roles       text[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user ON api.team_members (user_id);

-- Only the SHA-256 of a token is stored: a database dump cannot be replayed.
CREATE TABLE api.tokens (
    token_sha256 text PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES api.users(id) ON DELETE CASCADE,
    tenant_id    uuid NOT NULL REFERENCES api.tenants(id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz
);

CREATE TABLE api.sandboxes (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES api.tenants(id),
    team_id     uuid NOT NULL REFERENCES api.teams(id),
    name        text NOT NULL,
    draft_spec  jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  uuid NOT NULL REFERENCES api.users(id),
    UNIQUE (tenant_id, name)
);

-- Immutable once inserted: nothing updates or deletes a published version.
CREATE TABLE api.sandbox_versions (
    sandbox_id    uuid NOT NULL REFERENCES api.sandboxes(id),
    tenant_id     uuid NOT NULL REFERENCES api.tenants(id),
    version       integer NOT NULL CHECK (version >= 1),
    spec          jsonb NOT NULL,
    spec_sha256   text NOT NULL,
    published_at  timestamptz NOT NULL DEFAULT now(),
    published_by  uuid NOT NULL REFERENCES api.users(id),
    PRIMARY KEY (sandbox_id, version)
);

CREATE TABLE api.runs (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES api.tenants(id),
    team_id       uuid NOT NULL REFERENCES api.teams(id),
    sandbox_id    uuid NOT NULL REFERENCES api.sandboxes(id),
    version       integer NOT NULL,
    status        text NOT NULL DEFAULT 'queued',
    -- seq of the last applied status event: statuses only move forward
    status_seq    bigint NOT NULL DEFAULT 0,
    node_id       text,
    exit_code     integer,
    reason        text,
    created_by    uuid NOT NULL REFERENCES api.users(id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    scheduled_at  timestamptz,
    started_at    timestamptz,
    ended_at      timestamptz,
    FOREIGN KEY (sandbox_id, version) REFERENCES api.sandbox_versions (sandbox_id, version)
);
CREATE INDEX runs_tenant_created ON api.runs (tenant_id, created_at DESC);
