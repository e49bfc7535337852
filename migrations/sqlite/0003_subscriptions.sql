-- Personal-channel aliases: user_id is interested in channel event.
CREATE TABLE IF NOT EXISTS subscriptions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    event TEXT NOT NULL,
    created BIGINT NOT NULL,
    modified BIGINT NOT NULL
);
-- One record per pair: creating it again returns the existing one.
CREATE UNIQUE INDEX IF NOT EXISTS subscriptions_app_user_event
    ON subscriptions (app_id, user_id, event);
-- Who is subscribed to a channel: association fan-out on every persisted publish.
CREATE INDEX IF NOT EXISTS subscriptions_app_event_user ON subscriptions (app_id, event, user_id);
