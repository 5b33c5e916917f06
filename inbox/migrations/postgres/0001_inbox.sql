-- One row per accepted event. Times are milliseconds since the Unix epoch, read from the
-- inbox's clock (not the database's), so tests can drive them.
CREATE TABLE IF NOT EXISTS mapping_webhooks_inbox (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    namespace   TEXT   NOT NULL,
    event_id    TEXT   NOT NULL,
    event_type  TEXT   NOT NULL,
    delivery_id TEXT   NOT NULL,
    signed_at   BIGINT NOT NULL,
    secret      TEXT   NOT NULL,
    signature   TEXT   NOT NULL,
    body        BYTEA  NOT NULL,
    received_at BIGINT NOT NULL,
    state       TEXT   NOT NULL CHECK (state IN ('pending', 'running', 'done', 'dead')),
    attempts    BIGINT NOT NULL DEFAULT 0,
    due_at      BIGINT NOT NULL,
    lease       BIGINT,
    last_error  TEXT,
    finished_at BIGINT,
    UNIQUE (namespace, event_id)
);
CREATE INDEX IF NOT EXISTS mapping_webhooks_inbox_due
    ON mapping_webhooks_inbox (namespace, due_at) WHERE state IN ('pending', 'running');
CREATE INDEX IF NOT EXISTS mapping_webhooks_inbox_state
    ON mapping_webhooks_inbox (namespace, state, id);
