-- Offline-delivery targets: kind is web, smtp, apn or web_push; target is the URL, email,
-- token or endpoint; p256dh and auth are set for web_push only.
CREATE TABLE IF NOT EXISTS targets (
    id BIGSERIAL PRIMARY KEY,
    app_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    event TEXT NOT NULL,
    p256dh TEXT,
    auth TEXT,
    created BIGINT NOT NULL
);
-- One record per (kind, target, channel): creating it again returns the existing one.
CREATE UNIQUE INDEX IF NOT EXISTS targets_app_kind_target_event
    ON targets (app_id, kind, target, event);
-- Targets of the channels of a publish.
CREATE INDEX IF NOT EXISTS targets_app_event ON targets (app_id, event);
