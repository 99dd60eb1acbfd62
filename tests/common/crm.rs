//! A HubSpot-shaped CRM on loopback for the integration tests, counting
//! what it is sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the fake CRM should do with an upsert of an email.
#[derive(Default)]
pub struct CrmState {
    /// email → contact id.
    pub records: HashMap<String, String>,
    /// Contacts created, per email (exactly one is the point).
    pub creates: HashMap<String, usize>,
    /// Upsert attempts per email.
    pub attempts: HashMap<String, usize>,
    /// PATCHes by contact id: the properties written back.
    pub patches: HashMap<String, serde_json::Value>,
    /// Contacts served to `GET /crm/v3/objects/contacts/{id}`.
    pub contacts: HashMap<String, serde_json::Value>,
    /// The properties of each email's last upsert.
    pub upserted: HashMap<String, serde_json::Value>,
    /// While set, every upsert of an email containing "down" fails with 500.
    pub down: bool,
    pub next_id: u64,
}

/// A HubSpot-shaped CRM on loopback. Emails steer it: `flaky…` gets 429,
/// then 500, then a timeout, then success; `schema…` gets a 400 schema
/// error (for the whole batch, as HubSpot does); `down…` gets 500 while
/// `down` is set.
pub struct FakeCrm {
    pub url: String,
    pub state: Arc<Mutex<CrmState>>,
    _runtime: tokio::runtime::Runtime,
}

impl FakeCrm {
    pub fn start() -> FakeCrm {
        use axum::extract::{Path as AxPath, State};
        use axum::http::StatusCode;
        use axum::response::IntoResponse;
        use axum::routing::{get, post};
        let state = Arc::new(Mutex::new(CrmState::default()));
        let server = super::Loopback::bind();
        let url = server.url.clone();
        type St = Arc<Mutex<CrmState>>;
        async fn upsert(State(st): State<St>, body: String) -> axum::response::Response {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            let inputs = v["inputs"].as_array().unwrap().clone();
            let emails: Vec<String> = inputs
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_ascii_lowercase())
                .collect();
            let mut worst: Option<(u16, bool)> = None; // (status, sleep)
            {
                let mut s = st.lock().unwrap();
                for e in &emails {
                    let n = {
                        let a = s.attempts.entry(e.clone()).or_default();
                        *a += 1;
                        *a
                    };
                    if e.contains("schema") {
                        worst = Some((400, false));
                    } else if e.contains("down") && s.down {
                        worst = worst.or(Some((500, false)));
                    } else if e.contains("flaky") {
                        match n {
                            1 => worst = worst.or(Some((429, false))),
                            2 => worst = worst.or(Some((500, false))),
                            3 => worst = worst.or(Some((200, true))),
                            _ => {}
                        }
                    }
                }
            }
            match worst {
                Some((400, _)) => {
                    return (
                        StatusCode::BAD_REQUEST,
                        r#"{"status":"error","category":"VALIDATION_ERROR","message":"Property values were not valid: [{\"name\":\"leadgate_score\",\"error\":\"PROPERTY_DOESNT_EXIST\"}]"}"#,
                    )
                        .into_response();
                }
                Some((429, _)) => {
                    return (
                        StatusCode::TOO_MANY_REQUESTS,
                        [("Retry-After", "0")],
                        r#"{"status":"error","category":"RATE_LIMITS"}"#,
                    )
                        .into_response();
                }
                Some((500, _)) => {
                    return (StatusCode::INTERNAL_SERVER_ERROR, "upstream exploded")
                        .into_response();
                }
                Some((_, true)) => {
                    // Longer than the client's timeout: the answer never
                    // arrives, though the write may or may not happen.
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                }
                _ => {}
            }
            let mut s = st.lock().unwrap();
            let mut results = Vec::new();
            for (e, input) in emails.iter().zip(&inputs) {
                let id = match s.records.get(e) {
                    Some(id) => id.clone(),
                    None => {
                        s.next_id += 1;
                        let id = (1000 + s.next_id).to_string();
                        s.records.insert(e.clone(), id.clone());
                        *s.creates.entry(e.clone()).or_default() += 1;
                        id
                    }
                };
                let mut props = input["properties"].clone();
                props["email"] = serde_json::Value::String(e.clone());
                s.upserted.insert(e.clone(), props.clone());
                results.push(serde_json::json!({"id": id, "properties": props}));
            }
            (
                StatusCode::OK,
                serde_json::json!({"status": "COMPLETE", "results": results}).to_string(),
            )
                .into_response()
        }
        async fn contact(
            State(st): State<St>,
            AxPath(id): AxPath<String>,
        ) -> axum::response::Response {
            match st.lock().unwrap().contacts.get(&id) {
                Some(c) => (StatusCode::OK, c.to_string()).into_response(),
                None => (StatusCode::NOT_FOUND, "{}").into_response(),
            }
        }
        async fn patch(
            State(st): State<St>,
            AxPath(id): AxPath<String>,
            body: String,
        ) -> axum::response::Response {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            st.lock()
                .unwrap()
                .patches
                .insert(id.clone(), v["properties"].clone());
            (StatusCode::OK, serde_json::json!({"id": id}).to_string()).into_response()
        }
        let app = axum::Router::new()
            .route("/crm/v3/objects/contacts/batch/upsert", post(upsert))
            .route("/crm/v3/objects/contacts/{id}", get(contact).patch(patch))
            .with_state(state.clone());
        let runtime = server.serve(app);
        FakeCrm {
            url,
            state,
            _runtime: runtime,
        }
    }
}
