//! What the HTTP service keeps, one module per aggregate: API keys and the
//! intake log (`intake`), the review queue and alerts (`review`), the
//! CRM handoff outbox (`outbox`); here, the per-tenant counts `/metrics`
//! and reports read.

mod intake;
pub(crate) mod outbox;
mod review;

pub use intake::{
    ApiKey, ApiKeys, Claim, IntakeLog, IntakeRow, LEGACY_FORM_SCOPE, Logged, NewIntake, scoped_key,
};
pub use outbox::{CrmOutbox, Handoff};
pub(crate) use review::enqueue_review;
pub use review::{Alert, QueueItem, ReviewQueue};

use crate::{SqliteStore, StoreError, sql};
use rusqlite::params;
use serde::Serialize;

/// Counts for `/metrics` and reports, per tenant.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Backlog {
    pub review_open: i64,
    pub review_escalated: i64,
    pub review_overdue: i64,
    pub review_decided: i64,
    /// Decided by a person before the item was escalated.
    pub review_decided_within_sla: i64,
    pub outbox_pending: i64,
    pub outbox_delivered: i64,
    pub outbox_failed: i64,
    pub outbox_dead: i64,
    pub intake_pending: i64,
}

impl SqliteStore {
    /// Review, outbox and intake counts of `tenant`; `escalate_ms` is the
    /// SLA's first threshold, for the overdue count. Reads the open review
    /// items (the backlog, by index) and the kept counts (`tenant_counts`),
    /// never the decided items or the outbox row by row: those grow with
    /// every lead, and counting them would make a scrape grow with the store.
    pub fn backlog(&self, tenant: &str, escalate_ms: i64, now: i64) -> Result<Backlog, StoreError> {
        let mut b = Backlog::default();
        self.conn
            .prepare_cached(
                "SELECT count(*), count(escalated_at), count(CASE WHEN created_at + ?2 < ?3 THEN 1 END)
                   FROM review_queue INDEXED BY review_queue_open
                  WHERE tenant = ?1 AND decided_at IS NULL",
            )
            .and_then(|mut s| {
                s.query_row(params![tenant, escalate_ms, now], |r| {
                    b.review_open = r.get(0)?;
                    b.review_escalated = r.get(1)?;
                    b.review_overdue = r.get(2)?;
                    Ok(())
                })
            })
            .map_err(sql("count review queue"))?;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name, n FROM tenant_counts WHERE tenant = ?1")
            .map_err(sql("read kept counts"))?;
        let rows = stmt
            .query_map([tenant], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(sql("read kept counts"))?;
        for row in rows {
            let (name, n) = row.map_err(sql("read kept counts"))?;
            match name.as_str() {
                "review:decided" => b.review_decided = n,
                "review:in_time" => b.review_decided_within_sla = n,
                "outbox:pending" => b.outbox_pending = n,
                "outbox:delivered" => b.outbox_delivered = n,
                "outbox:failed" => b.outbox_failed = n,
                "outbox:dead" => b.outbox_dead = n,
                _ => {}
            }
        }
        b.intake_pending = self
            .conn
            .query_row(
                "SELECT count(*) FROM intake WHERE tenant = ?1 AND state = 'pending'",
                [tenant],
                |r| r.get(0),
            )
            .map_err(sql("count intake"))?;
        Ok(b)
    }

    /// Lead counts of `tenant` by status, for metrics.
    pub fn status_counts(&self, tenant: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT status, count(*) FROM leads WHERE tenant = ?1 GROUP BY status")
            .map_err(sql("count leads"))?;
        let rows = stmt
            .query_map([tenant], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql("count leads"))?;
        rows.collect::<Result<_, _>>().map_err(sql("count leads"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const TEST_CLAIM: Claim<'static> = Claim {
        holder: "host-a",
        lease_ms: 60_000,
    };

    /// `backlog` counted over the tables, as it did before the kept counts.
    fn counted(s: &SqliteStore, tenant: &str, escalate_ms: i64, now: i64) -> Backlog {
        let mut b = Backlog::default();
        s.conn
            .query_row(
                "SELECT count(CASE WHEN decided_at IS NULL THEN 1 END),
                        count(CASE WHEN decided_at IS NULL AND escalated_at IS NOT NULL THEN 1 END),
                        count(CASE WHEN decided_at IS NULL AND created_at + ?2 < ?3 THEN 1 END),
                        count(decided_at),
                        count(CASE WHEN decided_at IS NOT NULL AND escalated_at IS NULL
                                   AND reviewer NOT LIKE 'sla:%' THEN 1 END)
                   FROM review_queue WHERE tenant = ?1",
                params![tenant, escalate_ms, now],
                |r| {
                    b.review_open = r.get(0)?;
                    b.review_escalated = r.get(1)?;
                    b.review_overdue = r.get(2)?;
                    b.review_decided = r.get(3)?;
                    b.review_decided_within_sla = r.get(4)?;
                    Ok(())
                },
            )
            .unwrap();
        for (state, slot) in [
            ("pending", &mut b.outbox_pending),
            ("delivered", &mut b.outbox_delivered),
            ("failed", &mut b.outbox_failed),
            ("dead", &mut b.outbox_dead),
        ] {
            *slot = s
                .conn
                .query_row(
                    "SELECT count(*) FROM crm_outbox WHERE tenant = ?1 AND state = ?2",
                    params![tenant, state],
                    |r| r.get(0),
                )
                .unwrap();
        }
        b.intake_pending = s
            .conn
            .query_row(
                "SELECT count(*) FROM intake WHERE tenant = ?1 AND state = 'pending'",
                [tenant],
                |r| r.get(0),
            )
            .unwrap();
        b
    }

    fn same(a: &Backlog, b: &Backlog) -> bool {
        serde_json::to_value(a).unwrap() == serde_json::to_value(b).unwrap()
    }

    #[test]
    fn kept_counts_agree_with_the_tables_through_every_change_and_a_migration() {
        let dir = crate::test_support::TempStore::new("kept-counts");
        let mut s = dir.open();
        s.conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
        let h = 3_600_000;
        let check = |s: &SqliteStore, what: &str| {
            for tenant in ["a", "b"] {
                for now in [0, 2 * h, 10 * h] {
                    let kept = s.backlog(tenant, h, now).unwrap();
                    let direct = counted(s, tenant, h, now);
                    assert!(
                        same(&kept, &direct),
                        "{what}, {tenant} at {now}: {kept:?} != {direct:?}"
                    );
                }
            }
        };
        for (tenant, lead, at) in [
            ("a", "l1", 0),
            ("a", "l2", h),
            ("a", "l3", 2 * h),
            ("a", "l4", 3 * h),
            ("b", "l5", 0),
        ] {
            enqueue_review(
                &s.conn,
                tenant,
                lead,
                "validation",
                None,
                "r",
                "form",
                Some(0.5),
                at,
            )
            .unwrap();
        }
        // The same lead and kind again: ignored, not counted twice.
        enqueue_review(
            &s.conn,
            "a",
            "l1",
            "validation",
            None,
            "r",
            "form",
            Some(0.5),
            5,
        )
        .unwrap();
        check(&s, "queued");
        let ids: Vec<i64> = s
            .open_queue(Some("a"))
            .unwrap()
            .into_iter()
            .map(|q| q.id)
            .collect();
        assert_eq!(ids.len(), 4);
        // In time; after escalation; by the fallback; escalated, open.
        assert!(
            s.decide_queue(ids[0], "accept", "ann", None, h / 2)
                .unwrap()
        );
        s.escalate_item(ids[1], 6 * h).unwrap();
        assert!(
            s.decide_queue(ids[1], "reject", "ann", None, 7 * h)
                .unwrap()
        );
        assert!(
            s.decide_queue(ids[2], "reject", "sla:fallback", None, 30 * h)
                .unwrap()
        );
        s.escalate_item(ids[3], 8 * h).unwrap();
        // Decided twice: refused, counted once.
        assert!(!s.decide_queue(ids[0], "reject", "bob", None, h).unwrap());
        check(&s, "decided");

        for (tenant, lead) in [
            ("a", "l1"),
            ("a", "l2"),
            ("a", "l3"),
            ("a", "l4"),
            ("b", "l5"),
        ] {
            s.enqueue_handoff(tenant, lead, "hubspot", "upsert", None, 1)
                .unwrap();
        }
        // Still waiting: not queued again.
        assert_eq!(
            s.enqueue_handoff("a", "l1", "hubspot", "upsert", None, 2)
                .unwrap(),
            None
        );
        check(&s, "handed off");
        let outbox = |lead: &str| -> i64 {
            s.conn
                .query_row(
                    "SELECT id FROM crm_outbox WHERE lead_id = ?1",
                    [lead],
                    |r| r.get(0),
                )
                .unwrap()
        };
        let (o1, o2, o3) = (outbox("l1"), outbox("l2"), outbox("l3"));
        for (id, state) in [(o1, "delivered"), (o2, "failed"), (o3, "dead")] {
            s.conn
                .execute(
                    "UPDATE crm_outbox SET state = ?2 WHERE id = ?1",
                    params![id, state],
                )
                .unwrap();
        }
        // A retry touches other columns only.
        s.handoff_retry(o1, 9, "429", 3).unwrap();
        check(&s, "delivered, failed, dead");
        assert_eq!(s.retry_handoffs("a", &[], 4).unwrap(), 2);
        check(&s, "replayed");
        s.conn
            .execute_batch("DELETE FROM crm_outbox WHERE lead_id = 'l4'; DELETE FROM review_queue WHERE lead_id = 'l1';")
            .unwrap();
        check(&s, "deleted");

        // A store from before the counts: they are counted at the migration.
        s.conn
            .execute_batch(
                "DROP TABLE tenant_counts;
                 DROP TRIGGER crm_outbox_counted; DROP TRIGGER crm_outbox_recounted;
                 DROP TRIGGER crm_outbox_uncounted; DROP TRIGGER review_queue_decided;
                 DROP TRIGGER review_queue_uncounted; DROP TABLE match_keys_mid; DROP TABLE match_keys_mid_moved;
                 ALTER TABLE crm_outbox DROP COLUMN claimed_by; ALTER TABLE crm_outbox DROP COLUMN claimed_until;
                 ALTER TABLE intake DROP COLUMN claimed_by; ALTER TABLE intake DROP COLUMN claimed_until;
                 DROP TABLE passes; DROP TABLE reps; DROP TABLE assignments; DROP TABLE timers; DROP INDEX alerts_new; DROP INDEX alerts_subject;
                 ALTER TABLE alerts DROP COLUMN labels; ALTER TABLE alerts DROP COLUMN state; ALTER TABLE alerts DROP COLUMN ends_at;
                 ALTER TABLE alerts DROP COLUMN claimed_by; ALTER TABLE alerts DROP COLUMN claimed_until;
                 DROP TABLE alert_groups; DROP TABLE alert_members; DROP TABLE alert_sent; DROP TABLE notifications;
                 DROP TABLE notify_pace; DROP TABLE silences; DROP INDEX crm_records_crm; DROP INDEX crm_outbox_crm;
                 DROP TABLE rule_versions; DROP TABLE rule_leads; DROP TABLE rule_inbox; DROP TABLE rule_executions;
                 DROP TABLE rule_actions; DROP TABLE lead_stages; DROP INDEX events_stage;
                 PRAGMA user_version = 8;",
            )
            .unwrap();
        drop(s);
        let s = dir.open();
        check(&s, "migrated");
    }

    #[test]
    fn intake_is_idempotent_by_tenant_and_key() {
        let mut s = SqliteStore::open(":memory:").unwrap();
        let req = |tenant, key| NewIntake {
            tenant,
            key,
            kind: "leads",
            fingerprint: "f",
            body: "[]",
            lead_ids: "[]",
        };
        let first = s
            .log_intake(&[req("a", "k1"), req("b", "k1")], TEST_CLAIM, 1)
            .unwrap();
        assert!(matches!(first[0], Logged::New(_)));
        assert!(matches!(first[1], Logged::New(_)));
        let again = s.log_intake(&[req("a", "k1")], TEST_CLAIM, 2).unwrap();
        let Logged::Seen(row) = &again[0] else {
            panic!("a redelivery is seen")
        };
        assert_eq!(row.state, "pending");
        assert_eq!(s.pending_intake("a", 10).unwrap().len(), 1);
        assert_eq!(s.pending_intake("b", 10).unwrap().len(), 1);
        s.finish_intake(&[(row.id, 201, "{\"ok\":true}")], 3)
            .unwrap();
        let done = s.intake("a", row.id).unwrap().unwrap();
        assert_eq!(done.state, "done");
        assert_eq!(done.result.as_deref(), Some("{\"ok\":true}"));
        assert!(done.body.is_empty());
        // Another tenant cannot read it.
        assert!(s.intake("b", row.id).unwrap().is_none());
        assert_eq!(s.pending_intake("a", 10).unwrap().len(), 0);
    }

    #[test]
    fn a_key_is_scoped_to_its_route_and_rows_logged_before_answer_as_before() {
        let dir = crate::test_support::TempStore::new("scoped-keys");
        let mut s = dir.open();
        let req = |key: &'static str, kind: &'static str| NewIntake {
            tenant: "a",
            key,
            kind,
            fingerprint: "f",
            body: "[]",
            lead_ids: "[]",
        };
        // Rows as a store before migration 11 held them: unscoped keys.
        let old = s
            .log_intake(
                &[
                    req("key:L", "leads"),
                    req("key:F", "form"),
                    req("events:abc", "events"),
                    req("hubspot:9", "hubspot"),
                    req("key:W", "webhook"),
                ],
                TEST_CLAIM,
                1,
            )
            .unwrap();
        let ids: Vec<i64> = old
            .iter()
            .map(|l| match l {
                Logged::New(id) => *id,
                Logged::Seen(_) => panic!("new rows"),
            })
            .collect();
        s.finish_intake(&[(ids[0], 200, "{\"leads\":1}")], 2)
            .unwrap();
        s.conn
            .execute_batch(
                "ALTER TABLE crm_outbox DROP COLUMN claimed_by; ALTER TABLE crm_outbox DROP COLUMN claimed_until;
                 ALTER TABLE intake DROP COLUMN claimed_by; ALTER TABLE intake DROP COLUMN claimed_until;
                 DROP TABLE passes; DROP TABLE reps; DROP TABLE assignments; DROP TABLE timers; DROP INDEX alerts_new; DROP INDEX alerts_subject;
                 ALTER TABLE alerts DROP COLUMN labels; ALTER TABLE alerts DROP COLUMN state; ALTER TABLE alerts DROP COLUMN ends_at;
                 ALTER TABLE alerts DROP COLUMN claimed_by; ALTER TABLE alerts DROP COLUMN claimed_until;
                 DROP TABLE alert_groups; DROP TABLE alert_members; DROP TABLE alert_sent; DROP TABLE notifications;
                 DROP TABLE notify_pace; DROP TABLE silences; DROP INDEX crm_records_crm; DROP INDEX crm_outbox_crm;
                 DROP TABLE rule_versions; DROP TABLE rule_leads; DROP TABLE rule_inbox; DROP TABLE rule_executions;
                 DROP TABLE rule_actions; DROP TABLE lead_stages; DROP INDEX events_stage;",
            )
            .unwrap();
        s.conn.pragma_update(None, "user_version", 10).unwrap();
        drop(s);
        let mut s = dir.open();
        // Each row answers under its route's scope, as it did unscoped.
        for (scope, key, id) in [
            ("POST /v1/leads", "key:L", ids[0]),
            ("POST /v1/events", "events:abc", ids[2]),
            ("POST /v1/webhooks/{tenant}/hubspot", "hubspot:9", ids[3]),
            ("POST /v1/webhooks/{tenant}/lead", "key:W", ids[4]),
        ] {
            let k = scoped_key(scope, key);
            let again = s
                .log_intake(
                    &[NewIntake {
                        key: &k,
                        ..req("", "leads")
                    }],
                    TEST_CLAIM,
                    3,
                )
                .unwrap();
            let Logged::Seen(row) = &again[0] else {
                panic!("{scope} {key} is seen after the migration")
            };
            assert_eq!(row.id, id);
        }
        // A form's name was not kept: its row is found through the form scope
        // of rows from before, by every form route.
        assert_eq!(
            s.legacy_form_key("a", "key:F").unwrap(),
            Some(scoped_key(LEGACY_FORM_SCOPE, "key:F"))
        );
        assert_eq!(s.legacy_form_key("a", "key:L").unwrap(), None);
        assert_eq!(s.legacy_form_key("b", "key:F").unwrap(), None);
        assert_eq!(s.tenants_with_legacy_form_keys().unwrap(), vec!["a"]);
        // The same key on another route is a new request; both are kept.
        let same: Vec<(String, &str)> = [
            ("POST /v1/events", "events"),
            ("POST /v1/leads", "leads"),
            ("POST /v1/forms/a", "form"),
            ("POST /v1/forms/b", "form"),
        ]
        .into_iter()
        .map(|(scope, kind)| (scoped_key(scope, "key:same"), kind))
        .collect();
        let requests: Vec<NewIntake<'_>> = same
            .iter()
            .map(|(key, kind)| NewIntake {
                key,
                ..req("", kind)
            })
            .collect();
        let logged = s.log_intake(&requests, TEST_CLAIM, 4).unwrap();
        assert!(logged.iter().all(|l| matches!(l, Logged::New(_))));
        assert_eq!(s.pending_intake("a", 100).unwrap().len(), 8);
    }

    #[test]
    fn a_batch_commits_its_writes_together_or_not_at_all() {
        let mut s = SqliteStore::open(":memory:").unwrap();
        let req = |key| NewIntake {
            tenant: "a",
            key,
            kind: "leads",
            fingerprint: "f",
            body: "[]",
            lead_ids: "[]",
        };
        // Rolled back when dropped: neither write is kept.
        {
            let mut b = s.batch().unwrap();
            let logged = b.log_intake(&[req("k1")], TEST_CLAIM, 1).unwrap();
            let Logged::New(id) = logged[0] else {
                panic!("a new key is new")
            };
            b.finish_intake(&[(id, 200, "{}")], 2).unwrap();
            assert!(b.logged_keys("a", ["k1"]).unwrap().contains("k1"));
        }
        assert!(s.logged_keys("a", ["k1"]).unwrap().is_empty());
        // A batch cannot be opened inside another.
        {
            let mut b = s.batch().unwrap();
            assert!(b.batch().is_err());
        }
        // Committed: both are.
        let mut b = s.batch().unwrap();
        let logged = b
            .log_intake(&[req("k1"), req("k2")], TEST_CLAIM, 1)
            .unwrap();
        let Logged::New(id) = logged[0] else {
            panic!("a new key is new")
        };
        b.finish_intake(&[(id, 200, "{}")], 2).unwrap();
        b.commit().unwrap();
        assert_eq!(s.logged_keys("a", ["k1", "k2", "k3"]).unwrap().len(), 2);
        assert_eq!(s.intake("a", id).unwrap().unwrap().state, "done");
        assert_eq!(s.pending_intake("a", 10).unwrap().len(), 1);
        // Other tenants' keys are theirs.
        assert!(s.logged_keys("b", ["k1"]).unwrap().is_empty());
    }

    #[test]
    fn only_review_items_a_threshold_acts_on_are_due() {
        let s = SqliteStore::open(":memory:").unwrap();
        // Items without leads behind them: only the queue matters here.
        s.conn.pragma_update(None, "foreign_keys", "OFF").unwrap();
        let h = 3_600_000;
        let now = 100 * h;
        // (lead, tenant, age in hours); what happened to each is set below.
        let items = [
            ("young", "a", 1),
            ("to-escalate", "a", 5),
            ("escalated", "a", 5),
            ("to-fall-back", "a", 25),
            ("done-with", "a", 25),
            ("decided", "a", 25),
            ("other-tenant", "b", 25),
            ("fell-back-unescalated", "a", 25),
        ];
        for (lead, tenant, age) in items {
            enqueue_review(
                &s.conn,
                tenant,
                lead,
                "validation",
                None,
                "r",
                "api",
                None,
                now - age * h,
            )
            .unwrap();
        }
        let id = |lead: &str| -> i64 {
            s.conn
                .query_row(
                    "SELECT id FROM review_queue WHERE lead_id = ?1",
                    [lead],
                    |r| r.get(0),
                )
                .unwrap()
        };
        s.escalate_item(id("escalated"), now).unwrap();
        s.escalate_item(id("to-fall-back"), now).unwrap();
        s.escalate_item(id("done-with"), now).unwrap();
        s.fallback_item(id("done-with"), "manual", now).unwrap();
        s.fallback_item(id("fell-back-unescalated"), "manual", now)
            .unwrap();
        s.conn
            .execute(
                "UPDATE review_queue SET decided_at = ?2 WHERE id = ?1",
                params![id("decided"), now],
            )
            .unwrap();
        let due = |s: &SqliteStore| -> Vec<String> {
            s.due_queue("a", now - 4 * h, now - 24 * h)
                .unwrap()
                .into_iter()
                .map(|i| i.lead_id)
                .collect()
        };
        assert_eq!(
            due(&s),
            ["to-fall-back", "fell-back-unescalated", "to-escalate"],
            "oldest first"
        );
        s.escalate_item(id("to-escalate"), now).unwrap();
        s.fallback_item(id("to-fall-back"), "manual", now).unwrap();
        s.escalate_item(id("fell-back-unescalated"), now).unwrap();
        assert!(due(&s).is_empty(), "{:?}", due(&s));
        // Items that are done with their thresholds are out of the index
        // the scheduler reads.
        let indexed: i64 = s
            .conn
            .query_row(
                "SELECT count(*) FROM review_queue INDEXED BY review_queue_due
                  WHERE tenant = 'a' AND decided_at IS NULL
                    AND (escalated_at IS NULL OR fallback_at IS NULL) AND created_at > 0",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            indexed, 3,
            "young, escalated and to-escalate still wait for a threshold"
        );
    }

    #[test]
    fn api_keys_resolve_until_revoked() {
        let s = SqliteStore::open(":memory:").unwrap();
        s.add_api_key("acme", "ci", "h1", "lg_acme_ab", 1).unwrap();
        assert_eq!(s.api_key_tenant("h1").unwrap().as_deref(), Some("acme"));
        assert_eq!(s.api_key_tenant("h2").unwrap(), None);
        assert_eq!(s.revoke_api_key("other", "ci", 2).unwrap(), 0);
        assert_eq!(s.revoke_api_key("acme", "ci", 2).unwrap(), 1);
        assert_eq!(s.api_key_tenant("h1").unwrap(), None);
        assert_eq!(s.api_keys(Some("acme")).unwrap()[0].revoked_at, Some(2));
    }
}
