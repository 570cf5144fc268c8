-- RBAC: role grants are validated by the api (routes.c); the database keeps
-- the same closed list so no path can store an unknown role.
ALTER TABLE api.team_members ADD CONSTRAINT team_members_roles_known CHECK (
    roles <@ ARRAY['tenant_admin', 'security_admin', 'sandbox_author', 'launcher',
                   'approver', 'reviewer', 'viewer']::text[]);
ALTER TABLE api.users ADD CONSTRAINT users_tenant_roles_known CHECK (
    tenant_roles <@ ARRAY['tenant_admin']::text[]);

-- Disabling a user revokes all its tokens in one statement.
CREATE INDEX tokens_user ON api.tokens (user_id) WHERE revoked_at IS NULL;
