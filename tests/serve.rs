//! Integration tests of `leadgate serve`: the real binary over real HTTP on
//! loopback, with a fake CRM (HubSpot-shaped) that answers 429, 500,
//! timeouts and schema errors when told to.

#![allow(clippy::unwrap_used)]

mod common;

use common::core::{Server, key, now_ms};
use common::crm::FakeCrm;
use common::store::{location, on_postgres};

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn leadgate(dir: &Path) -> Command {
    let mut c = common::leadgate(dir);
    c.env("TEST_HUBSPOT_SECRET", HUBSPOT_SECRET)
        .env("TEST_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("TEST_CRM_TOKEN", "crm-token");
    c
}

const HUBSPOT_SECRET: &str = "hubspot-client-secret";
const WEBHOOK_SECRET: &str = "webhook-secret";

fn config(crm: &str, extra: &str) -> String {
    format!(
        r#"tenant = "acme"
[store]
path = "s.db"
[serve]
tenants = ["other.toml"]
max_body_bytes = 8192
max_leads_per_request = 20
sync_budget_ms = 20000
tick_seconds = 1
hubspot_secret_env = "TEST_HUBSPOT_SECRET"
webhook_secret_env = "TEST_WEBHOOK_SECRET"
[crm]
target = "hubspot"
url = "{crm}"
token_env = "TEST_CRM_TOKEN"
backoff_ms = 20
max_backoff_ms = 200
timeout_ms = 400
{extra}
"#
    )
}

fn setup(crm: &str, extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("leadgate.toml"), config(crm, extra)).unwrap();
    std::fs::write(
        dir.path().join("other.toml"),
        "tenant = \"globex\"\n[serve]\nrate_limit_per_second = 1\nrate_limit_burst = 3\n",
    )
    .unwrap();
    dir
}

/// A lead whose name and phone follow from its email, so different emails
/// are different people to dedupe.
fn lead(email: &str) -> String {
    const FIRST: [&str; 8] = [
        "Ann", "Bob", "Carla", "Dev", "Elif", "Farid", "Greta", "Hiro",
    ];
    const LAST: [&str; 8] = [
        "Lee", "Okafor", "Novak", "Silva", "Brandt", "Ito", "Moreau", "Quinn",
    ];
    let h = email.bytes().fold(1469598103934665603u64, |h, b| {
        (h ^ b as u64).wrapping_mul(1099511628211)
    });
    serde_json::json!({
        "email": email,
        "first_name": FIRST[(h % 8) as usize],
        "last_name": format!("{}{}", LAST[((h >> 8) % 8) as usize], ["", "-Berg", "son", "ley"][((h >> 16) % 4) as usize]),
        "company": "Initech",
        "phone": format!("+1 415 555 {:04}", (h >> 24) % 10_000),
        "country": "US"
    })
    .to_string()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The email in a stored JSON column, in the SQL of the test's store.
fn email_of(column: &str) -> String {
    if on_postgres() {
        format!("({column}::jsonb->>'email')")
    } else {
        format!("json_extract({column}, '$.email')")
    }
}

/// A count from the test's store (`s.db`, or its database).
fn sqlite(dir: &Path, query: &str) -> i64 {
    common::store::count(dir, "s.db", query)
}

#[test]
fn intake_is_idempotent_and_tenants_are_isolated() {
    let crm = FakeCrm::start();
    let dir = setup(&crm.url, "");
    let acme = key(dir.path(), "acme");
    let globex = key(dir.path(), "globex");
    let s = Server::start(leadgate(dir.path()));

    let (status, first) = s.post_leads(&acme, Some("order-1"), &lead("ann@initech.com"));
    assert_eq!(status, 200, "{first}");
    let lead_id = first["results"][0]["lead_id"].as_str().unwrap().to_string();
    assert_eq!(first["results"][0]["status"], "accepted");
    assert!(first["results"][0]["score"]["total"].is_number(), "{first}");

    // Redelivered: the first result, nothing created twice.
    let auth = format!("Bearer {acme}");
    let (status, headers, again) = s.post(
        "/v1/leads",
        &[("Authorization", &auth), ("Idempotency-Key", "order-1")],
        &lead("ann@initech.com"),
    );
    assert_eq!(status, 200);
    assert_eq!(
        headers.get("idempotent-replayed").map(String::as_str),
        Some("true")
    );
    assert_eq!(again, first);
    assert_eq!(sqlite(dir.path(), "SELECT count(*) FROM leads"), 1);
    // The same key with another body is refused.
    let (status, body) = s.post_leads(&acme, Some("order-1"), &lead("bob@initech.com"));
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "idempotency_key.reused");

    // The same request sent several times at once: one request is
    // processed, the others answer with it (done, or still pending).
    let body = lead("cleo@initech.com");
    let answers: Vec<(u16, serde_json::Value)> = std::thread::scope(|scope| {
        let sends: Vec<_> = (0..6)
            .map(|_| scope.spawn(|| s.post_leads(&acme, Some("order-2"), &body)))
            .collect();
        sends.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ids: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|(status, b)| {
            assert!(*status == 200 || *status == 202, "{status} {b}");
            b["request_id"].to_string()
        })
        .collect();
    assert_eq!(ids.len(), 1, "one request for one key: {answers:?}");
    assert!(answers.iter().any(|(status, _)| *status == 200));
    assert_eq!(
        sqlite(
            dir.path(),
            &format!(
                "SELECT count(*) FROM leads WHERE {} = 'cleo@initech.com'",
                email_of("raw")
            )
        ),
        1
    );

    // Another tenant sees none of it.
    let (status, _) = s.get(&format!("/v1/leads/{lead_id}"), Some(&globex));
    assert_eq!(status, 404);
    let (status, _) = s.get(
        &format!("/v1/requests/{}", first["request_id"]),
        Some(&globex),
    );
    assert_eq!(status, 404);
    let (status, mine) = s.get(&format!("/v1/leads/{lead_id}"), Some(&acme));
    assert_eq!(status, 200, "{mine}");
    assert_eq!(mine["lead"]["email"], "ann@initech.com");
    // The same idempotency key in another tenant is another request.
    let (status, other) = s.post_leads(&globex, Some("order-1"), &lead("ann@initech.com"));
    assert_eq!(status, 200, "{other}");
    assert_ne!(
        other["results"][0]["lead_id"],
        first["results"][0]["lead_id"]
    );

    // No key, a wrong key: 401.
    let (status, _, body) = s.post("/v1/leads", &[], &lead("x@initech.com"));
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "auth.missing");
    let (status, body) = s.post_leads("lg_acme_0000", None, &lead("x@initech.com"));
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "auth.invalid");

    // globex's rate limit: a burst of 3, then 429 with Retry-After.
    let mut limited = None;
    for _ in 0..6 {
        let auth = format!("Bearer {globex}");
        let (status, headers, _) = s.post("/v1/leads", &[("Authorization", &auth)], "[]");
        if status == 429 {
            limited = Some(headers);
            break;
        }
    }
    let limited = limited.expect("globex is rate limited");
    assert!(limited.contains_key("retry-after"));
}

#[test]
fn bad_requests_are_refused_with_a_reason() {
    let crm = FakeCrm::start();
    let dir = setup(&crm.url, "");
    let acme = key(dir.path(), "acme");
    let s = Server::start(leadgate(dir.path()));
    let auth = format!("Bearer {acme}");

    let big = format!("[{}]", vec![lead("a@b.com"); 200].join(","));
    let (status, _, body) = s.post("/v1/leads", &[("Authorization", &auth)], &big);
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "body.too_large");

    let many = format!(
        "[{}]",
        (0..21)
            .map(|_| "{}".to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    let (status, _, body) = s.post("/v1/leads", &[("Authorization", &auth)], &many);
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "body.too_many_leads");

    let (status, _, body) = s.post("/v1/leads", &[("Authorization", &auth)], "{\"email\": ");
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "body.json");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );

    let (status, _, body) = s.post("/v1/leads", &[("Authorization", &auth)], "42");
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "body.shape");

    // A lead that is not an object is recorded as rejected, not lost.
    let (status, _, body) = s.post(
        "/v1/leads",
        &[("Authorization", &auth)],
        &format!("[{}, \"just a string\"]", lead("c@initech.com")),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][1]["status"], "rejected");
    assert_eq!(body["results"][1]["issues"][0]["code"], "record.json");

    // A form: field-level errors a form can display.
    let (status, _, body) = s.post(
        "/v1/forms/contact",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        "email=not-an-email&first_name=Bob",
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["status"], "rejected");
    assert!(
        common::core::finding_fields(&body).contains(&"email".to_string()),
        "{body}"
    );
    // ... kept in the store all the same.
    let id = body["lead_id"].as_str().unwrap();
    let (status, stored) = s.get(&format!("/v1/leads/{id}"), Some(&acme));
    assert_eq!(status, 200);
    assert_eq!(stored["status"], "rejected");

    let (status, _, body) = s.post(
        "/v1/forms/contact",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        "email=dana%40initech.com&first_name=Dana&last_name=Scully&company=Initech",
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["result"]["lead"]["custom"][0]["key"], "form_id");

    let (status, _, body) = s.post(
        "/v1/forms/contact",
        &[("Authorization", &auth), ("Content-Type", "text/plain")],
        "hello",
    );
    assert_eq!(status, 415);
    assert_eq!(body["error"]["code"], "body.content_type");

    let (status, body) = s.get("/v2/nothing", None);
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "route.not_found");
}

fn hubspot_headers(uri: &str, body: &str, ts: i64, secret: &str) -> (String, String) {
    let t = ts.to_string();
    (
        leadgate_signature::hubspot_v3::sign(secret.as_bytes(), "POST", uri, body.as_bytes(), &t),
        t,
    )
}

#[test]
fn webhooks_are_verified_and_write_back_to_the_crm() {
    let crm = FakeCrm::start();
    crm.state.lock().unwrap().contacts.insert(
        "501".into(),
        serde_json::json!({"id": "501", "properties": {
            "email": "hub@initech.com", "firstname": "Hub", "lastname": "Spot",
            "company": "Initech", "phone": "+1 415 555 2671", "country": "US"}}),
    );
    let dir = setup(&crm.url, "");
    let s = Server::start(leadgate(dir.path()));
    let path = "/v1/webhooks/acme/hubspot";
    let uri = format!("{}{path}", s.url);
    let body = r#"[{"eventId":9001,"subscriptionType":"contact.creation","objectId":501,"portalId":7,"occurredAt":1}]"#;
    let send = |sig: &str, ts: &str, body: &str| {
        s.post(
            path,
            &[
                ("X-HubSpot-Signature-v3", sig),
                ("X-HubSpot-Request-Timestamp", ts),
            ],
            body,
        )
    };
    // Valid.
    let (sig, ts) = hubspot_headers(&uri, body, now_ms(), HUBSPOT_SECRET);
    let (status, _, out) = send(&sig, &ts, body);
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["events"][0]["status"], 200, "{out}");
    let lead_id = out["events"][0]["result"]["results"][0]["lead_id"]
        .as_str()
        .unwrap()
        .to_string();
    // The result is written back to contact 501.
    wait_for("the write-back", || {
        crm.state.lock().unwrap().patches.contains_key("501")
    });
    let patch = crm.state.lock().unwrap().patches["501"].clone();
    assert_eq!(patch["leadgate_lead_id"], lead_id.as_str());
    assert_eq!(patch["leadgate_qualification"], "qualified");
    // Redelivered (a new signature, the same event): nothing twice.
    let (sig, ts) = hubspot_headers(&uri, body, now_ms(), HUBSPOT_SECRET);
    let (status, _, again) = send(&sig, &ts, body);
    assert_eq!(status, 200);
    assert_eq!(
        again["events"][0]["result"]["results"][0]["lead_id"],
        lead_id.as_str()
    );
    assert_eq!(sqlite(dir.path(), "SELECT count(*) FROM leads"), 1);

    // Wrong secret, old, future, tampered, unsigned: 401, logged.
    let (sig, ts) = hubspot_headers(&uri, body, now_ms(), "not-the-secret");
    let (status, _, out) = send(&sig, &ts, body);
    assert_eq!(
        (status, out["error"]["code"].as_str()),
        (401, Some("signature.mismatch"))
    );
    let (sig, ts) = hubspot_headers(&uri, body, now_ms() - 6 * 60_000, HUBSPOT_SECRET);
    let (status, _, out) = send(&sig, &ts, body);
    assert_eq!(
        (status, out["error"]["code"].as_str()),
        (401, Some("signature.stale"))
    );
    let (sig, ts) = hubspot_headers(&uri, body, now_ms() + 6 * 60_000, HUBSPOT_SECRET);
    let (status, _, out) = send(&sig, &ts, body);
    assert_eq!(
        (status, out["error"]["code"].as_str()),
        (401, Some("signature.future"))
    );
    let (sig, ts) = hubspot_headers(&uri, body, now_ms(), HUBSPOT_SECRET);
    let tampered = body.replace("501", "502");
    let (status, _, out) = send(&sig, &ts, &tampered);
    assert_eq!(
        (status, out["error"]["code"].as_str()),
        (401, Some("signature.mismatch"))
    );
    let (status, _, out) = s.post(path, &[], body);
    assert_eq!(
        (status, out["error"]["code"].as_str()),
        (401, Some("signature.missing"))
    );
    assert!(
        s.logged("refused a webhook signature", Duration::from_secs(10)),
        "{}",
        s.logs()
    );
    let (_, metrics) = s.get("/metrics", None);
    assert!(
        metrics.as_str().unwrap().contains(
            "leadgate_signatures_refused_total{tenant=\"acme\",outcome=\"signature.stale\"} 1"
        ),
        "{metrics}"
    );

    // The generic signed webhook carrying the lead.
    let lead_path = "/v1/webhooks/acme/lead";
    let body = serde_json::json!({"event_id": "evt-1", "leads": [serde_json::from_str::<serde_json::Value>(&lead("web@initech.com")).unwrap()]}).to_string();
    let sig =
        leadgate_signature::leadgate_v1::sign(WEBHOOK_SECRET.as_bytes(), body.as_bytes(), now_ms());
    let (status, _, out) = s.post(lead_path, &[("X-Leadgate-Signature", &sig)], &body);
    assert_eq!(status, 200, "{out}");
    let (status, headers, again) = s.post(lead_path, &[("X-Leadgate-Signature", &sig)], &body);
    assert_eq!(status, 200);
    assert_eq!(
        headers.get("idempotent-replayed").map(String::as_str),
        Some("true")
    );
    assert_eq!(again, out);
    let bad = leadgate_signature::leadgate_v1::sign(b"wrong", body.as_bytes(), now_ms());
    let (status, _, _) = s.post(lead_path, &[("X-Leadgate-Signature", &bad)], &body);
    assert_eq!(status, 401);
    let (status, _, _) = s.post(
        "/v1/webhooks/nobody/lead",
        &[("X-Leadgate-Signature", &sig)],
        &body,
    );
    assert_eq!(status, 404);
}

#[test]
fn handoff_retries_dead_letters_and_never_duplicates() {
    let crm = FakeCrm::start();
    crm.state.lock().unwrap().down = true;
    let dir = setup(&crm.url, "batch_size = 10\nmax_attempts = 5\n");
    let acme = key(dir.path(), "acme");
    let s = Server::start(leadgate(dir.path()));
    let post = |leads: &[&str]| -> Vec<String> {
        let body = format!(
            "[{}]",
            leads.iter().map(|e| lead(e)).collect::<Vec<_>>().join(",")
        );
        let (status, out) = s.post_leads(&acme, None, &body);
        assert_eq!(status, 200, "{out}");
        (0..leads.len())
            .map(|i| out["results"][i]["lead_id"].as_str().unwrap().to_string())
            .collect()
    };
    let state_of = |id: &str| -> String {
        let (_, v) = s.get(&format!("/v1/leads/{id}"), Some(&acme));
        v["crm"][0]["state"].as_str().unwrap_or("").to_string()
    };
    // A schema error refuses the whole batch; split, only its lead fails,
    // with an exception item holding the CRM's error.
    let ids = post(&["schema@initech.com", "good@initech.com"]);
    wait_for("good delivered", || state_of(&ids[1]) == "delivered");
    wait_for("schema failed", || state_of(&ids[0]) == "failed");
    let out = leadgate(dir.path())
        .args(["--config", "leadgate.toml", "exceptions", "--json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("PROPERTY_DOESNT_EXIST") && text.contains(&ids[0]),
        "{text}"
    );
    // 429, then 500, then a timeout, then delivered — one contact.
    let flaky = post(&["flaky@initech.com"]);
    wait_for("flaky delivered", || state_of(&flaky[0]) == "delivered");
    // Down: dead-lettered after max_attempts.
    let down = post(&["down@initech.com"]);
    wait_for("down dead-lettered", || state_of(&down[0]) == "dead");
    {
        let st = crm.state.lock().unwrap();
        assert_eq!(st.attempts["down@initech.com"], 5);
        assert_eq!(st.attempts["flaky@initech.com"], 4);
        assert!(!st.records.contains_key("schema@initech.com"));
    }
    // Replayed once the CRM is back.
    crm.state.lock().unwrap().down = false;
    let out = leadgate(dir.path())
        .args(["--config", "leadgate.toml", "outbox", "retry"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("2 handoff(s)"),
        "{out:?}"
    );
    wait_for("down delivered", || state_of(&down[0]) == "delivered");
    let st = crm.state.lock().unwrap();
    for e in ["flaky@initech.com", "good@initech.com", "down@initech.com"] {
        assert_eq!(st.creates.get(e), Some(&1), "{e}: exactly one CRM record");
    }
    drop(st);
    let (_, metrics) = s.get("/metrics", None);
    let m = metrics.as_str().unwrap();
    assert!(
        m.contains("leadgate_handoffs_total{tenant=\"acme\",outcome=\"dead\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("leadgate_outbox{tenant=\"acme\",outcome=\"delivered\"} 3"),
        "{m}"
    );
}

/// `n` requests of `per` leads each, keyed `{tag}-{r}`; lead `i` of request
/// `r` is `p{r}-{i}@{tag}{r}.com`, a person of its own.
fn lead_requests(n: usize, per: usize, tag: &str) -> Vec<(String, String)> {
    (0..n)
        .map(|r| {
            let leads: Vec<String> = (0..per)
                .map(|i| lead(&format!("p{r}-{i}@{tag}{r}.com")))
                .collect();
            (format!("{tag}-{r}"), format!("[{}]", leads.join(",")))
        })
        .collect()
}

/// Sends every request again with its key, each answered 200 or 202,
/// and waits until none is pending.
fn resend_all(s: &Server, key: &str, dir: &Path, requests: &[(String, String)]) {
    for (idem, body) in requests {
        let (status, out) = s.post_leads(key, Some(idem), body);
        assert!(status == 200 || status == 202, "{status} {out}");
    }
    wait_for("every request done", || {
        sqlite(dir, "SELECT count(*) FROM intake WHERE state = 'pending'") == 0
    });
}

/// Posts `body` to `/v1/leads` under `idem`; the status, or `None` when
/// the server is gone.
fn send_leads(url: &str, key: &str, idem: &str, body: &str) -> Option<u16> {
    Server::agent()
        .post(format!("{url}/v1/leads"))
        .header("Authorization", format!("Bearer {key}"))
        .header("Idempotency-Key", idem)
        .header("Content-Type", "application/json")
        .send(body)
        .ok()
        .map(|r| r.status().as_u16())
}

#[test]
fn a_crash_mid_batch_loses_nothing_and_duplicates_nothing() {
    let crm = FakeCrm::start();
    let dir = setup(&crm.url, "");
    let acme = key(dir.path(), "acme");
    let s = Server::start(leadgate(dir.path()));
    let url = s.url.clone();
    let requests = lead_requests(40, 5, "crash");
    // Send from two clients while the server is killed part-way.
    let sent = Arc::new(Mutex::new(0usize));
    let senders: Vec<_> = (0..2)
        .map(|c| {
            let reqs: Vec<(String, String)> = requests.iter().skip(c).step_by(2).cloned().collect();
            let (url, key, sent) = (url.clone(), acme.clone(), sent.clone());
            std::thread::spawn(move || {
                for (idem, body) in reqs {
                    if send_leads(&url, &key, &idem, &body).is_none() {
                        return; // the server is gone
                    }
                    *sent.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    wait_for("some requests", || *sent.lock().unwrap() >= 8);
    s.crash();
    for t in senders {
        t.join().unwrap();
    }
    // Restarted, the clients send everything again with the same keys.
    let s = Server::start(leadgate(dir.path()));
    resend_all(&s, &acme, dir.path(), &requests);
    assert_eq!(sqlite(dir.path(), "SELECT count(*) FROM intake"), 40);
    assert_eq!(sqlite(dir.path(), "SELECT count(*) FROM leads"), 200);
    assert_eq!(
        sqlite(
            dir.path(),
            &format!(
                "SELECT count(*) FROM (SELECT {} e FROM leads GROUP BY e HAVING count(*) > 1) AS twice",
                email_of("normalized")
            )
        ),
        0
    );
    // Every lead reaches the CRM once.
    wait_for("all handed off", || {
        crm.state.lock().unwrap().records.len() == 200
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(crm.state.lock().unwrap().creates.values().all(|n| *n == 1));
}

#[test]
fn leads_a_batch_run_imports_meanwhile_are_matched_by_the_service() {
    let crm = FakeCrm::start();
    let dir = setup(&crm.url, "");
    let acme = key(dir.path(), "acme");
    let s = Server::start(leadgate(dir.path()));
    let post = |email: &str, idem: &str| -> String {
        let (status, body) = s.post_leads(&acme, Some(idem), &lead(email));
        assert_eq!(status, 200, "{body}");
        body["results"][0]["lead_id"].as_str().unwrap().to_string()
    };
    let master_of = |id: &str| -> serde_json::Value {
        let (status, v) = s.get(&format!("/v1/leads/{id}"), Some(&acme));
        assert_eq!(status, 200, "{v}");
        v["master_id"].clone()
    };
    let ann = post("ann@initech.com", "1");

    // A batch import into the service's store, by another process: it
    // writes the key index directly.
    std::fs::write(
        dir.path().join("in.ndjson"),
        format!(
            "{}\n{}\n",
            lead("bob@initech.com"),
            lead("cleo@initech.com")
        ),
    )
    .unwrap();
    common::ok(
        dir.path(),
        &[
            "--config",
            "leadgate.toml",
            "run",
            "--input",
            "in.ndjson",
            "--output",
            "o.ndjson",
            "-q",
        ],
    );
    let imported: Vec<String> = std::fs::read_to_string(dir.path().join("o.ndjson"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["lead_id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(imported.len(), 2);

    // The same people sent to the service again: each found by its keys,
    // whichever way they were written.
    for (email, master) in [
        ("bob@initech.com", &imported[0]),
        ("cleo@initech.com", &imported[1]),
        ("ann@initech.com", &ann),
    ] {
        let again = post(email, &format!("again-{email}"));
        assert_ne!(&again, master);
        assert_eq!(master_of(&again), serde_json::json!(master), "{email}");
    }
}

#[test]
fn review_queue_decisions_and_sla() {
    let crm = FakeCrm::start();
    let dir = setup(
        &crm.url,
        "[review]\nescalate_after_hours = 0.001\nfallback_after_hours = 0.002\nfallback = \"reject\"\n",
    );
    let acme = key(dir.path(), "acme");
    let globex = key(dir.path(), "globex");
    let s = Server::start(leadgate(dir.path()));
    // A disposable address: a warning, so review.
    let (status, body) = s.post_leads(
        &acme,
        None,
        &format!(
            "[{},{}]",
            lead("temp@mailinator.com"),
            lead("other@mailinator.com")
        ),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["status"], "review", "{body}");
    let (status, list) = s.get("/v1/review", Some(&acme));
    assert_eq!(status, 200);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{list}");
    assert_eq!(items[0]["kind"], "validation");
    assert!(items[0]["priority"].as_f64().unwrap() > 0.0);
    let id = items[0]["id"].as_i64().unwrap();
    let (_, other_list) = s.get("/v1/review", Some(&globex));
    assert_eq!(other_list["items"].as_array().unwrap().len(), 0);

    let auth = format!("Bearer {acme}");
    let decide = |auth: &str, body: &str| {
        s.post(
            &format!("/v1/review/{id}/decision"),
            &[("Authorization", auth)],
            body,
        )
    };
    let (status, _, out) = decide(&auth, r#"{"decision": "merge", "reviewer": "ann"}"#);
    assert_eq!(status, 422, "{out}");
    let globex_auth = format!("Bearer {globex}");
    let (status, _, _) = decide(&globex_auth, r#"{"decision": "accept", "reviewer": "eve"}"#);
    assert_eq!(status, 404);
    let (status, _, out) = decide(
        &auth,
        r#"{"decision": "accept", "reviewer": "ann", "note": "known customer"}"#,
    );
    assert_eq!(status, 200, "{out}");
    assert!(
        out["effect"]
            .as_str()
            .unwrap()
            .contains("queued for the CRM"),
        "{out}"
    );
    let (status, _, out) = decide(&auth, r#"{"decision": "reject", "reviewer": "bob"}"#);
    assert_eq!(status, 409, "{out}");
    assert_eq!(out["error"]["code"], "review.already_decided");

    // The other item waits past both thresholds: escalated, then the
    // fallback rejects it (the server's scheduler ticks every second).
    let other = items[1]["lead_id"].as_str().unwrap().to_string();
    wait_for("the fallback", || {
        let (_, v) = s.get(&format!("/v1/leads/{other}"), Some(&acme));
        v["status"] == "rejected"
    });
    assert!(
        sqlite(
            dir.path(),
            "SELECT count(*) FROM alerts WHERE kind = 'review.escalated'"
        ) >= 1
    );
    assert!(
        sqlite(
            dir.path(),
            "SELECT count(*) FROM alerts WHERE kind = 'review.fallback'"
        ) >= 1
    );
    let (_, metrics) = s.get("/metrics", None);
    let m = metrics.as_str().unwrap();
    assert!(m.contains("leadgate_review_open{tenant=\"acme\"} 0"), "{m}");
    assert!(
        m.contains("leadgate_validation_total{tenant=\"acme\",outcome=\"review\"} 2"),
        "{m}"
    );
}

#[test]
fn health_metrics_and_the_openapi_document() {
    let crm = FakeCrm::start();
    let dir = setup(&crm.url, "");
    let s = Server::start(leadgate(dir.path()));
    assert_eq!(s.get("/healthz", None).0, 200);
    assert_eq!(s.get("/readyz", None).0, 200);
    let (status, doc) = s.get("/openapi.json", None);
    assert_eq!(status, 200);
    // Every route the server has is documented.
    let routes = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../service/src/routes/mod.rs"),
    )
    .unwrap();
    for line in routes
        .lines()
        .filter(|l| l.trim_start().starts_with(".route(\""))
    {
        let path = line.split('"').nth(1).unwrap();
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} is not in openapi.json"
        );
    }
    let (_, metrics) = s.get("/metrics", None);
    let m = metrics.as_str().unwrap();
    for name in [
        "leadgate_http_requests_total",
        "leadgate_review_sla_adherence",
        "leadgate_handoff_failure_rate",
        "leadgate_intake_pending",
    ] {
        assert!(m.contains(name), "{name} missing from /metrics:\n{m}");
    }
    // SIGTERM: a graceful stop, exit 0 within seconds.
    let mut s = s;
    let pid = s.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not stop: {}",
            s.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}: {}", s.logs());
}

/// A fake CRM, the test configuration in a directory of its own, a key
/// of tenant acme, and the service on it, started.
fn acme_service() -> (FakeCrm, tempfile::TempDir, String, Server) {
    let crm = FakeCrm::start();
    let dir = setup(&crm.url, "");
    let acme = key(dir.path(), "acme");
    let s = Server::start(leadgate(dir.path()));
    (crm, dir, acme, s)
}

#[test]
fn an_idempotency_key_is_scoped_to_its_route() {
    let (_crm, dir, acme, s) = acme_service();
    let auth = format!("Bearer {acme}");
    let form = [
        ("Authorization", auth.as_str()),
        ("Idempotency-Key", "k-1"),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let json = [("Authorization", auth.as_str()), ("Idempotency-Key", "k-1")];

    // Events first, then a lead with the same key: the lead is processed.
    let events = r#"[{"type": "page_view", "email": "scope@initech.com", "at": 1780000000}]"#;
    let (status, _, body) = s.post("/v1/events", &json, events);
    assert!(status < 500, "{status} {body}");
    let (status, headers, body) = s.post("/v1/leads", &json, &lead("scope@initech.com"));
    assert_eq!(status, 200, "{body}");
    assert!(!headers.contains_key("idempotent-replayed"), "{headers:?}");
    assert_eq!(body["results"][0]["status"], "accepted", "{body}");
    // ... and the same lead again on the same route is the replay.
    let (status, headers, again) = s.post("/v1/leads", &json, &lead("scope@initech.com"));
    assert_eq!(status, 200);
    assert_eq!(
        headers.get("idempotent-replayed").map(String::as_str),
        Some("true")
    );
    assert_eq!(again, body);

    // The same key on a form: a form lead, answered as a form.
    let (status, headers, a) = s.post(
        "/v1/forms/a",
        &form,
        "email=form-a%40initech.com&first_name=Ann&last_name=Lee&company=Initech",
    );
    assert_eq!(status, 201, "{a}");
    assert!(!headers.contains_key("idempotent-replayed"));
    // Another form with the same key is another request.
    let (status, headers, b) = s.post(
        "/v1/forms/b",
        &form,
        "email=form-b%40initech.com&first_name=Bob&last_name=Novak&company=Initech",
    );
    assert_eq!(status, 201, "{b}");
    assert!(!headers.contains_key("idempotent-replayed"));
    assert_ne!(a["lead_id"], b["lead_id"]);
    // Each form replays its own answer.
    let (status, headers, a2) = s.post(
        "/v1/forms/a",
        &form,
        "email=form-a%40initech.com&first_name=Ann&last_name=Lee&company=Initech",
    );
    assert_eq!(status, 201);
    assert_eq!(
        headers.get("idempotent-replayed").map(String::as_str),
        Some("true")
    );
    assert_eq!(a2, a);
    // The store keeps them all: events, the lead, two forms.
    assert_eq!(sqlite(dir.path(), "SELECT count(*) FROM intake"), 4);
    assert_eq!(sqlite(dir.path(), "SELECT count(*) FROM leads"), 3);
}

#[test]
fn every_refusal_is_json_naming_the_parameter_after_authentication() {
    let (_crm, _dir, acme, s) = acme_service();
    let get_cases = [
        ("/v1/alerts?limit=-5", "query", "limit"),
        ("/v1/alerts?limit=1001", "query", "limit"),
        ("/v1/alerts?limit=", "query", "limit"),
        ("/v1/outbox?limit=abc", "query", "limit"),
        ("/v1/outbox?state=AAA", "query", "state"),
        ("/v1/review?limit=-1", "query", "limit"),
        ("/v1/review?limit=0", "query", "limit"),
        ("/v1/requests/abc", "path", "id"),
        ("/v1/requests/0", "path", "id"),
        ("/v1/review/abc", "path", "id"),
        ("/v1/review/%FF", "path", "id"),
        ("/v1/leads/%FF%FE", "path", "id"),
    ];
    for (path, place, field) in get_cases {
        // No key: told that first, as JSON.
        let (status, body) = s.get(path, None);
        assert_eq!(status, 401, "{path}: {body}");
        assert_eq!(body["error"]["code"], "auth.missing", "{path}");
        let (status, body) = s.get(path, Some(&acme));
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], format!("{place}.invalid"), "{path}");
        assert_eq!(body["error"]["field"], field, "{path}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(field),
            "{path}: {body}"
        );
    }
    let auth = format!("Bearer {acme}");
    let decision = r#"{"decision": "accept", "reviewer": "ann"}"#;
    let path = "/v1/review/9223372036854775808/decision";
    let (status, _, body) = s.post(path, &[], decision);
    assert_eq!(status, 401, "{body}");
    let (status, _, body) = s.post(path, &[("Authorization", &auth)], decision);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "id");
    // The edges of what is documented are accepted.
    for path in [
        "/v1/alerts?limit=1000",
        "/v1/outbox?state=dead&limit=1",
        "/v1/review?limit=1",
    ] {
        let (status, body) = s.get(path, Some(&acme));
        assert_eq!(status, 200, "{path}: {body}");
    }
    assert_eq!(
        s.get("/v1/requests/9223372036854775807", Some(&acme)).0,
        404
    );
    // A route that does not take the method: JSON too.
    let (status, body) = s.get("/v1/events", Some(&acme));
    assert_eq!(status, 405, "{body}");
    assert_eq!(body["error"]["code"], "route.method_not_allowed");
    // The document says what the server does.
    let (_, doc) = s.get("/openapi.json", None);
    let limit = &doc["paths"]["/v1/alerts"]["get"]["parameters"][0]["schema"];
    assert_eq!(
        (limit["minimum"].as_i64(), limit["maximum"].as_i64()),
        (Some(1), Some(1000))
    );
}

#[test]
fn input_that_would_change_silently_is_refused_with_a_reason() {
    let (_crm, dir, acme, s) = acme_service();
    let auth = format!("Bearer {acme}");
    let form = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let json = [("Authorization", auth.as_str())];
    // Route, headers, body, then the refusal: status, code, the field it names.
    type Case<'a> = (
        &'a str,
        &'a [(&'a str, &'a str)],
        String,
        u16,
        &'a str,
        &'a str,
    );
    let cases: Vec<Case<'_>> = vec![
        ("/v1/forms/contact", &form, "email=fu%FF%FE%40example.com&first_name=Ann".into(), 400, "body.encoding", "'email'"),
        ("/v1/forms/contact", &form, "email=ann%40example.com&first_name=A%00nn".into(), 400, "body.control_character", "'first_name'"),
        ("/v1/forms/contact", &form, "email=a%40example.com&email=b%40example.com".into(), 400, "body.duplicate_key", "'email'"),
        ("/v1/forms/contact", &json, r#"{"email": "ann@example.com", "first_name": "A\u0000nn"}"#.into(), 400, "body.control_character", "'first_name'"),
        ("/v1/leads", &json, r#"{"email": "ann@example.com", "first_name": "A\u0000nn"}"#.into(), 400, "body.control_character", "'first_name'"),
        ("/v1/leads", &json, r#"{"email": "ann@example.com", "email": "bob@example.com"}"#.into(), 400, "body.duplicate_key", "'email'"),
        ("/v1/leads", &json, r#"[{"email": "ann@example.com"}, {"email": "x@example.com", "company": "A", "company": "B"}]"#.into(), 400, "body.duplicate_key", "'[1].company'"),
        ("/v1/events", &json, r#"[{"type": "page_view", "email": "a@example.com", "email": "b@example.com"}]"#.into(), 400, "body.duplicate_key", "'[0].email'"),
    ];
    for (path, headers, body, status, code, field) in &cases {
        let (got, _, answer) = s.post(path, headers, body);
        assert_eq!(got, *status, "{path} {body}: {answer}");
        assert_eq!(answer["error"]["code"], *code, "{path} {body}: {answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(field),
            "{path} {body}: {answer}"
        );
    }
    // Bodies that are not JSON are not read as JSON.
    for (path, ctype) in [
        ("/v1/leads", "text/plain"),
        ("/v1/leads", "application/xml"),
        ("/v1/events", "text/plain"),
    ] {
        let headers = [("Authorization", auth.as_str()), ("Content-Type", ctype)];
        let (status, _, answer) = s.post(path, &headers, &lead("typed@example.com"));
        assert_eq!(status, 415, "{path} {ctype}: {answer}");
        assert_eq!(answer["error"]["code"], "body.content_type");
    }
    // Nothing of it was stored; the same lead, clean, is.
    assert_eq!(sqlite(dir.path(), "SELECT count(*) FROM leads"), 0);
    assert_eq!(sqlite(dir.path(), "SELECT count(*) FROM intake"), 0);
    let (status, _, answer) = s.post(
        "/v1/forms/contact",
        &form,
        "email=ann%40initech.com&first_name=Ann&last_name=Lee&company=Initech&note=line+1%0D%0Aline+2",
    );
    assert_eq!(status, 201, "{answer}");
    // A tab or a line break is text, not a control character.
    let (status, _, answer) = s.post(
        "/v1/leads",
        &json,
        r#"{"email": "bob@initech.com", "first_name": "Bob", "note": "a\tb\nc"}"#,
    );
    assert_eq!(status, 200, "{answer}");
}

/// Writes `head` on a new connection to `url`'s address and returns it.
fn raw_connection(url: &str, head: &str) -> std::net::TcpStream {
    use std::io::Write;
    let addr = url.trim_start_matches("http://");
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(head.as_bytes()).unwrap();
    c
}

/// Everything `c` receives until it is closed (or its read timeout).
fn read_all(c: &mut std::net::TcpStream) -> (String, Duration) {
    use std::io::Read;
    let started = Instant::now();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    (
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn slow_clients_are_cut_off_and_connections_per_client_are_limited() {
    let crm = FakeCrm::start();
    let dir = tempfile::tempdir().unwrap();
    let toml = config(&crm.url, "").replace(
        "[serve]\n",
        "[serve]\nheader_timeout_ms = 1000\nbody_timeout_ms = 1000\nmax_connections_per_client = 4\n",
    );
    std::fs::write(dir.path().join("leadgate.toml"), toml).unwrap();
    std::fs::write(dir.path().join("other.toml"), "tenant = \"globex\"\n").unwrap();
    let acme = key(dir.path(), "acme");
    let s = Server::start(leadgate(dir.path()));

    // Headers that never finish: the connection is closed at the timeout.
    let mut slow = raw_connection(&s.url, "POST /v1/leads HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    let (_, took) = read_all(&mut slow);
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    // A body that never finishes: 408, as JSON, and the connection closed.
    let mut slow = raw_connection(
        &s.url,
        &format!(
            "POST /v1/leads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {acme}\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{{\"email\": "
        ),
    );
    let (answer, took) = read_all(&mut slow);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"body.timeout\""), "{answer}");
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    assert_eq!(sqlite(dir.path(), "SELECT count(*) FROM intake"), 0);

    // Four connections held open; a fifth is refused with a JSON 503.
    let held: Vec<_> = (0..4)
        .map(|_| raw_connection(&s.url, "GET /healthz HTTP/1.1\r\nHost: x\r\n"))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let mut fifth = raw_connection(&s.url, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let (answer, _) = read_all(&mut fifth);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"connections.too_many\""), "{answer}");
    // Once the held ones time out, the client is served again.
    for mut c in held {
        let (_, took) = read_all(&mut c);
        assert!(took < Duration::from_secs(5));
    }
    wait_for("a connection slot", || s.get("/healthz", None).0 == 200);
    let (_, m) = s.get("/metrics", None);
    assert!(
        m.as_str()
            .unwrap()
            .contains("leadgate_connections_refused_total 1"),
        "{m}"
    );
}

#[test]
fn three_kills_during_idempotent_posts_lose_nothing_acknowledged_and_duplicate_nothing() {
    let crm = FakeCrm::start();
    let dir = setup(&crm.url, "");
    let acme = key(dir.path(), "acme");
    // 90 requests of 3 leads, each lead a person of its own.
    let requests = lead_requests(90, 3, "drill");
    let acked = Arc::new(Mutex::new(std::collections::BTreeSet::<usize>::new()));
    // Three kills, each after a different number of answers: early, mid,
    // late in a round.
    for (round, kill_after) in [3usize, 12, 25].into_iter().enumerate() {
        let s = Server::start(leadgate(dir.path()));
        let answered = Arc::new(Mutex::new(0usize));
        let clients: Vec<_> = (0..3)
            .map(|c| {
                let todo: Vec<usize> = (0..requests.len())
                    .filter(|r| r % 3 == c && !acked.lock().unwrap().contains(r))
                    .collect();
                let reqs = requests.clone();
                let (url, key, acked, answered) =
                    (s.url.clone(), acme.clone(), acked.clone(), answered.clone());
                std::thread::spawn(move || {
                    for r in todo {
                        let (idem, body) = &reqs[r];
                        let Some(status) = send_leads(&url, &key, idem, body) else {
                            return; // killed
                        };
                        if status == 200 || status == 202 {
                            acked.lock().unwrap().insert(r);
                        }
                        *answered.lock().unwrap() += 1;
                    }
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        while *answered.lock().unwrap() < kill_after && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        s.crash();
        for c in clients {
            c.join().unwrap();
        }
        assert!(
            !acked.lock().unwrap().is_empty(),
            "round {round}: nothing was answered before the kill"
        );
    }
    // Restarted: what was logged is finished; every acknowledged request's
    // leads are stored, none twice.
    let s = Server::start(leadgate(dir.path()));
    wait_for("requests left from the kills", || {
        sqlite(
            dir.path(),
            "SELECT count(*) FROM intake WHERE state = 'pending'",
        ) == 0
    });
    let emails = |dir: &Path| -> Vec<String> {
        if on_postgres() {
            let mut c = postgres::Client::connect(&location("s.db"), postgres::NoTls).unwrap();
            return c
                .query("SELECT raw::jsonb->>'email' FROM leads", &[])
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
        }
        let c = rusqlite::Connection::open(dir.join("s.db")).unwrap();
        let mut stmt = c
            .prepare("SELECT json_extract(raw, '$.email') FROM leads")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let stored = emails(dir.path());
    let unique: std::collections::BTreeSet<&String> = stored.iter().collect();
    assert_eq!(unique.len(), stored.len(), "a lead stored twice");
    for r in acked.lock().unwrap().iter() {
        for i in 0..3 {
            let e = format!("p{r}-{i}@drill{r}.com");
            assert!(unique.contains(&e), "acknowledged lead {e} was lost");
        }
    }
    // Every lead stored belongs to a request that was sent.
    assert!(stored.iter().all(|e| e.contains("@drill")));
    // The clients send everything again with the same keys: exactly one
    // of each lead, the acknowledged ones answered as before.
    resend_all(&s, &acme, dir.path(), &requests);
    let stored = emails(dir.path());
    let unique: std::collections::BTreeSet<&String> = stored.iter().collect();
    assert_eq!(stored.len(), 270);
    assert_eq!(unique.len(), 270);
    assert_eq!(sqlite(dir.path(), "SELECT count(*) FROM intake"), 90);
    drop(s);
    if on_postgres() {
        return;
    }
    let c = rusqlite::Connection::open(dir.path().join("s.db")).unwrap();
    let check: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

const ROUTING: &str = r#"
[enrich]
enabled = false
[routing]
enabled = true
default_team = "sales"
[routing.teams.sales]
[routing.sla]
default_minutes = 60
minutes = {}
[[routing.reps]]
id = "ana"
teams = ["sales"]
crm_owner_id = "501"
[[routing.reps]]
id = "bo"
teams = ["sales"]
crm_owner_id = "502"
"#;

fn put(s: &Server, path: &str, key: &str, body: &str) -> (u16, serde_json::Value) {
    let r = Server::agent()
        .put(format!("{}{path}", s.url))
        .header("Authorization", format!("Bearer {key}"))
        .header("Content-Type", "application/json")
        .send(body)
        .unwrap();
    let (status, _, body) = common::core::answer(r);
    (status, body)
}

#[test]
fn qualified_leads_get_an_owner_the_crm_sees_and_reps_change_without_a_restart() {
    let crm = FakeCrm::start();
    let dir = setup(&crm.url, ROUTING);
    let s = Server::start(leadgate(dir.path()));
    let k = key(dir.path(), "acme");
    let auth = format!("Bearer {k}");
    let h = [("Authorization", auth.as_str())];
    // Who would get a lead, asked before any is routed.
    let (status, _, dry) = s.post(
        "/v1/route/dry-run",
        &h,
        r#"{"lead": {"country": "US", "grade": "A"}}"#,
    );
    assert_eq!(status, 200, "{dry}");
    assert_eq!(
        (dry["rep"].as_str(), dry["step"].as_str()),
        (Some("ana"), Some("default"))
    );
    // Two leads of two accounts: one each, in turn; the CRM gets the owner.
    let mut owners = Vec::new();
    // Of different companies: one account's leads go to its owner.
    let of = |email: &str, company: &str| {
        let mut l: serde_json::Value = serde_json::from_str(&lead(email)).unwrap();
        l["company"] = company.into();
        l.to_string()
    };
    for (email, company) in [
        ("ann@alpha-robotics.io", "Alpha Robotics"),
        ("bob@beta-robotics.io", "Beta Robotics"),
    ] {
        let (status, body) = s.post_leads(&k, None, &of(email, company));
        assert_eq!(status, 200, "{body}");
        let id = body["results"][0]["lead_id"].as_str().unwrap().to_string();
        let (_, l) = s.get(&format!("/v1/leads/{id}"), Some(&k));
        let current = &l["assignment"]["current"];
        assert_eq!(current["state"], "open", "{l}");
        assert!(
            current["explanation"]["rule"]
                .as_str()
                .unwrap()
                .contains("default team"),
            "{l}"
        );
        owners.push((email, id, current["rep"].as_str().unwrap().to_string()));
    }
    assert_eq!(owners[0].2, "ana", "the dry run's answer");
    assert_eq!(owners[1].2, "bo");
    wait_for("owners in the CRM", || {
        let st = crm.state.lock().unwrap();
        owners.iter().all(|(email, _, rep)| {
            let want = if rep == "ana" { "501" } else { "502" };
            st.upserted
                .get(*email)
                .is_some_and(|p| p["hubspot_owner_id"] == want)
        })
    });
    // A rep added and two away over the API: the next lead goes to the new one.
    let (status, body) = put(
        &s,
        "/v1/reps/cy",
        &k,
        r#"{"teams": ["sales"], "crm_owner_id": "503", "timezone": "Europe/Paris"}"#,
    );
    assert_eq!(
        (status, body["created"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    for rep in ["ana", "bo"] {
        let (status, _, body) = s.post(&format!("/v1/reps/{rep}/away"), &h, "");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["away"], true);
    }
    let (_, body) = s.post_leads(&k, None, &of("cyd@gamma-robotics.io", "Gamma Robotics"));
    let cyd = body["results"][0]["lead_id"].as_str().unwrap().to_string();
    let (_, l) = s.get(&format!("/v1/leads/{cyd}"), Some(&k));
    assert_eq!(l["assignment"]["current"]["rep"], "cy", "{l}");
    let skipped: Vec<&str> = l["assignment"]["current"]["explanation"]["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["outcome"] == "away")
        .map(|c| c["rep"].as_str().unwrap())
        .collect();
    assert_eq!(skipped, ["ana", "bo"]);
    let (status, _, _) = s.post("/v1/reps/ana/back", &h, "");
    assert_eq!(status, 200);
    // The first touch: over the API, or a reply event.
    let (status, _, t) = s.post(&format!("/v1/leads/{}/touch", owners[0].1), &h, "");
    assert_eq!(
        (status, t["within_sla"].as_bool()),
        (200, Some(true)),
        "{t}"
    );
    let (status, _, t) = s.post(&format!("/v1/leads/{}/touch", owners[0].1), &h, "");
    assert_eq!(
        (status, t["error"]["code"].as_str()),
        (409, Some("lead.not_awaiting_touch"))
    );
    let reply = format!(
        r#"[{{"id": "r-1", "type": "reply", "at": "{}", "email": "{}"}}]"#,
        leadgate_routing::format_time(now_ms()),
        owners[1].0
    );
    let (status, _, body) = s.post("/v1/events", &h, &reply);
    assert_eq!(status, 200, "{body}");
    let (_, l) = s.get(&format!("/v1/leads/{}", owners[1].1), Some(&k));
    assert_eq!(l["assignment"]["current"]["state"], "touched", "{l}");
    // Or a rep's activity the CRM reports: HubSpot's "last contacted" set
    // on the contact leadgate created. Other properties and contacts are
    // answered and ignored; a redelivery touches nothing twice.
    wait_for("cyd's contact", || {
        let (_, l) = s.get(&format!("/v1/leads/{cyd}"), Some(&k));
        l["crm"]
            .as_array()
            .is_some_and(|h| h.iter().any(|h| h["state"] == "delivered"))
    });
    let contact = crm.state.lock().unwrap().records["cyd@gamma-robotics.io"].clone();
    let (_, l) = s.get(&format!("/v1/leads/{cyd}"), Some(&k));
    let assigned_at = l["assignment"]["current"]["assigned_at"].as_i64().unwrap();
    let touched_at = now_ms().max(assigned_at + 1);
    let changes = serde_json::json!([
        {"eventId": 9100, "subscriptionType": "contact.propertyChange", "objectId": contact.parse::<u64>().unwrap(),
         "propertyName": "notes_last_contacted", "propertyValue": (assigned_at - 1).to_string(), "occurredAt": touched_at},
        {"eventId": 9101, "subscriptionType": "contact.propertyChange", "objectId": contact.parse::<u64>().unwrap(),
         "propertyName": "firstname", "propertyValue": "Cyd", "occurredAt": touched_at},
        {"eventId": 9102, "subscriptionType": "contact.propertyChange", "objectId": contact.parse::<u64>().unwrap(),
         "propertyName": "notes_last_contacted", "propertyValue": touched_at.to_string(), "occurredAt": touched_at + 5},
        {"eventId": 9103, "subscriptionType": "contact.propertyChange", "objectId": 987654,
         "propertyName": "notes_last_contacted", "propertyValue": touched_at.to_string(), "occurredAt": touched_at},
    ])
    .to_string();
    let path = "/v1/webhooks/acme/hubspot";
    let uri = format!("{}{path}", s.url);
    let hubspot = |body: &str| {
        let (sig, ts) = hubspot_headers(&uri, body, now_ms(), HUBSPOT_SECRET);
        s.post(
            path,
            &[
                ("X-HubSpot-Signature-v3", sig.as_str()),
                ("X-HubSpot-Request-Timestamp", ts.as_str()),
            ],
            body,
        )
    };
    let (status, _, out) = hubspot(&changes);
    assert_eq!(status, 200, "{out}");
    let events = out["events"].as_array().unwrap();
    assert_eq!(
        events[0]["ignored"], "the activity predates the lead's current assignment",
        "{out}"
    );
    let events = &events[1..];
    assert!(
        events[0]["ignored"]
            .as_str()
            .unwrap()
            .contains("touch_properties"),
        "{out}"
    );
    assert_eq!(
        (events[1]["lead_id"].as_str(), events[1]["rep"].as_str()),
        (Some(cyd.as_str()), Some("cy")),
        "{out}"
    );
    assert_eq!(
        events[1]["touched_at"], touched_at,
        "the property's time: {out}"
    );
    assert!(
        events[2]["ignored"].as_str().unwrap().contains("no lead"),
        "{out}"
    );
    let (_, l) = s.get(&format!("/v1/leads/{cyd}"), Some(&k));
    assert_eq!(
        (
            l["assignment"]["current"]["state"].as_str(),
            l["assignment"]["current"]["touched_at"].as_i64()
        ),
        (Some("touched"), Some(touched_at)),
        "{l}"
    );
    let (status, _, again) = hubspot(&changes);
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        again["events"][2]["ignored"], "the lead has no assignment awaiting a first touch",
        "{again}"
    );
    // The reps with their load, and the gauges.
    let (status, reps) = s.get("/v1/reps", Some(&k));
    assert_eq!(status, 200);
    let totals: Vec<(String, i64)> = reps["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["assigned_total"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        totals,
        [("ana".into(), 1), ("bo".into(), 1), ("cy".into(), 1)]
    );
    let (_, metrics) = s.get("/metrics", None);
    let m = metrics.as_str().unwrap();
    assert!(
        m.contains("leadgate_rep_share{tenant=\"acme\",rep=\"cy\"}"),
        "{m}"
    );
    assert!(
        m.contains("leadgate_assignments_total{tenant=\"acme\",outcome=\"default\"} 3"),
        "{m}"
    );
    // Refusals name the field.
    let (status, body) = put(&s, "/v1/reps/dee", &k, r#"{"teams": ["nowhere"]}"#);
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("teams")),
        "{body}"
    );
    let (status, body) = put(&s, "/v1/reps/dee", &k, r#"{"id": "eve"}"#);
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("id")),
        "{body}"
    );
    let (status, _, body) = s.post("/v1/route/dry-run", &h, "{}");
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("lead_id")),
        "{body}"
    );
    let (status, _, body) = s.post("/v1/leads/nope/touch", &h, "");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("lead.not_found"))
    );
    let (status, _, body) = s.post("/v1/reps/ghost/away", &h, "");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("rep.not_found"))
    );
}

/// A Slack-shaped receiver on loopback for the notifier: it keeps every
/// message it accepted with its `Idempotency-Key` (webhooks send one,
/// Slack webhooks none), taking 100 ms over each so that a stop lands
/// while messages are on their way.
type Received = Arc<Mutex<Vec<(Option<String>, serde_json::Value)>>>;

struct FakeSlack {
    url: String,
    got: Received,
    _runtime: tokio::runtime::Runtime,
}

impl FakeSlack {
    fn start() -> FakeSlack {
        use axum::extract::State;
        use axum::http::HeaderMap;
        async fn hook(
            State(st): State<Received>,
            headers: HeaderMap,
            body: String,
        ) -> &'static str {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let key = headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            st.lock()
                .unwrap()
                .push((key, serde_json::from_str(&body).unwrap()));
            "ok"
        }
        let got: Received = Arc::default();
        let server = common::Loopback::bind();
        let url = server.url.clone();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(got.clone());
        FakeSlack {
            url,
            got,
            _runtime: server.serve(app),
        }
    }

    /// The lead of each message: Slack's (no key) and the webhook's.
    fn leads(&self) -> (Vec<String>, Vec<(String, String)>) {
        let got = self.got.lock().unwrap();
        let mut slack = Vec::new();
        let mut hook = Vec::new();
        for (key, v) in got.iter() {
            match key {
                None => {
                    let text = v["blocks"][1]["text"]["text"].as_str().unwrap();
                    let lead = text.split("lead ").nth(1).unwrap();
                    slack.push(lead.split_whitespace().next().unwrap().to_string());
                }
                Some(k) => hook.push((
                    v["alerts"][0]["labels"]["lead"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                    k.clone(),
                )),
            }
        }
        (slack, hook)
    }
}

#[test]
fn alerts_reach_slack_and_a_webhook_once_across_a_restart_and_a_crash() {
    let crm = FakeCrm::start();
    let slack = FakeSlack::start();
    // Routing on and no reps: every qualified lead waits in the queue,
    // and its `routing.queued` alert goes to Slack and to a webhook.
    let alerts = format!(
        r#"
[enrich]
enabled = false
[routing]
enabled = true
default_team = "sales"
[routing.teams.sales]
[alerts.destinations.team]
kind = "slack"
url = "{0}/hook"
min_interval_ms = 0
[alerts.destinations.ops]
kind = "webhook"
url = "{0}/hook"
[[alerts.routes]]
match = {{ kind = "routing.queued" }}
to = ["team", "ops"]
group_by = ["lead"]
group_wait_seconds = 0
"#,
        slack.url
    );
    let dir = setup(&crm.url, &alerts);
    let s = Server::start(leadgate(dir.path()));
    let k = key(dir.path(), "acme");
    let post = |s: &Server, tag: &str| {
        let leads: Vec<String> = (0..10)
            .map(|i| lead(&format!("{tag}{i}@queued-{tag}.io")))
            .collect();
        let (status, body) = s.post_leads(&k, None, &format!("[{}]", leads.join(",")));
        assert_eq!(status, 200, "{body}");
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["lead_id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let first = post(&s, "a");
    // A graceful stop while the messages go out, then a start.
    wait_for("the first messages", || {
        slack.got.lock().unwrap().len() >= 4
    });
    let pid = s.child.id().to_string();
    let stopped = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(stopped.success());
    let mut s = s;
    let exit = s.child.wait().unwrap();
    assert!(exit.success(), "{exit:?}: {}", s.logs());
    drop(s);
    let s = Server::start(leadgate(dir.path()));
    wait_for("every lead on Slack and the webhook", || {
        let (sl, hk) = slack.leads();
        first
            .iter()
            .all(|l| sl.contains(l) && hk.iter().any(|(h, _)| h == l))
    });
    std::thread::sleep(Duration::from_millis(1_500));
    let (sl, hk) = slack.leads();
    for l in &first {
        assert_eq!(
            sl.iter().filter(|x| *x == l).count(),
            1,
            "{l} on Slack: {sl:?}"
        );
        assert_eq!(
            hk.iter().filter(|(x, _)| x == l).count(),
            1,
            "{l} on the webhook"
        );
    }
    // A crash (no graceful stop) while messages go out: every lead still
    // arrives; a message can only come twice if it was in flight at the
    // crash (one per destination at most), and then with the same key.
    let before = slack.got.lock().unwrap().len();
    let second = post(&s, "b");
    wait_for("messages of the second batch", || {
        slack.got.lock().unwrap().len() >= before + 3
    });
    s.crash();
    let s = Server::start(leadgate(dir.path()));
    wait_for("every lead of the second batch", || {
        let (sl, hk) = slack.leads();
        second
            .iter()
            .all(|l| sl.contains(l) && hk.iter().any(|(h, _)| h == l))
    });
    std::thread::sleep(Duration::from_millis(1_500));
    let (sl, hk) = slack.leads();
    let twice = |v: &[String]| v.len() - v.iter().collect::<std::collections::BTreeSet<_>>().len();
    assert!(twice(&sl) <= 1, "{sl:?}");
    let keys: Vec<String> = hk.iter().map(|(_, k)| k.clone()).collect();
    assert!(twice(&keys) <= 1, "{keys:?}");
    let distinct: std::collections::BTreeSet<(String, String)> = hk.iter().cloned().collect();
    assert_eq!(distinct.len(), 20, "one key per lead: {hk:?}");
    // The outbox and the alerts agree.
    let (status, body) = s.get("/v1/notifications?state=sent&limit=1000", Some(&k));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"].as_array().unwrap().len(), 40, "{body}");
    let (_, alerts) = s.get("/v1/alerts?limit=1000", Some(&k));
    let queued: Vec<&serde_json::Value> = alerts["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "routing.queued")
        .collect();
    assert_eq!(queued.len(), 20);
    assert!(queued.iter().all(|a| a["state"] == "routed"), "{alerts}");
    // A silence over the API mutes the next ones.
    let auth = format!("Bearer {k}");
    let h = [("Authorization", auth.as_str())];
    let (status, _, silence) = s.post(
        "/v1/silences",
        &h,
        r#"{"matchers": {"kind": "routing.*"}, "duration": "1h", "comment": "queue known", "created_by": "ops"}"#,
    );
    assert_eq!(status, 201, "{silence}");
    assert_eq!(silence["state"], "active");
    let (status, _, refused) = s.post(
        "/v1/silences",
        &h,
        r#"{"matchers": {"kind": "*"}, "duration": "1h", "comment": "all", "created_by": "ops"}"#,
    );
    assert_eq!(
        (status, refused["error"]["field"].as_str()),
        (422, Some("matchers")),
        "{refused}"
    );
    let received = slack.got.lock().unwrap().len();
    let third = post(&s, "c");
    wait_for("the third batch's alerts filed", || {
        let (_, alerts) = s.get("/v1/alerts?limit=1000", Some(&k));
        alerts["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| third.iter().any(|l| a["subject"] == l.as_str()))
            .filter(|a| a["state"] == "silenced")
            .count()
            == third.len()
    });
    let (status, list) = s.get("/v1/silences", Some(&k));
    assert_eq!(status, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(
        slack.got.lock().unwrap().len(),
        received,
        "silenced: nothing sent"
    );
}

#[test]
fn rules_run_in_the_service_and_deliver_each_action_once_across_a_crash() {
    let crm = FakeCrm::start();
    let receiver = FakeSlack::start();
    let extra = format!(
        r#"
[enrich]
enabled = false
[rules]
files = ["rules.toml"]
sequence_url = "{}/hook"
"#,
        receiver.url
    );
    let dir = setup(&crm.url, &extra);
    std::fs::write(
        dir.path().join("rules.toml"),
        r#"[[rule]]
id = "pricing-view"
trigger = { on = "event", events = ["page_view"], categories = ["pricing"], lateness = "7d" }
actions = [
  { type = "sequence", sequence = "welcome" },
  { type = "alert", message = "looked at pricing" },
]

[[rule]]
id = "new-opportunity"
trigger = { on = "stage_changed", to = ["opportunity"] }
actions = [{ type = "review", reason = "a new opportunity" }]
"#,
    )
    .unwrap();
    let s = Server::start(leadgate(dir.path()));
    let k = key(dir.path(), "acme");
    let auth = format!("Bearer {k}");
    let post_leads = |s: &Server, tag: &str, n: usize| -> Vec<(String, String)> {
        let emails: Vec<String> = (0..n).map(|i| format!("{tag}{i}@rules-{tag}.io")).collect();
        let body: Vec<String> = emails.iter().map(|e| lead(e)).collect();
        let (status, r) = s.post_leads(&k, None, &format!("[{}]", body.join(",")));
        assert_eq!(status, 200, "{r}");
        r["results"]
            .as_array()
            .unwrap()
            .iter()
            .zip(emails)
            .map(|(x, e)| (x["lead_id"].as_str().unwrap().to_string(), e))
            .collect()
    };
    let views = |leads: &[(String, String)], idem: &str| {
        let now = now_ms();
        let events: Vec<String> = leads
            .iter()
            .map(|(_, e)| {
                format!(r#"{{"id": "v-{e}", "type": "page_view", "at": {}, "email": "{e}", "url": "https://x.io/pricing"}}"#, now - 60_000)
            })
            .collect();
        (format!("[{}]", events.join(",")), idem.to_string())
    };
    let send = |s: &Server, (body, idem): (String, String)| {
        let (status, _, r) = s.post(
            "/v1/events",
            &[
                ("Authorization", auth.as_str()),
                ("Idempotency-Key", idem.as_str()),
            ],
            &body,
        );
        assert_eq!(status, 200, "{r}");
    };
    let sequenced = || -> Vec<(String, String)> {
        receiver
            .got
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, v)| v["event"] == "rule.sequence")
            .map(|(key, v)| {
                (
                    v["lead_id"].as_str().unwrap().to_string(),
                    key.clone().unwrap_or_default(),
                )
            })
            .collect()
    };
    let first = post_leads(&s, "a", 3);
    send(&s, views(&first, "views-1"));
    let stage = format!(
        r#"{{"id": "st-1", "type": "stage_change", "stage": "opportunity", "at": {}, "email": "{}"}}"#,
        now_ms() - 1_000,
        first[0].1
    );
    send(&s, (stage, "stage-1".into()));
    wait_for("the first sequences", || {
        let got = sequenced();
        first.iter().all(|(l, _)| got.iter().any(|(x, _)| x == l))
    });
    // The lead lists what fired for it and why.
    let (status, shown) = s.get(&format!("/v1/leads/{}", first[0].0), Some(&k));
    assert_eq!(status, 200, "{shown}");
    wait_for("the review action done", || {
        let (_, shown) = s.get(&format!("/v1/leads/{}", first[0].0), Some(&k));
        shown["rules"]["fired"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["rule"] == "new-opportunity" && f["actions"][0]["state"] == "done")
    });
    let (_, shown) = s.get(&format!("/v1/leads/{}", first[0].0), Some(&k));
    assert_eq!(shown["rules"]["stage"]["stage"], "opportunity", "{shown}");
    let run = shown["rules"]["fired"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "pricing-view")
        .unwrap()
        .clone();
    assert_eq!(run["actions"][0]["type"], "sequence", "{run}");
    // The same events again, under another request key: nothing new.
    send(&s, views(&first, "views-1-again"));
    std::thread::sleep(Duration::from_millis(1_500));
    let got = sequenced();
    assert_eq!(got.len(), 3, "{got:?}");
    // A crash while sequences go out: every lead's arrives; one can only
    // come twice if it was in flight at the crash, with the same key.
    let second = post_leads(&s, "b", 8);
    send(&s, views(&second, "views-2"));
    wait_for("some sequences of the second batch", || {
        let got = sequenced();
        second.iter().any(|(l, _)| got.iter().any(|(x, _)| x == l))
    });
    s.crash();
    let s = Server::start(leadgate(dir.path()));
    wait_for("every sequence of the second batch", || {
        let got = sequenced();
        second.iter().all(|(l, _)| got.iter().any(|(x, _)| x == l))
    });
    std::thread::sleep(Duration::from_millis(1_500));
    let got = sequenced();
    let keys: Vec<&String> = got.iter().map(|(_, k)| k).collect();
    let distinct: std::collections::BTreeSet<&String> = keys.iter().copied().collect();
    assert_eq!(distinct.len(), 11, "one key per lead: {got:?}");
    assert!(keys.len() - distinct.len() <= 1, "{got:?}");
    assert!(
        keys.iter()
            .all(|k| k.starts_with("leadgate:acme:pricing-view:")),
        "{keys:?}"
    );
    // Changed documents are read again while the service runs: a rule
    // changed without a new version is refused (the rules before go on),
    // a new version and a new rule take over.
    let rules = std::fs::read_to_string(dir.path().join("rules.toml")).unwrap();
    let won = "\n[[rule]]\nid = \"won\"\ntrigger = { on = \"stage_changed\", to = [\"customer\"] }\nactions = [{ type = \"alert\", message = \"won\" }]\n";
    let in_place = rules.replace("looked at pricing", "looked at pricing again");
    std::fs::write(dir.path().join("rules.toml"), format!("{in_place}{won}")).unwrap();
    wait_for("the refusal", || s.logs().contains("without a new version"));
    let bumped = in_place.replace(
        "id = \"pricing-view\"",
        "id = \"pricing-view\"\nversion = 2",
    );
    std::fs::write(dir.path().join("rules.toml"), format!("{bumped}{won}")).unwrap();
    wait_for("the rules read again", || {
        s.logs().contains("workflow rules read again")
    });
    let stage = format!(
        r#"{{"id": "st-2", "type": "stage_change", "stage": "customer", "at": {}, "email": "{}"}}"#,
        now_ms() - 500,
        first[1].1
    );
    send(&s, (stage, "stage-2".into()));
    wait_for("the new rule fired", || {
        let (_, shown) = s.get(&format!("/v1/leads/{}", first[1].0), Some(&k));
        shown["rules"]["fired"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["rule"] == "won" && f["actions"][0]["state"] == "done")
    });
    drop(s);
}
