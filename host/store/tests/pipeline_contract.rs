//! The pipeline's aggregates — runs and the audit trail, the match index,
//! merges and golden records, match reviews, the review queue, enrichment,
//! events and scores, re-keying, and what the API reads back — driven
//! through the same calls on SQLite and on PostgreSQL, which must give the
//! same answers. The PostgreSQL half needs `LEADGATE_TEST_POSTGRES` (see
//! `backends.rs`); without it, SQLite's answers are still checked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use leadgate_lead::{Issue, Lead, Severity};
use leadgate_store::enrich::{CacheRow, Enriched, Qualified};
use leadgate_store::prelude::*;
use leadgate_store::score::{EventReject, NewEvent, ScoreWrite, Surfaced};
use leadgate_store::{Link, LinkKind, Record, Review, Status, Store, Totals, key_hash};

mod common;
use common::TestDb;

fn lead(id: &str, email: &str) -> Lead {
    Lead {
        id: id.into(),
        tenant: "acme".into(),
        email: Some(email.into()),
        received_at: 1_000,
        ..Lead::default()
    }
}

fn normalized(l: &Lead) -> String {
    let domain = l
        .email
        .as_deref()
        .and_then(|e| e.rsplit_once('@'))
        .map_or("", |(_, d)| d);
    format!(
        r#"{{"id":"{}","tenant":"acme","email":"{}","domain":"{domain}","external_ids":[{{"system":"CRM","id":"x-{}"}}]}}"#,
        l.id,
        l.email.as_deref().unwrap_or(""),
        l.id
    )
}

fn keys(email: &str) -> Vec<i64> {
    let domain = email.rsplit_once('@').map_or("", |(_, d)| d);
    vec![key_hash("acme", email), key_hash("acme", domain)]
}

/// Answers of every read the scenario makes, as text, in order.
#[derive(Default)]
struct Answers(Vec<String>);

impl Answers {
    fn push(&mut self, what: &str, answer: impl std::fmt::Debug) {
        self.0.push(format!("{what}: {answer:?}"));
    }
}

/// One scenario over every aggregate the pipeline writes and reads.
fn scenario(s: &mut Store) -> Answers {
    let mut a = Answers::default();
    let leads = [
        lead("l1", "ann@acme.io"),
        lead("l2", "bob@acme.io"),
        lead("l3", "ann@acme.io"),
        lead("l4", "cy@other.io"),
        lead("l5", "dee@other.io"),
        lead("l6", "eve@third.io"),
    ];
    let norm: Vec<String> = leads.iter().map(normalized).collect();
    let key_sets: Vec<Vec<i64>> = leads
        .iter()
        .map(|l| keys(l.email.as_deref().unwrap()))
        .collect();
    let issues = [
        Issue {
            field: "phone".into(),
            code: "phone.invalid".into(),
            severity: Severity::Warning,
            message: "not a number".into(),
        },
        Issue {
            field: "email".into(),
            code: "email.role".into(),
            severity: Severity::Info,
            message: "a role address".into(),
        },
    ];
    let run = s.begin_run("acme", "in.csv", "{}", 10).unwrap();
    a.push("run", s.run_status(run).unwrap());
    // First batch: two leads accepted, one for review (with issues), one
    // enriched and queued again, one exception.
    let first: Vec<Record<'_>> = (0..2)
        .map(|i| Record {
            line: i as u64 + 1,
            raw: &leads[i],
            status: Status::Accepted,
            validation: Status::Accepted,
            normalized: Some(&norm[i]),
            issues: &[],
            exception: None,
            keys: &key_sets[i],
            link: None,
            review: None,
            enrichment: (i == 1).then_some(Enriched {
                component: "enrich-c",
                status: "partial",
                json: r#"{"industry":{"value":"software"}}"#,
                requeue: Some("pending"),
            }),
            qualification: Some(Qualified {
                state: "qualified",
                reasons: "[]",
            }),
        })
        .chain([
            Record {
                line: 4,
                raw: &leads[3],
                status: Status::Review,
                validation: Status::Review,
                normalized: Some(&norm[3]),
                issues: &issues,
                exception: None,
                keys: &key_sets[3],
                link: None,
                review: None,
                enrichment: None,
                qualification: None,
            },
            Record {
                line: 6,
                raw: &leads[5],
                status: Status::Exception,
                validation: Status::Exception,
                normalized: None,
                issues: &[],
                exception: Some(("trap", "the component trapped")),
                keys: &[],
                link: None,
                review: None,
                enrichment: None,
                qualification: None,
            },
        ])
        .collect();
    s.record(run, "validate", "validate-c", &first, 20).unwrap();
    // The candidates of l3 (same email as l1) and l5 (same domain as l4).
    a.push(
        "candidates",
        s.candidates_for_each("acme", &[key_sets[2].clone(), key_sets[4].clone()], 5, 10)
            .unwrap()
            .iter()
            .map(|c| {
                c.iter()
                    .map(|c| (c.id.clone(), c.master.clone()))
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>(),
    );
    a.push(
        "other tenant's candidates",
        s.candidates("globex", &key_sets[2], 5, 10).unwrap().len(),
    );
    // Second batch: l3 merges into l1; l5 may be l4's duplicate.
    let second = [
        Record {
            line: 3,
            raw: &leads[2],
            status: Status::Duplicate,
            validation: Status::Accepted,
            normalized: Some(&norm[2]),
            issues: &[],
            exception: None,
            keys: &key_sets[2],
            link: Some(Link {
                master: "l1",
                kind: LinkKind::Merge,
                probability: 0.99,
                evidence: "{}",
                decided_by: "auto",
            }),
            review: None,
            enrichment: None,
            qualification: None,
        },
        Record {
            line: 5,
            raw: &leads[4],
            status: Status::Accepted,
            validation: Status::Accepted,
            normalized: Some(&norm[4]),
            issues: &[],
            exception: None,
            keys: &key_sets[4],
            link: None,
            review: Some(Review {
                other: "l4",
                probability: 0.6,
                evidence: "{\"w\":1}",
                reason: "uncertain",
            }),
            enrichment: None,
            qualification: None,
        },
    ];
    s.record(run, "validate", "validate-c", &second, 30)
        .unwrap();
    s.set_golden("acme", "l1", Some("{\"golden\":true}"), 31)
        .unwrap();
    s.finish_run(
        run,
        &Totals {
            total: 6,
            accepted: 3,
            rejected: 0,
            review: 1,
            exceptions: 1,
            duplicates: 1,
        },
        "done",
        40,
    )
    .unwrap();
    a.push("run", s.run_status(run).unwrap());
    a.push("run leads", s.run_leads(run).unwrap());
    a.push(
        "exceptions",
        s.open_exceptions(10)
            .unwrap()
            .iter()
            .map(|e| (e.lead_id.clone(), e.code.clone(), e.error.clone()))
            .collect::<Vec<_>>(),
    );
    for id in ["l1", "l3", "l4", "l6", "nope"] {
        a.push("lead row", s.lead_row(id).unwrap());
        a.push("master", s.master_of(id).unwrap());
        a.push("lead", s.lead(id).unwrap().map(|(st, l)| (st, l.id)));
        a.push("merges", s.merges_of(id).unwrap());
        a.push("state", s.lead_state("acme", id).unwrap());
        a.push("issues", s.lead_issues(id).unwrap());
        a.push("facts", s.lead_facts(id).unwrap());
        a.push("enrichment", s.enrichment(id).unwrap());
    }
    a.push(
        "golden members",
        s.golden_members("l1")
            .unwrap()
            .iter()
            .map(|m| m.id.clone())
            .collect::<Vec<_>>(),
    );
    a.push("golden", s.golden("l1").unwrap());
    a.push(
        "recorded",
        s.recorded(&["l9".into(), "l2".into(), "l1".into()])
            .unwrap(),
    );
    a.push("status counts", s.status_counts("acme").unwrap());
    a.push("match reviews", s.open_reviews("acme", 10).unwrap());
    let queue = s.open_queue(Some("acme")).unwrap();
    a.push(
        "queue",
        queue
            .iter()
            .map(|q| {
                (
                    q.lead_id.clone(),
                    q.kind.clone(),
                    q.reason.clone(),
                    q.issues,
                    q.lead_a.clone(),
                )
            })
            .collect::<Vec<_>>(),
    );
    a.push(
        "due",
        s.due_queue("acme", 25, 0)
            .unwrap()
            .iter()
            .map(|q| q.lead_id.clone())
            .collect::<Vec<_>>(),
    );
    a.push("backlog", s.backlog("acme", 5, 40).unwrap());
    // A person decides the match item, once; the pair remembers it.
    let item = queue.iter().find(|q| q.kind == "match").unwrap();
    a.push(
        "decide",
        s.decide_queue(item.id, "distinct", "ana", Some("n"), 50)
            .unwrap(),
    );
    a.push(
        "decide again",
        s.decide_queue(item.id, "merge", "bo", None, 51).unwrap(),
    );
    a.push("pair", s.pair_decision("acme", "l5", "l4").unwrap());
    a.push("decided reviews", s.decided_reviews("acme").unwrap().len());
    let validation = queue.iter().find(|q| q.kind == "validation").unwrap();
    a.push("escalate", s.escalate_item(validation.id, 60).unwrap());
    a.push(
        "escalate again",
        s.escalate_item(validation.id, 60).unwrap(),
    );
    a.push(
        "fall back",
        s.fallback_item(validation.id, "manual", 61).unwrap(),
    );
    a.push(
        "fall back again",
        s.fallback_item(validation.id, "accept", 61).unwrap(),
    );
    s.set_outcome("l4", Status::Accepted, "qualified", "sla:fallback", 62)
        .unwrap();
    s.add_alert("acme", "review.escalated", "l4", "late", 63)
        .unwrap();
    a.push(
        "alerts",
        s.alerts("acme", 5)
            .unwrap()
            .iter()
            .map(|x| (x.kind.clone(), x.subject.clone()))
            .collect::<Vec<_>>(),
    );
    a.push("backlog", s.backlog("acme", 5, 70).unwrap());
    a.push(
        "queue item",
        s.queue_item("acme", validation.id)
            .unwrap()
            .map(|q| (q.escalated_at, q.fallback)),
    );
    // Unmerging restores l3 exactly.
    let before = s.lead_row("l3").unwrap();
    a.push("unmerge", s.unmerge("l3", "ana", 80).unwrap().len());
    let after = s.lead_row("l3").unwrap().unwrap();
    a.push("after unmerge", (&after.status, &after.master_id));
    assert_eq!(before.unwrap().raw, after.raw);
    // Enrichment outside a run, the cache, provider stats.
    a.push("enrich queue", s.enrich_queue("acme", 10).unwrap());
    s.update_enrichment(
        "l2",
        "acme",
        None,
        &Enriched {
            component: "enrich-c",
            status: "complete",
            json: "{}",
            requeue: None,
        },
        &Qualified {
            state: "qualified",
            reasons: "[\"icp\"]",
        },
        90,
    )
    .unwrap();
    a.push("enrich queue", s.enrich_queue("acme", 10).unwrap());
    let cache = |key: &str, at: i64| CacheRow {
        provider: "p".into(),
        kind: "domain".into(),
        key: key.into(),
        value: format!("{{\"at\":{at}}}"),
        fetched_at: at,
    };
    s.save_cache(&[cache("a.io", 5), cache("b.io", 6), cache("a.io", 7)])
        .unwrap();
    s.save_cache(&[cache("b.io", 3)]).unwrap();
    let mut rows = s.cache_rows(0).unwrap();
    rows.sort_by(|x, y| x.key.cmp(&y.key));
    a.push("cache", rows);
    s.save_provider_stats(run, "p", "{\"ok\":1}").unwrap();
    s.save_provider_stats(run, "p", "{\"ok\":2}").unwrap();
    a.push("provider stats", s.provider_stats(run).unwrap());
    // Events: by id, email and external id; a repeat; one for no one yet.
    let event =
        |id: &str, email: Option<&str>, ext: Option<&str>, lead_ref: Option<&str>| NewEvent {
            id: id.into(),
            kind: "page_view",
            at: 100,
            category: Some("pricing".into()),
            value: 1.0,
            url: None,
            email: email.map(str::to_string),
            lead_ref: lead_ref.map(str::to_string),
            external: ext.map(|x| ("crm".to_string(), x.to_string())),
            payload: "{}".into(),
        };
    let inserted = s
        .insert_events(
            "acme",
            &[
                event("e1", Some("bob@acme.io"), None, None),
                event("e2", None, Some("x-l4"), None),
                event("e3", None, None, Some("l5")),
                event("e4", Some("new@acme.io"), None, None),
                event("e1", Some("bob@acme.io"), None, None),
            ],
            110,
        )
        .unwrap();
    a.push(
        "events",
        (
            inserted.stored,
            inserted.duplicates,
            inserted.attached,
            &inserted.leads,
        ),
    );
    s.reject_events(
        "acme",
        "ev.ndjson",
        &[EventReject {
            line: 3,
            field: "at".into(),
            code: "event.at".into(),
            message: "no time".into(),
            raw: "{}".into(),
        }],
        111,
    )
    .unwrap();
    a.push("unattached", s.unattached_events("acme").unwrap());
    a.push("attach", s.attach_pending("acme").unwrap());
    a.push("lead count", s.lead_count("acme").unwrap());
    let mut scoring: Vec<String> = s
        .scoring_leads("acme", None)
        .unwrap()
        .into_iter()
        .map(|l| l.id)
        .collect();
    scoring.sort();
    a.push("scoring leads", scoring);
    a.push(
        "scoring some",
        s.scoring_leads("acme", Some(&["l2".into(), "l3".into()]))
            .unwrap()
            .len(),
    );
    let mut members = s.account_members("acme", &["acme.io".into()]).unwrap();
    members.sort();
    a.push("account", members);
    let mut active = s
        .active_account_members("acme", &["acme.io".into(), "other.io".into()], 50)
        .unwrap();
    active.sort();
    a.push("active", active);
    let mut recent: Vec<(String, String)> = s
        .recent_events("acme", 0, None)
        .unwrap()
        .into_iter()
        .map(|(l, e)| (l, e.kind))
        .collect();
    recent.sort();
    a.push("recent", recent);
    a.push(
        "recent some",
        s.recent_events("acme", 0, Some(&["l2".into()]))
            .unwrap()
            .len(),
    );
    let score = |lead: &str, total: u8, changed: bool| ScoreWrite {
        lead_id: lead.into(),
        total,
        grade: "B".into(),
        probability: Some(0.25),
        fit: 1.0,
        engagement: 2.0,
        intent: 3.0,
        detail: format!("{{\"total\":{total}}}"),
        above: total > 50,
        surfaced_at: (total > 50).then_some(120),
        changed,
        cause: "events".into(),
    };
    s.save_scores(
        "acme",
        "score-c",
        &[score("l1", 40, true), score("l2", 70, true)],
        &[Surfaced {
            lead_id: "l2".into(),
            trigger: "threshold".into(),
            payload: "{\"lead\":\"l2\"}".into(),
        }],
        120,
    )
    .unwrap();
    s.save_scores(
        "acme",
        "score-c",
        &[score("l1", 45, true), score("l1", 45, false)],
        &[],
        130,
    )
    .unwrap();
    let mut states: Vec<_> = s
        .score_states("acme", 125, None)
        .unwrap()
        .into_iter()
        .collect();
    states.sort_by(|x, y| x.0.cmp(&y.0));
    a.push("score states", states);
    a.push(
        "score states some",
        s.score_states("acme", 0, Some(&["l1".into()])).unwrap(),
    );
    a.push("stored score", s.stored_score("l1").unwrap());
    let mut details: Vec<_> = s
        .score_details(&["l1".into(), "l2".into(), "l4".into()])
        .unwrap()
        .into_iter()
        .collect();
    details.sort();
    a.push("score details", details);
    let surfaced = s.undelivered_surfaced("acme", 10).unwrap();
    a.push(
        "surfaced",
        surfaced.iter().map(|x| x.1.clone()).collect::<Vec<_>>(),
    );
    s.surfaced_delivered(&surfaced.iter().map(|x| x.0).collect::<Vec<_>>(), 140)
        .unwrap();
    a.push(
        "surfaced after",
        s.undelivered_surfaced("acme", 10).unwrap().len(),
    );
    let mut masters: Vec<_> = s.masters("acme", None).unwrap().into_iter().collect();
    masters.sort();
    a.push("masters", masters);
    // A reviewer's merge outside a run, then re-keying every keyed lead.
    s.link(
        "acme",
        "l5",
        &Link {
            master: "l4",
            kind: LinkKind::Link,
            probability: 0.7,
            evidence: "{}",
            decided_by: "reviewer:ana",
        },
        150,
    )
    .unwrap();
    a.push(
        "linked",
        s.lead_row("l5").unwrap().map(|r| (r.status, r.master_id)),
    );
    let mut seen = Vec::new();
    let visited = s
        .keyed_leads("acme", 2, |chunk| {
            seen.extend(chunk.iter().map(|l| l.id.clone()));
            Ok::<(), ()>(())
        })
        .unwrap()
        .unwrap();
    a.push("keyed", (visited, seen));
    let rekeyed = s
        .rekey("acme", 2, |chunk, _| {
            Ok::<_, ()>(
                chunk
                    .iter()
                    .map(|l| vec![key_hash("acme", &format!("new:{}", l.id))])
                    .collect(),
            )
        })
        .unwrap()
        .unwrap();
    a.push("rekeyed", (rekeyed.leads, rekeyed.keys_after));
    a.push(
        "candidates after rekey",
        s.candidates("acme", &[key_hash("acme", "new:l2")], 5, 5)
            .unwrap()
            .iter()
            .map(|c| c.id.clone())
            .collect::<Vec<_>>(),
    );
    a.push(
        "old key",
        s.candidates("acme", &key_sets[1], 5, 5).unwrap().len(),
    );
    let failed: Result<_, &str> = s
        .rekey("acme", 2, |_, _| Err::<Vec<Vec<i64>>, _>("stop"))
        .unwrap();
    a.push("failed rekey", failed.err());
    a.push(
        "kept after failed rekey",
        s.candidates("acme", &[key_hash("acme", "new:l2")], 5, 5)
            .unwrap()
            .len(),
    );
    // Handoffs, keys and requests, for the copy to carry.
    let h = s
        .enqueue_handoff("acme", "l1", "hubspot", "create", None, 160)
        .unwrap()
        .unwrap();
    s.enqueue_handoff("acme", "l2", "hubspot", "create", None, 161)
        .unwrap();
    let due = s.due_handoffs("acme", 170, 10).unwrap();
    let first = due.iter().find(|d| d.id == h).unwrap();
    s.handoffs_delivered(&[(first, "crm-1")], 171).unwrap();
    s.add_api_key("acme", "web", "hash-1", "lg_1", 172).unwrap();
    s.log_intake(
        &[leadgate_store::service::NewIntake {
            tenant: "acme",
            key: "POST /v1/leads\nk1",
            kind: "leads",
            fingerprint: "f",
            body: &"b".repeat(3_000),
            lead_ids: "[\"l1\"]",
        }],
        leadgate_store::service::Claim {
            holder: "host-a",
            lease_ms: 60_000,
        },
        173,
    )
    .unwrap();
    // A batch commits everything or, dropped, nothing.
    {
        let b = s.batch().unwrap();
        b.add_alert("acme", "k", "l1", "kept", 200).unwrap();
        b.commit().unwrap();
    }
    {
        let b = s.batch().unwrap();
        b.add_alert("acme", "k", "l1", "dropped", 201).unwrap();
    }
    a.push(
        "alerts after batches",
        s.alerts("acme", 10)
            .unwrap()
            .iter()
            .map(|x| x.message.clone())
            .collect::<Vec<_>>(),
    );
    for table in [
        "leads",
        "decisions",
        "issues",
        "exceptions",
        "match_keys",
        "merges",
        "events",
        "score_history",
    ] {
        a.push(table, s.count(table).unwrap());
    }
    a
}

#[test]
fn the_pipeline_s_aggregates_answer_the_same_on_every_backend() {
    let sqlite = scenario(&mut Store::open(":memory:").unwrap());
    let text = sqlite.0.join("\n");
    // Spot checks of SQLite's own answers, so the comparison means something.
    for expected in [
        r#"candidates: [[("l1", None), ("l2", None)], [("l4", None)]]"#,
        "other tenant's candidates: 0",
        r#"golden members: ["l1", "l3"]"#,
        r#"recorded: ["l2", "l1"]"#,
        "decide: true",
        "decide again: false",
        "escalate: true",
        "escalate again: false",
        "fall back again: false",
        r#"pair: Some("distinct")"#,
        r#"events: (4, 1, 3, {"l2", "l4", "l5"})"#,
        "unattached: 1",
        "unmerge: 1",
        r#"after unmerge: ("accepted", None)"#,
        r#"failed rekey: Some("stop")"#,
        "kept after failed rekey: 1",
        "old key: 0",
        r#"alerts after batches: ["kept", "late"]"#,
    ] {
        assert!(text.contains(expected), "SQLite: {expected} not in\n{text}");
    }
    let Some(db) = TestDb::create("pipeline") else {
        return;
    };
    let pg = scenario(&mut Store::open(&db.url).unwrap());
    assert_eq!(pg.0.len(), sqlite.0.len());
    for (s, p) in sqlite.0.iter().zip(&pg.0) {
        assert_eq!(s, p, "SQLite and PostgreSQL answer differently");
    }
}

/// What the CLI and the service read back of a store (`show`, `review
/// list`, `outbox list`, the GET routes), as text.
fn reads(s: &Store) -> Answers {
    let mut a = Answers::default();
    for id in ["l1", "l2", "l3", "l4", "l5", "l6"] {
        a.push("lead row", s.lead_row(id).unwrap());
        a.push("merges", s.merges_of(id).unwrap());
        a.push("golden", s.golden(id).unwrap());
        a.push("state", s.lead_state("acme", id).unwrap());
        a.push("issues", s.lead_issues(id).unwrap());
        a.push("enrichment", s.enrichment(id).unwrap());
        a.push("score", s.stored_score(id).unwrap());
        a.push("handoffs", s.handoffs_of("acme", id).unwrap());
    }
    a.push("queue", s.open_queue(None).unwrap().len());
    a.push("decided", s.decided_reviews("acme").unwrap());
    a.push("outbox", s.handoffs("acme", None, 10).unwrap());
    a.push("crm record", s.crm_record("acme", "l1", "hubspot").unwrap());
    a.push("backlog", s.backlog("acme", 5, 1_000).unwrap());
    a.push("status counts", s.status_counts("acme").unwrap());
    a.push("alerts", s.alerts("acme", 10).unwrap().len());
    a.push("keys", s.api_keys(None).unwrap().len());
    a.push("key tenant", s.api_key_tenant("hash-1").unwrap());
    let pending = s.pending_intake("acme", 10).unwrap();
    a.push(
        "intake",
        pending
            .iter()
            .map(|r| (r.id, r.body.len()))
            .collect::<Vec<_>>(),
    );
    a.push("run", s.run_status(1).unwrap());
    a.push("exceptions", s.open_exceptions(10).unwrap());
    a.push(
        "candidates",
        s.candidates("acme", &[key_hash("acme", "new:l2")], 5, 5)
            .unwrap()
            .iter()
            .map(|c| c.id.clone())
            .collect::<Vec<_>>(),
    );
    a.push("enrich queue", s.enrich_queue("acme", 10).unwrap());
    a.push("cache", s.cache_rows(0).unwrap().len());
    a.push("members", {
        let mut m = s.account_members("acme", &["acme.io".into()]).unwrap();
        m.sort();
        m
    });
    for table in [
        "leads",
        "decisions",
        "issues",
        "exceptions",
        "match_keys",
        "merges",
        "events",
        "scores",
        "score_history",
        "lead_keys",
    ] {
        a.push(table, s.count(table).unwrap());
    }
    a
}

/// A store file of its own for one test, removed after.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str) -> TempFile {
        let dir = std::env::temp_dir().join(format!("leadgate-copy-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempFile(dir)
    }

    fn path(&self) -> String {
        self.0.join("s.db").display().to_string()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_store_copied_to_postgresql_and_back_answers_as_the_original() {
    let first = TempFile::new("first");
    let mut original = Store::open(&first.path()).unwrap();
    scenario(&mut original);
    let expected = reads(&original);
    // Into an empty store of the same kind, and refused into a full one.
    let second = TempFile::new("second");
    let mut copy = Store::open(&second.path()).unwrap();
    let copied = leadgate_store::copy::copy_store(&original, &mut copy, |_| {}).unwrap();
    assert!(copied.iter().all(|c| c.verified()), "{copied:?}");
    assert!(copied.iter().any(|c| c.table == "match_keys" && c.rows > 0));
    assert_eq!(reads(&copy).0, expected.0);
    let refused = leadgate_store::copy::copy_store(&original, &mut copy, |_| {}).unwrap_err();
    assert!(refused.to_string().contains("not empty"), "{refused}");
    let Some(db) = TestDb::create("copy") else {
        return;
    };
    let mut pg = Store::open(&db.url).unwrap();
    let copied = leadgate_store::copy::copy_store(&original, &mut pg, |_| {}).unwrap();
    assert!(copied.iter().all(|c| c.verified()), "{copied:?}");
    let on_pg = reads(&pg);
    for (s, p) in expected.0.iter().zip(&on_pg.0) {
        assert_eq!(s, p, "the copy on PostgreSQL answers differently");
    }
    // New ids on the copy follow the copied ones.
    let run = pg.begin_run("acme", "next.csv", "{}", 2_000).unwrap();
    assert_eq!(run, 2);
    // And back into SQLite.
    let third = TempFile::new("third");
    let mut back = Store::open(&third.path()).unwrap();
    let copied = leadgate_store::copy::copy_store(&pg, &mut back, |_| {}).unwrap();
    assert!(copied.iter().all(|c| c.verified()), "{copied:?}");
    let again = reads(&back);
    for (s, b) in expected.0.iter().zip(&again.0) {
        if s.starts_with("run:") {
            continue;
        }
        assert_eq!(s, b, "the copy back on SQLite answers differently");
    }
}
