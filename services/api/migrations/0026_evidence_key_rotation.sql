-- Evidence key rotation (issue 14 §2, docs/CONTRACTS.md "Reviews and the
-- signed evidence bundle"): POST /v1/tenant/keys/rotate retires the active
-- key and makes a new one; the retired key stays published with its
-- validity window (created_at .. retired_at) so bundles it signed still
-- verify offline.
ALTER TABLE api.evidence_keys ADD COLUMN retired_at timestamptz;
ALTER TABLE api.evidence_keys ADD CONSTRAINT evidence_keys_retired_at
    CHECK ((status = 'retired') = (retired_at IS NOT NULL));
