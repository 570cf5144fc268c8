-- The scheduler runs as paddock_scheduler: data access to its own schema
-- only, never DDL, nothing in the api, evidence or billing schemas. Its
-- tables hold placement state (run and team ids, node, state, limits) that
-- the scheduler must see across tenants to place work fairly; no user-facing
-- path reads them, so they carry no tenant policy (docs/CONTRACTS.md).
GRANT USAGE ON SCHEMA scheduler TO paddock_scheduler;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA scheduler TO paddock_scheduler;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA scheduler TO paddock_scheduler;
REVOKE INSERT, UPDATE, DELETE ON scheduler.schema_migrations FROM paddock_scheduler;
ALTER DEFAULT PRIVILEGES IN SCHEMA scheduler GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO paddock_scheduler;
ALTER DEFAULT PRIVILEGES IN SCHEMA scheduler GRANT USAGE, SELECT ON SEQUENCES TO paddock_scheduler;
