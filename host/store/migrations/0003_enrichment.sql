
ALTER TABLE leads ADD COLUMN enrichment TEXT;
ALTER TABLE leads ADD COLUMN qualification TEXT;
ALTER TABLE leads ADD COLUMN qualification_reasons TEXT;
CREATE INDEX leads_qualification ON leads(tenant, qualification);
CREATE TABLE enrich_queue (
    lead_id     TEXT PRIMARY KEY REFERENCES leads(id),
    tenant      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    queued_at   INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_try_at INTEGER
);
CREATE INDEX enrich_queue_tenant ON enrich_queue(tenant, queued_at);
CREATE TABLE enrich_cache (
    provider    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    fetched_at  INTEGER NOT NULL,
    PRIMARY KEY (provider, kind, key)
) WITHOUT ROWID;
CREATE TABLE provider_stats (
    run_id      INTEGER NOT NULL REFERENCES runs(id),
    provider    TEXT NOT NULL,
    stats       TEXT NOT NULL,
    PRIMARY KEY (run_id, provider)
);
