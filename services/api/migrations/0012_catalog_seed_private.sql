-- api.catalog_seed(t) sets paddock.tenant_id to any tenant it is given and
-- inserts there: executable by PUBLIC (the default for functions), it let the
-- api's role (or any role) write catalog items into another tenant, around
-- row-level security. Only the schema owner runs it now: this migration, and
-- the trigger seeding a new tenant, which becomes SECURITY DEFINER (owned by
-- the migrating role) so that creating a tenant as paddock_api (bootstrap)
-- still seeds it. A trigger function cannot be called on its own.
CREATE OR REPLACE FUNCTION api.catalog_seed_new_tenant() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    PERFORM api.catalog_seed(NEW.id);
    RETURN NULL;
END
$fn$;

REVOKE ALL ON FUNCTION api.catalog_seed(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION api.catalog_seed_new_tenant() FROM PUBLIC;
