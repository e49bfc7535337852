-- REST login sessions. Only a SHA-256 of each token is kept, so the table does not hold
-- usable credentials.
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    created BIGINT NOT NULL
);
-- Purging expired sessions.
CREATE INDEX IF NOT EXISTS sessions_created ON sessions (created);
