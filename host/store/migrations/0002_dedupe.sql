
-- Version 1 stored the normalized lead as a JSON string holding the JSON.
UPDATE leads SET normalized = json_extract(normalized, '$')
 WHERE normalized IS NOT NULL AND json_type(normalized) = 'text';
UPDATE decisions SET normalized = json_extract(normalized, '$')
 WHERE normalized IS NOT NULL AND json_type(normalized) = 'text';
ALTER TABLE leads ADD COLUMN master_id TEXT;
ALTER TABLE runs ADD COLUMN duplicates INTEGER NOT NULL DEFAULT 0;
CREATE INDEX leads_master ON leads(master_id);
CREATE TABLE match_keys (
    key   INTEGER NOT NULL,
    lead  INTEGER NOT NULL,
    PRIMARY KEY (key, lead)
) WITHOUT ROWID;
CREATE TABLE golden (
    id          TEXT PRIMARY KEY REFERENCES leads(id),
    tenant      TEXT NOT NULL,
    record      TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE TABLE merges (
    id          INTEGER PRIMARY KEY,
    tenant      TEXT NOT NULL,
    master_id   TEXT NOT NULL REFERENCES leads(id),
    lead_id     TEXT NOT NULL REFERENCES leads(id),
    kind        TEXT NOT NULL,
    probability REAL,
    evidence    TEXT,
    decided_by  TEXT NOT NULL,
    run_id      INTEGER REFERENCES runs(id),
    created_at  INTEGER NOT NULL,
    undone_at   INTEGER
);
CREATE INDEX merges_master ON merges(master_id);
CREATE INDEX merges_lead ON merges(lead_id);
CREATE TABLE match_reviews (
    id          INTEGER PRIMARY KEY,
    tenant      TEXT NOT NULL,
    lead_a      TEXT NOT NULL REFERENCES leads(id),
    lead_b      TEXT NOT NULL REFERENCES leads(id),
    probability REAL NOT NULL,
    evidence    TEXT NOT NULL,
    reason      TEXT NOT NULL,
    run_id      INTEGER REFERENCES runs(id),
    created_at  INTEGER NOT NULL,
    decision    TEXT,
    reviewer    TEXT,
    note        TEXT,
    decided_at  INTEGER,
    UNIQUE (tenant, lead_a, lead_b)
);
CREATE INDEX match_reviews_open ON match_reviews(tenant, decided_at);
