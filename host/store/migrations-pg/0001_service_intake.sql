-- The service's API keys and intake log on PostgreSQL: the same tables as
-- SQLite's migration 0005, with PostgreSQL's types.
CREATE TABLE api_keys (
    hash       TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    label      TEXT NOT NULL,
    prefix     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE TABLE intake (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant      TEXT NOT NULL,
    key         TEXT NOT NULL,
    kind        TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    body        TEXT NOT NULL,
    lead_ids    TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    state       TEXT NOT NULL,
    status_code BIGINT,
    result      TEXT,
    done_at     BIGINT,
    UNIQUE (tenant, key)
);
CREATE INDEX intake_pending ON intake (state, tenant, id);
