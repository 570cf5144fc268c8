-- Policy packs (issue 12 §1, docs/CONTRACTS.md "Policy engine"): a seventh
-- catalog kind, `policy-packs` {description?, rules: [{match, action}]},
-- approved by a security_admin like the others; a definition adds approved
-- packs after its own rules with spec.policy.packs.
ALTER TABLE api.catalog_items DROP CONSTRAINT catalog_items_kind_check;
ALTER TABLE api.catalog_items ADD CONSTRAINT catalog_items_kind_check
    CHECK (kind IN ('images', 'skills', 'prompt-templates', 'egress-profiles', 'connectors', 'models',
                    'policy-packs'));
