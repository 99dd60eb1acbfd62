-- Exclusive passes over a tenant's data (re-enrichment of its queue, a
-- full rescoring), leased to one holder at a time across every host.
CREATE TABLE passes (
    tenant TEXT NOT NULL,
    name   TEXT NOT NULL,
    holder TEXT NOT NULL,
    until  BIGINT NOT NULL,
    PRIMARY KEY (tenant, name)
);
