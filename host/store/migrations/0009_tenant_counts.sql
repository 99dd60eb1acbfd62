
-- Counts the metrics read on every scrape, kept as rows change instead of
-- counted over the tables: handoffs per state (crm_outbox keeps a row per
-- lead ever handed off) and decided review items, in all and decided by a
-- person before the item was escalated (SLA adherence).
CREATE TABLE tenant_counts (
    tenant  TEXT NOT NULL,
    name    TEXT NOT NULL,
    n       INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
) WITHOUT ROWID;
INSERT INTO tenant_counts (tenant, name, n)
    SELECT tenant, 'outbox:' || state, count(*) FROM crm_outbox GROUP BY tenant, state;
INSERT INTO tenant_counts (tenant, name, n)
    SELECT tenant, 'review:decided', count(*) FROM review_queue
     WHERE decided_at IS NOT NULL GROUP BY tenant;
INSERT INTO tenant_counts (tenant, name, n)
    SELECT tenant, 'review:in_time', count(*) FROM review_queue
     WHERE decided_at IS NOT NULL AND escalated_at IS NULL AND reviewer NOT LIKE 'sla:%'
     GROUP BY tenant;
CREATE TRIGGER crm_outbox_counted AFTER INSERT ON crm_outbox BEGIN
    INSERT INTO tenant_counts (tenant, name, n) VALUES (new.tenant, 'outbox:' || new.state, 1)
        ON CONFLICT (tenant, name) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER crm_outbox_recounted AFTER UPDATE OF state ON crm_outbox
 WHEN old.state IS NOT new.state BEGIN
    UPDATE tenant_counts SET n = n - 1 WHERE tenant = old.tenant AND name = 'outbox:' || old.state;
    INSERT INTO tenant_counts (tenant, name, n) VALUES (new.tenant, 'outbox:' || new.state, 1)
        ON CONFLICT (tenant, name) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER crm_outbox_uncounted AFTER DELETE ON crm_outbox BEGIN
    UPDATE tenant_counts SET n = n - 1 WHERE tenant = old.tenant AND name = 'outbox:' || old.state;
END;
CREATE TRIGGER review_queue_decided AFTER UPDATE OF decided_at ON review_queue
 WHEN old.decided_at IS NULL AND new.decided_at IS NOT NULL BEGIN
    INSERT INTO tenant_counts (tenant, name, n) VALUES (new.tenant, 'review:decided', 1)
        ON CONFLICT (tenant, name) DO UPDATE SET n = n + 1;
    INSERT INTO tenant_counts (tenant, name, n)
        SELECT new.tenant, 'review:in_time', 1
         WHERE new.escalated_at IS NULL AND new.reviewer NOT LIKE 'sla:%'
        ON CONFLICT (tenant, name) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER review_queue_uncounted AFTER DELETE ON review_queue
 WHEN old.decided_at IS NOT NULL BEGIN
    UPDATE tenant_counts SET n = n - 1 WHERE tenant = old.tenant AND name = 'review:decided';
    UPDATE tenant_counts SET n = n - 1 WHERE tenant = old.tenant AND name = 'review:in_time'
     AND old.escalated_at IS NULL AND old.reviewer NOT LIKE 'sla:%';
END;
