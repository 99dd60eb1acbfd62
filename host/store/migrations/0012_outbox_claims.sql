-- Claims on due handoffs, so that with several hosts each is delivered by
-- one: the host that took it and until when its claim holds. A claim that
-- runs out (its host stopped) is taken over.
ALTER TABLE crm_outbox ADD COLUMN claimed_by TEXT;
ALTER TABLE crm_outbox ADD COLUMN claimed_until INTEGER;
