//! The HTTP routes. Every `/v1` route but the webhooks takes the tenant's
//! API key (`Authorization: Bearer KEY` or `X-Api-Key: KEY`); webhooks are
//! signed instead and name their tenant in the path. A tenant only ever
//! sees its own leads, requests, review items and handoffs: an id of
//! another tenant's is answered 404, as if it did not exist.
//!
//! Every error is JSON: `{"error": {"code": "...", "message": "..."}}`,
//! and field-level problems carry `field` too.

// Helpers return the refusing response as their error; it is built once
// per refused request, so its size does not matter.
#![allow(clippy::result_large_err)]

use super::worker::{EventsJob, Job, LeadsJob, LeadsRequest, Reply};
use super::{Shared, Tenant};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{MatchedPath, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use leadgate_store::prelude::*;
use leadgate_store::service::{Logged, scoped_key};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod alerts;
mod intake;
mod reads;
mod routing;
mod webhooks;

use alerts::*;
use intake::*;
use reads::*;
use routing::*;
use webhooks::*;

type S = Arc<Shared>;

pub fn router(shared: S) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/v1/leads", post(post_leads))
        .route("/v1/leads/{id}", get(get_lead))
        .route("/v1/requests/{id}", get(get_request))
        .route("/v1/forms/{form}", post(post_form))
        .route("/v1/events", post(post_events))
        .route("/v1/webhooks/{tenant}/hubspot", post(hubspot_webhook))
        .route("/v1/webhooks/{tenant}/lead", post(lead_webhook))
        .route("/v1/review", get(list_review))
        .route("/v1/review/{id}", get(get_review))
        .route("/v1/review/{id}/decision", post(decide_review))
        .route("/v1/alerts", get(list_alerts))
        .route("/v1/silences", get(list_silences).post(post_silence))
        .route("/v1/silences/{id}", axum::routing::delete(delete_silence))
        .route("/v1/notifications", get(list_notifications))
        .route("/v1/notifications/retry", post(retry_notifications))
        .route("/v1/outbox", get(list_outbox))
        .route("/v1/outbox/retry", post(retry_outbox))
        .route("/v1/reps", get(list_reps))
        .route("/v1/reps/{id}", axum::routing::put(put_rep))
        .route("/v1/reps/{id}/away", post(rep_away))
        .route("/v1/reps/{id}/back", post(rep_back))
        .route("/v1/route/dry-run", post(route_dry_run))
        .route("/v1/leads/{id}/route", post(route_lead))
        .route("/v1/leads/{id}/touch", post(touch_lead))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            observe,
        ))
        .with_state(shared)
}

/// Counts and times every request, and logs it.
async fn observe(State(s): State<S>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    let response = next.run(req).await;
    let code = response.status().as_u16();
    let elapsed = started.elapsed();
    s.metrics
        .http_requests
        .get_or_create(&super::metrics::Http {
            route: route.clone(),
            code,
        })
        .inc();
    s.metrics
        .http_seconds
        .get_or_create(&super::metrics::Route {
            route: route.clone(),
        })
        .observe(elapsed.as_secs_f64());
    // A 503 is a deliberate refusal (starting, busy), not a failure.
    if code >= 500 && code != 503 {
        tracing::error!(%method, %route, code, ms = elapsed.as_secs_f64() * 1e3, "request");
    } else if code >= 400 {
        tracing::warn!(%method, %route, code, ms = elapsed.as_secs_f64() * 1e3, "request");
    } else {
        tracing::debug!(%method, %route, code, ms = elapsed.as_secs_f64() * 1e3, "request");
    }
    response
}

fn json(status: u16, body: String) -> Response {
    let mut r = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body,
    )
        .into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: u16, code: &str, message: impl Into<String>) -> Response {
    json(
        status,
        serde_json::json!({"error": {"code": code, "message": message.into()}}).to_string(),
    )
}

/// A 400 refusing one field or parameter, naming it in `field`.
fn field_error(code: &str, field: &str, message: String) -> Response {
    json(
        400,
        serde_json::json!({"error": {"code": code, "field": field, "message": message}})
            .to_string(),
    )
}

/// A refusal of one parameter of the request (`in_`: `query` or `path`).
fn param_error(in_: &str, name: &str, message: impl Into<String>) -> Response {
    field_error(
        &format!("{in_}.invalid"),
        name,
        format!("{in_} parameter '{name}': {}", message.into()),
    )
}

/// A request's query parameters. Handlers read them after authentication,
/// so a caller without a key is told that first, and every refusal is the
/// JSON error naming the parameter.
struct Params(Vec<(String, String)>);

impl Params {
    /// The parameters of `raw`, refusing one the route does not take
    /// (`known`): a misspelt `limt=5` is an error, not a silent default.
    fn of(raw: Option<String>, known: &[&str]) -> Result<Params, Response> {
        let params = Params::any(raw);
        if let Some((name, _)) = params.0.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            let takes = if known.is_empty() {
                "this route takes no query parameters".to_string()
            } else {
                format!("this route takes {}", known.join(", "))
            };
            return Err(param_error("query", name, format!("is not known: {takes}")));
        }
        Ok(params)
    }

    /// The parameters of `raw`, whichever they are.
    fn any(raw: Option<String>) -> Params {
        Params(
            form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .into_owned()
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `limit`: 1 to [`MAX_LIMIT`], `default` when absent.
    fn limit(&self, default: usize) -> Result<usize, Response> {
        let Some(v) = self.get("limit") else {
            return Ok(default);
        };
        match v.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(param_error(
                "query",
                "limit",
                format!("must be a whole number from 1 to {MAX_LIMIT}, not '{v}'"),
            )),
        }
    }

    /// A parameter that takes one of `allowed`, if given.
    fn one_of(&self, name: &str, allowed: &[&str]) -> Result<Option<String>, Response> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if allowed.contains(&v) => Ok(Some(v.to_string())),
            Some(v) => Err(param_error(
                "query",
                name,
                format!("must be one of {}, not '{v}'", allowed.join(", ")),
            )),
        }
    }
}

/// The most items a list route returns at once.
const MAX_LIMIT: usize = 1000;

/// Runs `f` (a verb of the service crate) with a store connection of the
/// pool, off the async threads: its value is the answer with status `ok`;
/// a refusal `refused` recognises becomes its own answer; anything else a
/// 500.
async fn blocking_verb<T: serde::Serialize + Send + 'static>(
    s: &S,
    config: Arc<crate::config::Config>,
    ok: u16,
    refused: fn(&anyhow::Error) -> Option<Response>,
    f: impl FnOnce(&crate::config::Config, &mut leadgate_store::Store, i64) -> anyhow::Result<T>
    + Send
    + 'static,
) -> Response {
    let pool = s.reader.clone();
    let done = tokio::task::spawn_blocking(move || {
        let mut store = pool.get()?;
        f(&config, &mut store, crate::clock::now_ms())
    })
    .await;
    match done {
        Ok(Ok(v)) => json(ok, serde_json::to_string(&v).unwrap_or_default()),
        Ok(Err(e)) => refused(&e).unwrap_or_else(|| error(500, "store", format!("{e:#}"))),
        Err(_) => error(500, "internal", "the task failed"),
    }
}

/// A refused field as a 422 naming it.
fn invalid_field(field: &str, reason: &str) -> Response {
    json(
        422,
        serde_json::json!({"error": {"code": "body.invalid", "field": field, "message": format!("{field}: {reason}")}})
            .to_string(),
    )
}

/// A numeric id from the path: a whole number from 1 up.
fn path_id(path: Result<Path<String>, PathRejection>) -> Result<i64, Response> {
    let refuse = |v: &str| {
        param_error(
            "path",
            "id",
            format!("must be a whole number from 1 to {}, not '{v}'", i64::MAX),
        )
    };
    let Path(v) = path.map_err(|_| refuse("(not UTF-8)"))?;
    match v.parse::<i64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(refuse(&v)),
    }
}

fn with_retry_after(mut r: Response, seconds: u64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

async fn not_found() -> Response {
    error(404, "route.not_found", "no such route; see /openapi.json")
}

async fn method_not_allowed() -> Response {
    error(
        405,
        "route.method_not_allowed",
        "this route does not take that method; see /openapi.json",
    )
}

async fn healthz() -> Response {
    json(200, r#"{"status":"ok"}"#.into())
}

async fn readyz(State(s): State<S>) -> Response {
    if s.stopping.load(std::sync::atomic::Ordering::SeqCst) {
        return error(503, "service.stopping", "the service is stopping");
    }
    if s.is_ready() {
        // Ready only while the store answers (a PostgreSQL server that went
        // away, a SQLite file that cannot be read).
        let pinged = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            reads::with_store(&s, |st| Ok(st.ping()?)),
        )
        .await;
        match pinged {
            Ok(Ok(())) => json(200, r#"{"status":"ready"}"#.into()),
            Ok(Err(_)) => error(503, "service.store", "the store does not answer"),
            Err(_) => error(503, "service.store", "the store did not answer within 2 s"),
        }
    } else {
        error(
            503,
            "service.starting",
            "the pipelines are still loading their components or finishing requests left from before a restart",
        )
    }
}

async fn metrics(State(s): State<S>) -> Response {
    let text = tokio::task::spawn_blocking(move || s.render_metrics())
        .await
        .unwrap_or_default();
    let mut r = (StatusCode::OK, text).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

const OPENAPI: &str = include_str!("../openapi.json");

async fn openapi() -> Response {
    json(200, OPENAPI.to_string())
}

/// The authenticated tenant of a request, or the response refusing it.
fn authenticate<'a>(s: &'a Shared, headers: &HeaderMap) -> Result<(&'a str, &'a Tenant), Response> {
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim);
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        return Err(error(
            401,
            "auth.missing",
            "an API key is required: Authorization: Bearer KEY (or X-Api-Key: KEY)",
        ));
    };
    let Some(tenant) = s.keys.tenant(key, &s.reader) else {
        tracing::warn!(prefix = %super::auth::prefix(key), "refused an unknown or revoked API key");
        return Err(error(
            401,
            "auth.invalid",
            "the API key is not valid (unknown or revoked)",
        ));
    };
    let Some((name, t)) = s.tenants.get_key_value(&tenant) else {
        return Err(error(
            403,
            "auth.tenant_not_served",
            format!("the key's tenant '{tenant}' is not served by this instance"),
        ));
    };
    if let Err(wait) = s.rate_limit(name) {
        return Err(with_retry_after(
            error(
                429,
                "rate_limited",
                format!("tenant '{name}' is over its request rate; retry after {wait} s"),
            ),
            wait,
        ));
    }
    Ok((name.as_str(), t))
}

/// Reads a body up to the tenant's limit, within `[serve]
/// body_timeout_ms` (a client that sends a body too slowly is answered
/// 408 and its connection closed).
async fn read_body(
    s: &Shared,
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, Response> {
    let too_large = || {
        error(
            413,
            "body.too_large",
            format!("the body is larger than the limit of {limit} bytes"),
        )
    };
    if let Some(n) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && n > limit
    {
        return Err(too_large());
    }
    match tokio::time::timeout(s.body_timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(_)) => Err(too_large()),
        Err(_) => {
            let mut r = error(
                408,
                "body.timeout",
                format!(
                    "the body did not arrive within {} ms; nothing was accepted",
                    s.body_timeout.as_millis()
                ),
            );
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            Err(r)
        }
    }
}

/// The tenant of a request and its body, read up to the tenant's limit.
async fn authenticated_body<'a>(
    s: &'a Shared,
    headers: &HeaderMap,
    body: Body,
) -> Result<(&'a Tenant, Bytes), Response> {
    let (_, t) = authenticate(s, headers)?;
    let body = read_body(s, body, headers, t.config.serve.max_body_bytes).await?;
    Ok((t, body))
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

fn fingerprint(body: &[u8]) -> String {
    Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The request's idempotency key, scoped to its route (`scope`: method and
/// route template, with a form's name): the header, else `fallback` (a
/// provider's event id), else a fresh one (no idempotency). The same key
/// on another route is another request.
fn idempotency_key(
    headers: &HeaderMap,
    scope: &str,
    fallback: Option<String>,
) -> Result<String, Response> {
    let key = match headers.get("idempotency-key").map(|v| v.to_str()) {
        Some(Ok(k))
            if !k.trim().is_empty()
                && k.len() <= 255
                && k.bytes().all(|b| (0x20..=0x7e).contains(&b)) =>
        {
            format!("key:{}", k.trim())
        }
        Some(_) => {
            return Err(error(
                400,
                "idempotency_key.invalid",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            ));
        }
        None => fallback.unwrap_or_else(|| format!("auto:{}", uuid::Uuid::now_v7())),
    };
    Ok(scoped_key(scope, &key))
}

/// The key a form request's `Idempotency-Key` was logged under before keys
/// were scoped to their route, when the tenant has such rows and this key
/// is one of them.
async fn legacy_form_key(
    s: &S,
    tenant: &str,
    headers: &HeaderMap,
) -> Result<Option<String>, Response> {
    if !s.legacy_forms.contains(tenant) {
        return Ok(None);
    }
    let Some(Ok(k)) = headers.get("idempotency-key").map(|v| v.to_str()) else {
        return Ok(None);
    };
    let key = format!("key:{}", k.trim());
    let tenant = tenant.to_string();
    with_store(s, move |st| Ok(st.legacy_form_key(&tenant, &key)?)).await
}

fn refused(e: leadgate_ingest::body::BodyError) -> Response {
    error(e.status, e.code, e.message)
}

/// The body's JSON values, one per NDJSON line (`ndjson`) or the one value
/// of a JSON body, parsed strictly ([`leadgate_ingest::body::parse_json`]).
fn json_values(body: &[u8], ndjson: bool) -> Result<Vec<serde_json::Value>, Response> {
    use leadgate_ingest::body;
    if !ndjson {
        return body::parse_json(body).map(|v| vec![v]).map_err(refused);
    }
    let text = std::str::from_utf8(body)
        .map_err(|e| error(400, "body.encoding", format!("the body is not UTF-8: {e}")))?;
    let mut v = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        v.push(body::parse_json(line.as_bytes()).map_err(|mut e| {
            e.message = format!("line {}: {}", i + 1, e.message);
            refused(e)
        })?);
    }
    Ok(v)
}

/// Whether a JSON route's body is NDJSON: `application/x-ndjson`, or JSON
/// (`application/json`, `application/*+json`, or no content type). Any
/// other type is refused (415) rather than read as JSON.
fn json_media(ctype: &str) -> Result<bool, Response> {
    match ctype {
        "application/x-ndjson" => Ok(true),
        "application/json" | "" => Ok(false),
        t if t.starts_with("application/") && t.ends_with("+json") => Ok(false),
        other => Err(error(
            415,
            "body.content_type",
            format!(
                "content type '{other}' is not accepted: send application/json or application/x-ndjson"
            ),
        )),
    }
}
