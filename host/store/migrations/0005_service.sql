
CREATE TABLE api_keys (
    hash       TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    label      TEXT NOT NULL,
    prefix     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE intake (
    id          INTEGER PRIMARY KEY,
    tenant      TEXT NOT NULL,
    key         TEXT NOT NULL,
    kind        TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    body        TEXT NOT NULL,
    lead_ids    TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    state       TEXT NOT NULL,
    status_code INTEGER,
    result      TEXT,
    done_at     INTEGER,
    UNIQUE (tenant, key)
);
CREATE INDEX intake_pending ON intake(state, id);
CREATE TABLE review_queue (
    id           INTEGER PRIMARY KEY,
    tenant       TEXT NOT NULL,
    lead_id      TEXT NOT NULL REFERENCES leads(id),
    kind         TEXT NOT NULL,
    match_review INTEGER REFERENCES match_reviews(id),
    reason       TEXT NOT NULL,
    source       TEXT NOT NULL,
    confidence   REAL,
    created_at   INTEGER NOT NULL,
    escalated_at INTEGER,
    fallback_at  INTEGER,
    fallback     TEXT,
    decided_at   INTEGER,
    decision     TEXT,
    reviewer     TEXT,
    note         TEXT,
    UNIQUE (tenant, lead_id, kind)
);
CREATE INDEX review_queue_open ON review_queue(tenant, decided_at, created_at);
CREATE TABLE alerts (
    id         INTEGER PRIMARY KEY,
    tenant     TEXT NOT NULL,
    kind       TEXT NOT NULL,
    subject    TEXT NOT NULL,
    message    TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX alerts_tenant ON alerts(tenant, created_at);
CREATE TABLE crm_outbox (
    id           INTEGER PRIMARY KEY,
    tenant       TEXT NOT NULL,
    lead_id      TEXT NOT NULL REFERENCES leads(id),
    target       TEXT NOT NULL,
    op           TEXT NOT NULL,
    crm_id       TEXT,
    state        TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      INTEGER NOT NULL,
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    delivered_at INTEGER
);
CREATE INDEX crm_outbox_due ON crm_outbox(state, next_at);
CREATE INDEX crm_outbox_lead ON crm_outbox(tenant, lead_id);
CREATE TABLE crm_records (
    tenant   TEXT NOT NULL,
    lead_id  TEXT NOT NULL,
    target   TEXT NOT NULL,
    crm_id   TEXT NOT NULL,
    first_at INTEGER NOT NULL,
    last_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant, lead_id, target)
);
