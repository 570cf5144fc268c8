-- The bearer-token lookup runs before every authenticated request. As a
-- LANGUAGE sql SECURITY DEFINER function it is never inlined, and
-- PostgreSQL 15 parses and plans its body again at every call; in PL/pgSQL
-- the plan of its query is kept for the session (a pooled connection), so
-- a lookup is an index probe. Same signature, filter and privileges
-- (0010_accounts.sql): nothing is cached across calls, so a revoked or
-- expired token, a disabled user or a removed tenant_admin role still
-- stops working at the next request.
CREATE OR REPLACE FUNCTION api.token_caller(token_sha256 text)
    RETURNS TABLE (user_id uuid, username text, tenant_id uuid, tenant_name text, tenant_admin boolean,
                   password_change_required boolean)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS
$fn$
BEGIN
    RETURN QUERY
    SELECT u.id, u.username, t.id, t.name, 'tenant_admin' = ANY (u.tenant_roles), u.password_change_required
    FROM api.tokens k
    JOIN api.users u ON u.id = k.user_id AND u.tenant_id = k.tenant_id
    JOIN api.tenants t ON t.id = k.tenant_id
    WHERE k.token_sha256 = token_caller.token_sha256 AND k.revoked_at IS NULL AND k.expires_at > now()
      AND NOT u.disabled;
END
$fn$;
