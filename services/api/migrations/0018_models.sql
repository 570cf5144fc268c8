-- Models the model gateway may call (issue 11 §3, docs/CONTRACTS.md "Model
-- catalog"): a sixth catalog kind, `models` {description?, provider,
-- upstream, key_secret, models: [{id, usd_per_mtok}]}, approved by a
-- security_admin like the others. A run records the team secrets its model
-- routes name (runs.c, at launch), so sealing (sealing.c) puts exactly the
-- keys of the routes the runner-agent was sent into the bundle, whatever
-- happens to the catalog item afterwards.
ALTER TABLE api.catalog_items DROP CONSTRAINT catalog_items_kind_check;
ALTER TABLE api.catalog_items ADD CONSTRAINT catalog_items_kind_check
    CHECK (kind IN ('images', 'skills', 'prompt-templates', 'egress-profiles', 'connectors', 'models'));

ALTER TABLE api.runs ADD COLUMN model_key_secrets text[] NOT NULL DEFAULT '{}';
