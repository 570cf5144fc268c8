-- Failed logins, for the per-user and per-source limits (ratelimit.c), in the
-- database so that every api worker and replica counts the same failures.
-- A key is a truncated SHA-256 of "user\0<tenant>\0<username>" or
-- "ip\0<address>": the table holds no user name, tenant or address, so it
-- is not tenant-owned and needs no row-level security.
CREATE TABLE api.login_failures (
    key bytea NOT NULL CHECK (length(key) = 16),
    at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX login_failures_key_at ON api.login_failures (key, at DESC);
CREATE INDEX login_failures_at ON api.login_failures (at);
