-- The highest event id removed by retention (one row): a subscriber resuming below it is told
-- its events are gone instead of silently missing them.
CREATE TABLE outbox_horizon (
    singleton      BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    pruned_through BIGINT  NOT NULL
);
INSERT INTO outbox_horizon (singleton, pruned_through) VALUES (TRUE, 0);
-- Retention deletes by age.
CREATE INDEX user_events_event_time ON user_events (event_time);
