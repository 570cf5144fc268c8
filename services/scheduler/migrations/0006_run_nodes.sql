-- Which node each run is assigned to, for the services that check that only
-- that node reports the run (docs/CONTRACTS.md, signed messages on the bus):
-- the api (status, secrets), evidence (events, artifacts) and billing
-- (usage). node_id is NULL while the run waits for a node (again, after an
-- eviction). Like node_status, the view runs with its owner's rights.
CREATE VIEW scheduler.run_nodes AS
SELECT run_id, state, node_id FROM scheduler.runs;

GRANT USAGE ON SCHEMA scheduler TO paddock_evidence, paddock_billing;
GRANT SELECT ON scheduler.run_nodes TO paddock_api, paddock_evidence, paddock_billing;
