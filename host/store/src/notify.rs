//! The notifier's records: alerts with their labels, state and end; the
//! groups that gather them per route, destination and channel; the
//! notification outbox (one row per message, unique by its idempotency
//! key, delivered with retries, a claim per host and a pace per channel);
//! what was sent when (the repeat interval); and silences.
//!
//! An alert goes `new` → `routed` (in at least one group), `deduplicated`
//! (every group had sent it within its repeat interval), `unrouted` (no
//! route matches), `silenced` or `inhibited`; alerts from before the
//! notifier are `kept`. A notification goes `pending` → `sent`, or `dead`
//! (attempts exhausted) or `failed` (refused).
//!
//! The SQL is shared with PostgreSQL (`pg/notify.rs`): `$N` parameters,
//! numbered in the order they first appear, mean the same to both.

use crate::{SqliteStore, StoreError, sql};
use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

/// An alert as the notifier reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertRow {
    pub id: i64,
    pub tenant: String,
    pub kind: String,
    pub subject: String,
    /// JSON object; none for alerts raised without labels.
    pub labels: Option<String>,
    pub message: String,
    pub state: String,
    pub created_at: i64,
    pub ends_at: Option<i64>,
}

/// Where one alert goes: a group and the timings that group runs on.
#[derive(Debug, Clone)]
pub struct Member<'a> {
    pub route: &'a str,
    pub destination: &'a str,
    pub channel: &'a str,
    pub group_key: &'a str,
    pub fingerprint: &'a str,
    pub group_wait_ms: i64,
    pub group_interval_ms: i64,
    pub repeat_ms: i64,
}

/// What became of a claimed alert.
#[derive(Debug, Clone)]
pub struct Filed<'a> {
    pub alert_id: i64,
    /// `routed` (when it joins any group), else `unrouted`, `silenced`,
    /// `inhibited`.
    pub state: &'a str,
    pub ends_at: i64,
    pub members: Vec<Member<'a>>,
}

/// A group due for a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRow {
    pub id: i64,
    pub tenant: String,
    pub route: String,
    pub destination: String,
    pub channel: String,
    pub group_key: String,
    pub flush_at: Option<i64>,
    /// Held through quiet hours: the next message is a digest.
    pub held: bool,
    pub last_sent_at: Option<i64>,
    pub seq: i64,
}

/// A notification to put in the outbox.
#[derive(Debug, Clone)]
pub struct NewNotification<'a> {
    pub title: &'a str,
    /// The rendered message (JSON).
    pub body: &'a str,
    pub alert_ids: &'a [i64],
}

/// A notification in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotificationRow {
    pub id: i64,
    pub tenant: String,
    pub idem_key: String,
    pub route: String,
    pub destination: String,
    pub channel: String,
    pub title: String,
    #[serde(skip)]
    pub body: String,
    /// JSON array of alert ids.
    pub alert_ids: String,
    pub state: String,
    pub attempts: i64,
    pub next_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

/// A silence as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SilenceRow {
    pub id: i64,
    /// JSON object: label → matcher.
    pub matchers: String,
    pub starts_at: i64,
    pub ends_at: i64,
    pub comment: String,
    pub created_by: String,
    pub created_at: i64,
}

/// A silence to add.
#[derive(Debug, Clone)]
pub struct NewSilence<'a> {
    /// JSON object: label → matcher.
    pub matchers: &'a str,
    pub starts_at: i64,
    pub ends_at: i64,
    pub comment: &'a str,
    pub created_by: &'a str,
}

/// How much is waiting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotifyBacklog {
    pub new_alerts: i64,
    pub groups_waiting: i64,
    pub pending: i64,
    pub dead: i64,
}

/// The notifier aggregate.
pub trait Notifications {
    /// Raises an alert with labels (a JSON object). Returns its id.
    fn raise_alert(
        &self,
        tenant: &str,
        kind: &str,
        subject: &str,
        labels: &str,
        message: &str,
        now: i64,
    ) -> Result<i64, StoreError>;

    /// Claims up to `limit` of `tenant`'s new alerts for `holder` until
    /// `now + lease_ms`, oldest first (a holder takes its own claims back;
    /// a claim that ran out is taken over).
    fn claim_new_alerts(
        &mut self,
        tenant: &str,
        holder: &str,
        lease_ms: i64,
        now: i64,
        limit: usize,
    ) -> Result<Vec<AlertRow>, StoreError>;

    /// Files claimed alerts in one transaction: each joins its groups (a
    /// group waiting for no flush is given one: `group_wait` from now, and
    /// not before `group_interval` after its last message), unless its
    /// fingerprint was sent there within the repeat interval; an alert
    /// already waiting in a group counts a repeat. An alert that joined no
    /// group though it had some is `deduplicated`.
    fn file_alerts(
        &mut self,
        tenant: &str,
        filed: &[Filed<'_>],
        now: i64,
    ) -> Result<(), StoreError>;

    /// `tenant`'s alerts active at `now` (created at or before, ending
    /// after; `active_ms` after their creation when not ended), of
    /// `subject` only when given, newest first.
    fn active_alerts(
        &self,
        tenant: &str,
        subject: Option<&str>,
        active_ms: i64,
        now: i64,
        limit: usize,
    ) -> Result<Vec<AlertRow>, StoreError>;

    /// Ends `subject`'s active alerts whose kind starts with one of
    /// `kinds` (a first touch ends the lead's routing alerts). How many.
    fn resolve_alerts(
        &self,
        tenant: &str,
        subject: &str,
        kinds: &[&str],
        active_ms: i64,
        now: i64,
    ) -> Result<usize, StoreError>;

    /// Claims up to `limit` of `tenant`'s groups whose flush is due.
    fn claim_due_groups(
        &mut self,
        tenant: &str,
        holder: &str,
        lease_ms: i64,
        now: i64,
        limit: usize,
    ) -> Result<Vec<GroupRow>, StoreError>;

    /// The alerts waiting in a group, oldest first, with their repeats.
    fn group_members(&self, group_id: i64) -> Result<Vec<(AlertRow, i64)>, StoreError>;

    /// Holds a group until `until` (quiet hours): its next message is a
    /// digest.
    fn hold_group(&mut self, group_id: i64, until: i64) -> Result<(), StoreError>;

    /// Flushes a group in one transaction: `dropped` alerts (inhibited or
    /// silenced since they joined) leave it with their new state, and when
    /// any are left, `message` goes to the outbox under the key
    /// `{tenant}:{route}:{destination}:{channel}:{group}:{seq}` (once,
    /// whatever happens after), their fingerprints are marked sent, and the
    /// group waits for its next alert. Returns the notification's id.
    fn flush_group(
        &mut self,
        group: &GroupRow,
        dropped: &[(i64, &str)],
        message: Option<&NewNotification<'_>>,
        now: i64,
    ) -> Result<Option<i64>, StoreError>;

    /// Claims up to `limit` of `tenant`'s notifications due now.
    fn claim_due_notifications(
        &mut self,
        tenant: &str,
        holder: &str,
        lease_ms: i64,
        now: i64,
        limit: usize,
    ) -> Result<Vec<NotificationRow>, StoreError>;

    /// Records a notification sent.
    fn notification_sent(&mut self, id: i64, now: i64) -> Result<(), StoreError>;

    /// Schedules another attempt (`count` says whether this was one: a
    /// notification waiting for its channel's pace was not tried).
    fn notification_retry(
        &mut self,
        id: i64,
        next_at: i64,
        error: Option<&str>,
        count: bool,
    ) -> Result<(), StoreError>;

    /// Gives up on a notification: `dead` (attempts exhausted) or
    /// `failed` (refused).
    fn notification_failed(
        &mut self,
        id: i64,
        state: &str,
        error: &str,
        now: i64,
    ) -> Result<(), StoreError>;

    /// Puts failed and dead notifications back (those in `ids`, or all
    /// when empty). How many.
    fn retry_notifications(
        &mut self,
        tenant: &str,
        ids: &[i64],
        now: i64,
    ) -> Result<usize, StoreError>;

    /// Notifications of `tenant` in `state` (all when none), newest first.
    fn notifications(
        &self,
        tenant: &str,
        state: Option<&str>,
        limit: usize,
    ) -> Result<Vec<NotificationRow>, StoreError>;

    /// When a channel may be sent to next.
    fn pace(&self, tenant: &str, key: &str) -> Result<Option<i64>, StoreError>;

    fn set_pace(&mut self, tenant: &str, key: &str, next_at: i64) -> Result<(), StoreError>;

    fn add_silence(
        &mut self,
        tenant: &str,
        s: &NewSilence<'_>,
        now: i64,
    ) -> Result<i64, StoreError>;

    /// `tenant`'s silences, newest first: those not yet ended at `now`, or
    /// all.
    fn silences(&self, tenant: &str, all: bool, now: i64) -> Result<Vec<SilenceRow>, StoreError>;

    /// Ends a silence now; false when it is not `tenant`'s or has ended.
    fn expire_silence(&mut self, tenant: &str, id: i64, now: i64) -> Result<bool, StoreError>;

    fn notify_backlog(&self, tenant: &str) -> Result<NotifyBacklog, StoreError>;
}

pub(crate) const ALERT_COLUMNS: &str =
    "id, tenant, kind, subject, labels, message, state, created_at, ends_at";

pub(crate) const GROUP_COLUMNS: &str =
    "id, tenant, route, destination, channel, group_key, flush_at, held, last_sent_at, seq";

pub(crate) const NOTIFICATION_COLUMNS: &str =
    "id, tenant, idem_key, route, destination, channel, title, body, alert_ids,
    state, attempts, next_at, last_error, created_at, sent_at";

pub(crate) const SILENCE_COLUMNS: &str =
    "id, matchers, starts_at, ends_at, comment, created_by, created_at";

pub(crate) const RAISE: &str =
    "INSERT INTO alerts (tenant, kind, subject, labels, message, created_at)
    VALUES ($1, $2, $3, $4, $5, $6) RETURNING id";

pub(crate) const SET_ALERT: &str = "UPDATE alerts SET state = $1, ends_at = COALESCE(ends_at, $2), claimed_by = NULL, claimed_until = NULL WHERE id = $3";

pub(crate) const SENT_AT: &str = "SELECT sent_at FROM alert_sent
    WHERE tenant = $1 AND route = $2 AND destination = $3 AND channel = $4 AND fingerprint = $5";

pub(crate) const ENSURE_GROUP: &str = "INSERT INTO alert_groups (tenant, route, destination, channel, group_key)
    VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant, route, destination, channel, group_key) DO NOTHING";

pub(crate) const GROUP_OF: &str = "SELECT id, flush_at, last_sent_at FROM alert_groups
    WHERE tenant = $1 AND route = $2 AND destination = $3 AND channel = $4 AND group_key = $5";

pub(crate) const SET_FLUSH: &str = "UPDATE alert_groups SET flush_at = $1 WHERE id = $2";

pub(crate) const ADD_MEMBER: &str =
    "INSERT INTO alert_members (group_id, fingerprint, alert_id) VALUES ($1, $2, $3)
    ON CONFLICT (group_id, fingerprint) DO UPDATE SET repeats = alert_members.repeats + 1";

pub(crate) const ACTIVE: &str = "SELECT id, tenant, kind, subject, labels, message, state, created_at, ends_at FROM alerts
    WHERE tenant = $1 AND created_at <= $2 AND COALESCE(ends_at, created_at + $3) > $2 AND state <> 'kept'
    ORDER BY id DESC LIMIT $4";

pub(crate) const ACTIVE_OF: &str = "SELECT id, tenant, kind, subject, labels, message, state, created_at, ends_at FROM alerts
    WHERE tenant = $1 AND subject = $2 AND created_at <= $3 AND COALESCE(ends_at, created_at + $4) > $3 AND state <> 'kept'
    ORDER BY id DESC LIMIT $5";

pub(crate) const RESOLVE: &str = "UPDATE alerts SET ends_at = $1
    WHERE tenant = $2 AND subject = $3 AND kind LIKE $4 AND COALESCE(ends_at, created_at + $5) > $1";

pub(crate) const MEMBERS: &str = "SELECT a.id, a.tenant, a.kind, a.subject, a.labels, a.message, a.state, a.created_at, a.ends_at, m.repeats
    FROM alert_members m JOIN alerts a ON a.id = m.alert_id WHERE m.group_id = $1 ORDER BY a.id";

pub(crate) const HOLD: &str = "UPDATE alert_groups SET flush_at = $1, held = 1, claimed_by = NULL, claimed_until = NULL WHERE id = $2";

pub(crate) const DROP_MEMBER: &str =
    "DELETE FROM alert_members WHERE group_id = $1 AND alert_id = $2";

pub(crate) const MEMBER_FINGERPRINTS: &str =
    "SELECT fingerprint FROM alert_members WHERE group_id = $1";

pub(crate) const ENQUEUE: &str =
    "INSERT INTO notifications (tenant, idem_key, route, destination, channel, title, body,
        alert_ids, state, next_at, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $9)
    ON CONFLICT (idem_key) DO NOTHING RETURNING id";

pub(crate) const MARK_SENT: &str = "INSERT INTO alert_sent (tenant, route, destination, channel, fingerprint, sent_at)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (tenant, route, destination, channel, fingerprint) DO UPDATE SET sent_at = excluded.sent_at";

pub(crate) const CLEAR_MEMBERS: &str = "DELETE FROM alert_members WHERE group_id = $1";

pub(crate) const GROUP_FLUSHED: &str = "UPDATE alert_groups SET seq = seq + $1, last_sent_at = CASE WHEN $1 = 1 THEN $2 ELSE last_sent_at END,
    flush_at = NULL, held = 0, claimed_by = NULL, claimed_until = NULL WHERE id = $3";

pub(crate) const SENT: &str =
    "UPDATE notifications SET state = 'sent', sent_at = $1, attempts = attempts + 1,
    last_error = NULL, claimed_by = NULL, claimed_until = NULL WHERE id = $2";

pub(crate) const RETRY: &str =
    "UPDATE notifications SET next_at = $1, last_error = COALESCE($2, last_error),
    attempts = attempts + $3, claimed_by = NULL, claimed_until = NULL WHERE id = $4";

pub(crate) const FAILED: &str =
    "UPDATE notifications SET state = $1, last_error = $2, attempts = attempts + 1,
    next_at = $3, claimed_by = NULL, claimed_until = NULL WHERE id = $4";

pub(crate) const RETRY_ALL: &str =
    "UPDATE notifications SET state = 'pending', next_at = $1, attempts = 0
    WHERE tenant = $2 AND state IN ('dead', 'failed')";

pub(crate) const RETRY_ONE: &str =
    "UPDATE notifications SET state = 'pending', next_at = $1, attempts = 0
    WHERE tenant = $2 AND state IN ('dead', 'failed') AND id = $3";

pub(crate) const PACE: &str = "SELECT next_at FROM notify_pace WHERE tenant = $1 AND pace_key = $2";

pub(crate) const SET_PACE: &str =
    "INSERT INTO notify_pace (tenant, pace_key, next_at) VALUES ($1, $2, $3)
    ON CONFLICT (tenant, pace_key) DO UPDATE SET next_at = excluded.next_at";

pub(crate) const ADD_SILENCE: &str =
    "INSERT INTO silences (tenant, matchers, starts_at, ends_at, comment, created_by, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id";

pub(crate) const EXPIRE_SILENCE: &str =
    "UPDATE silences SET ends_at = $1 WHERE tenant = $2 AND id = $3 AND ends_at > $1";

pub(crate) const BACKLOG: &str = "SELECT
    (SELECT count(*) FROM alerts WHERE tenant = $1 AND state = 'new'),
    (SELECT count(*) FROM alert_groups WHERE tenant = $1 AND flush_at IS NOT NULL),
    (SELECT count(*) FROM notifications WHERE tenant = $1 AND state = 'pending'),
    (SELECT count(*) FROM notifications WHERE tenant = $1 AND state IN ('dead', 'failed'))";

/// The flush time a group joining a new alert gets.
pub(crate) fn flush_time(m: &Member<'_>, last_sent_at: Option<i64>, now: i64) -> i64 {
    let first = now.saturating_add(m.group_wait_ms);
    match last_sent_at {
        Some(last) => first.max(last.saturating_add(m.group_interval_ms)),
        None => first,
    }
}

/// The idempotency key of a group's `seq`-th message.
pub(crate) fn idem_key(g: &GroupRow, seq: i64) -> String {
    format!(
        "{}:{}:{}:{}:{}:{}",
        g.tenant, g.route, g.destination, g.channel, g.id, seq
    )
}

/// `kind LIKE` patterns for kind prefixes.
pub(crate) fn kind_pattern(prefix: &str) -> String {
    let escaped: String = prefix
        .chars()
        .filter(|c| *c != '%' && *c != '_' && *c != '\\')
        .collect();
    format!("{escaped}%")
}

fn alert_row(r: &Row<'_>) -> rusqlite::Result<AlertRow> {
    Ok(AlertRow {
        id: r.get(0)?,
        tenant: r.get(1)?,
        kind: r.get(2)?,
        subject: r.get(3)?,
        labels: r.get(4)?,
        message: r.get(5)?,
        state: r.get(6)?,
        created_at: r.get(7)?,
        ends_at: r.get(8)?,
    })
}

fn group_row(r: &Row<'_>) -> rusqlite::Result<GroupRow> {
    Ok(GroupRow {
        id: r.get(0)?,
        tenant: r.get(1)?,
        route: r.get(2)?,
        destination: r.get(3)?,
        channel: r.get(4)?,
        group_key: r.get(5)?,
        flush_at: r.get(6)?,
        held: r.get::<_, i64>(7)? != 0,
        last_sent_at: r.get(8)?,
        seq: r.get(9)?,
    })
}

fn notification_row(r: &Row<'_>) -> rusqlite::Result<NotificationRow> {
    Ok(NotificationRow {
        id: r.get(0)?,
        tenant: r.get(1)?,
        idem_key: r.get(2)?,
        route: r.get(3)?,
        destination: r.get(4)?,
        channel: r.get(5)?,
        title: r.get(6)?,
        body: r.get(7)?,
        alert_ids: r.get(8)?,
        state: r.get(9)?,
        attempts: r.get(10)?,
        next_at: r.get(11)?,
        last_error: r.get(12)?,
        created_at: r.get(13)?,
        sent_at: r.get(14)?,
    })
}

fn silence_row(r: &Row<'_>) -> rusqlite::Result<SilenceRow> {
    Ok(SilenceRow {
        id: r.get(0)?,
        matchers: r.get(1)?,
        starts_at: r.get(2)?,
        ends_at: r.get(3)?,
        comment: r.get(4)?,
        created_by: r.get(5)?,
        created_at: r.get(6)?,
    })
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Notifications for SqliteStore {
    fn raise_alert(
        &self,
        tenant: &str,
        kind: &str,
        subject: &str,
        labels: &str,
        message: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        self.conn
            .prepare_cached(RAISE)
            .and_then(|mut s| {
                s.query_row(params![tenant, kind, subject, labels, message, now], |r| {
                    r.get(0)
                })
            })
            .map_err(sql("raise alert"))
    }

    fn claim_new_alerts(
        &mut self,
        tenant: &str,
        holder: &str,
        lease_ms: i64,
        now: i64,
        n: usize,
    ) -> Result<Vec<AlertRow>, StoreError> {
        let until = now.saturating_add(lease_ms);
        let tx = self.tx()?;
        let mut rows = tx
            .prepare_cached(&format!(
                "UPDATE alerts SET claimed_by = $1, claimed_until = $2
                  WHERE id IN (SELECT id FROM alerts WHERE tenant = $3 AND state = 'new'
                                 AND (claimed_until IS NULL OR claimed_until <= $4 OR claimed_by = $1)
                               ORDER BY id LIMIT $5)
                  RETURNING {ALERT_COLUMNS}"
            ))
            .and_then(|mut s| {
                s.query_map(params![holder, until, tenant, now, limit(n)], alert_row)
                    .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            })
            .map_err(sql("claim alerts"))?;
        tx.commit().map_err(sql("commit alert claims"))?;
        rows.sort_by_key(|a| a.id);
        Ok(rows)
    }

    fn file_alerts(
        &mut self,
        tenant: &str,
        filed: &[Filed<'_>],
        now: i64,
    ) -> Result<(), StoreError> {
        let tx = self.tx()?;
        for f in filed {
            let mut joined = false;
            for m in &f.members {
                let sent: Option<i64> = tx
                    .prepare_cached(SENT_AT)
                    .and_then(|mut s| {
                        s.query_row(
                            params![tenant, m.route, m.destination, m.channel, m.fingerprint],
                            |r| r.get(0),
                        )
                        .optional()
                    })
                    .map_err(sql("read when an alert was sent"))?;
                if sent.is_some_and(|at| at.saturating_add(m.repeat_ms) > now) {
                    continue;
                }
                tx.prepare_cached(ENSURE_GROUP)
                    .and_then(|mut s| {
                        s.execute(params![
                            tenant,
                            m.route,
                            m.destination,
                            m.channel,
                            m.group_key
                        ])
                    })
                    .map_err(sql("open alert group"))?;
                let (gid, flush_at, last): (i64, Option<i64>, Option<i64>) = tx
                    .prepare_cached(GROUP_OF)
                    .and_then(|mut s| {
                        s.query_row(
                            params![tenant, m.route, m.destination, m.channel, m.group_key],
                            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                        )
                    })
                    .map_err(sql("read alert group"))?;
                if flush_at.is_none() {
                    tx.prepare_cached(SET_FLUSH)
                        .and_then(|mut s| s.execute(params![flush_time(m, last, now), gid]))
                        .map_err(sql("schedule alert group"))?;
                }
                tx.prepare_cached(ADD_MEMBER)
                    .and_then(|mut s| s.execute(params![gid, m.fingerprint, f.alert_id]))
                    .map_err(sql("add alert to group"))?;
                joined = true;
            }
            let state = if f.state == "routed" && !joined {
                "deduplicated"
            } else {
                f.state
            };
            tx.prepare_cached(SET_ALERT)
                .and_then(|mut s| s.execute(params![state, f.ends_at, f.alert_id]))
                .map_err(sql("file alert"))?;
        }
        tx.commit().map_err(sql("commit filed alerts"))
    }

    fn active_alerts(
        &self,
        tenant: &str,
        subject: Option<&str>,
        active_ms: i64,
        now: i64,
        n: usize,
    ) -> Result<Vec<AlertRow>, StoreError> {
        let r = match subject {
            Some(s) => self.conn.prepare_cached(ACTIVE_OF).and_then(|mut st| {
                st.query_map(params![tenant, s, now, active_ms, limit(n)], alert_row)
                    .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            }),
            None => self.conn.prepare_cached(ACTIVE).and_then(|mut st| {
                st.query_map(params![tenant, now, active_ms, limit(n)], alert_row)
                    .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            }),
        };
        r.map_err(sql("list active alerts"))
    }

    fn resolve_alerts(
        &self,
        tenant: &str,
        subject: &str,
        kinds: &[&str],
        active_ms: i64,
        now: i64,
    ) -> Result<usize, StoreError> {
        let mut n = 0;
        for k in kinds {
            n += self
                .conn
                .prepare_cached(RESOLVE)
                .and_then(|mut s| {
                    s.execute(params![now, tenant, subject, kind_pattern(k), active_ms])
                })
                .map_err(sql("resolve alerts"))?;
        }
        Ok(n)
    }

    fn claim_due_groups(
        &mut self,
        tenant: &str,
        holder: &str,
        lease_ms: i64,
        now: i64,
        n: usize,
    ) -> Result<Vec<GroupRow>, StoreError> {
        let until = now.saturating_add(lease_ms);
        let tx = self.tx()?;
        let mut rows = tx
            .prepare_cached(&format!(
                "UPDATE alert_groups SET claimed_by = $1, claimed_until = $2
                  WHERE id IN (SELECT id FROM alert_groups WHERE tenant = $3 AND flush_at IS NOT NULL AND flush_at <= $4
                                 AND (claimed_until IS NULL OR claimed_until <= $4 OR claimed_by = $1)
                               ORDER BY flush_at, id LIMIT $5)
                  RETURNING {GROUP_COLUMNS}"
            ))
            .and_then(|mut s| {
                s.query_map(params![holder, until, tenant, now, limit(n)], group_row)
                    .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            })
            .map_err(sql("claim alert groups"))?;
        tx.commit().map_err(sql("commit group claims"))?;
        rows.sort_by_key(|g| (g.flush_at, g.id));
        Ok(rows)
    }

    fn group_members(&self, group_id: i64) -> Result<Vec<(AlertRow, i64)>, StoreError> {
        self.conn
            .prepare_cached(MEMBERS)
            .and_then(|mut s| {
                s.query_map(params![group_id], |r| Ok((alert_row(r)?, r.get(9)?)))
                    .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            })
            .map_err(sql("read alert group"))
    }

    fn hold_group(&mut self, group_id: i64, until: i64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(HOLD)
            .and_then(|mut s| s.execute(params![until, group_id]))
            .map_err(sql("hold alert group"))?;
        Ok(())
    }

    fn flush_group(
        &mut self,
        g: &GroupRow,
        dropped: &[(i64, &str)],
        message: Option<&NewNotification<'_>>,
        now: i64,
    ) -> Result<Option<i64>, StoreError> {
        let tx = self.tx()?;
        for (id, state) in dropped {
            tx.prepare_cached(DROP_MEMBER)
                .and_then(|mut s| s.execute(params![g.id, id]))
                .map_err(sql("drop alert from group"))?;
            tx.prepare_cached(SET_ALERT)
                .and_then(|mut s| s.execute(params![state, Option::<i64>::None, id]))
                .map_err(sql("file alert"))?;
        }
        let mut out = None;
        if let Some(m) = message {
            let fingerprints: Vec<String> = tx
                .prepare_cached(MEMBER_FINGERPRINTS)
                .and_then(|mut s| {
                    s.query_map(params![g.id], |r| r.get(0))
                        .and_then(|r| r.collect::<Result<Vec<_>, _>>())
                })
                .map_err(sql("read alert group"))?;
            let ids = serde_json::to_string(m.alert_ids).unwrap_or_else(|_| "[]".into());
            out = tx
                .prepare_cached(ENQUEUE)
                .and_then(|mut s| {
                    s.query_row(
                        params![
                            g.tenant,
                            idem_key(g, g.seq + 1),
                            g.route,
                            g.destination,
                            g.channel,
                            m.title,
                            m.body,
                            ids,
                            now
                        ],
                        |r| r.get(0),
                    )
                    .optional()
                })
                .map_err(sql("queue notification"))?;
            for fp in &fingerprints {
                tx.prepare_cached(MARK_SENT)
                    .and_then(|mut s| {
                        s.execute(params![
                            g.tenant,
                            g.route,
                            g.destination,
                            g.channel,
                            fp,
                            now
                        ])
                    })
                    .map_err(sql("mark alert sent"))?;
            }
        }
        tx.prepare_cached(CLEAR_MEMBERS)
            .and_then(|mut s| s.execute(params![g.id]))
            .map_err(sql("empty alert group"))?;
        tx.prepare_cached(GROUP_FLUSHED)
            .and_then(|mut s| s.execute(params![i64::from(message.is_some()), now, g.id]))
            .map_err(sql("flush alert group"))?;
        tx.commit().map_err(sql("commit alert group"))?;
        Ok(out)
    }

    fn claim_due_notifications(
        &mut self,
        tenant: &str,
        holder: &str,
        lease_ms: i64,
        now: i64,
        n: usize,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        let until = now.saturating_add(lease_ms);
        let tx = self.tx()?;
        let mut rows = tx
            .prepare_cached(&format!(
                "UPDATE notifications SET claimed_by = $1, claimed_until = $2
                  WHERE id IN (SELECT id FROM notifications WHERE tenant = $3 AND state = 'pending' AND next_at <= $4
                                 AND (claimed_until IS NULL OR claimed_until <= $4 OR claimed_by = $1)
                               ORDER BY next_at, id LIMIT $5)
                  RETURNING {NOTIFICATION_COLUMNS}"
            ))
            .and_then(|mut s| {
                s.query_map(params![holder, until, tenant, now, limit(n)], notification_row)
                    .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            })
            .map_err(sql("claim notifications"))?;
        tx.commit().map_err(sql("commit notification claims"))?;
        rows.sort_by_key(|r| r.id);
        Ok(rows)
    }

    fn notification_sent(&mut self, id: i64, now: i64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(SENT)
            .and_then(|mut s| s.execute(params![now, id]))
            .map_err(sql("record notification sent"))?;
        Ok(())
    }

    fn notification_retry(
        &mut self,
        id: i64,
        next_at: i64,
        error: Option<&str>,
        count: bool,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(RETRY)
            .and_then(|mut s| s.execute(params![next_at, error, i64::from(count), id]))
            .map_err(sql("reschedule notification"))?;
        Ok(())
    }

    fn notification_failed(
        &mut self,
        id: i64,
        state: &str,
        error: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(FAILED)
            .and_then(|mut s| s.execute(params![state, error, now, id]))
            .map_err(sql("give up on notification"))?;
        Ok(())
    }

    fn retry_notifications(
        &mut self,
        tenant: &str,
        ids: &[i64],
        now: i64,
    ) -> Result<usize, StoreError> {
        let tx = self.tx()?;
        let mut n = 0;
        if ids.is_empty() {
            n = tx
                .execute(RETRY_ALL, params![now, tenant])
                .map_err(sql("retry notifications"))?;
        }
        for id in ids {
            n += tx
                .execute(RETRY_ONE, params![now, tenant, id])
                .map_err(sql("retry notification"))?;
        }
        tx.commit().map_err(sql("commit notification retries"))?;
        Ok(n)
    }

    fn notifications(
        &self,
        tenant: &str,
        state: Option<&str>,
        n: usize,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {NOTIFICATION_COLUMNS} FROM notifications
                  WHERE tenant = $1 AND ($2 IS NULL OR state = $2) ORDER BY id DESC LIMIT $3"
            ))
            .and_then(|mut s| {
                s.query_map(params![tenant, state, limit(n)], notification_row)
                    .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            })
            .map_err(sql("list notifications"))
    }

    fn pace(&self, tenant: &str, key: &str) -> Result<Option<i64>, StoreError> {
        self.conn
            .prepare_cached(PACE)
            .and_then(|mut s| s.query_row(params![tenant, key], |r| r.get(0)).optional())
            .map_err(sql("read pace"))
    }

    fn set_pace(&mut self, tenant: &str, key: &str, next_at: i64) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(SET_PACE)
            .and_then(|mut s| s.execute(params![tenant, key, next_at]))
            .map_err(sql("write pace"))?;
        Ok(())
    }

    fn add_silence(
        &mut self,
        tenant: &str,
        n: &NewSilence<'_>,
        now: i64,
    ) -> Result<i64, StoreError> {
        self.conn
            .prepare_cached(ADD_SILENCE)
            .and_then(|mut s| {
                s.query_row(
                    params![
                        tenant,
                        n.matchers,
                        n.starts_at,
                        n.ends_at,
                        n.comment,
                        n.created_by,
                        now
                    ],
                    |r| r.get(0),
                )
            })
            .map_err(sql("add silence"))
    }

    fn silences(&self, tenant: &str, all: bool, now: i64) -> Result<Vec<SilenceRow>, StoreError> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {SILENCE_COLUMNS} FROM silences WHERE tenant = $1 AND ($2 OR ends_at > $3) ORDER BY id DESC"
            ))
            .and_then(|mut s| {
                s.query_map(params![tenant, all, now], silence_row)
                    .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            })
            .map_err(sql("list silences"))
    }

    fn expire_silence(&mut self, tenant: &str, id: i64, now: i64) -> Result<bool, StoreError> {
        let n = self
            .conn
            .prepare_cached(EXPIRE_SILENCE)
            .and_then(|mut s| s.execute(params![now, tenant, id]))
            .map_err(sql("end silence"))?;
        Ok(n == 1)
    }

    fn notify_backlog(&self, tenant: &str) -> Result<NotifyBacklog, StoreError> {
        self.conn
            .prepare_cached(BACKLOG)
            .and_then(|mut s| {
                s.query_row(params![tenant], |r| {
                    Ok(NotifyBacklog {
                        new_alerts: r.get(0)?,
                        groups_waiting: r.get(1)?,
                        pending: r.get(2)?,
                        dead: r.get(3)?,
                    })
                })
            })
            .map_err(sql("count notifier backlog"))
    }
}
