
-- Transactions that wrote match_keys directly (a batch run): a connection
-- that keeps a filter of the keys (`key_filter`) builds it again when
-- this changes. Keys deferred through match_keys_new are not counted:
-- the filter reads those rows.
CREATE TABLE match_keys_writes (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    direct  INTEGER NOT NULL
);
INSERT INTO match_keys_writes (id, direct) VALUES (1, 0);
