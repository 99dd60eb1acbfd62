
-- The match-key index's middle tier: a deferring writer folds its pending
-- rows here, and moves this into match_keys a key slice at a time, many
-- times less often (`pending_keys`). Lookups read both.
CREATE TABLE match_keys_mid (
    key   INTEGER NOT NULL,
    lead  INTEGER NOT NULL,
    PRIMARY KEY (key, lead)
) WITHOUT ROWID;
-- How many slices of match_keys_mid have been moved on, in all: a writer
-- that starts again carries on from there.
CREATE TABLE match_keys_mid_moved (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    slices  INTEGER NOT NULL
);
INSERT INTO match_keys_mid_moved (id, slices) VALUES (1, 0);
