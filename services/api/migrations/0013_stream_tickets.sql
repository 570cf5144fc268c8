-- Websocket stream tickets (POST /v1/runs/{id}/stream-ticket): browsers cannot
-- set headers on a websocket, and a token must never travel in a URL, so a
-- viewer trades its token for a ticket: opaque, short-lived, single-use,
-- bound to its user, tenant and run, stored as its SHA-256 only.
-- token_sha256 is the token that asked for it: the stream lives only as long
-- as that token does (revoked, expired, user disabled: the stream ends).
CREATE TABLE api.stream_tickets (
    ticket_sha256 text PRIMARY KEY CHECK (ticket_sha256 ~ '^[0-9a-f]{64}$'),
    tenant_id     uuid NOT NULL REFERENCES api.tenants(id) ON DELETE CASCADE,
    user_id       uuid NOT NULL,
    run_id        uuid NOT NULL,
    token_sha256  text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz
);
CREATE INDEX stream_tickets_expires ON api.stream_tickets (expires_at);

ALTER TABLE api.stream_tickets ENABLE ROW LEVEL SECURITY;
ALTER TABLE api.stream_tickets FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api.stream_tickets
    USING (tenant_id = NULLIF(current_setting('paddock.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('paddock.tenant_id', true), '')::uuid);

-- The websocket upgrade knows no tenant before the ticket says it, like a
-- bearer token (api.token_caller): redeeming crosses tenants, so it is
-- SECURITY DEFINER and executable by the api role only. Any presentation
-- uses the ticket up (a ticket shown for the wrong run is gone as well);
-- an expired or used one returns nothing. Used and expired rows go as
-- tickets are redeemed.
CREATE FUNCTION api.stream_ticket_redeem(ticket_sha256 text)
    RETURNS TABLE (tenant_id uuid, user_id uuid, run_id uuid, token_sha256 text)
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS
$fn$
    WITH gone AS (
        DELETE FROM api.stream_tickets s
        WHERE s.expires_at < now() - interval '1 hour'
    ), used AS (
        UPDATE api.stream_tickets s SET used_at = now()
        WHERE s.ticket_sha256 = stream_ticket_redeem.ticket_sha256 AND s.used_at IS NULL
        RETURNING s.tenant_id, s.user_id, s.run_id, s.token_sha256, s.expires_at
    )
    SELECT u.tenant_id, u.user_id, u.run_id, u.token_sha256 FROM used u WHERE u.expires_at > now()
$fn$;

REVOKE ALL ON FUNCTION api.stream_ticket_redeem(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api.stream_ticket_redeem(text) TO paddock_api;
