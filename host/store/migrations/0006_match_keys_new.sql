
-- The match-key index's newest entries, deferred by the service's
-- recording thread (`pending_keys`): one row per recorded lead, its hashed
-- keys packed 8 bytes each, folded into match_keys a key slice at a time.
CREATE TABLE match_keys_new (
    id    INTEGER PRIMARY KEY AUTOINCREMENT,
    lead  INTEGER NOT NULL,
    keys  BLOB NOT NULL
);
-- Indexes no query reads. Each cost a page per transaction per value
-- written (a tenth of the service's write-ahead log).
DROP INDEX IF EXISTS issues_code;
DROP INDEX IF EXISTS leads_qualification;
-- Scores are read by lead, or all of a tenant's; never in order of
-- total. Keyed by total, every new or changed score wrote a page of its
-- own; keyed by tenant alone, new scores append and changes touch nothing.
DROP INDEX IF EXISTS scores_tenant;
CREATE INDEX scores_tenant ON scores(tenant);
