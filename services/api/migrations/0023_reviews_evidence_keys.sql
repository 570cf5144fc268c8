-- Reviews of finished runs and the per-tenant evidence-signing keys (issue
-- 14 §1 and §2; docs/CONTRACTS.md "Reviews and the signed evidence bundle").
--
-- A review is written once and never changed (a later one supersedes it on
-- the run): outcome approve | reject | escalate; escalate names who takes it
-- over (`escalate_to`: a user id of the tenant or a role name). The run's
-- latest outcome is kept on the run as well (api.runs.review, {outcome, by,
-- at}), so the run object and the runs list show it without a join.
CREATE TABLE api.reviews (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES api.tenants(id),
    run_id      uuid NOT NULL REFERENCES api.runs(id) ON DELETE CASCADE,
    team_id     uuid NOT NULL REFERENCES api.teams(id),
    outcome     text NOT NULL CHECK (outcome IN ('approve', 'reject', 'escalate')),
    comment     text NOT NULL DEFAULT '',
    escalate_to text,
    reviewer    uuid NOT NULL REFERENCES api.users(id),
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK ((outcome = 'escalate') = (escalate_to IS NOT NULL))
);
CREATE INDEX reviews_run ON api.reviews (run_id, created_at);
ALTER TABLE api.runs ADD COLUMN review jsonb;

-- Ed25519 keys that sign evidence bundles' manifests, one current per
-- tenant, made on first use. The raw 32-byte private key is stored only
-- sealed with the master key (lib/crypto/secretbox.h, aad
-- "paddock-evidence-key:<tenant id>/<kid>", so a row copied to another tenant
-- or kid does not open); public_key is the base64 of the raw 32 bytes that
-- GET /v1/tenant/keys publishes. Keys are never deleted: an old bundle must
-- still verify against the published list.
CREATE TABLE api.evidence_keys (
    tenant_id      uuid NOT NULL REFERENCES api.tenants(id) ON DELETE CASCADE,
    kid            text NOT NULL CHECK (kid ~ '^[A-Za-z0-9_-]{1,64}$'),
    public_key     text NOT NULL,
    sealed_private bytea NOT NULL,
    status         text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retired')),
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, kid)
);
CREATE UNIQUE INDEX evidence_keys_one_active ON api.evidence_keys (tenant_id) WHERE status = 'active';

DO $rls$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['reviews', 'evidence_keys'] LOOP
        EXECUTE format('ALTER TABLE api.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE api.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON api.%I'
                       ' USING (tenant_id = NULLIF(current_setting(''paddock.tenant_id'', true), '''')::uuid)'
                       ' WITH CHECK (tenant_id = NULLIF(current_setting(''paddock.tenant_id'', true), '''')::uuid)', t);
    END LOOP;
END
$rls$;

-- a review's run event (kind "review", env.seq 0 "append") leaves through
-- the outbox on paddock.runs.events, signed by the api
ALTER TABLE api.outbox DROP CONSTRAINT outbox_topic_check;
ALTER TABLE api.outbox ADD CONSTRAINT outbox_topic_check
    CHECK (topic IN ('paddock.runs.requested', 'paddock.runs.control', 'paddock.audit', 'paddock.approvals',
                     'paddock.runs.events'));
