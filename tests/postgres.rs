//! `leadgate` on PostgreSQL: a store moved from SQLite answers the CLI and
//! the service's GET routes as it did; two `leadgate serve` hosts share one
//! database, one killed mid-load, and every acknowledged lead is stored and
//! handed off once. The server is `LEADGATE_TEST_POSTGRES`'s (see
//! `common::pg`); without it these tests say so and pass.

#![allow(clippy::unwrap_used)]

mod common;

use common::core::{Server, key};
use common::crm::FakeCrm;
use common::pg::TestDb;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn leadgate(dir: &Path) -> Command {
    let mut c = common::leadgate(dir);
    c.env("TEST_CRM_TOKEN", "crm-token");
    c
}

fn config(crm: &str, store: &str) -> String {
    format!(
        r#"tenant = "acme"
[store]
{store}
[serve]
tick_seconds = 1
claim_lease_ms = 2000
sync_budget_ms = 20000
[crm]
target = "hubspot"
url = "{crm}"
token_env = "TEST_CRM_TOKEN"
backoff_ms = 20
max_backoff_ms = 200
timeout_ms = 2000
batch_size = 20
handoff = ["qualified", "incomplete", "needs_review"]
"#
    )
}

/// A made-up company name, different for each `n`.
fn word(n: usize) -> String {
    const SYLLABLES: [&str; 16] = [
        "ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "vu", "wa", "xe", "yo", "zi", "bel", "dor",
        "fen",
    ];
    let (a, b, c) = (n % 16, (n / 16) % 16, (n / 256) % 16);
    format!("{}{}{}tek", SYLLABLES[a], SYLLABLES[b], SYLLABLES[c])
}

/// A lead of its own per email (a name and phone that follow from it).
fn lead(email: &str, n: usize) -> String {
    let first = ["Ann", "Bob", "Carla", "Dev", "Elif", "Farid"][n % 6];
    serde_json::json!({
        "email": email,
        "first_name": first,
        "last_name": format!("Moreau{n}"),
        "company": email.split(['@', '.']).nth(1).unwrap_or("Initech"),
        "phone": format!("+1 415 555 {:04}", n % 10_000),
        "country": "US"
    })
    .to_string()
}

fn text(out: std::process::Output) -> String {
    String::from_utf8(out.stdout).unwrap()
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What the CLI and the API answer about the leads `ids` in `dir`'s store
/// (or `db`'s).
fn answers(dir: &Path, db: &str, ids: &[String], api: &Server, key: &str) -> Vec<String> {
    let cli = |args: &[&str]| {
        let mut all = vec!["--config", "leadgate.toml", "--db", db];
        all.extend_from_slice(args);
        text(common::ok(dir, &all))
    };
    let mut out = Vec::new();
    for id in ids {
        out.push(cli(&["show", id]));
        out.push(api.get(&format!("/v1/leads/{id}"), Some(key)).1.to_string());
    }
    out.push(timeless(&cli(&["review", "list", "--json"])));
    out.push(cli(&["outbox", "list", "--json"]));
    out.push(cli(&["exceptions", "--json"]));
    for path in ["/v1/review", "/v1/outbox", "/v1/alerts"] {
        out.push(timeless(&api.get(path, Some(key)).1.to_string()));
    }
    out
}

/// Review items without their priority, which grows with the time they
/// are asked about (`min(age / escalation, 2)`): the two stores are asked
/// seconds apart, and the rounded priority can cross a thousandth.
fn timeless(text: &str) -> String {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(o) => {
                o.remove("priority");
                o.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    text.lines()
        .map(|l| match serde_json::from_str::<serde_json::Value>(l) {
            Ok(mut v) => {
                strip(&mut v);
                v.to_string()
            }
            Err(_) => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_store_moved_to_postgresql_answers_the_cli_and_the_api_as_on_sqlite() {
    let Some(db) = TestDb::create("migrate") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Handoffs to a CRM that is not there stay in the outbox.
    std::fs::write(
        d.join("leadgate.toml"),
        config("http://127.0.0.1:9", "path = \"s.db\""),
    )
    .unwrap();
    let k = key(d, "acme");
    let ids: Vec<String> = {
        let s = Server::start_with(leadgate(d), &["--no-handoff"]);
        let mut ids = Vec::new();
        for (i, email) in [
            "ann@initech.com",
            "bob@initech.com",
            "ann@initech.com",
            "role@initech.com",
            "not-an-email",
        ]
        .iter()
        .enumerate()
        {
            let (status, body) = s.post_leads(&k, Some(&format!("m{i}")), &lead(email, i));
            assert!(status == 200 || status == 422, "{status} {body}");
            if let Some(id) = body["results"][0]["lead_id"].as_str() {
                ids.push(id.to_string());
            }
        }
        ids
    };
    assert!(ids.len() >= 4, "{ids:?}");
    let on_sqlite = {
        let api = Server::start_with(leadgate(d), &["--no-handoff"]);
        answers(d, "s.db", &ids, &api, &k)
    };
    let moved = common::ok(d, &["migrate-store", "--from", "s.db", "--to", &db.url]);
    let report = String::from_utf8_lossy(&moved.stderr).to_string();
    assert!(report.contains("every table verified"), "{report}");
    let on_pg = {
        let mut cmd = leadgate(d);
        cmd.args(["--db", &db.url]);
        let api = Server::start_with(cmd, &["--no-handoff"]);
        answers(d, &db.url, &ids, &api, &k)
    };
    assert_eq!(on_sqlite.len(), on_pg.len());
    for (s, p) in on_sqlite.iter().zip(&on_pg) {
        assert_eq!(s, p, "SQLite and PostgreSQL answer differently");
    }
    // Moving again into the same database is refused: it is not empty.
    let again = leadgate(d)
        .args(["migrate-store", "--from", "s.db", "--to", &db.url])
        .output()
        .unwrap();
    assert_ne!(again.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
}

/// Kills `s`'s process at once (SIGKILL: no shutdown, as a crash).
fn nix_kill(s: &Server) -> std::io::Result<std::process::ExitStatus> {
    Command::new("kill")
        .args(["-9", &s.child.id().to_string()])
        .status()
}

/// The lead ids a host answered a request with (200), if it did.
type Answer = Option<Vec<String>>;

/// One request as a client sends it until it is answered.
struct Request {
    key: String,
    body: String,
}

/// Posts `r` to `s`; the lead ids of a 200, `None` for anything else
/// (202 still processing, an error, or no answer: the host died).
fn post(s: &Server, api_key: &str, r: &Request) -> Answer {
    let url = format!("{}/v1/leads", s.url);
    let answer = Server::agent()
        .post(&url)
        .header("Authorization", format!("Bearer {api_key}"))
        .header("Idempotency-Key", &r.key)
        .header("Content-Type", "application/json")
        .send(&r.body);
    let mut resp = answer.ok()?;
    if resp.status().as_u16() != 200 {
        return None;
    }
    let body: serde_json::Value =
        serde_json::from_str(&resp.body_mut().read_to_string().ok()?).ok()?;
    Some(
        body["results"]
            .as_array()?
            .iter()
            .filter_map(|x| x["lead_id"].as_str().map(str::to_string))
            .collect(),
    )
}

#[test]
fn two_hosts_on_one_database_store_and_hand_off_each_acknowledged_lead_once() {
    let Some(db) = TestDb::create("two_hosts") else {
        return;
    };
    let crm = FakeCrm::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("leadgate.toml"),
        config(&crm.url, &format!("url = \"{}\"", db.url)),
    )
    .unwrap();
    let k = key(d, "acme");
    let host = |name: &str| {
        let mut c = leadgate(d);
        c.env("HOSTNAME", name);
        Server::start(c)
    };
    let a = host("host-a");
    let b = host("host-b");
    let requests: Vec<Request> = (0..240)
        .map(|i| {
            let email = format!("{}@{}.com", ["ann", "bo", "cy", "di"][i % 4], word(i));
            Request {
                key: format!("order-{i}"),
                body: lead(&email, i),
            }
        })
        .collect();
    // Requests go to both hosts, from four clients each; host a is killed
    // (no shutdown) once a third of its requests are answered, with others
    // in flight.
    let done_on_a = std::sync::atomic::AtomicUsize::new(0);
    let clients = 4;
    // Host b gets two requests in three: the third only host a, so that
    // what host a leaves unfinished must be redelivered.
    let share = |host: &Server, counter: Option<&std::sync::atomic::AtomicUsize>, c: usize| {
        requests
            .iter()
            .enumerate()
            .filter(|(i, _)| i % clients == c && (counter.is_some() || i % 3 != 0))
            .map(|(i, r)| {
                let got = post(host, &k, r);
                if let Some(n) = counter {
                    n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                (i, got)
            })
            .collect::<Vec<_>>()
    };
    let answered: Vec<(Answer, Answer)> = std::thread::scope(|scope| {
        let to_a: Vec<_> = (0..clients)
            .map(|c| {
                let (a, done_on_a, share) = (&a, &done_on_a, &share);
                scope.spawn(move || share(a, Some(done_on_a), c))
            })
            .collect();
        let to_b: Vec<_> = (0..clients)
            .map(|c| {
                let (b, share) = (&b, &share);
                scope.spawn(move || share(b, None, c))
            })
            .collect();
        while done_on_a.load(std::sync::atomic::Ordering::SeqCst) < requests.len() / 3 {
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = nix_kill(&a);
        let mut out: Vec<(Answer, Answer)> = (0..requests.len()).map(|_| (None, None)).collect();
        for h in to_a {
            for (i, got) in h.join().unwrap() {
                out[i].0 = got;
            }
        }
        for h in to_b {
            for (i, got) in h.join().unwrap() {
                out[i].1 = got;
            }
        }
        out
    });
    drop(a);
    // Both hosts that answered a request answered it with the same leads.
    for (r, (x, y)) in requests.iter().zip(&answered) {
        if let (Some(x), Some(y)) = (x, y) {
            assert_eq!(x, y, "{} got different leads from the two hosts", r.key);
        }
    }
    // What was not answered 200 is redelivered to the host left until it
    // is: a request host a logged and left unfinished is taken up by host b
    // once host a's claim runs out.
    let mut leads_of: Vec<Vec<String>> = Vec::new();
    let mut redelivered = 0;
    for (r, (x, y)) in requests.iter().zip(answered) {
        let ids = match x.or(y) {
            Some(ids) => ids,
            None => {
                redelivered += 1;
                let mut got = None;
                wait_for(
                    &format!("{} to be answered", r.key),
                    Duration::from_secs(60),
                    || {
                        got = post(&b, &k, r);
                        got.is_some()
                    },
                );
                got.unwrap()
            }
        };
        assert_eq!(ids.len(), 1, "{}", r.key);
        leads_of.push(ids);
    }
    let mut c = db.client();
    let stored: Vec<(String, i64)> = c
        .query(
            "SELECT raw::JSONB->>'email', count(*) FROM leads GROUP BY 1 ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        stored.len(),
        requests.len(),
        "every acknowledged lead is stored"
    );
    assert!(
        stored.iter().all(|(_, n)| *n == 1),
        "no lead is stored twice: {:?}",
        stored.iter().filter(|(_, n)| *n > 1).collect::<Vec<_>>()
    );
    let intake: i64 = c
        .query_one("SELECT count(*) FROM intake WHERE state = 'done'", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        intake,
        requests.len() as i64,
        "each request logged once, finished"
    );
    // Every lead handed off (one handoff each) reaches the CRM, and is
    // created there once.
    let handed: Vec<(String, i64)> = c
        .query(
            "SELECT lower(l.raw::JSONB->>'email'), count(*) FROM crm_outbox o JOIN leads l ON l.id = o.lead_id
              GROUP BY 1 ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(
        handed.len() > requests.len() / 2,
        "{} handoffs",
        handed.len()
    );
    assert!(
        handed.iter().all(|(_, n)| *n == 1),
        "a lead handed off twice"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let missing = {
            let s = crm.state.lock().unwrap();
            handed
                .iter()
                .filter(|(e, _)| !s.records.contains_key(e))
                .count()
        };
        if missing == 0 {
            break;
        }
        if Instant::now() > deadline {
            let states: Vec<(String, i64)> = c
                .query("SELECT state, count(*) FROM crm_outbox GROUP BY 1", &[])
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            panic!(
                "{missing} leads never reached the CRM; the outbox: {states:?}; host b: {}",
                b.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let s = crm.state.lock().unwrap();
    let twice: Vec<&String> = s
        .creates
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(e, _)| e)
        .collect();
    assert!(twice.is_empty(), "created twice in the CRM: {twice:?}");
    let sent_again = s.attempts.values().filter(|n| **n > 1).count();
    eprintln!("{redelivered} requests answered only when redelivered after the kill");
    eprintln!(
        "{} leads, {} handed off; {} sent to the CRM more than once (a delivery in flight when its host was killed)",
        requests.len(),
        handed.len(),
        sent_again
    );
    assert!(
        sent_again <= 8,
        "{sent_again} handoffs were sent more than once"
    );
    drop(s);
    // The CRM answered each; the hosts record it just after.
    wait_for(
        "every handoff recorded delivered",
        Duration::from_secs(30),
        || {
            let delivered: i64 = c
                .query_one(
                    "SELECT count(*) FROM crm_outbox WHERE state = 'delivered'",
                    &[],
                )
                .unwrap()
                .get(0);
            delivered == handed.len() as i64
        },
    );
}
