-- Exclusive passes over a tenant's data (re-enrichment of its queue, a
-- full rescoring), leased to one holder at a time across every process
-- sharing the store.
CREATE TABLE passes (
    tenant TEXT NOT NULL,
    name   TEXT NOT NULL,
    holder TEXT NOT NULL,
    until  INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
);
