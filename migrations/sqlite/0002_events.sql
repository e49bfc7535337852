-- Persisted events (history) and their associations with subscribed users (personal history).
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id TEXT NOT NULL,
    mid TEXT NOT NULL,
    channel TEXT NOT NULL,
    event TEXT NOT NULL,
    owner_id TEXT,
    timestamp DOUBLE PRECISION NOT NULL,
    data TEXT NOT NULL,
    created BIGINT NOT NULL
);
-- Associations refer to events by mid; personal history joins on it.
CREATE UNIQUE INDEX IF NOT EXISTS events_app_mid ON events (app_id, mid);
-- Channel history: a channel's events, newest first.
CREATE INDEX IF NOT EXISTS events_app_channel_id ON events (app_id, channel, id);
-- Recent events of an app, every channel.
CREATE INDEX IF NOT EXISTS events_app_id ON events (app_id, id);

CREATE TABLE IF NOT EXISTS associations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    mid TEXT NOT NULL,
    created BIGINT NOT NULL
);
-- Personal history: a user's associations, newest first.
CREATE INDEX IF NOT EXISTS associations_app_user_id ON associations (app_id, user_id, id);
