//! The store's contract, run against every backend: the same calls must
//! give the same answers on SQLite and on PostgreSQL. The PostgreSQL runs
//! need a server where the test may create databases, named by
//! `LEADGATE_TEST_POSTGRES` (`.ci/run` sets it to the machine's local
//! server); each test creates a fresh database and drops it after. Without
//! the variable they say so and check SQLite alone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use leadgate_store::pg::{PG_MIGRATIONS, PgStore};
use leadgate_store::prelude::*;
use leadgate_store::routing::NewAssignment;
use leadgate_store::service::{Claim, Logged, NewIntake};

const TEST_CLAIM: Claim<'static> = Claim {
    holder: "host-a",
    lease_ms: 60_000,
};
use leadgate_store::{Store, StoreError};

mod common;
use common::TestDb;

fn api_keys(s: &impl ApiKeys) {
    s.add_api_key("acme", "website", "h1", "lg_acme_1", 10)
        .unwrap();
    s.add_api_key("acme", "crm", "h2", "lg_acme_2", 20).unwrap();
    s.add_api_key("globex", "website", "h3", "lg_glob_1", 15)
        .unwrap();
    assert_eq!(s.api_key_tenant("h1").unwrap().as_deref(), Some("acme"));
    assert_eq!(s.api_key_tenant("nope").unwrap(), None);
    let all: Vec<(String, String)> = s
        .api_keys(None)
        .unwrap()
        .into_iter()
        .map(|k| (k.tenant, k.label))
        .collect();
    assert_eq!(
        all,
        [
            ("acme".into(), "website".into()),
            ("acme".into(), "crm".into()),
            ("globex".into(), "website".into())
        ]
    );
    assert_eq!(s.api_keys(Some("globex")).unwrap().len(), 1);
    // By label or prefix, within the tenant only, once.
    assert_eq!(s.revoke_api_key("acme", "website", 30).unwrap(), 1);
    assert_eq!(s.revoke_api_key("acme", "website", 31).unwrap(), 0);
    assert_eq!(s.revoke_api_key("acme", "lg_glob_1", 31).unwrap(), 0);
    assert_eq!(s.api_key_tenant("h1").unwrap(), None, "revoked at once");
    assert_eq!(s.api_key_tenant("h3").unwrap().as_deref(), Some("globex"));
    let revoked = s.api_keys(Some("acme")).unwrap();
    assert_eq!(revoked[0].revoked_at, Some(30));
    assert_eq!(revoked[1].revoked_at, None);
}

fn request<'a>(tenant: &'a str, key: &'a str, body: &'a str) -> NewIntake<'a> {
    NewIntake {
        tenant,
        key,
        kind: "leads",
        fingerprint: "f",
        body,
        lead_ids: "[\"l1\"]",
    }
}

fn intake(s: &mut impl IntakeLog) {
    let long = "x".repeat(5_000);
    let logged = s
        .log_intake(
            &[
                request("acme", "POST /v1/leads\nk1", "{}"),
                request("acme", "POST /v1/leads\nk2", &long),
                request("globex", "POST /v1/leads\nk1", "{}"),
            ],
            TEST_CLAIM,
            100,
        )
        .unwrap();
    let ids: Vec<i64> = logged
        .iter()
        .map(|l| match l {
            Logged::New(id) => *id,
            Logged::Seen(r) => panic!("new keys were seen: {}", r.key),
        })
        .collect();
    // The same key again, in another batch and within one: seen, with the
    // first request's row.
    let again = s
        .log_intake(
            &[
                request("acme", "POST /v1/leads\nk1", "{\"other\": 1}"),
                request("acme", "POST /v1/leads\nk3", "{}"),
                request("acme", "POST /v1/leads\nk3", "{}"),
            ],
            TEST_CLAIM,
            200,
        )
        .unwrap();
    match &again[0] {
        Logged::Seen(r) => {
            assert_eq!((r.id, r.body.as_str(), r.received_at), (ids[0], "{}", 100));
            assert_eq!(r.state, "pending");
        }
        Logged::New(_) => panic!("a logged key was new again"),
    }
    assert!(matches!(again[1], Logged::New(_)));
    assert!(matches!(&again[2], Logged::Seen(r) if r.key.ends_with("k3")));

    let keys = [
        "POST /v1/leads\nk1",
        "POST /v1/leads\nk9",
        "POST /v1/leads\nk2",
    ];
    let mut found: Vec<&str> = s.logged_keys("acme", keys).unwrap().into_iter().collect();
    found.sort_unstable();
    assert_eq!(found, ["POST /v1/leads\nk1", "POST /v1/leads\nk2"]);

    let pending: Vec<i64> = s
        .pending_intake("acme", 10)
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(pending.len(), 3, "oldest first, this tenant only");
    assert_eq!(&pending[..2], &ids[..2]);
    assert_eq!(s.intake("acme", ids[1]).unwrap().unwrap().body, long);

    s.finish_intake(
        &[(ids[0], 200, "{\"ok\": true}"), (ids[1], 202, &long)],
        300,
    )
    .unwrap();
    let done = s.intake("acme", ids[0]).unwrap().unwrap();
    assert_eq!(
        (done.state.as_str(), done.status_code, done.done_at),
        ("done", Some(200), Some(300))
    );
    assert_eq!(done.result.as_deref(), Some("{\"ok\": true}"));
    assert_eq!(done.body, "", "the body goes once the leads are recorded");
    assert_eq!(
        s.intake("acme", ids[1]).unwrap().unwrap().result,
        Some(long)
    );
    assert_eq!(s.pending_intake("acme", 10).unwrap().len(), 1);
    assert!(
        s.intake("globex", ids[0]).unwrap().is_none(),
        "another tenant's request is not found"
    );

    // Form requests logged before keys were scoped.
    let legacy =
        leadgate_store::service::scoped_key(leadgate_store::service::LEGACY_FORM_SCOPE, "f1");
    s.log_intake(&[request("globex", &legacy, "{}")], TEST_CLAIM, 400)
        .unwrap();
    assert_eq!(s.legacy_form_key("globex", "f1").unwrap(), Some(legacy));
    assert_eq!(s.legacy_form_key("acme", "f1").unwrap(), None);
    assert_eq!(s.tenants_with_legacy_form_keys().unwrap(), ["globex"]);
}

fn intake_claims(s: &mut impl IntakeLog) {
    let a = TEST_CLAIM;
    let b = Claim {
        holder: "host-b",
        lease_ms: 60_000,
    };
    // Logged by host a at 100: its claim holds until 60,100.
    s.log_intake(
        &[
            request("acme", "POST /v1/leads\nk1", "{}"),
            request("acme", "POST /v1/leads\nk2", "{}"),
        ],
        a,
        100,
    )
    .unwrap();
    assert!(
        s.claim_pending_intake("acme", b, true, 1_000, 10)
            .unwrap()
            .is_empty(),
        "another host's live claims are left alone"
    );
    let own: Vec<String> = s
        .claim_pending_intake("acme", a, true, 1_000, 10)
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(own.len(), 2, "a restarted host takes its own back");
    assert!(
        s.claim_pending_intake("acme", a, false, 1_000_000, 10)
            .unwrap()
            .is_empty(),
        "not while it may have them in flight, however old"
    );
    // Host a renewed its claims at 1,000: until 61,000.
    assert!(
        s.claim_pending_intake("acme", b, true, 60_500, 10)
            .unwrap()
            .is_empty()
    );
    let taken = s.claim_pending_intake("acme", b, true, 61_000, 1).unwrap();
    assert_eq!(
        taken.len(),
        1,
        "a claim that ran out is taken over, oldest first"
    );
    assert!(taken[0].key.ends_with("k1"));
    let rest = s.claim_pending_intake("acme", b, true, 61_000, 10).unwrap();
    assert_eq!(rest.len(), 2, "its own, and the one left");
    assert!(
        s.claim_pending_intake("acme", a, true, 61_001, 10)
            .unwrap()
            .is_empty(),
        "now b's"
    );
    s.finish_intake(&[(taken[0].id, 200, "{}")], 61_002)
        .unwrap();
    assert_eq!(
        s.claim_pending_intake("acme", b, true, 200_000, 10)
            .unwrap()
            .len(),
        1,
        "a finished request is not pending"
    );
    assert!(
        s.claim_pending_intake("globex", b, true, 200_000, 10)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn requests_are_claimed_once_across_hosts_on_every_backend() {
    intake_claims(&mut Store::open(":memory:").unwrap());
    if let Some(db) = TestDb::create("intake_claims") {
        intake_claims(&mut PgStore::connect(&db.url).unwrap());
    }
}

#[test]
fn api_keys_behave_the_same_on_every_backend() {
    api_keys(&Store::open(":memory:").unwrap());
    if let Some(db) = TestDb::create("api_keys") {
        api_keys(&PgStore::connect(&db.url).unwrap());
    }
}

#[test]
fn the_intake_log_behaves_the_same_on_every_backend() {
    intake(&mut Store::open(":memory:").unwrap());
    if let Some(db) = TestDb::create("intake") {
        intake(&mut PgStore::connect(&db.url).unwrap());
    }
}

#[test]
fn hosts_starting_together_migrate_once_and_a_newer_schema_is_refused() {
    let Some(db) = TestDb::create("migrations") else {
        return;
    };
    let hosts: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            std::thread::spawn(move || PgStore::connect(&url).map(|s| s.schema_version().unwrap()))
        })
        .collect();
    for h in hosts {
        assert_eq!(h.join().unwrap().unwrap(), PG_MIGRATIONS.len());
    }
    let mut c = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    let rows: i64 = c
        .query_one("SELECT count(*) FROM leadgate_schema", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        rows as usize,
        PG_MIGRATIONS.len(),
        "each migration recorded once"
    );
    c.execute("INSERT INTO leadgate_schema (version) VALUES (999)", &[])
        .unwrap();
    match PgStore::connect(&db.url) {
        Err(e @ StoreError::TooNew { found: 999, .. }) => {
            let message = e.to_string();
            assert!(
                message.contains("999") && message.contains("upgrade leadgate"),
                "{message}"
            );
        }
        other => panic!("a newer schema was not refused: {other:?}"),
    }
}

#[test]
fn two_hosts_logging_the_same_keys_log_each_once() {
    let Some(db) = TestDb::create("idempotency") else {
        return;
    };
    PgStore::connect(&db.url).unwrap();
    let keys: Vec<String> = (0..200).map(|i| format!("POST /v1/leads\nk{i}")).collect();
    let hosts: Vec<_> = (0..2)
        .map(|host| {
            let url = db.url.clone();
            // The second host takes the keys in the other order: the
            // overlapping batches must neither duplicate nor deadlock.
            let mut keys = keys.clone();
            if host == 1 {
                keys.reverse();
            }
            std::thread::spawn(move || {
                let mut s = PgStore::connect(&url).unwrap();
                let mut new = 0;
                for chunk in keys.chunks(10) {
                    let batch: Vec<NewIntake<'_>> =
                        chunk.iter().map(|k| request("acme", k, "{}")).collect();
                    new += s
                        .log_intake(&batch, TEST_CLAIM, 1)
                        .unwrap()
                        .iter()
                        .filter(|l| matches!(l, Logged::New(_)))
                        .count();
                }
                new
            })
        })
        .collect();
    let new: usize = hosts.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(new, keys.len(), "every key is new on exactly one host");
}

#[test]
fn a_connection_the_server_closed_is_opened_again() {
    let Some(db) = TestDb::create("reconnect") else {
        return;
    };
    let s = PgStore::connect(&db.url).unwrap();
    s.add_api_key("acme", "web", "h1", "lg_1", 1).unwrap();
    s.ping().unwrap();
    // The server ends the store's session (as a restart would).
    let mut admin = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    let ended: i64 = admin
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = current_database() AND pid <> pg_backend_pid()) t",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(ended, 1);
    // Calls fail, with the reason, until the client has noticed the
    // connection is gone (at once, or within a moment); the ones after
    // work on a new connection.
    let mut failed = 0;
    let tenant = loop {
        match s.api_key_tenant("h1") {
            Ok(t) => break t,
            Err(e) => {
                failed += 1;
                assert!(e.to_string().contains("look up API key"), "{e}");
                assert!(failed < 40, "the connection was not opened again: {e}");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    };
    assert_eq!(tenant.as_deref(), Some("acme"));
    s.ping().unwrap();
}

#[test]
fn a_bad_url_or_an_unreachable_server_is_refused_with_the_reason() {
    let e = PgStore::connect("postgres://nobody@127.0.0.1:1/leadgate").unwrap_err();
    let message = e.to_string();
    assert!(
        message
            .contains("cannot connect to the PostgreSQL store at postgres://127.0.0.1:1/leadgate"),
        "{message}"
    );
    let e = PgStore::connect("postgres://u:secret@127.0.0.1:1/db").unwrap_err();
    assert!(
        !e.to_string().contains("secret"),
        "the password is never shown: {e}"
    );
    assert!(PgStore::connect("postgres://[bad").is_err());
}

/// A SQLite store file with `leads` in it, for the outbox to refer to.
struct SqliteWithLeads(std::path::PathBuf);

impl SqliteWithLeads {
    fn new(test: &str, leads: &[&str]) -> SqliteWithLeads {
        let dir =
            std::env::temp_dir().join(format!("leadgate-backends-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.db");
        drop(Store::open(path.to_str().unwrap()).unwrap());
        let c = rusqlite::Connection::open(&path).unwrap();
        for id in leads {
            c.execute(
                "INSERT INTO leads (id, tenant, source, received_at, raw, status, updated_at)
                 VALUES (?1, 'acme', 'api', 1, '{}', 'accepted', 1)",
                [id],
            )
            .unwrap();
        }
        SqliteWithLeads(dir)
    }

    fn open(&self) -> Store {
        Store::open(self.0.join("s.db").to_str().unwrap()).unwrap()
    }
}

impl Drop for SqliteWithLeads {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pg_with_leads(db: &TestDb, leads: &[&str]) -> PgStore {
    let s = PgStore::connect(&db.url).unwrap();
    let mut c = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    for id in leads {
        c.execute(
            "INSERT INTO leads (id, tenant, source, received_at, raw, status, updated_at)
             VALUES ($1, 'acme', 'api', 1, '{}', 'accepted', 1)",
            &[id],
        )
        .unwrap();
    }
    s
}

const LEADS: &[&str] = &["l1", "l2", "l3", "l4"];

fn outbox(s: &mut impl CrmOutbox) {
    // A waiting handoff is not queued twice; a `create` never is.
    let h1 = s
        .enqueue_handoff("acme", "l1", "hubspot", "create", None, 10)
        .unwrap();
    assert!(h1.is_some());
    assert_eq!(
        s.enqueue_handoff("acme", "l1", "hubspot", "create", None, 11)
            .unwrap(),
        None
    );
    let h2 = s
        .enqueue_handoff("acme", "l2", "hubspot", "update", Some("c2"), 12)
        .unwrap();
    assert_eq!(
        s.enqueue_handoff("acme", "l2", "hubspot", "update", Some("c2"), 13)
            .unwrap(),
        None
    );
    let h3 = s
        .enqueue_handoff("acme", "l3", "webhook", "create", None, 14)
        .unwrap();
    s.enqueue_handoff("acme", "l4", "webhook", "create", None, 500)
        .unwrap();

    let due: Vec<i64> = s
        .due_handoffs("acme", 100, 10)
        .unwrap()
        .iter()
        .map(|h| h.id)
        .collect();
    assert_eq!(
        due,
        [h1.unwrap(), h2.unwrap(), h3.unwrap()],
        "due now, oldest first"
    );
    assert!(s.due_handoffs("globex", 100, 10).unwrap().is_empty());

    // Claims: one holder at a time, taken over when they run out.
    let a = s
        .claim_due_handoffs("acme", "host-a", 1_000, 100, 2)
        .unwrap();
    assert_eq!(
        a.iter().map(|h| h.id).collect::<Vec<_>>(),
        [h1.unwrap(), h2.unwrap()]
    );
    let b = s
        .claim_due_handoffs("acme", "host-b", 1_000, 200, 10)
        .unwrap();
    assert_eq!(
        b.iter().map(|h| h.id).collect::<Vec<_>>(),
        [h3.unwrap()],
        "not what host-a holds"
    );
    assert!(
        s.claim_due_handoffs("acme", "host-c", 1_000, 300, 10)
            .unwrap()
            .is_empty()
    );
    let again = s
        .claim_due_handoffs("acme", "host-b", 1_000, 300, 10)
        .unwrap();
    assert_eq!(
        again.iter().map(|h| h.id).collect::<Vec<_>>(),
        [h3.unwrap()],
        "a holder takes its own claims back (a restarted host)"
    );
    let taken_over = s
        .claim_due_handoffs("acme", "host-c", 1_000, 1_150, 2)
        .unwrap();
    assert_eq!(
        taken_over.iter().map(|h| h.id).collect::<Vec<_>>(),
        [h1.unwrap(), h2.unwrap()],
        "host-a's claims ran out at 1,100"
    );

    // Delivered: the CRM's id is kept, a decision recorded, the claim ended.
    s.handoffs_delivered(&[(&taken_over[0], "crm-1")], 1_200)
        .unwrap();
    assert_eq!(
        s.crm_record("acme", "l1", "hubspot").unwrap().as_deref(),
        Some("crm-1")
    );
    // A lead is found by its CRM id: a confirmed record, else a queued
    // handoff carrying the id; per tenant and target.
    let by_crm =
        |tenant: &str, target: &str, id: &str| s.lead_of_crm_record(tenant, target, id).unwrap();
    assert_eq!(by_crm("acme", "hubspot", "crm-1").as_deref(), Some("l1"));
    assert_eq!(
        by_crm("acme", "hubspot", "c2").as_deref(),
        Some("l2"),
        "queued with the CRM's id"
    );
    assert_eq!(by_crm("acme", "webhook", "crm-1"), None, "another target");
    assert_eq!(by_crm("globex", "hubspot", "crm-1"), None, "another tenant");
    assert_eq!(by_crm("acme", "hubspot", "crm-9"), None);
    let l1 = s.handoffs_of("acme", "l1").unwrap();
    assert_eq!(
        (l1[0].state.as_str(), l1[0].attempts, l1[0].delivered_at),
        ("delivered", 1, Some(1_200))
    );
    assert_eq!(
        s.enqueue_handoff("acme", "l1", "hubspot", "create", None, 1_300)
            .unwrap(),
        None
    );
    let update = s
        .enqueue_handoff("acme", "l1", "hubspot", "update", Some("crm-1"), 1_300)
        .unwrap();
    assert!(update.is_some(), "an update after delivery is queued");

    // Retried: rescheduled and free to be claimed again when due.
    s.handoff_retry(taken_over[1].id, 5_000, "429 Too Many Requests", 1_250)
        .unwrap();
    let l2 = &s.handoffs_of("acme", "l2").unwrap()[0];
    assert_eq!(
        (l2.attempts, l2.next_at, l2.last_error.as_deref()),
        (1, 5_000, Some("429 Too Many Requests"))
    );
    assert!(
        !s.claim_due_handoffs("acme", "host-a", 1_000, 4_999, 10)
            .unwrap()
            .iter()
            .any(|h| h.id == l2.id)
    );
    assert!(
        s.claim_due_handoffs("acme", "host-a", 1_000, 5_000, 10)
            .unwrap()
            .iter()
            .any(|h| h.id == l2.id)
    );

    // Failed and dead: out of the queue with an exception item; put back by id or all.
    let l3 = s.handoffs_of("acme", "l3").unwrap().remove(0);
    s.handoff_failed(&l3, "failed", "crm.rejected", "400 invalid email", 6_000)
        .unwrap();
    let l2 = s.handoffs_of("acme", "l2").unwrap().remove(0);
    s.handoff_failed(
        &l2,
        "dead",
        "crm.unavailable",
        "503 after 8 attempts",
        6_000,
    )
    .unwrap();
    assert_eq!(s.handoffs("acme", Some("failed"), 10).unwrap().len(), 1);
    assert_eq!(s.handoffs("acme", Some("dead"), 10).unwrap().len(), 1);
    assert_eq!(
        s.handoffs("acme", None, 2).unwrap().len(),
        2,
        "newest first, limited"
    );
    assert!(
        s.claim_due_handoffs("acme", "host-a", 1_000, 9_000, 10)
            .unwrap()
            .iter()
            .all(|h| h.id != l3.id)
    );
    assert_eq!(s.retry_handoffs("acme", &[l3.id], 7_000).unwrap(), 1);
    assert_eq!(s.retry_handoffs("globex", &[], 7_000).unwrap(), 0);
    assert_eq!(
        s.retry_handoffs("acme", &[], 7_000).unwrap(),
        1,
        "the dead one"
    );
    let l3 = &s.handoffs_of("acme", "l3").unwrap()[0];
    assert_eq!(
        (l3.state.as_str(), l3.attempts, l3.next_at),
        ("pending", 0, 7_000)
    );
}

#[test]
fn the_crm_outbox_behaves_the_same_on_every_backend() {
    let sqlite = SqliteWithLeads::new("outbox", LEADS);
    outbox(&mut sqlite.open());
    if let Some(db) = TestDb::create("outbox") {
        outbox(&mut pg_with_leads(&db, LEADS));
    }
}

#[test]
fn hosts_claiming_at_once_never_take_the_same_handoff() {
    let Some(db) = TestDb::create("claims") else {
        return;
    };
    let leads: Vec<String> = (0..300).map(|i| format!("l{i}")).collect();
    let refs: Vec<&str> = leads.iter().map(String::as_str).collect();
    let s = pg_with_leads(&db, &refs);
    for l in &leads {
        s.enqueue_handoff("acme", l, "hubspot", "create", None, 1)
            .unwrap();
    }
    let hosts: Vec<_> = (0..3)
        .map(|host| {
            let url = db.url.clone();
            std::thread::spawn(move || {
                let mut s = PgStore::connect(&url).unwrap();
                let mut taken = Vec::new();
                for _ in 0..1_000 {
                    let got = s
                        .claim_due_handoffs("acme", &format!("host-{host}"), 60_000, 10, 7)
                        .unwrap();
                    if got.is_empty() {
                        return taken;
                    }
                    // Delivered, as the handoff worker does with what it claims.
                    let done: Vec<(&leadgate_store::service::Handoff, &str)> =
                        got.iter().map(|h| (h, "crm")).collect();
                    s.handoffs_delivered(&done, 10).unwrap();
                    taken.extend(got.iter().map(|h| h.id));
                }
                panic!("host-{host} was still claiming after 1,000 rounds");
            })
        })
        .collect();
    let mut all: Vec<i64> = hosts.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!((n, all.len()), (300, 300), "every handoff claimed once");
}

/// TLS with libpq's `sslmode`s, against the local server's certificate
/// (Debian's: self-signed, for `localhost`) when the server offers TLS.
#[test]
fn tls_is_used_and_checked_as_sslmode_says() {
    let Some(db) = TestDb::create("tls") else {
        return;
    };
    let mut c = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    let ssl: String = c.query_one("SHOW ssl", &[]).unwrap().get(0);
    let cert: String = c.query_one("SHOW ssl_cert_file", &[]).unwrap().get(0);
    if ssl != "on" {
        eprintln!("tls: skipped, the server at {} does not offer TLS", db.url);
        return;
    }
    let cert = if cert.starts_with('/') {
        cert
    } else {
        let dir: String = c.query_one("SHOW data_directory", &[]).unwrap().get(0);
        format!("{dir}/{cert}")
    };
    let (scheme, rest) = db.url.split_once("://").unwrap();
    let (server, name) = rest.split_once('/').unwrap();
    let user = server.split_once('@').map_or("", |(u, _)| u);
    let at = |host: &str, query: &str| format!("{scheme}://{user}@{host}/{name}?{query}");

    let plain = PgStore::connect(&at("localhost", "sslmode=disable")).unwrap();
    assert!(!plain.encrypted().unwrap(), "sslmode=disable is plain");
    let encrypted = PgStore::connect(&at("localhost", "sslmode=require")).unwrap();
    assert!(encrypted.encrypted().unwrap(), "sslmode=require is TLS");

    // The server's certificate as the only root: the chain holds, and its
    // name (localhost) matches only when connecting to localhost.
    let root = format!("sslrootcert={cert}");
    let full = PgStore::connect(&at("localhost", &format!("sslmode=verify-full&{root}")));
    match full {
        Ok(s) => assert!(s.encrypted().unwrap()),
        Err(e) => panic!("verify-full against localhost with its own certificate: {e}"),
    }
    let ca = PgStore::connect(&at("127.0.0.1", &format!("sslmode=verify-ca&{root}"))).unwrap();
    assert!(ca.encrypted().unwrap(), "verify-ca does not check the name");
    let err = PgStore::connect(&at("127.0.0.1", &format!("sslmode=verify-full&{root}")))
        .expect_err("a certificate for localhost is refused for 127.0.0.1")
        .to_string();
    assert!(err.contains("TLS") || err.contains("certificate"), "{err}");
    // Without a root given, Mozilla's roots: a self-signed one is refused.
    let err = PgStore::connect(&at("localhost", "sslmode=verify-full"))
        .expect_err("a self-signed certificate is refused against the public roots")
        .to_string();
    assert!(err.contains("TLS") || err.contains("certificate"), "{err}");
}

fn passes(s: &mut impl Passes) {
    let a = Claim {
        holder: "host-a",
        lease_ms: 1_000,
    };
    let b = Claim {
        holder: "host-b",
        lease_ms: 1_000,
    };
    assert_eq!(s.take_pass("acme", "rescore", a, 100).unwrap(), None);
    // Held: the other host is told by whom and until when.
    let held = s.take_pass("acme", "rescore", b, 200).unwrap().unwrap();
    assert_eq!((held.holder.as_str(), held.until), ("host-a", 1_100));
    // Per tenant and per pass.
    assert_eq!(s.take_pass("globex", "rescore", b, 200).unwrap(), None);
    assert_eq!(s.take_pass("acme", "reenrich", b, 200).unwrap(), None);
    // The holder renews; the other still waits.
    assert_eq!(s.take_pass("acme", "rescore", a, 900).unwrap(), None);
    let held = s.take_pass("acme", "rescore", b, 1_500).unwrap().unwrap();
    assert_eq!(held.until, 1_900);
    // A lease that ran out (its holder stopped) is taken over.
    assert_eq!(s.take_pass("acme", "rescore", b, 1_900).unwrap(), None);
    let held = s.take_pass("acme", "rescore", a, 1_950).unwrap().unwrap();
    assert_eq!(held.holder, "host-b");
    // Only the holder gives it up.
    s.release_pass("acme", "rescore", "host-a").unwrap();
    assert!(s.take_pass("acme", "rescore", a, 2_000).unwrap().is_some());
    s.release_pass("acme", "rescore", "host-b").unwrap();
    assert_eq!(s.take_pass("acme", "rescore", a, 2_000).unwrap(), None);
}

#[test]
fn passes_are_held_by_one_host_at_a_time_on_every_backend() {
    passes(&mut Store::open(":memory:").unwrap());
    if let Some(db) = TestDb::create("passes") {
        passes(&mut PgStore::connect(&db.url).unwrap());
    }
}

fn new_assignment<'a>(lead: &'a str, rep: Option<&'a str>, due: i64) -> NewAssignment<'a> {
    NewAssignment {
        lead_id: lead,
        rep_id: rep,
        rep_day: "2026-12-07",
        turn: 1,
        team: "sales",
        step: "territory",
        state: if rep.is_some() { "open" } else { "queued" },
        explanation: "{}",
        domain: Some("acme.com"),
        company_key: Some("acme"),
        sla_due_at: rep.map(|_| due),
        assigned_by: "routing",
        timer: Some((if rep.is_some() { "sla" } else { "route" }, due)),
    }
}

fn routing(s: &mut impl Routing) {
    assert!(s.reps("acme").unwrap().is_empty());
    let seed = vec![
        ("ana".to_string(), r#"{"id":"ana"}"#.to_string()),
        ("bo".to_string(), r#"{"id":"bo"}"#.to_string()),
    ];
    assert_eq!(s.seed_reps("acme", &seed, 1).unwrap(), 2);
    // Seeding is for an empty roster only.
    assert_eq!(s.seed_reps("acme", &seed, 2).unwrap(), 0);
    assert!(
        !s.put_rep("acme", "ana", r#"{"id":"ana","weight":2}"#, 3)
            .unwrap()
    );
    assert!(s.put_rep("acme", "cy", r#"{"id":"cy"}"#, 3).unwrap());
    let reps = s.reps("acme").unwrap();
    assert_eq!(
        reps.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["ana", "bo", "cy"]
    );
    assert_eq!(reps[0].doc, r#"{"id":"ana","weight":2}"#);

    // Assigned: counters move, a timer starts.
    let a1 = s
        .assign("acme", &new_assignment("l1", Some("ana"), 1_000), 10)
        .unwrap();
    let ana = &s.reps("acme").unwrap()[0];
    assert_eq!(
        (ana.today, ana.open, ana.total, ana.last_at),
        (1, 1, 1, Some(10))
    );
    assert_eq!(ana.turn, 1);
    assert_eq!(s.pending_timers("acme").unwrap(), 1);
    // Another day's first lead restarts the daily count.
    let mut next_day = new_assignment("l2", Some("ana"), 2_000);
    next_day.rep_day = "2026-12-08";
    s.assign("acme", &next_day, 20).unwrap();
    let ana = &s.reps("acme").unwrap()[0];
    assert_eq!(
        (ana.day.as_str(), ana.today, ana.open, ana.total),
        ("2026-12-08", 1, 2, 2)
    );

    // The account's owner: another lead of the same domain.
    let owner = s
        .account_owner("acme", "l9", Some("acme.com"), None)
        .unwrap()
        .unwrap();
    assert_eq!(
        (owner.rep_id.as_str(), owner.by.as_str()),
        ("ana", "domain")
    );
    assert_eq!(owner.lead_id, "l2");
    let by_key = s
        .account_owner("acme", "l9", Some("other.com"), Some("acme"))
        .unwrap()
        .unwrap();
    assert_eq!(by_key.by, "company_key");
    assert_eq!(s.account_owner("acme", "l9", None, None).unwrap(), None);
    assert_eq!(
        s.account_owner("other", "l9", Some("acme.com"), None)
            .unwrap(),
        None
    );

    // Due timers are claimed once, earliest first, and not before due.
    assert!(
        s.claim_due_timers("acme", "host-a", 60_000, 999, 10)
            .unwrap()
            .is_empty()
    );
    let due = s
        .claim_due_timers("acme", "host-a", 60_000, 5_000, 10)
        .unwrap();
    assert_eq!(due.iter().map(|t| t.ref_id).collect::<Vec<_>>()[0], a1);
    assert_eq!(due.len(), 2);
    assert!(
        s.claim_due_timers("acme", "host-b", 60_000, 5_000, 10)
            .unwrap()
            .is_empty()
    );
    // A claim that ran out is taken over.
    assert_eq!(
        s.claim_due_timers("acme", "host-b", 60_000, 70_000, 10)
            .unwrap()
            .len(),
        2
    );

    // SLA missed on l1 and reassigned to bo: ana's open count given back.
    assert!(s.miss_sla(a1, "breached", 1_001).unwrap());
    assert!(!s.miss_sla(a1, "breached", 1_002).unwrap(), "once");
    s.finish_timer(due[0].id, 1_001).unwrap();
    let ana = &s.reps("acme").unwrap()[0];
    assert_eq!((ana.open, ana.breached), (1, 1));
    let a3 = s
        .assign("acme", &new_assignment("l1", Some("bo"), 3_000), 1_001)
        .unwrap();
    let history = s.assignments_of("acme", "l1").unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].state, "breached");
    assert_eq!(history[0].replaced_at, Some(1_001));
    assert_eq!(s.assignment("acme", "l1").unwrap().unwrap().id, a3);

    // The first touch stops the timer and counts within the SLA.
    let touched = s.touch("acme", "l1", 2_500).unwrap().unwrap();
    assert_eq!((touched.id, touched.rep_id.as_deref()), (a3, Some("bo")));
    assert_eq!(s.assignment_by_id(a3).unwrap().unwrap().state, "touched");
    assert_eq!(s.touch("acme", "l1", 2_600).unwrap(), None, "touched once");
    let bo = &s.reps("acme").unwrap()[1];
    assert_eq!((bo.open, bo.touched, bo.touched_in_sla), (0, 1, 1));
    // l2's timer is left: l1's was stopped by the reassignment and the touch.
    assert_eq!(s.pending_timers("acme").unwrap(), 1);

    // Reassigning an open lead gives its rep's open count back and stops
    // its timer; an escalated lead stays counted as open.
    s.assign("acme", &new_assignment("l2", Some("cy"), 9_000), 30)
        .unwrap();
    let reps = s.reps("acme").unwrap();
    assert_eq!((reps[0].open, reps[2].open), (0, 1));
    let l2 = s.assignment("acme", "l2").unwrap().unwrap();
    assert!(s.miss_sla(l2.id, "escalated", 9_001).unwrap());
    assert_eq!(s.reps("acme").unwrap()[2].open, 1);
    let t = s.touch("acme", "l2", 9_500).unwrap().unwrap();
    assert_eq!((t.state.as_str(), t.touched_at), ("touched", Some(9_500)));
    let cy = &s.reps("acme").unwrap()[2];
    assert_eq!(
        (cy.open, cy.touched, cy.touched_in_sla, cy.breached),
        (0, 1, 0, 1)
    );

    // A lead no one could take waits in the queue with a timer of its own.
    s.assign("acme", &new_assignment("l3", None, 40), 30)
        .unwrap();
    let q = s.assignment("acme", "l3").unwrap().unwrap();
    assert_eq!((q.state.as_str(), q.rep_id), ("queued", None));
    let due = s
        .claim_due_timers("acme", "host-a", 60_000, 200_000, 10)
        .unwrap();
    assert_eq!(
        due.iter().map(|t| t.kind.as_str()).collect::<Vec<_>>(),
        ["route"]
    );
}

#[test]
fn routing_records_behave_the_same_on_every_backend() {
    routing(&mut Store::open(":memory:").unwrap());
    if let Some(db) = TestDb::create("routing") {
        routing(&mut PgStore::connect(&db.url).unwrap());
    }
}

fn account_owners(s: &mut impl Routing) {
    type Owner = Option<(String, String, String)>;
    fn owner(s: &impl Routing, lead: &str, domain: Option<&str>, key: Option<&str>) -> Owner {
        s.account_owner("acme", lead, domain, key)
            .unwrap()
            .map(|o| (o.rep_id, o.lead_id, o.by))
    }
    for (lead, rep, domain, key, at) in [
        ("l1", Some("ana"), "acme.com", "acme", 10),
        ("l2", Some("bo"), "acme.com", "acme", 20),
        ("l3", None, "acme.com", "acme", 30),
        ("l4", Some("cy"), "globex.com", "globex", 40),
    ] {
        let mut a = new_assignment(lead, rep, 1_000);
        a.domain = Some(domain);
        a.company_key = Some(key);
        s.assign("acme", &a, at).unwrap();
    }
    // The latest owned lead of the domain; a queued one has no owner.
    assert_eq!(
        owner(s, "l9", Some("acme.com"), Some("globex")),
        Some(("bo".into(), "l2".into(), "domain".into()))
    );
    // Never the lead itself.
    assert_eq!(
        owner(s, "l2", Some("acme.com"), None),
        Some(("ana".into(), "l1".into(), "domain".into()))
    );
    // A reassigned lead's earlier owner is no owner.
    let mut again = new_assignment("l2", Some("dee"), 1_000);
    again.domain = Some("acme.com");
    s.assign("acme", &again, 50).unwrap();
    assert_eq!(
        owner(s, "l9", Some("acme.com"), None),
        Some(("dee".into(), "l2".into(), "domain".into()))
    );
    // The company key when the domain has none.
    assert_eq!(
        owner(s, "l9", Some("initech.com"), Some("globex")),
        Some(("cy".into(), "l4".into(), "company_key".into()))
    );
    assert_eq!(owner(s, "l4", Some("globex.com"), Some("globex")), None);
}

#[test]
fn account_owners_are_the_latest_current_owner_on_every_backend() {
    account_owners(&mut Store::open(":memory:").unwrap());
    if let Some(db) = TestDb::create("account_owners") {
        account_owners(&mut PgStore::connect(&db.url).unwrap());
    }
}

fn unassigned(s: &impl Routing, qualify: impl Fn(&str, &str)) {
    qualify("l1", "qualified");
    qualify("l2", "qualified");
    qualify("l3", "incomplete");
    assert_eq!(s.unassigned("acme", "qualified", 10).unwrap(), ["l1", "l2"]);
    assert_eq!(s.unassigned("acme", "qualified", 1).unwrap(), ["l1"]);
    assert!(s.unassigned("other", "qualified", 10).unwrap().is_empty());
}

#[test]
fn qualified_leads_never_assigned_are_found_on_every_backend() {
    let sqlite = SqliteWithLeads::new("unassigned", &["l1", "l2", "l3", "l4"]);
    let path = sqlite.0.join("s.db");
    let mut store = sqlite.open();
    store
        .assign("acme", &new_assignment("l4", Some("ana"), 5), 1)
        .unwrap();
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute(
        "UPDATE leads SET qualification = 'qualified' WHERE id = 'l4'",
        [],
    )
    .unwrap();
    unassigned(&store, |id, q| {
        c.execute("UPDATE leads SET qualification = ?1 WHERE id = ?2", [q, id])
            .unwrap();
    });
    if let Some(db) = TestDb::create("unassigned") {
        let mut pg = pg_with_leads(&db, &["l1", "l2", "l3", "l4"]);
        pg.assign("acme", &new_assignment("l4", Some("ana"), 5), 1)
            .unwrap();
        let mut c = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
        c.execute(
            "UPDATE leads SET qualification = 'qualified' WHERE id = 'l4'",
            &[],
        )
        .unwrap();
        let c = std::cell::RefCell::new(c);
        unassigned(&pg, |id, q| {
            c.borrow_mut()
                .execute(
                    "UPDATE leads SET qualification = $1 WHERE id = $2",
                    &[&q, &id],
                )
                .unwrap();
        });
    }
}

#[test]
fn hosts_ticking_at_once_never_fire_the_same_timer() {
    let Some(db) = TestDb::create("timers") else {
        return;
    };
    let mut s = PgStore::connect(&db.url).unwrap();
    let leads: Vec<String> = (0..300).map(|i| format!("l{i}")).collect();
    for l in &leads {
        s.assign("acme", &new_assignment(l, Some("ana"), 5), 1)
            .unwrap();
    }
    let hosts: Vec<_> = (0..3)
        .map(|host| {
            let url = db.url.clone();
            std::thread::spawn(move || {
                let mut s = PgStore::connect(&url).unwrap();
                let mut fired = Vec::new();
                for _ in 0..1_000 {
                    let got = s
                        .claim_due_timers("acme", &format!("host-{host}"), 60_000, 10, 7)
                        .unwrap();
                    if got.is_empty() {
                        return fired;
                    }
                    for t in &got {
                        s.finish_timer(t.id, 10).unwrap();
                    }
                    fired.extend(got.iter().map(|t| t.id));
                }
                panic!("host-{host} was still claiming after 1,000 rounds");
            })
        })
        .collect();
    let mut all: Vec<i64> = hosts.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!((n, all.len()), (300, 300), "every timer fired once");
}

fn member<'a>(route: &'a str, key: &'a str, fp: &'a str) -> leadgate_store::notify::Member<'a> {
    leadgate_store::notify::Member {
        route,
        destination: "team",
        channel: "",
        group_key: key,
        fingerprint: fp,
        group_wait_ms: 30_000,
        group_interval_ms: 300_000,
        repeat_ms: 3_600_000,
    }
}

fn notifications(s: &mut (impl Notifications + ReviewQueue)) {
    use leadgate_store::notify::{Filed, NewNotification};
    let labels = r#"{"kind":"routing.queued","lead":"L1"}"#;
    let a1 = s
        .raise_alert("acme", "routing.queued", "L1", labels, "m1", 1_000)
        .unwrap();
    let a2 = s
        .raise_alert("acme", "routing.queued", "L2", "{}", "m2", 1_000)
        .unwrap();
    let a3 = s
        .raise_alert("acme", "lead.hot", "L1", "{}", "m3", 2_000)
        .unwrap();
    s.raise_alert("other", "routing.queued", "L9", "{}", "m", 1_000)
        .unwrap();
    // Claimed once per lease; the holder takes its own back.
    let got = s
        .claim_new_alerts("acme", "host-a", 60_000, 5_000, 10)
        .unwrap();
    assert_eq!(got.iter().map(|a| a.id).collect::<Vec<_>>(), [a1, a2, a3]);
    assert_eq!(got[0].labels.as_deref(), Some(labels));
    assert!(
        s.claim_new_alerts("acme", "host-b", 60_000, 5_000, 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.claim_new_alerts("acme", "host-a", 60_000, 5_000, 10)
            .unwrap()
            .len(),
        3
    );
    // Filed: two in one group, one unrouted.
    let filed = [
        Filed {
            alert_id: a1,
            state: "routed",
            ends_at: 100_000,
            members: vec![member("r", "k=q", "f1")],
        },
        Filed {
            alert_id: a2,
            state: "routed",
            ends_at: 100_000,
            members: vec![member("r", "k=q", "f2")],
        },
        Filed {
            alert_id: a3,
            state: "unrouted",
            ends_at: 100_000,
            members: vec![],
        },
    ];
    s.file_alerts("acme", &filed, 5_000).unwrap();
    let states: Vec<(i64, String)> = s
        .alerts("acme", 10)
        .unwrap()
        .into_iter()
        .map(|a| (a.id, a.state))
        .collect();
    assert_eq!(
        states,
        [
            (a3, "unrouted".into()),
            (a2, "routed".into()),
            (a1, "routed".into())
        ]
    );
    assert!(
        s.claim_new_alerts("acme", "host-a", 60_000, 5_000, 10)
            .unwrap()
            .is_empty()
    );
    // Active alerts, of a subject or all; resolving ends them.
    assert_eq!(
        s.active_alerts("acme", Some("L1"), 60_000, 5_000, 10)
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        s.active_alerts("acme", None, 60_000, 5_000, 10)
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        s.resolve_alerts("acme", "L1", &["routing."], 60_000, 6_000)
            .unwrap(),
        1
    );
    assert_eq!(
        s.active_alerts("acme", Some("L1"), 60_000, 7_000, 10)
            .unwrap()
            .len(),
        1
    );
    // The group is due after its wait.
    assert!(
        s.claim_due_groups("acme", "host-a", 60_000, 34_999, 10)
            .unwrap()
            .is_empty()
    );
    let groups = s
        .claim_due_groups("acme", "host-a", 60_000, 35_000, 10)
        .unwrap();
    assert_eq!(groups.len(), 1);
    let g = groups[0].clone();
    assert_eq!(
        (g.route.as_str(), g.group_key.as_str(), g.seq, g.held),
        ("r", "k=q", 0, false)
    );
    assert!(
        s.claim_due_groups("acme", "host-b", 60_000, 35_000, 10)
            .unwrap()
            .is_empty()
    );
    let members = s.group_members(g.id).unwrap();
    assert_eq!(
        members.iter().map(|(a, n)| (a.id, *n)).collect::<Vec<_>>(),
        [(a1, 0), (a2, 0)]
    );
    // Held through quiet hours, then flushed with one dropped.
    s.hold_group(g.id, 50_000).unwrap();
    assert!(
        s.claim_due_groups("acme", "host-a", 60_000, 49_999, 10)
            .unwrap()
            .is_empty()
    );
    let g = s
        .claim_due_groups("acme", "host-a", 60_000, 50_000, 10)
        .unwrap()
        .remove(0);
    assert!(g.held);
    let message = NewNotification {
        title: "t",
        body: "{}",
        alert_ids: &[a1],
    };
    let id = s
        .flush_group(&g, &[(a2, "inhibited")], Some(&message), 50_000)
        .unwrap();
    assert!(id.is_some());
    // The same flush again (a retry after a crash) queues nothing new.
    assert_eq!(
        s.flush_group(&g, &[], Some(&message), 50_000).unwrap(),
        None
    );
    assert!(s.group_members(g.id).unwrap().is_empty());
    // A repeat within the repeat interval joins nothing: deduplicated.
    let again = s
        .raise_alert("acme", "routing.queued", "L1", labels, "m1", 60_000)
        .unwrap();
    s.claim_new_alerts("acme", "host-a", 60_000, 60_000, 10)
        .unwrap();
    s.file_alerts(
        "acme",
        &[Filed {
            alert_id: again,
            state: "routed",
            ends_at: 200_000,
            members: vec![member("r", "k=q", "f1")],
        }],
        60_000,
    )
    .unwrap();
    let states: std::collections::HashMap<i64, String> = s
        .alerts("acme", 20)
        .unwrap()
        .into_iter()
        .map(|a| (a.id, a.state))
        .collect();
    assert_eq!(states[&again], "deduplicated");
    assert_eq!(states[&a2], "inhibited");
    // The outbox: claimed, retried, paced, sent.
    let due = s
        .claim_due_notifications("acme", "host-a", 60_000, 50_000, 10)
        .unwrap();
    assert_eq!(due.len(), 1);
    let n = &due[0];
    assert_eq!(n.idem_key, format!("acme:r:team::{}:1", g.id));
    assert_eq!(
        (n.state.as_str(), n.alert_ids.as_str()),
        ("pending", format!("[{a1}]").as_str())
    );
    assert!(
        s.claim_due_notifications("acme", "host-b", 60_000, 50_000, 10)
            .unwrap()
            .is_empty()
    );
    s.notification_retry(n.id, 52_000, Some("HTTP 500"), true)
        .unwrap();
    assert!(
        s.claim_due_notifications("acme", "host-b", 60_000, 51_999, 10)
            .unwrap()
            .is_empty()
    );
    let n = s
        .claim_due_notifications("acme", "host-b", 60_000, 52_000, 10)
        .unwrap()
        .remove(0);
    assert_eq!((n.attempts, n.last_error.as_deref()), (1, Some("HTTP 500")));
    s.notification_retry(n.id, 53_000, None, false).unwrap();
    let n = s
        .claim_due_notifications("acme", "host-b", 60_000, 53_000, 10)
        .unwrap()
        .remove(0);
    assert_eq!(n.attempts, 1, "a wait for the pace is not an attempt");
    s.notification_sent(n.id, 53_000).unwrap();
    assert!(
        s.claim_due_notifications("acme", "host-a", 60_000, 999_000, 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.notifications("acme", Some("sent"), 10).unwrap()[0].attempts,
        2
    );
    assert!(
        s.notifications("acme", Some("dead"), 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.notifications("acme", None, 10).unwrap().len(), 1);
    // Failed, then put back.
    s.notification_failed(n.id, "dead", "gave up", 54_000)
        .unwrap();
    assert_eq!(s.notify_backlog("acme").unwrap().dead, 1);
    assert_eq!(s.retry_notifications("acme", &[], 55_000).unwrap(), 1);
    assert_eq!(s.notify_backlog("acme").unwrap().pending, 1);
    // Pace per channel.
    assert_eq!(s.pace("acme", "team/").unwrap(), None);
    s.set_pace("acme", "team/", 9).unwrap();
    s.set_pace("acme", "team/", 10).unwrap();
    assert_eq!(s.pace("acme", "team/").unwrap(), Some(10));
    // Silences.
    let sid = s
        .add_silence(
            "acme",
            &leadgate_store::notify::NewSilence {
                matchers: r#"{"kind":"routing.*"}"#,
                starts_at: 1_000,
                ends_at: 10_000,
                comment: "why",
                created_by: "ana",
            },
            1_000,
        )
        .unwrap();
    assert_eq!(s.silences("acme", false, 5_000).unwrap().len(), 1);
    assert!(s.silences("other", false, 5_000).unwrap().is_empty());
    assert!(!s.expire_silence("other", sid, 6_000).unwrap());
    assert!(s.expire_silence("acme", sid, 6_000).unwrap());
    assert!(!s.expire_silence("acme", sid, 7_000).unwrap());
    assert!(s.silences("acme", false, 7_000).unwrap().is_empty());
    assert_eq!(s.silences("acme", true, 7_000).unwrap()[0].ends_at, 6_000);
}

#[test]
fn the_notifier_records_behave_the_same_on_every_backend() {
    notifications(&mut Store::open(":memory:").unwrap());
    if let Some(db) = TestDb::create("notify") {
        notifications(&mut PgStore::connect(&db.url).unwrap());
    }
}

#[test]
fn hosts_notifying_at_once_never_send_the_same_notification() {
    use leadgate_store::notify::{Filed, NewNotification};
    let Some(db) = TestDb::create("notify_hosts") else {
        return;
    };
    let mut s = PgStore::connect(&db.url).unwrap();
    // 60 alerts in 60 groups, each flushed into one notification.
    for i in 0..60 {
        let id = s
            .raise_alert("acme", "k", &format!("L{i}"), "{}", "m", 1)
            .unwrap();
        let key = format!("lead=L{i}");
        s.claim_new_alerts("acme", "seed", 1, 1, 100).unwrap();
        s.file_alerts(
            "acme",
            &[Filed {
                alert_id: id,
                state: "routed",
                ends_at: 9,
                members: vec![member("r", &key, &key)],
            }],
            1,
        )
        .unwrap();
    }
    let hosts: Vec<_> = (0..3)
        .map(|host| {
            let url = db.url.clone();
            std::thread::spawn(move || {
                let mut s = PgStore::connect(&url).unwrap();
                let holder = format!("host-{host}");
                let mut sent = Vec::new();
                for _ in 0..1_000 {
                    let groups = s
                        .claim_due_groups("acme", &holder, 60_000, 40_000, 4)
                        .unwrap();
                    for g in &groups {
                        let m = NewNotification {
                            title: "t",
                            body: "{}",
                            alert_ids: &[],
                        };
                        s.flush_group(g, &[], Some(&m), 40_000).unwrap();
                    }
                    let due = s
                        .claim_due_notifications("acme", &holder, 60_000, 40_000, 3)
                        .unwrap();
                    if groups.is_empty() && due.is_empty() {
                        return sent;
                    }
                    for n in &due {
                        s.notification_sent(n.id, 40_000).unwrap();
                    }
                    sent.extend(due.iter().map(|n| n.idem_key.clone()));
                }
                panic!("host-{host} was still working after 1,000 rounds");
            })
        })
        .collect();
    let mut all: Vec<String> = hosts.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!((n, all.len()), (60, 60), "every notification sent once");
}

fn rules_contract<S: Rules + Scores>(s: &mut S) {
    use leadgate_store::rules::{Committed, NewExecution, NewRuleAction, RuleVersion, RulesCommit};
    // Versions: the same id and version with another document is refused.
    let v = |id: &str, version: i64, digest: &str| RuleVersion {
        rule_id: id.into(),
        version,
        digest: digest.into(),
        doc: format!("{id} {digest}"),
    };
    assert!(
        s.load_rule_versions("acme", &[v("a", 1, "d1"), v("b", 1, "d2")], 1)
            .unwrap()
            .is_empty()
    );
    let refused = s
        .load_rule_versions(
            "acme",
            &[v("a", 1, "d1"), v("a", 2, "d3"), v("b", 1, "dX")],
            2,
        )
        .unwrap();
    assert_eq!(refused.len(), 1);
    assert_eq!((refused[0].rule_id.as_str(), refused[0].version), ("b", 1));

    // The inbox: claimed by one holder until its lease runs out.
    s.queue_for_rules(
        "acme",
        &[
            ("l1".into(), "lead".into(), String::new()),
            ("l2".into(), "duplicate_conflict".into(), "r7".into()),
        ],
        10,
    )
    .unwrap();
    let a = s.claim_rule_inbox("acme", "host-a", 1_000, 20, 10).unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(
        (a[1].kind.as_str(), a[1].reference.as_str()),
        ("duplicate_conflict", "r7")
    );
    assert!(
        s.claim_rule_inbox("acme", "host-b", 1_000, 30, 10)
            .unwrap()
            .is_empty()
    );
    assert!(
        s.claim_rule_inbox("other", "host-b", 1_000, 30, 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.claim_rule_inbox("acme", "host-b", 1_000, 1_020, 10)
            .unwrap()
            .len(),
        2
    );

    // A lead's events, its own and its merged leads', oldest first.
    let ev =
        |id: &str, lead: &str, at: i64, category: Option<&str>| leadgate_store::score::NewEvent {
            id: id.into(),
            kind: "page_view",
            at,
            category: category.map(String::from),
            value: 1.0,
            url: Some("https://acme.com/pricing".into()),
            email: None,
            lead_ref: Some(lead.into()),
            external: None,
            payload: "{}".into(),
        };
    s.insert_events(
        "acme",
        &[
            ev("e2", "l1", 200, Some("pricing")),
            ev("e1", "l1", 100, None),
            ev("e3", "l2", 150, None),
        ],
        300,
    )
    .unwrap();
    let events = s.rule_events("acme", "l1", 0).unwrap();
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["e1", "e2"]);
    assert_eq!(events[1].category.as_deref(), Some("pricing"));
    assert_eq!(s.rule_events("acme", "l1", 150).unwrap().len(), 1);

    // A commit: the record, the executions (each key once), the inbox.
    let exec = |key: &str| NewExecution {
        key: key.into(),
        rule_id: "a".into(),
        version: 1,
        lead_id: "l1".into(),
        fired_by: "event".into(),
        mode: "active".into(),
        at: 200,
        record: "{}".into(),
        actions: vec![
            NewRuleAction {
                kind: "score".into(),
                body: r#"{"type":"score","points":20,"reason":"r"}"#.into(),
                state: "pending".into(),
                outcome: None,
            },
            NewRuleAction {
                kind: "sequence".into(),
                body: "{}".into(),
                state: "suppressed".into(),
                outcome: Some("opted out".into()),
            },
        ],
    };
    let first = RulesCommit {
        lead_id: "l1".into(),
        read_version: None,
        state: "{\"n\":1}".into(),
        due_at: Some(5_000),
        executions: vec![exec("a:l1:w1")],
        inbox: vec![a[0].id],
    };
    assert_eq!(
        s.commit_rules("acme", &first, 400).unwrap(),
        Committed::Done {
            recorded: vec!["a:l1:w1".into()],
            repeated: vec![]
        }
    );
    // Written again from the same read: stale, nothing written.
    assert_eq!(
        s.commit_rules("acme", &first, 401).unwrap(),
        Committed::Stale
    );
    let row = s.rule_lead("acme", "l1").unwrap().unwrap();
    assert_eq!(
        (row.version, row.due_at, row.state.as_str()),
        (1, Some(5_000), "{\"n\":1}")
    );
    let again = RulesCommit {
        read_version: Some(1),
        state: "{\"n\":2}".into(),
        due_at: None,
        executions: vec![exec("a:l1:w1"), exec("a:l1:w2")],
        inbox: vec![],
        ..first.clone()
    };
    assert_eq!(
        s.commit_rules("acme", &again, 402).unwrap(),
        Committed::Done {
            recorded: vec!["a:l1:w2".into()],
            repeated: vec!["a:l1:w1".into()]
        }
    );
    assert_eq!(
        s.commit_rules("acme", &again, 403).unwrap(),
        Committed::Stale
    );
    assert_eq!(s.rule_lead("acme", "l1").unwrap().unwrap().due_at, None);
    let backlog = s.rules_backlog("acme").unwrap();
    assert_eq!((backlog.inbox, backlog.timers, backlog.actions), (1, 0, 2));

    let execs = s
        .rule_executions("acme", Some("l1"), 0, i64::MAX, 10)
        .unwrap();
    let keys: Vec<&str> = execs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["a:l1:w1", "a:l1:w2"]);
    assert!(
        s.rule_executions("acme", None, 0, 200, 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.rule_executions("acme", None, 200, 201, 10).unwrap().len(),
        2
    );
    let actions = s.rule_actions_of("acme", "l1").unwrap();
    let states: Vec<(&str, &str)> = actions
        .iter()
        .map(|a| (a.key.as_str(), a.state.as_str()))
        .collect();
    assert_eq!(
        states,
        [
            ("a:l1:w1#0", "pending"),
            ("a:l1:w1#1", "suppressed"),
            ("a:l1:w2#0", "pending"),
            ("a:l1:w2#1", "suppressed"),
        ]
    );

    // Actions: claimed once, retried later, done; score actions read back;
    // those calling out are left to a claim that takes them.
    let mut remote = exec("a:l2:crm");
    remote.lead_id = "l2".into();
    remote.actions = vec![NewRuleAction {
        kind: "crm_update".into(),
        body: "{}".into(),
        state: "pending".into(),
        outcome: None,
    }];
    let l2 = RulesCommit {
        lead_id: "l2".into(),
        read_version: None,
        state: "{}".into(),
        due_at: None,
        executions: vec![remote],
        inbox: vec![],
    };
    s.commit_rules("acme", &l2, 450).unwrap();
    let local = s
        .claim_rule_actions("acme", "host-a", 1_000, 500, 10, false)
        .unwrap();
    assert_eq!(local.len(), 2);
    assert!(local.iter().all(|a| a.kind == "score"));
    let claimed = s
        .claim_rule_actions("acme", "host-a", 1_000, 500, 10, true)
        .unwrap();
    assert_eq!(claimed.len(), 3);
    assert_eq!(claimed[2].kind, "crm_update");
    assert!(
        s.claim_rule_actions("acme", "host-b", 1_000, 600, 10, true)
            .unwrap()
            .is_empty()
    );
    s.finish_rule_action(claimed[0].id, "done", "score +20", None, 700)
        .unwrap();
    s.finish_rule_action(claimed[1].id, "pending", "HTTP 503", Some(2_000), 700)
        .unwrap();
    s.finish_rule_action(claimed[2].id, "done", "HubSpot 200", None, 700)
        .unwrap();
    assert!(
        s.claim_rule_actions("acme", "host-b", 1_000, 1_999, 10, true)
            .unwrap()
            .is_empty()
    );
    let retry = s
        .claim_rule_actions("acme", "host-b", 1_000, 2_000, 10, true)
        .unwrap();
    assert_eq!((retry.len(), retry[0].attempts), (1, 1));
    // A finished action is not finished again.
    s.finish_rule_action(claimed[0].id, "failed", "late", None, 800)
        .unwrap();
    let score = s
        .rule_score_actions("acme", Some(&["l1".into(), "l9".into()]))
        .unwrap();
    assert_eq!(score.len(), 1);
    assert_eq!(score[0].1, "a:l1:w1#0");
    assert_eq!(s.rule_score_actions("acme", None).unwrap(), score);
    assert!(
        s.rule_score_actions("acme", Some(&["l2".into()]))
            .unwrap()
            .is_empty()
    );

    // Review items and re-enrichment.
    assert!(
        s.open_rule_review("acme", "l1", "rule:a", "look", 900)
            .unwrap()
    );
    assert!(
        !s.open_rule_review("acme", "l1", "rule:a", "look again", 901)
            .unwrap()
    );
    s.queue_enrichment("acme", "l1", "rule a", 900).unwrap();
    s.queue_enrichment("acme", "l1", "rule a", 901).unwrap();

    // Timers: only the due ones, claimed once.
    let timed = RulesCommit {
        lead_id: "l3".into(),
        read_version: None,
        state: "{}".into(),
        due_at: Some(10_000),
        executions: vec![],
        inbox: vec![],
    };
    s.commit_rules("acme", &timed, 1).unwrap();
    assert!(
        s.claim_due_rule_leads("acme", "host-a", 1_000, 9_999, 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.claim_due_rule_leads("acme", "host-a", 1_000, 10_000, 10)
            .unwrap(),
        [("l3".to_string(), 10_000)]
    );
    assert!(
        s.claim_due_rule_leads("acme", "host-b", 1_000, 10_500, 10)
            .unwrap()
            .is_empty()
    );

    // Stages: the latest by time is current; the same stage is not news,
    // an older report is history only.
    assert!(s.set_stage("acme", "l1", "lead", 100, "api").unwrap());
    assert!(
        s.set_stage("acme", "l1", "opportunity", 300, "hubspot")
            .unwrap()
    );
    assert!(
        !s.set_stage("acme", "l1", "opportunity", 400, "api")
            .unwrap()
    );
    assert!(!s.set_stage("acme", "l1", "mql", 200, "api").unwrap());
    assert_eq!(
        s.stage_of("acme", "l1").unwrap(),
        Some(("opportunity".into(), 300))
    );
    assert_eq!(s.stage_of("acme", "l9").unwrap(), None);
}

#[test]
fn rules_records_keep_each_key_once_and_claim_work_once_on_every_backend() {
    let sqlite = SqliteWithLeads::new("rules", LEADS);
    rules_contract(&mut sqlite.open());
    if let Some(db) = TestDb::create("rules") {
        rules_contract(&mut pg_with_leads(&db, LEADS));
    }
}
