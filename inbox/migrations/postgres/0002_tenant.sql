-- A stored delivery keeps its tenant ('' for none), and an event is unique per
-- (namespace, tenant, eventId): two tenants may send the same eventId. Every row is
-- kept (its tenant ''); the constraint of 0001 (named by Postgres) is replaced.
ALTER TABLE mapping_webhooks_inbox ADD COLUMN tenant TEXT NOT NULL DEFAULT '';
ALTER TABLE mapping_webhooks_inbox
    DROP CONSTRAINT mapping_webhooks_inbox_namespace_event_id_key;
ALTER TABLE mapping_webhooks_inbox
    ADD CONSTRAINT mapping_webhooks_inbox_namespace_tenant_event_id_key
    UNIQUE (namespace, tenant, event_id);
