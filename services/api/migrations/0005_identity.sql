-- Service accounts are users rows of kind 'service': they hold team roles
-- through team_members like people, so the one RBAC path covers them, but
-- they never log in (auth.c only accepts kind 'user' and their
-- password_hash is not a valid scrypt encoding).
ALTER TABLE api.users ADD COLUMN kind text NOT NULL DEFAULT 'user'
    CHECK (kind IN ('user', 'service'));

-- API tokens of service accounts have an id (to list and revoke one without
-- its hash) and a name; login tokens leave both NULL.
ALTER TABLE api.tokens ADD COLUMN id uuid UNIQUE;
ALTER TABLE api.tokens ADD COLUMN name text;
