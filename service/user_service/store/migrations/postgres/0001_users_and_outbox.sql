-- Users, and the outbox: one row per committed change, written in the same transaction.
CREATE TABLE users (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- a sequence: ids are never reused
    name        TEXT        NOT NULL,
    email       TEXT        NOT NULL UNIQUE,
    create_time TIMESTAMPTZ NOT NULL,
    update_time TIMESTAMPTZ NOT NULL,
    version     BIGINT      NOT NULL
);

-- event_id is allocated while the transaction holds the outbox lock (see postgres.py), so
-- ids are handed out in commit order: a reader that sees event N has seen every event < N.
CREATE TABLE user_events (
    event_id    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type        TEXT        NOT NULL CHECK (type IN ('created', 'updated', 'deleted')),
    event_time  TIMESTAMPTZ NOT NULL,
    user_id     BIGINT      NOT NULL,
    name        TEXT        NOT NULL,
    email       TEXT        NOT NULL,
    create_time TIMESTAMPTZ NOT NULL,
    update_time TIMESTAMPTZ NOT NULL,
    version     BIGINT      NOT NULL
);
