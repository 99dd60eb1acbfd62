-- Claims on logged requests, so that with several hosts a request left
-- unfinished is taken up by one: the host processing it and until when
-- its claim holds. A claim that runs out (its host stopped) is taken over.
ALTER TABLE intake ADD COLUMN claimed_by TEXT;
ALTER TABLE intake ADD COLUMN claimed_until INTEGER;
