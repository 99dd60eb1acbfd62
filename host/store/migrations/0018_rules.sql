-- Workflow rules: each rule version as loaded (immutable: the same id and
-- version with other content is refused), each lead's rules record (what
-- the rules last saw, windows, enrolments, keys that fired, and its next
-- inactivity timer, claimed by one host), the leads waiting for the rules
-- (claimed by one host), every execution under its idempotency key (rule
-- × lead × trigger window, unique), every action with its own key and
-- state (claimed by one host to carry out), and the lifecycle stages
-- leads passed through.
CREATE TABLE rule_versions (
    tenant    TEXT NOT NULL,
    rule_id   TEXT NOT NULL,
    version   INTEGER NOT NULL,
    digest    TEXT NOT NULL,
    doc       TEXT NOT NULL,
    loaded_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, rule_id, version)
);

CREATE TABLE rule_leads (
    id            INTEGER PRIMARY KEY,
    tenant        TEXT NOT NULL,
    lead_id       TEXT NOT NULL,
    state         TEXT NOT NULL,
    version       INTEGER NOT NULL DEFAULT 0,
    due_at        INTEGER,
    claimed_by    TEXT,
    claimed_until INTEGER,
    updated_at    INTEGER NOT NULL,
    UNIQUE (tenant, lead_id)
);
CREATE INDEX rule_leads_due ON rule_leads (tenant, due_at) WHERE due_at IS NOT NULL;

CREATE TABLE rule_inbox (
    id            INTEGER PRIMARY KEY,
    tenant        TEXT NOT NULL,
    lead_id       TEXT NOT NULL,
    kind          TEXT NOT NULL,
    ref           TEXT NOT NULL DEFAULT '',
    at            INTEGER NOT NULL,
    claimed_by    TEXT,
    claimed_until INTEGER
);
CREATE INDEX rule_inbox_tenant ON rule_inbox (tenant, id);

CREATE TABLE rule_executions (
    id         INTEGER PRIMARY KEY,
    tenant     TEXT NOT NULL,
    idem_key   TEXT NOT NULL,
    rule_id    TEXT NOT NULL,
    version    INTEGER NOT NULL,
    lead_id    TEXT NOT NULL,
    fired_by   TEXT NOT NULL,
    mode       TEXT NOT NULL,
    at         INTEGER NOT NULL,
    record     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (tenant, idem_key)
);
CREATE INDEX rule_executions_lead ON rule_executions (tenant, lead_id, id);
CREATE INDEX rule_executions_at ON rule_executions (tenant, at);

CREATE TABLE rule_actions (
    id            INTEGER PRIMARY KEY,
    tenant        TEXT NOT NULL,
    execution_id  INTEGER NOT NULL,
    idem_key      TEXT NOT NULL,
    lead_id       TEXT NOT NULL,
    kind          TEXT NOT NULL,
    body          TEXT NOT NULL,
    state         TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at       INTEGER NOT NULL,
    outcome       TEXT,
    claimed_by    TEXT,
    claimed_until INTEGER,
    updated_at    INTEGER NOT NULL,
    UNIQUE (tenant, idem_key)
);
CREATE INDEX rule_actions_pending ON rule_actions (tenant, next_at) WHERE state = 'pending';
CREATE INDEX rule_actions_execution ON rule_actions (execution_id);
CREATE INDEX rule_actions_score ON rule_actions (tenant, lead_id) WHERE kind = 'score' AND state = 'done';

CREATE TABLE lead_stages (
    id      INTEGER PRIMARY KEY,
    tenant  TEXT NOT NULL,
    lead_id TEXT NOT NULL,
    stage   TEXT NOT NULL,
    at      INTEGER NOT NULL,
    source  TEXT NOT NULL
);
CREATE INDEX lead_stages_lead ON lead_stages (tenant, lead_id, at, id);
-- A lead's stage events, read with its stages (`stage_change` events keep
-- the stage as their category).
CREATE INDEX events_stage ON events (lead_id, at) WHERE kind = 'stage_change';
