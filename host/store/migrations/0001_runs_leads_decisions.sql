
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    tenant      TEXT NOT NULL,
    input       TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    components  TEXT NOT NULL,
    total       INTEGER NOT NULL DEFAULT 0,
    accepted    INTEGER NOT NULL DEFAULT 0,
    rejected    INTEGER NOT NULL DEFAULT 0,
    review      INTEGER NOT NULL DEFAULT 0,
    exceptions  INTEGER NOT NULL DEFAULT 0,
    status      TEXT NOT NULL
);
CREATE TABLE leads (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    source      TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    raw         TEXT NOT NULL,
    normalized  TEXT,
    status      TEXT NOT NULL,
    run_id      INTEGER REFERENCES runs(id),
    line        INTEGER,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX leads_tenant_status ON leads(tenant, status);
CREATE TABLE decisions (
    id          INTEGER PRIMARY KEY,
    lead_id     TEXT NOT NULL REFERENCES leads(id),
    run_id      INTEGER REFERENCES runs(id),
    capability  TEXT NOT NULL,
    component   TEXT NOT NULL,
    verdict     TEXT NOT NULL,
    normalized  TEXT,
    decided_at  INTEGER NOT NULL
);
CREATE INDEX decisions_lead ON decisions(lead_id);
CREATE TABLE issues (
    decision_id INTEGER NOT NULL REFERENCES decisions(id),
    lead_id     TEXT NOT NULL,
    field       TEXT NOT NULL,
    code        TEXT NOT NULL,
    severity    TEXT NOT NULL,
    message     TEXT NOT NULL
);
CREATE INDEX issues_lead ON issues(lead_id);
CREATE INDEX issues_code ON issues(code);
CREATE TABLE exceptions (
    id          INTEGER PRIMARY KEY,
    lead_id     TEXT NOT NULL REFERENCES leads(id),
    run_id      INTEGER REFERENCES runs(id),
    capability  TEXT NOT NULL,
    component   TEXT NOT NULL,
    code        TEXT NOT NULL,
    error       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    resolved_at INTEGER
);
CREATE INDEX exceptions_open ON exceptions(resolved_at);
