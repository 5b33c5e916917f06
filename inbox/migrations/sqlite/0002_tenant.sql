-- A stored delivery keeps its tenant ('' for none), and an event is unique per
-- (namespace, tenant, eventId): two tenants may send the same eventId. SQLite cannot
-- drop a table constraint, so the table is rebuilt: every row is copied with its id,
-- the AUTOINCREMENT counter is carried over (an id is never given twice, even one of a
-- pruned row), and the indexes are made again.
CREATE TABLE mapping_webhooks_inbox_0002 (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace   TEXT    NOT NULL,
    tenant      TEXT    NOT NULL DEFAULT '',
    event_id    TEXT    NOT NULL,
    event_type  TEXT    NOT NULL,
    delivery_id TEXT    NOT NULL,
    signed_at   INTEGER NOT NULL,
    secret      TEXT    NOT NULL,
    signature   TEXT    NOT NULL,
    body        BLOB    NOT NULL,
    received_at INTEGER NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('pending', 'running', 'done', 'dead')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    due_at      INTEGER NOT NULL,
    lease       INTEGER,
    last_error  TEXT,
    finished_at INTEGER,
    UNIQUE (namespace, tenant, event_id)
);
INSERT INTO mapping_webhooks_inbox_0002
    (id, namespace, tenant, event_id, event_type, delivery_id, signed_at, secret, signature,
     body, received_at, state, attempts, due_at, lease, last_error, finished_at)
SELECT id, namespace, '', event_id, event_type, delivery_id, signed_at, secret, signature,
       body, received_at, state, attempts, due_at, lease, last_error, finished_at
  FROM mapping_webhooks_inbox;
DELETE FROM sqlite_sequence WHERE name = 'mapping_webhooks_inbox_0002';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'mapping_webhooks_inbox_0002', seq FROM sqlite_sequence
     WHERE name = 'mapping_webhooks_inbox';
DROP TABLE mapping_webhooks_inbox;
ALTER TABLE mapping_webhooks_inbox_0002 RENAME TO mapping_webhooks_inbox;
CREATE INDEX mapping_webhooks_inbox_due
    ON mapping_webhooks_inbox (namespace, due_at) WHERE state IN ('pending', 'running');
CREATE INDEX mapping_webhooks_inbox_state
    ON mapping_webhooks_inbox (namespace, state, id);
