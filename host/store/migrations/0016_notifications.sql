-- The notifier: alerts gain labels, a state and an end (while active they
-- inhibit others), and are claimed by one host; groups gather alerts per
-- route and destination until they are flushed into the notification
-- outbox (one row per message, with its idempotency key), delivered with
-- retries and a pace per channel; silences mute alerts by label matchers.
ALTER TABLE alerts ADD COLUMN labels TEXT;
ALTER TABLE alerts ADD COLUMN state TEXT NOT NULL DEFAULT 'new';
ALTER TABLE alerts ADD COLUMN ends_at INTEGER;
ALTER TABLE alerts ADD COLUMN claimed_by TEXT;
ALTER TABLE alerts ADD COLUMN claimed_until INTEGER;
-- Alerts raised before the notifier existed are not sent now.
UPDATE alerts SET state = 'kept';
CREATE INDEX alerts_new ON alerts(tenant, id) WHERE state = 'new';
CREATE INDEX alerts_subject ON alerts(tenant, subject, id);

CREATE TABLE alert_groups (
    id            INTEGER PRIMARY KEY,
    tenant        TEXT NOT NULL,
    route         TEXT NOT NULL,
    destination   TEXT NOT NULL,
    channel       TEXT NOT NULL DEFAULT '',
    group_key     TEXT NOT NULL,
    flush_at      INTEGER,
    held          INTEGER NOT NULL DEFAULT 0,
    last_sent_at  INTEGER,
    seq           INTEGER NOT NULL DEFAULT 0,
    claimed_by    TEXT,
    claimed_until INTEGER,
    UNIQUE (tenant, route, destination, channel, group_key)
);
CREATE INDEX alert_groups_due ON alert_groups(tenant, flush_at) WHERE flush_at IS NOT NULL;

CREATE TABLE alert_members (
    group_id    INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    alert_id    INTEGER NOT NULL,
    repeats     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (group_id, fingerprint)
);

CREATE TABLE alert_sent (
    tenant      TEXT NOT NULL,
    route       TEXT NOT NULL,
    destination TEXT NOT NULL,
    channel     TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    sent_at     INTEGER NOT NULL,
    PRIMARY KEY (tenant, route, destination, channel, fingerprint)
);

CREATE TABLE notifications (
    id            INTEGER PRIMARY KEY,
    tenant        TEXT NOT NULL,
    idem_key      TEXT NOT NULL UNIQUE,
    route         TEXT NOT NULL,
    destination   TEXT NOT NULL,
    channel       TEXT NOT NULL,
    title         TEXT NOT NULL,
    body          TEXT NOT NULL,
    alert_ids     TEXT NOT NULL,
    state         TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at       INTEGER NOT NULL,
    last_error    TEXT,
    claimed_by    TEXT,
    claimed_until INTEGER,
    created_at    INTEGER NOT NULL,
    sent_at       INTEGER
);
CREATE INDEX notifications_due ON notifications(tenant, next_at) WHERE state = 'pending';
CREATE INDEX notifications_state ON notifications(tenant, state, id);

CREATE TABLE notify_pace (
    tenant      TEXT NOT NULL,
    pace_key    TEXT NOT NULL,
    next_at     INTEGER NOT NULL,
    PRIMARY KEY (tenant, pace_key)
);

CREATE TABLE silences (
    id          INTEGER PRIMARY KEY,
    tenant      TEXT NOT NULL,
    matchers    TEXT NOT NULL,
    starts_at   INTEGER NOT NULL,
    ends_at     INTEGER NOT NULL,
    comment     TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX silences_tenant ON silences(tenant, ends_at);
