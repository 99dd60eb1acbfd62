-- Routing: who can receive leads (reps, with their load counters), each
-- lead's assignments with their explanation, and durable timers (a row
-- per due time: response SLAs, queued leads routed again).
CREATE TABLE reps (
    tenant           TEXT NOT NULL,
    id               TEXT NOT NULL,
    doc              TEXT NOT NULL,
    load_day         TEXT NOT NULL DEFAULT '',
    assigned_day     INTEGER NOT NULL DEFAULT 0,
    open_count       INTEGER NOT NULL DEFAULT 0,
    assigned_total   INTEGER NOT NULL DEFAULT 0,
    last_assigned_at INTEGER,
    turn             INTEGER NOT NULL DEFAULT 0,
    touched          INTEGER NOT NULL DEFAULT 0,
    touched_in_sla   INTEGER NOT NULL DEFAULT 0,
    breached         INTEGER NOT NULL DEFAULT 0,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
);

CREATE TABLE assignments (
    id           INTEGER PRIMARY KEY,
    tenant       TEXT NOT NULL,
    lead_id      TEXT NOT NULL,
    rep_id       TEXT,
    team         TEXT NOT NULL,
    step         TEXT NOT NULL,
    state        TEXT NOT NULL,
    explanation  TEXT NOT NULL,
    domain       TEXT,
    company_key  TEXT,
    sla_due_at   INTEGER,
    assigned_by  TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    touched_at   INTEGER,
    replaced_at  INTEGER
);
CREATE INDEX assignments_lead ON assignments (tenant, lead_id, id);
CREATE INDEX assignments_domain ON assignments (tenant, domain, id) WHERE domain IS NOT NULL;
CREATE INDEX assignments_company ON assignments (tenant, company_key, id) WHERE company_key IS NOT NULL;

CREATE TABLE timers (
    id            INTEGER PRIMARY KEY,
    tenant        TEXT NOT NULL,
    kind          TEXT NOT NULL,
    ref_id        INTEGER NOT NULL,
    due_at        INTEGER NOT NULL,
    done_at       INTEGER,
    claimed_by    TEXT,
    claimed_until INTEGER
);
CREATE INDEX timers_due ON timers (tenant, due_at) WHERE done_at IS NULL;
CREATE INDEX timers_ref ON timers (ref_id) WHERE done_at IS NULL;
