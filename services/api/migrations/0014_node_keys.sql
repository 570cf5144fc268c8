-- Signed messages on the bus (docs/CONTRACTS.md): the one X25519 key a run's
-- secrets are sealed to. Set once, by the provisioning transition that the
-- run's assigned node applied; a later, different key is refused and never
-- sealed to.
ALTER TABLE api.runs ADD COLUMN run_public_key text;
