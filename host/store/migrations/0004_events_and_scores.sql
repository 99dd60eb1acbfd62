
CREATE TABLE lead_keys (
    tenant  TEXT NOT NULL,
    kind    TEXT NOT NULL,
    value   TEXT NOT NULL,
    lead_id TEXT NOT NULL REFERENCES leads(id),
    PRIMARY KEY (tenant, kind, value, lead_id)
) WITHOUT ROWID;
-- Keys are indexed in bulk before events are attached
-- (`score::catch_up_keys`): leads up to this rowid are indexed.
CREATE TABLE lead_keys_state (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    last_rowid INTEGER NOT NULL
);
INSERT INTO lead_keys_state (id, last_rowid) VALUES (1, 0);
CREATE TABLE events (
    tenant      TEXT NOT NULL,
    id          TEXT NOT NULL,
    kind        TEXT NOT NULL,
    at          INTEGER NOT NULL,
    category    TEXT,
    value       REAL NOT NULL DEFAULT 1,
    url         TEXT,
    email       TEXT,
    ref_lead    TEXT,
    ext_system  TEXT,
    ext_id      TEXT,
    lead_id     TEXT REFERENCES leads(id),
    payload     TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX events_lead ON events(lead_id, at);
-- Covers what scoring reads of recent events, newest first.
CREATE INDEX events_at ON events(tenant, at, lead_id, kind, category, value);
CREATE INDEX events_unattached ON events(tenant) WHERE lead_id IS NULL;
CREATE TABLE event_rejects (
    id          INTEGER PRIMARY KEY,
    tenant      TEXT NOT NULL,
    input       TEXT NOT NULL,
    line        INTEGER NOT NULL,
    field       TEXT NOT NULL,
    code        TEXT NOT NULL,
    message     TEXT NOT NULL,
    raw         TEXT NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE TABLE scores (
    lead_id     TEXT PRIMARY KEY REFERENCES leads(id),
    tenant      TEXT NOT NULL,
    total       INTEGER NOT NULL,
    grade       TEXT NOT NULL,
    probability REAL,
    detail      TEXT NOT NULL,
    component   TEXT NOT NULL,
    scored_at   INTEGER NOT NULL,
    above       INTEGER NOT NULL DEFAULT 0,
    surfaced_at INTEGER
);
CREATE INDEX scores_tenant ON scores(tenant, total);
CREATE TABLE score_history (
    lead_id     TEXT NOT NULL REFERENCES leads(id),
    tenant      TEXT NOT NULL,
    at          INTEGER NOT NULL,
    total       INTEGER NOT NULL,
    fit         REAL NOT NULL,
    engagement  REAL NOT NULL,
    intent      REAL NOT NULL,
    probability REAL,
    cause       TEXT NOT NULL
);
CREATE INDEX score_history_lead ON score_history(lead_id, at);
CREATE INDEX score_history_at ON score_history(tenant, at);
CREATE TABLE pipeline_outbox (
    id           INTEGER PRIMARY KEY,
    tenant       TEXT NOT NULL,
    lead_id      TEXT NOT NULL REFERENCES leads(id),
    trigger      TEXT NOT NULL,
    payload      TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    delivered_at INTEGER
);
CREATE INDEX pipeline_outbox_open ON pipeline_outbox(tenant, delivered_at);
