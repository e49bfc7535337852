CREATE TABLE IF NOT EXISTS apps (
    id BIGSERIAL PRIMARY KEY,
    ident TEXT NOT NULL UNIQUE,
    app_key TEXT NOT NULL UNIQUE,
    secret TEXT NOT NULL,
    name TEXT NOT NULL UNIQUE,
    enabled BIGINT NOT NULL DEFAULT 1,
    settings TEXT NOT NULL DEFAULT '{}',
    description TEXT,
    created BIGINT NOT NULL,
    modified BIGINT NOT NULL
);
