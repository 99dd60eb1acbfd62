//! The notifier end to end on a real store, with real HTTP and SMTP on
//! loopback: a fake Slack that answers 429 with `Retry-After` and 500s, a
//! webhook receiver, and an SMTP sink. The clock is injected: every pass
//! is given its time.

#![allow(clippy::unwrap_used)]

use leadgate_service::notifier::{self, NewSilence, Notifier};
use leadgate_store::Store;
use leadgate_store::prelude::*;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// What the fake Slack and webhook receiver saw.
#[derive(Default)]
struct Seen {
    /// Every request: path, status answered, body.
    requests: Vec<(String, u16, serde_json::Value)>,
    /// The webhook's requests: idempotency key, signature, raw body.
    webhook_headers: Vec<(String, Option<String>, String)>,
    /// Statuses to answer next on `/hook` (200 when empty).
    script: VecDeque<u16>,
}

struct Fake {
    url: String,
    seen: Arc<Mutex<Seen>>,
    _runtime: tokio::runtime::Runtime,
}

impl Fake {
    fn start() -> Fake {
        use axum::extract::State;
        use axum::http::HeaderMap;
        use axum::response::IntoResponse;
        use axum::routing::post;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Seen::default()));
        type St = Arc<Mutex<Seen>>;
        async fn hook(State(st): State<St>, body: String) -> axum::response::Response {
            let mut s = st.lock().unwrap();
            let status = s.script.pop_front().unwrap_or(200);
            let v = serde_json::from_str(&body).unwrap_or_default();
            s.requests.push(("/hook".into(), status, v));
            match status {
                429 => (
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    [("Retry-After", "7")],
                    "rate_limited",
                )
                    .into_response(),
                200 => "ok".into_response(),
                other => (
                    axum::http::StatusCode::from_u16(other).unwrap(),
                    "invalid_blocks",
                )
                    .into_response(),
            }
        }
        async fn api(State(st): State<St>, body: String) -> axum::response::Response {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            st.lock().unwrap().requests.push(("/api".into(), 200, v));
            axum::Json(serde_json::json!({"ok": true})).into_response()
        }
        async fn ops(State(st): State<St>, headers: HeaderMap, body: String) -> &'static str {
            let mut s = st.lock().unwrap();
            let h = |k: &str| {
                headers
                    .get(k)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let seen = (
                h("idempotency-key").unwrap_or_default(),
                h("x-leadgate-signature"),
                body.clone(),
            );
            s.webhook_headers.push(seen);
            s.requests.push((
                "/ops".into(),
                200,
                serde_json::from_str(&body).unwrap_or_default(),
            ));
            "ok"
        }
        let app = axum::Router::new()
            .route("/hook", post(hook))
            .route("/api/chat.postMessage", post(api))
            .route("/ops", post(ops))
            .with_state(seen.clone());
        runtime.spawn(async move { axum::serve(listener, app).await });
        Fake {
            url,
            seen,
            _runtime: runtime,
        }
    }

    fn sent(&self, path: &str) -> Vec<serde_json::Value> {
        self.seen
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|(p, status, _)| p == path && *status == 200)
            .map(|(_, _, v)| v.clone())
            .collect()
    }

    fn attempts(&self, path: &str) -> usize {
        let s = self.seen.lock().unwrap();
        s.requests.iter().filter(|(p, _, _)| p == path).count()
    }
}

/// A minimal SMTP server: accepts every message and keeps its data.
fn smtp_sink() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mail = Arc::new(Mutex::new(Vec::new()));
    let kept = mail.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mail = kept.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let _ = conn.write_all(b"220 sink ESMTP\r\n");
                let mut data: Option<String> = None;
                let mut line = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    if let Some(d) = data.as_mut() {
                        if line == ".\r\n" {
                            mail.lock().unwrap().push(data.take().unwrap());
                            let _ = conn.write_all(b"250 queued\r\n");
                        } else {
                            d.push_str(&line);
                        }
                        continue;
                    }
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-sink\r\n250 8BITMIME\r\n",
                        "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 ok\r\n",
                        "DATA" => {
                            data = Some(String::new());
                            b"354 go ahead\r\n"
                        }
                        "QUIT" => {
                            let _ = conn.write_all(b"221 bye\r\n");
                            break;
                        }
                        _ => b"502 not here\r\n",
                    };
                    let _ = conn.write_all(reply);
                }
            });
        }
    });
    (port, mail)
}

const MIN: i64 = 60_000;
const T0: i64 = 1_796_000_000_000;

struct Setup {
    _dir: tempfile::TempDir,
    config: leadgate_pipeline::config::Config,
    store: Store,
    fake: Fake,
    mail: Arc<Mutex<Vec<String>>>,
}

fn setup(extra: &str) -> Setup {
    let fake = Fake::start();
    let (smtp_port, mail) = smtp_sink();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r##"
tenant = "acme"
[store]
path = "n.db"

[alerts]
link = "https://leadgate.test/leads/{{lead}}"
[alerts.smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
from = "leadgate <alerts@leadgate.test>"
[alerts.destinations.team]
kind = "slack"
url = "{url}/hook"
[alerts.destinations.dm]
kind = "slack"
token_env = "NOTIFIER_TEST_SLACK_TOKEN"
api_url = "{url}/api"
channel = "owner"
fallback = "sales"
[alerts.destinations.sales]
kind = "slack"
token_env = "NOTIFIER_TEST_SLACK_TOKEN"
api_url = "{url}/api"
channel = "C0SALES"
[alerts.destinations.ops]
kind = "webhook"
url = "{url}/ops"
secret_env = "NOTIFIER_TEST_SECRET"
[alerts.destinations.mail]
kind = "email"
to = ["ops@leadgate.test"]
{extra}
"##,
        url = fake.url
    );
    std::fs::write(dir.path().join("leadgate.toml"), text).unwrap();
    let config =
        leadgate_pipeline::config::Config::load(Some(&dir.path().join("leadgate.toml"))).unwrap();
    let store = Store::open(dir.path().join("n.db").to_str().unwrap()).unwrap();
    Setup {
        _dir: dir,
        config,
        store,
        fake,
        mail,
    }
}

fn raise(s: &Setup, kind: &str, lead: &str, extra: &[(&str, &str)], at: i64) -> i64 {
    let mut labels = serde_json::json!({"kind": kind, "lead": lead});
    for (k, v) in extra {
        labels[*k] = (*v).into();
    }
    s.store
        .raise_alert(
            "acme",
            kind,
            lead,
            &labels.to_string(),
            &format!("{kind} for {lead}"),
            at,
        )
        .unwrap()
}

fn alert_state(s: &Setup, id: i64) -> String {
    s.store
        .alerts("acme", 1_000)
        .unwrap()
        .into_iter()
        .find(|a| a.id == id)
        .unwrap()
        .state
}

/// The secrets the destinations name, as the environment would give them.
fn secrets(name: &str) -> Option<String> {
    match name {
        "NOTIFIER_TEST_SLACK_TOKEN" => Some("xoxb-test".into()),
        "NOTIFIER_TEST_SECRET" => Some("s3cret".into()),
        _ => None,
    }
}

fn notifier_of(s: &Setup) -> Notifier {
    let transport = leadgate_notify::Transport::new(&s.config.alerts).with_env(secrets);
    Notifier::with_transport(&s.config, Box::new(transport)).unwrap()
}

fn pass(s: &mut Setup, n: &Notifier, at: i64) -> notifier::Pass {
    n.pass(&s.config, &mut s.store, at).unwrap()
}

const TEAM_ROUTE: &str = r#"
[[alerts.routes]]
name = "team"
match = { kind = "routing.*" }
to = ["team"]
group_by = ["kind"]
group_wait_seconds = 30
group_interval_seconds = 300
repeat_interval_seconds = 3600
"#;

#[test]
fn alerts_are_grouped_retried_through_429_and_500_and_sent_once() {
    let mut s = setup(TEAM_ROUTE);
    let n = Notifier::open(&s.config).unwrap().unwrap();
    s.fake.seen.lock().unwrap().script = [429, 500].into();
    let ids: Vec<i64> = (1..=3)
        .map(|i| raise(&s, "routing.queued", &format!("L{i}"), &[], T0))
        .collect();
    let p = pass(&mut s, &n, T0);
    assert_eq!((p.routed, p.queued), (3, 0), "the group waits");
    // After the group wait: one message for the three.
    let p = pass(&mut s, &n, T0 + 31_000);
    assert_eq!((p.queued, p.retried, p.sent), (1, 1, 0), "429 first");
    // The 429 asked for 7 s: nothing is tried before.
    let p = pass(&mut s, &n, T0 + 33_000);
    assert_eq!((p.sent, p.retried), (0, 0));
    assert_eq!(s.fake.attempts("/hook"), 1);
    let p = pass(&mut s, &n, T0 + 40_000);
    assert_eq!(p.retried, 1, "then 500");
    // The backoff after the second attempt is at most 4 s.
    let p = pass(&mut s, &n, T0 + 45_000);
    assert_eq!(p.sent, 1);
    for later in [T0 + 50_000, T0 + 10 * MIN] {
        let p = pass(&mut s, &n, later);
        assert_eq!(p.sent, 0, "sent once");
    }
    let sent = s.fake.sent("/hook");
    assert_eq!(sent.len(), 1);
    assert_eq!(s.fake.attempts("/hook"), 3);
    let msg = &sent[0];
    assert_eq!(msg["text"], "3 alerts: routing.queued");
    let blocks = msg["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    // header, three alerts, context
    assert_eq!(blocks.len(), 5, "{msg}");
    assert_eq!(
        blocks[1]["accessory"]["url"],
        "https://leadgate.test/leads/L1"
    );
    for id in ids {
        assert_eq!(alert_state(&s, id), "routed");
    }
    let rows = s.store.notifications("acme", Some("sent"), 10).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].attempts, 3);
    assert!(
        rows[0].idem_key.starts_with("acme:team:team::"),
        "{}",
        rows[0].idem_key
    );
}

#[test]
fn the_same_alert_is_repeated_only_after_the_repeat_interval() {
    let mut s = setup(TEAM_ROUTE);
    let n = Notifier::open(&s.config).unwrap().unwrap();
    raise(&s, "routing.queued", "L1", &[], T0);
    pass(&mut s, &n, T0);
    assert_eq!(pass(&mut s, &n, T0 + 31_000).sent, 1);
    // Raised again (same labels) within the hour: not sent again.
    let again = raise(&s, "routing.queued", "L1", &[], T0 + 10 * MIN);
    pass(&mut s, &n, T0 + 10 * MIN);
    assert_eq!(alert_state(&s, again), "deduplicated");
    // Another lead's is new, and waits for the group interval (5 min after
    // the last message, already past): it goes after its group wait.
    let other = raise(&s, "routing.queued", "L2", &[], T0 + 10 * MIN);
    pass(&mut s, &n, T0 + 10 * MIN);
    assert_eq!(alert_state(&s, other), "routed");
    assert_eq!(pass(&mut s, &n, T0 + 10 * MIN + 31_000).sent, 1);
    // After the repeat interval, L1's is sent again.
    let late = raise(&s, "routing.queued", "L1", &[], T0 + 70 * MIN);
    pass(&mut s, &n, T0 + 70 * MIN);
    assert_eq!(alert_state(&s, late), "routed");
    assert_eq!(pass(&mut s, &n, T0 + 71 * MIN).sent, 1);
    let texts: Vec<String> = s
        .fake
        .sent("/hook")
        .iter()
        .map(|m| m["blocks"][1]["text"]["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts.len(), 3);
    assert!(texts[0].contains("L1") && texts[1].contains("L2") && texts[2].contains("L1"));
}

#[test]
fn a_channel_gets_at_most_one_message_a_second() {
    let mut s = setup(
        r#"
[[alerts.routes]]
match = { kind = "routing.*" }
to = ["team"]
group_by = ["lead"]
group_wait_seconds = 1
"#,
    );
    let n = Notifier::open(&s.config).unwrap().unwrap();
    for i in 0..6 {
        raise(&s, "routing.queued", &format!("L{i}"), &[], T0);
    }
    pass(&mut s, &n, T0);
    // Six groups due at once; passes every 100 ms for 10 s.
    let mut sends = Vec::new();
    for step in 10..=100 {
        let at = T0 + step * 100;
        let p = pass(&mut s, &n, at);
        for _ in 0..p.sent {
            sends.push(at);
        }
    }
    assert_eq!(sends.len(), 6, "{sends:?}");
    for w in sends.windows(2) {
        assert!(w[1] - w[0] >= 1_000, "{sends:?}");
    }
}

#[test]
fn quiet_hours_hold_alerts_into_one_digest() {
    let mut s = setup(
        r#"
[[alerts.routes]]
match = { kind = "routing.*" }
to = ["team"]
group_by = ["kind"]
group_wait_seconds = 10
quiet_hours = "mon-sun 20:00-24:00, mon-sun 00:00-08:00"
timezone = "UTC"
"#,
    );
    let n = Notifier::open(&s.config).unwrap().unwrap();
    let night = leadgate_routing::parse_time("2026-12-07T22:00:00Z").unwrap();
    let morning = leadgate_routing::parse_time("2026-12-08T08:00:00Z").unwrap();
    raise(&s, "routing.queued", "L1", &[], night);
    pass(&mut s, &n, night);
    let p = pass(&mut s, &n, night + 20_000);
    assert_eq!((p.held, p.sent), (1, 0));
    // More arrive overnight; the group is already waiting for the morning.
    for (i, h) in [(2, 1), (3, 3), (4, 5)] {
        let at = night + h * 60 * MIN;
        raise(&s, "routing.sla_breach", &format!("L{i}"), &[], at);
        pass(&mut s, &n, at);
    }
    assert_eq!(pass(&mut s, &n, morning - 1).sent, 0);
    // Both groups (one per kind) were held; they flush when the quiet
    // hours end, one message each, a second apart on the one channel.
    let p = pass(&mut s, &n, morning);
    assert_eq!((p.queued, p.sent), (2, 1), "{p:?}");
    let p = pass(&mut s, &n, morning + 1_000);
    assert_eq!(p.sent, 1, "{p:?}");
    let sent = s.fake.sent("/hook");
    assert_eq!(sent.len(), 2);
    let titles: Vec<&str> = sent.iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert!(
        titles.contains(&"Digest: 1 alerts held through quiet hours (routing.queued)"),
        "{titles:?}"
    );
    assert!(
        titles.contains(&"Digest: 3 alerts held through quiet hours (routing.sla_breach)"),
        "{titles:?}"
    );
    // Nothing was sent during the night.
    assert_eq!(
        s.store
            .notifications("acme", None, 100)
            .unwrap()
            .iter()
            .filter(|r| r.created_at < morning)
            .count(),
        0
    );
}

#[test]
fn inhibition_silences_and_the_owners_dm() {
    let mut s = setup(
        r#"
[[alerts.routes]]
name = "hot"
match = { kind = "lead.hot" }
to = ["dm"]
group_by = ["lead"]
group_wait_seconds = 0
[[alerts.routes]]
name = "breaches"
match = { kind = "routing.sla_breach" }
to = ["team"]
group_wait_seconds = 0
[[alerts.inhibit]]
source = { kind = "routing.sla_breach" }
target = { kind = "lead.hot" }
equal = ["lead"]

[routing]
enabled = true
default_team = "sales"
[routing.teams.sales]
[[routing.reps]]
id = "ana"
teams = ["sales"]
slack_id = "U0ANA"
[[routing.reps]]
id = "cy"
teams = ["sales"]
"#,
    );
    leadgate_pipeline::assign::seed(&s.config, &mut s.store, T0).unwrap();
    let n = notifier_of(&s);
    // A rep with a Slack id gets hot leads in a DM; one without, in the
    // fallback destination's channel.
    let hot = raise(&s, "lead.hot", "L1", &[("rep", "ana")], T0);
    let hot_no_id = raise(&s, "lead.hot", "L5", &[("rep", "cy")], T0);
    let breach = raise(&s, "routing.sla_breach", "L2", &[("rep", "bo")], T0);
    let hot_breached = raise(&s, "lead.hot", "L2", &[("rep", "cy")], T0 + 1);
    let p = pass(&mut s, &n, T0 + 1);
    assert_eq!((p.routed, p.inhibited), (3, 1), "{p:?}");
    assert_eq!(alert_state(&s, hot_breached), "inhibited");
    for id in [hot, hot_no_id, breach] {
        assert_eq!(alert_state(&s, id), "routed");
    }
    pass(&mut s, &n, T0 + 2_000);
    pass(&mut s, &n, T0 + 4_000);
    // Ana's in her DM; L5's (cy has no Slack id) in the fallback's channel.
    let dm = s.fake.sent("/api");
    let mut got: Vec<(String, bool)> = dm
        .iter()
        .map(|m| {
            let text = m["text"].as_str().unwrap();
            (
                m["channel"].as_str().unwrap().to_string(),
                text.contains("L1"),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [("C0SALES".to_string(), false), ("U0ANA".to_string(), true)],
        "{dm:?}"
    );
    let sent = s.fake.sent("/hook");
    assert_eq!(sent.len(), 1, "the breach: {sent:?}");
    // A silence mutes what it matches.
    let silence = notifier::add_silence(
        &s.config,
        &mut s.store,
        &NewSilence {
            matchers: [("kind".to_string(), "routing.*".to_string())].into(),
            starts_at: None,
            ends_at: None,
            duration: Some("2h".into()),
            comment: "CRM migration".into(),
            created_by: "ana".into(),
        },
        T0 + 5_000,
    )
    .unwrap();
    assert_eq!(silence.state, "active");
    assert_eq!(silence.ends_at, T0 + 5_000 + 120 * MIN);
    let muted = raise(&s, "routing.sla_breach", "L3", &[], T0 + 6_000);
    pass(&mut s, &n, T0 + 6_000);
    assert_eq!(alert_state(&s, muted), "silenced");
    // Refusals name the field.
    for (bad, field) in [
        (
            r#"{"matchers": {}, "duration": "1h", "comment": "x", "created_by": "y"}"#,
            "matchers",
        ),
        (
            r#"{"matchers": {"kind": "*"}, "duration": "1h", "comment": "x", "created_by": "y"}"#,
            "matchers",
        ),
        (
            r#"{"matchers": {"kind": "a"}, "duration": "soon", "comment": "x", "created_by": "y"}"#,
            "duration",
        ),
        (
            r#"{"matchers": {"kind": "a"}, "ends_at": 5, "comment": "x", "created_by": "y"}"#,
            "ends_at",
        ),
        (
            r#"{"matchers": {"kind": "a"}, "duration": "1h", "comment": " ", "created_by": "y"}"#,
            "comment",
        ),
    ] {
        let new: NewSilence = serde_json::from_str(bad).unwrap();
        let e = notifier::add_silence(&s.config, &mut s.store, &new, T0).unwrap_err();
        match e.downcast_ref::<notifier::SilenceRefused>() {
            Some(notifier::SilenceRefused::Invalid { field: f, .. }) => {
                assert_eq!(*f, field, "{bad}")
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    notifier::expire_silence(&s.config, &mut s.store, silence.id, T0 + 7_000).unwrap();
    let after = raise(&s, "routing.sla_breach", "L4", &[], T0 + 8_000);
    pass(&mut s, &n, T0 + 8_000);
    assert_eq!(alert_state(&s, after), "routed");
}

#[test]
fn webhooks_are_signed_email_goes_through_smtp_and_refusals_are_not_retried() {
    let mut s = setup(
        r#"
[[alerts.routes]]
match = { kind = "handoff.dead" }
to = ["ops", "mail"]
group_wait_seconds = 0
[[alerts.routes]]
match = { kind = "review.*" }
to = ["team"]
group_wait_seconds = 0
"#,
    );
    let n = notifier_of(&s);
    // An alert raised without labels (as the review SLA raises them).
    s.store
        .add_alert(
            "acme",
            "handoff.dead",
            "L9",
            "lead L9 did not reach the CRM",
            T0,
        )
        .unwrap();
    // No group wait: filed, flushed and sent in one pass.
    let p = pass(&mut s, &n, T0);
    assert_eq!((p.routed, p.queued, p.sent), (1, 2, 2), "{p:?}");
    let ops = s.fake.sent("/ops");
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0]["alerts"][0]["labels"]["lead"], "L9");
    let (key, sig, raw) = s.fake.seen.lock().unwrap().webhook_headers[0].clone();
    assert!(key.starts_with("acme:route-1:ops::"), "{key}");
    assert!(
        leadgate_signature::leadgate_v1::verify(
            b"s3cret",
            raw.as_bytes(),
            sig.as_deref(),
            T0,
            300_000
        )
        .is_ok(),
        "{sig:?}"
    );
    let mail = s.mail.lock().unwrap().clone();
    assert_eq!(mail.len(), 1);
    // The lead is not in this store: the subject names it by id.
    assert!(
        mail[0].contains("Subject: [handoff.dead] L9"),
        "{}",
        mail[0]
    );
    assert!(
        mail[0].contains("Message-ID: <acme.route-1.mail"),
        "{}",
        mail[0]
    );
    // A 400 from Slack is a refusal: not retried, kept as failed.
    s.fake.seen.lock().unwrap().script = [400].into();
    s.store
        .add_alert(
            "acme",
            "review.escalated",
            "L8",
            "review item past its SLA",
            T0 + 2_000,
        )
        .unwrap();
    let p = pass(&mut s, &n, T0 + 2_000);
    assert_eq!(p.failed, 1, "{p:?}");
    let failed = s.store.notifications("acme", Some("failed"), 10).unwrap();
    assert!(
        failed[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("HTTP 400")
    );
    pass(&mut s, &n, T0 + 60_000);
    assert_eq!(s.fake.attempts("/hook"), 1);
    // Put back by hand, it goes.
    assert_eq!(
        s.store
            .retry_notifications("acme", &[], T0 + 61_000)
            .unwrap(),
        1
    );
    assert_eq!(pass(&mut s, &n, T0 + 61_000).sent, 1);
}

#[test]
fn a_restarted_notifier_sends_what_was_claimed_once() {
    let mut s = setup(TEAM_ROUTE);
    raise(&s, "routing.queued", "L1", &[], T0);
    let n = Notifier::open(&s.config).unwrap().unwrap();
    pass(&mut s, &n, T0);
    // The group flushes into the outbox, and the host stops before the
    // notification is sent: it was claimed, not sent.
    let claim = leadgate_service::claim(&s.config.serve);
    let groups = s
        .store
        .claim_due_groups("acme", claim.holder, claim.lease_ms, T0 + 31_000, 10)
        .unwrap();
    assert_eq!(groups.len(), 1);
    drop(n);
    // A new notifier (the same host restarted): the group is flushed once,
    // the message sent once, whatever passes follow.
    let n = Notifier::open(&s.config).unwrap().unwrap();
    for at in [T0 + 31_000, T0 + 32_000, T0 + 40 * MIN] {
        pass(&mut s, &n, at);
    }
    // Another host a lease later finds nothing left to send.
    s.store
        .claim_due_notifications("acme", "another-host", claim.lease_ms, T0 + 50 * MIN, 10)
        .map(|v| assert!(v.is_empty()))
        .unwrap();
    assert_eq!(s.fake.sent("/hook").len(), 1);
    assert_eq!(s.store.notifications("acme", None, 10).unwrap().len(), 1);
}
