
-- The open review items an SLA threshold may still act on, oldest first:
-- the scheduler reads only the ones due instead of the whole open queue
-- (an item leaves once it has been escalated and fallen back, or decided).
CREATE INDEX review_queue_due ON review_queue(tenant, created_at)
 WHERE decided_at IS NULL AND (escalated_at IS NULL OR fallback_at IS NULL);
