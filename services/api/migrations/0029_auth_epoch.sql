-- The api's token cache (services/api/auth.c; docs/CONTRACTS.md "Bearer
-- tokens"): each api worker keeps what a token's lookup found, and every
-- request that uses a cached entry checks, in its one round trip, that the
-- auth epoch is still the one the entry was read at. Any change to what
-- api.token_caller reads (a token revoked or deleted, a user disabled,
-- deleted or given other roles, a password change, a service account
-- deleted, a tenant renamed or removed) moves the epoch in the same
-- transaction, so the next request of every worker does the full lookup
-- again. One row, no tenant data: readable by the api without a tenant.
CREATE TABLE api.auth_epoch (
    id integer PRIMARY KEY CHECK (id = 1),
    n  bigint NOT NULL
);
INSERT INTO api.auth_epoch VALUES (1, 1);
REVOKE ALL ON api.auth_epoch FROM PUBLIC;
GRANT SELECT ON api.auth_epoch TO paddock_api;

CREATE FUNCTION api.auth_epoch_bump() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS
$fn$
BEGIN
    UPDATE api.auth_epoch SET n = n + 1 WHERE id = 1;
    RETURN NULL;
END
$fn$;
REVOKE ALL ON FUNCTION api.auth_epoch_bump() FROM PUBLIC;

-- per statement: one bump however many rows, also for rows a cascade removes
CREATE TRIGGER tokens_auth_epoch AFTER UPDATE OR DELETE OR TRUNCATE ON api.tokens
    FOR EACH STATEMENT EXECUTE FUNCTION api.auth_epoch_bump();
CREATE TRIGGER users_auth_epoch AFTER UPDATE OR DELETE OR TRUNCATE ON api.users
    FOR EACH STATEMENT EXECUTE FUNCTION api.auth_epoch_bump();
CREATE TRIGGER tenants_auth_epoch AFTER UPDATE OR DELETE OR TRUNCATE ON api.tenants
    FOR EACH STATEMENT EXECUTE FUNCTION api.auth_epoch_bump();

-- api.token_caller plus what the cache needs, in one call: the auditor role
-- (api.user_is_auditor's probe folded in), the token's expiry (µs since the
-- epoch) and the auth epoch, all read in the statement's one snapshot.
-- Same filter and privileges as api.token_caller (0016).
CREATE FUNCTION api.token_caller_epoch(token_sha256 text)
    RETURNS TABLE (user_id uuid, username text, tenant_id uuid, tenant_name text, tenant_admin boolean,
                   password_change_required boolean, auditor boolean, expires_us bigint, epoch bigint)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS
$fn$
BEGIN
    RETURN QUERY
    SELECT u.id, u.username, t.id, t.name, 'tenant_admin' = ANY (u.tenant_roles), u.password_change_required,
           'auditor' = ANY (u.tenant_roles), (extract(epoch FROM k.expires_at) * 1000000)::bigint,
           (SELECT e.n FROM api.auth_epoch e WHERE e.id = 1)
    FROM api.tokens k
    JOIN api.users u ON u.id = k.user_id AND u.tenant_id = k.tenant_id
    JOIN api.tenants t ON t.id = k.tenant_id
    WHERE k.token_sha256 = token_caller_epoch.token_sha256 AND k.revoked_at IS NULL AND k.expires_at > now()
      AND NOT u.disabled;
END
$fn$;
REVOKE ALL ON FUNCTION api.token_caller_epoch(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api.token_caller_epoch(text) TO paddock_api;
