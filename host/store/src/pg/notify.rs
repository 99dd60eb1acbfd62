//! The notifier's records on PostgreSQL (`crate::notify`): the same SQL as
//! SQLite's; new alerts, due groups and due notifications are claimed with
//! `FOR UPDATE SKIP LOCKED`, so hosts working at once never take the same
//! one.

use super::{PgStore, limit, pg};
use crate::StoreError;
use crate::notify::*;

fn claim_sql(table: &str, due: &str, order: &str, columns: &str) -> String {
    format!(
        "UPDATE {table} SET claimed_by = $1, claimed_until = $2
          WHERE id IN (SELECT id FROM {table} WHERE tenant = $3 AND {due}
                         AND (claimed_until IS NULL OR claimed_until <= $4 OR claimed_by = $1)
                       ORDER BY {order} LIMIT $5 FOR UPDATE SKIP LOCKED)
          RETURNING {columns}"
    )
}

fn alert_row(r: &postgres::Row) -> AlertRow {
    AlertRow {
        id: r.get(0),
        tenant: r.get(1),
        kind: r.get(2),
        subject: r.get(3),
        labels: r.get(4),
        message: r.get(5),
        state: r.get(6),
        created_at: r.get(7),
        ends_at: r.get(8),
    }
}

fn group_row(r: &postgres::Row) -> GroupRow {
    GroupRow {
        id: r.get(0),
        tenant: r.get(1),
        route: r.get(2),
        destination: r.get(3),
        channel: r.get(4),
        group_key: r.get(5),
        flush_at: r.get(6),
        held: r.get::<_, i64>(7) != 0,
        last_sent_at: r.get(8),
        seq: r.get(9),
    }
}

fn notification_row(r: &postgres::Row) -> NotificationRow {
    NotificationRow {
        id: r.get(0),
        tenant: r.get(1),
        idem_key: r.get(2),
        route: r.get(3),
        destination: r.get(4),
        channel: r.get(5),
        title: r.get(6),
        body: r.get(7),
        alert_ids: r.get(8),
        state: r.get(9),
        attempts: r.get(10),
        next_at: r.get(11),
        last_error: r.get(12),
        created_at: r.get(13),
        sent_at: r.get(14),
    }
}

fn silence_row(r: &postgres::Row) -> SilenceRow {
    SilenceRow {
        id: r.get(0),
        matchers: r.get(1),
        starts_at: r.get(2),
        ends_at: r.get(3),
        comment: r.get(4),
        created_by: r.get(5),
        created_at: r.get(6),
    }
}

impl Notifications for PgStore {
    fn raise_alert(
        &self,
        tenant: &str,
        kind: &str,
        subject: &str,
        labels: &str,
        message: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        let mut tx = self.tx("raise alert")?;
        let id: i64 = tx
            .query_cached(RAISE, &[&tenant, &kind, &subject, &labels, &message, &now])
            .map_err(pg("raise alert"))?
            .first()
            .map(|r| r.get(0))
            .unwrap_or_default();
        tx.commit().map_err(pg("commit alert"))?;
        Ok(id)
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
        let mut tx = self.tx("claim alerts")?;
        let rows = tx
            .query(
                &claim_sql("alerts", "state = 'new'", "id", ALERT_COLUMNS),
                &[&holder, &until, &tenant, &now, &limit(n)],
            )
            .map_err(pg("claim alerts"))?;
        tx.commit().map_err(pg("commit alert claims"))?;
        let mut out: Vec<AlertRow> = rows.iter().map(alert_row).collect();
        out.sort_by_key(|a| a.id);
        Ok(out)
    }

    fn file_alerts(
        &mut self,
        tenant: &str,
        filed: &[Filed<'_>],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.tx("file alerts")?;
        for f in filed {
            let mut joined = false;
            for m in &f.members {
                let sent: Option<i64> = tx
                    .query_cached(
                        SENT_AT,
                        &[
                            &tenant,
                            &m.route,
                            &m.destination,
                            &m.channel,
                            &m.fingerprint,
                        ],
                    )
                    .map_err(pg("read when an alert was sent"))?
                    .first()
                    .map(|r| r.get(0));
                if sent.is_some_and(|at| at.saturating_add(m.repeat_ms) > now) {
                    continue;
                }
                tx.execute_cached(
                    ENSURE_GROUP,
                    &[&tenant, &m.route, &m.destination, &m.channel, &m.group_key],
                )
                .map_err(pg("open alert group"))?;
                let rows = tx
                    .query(
                        &format!("{GROUP_OF} FOR UPDATE"),
                        &[&tenant, &m.route, &m.destination, &m.channel, &m.group_key],
                    )
                    .map_err(pg("read alert group"))?;
                let Some(row) = rows.first() else {
                    continue;
                };
                let (gid, flush_at, last): (i64, Option<i64>, Option<i64>) =
                    (row.get(0), row.get(1), row.get(2));
                if flush_at.is_none() {
                    tx.execute_cached(SET_FLUSH, &[&flush_time(m, last, now), &gid])
                        .map_err(pg("schedule alert group"))?;
                }
                tx.execute_cached(ADD_MEMBER, &[&gid, &m.fingerprint, &f.alert_id])
                    .map_err(pg("add alert to group"))?;
                joined = true;
            }
            let state = if f.state == "routed" && !joined {
                "deduplicated"
            } else {
                f.state
            };
            tx.execute_cached(SET_ALERT, &[&state, &Some(f.ends_at), &f.alert_id])
                .map_err(pg("file alert"))?;
        }
        tx.commit().map_err(pg("commit filed alerts"))
    }

    fn active_alerts(
        &self,
        tenant: &str,
        subject: Option<&str>,
        active_ms: i64,
        now: i64,
        n: usize,
    ) -> Result<Vec<AlertRow>, StoreError> {
        let rows = match subject {
            Some(s) => self
                .client()
                .query(ACTIVE_OF, &[&tenant, &s, &now, &active_ms, &limit(n)]),
            None => self
                .client()
                .query(ACTIVE, &[&tenant, &now, &active_ms, &limit(n)]),
        }
        .map_err(pg("list active alerts"))?;
        Ok(rows.iter().map(alert_row).collect())
    }

    fn resolve_alerts(
        &self,
        tenant: &str,
        subject: &str,
        kinds: &[&str],
        active_ms: i64,
        now: i64,
    ) -> Result<usize, StoreError> {
        let mut tx = self.tx("resolve alerts")?;
        let mut n = 0;
        for k in kinds {
            n += tx
                .execute_cached(
                    RESOLVE,
                    &[&now, &tenant, &subject, &kind_pattern(k), &active_ms],
                )
                .map_err(pg("resolve alerts"))?;
        }
        tx.commit().map_err(pg("commit resolved alerts"))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
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
        let mut tx = self.tx("claim alert groups")?;
        let rows = tx
            .query(
                &claim_sql(
                    "alert_groups",
                    "flush_at IS NOT NULL AND flush_at <= $4",
                    "flush_at, id",
                    GROUP_COLUMNS,
                ),
                &[&holder, &until, &tenant, &now, &limit(n)],
            )
            .map_err(pg("claim alert groups"))?;
        tx.commit().map_err(pg("commit group claims"))?;
        let mut out: Vec<GroupRow> = rows.iter().map(group_row).collect();
        out.sort_by_key(|g| (g.flush_at, g.id));
        Ok(out)
    }

    fn group_members(&self, group_id: i64) -> Result<Vec<(AlertRow, i64)>, StoreError> {
        let rows = self
            .client()
            .query(MEMBERS, &[&group_id])
            .map_err(pg("read alert group"))?;
        Ok(rows.iter().map(|r| (alert_row(r), r.get(9))).collect())
    }

    fn hold_group(&mut self, group_id: i64, until: i64) -> Result<(), StoreError> {
        self.client()
            .execute(HOLD, &[&until, &group_id])
            .map_err(pg("hold alert group"))?;
        Ok(())
    }

    fn flush_group(
        &mut self,
        g: &GroupRow,
        dropped: &[(i64, &str)],
        message: Option<&NewNotification<'_>>,
        now: i64,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.tx("flush alert group")?;
        let none: Option<i64> = None;
        for (id, state) in dropped {
            tx.execute_cached(DROP_MEMBER, &[&g.id, id])
                .map_err(pg("drop alert from group"))?;
            tx.execute_cached(SET_ALERT, &[state, &none, id])
                .map_err(pg("file alert"))?;
        }
        let mut out = None;
        if let Some(m) = message {
            let fingerprints: Vec<String> = tx
                .query_cached(MEMBER_FINGERPRINTS, &[&g.id])
                .map_err(pg("read alert group"))?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let ids = serde_json::to_string(m.alert_ids).unwrap_or_else(|_| "[]".into());
            out = tx
                .query_cached(
                    ENQUEUE,
                    &[
                        &g.tenant,
                        &idem_key(g, g.seq + 1),
                        &g.route,
                        &g.destination,
                        &g.channel,
                        &m.title,
                        &m.body,
                        &ids,
                        &now,
                    ],
                )
                .map_err(pg("queue notification"))?
                .first()
                .map(|r| r.get(0));
            for fp in &fingerprints {
                tx.execute_cached(
                    MARK_SENT,
                    &[&g.tenant, &g.route, &g.destination, &g.channel, fp, &now],
                )
                .map_err(pg("mark alert sent"))?;
            }
        }
        tx.execute_cached(CLEAR_MEMBERS, &[&g.id])
            .map_err(pg("empty alert group"))?;
        tx.execute_cached(GROUP_FLUSHED, &[&i64::from(message.is_some()), &now, &g.id])
            .map_err(pg("flush alert group"))?;
        tx.commit().map_err(pg("commit alert group"))?;
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
        let mut tx = self.tx("claim notifications")?;
        let rows = tx
            .query(
                &claim_sql(
                    "notifications",
                    "state = 'pending' AND next_at <= $4",
                    "next_at, id",
                    NOTIFICATION_COLUMNS,
                ),
                &[&holder, &until, &tenant, &now, &limit(n)],
            )
            .map_err(pg("claim notifications"))?;
        tx.commit().map_err(pg("commit notification claims"))?;
        let mut out: Vec<NotificationRow> = rows.iter().map(notification_row).collect();
        out.sort_by_key(|r| r.id);
        Ok(out)
    }

    fn notification_sent(&mut self, id: i64, now: i64) -> Result<(), StoreError> {
        self.client()
            .execute(SENT, &[&now, &id])
            .map_err(pg("record notification sent"))?;
        Ok(())
    }

    fn notification_retry(
        &mut self,
        id: i64,
        next_at: i64,
        error: Option<&str>,
        count: bool,
    ) -> Result<(), StoreError> {
        self.client()
            .execute(RETRY, &[&next_at, &error, &i64::from(count), &id])
            .map_err(pg("reschedule notification"))?;
        Ok(())
    }

    fn notification_failed(
        &mut self,
        id: i64,
        state: &str,
        error: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.client()
            .execute(FAILED, &[&state, &error, &now, &id])
            .map_err(pg("give up on notification"))?;
        Ok(())
    }

    fn retry_notifications(
        &mut self,
        tenant: &str,
        ids: &[i64],
        now: i64,
    ) -> Result<usize, StoreError> {
        let mut tx = self.tx("retry notifications")?;
        let mut n = 0;
        if ids.is_empty() {
            n = tx
                .execute_cached(RETRY_ALL, &[&now, &tenant])
                .map_err(pg("retry notifications"))?;
        }
        for id in ids {
            n += tx
                .execute_cached(RETRY_ONE, &[&now, &tenant, id])
                .map_err(pg("retry notification"))?;
        }
        tx.commit().map_err(pg("commit notification retries"))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn notifications(
        &self,
        tenant: &str,
        state: Option<&str>,
        n: usize,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        let rows = self
            .client()
            .query(
                &format!(
                    "SELECT {NOTIFICATION_COLUMNS} FROM notifications
                      WHERE tenant = $1 AND ($2::text IS NULL OR state = $2) ORDER BY id DESC LIMIT $3"
                ),
                &[&tenant, &state, &limit(n)],
            )
            .map_err(pg("list notifications"))?;
        Ok(rows.iter().map(notification_row).collect())
    }

    fn pace(&self, tenant: &str, key: &str) -> Result<Option<i64>, StoreError> {
        let rows = self
            .client()
            .query(PACE, &[&tenant, &key])
            .map_err(pg("read pace"))?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    fn set_pace(&mut self, tenant: &str, key: &str, next_at: i64) -> Result<(), StoreError> {
        self.client()
            .execute(SET_PACE, &[&tenant, &key, &next_at])
            .map_err(pg("write pace"))?;
        Ok(())
    }

    fn add_silence(
        &mut self,
        tenant: &str,
        n: &NewSilence<'_>,
        now: i64,
    ) -> Result<i64, StoreError> {
        let row = self
            .client()
            .query_one(
                ADD_SILENCE,
                &[
                    &tenant,
                    &n.matchers,
                    &n.starts_at,
                    &n.ends_at,
                    &n.comment,
                    &n.created_by,
                    &now,
                ],
            )
            .map_err(pg("add silence"))?;
        Ok(row.get(0))
    }

    fn silences(&self, tenant: &str, all: bool, now: i64) -> Result<Vec<SilenceRow>, StoreError> {
        let rows = self
            .client()
            .query(
                &format!(
                    "SELECT {SILENCE_COLUMNS} FROM silences WHERE tenant = $1 AND ($2 OR ends_at > $3) ORDER BY id DESC"
                ),
                &[&tenant, &all, &now],
            )
            .map_err(pg("list silences"))?;
        Ok(rows.iter().map(silence_row).collect())
    }

    fn expire_silence(&mut self, tenant: &str, id: i64, now: i64) -> Result<bool, StoreError> {
        let n = self
            .client()
            .execute(EXPIRE_SILENCE, &[&now, &tenant, &id])
            .map_err(pg("end silence"))?;
        Ok(n == 1)
    }

    fn notify_backlog(&self, tenant: &str) -> Result<NotifyBacklog, StoreError> {
        let r = self
            .client()
            .query_one(BACKLOG, &[&tenant])
            .map_err(pg("count notifier backlog"))?;
        Ok(NotifyBacklog {
            new_alerts: r.get(0),
            groups_waiting: r.get(1),
            pending: r.get(2),
            dead: r.get(3),
        })
    }
}
