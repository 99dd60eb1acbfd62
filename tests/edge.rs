//! Integration tests of the edge component (`components/edge`, statically
//! composed with the validate component, as `spin.toml` composes it) under
//! `wasmtime serve`, which speaks the same WASI HTTP as Spin: real HTTP on
//! loopback, a fake core that records what reaches it, and the real
//! `leadgate serve` for the end-to-end case.

#![allow(clippy::unwrap_used)]

mod common;

use common::core::{Server, key, now_ms};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const HUBSPOT_SECRET: &str = "hubspot-client-secret";
const WEBHOOK_SECRET: &str = "webhook-secret";
const KEY: &str = "lg_acme_0123456789abcdef";

/// The edge under `wasmtime serve`, a fresh instance per request; killed
/// when dropped.
struct Edge {
    child: Child,
    url: String,
}

impl Edge {
    fn start(env: &[(&str, &str)]) -> Edge {
        let wasmtime = std::env::var("LEADGATE_WASMTIME").unwrap_or_else(|_| "wasmtime".into());
        let component = common::components().join("edge-composed.wasm");
        let mut cmd = Command::new(&wasmtime);
        cmd.args([
            "serve",
            "-Scli",
            "--addr",
            "127.0.0.1:0",
            "--max-instance-reuse-count",
            "1",
        ]);
        for (k, v) in env {
            cmd.arg("--env").arg(format!("{k}={v}"));
        }
        let mut child = cmd
            .arg(&component)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `{wasmtime}` ({e}): the edge tests need the wasmtime CLI 48.0.8 — \
                     `cargo xtask test` installs it, or set LEADGATE_WASMTIME"
                )
            });
        let (tx, rx) = std::sync::mpsc::channel();
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if let Some(url) = line.split("Serving HTTP on ").nth(1) {
                        let _ = tx.send(url.trim().trim_end_matches('/').to_string());
                    }
                }
            });
        }
        let url = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(u) => u,
            Err(_) => {
                let _ = child.kill();
                panic!("wasmtime serve did not start");
            }
        };
        Edge { child, url }
    }

    fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, HashMap<String, String>, serde_json::Value) {
        let mut r = Server::agent().post(format!("{}{path}", self.url));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        common::core::answer(r.send(body).unwrap())
    }

    fn form(&self, form: &str, body: &str) -> (u16, HashMap<String, String>, serde_json::Value) {
        self.post(
            &format!("/forms/{form}"),
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        )
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A request that reached the fake core.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    query: String,
    headers: HashMap<String, String>,
    body: String,
    /// For the webhook relays: whether the signature checked out.
    signed: Option<bool>,
}

/// A fake core on loopback. Bodies steer it: `flaky` answers 500 twice per
/// idempotency key, then 200; `down` always 503; `refuse` 401; `slow`
/// answers after 10 s.
struct Core {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Core {
    fn start() -> Core {
        use axum::extract::{Request, State};
        use axum::http::StatusCode;
        use axum::response::IntoResponse;
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let server = common::Loopback::bind();
        let url = server.url.clone();
        type St = (Arc<Mutex<Vec<Seen>>>, String);
        async fn any(State((seen, url)): State<St>, req: Request) -> axum::response::Response {
            let path = req.uri().path().to_string();
            let query = req.uri().query().unwrap_or("").to_string();
            let headers: HashMap<String, String> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                .collect();
            let body = axum::body::to_bytes(req.into_body(), 1 << 20)
                .await
                .unwrap();
            let body = String::from_utf8_lossy(&body).into_owned();
            let h = |n: &str| headers.get(n).map(String::as_str);
            let signed = if path.starts_with("/v1/webhooks/hubspot/") {
                Some(
                    leadgate_signature::hubspot_v3::verify(
                        HUBSPOT_SECRET.as_bytes(),
                        "POST",
                        &format!("{url}{path}"),
                        body.as_bytes(),
                        h(leadgate_signature::HUBSPOT_SIGNATURE),
                        h(leadgate_signature::HUBSPOT_TIMESTAMP),
                        now_ms(),
                        300_000,
                    )
                    .is_ok(),
                )
            } else if path.starts_with("/v1/webhooks/leads/") {
                Some(
                    leadgate_signature::leadgate_v1::verify(
                        WEBHOOK_SECRET.as_bytes(),
                        body.as_bytes(),
                        h(leadgate_signature::LEADGATE_SIGNATURE),
                        now_ms(),
                        300_000,
                    )
                    .is_ok(),
                )
            } else {
                None
            };
            let key = h("idempotency-key").unwrap_or("").to_string();
            let tries = {
                let mut s = seen.lock().unwrap();
                s.push(Seen {
                    path,
                    query,
                    headers: headers.clone(),
                    body: body.clone(),
                    signed,
                });
                s.iter()
                    .filter(|x| {
                        x.headers.get("idempotency-key").map(String::as_str) == Some(key.as_str())
                    })
                    .count()
            };
            if body.contains("slow") {
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
            if body.contains("down") {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    r#"{"error":{"code":"queue.full","message":"full"}}"#,
                )
                    .into_response();
            }
            if body.contains("refuse") {
                return (
                    StatusCode::UNAUTHORIZED,
                    r#"{"error":{"code":"auth.unknown","message":"unknown or revoked API key"}}"#,
                )
                    .into_response();
            }
            if body.contains("flaky") && tries <= 2 {
                return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response();
            }
            (
                StatusCode::OK,
                r#"{"results":[{"lead_id":"L-1","status":"accepted"}]}"#,
            )
                .into_response()
        }
        let app = axum::Router::new()
            .fallback(any)
            .with_state((seen.clone(), url.clone()));
        let runtime = server.serve(app);
        Core {
            url,
            seen,
            _runtime: runtime,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The edge's environment for this core.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LEADGATE_UPSTREAM", self.url.clone()),
            ("LEADGATE_API_KEY", KEY.into()),
            ("LEADGATE_HUBSPOT_SECRET", HUBSPOT_SECRET.into()),
            ("LEADGATE_WEBHOOK_SECRET", WEBHOOK_SECRET.into()),
            ("LEADGATE_BUDGET_MS", "2000".into()),
        ]
    }
}

fn edge_for(core: &Core, extra: &[(&'static str, &str)]) -> Edge {
    let mut env: Vec<(&str, String)> = core.env();
    for (k, v) in extra {
        env.retain(|(n, _)| n != k);
        env.push((k, v.to_string()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Edge::start(&env)
}

const ANN: &str = "email=ann%40initech.com&first_name=Ann&last_name=Lee&company=Initech&country=US";

#[test]
fn forms_are_validated_at_the_edge_and_forwarded_once() {
    let core = Core::start();
    let edge = edge_for(&core, &[]);

    let (status, _, body) = edge.form("contact", ANN);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "accepted", "{body}");
    assert_eq!(
        body["lead_id"], "L-1",
        "the lead's id, and no more of the core's result"
    );
    assert!(body.get("results").is_none(), "{body}");
    let seen = core.seen();
    assert_eq!(seen.len(), 1, "forwarded exactly once: {seen:?}");
    let first = &seen[0];
    assert_eq!(first.path, "/v1/leads");
    assert_eq!(first.query, "source=form");
    assert_eq!(first.headers["authorization"], format!("Bearer {KEY}"));
    let forwarded: serde_json::Value = serde_json::from_str(&first.body).unwrap();
    assert_eq!(forwarded["email"], "ann@initech.com");
    assert_eq!(forwarded["form_id"], "contact");
    let key = first.headers["idempotency-key"].clone();
    assert!(key.starts_with("edge-"), "{key}");

    // Delivered again (a double click, a retried POST): the same key, so
    // the core creates nothing twice.
    let (status, _, _) = edge.form("contact", ANN);
    assert_eq!(status, 200);
    let seen = core.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].headers["idempotency-key"], key);
    // A sender's own key is passed on as it is; JSON forms work too.
    let (status, _, _) = edge.post(
        "/forms/contact",
        &[
            ("Content-Type", "application/json"),
            ("Idempotency-Key", "order-77"),
        ],
        br#"{"Email Address":"bob@initech.com","Phone":"+1 415 555 0101"}"#,
    );
    assert_eq!(status, 200);
    let seen = core.seen();
    assert_eq!(seen[2].headers["idempotency-key"], "order-77");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&seen[2].body).unwrap()["Email Address"],
        "bob@initech.com"
    );

    // Invalid: 422 with field errors a form can show, and nothing forwarded.
    let (status, _, body) = edge.form("contact", "email=ann%40%40initech&first_name=Ann");
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["status"], "rejected");
    assert!(
        common::core::finding_fields(&body).contains(&"email".to_string()),
        "{body}"
    );
    assert!(
        body["errors"][0]["message"].as_str().unwrap().len() > 10,
        "{body}"
    );
    assert_eq!(core.seen().len(), 3, "a rejected form is not forwarded");
}

#[test]
fn the_edge_never_answers_2xx_unless_the_core_accepted() {
    let core = Core::start();
    let edge = edge_for(&core, &[]);

    // 500, 500, then 200: retried inside the budget under one key.
    let (status, _, body) = edge.form("contact", "email=flaky%40initech.com&first_name=Fay");
    assert_eq!(status, 200, "{body}");
    let tries: Vec<Seen> = core
        .seen()
        .into_iter()
        .filter(|s| s.body.contains("flaky"))
        .collect();
    assert_eq!(tries.len(), 3);
    assert!(
        tries
            .iter()
            .all(|t| t.headers["idempotency-key"] == tries[0].headers["idempotency-key"])
    );

    // Always 503: several attempts, then 503 with Retry-After.
    let started = Instant::now();
    let (status, headers, body) = edge.form("contact", "email=down%40initech.com&first_name=Dan");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "upstream.unavailable");
    assert!(
        headers
            .get("retry-after")
            .is_some_and(|v| v.parse::<u64>().is_ok()),
        "{headers:?}"
    );
    assert!(
        core.seen()
            .iter()
            .filter(|s| s.body.contains("down"))
            .count()
            >= 3
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // Refused (a revoked key): one attempt, 503 naming the core's reason.
    let (status, headers, body) = edge.form("contact", "email=refuse%40initech.com&first_name=Ray");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "upstream.refused");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{body}"
    );
    assert!(headers.contains_key("retry-after"));
    assert_eq!(
        core.seen()
            .iter()
            .filter(|s| s.body.contains("refuse"))
            .count(),
        1
    );

    // No answer within the budget (2 s): 503, on time.
    let started = Instant::now();
    let (status, _, body) = edge.form("contact", "email=slow%40initech.com&first_name=Sol");
    assert_eq!(status, 503, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );

    // Nothing listening at all.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let edge = edge_for(&core, &[("LEADGATE_UPSTREAM", &closed)]);
    let (status, headers, body) = edge.form("contact", ANN);
    assert_eq!(status, 503, "{body}");
    assert!(headers.contains_key("retry-after"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("could not be reached"),
        "{body}"
    );
}

#[test]
fn bad_requests_and_configuration_are_refused_with_a_reason() {
    let core = Core::start();
    let edge = edge_for(&core, &[("LEADGATE_MAX_BODY_BYTES", "1024")]);
    let big = format!("email=ann%40initech.com&note={}", "x".repeat(2000));
    let form = "application/x-www-form-urlencoded";
    for (ctype, body, status, code) in [
        (form, big.as_bytes(), 413, "body.too_large"),
        (
            "application/json",
            b"{\"email\":".as_slice(),
            400,
            "body.json",
        ),
        ("text/csv", b"a,b".as_slice(), 415, "body.content_type"),
        ("application/json", b"[]".as_slice(), 400, "body.shape"),
        (form, b"".as_slice(), 400, "body.empty"),
    ] {
        let (s, _, b) = edge.post("/forms/contact", &[("Content-Type", ctype)], body);
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (status, Some(code)),
            "{b}"
        );
        assert!(b["error"]["message"].as_str().unwrap().len() > 10, "{b}");
    }
    let (status, _, body) = edge.post("/nowhere", &[], b"");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("route.unknown")),
        "{body}"
    );
    let (status, _) = Server::agent()
        .get(format!("{}/forms/contact", edge.url))
        .call()
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 405);
    assert!(core.seen().is_empty(), "nothing bad was forwarded");

    // Not configured: 503 naming the variable, so senders deliver again.
    let edge = Edge::start(&[("LEADGATE_API_KEY", KEY)]);
    let (status, headers, body) = edge.form("contact", ANN);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "edge.config");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("LEADGATE_UPSTREAM"),
        "{body}"
    );
    assert!(headers.contains_key("retry-after"));
}

fn hubspot_headers(uri: &str, body: &str, at_ms: i64, secret: &str) -> (String, String) {
    let ts = at_ms.to_string();
    (
        leadgate_signature::hubspot_v3::sign(secret.as_bytes(), "POST", uri, body.as_bytes(), &ts),
        ts,
    )
}

#[test]
fn webhooks_are_verified_at_the_edge_with_the_hosts_code() {
    let core = Core::start();
    let edge = edge_for(&core, &[]);
    let uri = format!("{}/webhooks/hubspot", edge.url);
    let body = r#"[{"eventId":101,"subscriptionType":"contact.creation","objectId":555}]"#;
    let send = |sig: &str, ts: &str, body: &str| {
        edge.post(
            "/webhooks/hubspot",
            &[
                ("Content-Type", "application/json"),
                (leadgate_signature::HUBSPOT_SIGNATURE, sig),
                (leadgate_signature::HUBSPOT_TIMESTAMP, ts),
            ],
            body.as_bytes(),
        )
    };

    let (sig, ts) = hubspot_headers(&uri, body, now_ms(), "not-the-secret");
    let (status, _, b) = send(&sig, &ts, body);
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (401, Some("signature.mismatch")),
        "{b}"
    );
    let (sig, ts) = hubspot_headers(&uri, body, now_ms() - 6 * 60_000, HUBSPOT_SECRET);
    assert_eq!(send(&sig, &ts, body).0, 401, "too old");
    let (sig, ts) = hubspot_headers(&uri, body, now_ms() + 6 * 60_000, HUBSPOT_SECRET);
    assert_eq!(send(&sig, &ts, body).0, 401, "from the future");
    let (sig, ts) = hubspot_headers(&uri, body, now_ms(), HUBSPOT_SECRET);
    assert_eq!(
        send(&sig, &ts, &body.replace("555", "556")).0,
        401,
        "tampered body"
    );
    assert!(
        core.seen().is_empty(),
        "nothing unverified reaches the core"
    );

    let (status, _, b) = send(&sig, &ts, body);
    assert_eq!(status, 200, "{b}");
    let seen = core.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/webhooks/hubspot/acme");
    assert_eq!(
        seen[0].signed,
        Some(true),
        "relayed signed again for the core"
    );
    assert_eq!(seen[0].body, body);

    // leadgate's own signed webhook: validated, then relayed as signed.
    let good = r#"{"email":"cara@initech.com","first_name":"Cara","phone":"+1 415 555 0199"}"#;
    let sign = |b: &str| {
        leadgate_signature::leadgate_v1::sign(WEBHOOK_SECRET.as_bytes(), b.as_bytes(), now_ms())
    };
    let lead_hook = |b: &str, sig: &str| {
        edge.post(
            "/webhooks/leads",
            &[
                ("Content-Type", "application/json"),
                (leadgate_signature::LEADGATE_SIGNATURE, sig),
            ],
            b.as_bytes(),
        )
    };
    let (status, _, b) = lead_hook(good, &sign(good));
    assert_eq!(status, 200, "{b}");
    let last = core.seen().pop().unwrap();
    assert_eq!(
        (last.path.as_str(), last.signed),
        ("/v1/webhooks/leads/acme", Some(true))
    );
    let bad = r#"[{"email":"cara@initech.com"},{"email":"nope@@","first_name":"N"}]"#;
    let (status, _, b) = lead_hook(bad, &sign(bad));
    assert_eq!(status, 422, "{b}");
    assert_eq!(b["leads"][0]["index"], 1, "{b}");
    let (status, _, _) = lead_hook(good, &sign(bad));
    assert_eq!(status, 401);
    assert_eq!(core.seen().len(), 2);
}

#[test]
fn a_form_reaches_the_real_core_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("leadgate.toml"),
        "tenant = \"acme\"\n[store]\npath = \"s.db\"\n",
    )
    .unwrap();
    let api_key = key(dir.path(), "acme");
    let core = Server::start(common::leadgate(dir.path()));
    let edge = Edge::start(&[
        ("LEADGATE_UPSTREAM", &core.url),
        ("LEADGATE_API_KEY", &api_key),
    ]);

    let (status, _, first) = edge.form("contact", ANN);
    assert_eq!(status, 200, "{first}\n{}", core.logs());
    let lead_id = first["lead_id"].as_str().unwrap().to_string();
    let (status, stored) = core.get(&format!("/v1/leads/{lead_id}"), Some(&api_key));
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["lead"]["email"], "ann@initech.com", "{stored}");

    // The same submission again: the core's first answer, no second lead.
    let (status, headers, again) = edge.form("contact", ANN);
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["lead_id"], lead_id.as_str());
    let _ = headers;
    let leads: i64 = rusqlite::Connection::open(dir.path().join("s.db"))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM leads", [], |r| r.get(0))
        .unwrap();
    assert_eq!(leads, 1);
}

/// `spin.toml` deploys what these tests run: the edge component with the
/// validate component for the import it has, routes the edge serves, an
/// environment the edge accepts, and the core it forwards to allowed out.
#[test]
fn spin_toml_deploys_the_tested_component() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join("spin.toml")).unwrap();
    let m: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(m["spin_manifest_version"].as_integer(), Some(2));
    let edge = m["component"]["edge"].as_table().unwrap();
    let components = common::components();
    let source = edge["source"].as_str().unwrap();
    assert_eq!(source, "target/components/edge.wasm");
    assert!(components.join("edge.wasm").exists());
    let deps = edge["dependencies"].as_table().unwrap();
    let validate = deps["leadgate:plugin/validate@0.1.0"]["path"]
        .as_str()
        .unwrap();
    assert_eq!(validate, "target/components/validate.wasm");
    assert_eq!(deps.len(), 1, "the edge imports one capability");

    let routes: Vec<&str> = m["trigger"]["http"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert_eq!(t["component"].as_str(), Some("edge"));
            t["route"].as_str().unwrap()
        })
        .collect();
    assert_eq!(routes, ["/forms/...", "/webhooks/...", "/healthz"]);

    let env: HashMap<String, String> = edge["environment"]
        .as_table()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    assert!(
        !env.keys()
            .any(|k| k.ends_with("_KEY") || k.ends_with("_SECRET")),
        "secrets are passed at deploy time, not kept in spin.toml"
    );
    let config = leadgate_edge::config::Config::read(|k| {
        env.get(k)
            .cloned()
            .or_else(|| (k == "LEADGATE_API_KEY").then(|| KEY.to_string()))
    })
    .unwrap();
    let allowed: Vec<&str> = edge["allowed_outbound_hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        allowed.contains(&config.upstream.as_str()),
        "{allowed:?} must allow {}",
        config.upstream
    );
}
