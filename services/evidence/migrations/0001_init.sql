-- Session history: every run event exactly once (docs/CONTRACTS.md "Database").
-- api reads this table for queries and never writes it.
CREATE TABLE evidence.run_events (
    run_id    uuid NOT NULL,
    seq       bigint NOT NULL,
    tenant_id uuid,
    team_id   uuid,
    ts        timestamptz NOT NULL,
    kind      text NOT NULL,
    actor     text,
    data      jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (run_id, seq)
);

-- Artifacts assembled, verified and stored in S3 (docs/CONTRACTS.md "Database").
CREATE TABLE evidence.artifacts (
    run_id       uuid NOT NULL,
    name         text NOT NULL,
    tenant_id    uuid NOT NULL,
    kind         text NOT NULL,
    size         bigint NOT NULL,
    sha256       text NOT NULL,
    s3_key       text NOT NULL,
    content_type text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, name)
);

-- Chunks of artifacts still being received; deleted in the transaction that
-- records the assembled artifact.
CREATE TABLE evidence.artifact_chunks (
    run_id      uuid NOT NULL,
    name        text NOT NULL,
    idx         integer NOT NULL,
    total       integer NOT NULL,
    tenant_id   uuid NOT NULL,
    data        bytea NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, name, idx)
);
