-- One outbox for everything the api sends (issue 10 §2, docs/CONTRACTS.md
-- "The api's outbox"): run requests, run control (cancels, approval
-- decisions, sealed secrets) and audit records. A handler inserts the
-- encoded message here in the transaction of the state change it follows
-- from, so the message exists exactly when the change does; the one relay
-- (outbox_relay.c) produces rows in id order and deletes them once the
-- broker acknowledged them. Replaces api.audit_outbox (0009), whose queued
-- records move here first, in their order.
CREATE TABLE api.outbox (
    id         bigserial PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES api.tenants(id),
    topic      text NOT NULL CHECK (topic IN ('paddock.runs.requested', 'paddock.runs.control', 'paddock.audit')),
    key        text NOT NULL,       -- the Kafka key: run id (runs.*), tenant id (audit)
    value      bytea NOT NULL,      -- the encoded message; sealed secrets only ever sealed
    created_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO api.outbox (tenant_id, topic, key, value, created_at)
    SELECT tenant_id, 'paddock.audit', tenant_id::text, record, created_at FROM api.audit_outbox ORDER BY id;

DROP FUNCTION api.audit_outbox_claim(integer);
DROP FUNCTION api.audit_outbox_done(bigint[]);
DROP TABLE api.audit_outbox;
DROP FUNCTION api.audit_outbox_notify();

-- wakes the relays (LISTEN paddock_outbox) when a transaction that queued
-- something commits (a NOTIFY is delivered at COMMIT, never on ROLLBACK)
CREATE FUNCTION api.outbox_notify() RETURNS trigger LANGUAGE plpgsql AS
$fn$
BEGIN
    PERFORM pg_notify('paddock_outbox', '');
    RETURN NULL;
END
$fn$;
CREATE TRIGGER outbox_notify AFTER INSERT ON api.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION api.outbox_notify();

ALTER TABLE api.outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE api.outbox FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api.outbox
    USING (tenant_id = NULLIF(current_setting('paddock.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('paddock.tenant_id', true), '')::uuid);

-- The relay works across tenants, through these two only. The caller holds
-- the transaction: claimed rows stay locked until it deletes them or ends.
CREATE FUNCTION api.outbox_claim(max_rows integer)
    RETURNS TABLE (id bigint, topic text, key text, value bytea)
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS
$fn$
    SELECT o.id, o.topic, o.key, o.value FROM api.outbox o ORDER BY o.id LIMIT max_rows FOR UPDATE
$fn$;

CREATE FUNCTION api.outbox_done(ids bigint[]) RETURNS void
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS
$fn$
    DELETE FROM api.outbox WHERE id = ANY (ids)
$fn$;

REVOKE ALL ON FUNCTION api.outbox_claim(integer), api.outbox_done(bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api.outbox_claim(integer), api.outbox_done(bigint[]) TO paddock_api;
