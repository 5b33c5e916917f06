-- Each statement that stores new deliveries notifies the channel `mapping_webhooks_inbox`
-- once per namespace it stored into, delivered when it commits, so an idle worker in
-- any process starts at once (`LISTEN`), not at its next poll. The payload is the
-- namespace's first 200 characters (a notification's payload is limited in size); a
-- wake-up meant for another namespace only costs the listener one claim.
CREATE OR REPLACE FUNCTION mapping_webhooks_inbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mapping_webhooks_inbox', left(ns, 200))
    FROM (SELECT DISTINCT namespace AS ns FROM mapping_webhooks_inbox_new) AS stored;
    RETURN NULL;
END
$$;
CREATE TRIGGER mapping_webhooks_inbox_notify
    AFTER INSERT ON mapping_webhooks_inbox
    REFERENCING NEW TABLE AS mapping_webhooks_inbox_new
    FOR EACH STATEMENT EXECUTE FUNCTION mapping_webhooks_inbox_notify();
