//! Routing over HTTP: the reps (`GET /v1/reps`, `PUT /v1/reps/{id}`,
//! `POST /v1/reps/{id}/away`, `POST /v1/reps/{id}/back`), who would get a
//! lead (`POST /v1/route/dry-run`), routing a lead now or by hand
//! (`POST /v1/leads/{id}/route`), and its first touch
//! (`POST /v1/leads/{id}/touch`).

use super::*;
use crate::config::Config;
use crate::routing::{DryRun, RoutingRefused};

/// Runs a routing verb off the async threads; a refusal becomes its
/// status, code and message.
async fn with_routing<T: serde::Serialize + Send + 'static>(
    s: &S,
    config: Arc<Config>,
    ok: u16,
    f: impl FnOnce(&Config, &mut leadgate_store::Store, i64) -> anyhow::Result<T> + Send + 'static,
) -> Response {
    blocking_verb(s, config, ok, refused, f).await
}

fn refused(e: &anyhow::Error) -> Option<Response> {
    match e.downcast_ref::<RoutingRefused>()? {
        RoutingRefused::Invalid { field, reason } => Some(invalid_field(field, reason)),
        r => Some(error(r.status(), r.code(), r.to_string())),
    }
}

fn text_path(p: Result<Path<String>, PathRejection>) -> Result<String, Response> {
    match p {
        Ok(Path(id)) if !id.is_empty() => Ok(id),
        _ => Err(param_error("path", "id", "must be a non-empty UTF-8 id")),
    }
}

pub(super) async fn list_reps(State(s): State<S>, headers: HeaderMap) -> Response {
    let (_, t) = match authenticate(&s, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    with_routing(&s, t.config.clone(), 200, |c, st, now| {
        Ok(serde_json::json!({"items": crate::routing::reps(c, st, now)?}))
    })
    .await
}

pub(super) async fn put_rep(
    State(s): State<S>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (_, t) = match authenticate(&s, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let id = match text_path(id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let body = match read_body(&s, body, &headers, 64 * 1024).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut value: serde_json::Value =
        match object_body(&body, "a rep is {\"name\": ..., \"teams\": [...], ...}") {
            Ok(v) => v,
            Err(r) => return r,
        };
    if let Some(obj) = value.as_object_mut() {
        match obj.get("id").and_then(|v| v.as_str()) {
            Some(other) if other != id => {
                return json(
                    422,
                    serde_json::json!({"error": {"code": "body.invalid", "field": "id",
                        "message": format!("id: the body's id {other:?} is not the path's {id:?}")}})
                    .to_string(),
                );
            }
            _ => {
                obj.insert("id".into(), serde_json::Value::String(id.clone()));
            }
        }
    }
    let rep: leadgate_routing::Rep = match serde_json::from_value(value) {
        Ok(r) => r,
        Err(e) => return field_error("body.invalid", "body", format!("not a rep: {e}")),
    };
    with_routing(&s, t.config.clone(), 200, move |c, st, now| {
        let created = crate::routing::set_rep(c, st, &rep, now)?;
        Ok(serde_json::json!({"rep": rep, "created": created}))
    })
    .await
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct AwayBody {
    /// Milliseconds since the epoch.
    #[serde(default)]
    until: Option<i64>,
}

pub(super) async fn rep_away(
    State(s): State<S>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    away_or_back(s, id, headers, body, true).await
}

pub(super) async fn rep_back(
    State(s): State<S>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    away_or_back(s, id, headers, body, false).await
}

async fn away_or_back(
    s: S,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
    away: bool,
) -> Response {
    let (_, t) = match authenticate(&s, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let id = match text_path(id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let body = match read_body(&s, body, &headers, 4 * 1024).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let b: AwayBody = if body.is_empty() || !away {
        AwayBody::default()
    } else {
        match object_body(&body, "away is {\"until\": ms since the epoch} or no body") {
            Ok(b) => b,
            Err(r) => return r,
        }
    };
    with_routing(&s, t.config.clone(), 200, move |c, st, now| {
        crate::routing::set_away(c, st, &id, away, b.until, now)
    })
    .await
}

pub(super) async fn route_dry_run(State(s): State<S>, headers: HeaderMap, body: Body) -> Response {
    let (_, t) = match authenticate(&s, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let body = match read_body(&s, body, &headers, 64 * 1024).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let ask: DryRun = match object_body(
        &body,
        "a dry run is {\"lead_id\": \"...\"} or {\"lead\": {\"country\": ..., \"grade\": ...}}",
    ) {
        Ok(a) => a,
        Err(r) => return r,
    };
    with_routing(&s, t.config.clone(), 200, move |c, st, now| {
        crate::routing::dry_run(c, st, &ask, now)
    })
    .await
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RouteBody {
    /// A rep to give the lead to by hand.
    #[serde(default)]
    to: Option<String>,
    /// Who asked, for the audit trail.
    #[serde(default)]
    by: Option<String>,
}

pub(super) async fn route_lead(
    State(s): State<S>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (_, t) = match authenticate(&s, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let id = match text_path(id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let body = match read_body(&s, body, &headers, 4 * 1024).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let b: RouteBody = if body.is_empty() {
        RouteBody::default()
    } else {
        match object_body(
            &body,
            "a route request is {\"to\": \"rep\", \"by\": \"who\"} or no body",
        ) {
            Ok(b) => b,
            Err(r) => return r,
        }
    };
    with_routing(&s, t.config.clone(), 200, move |c, st, now| {
        let by = b.by.as_deref().unwrap_or("api");
        crate::routing::route_now(c, st, &id, b.to.as_deref(), by, now)
    })
    .await
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct TouchBody {
    /// When the rep first responded (ms since the epoch); default now.
    #[serde(default)]
    at: Option<i64>,
}

pub(super) async fn touch_lead(
    State(s): State<S>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (_, t) = match authenticate(&s, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let id = match text_path(id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let body = match read_body(&s, body, &headers, 4 * 1024).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let b: TouchBody = if body.is_empty() {
        TouchBody::default()
    } else {
        match object_body(&body, "a touch is {\"at\": ms since the epoch} or no body") {
            Ok(b) => b,
            Err(r) => return r,
        }
    };
    with_routing(&s, t.config.clone(), 200, move |c, st, now| {
        let a = crate::routing::touch(c, st, &id, b.at.unwrap_or(now))?;
        Ok(serde_json::json!({
            "lead_id": a.lead_id,
            "rep": a.rep_id,
            "touched_at": a.touched_at,
            "within_sla": a.sla_due_at.zip(a.touched_at).is_none_or(|(due, at)| at <= due),
        }))
    })
    .await
}
