-- One row per accepted event. Times are milliseconds since the Unix epoch, read from the
-- inbox's clock (not the database's), so tests can drive them.
CREATE TABLE IF NOT EXISTS mapping_webhooks_inbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace   TEXT    NOT NULL,
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
    UNIQUE (namespace, event_id)
);
CREATE INDEX IF NOT EXISTS mapping_webhooks_inbox_due
    ON mapping_webhooks_inbox (namespace, due_at) WHERE state IN ('pending', 'running');
CREATE INDEX IF NOT EXISTS mapping_webhooks_inbox_state
    ON mapping_webhooks_inbox (namespace, state, id);
