-- The audit outbox (audit_api.c, docs/CONTRACTS.md "Audit chain"). A
-- control-plane write queues its AuditRecord here in its own transaction, so
-- the record exists exactly when the write does; the relay of the api workers
-- produces queued records on paddock.audit in order and deletes them once the
-- broker acknowledged them (evidence drops a redelivered message id).
CREATE TABLE api.audit_outbox (
    id         bigserial PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES api.tenants(id),
    message_id uuid NOT NULL UNIQUE,
    record     bytea NOT NULL,      -- the encoded paddock.v1.AuditRecord
    created_at timestamptz NOT NULL DEFAULT now()
);

-- wakes the relays (LISTEN paddock_audit_outbox) when a write commits
CREATE FUNCTION api.audit_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS
$fn$
BEGIN
    PERFORM pg_notify('paddock_audit_outbox', '');
    RETURN NULL;
END
$fn$;
CREATE TRIGGER audit_outbox_notify AFTER INSERT ON api.audit_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION api.audit_outbox_notify();

ALTER TABLE api.audit_outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE api.audit_outbox FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api.audit_outbox
    USING (tenant_id = NULLIF(current_setting('paddock.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('paddock.tenant_id', true), '')::uuid);

-- The relay works across tenants, through these two only. The caller holds
-- the transaction: claimed rows stay locked until it deletes them or ends.
CREATE FUNCTION api.audit_outbox_claim(max_rows integer)
    RETURNS TABLE (id bigint, tenant_id uuid, record bytea)
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS
$fn$
    SELECT o.id, o.tenant_id, o.record FROM api.audit_outbox o ORDER BY o.id LIMIT max_rows FOR UPDATE
$fn$;

CREATE FUNCTION api.audit_outbox_done(ids bigint[]) RETURNS void
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS
$fn$
    DELETE FROM api.audit_outbox WHERE id = ANY (ids)
$fn$;

REVOKE ALL ON FUNCTION api.audit_outbox_claim(integer), api.audit_outbox_done(bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION api.audit_outbox_claim(integer), api.audit_outbox_done(bigint[]) TO paddock_api;
