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
        .route("/v1/outbox", get(list_outbox))
        .route("/v1/outbox/retry", post(retry_outbox))
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
        json(200, r#"{"status":"ready"}"#.into())
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

const OPENAPI: &str = include_str!("openapi.json");

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

/// Leads from a JSON body: one object, an array, or `{"leads": [...]}`
/// (beside which only the keys in `envelope` may stand); or NDJSON.
fn leads_of(
    body: &[u8],
    ctype: &str,
    max: usize,
    envelope: &[&str],
) -> Result<Vec<serde_json::Value>, Response> {
    use leadgate_ingest::body;
    let ndjson = json_media(ctype)?;
    let mut values = json_values(body, ndjson)?;
    if ndjson {
        return body::checked(values, max).map_err(refused);
    }
    let value = values.pop().unwrap_or_default();
    body::leads_in(value, max, envelope).map_err(refused)
}

/// Hands a job to the tenant's pipeline and answers: the result if it is
/// processed within the budget, else 202 with where to look.
async fn submit(
    t: &Tenant,
    make: impl FnOnce(
        tokio::sync::oneshot::Sender<Result<Logged, String>>,
        tokio::sync::oneshot::Sender<Reply>,
    ) -> Job,
    fp: &str,
    started: Instant,
) -> Response {
    let (ltx, lrx) = tokio::sync::oneshot::channel();
    let (dtx, drx) = tokio::sync::oneshot::channel();
    match t.jobs.try_send(make(ltx, dtx)) {
        Ok(()) => {}
        Err(std::sync::mpsc::TrySendError::Full(_)) => {
            return with_retry_after(
                error(
                    503,
                    "service.busy",
                    "the tenant's intake queue is full; nothing was accepted, retry shortly",
                ),
                1,
            );
        }
        Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
            return with_retry_after(
                error(
                    503,
                    "service.stopping",
                    "the tenant's pipeline is not running; nothing was accepted",
                ),
                5,
            );
        }
    }
    let budget = Duration::from_millis(t.config.serve.sync_budget_ms);
    // A request is only answered 2xx once it is durable in the store.
    let logged = match tokio::time::timeout(budget + Duration::from_secs(10), lrx).await {
        Ok(Ok(Ok(l))) => l,
        Ok(Ok(Err(message))) => {
            return with_retry_after(error(503, "service.store", message), 5);
        }
        _ => {
            return with_retry_after(
                error(
                    503,
                    "service.busy",
                    "the request could not be logged in time; retry with the same Idempotency-Key",
                ),
                2,
            );
        }
    };
    match logged {
        Logged::Seen(row) => {
            if row.fingerprint != fp {
                return error(
                    422,
                    "idempotency_key.reused",
                    format!(
                        "this Idempotency-Key was used for request {} with a different body",
                        row.id
                    ),
                );
            }
            let mut r = match (row.state.as_str(), row.result, row.status_code) {
                ("done", Some(result), Some(code)) => json(code as u16, result),
                _ => pending(row.id),
            };
            r.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            r
        }
        Logged::New(id) => {
            let left = budget.saturating_sub(started.elapsed());
            match tokio::time::timeout(left, drx).await {
                Ok(Ok(reply)) => {
                    let r = json(reply.status, reply.body);
                    if reply.status == 503 {
                        with_retry_after(r, 5)
                    } else {
                        r
                    }
                }
                Ok(Err(_)) => pending(id),
                Err(_) => pending(id),
            }
        }
    }
}

/// Hands a leads request to the tenant's pipeline (see [`submit`]).
async fn submit_leads(
    t: &Tenant,
    key: String,
    kind: &'static str,
    fingerprint: String,
    request: LeadsRequest,
    started: Instant,
) -> Response {
    let fp = fingerprint.clone();
    submit(
        t,
        move |logged, done| {
            Job::Leads(LeadsJob {
                key,
                kind,
                fingerprint,
                request,
                received: started,
                logged,
                done,
            })
        },
        &fp,
        started,
    )
    .await
}

/// 202: accepted and durable, still being processed.
fn pending(id: i64) -> Response {
    let url = format!("/v1/requests/{id}");
    let mut r = json(
        202,
        serde_json::json!({"request_id": id, "state": "pending", "status_url": url}).to_string(),
    );
    if let Ok(v) = HeaderValue::from_str(&url) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn source_of(q: &Params, headers: &HeaderMap, default: &str) -> Result<String, Response> {
    let given = q.get("source").map(str::to_string).or_else(|| {
        headers
            .get("x-lead-source")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    });
    match given {
        None => Ok(default.to_string()),
        Some(s) => leadgate_lead::Source::parse(&s)
            .map(|s| s.as_str().to_string())
            .ok_or_else(|| {
                error(
                    400,
                    "source.unknown",
                    format!("source '{s}' is not one of form, ads, import, crm, api, other"),
                )
            }),
    }
}

async fn post_leads(
    State(s): State<S>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let (t, body) = match authenticated_body(&s, &headers, body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let q = match Params::of(q, &["source"]) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let c = &t.config.serve;
    let leads = match leads_of(&body, &content_type(&headers), c.max_leads_per_request, &[]) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let source = match source_of(&q, &headers, "api") {
        Ok(s) => s,
        Err(r) => return r,
    };
    let key = match idempotency_key(&headers, "POST /v1/leads", None) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let fp = fingerprint(&body);
    let request = LeadsRequest {
        source,
        crm_id: None,
        leads,
    };
    submit_leads(t, key, "leads", fp, request, started).await
}

/// A form submission: `application/x-www-form-urlencoded` or a JSON object.
async fn post_form(
    State(s): State<S>,
    form: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let (t, body) = match authenticated_body(&s, &headers, body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Ok(Path(form)) = form else {
        return param_error("path", "form", "is not UTF-8 once percent-decoded");
    };
    let ctype = content_type(&headers);
    let mut lead = match ctype.as_str() {
        "application/x-www-form-urlencoded" => match leadgate_ingest::body::form_fields(&body) {
            Ok(fields) => fields,
            Err(e) => return refused(e),
        },
        "application/json" | "" => match leadgate_ingest::body::parse_json(&body) {
            Ok(serde_json::Value::Object(o)) => {
                if let Err(e) = leadgate_ingest::body::check_fields(&o, "") {
                    return refused(e);
                }
                o
            }
            Ok(other) => {
                return error(
                    400,
                    "body.shape",
                    format!(
                        "a form submission is one JSON object, not {}",
                        leadgate_ingest::body::kind(&other)
                    ),
                );
            }
            Err(e) => return refused(e),
        },
        other => {
            return error(
                415,
                "body.content_type",
                format!(
                    "content type '{other}' is not accepted: send application/x-www-form-urlencoded or application/json"
                ),
            );
        }
    };
    if lead.is_empty() {
        return error(400, "body.empty", "the form submission has no fields");
    }
    let key = match idempotency_key(&headers, &format!("POST /v1/forms/{form}"), None) {
        Ok(k) => k,
        Err(r) => return r,
    };
    lead.entry("form_id")
        .or_insert(serde_json::Value::String(form));
    // A retry of a form request logged before keys were scoped to their
    // route is answered as it was then.
    let key = match legacy_form_key(&s, &t.config.tenant, &headers).await {
        Ok(Some(legacy)) => legacy,
        Ok(None) => key,
        Err(r) => return r,
    };
    let fp = fingerprint(&body);
    let request = LeadsRequest {
        source: "form".into(),
        crm_id: None,
        leads: vec![serde_json::Value::Object(lead)],
    };
    submit_leads(t, key, "form", fp, request, started).await
}

async fn post_events(State(s): State<S>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let (t, body) = match authenticated_body(&s, &headers, body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let c = &t.config.serve;
    let ndjson = match json_media(&content_type(&headers)) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return error(400, "body.encoding", "the body is not UTF-8");
    };
    // A JSON array of events, one object, or NDJSON. A body that is not
    // one JSON value is read as NDJSON whatever its type says (as it always
    // was); a line that is not JSON is rejected as an event, with its
    // reason. A duplicate key or a control character refuses the request.
    let whole = if ndjson {
        None
    } else {
        match leadgate_ingest::body::parse_json(&body) {
            Ok(v) => Some(v),
            Err(e) if e.code == "body.json" => None,
            Err(e) => return refused(e),
        }
    };
    let record = |v: &serde_json::Value, at: &str| {
        leadgate_ingest::body::check_record(v, at).map_err(refused)
    };
    let events: Vec<String> = match whole {
        Some(serde_json::Value::Array(a)) => {
            for (i, v) in a.iter().enumerate() {
                if let Err(r) = record(v, &format!("[{i}]")) {
                    return r;
                }
            }
            a.iter().map(|v| v.to_string()).collect()
        }
        Some(v @ serde_json::Value::Object(_)) => {
            if let Err(r) = record(&v, "") {
                return r;
            }
            vec![v.to_string()]
        }
        _ => {
            let mut lines = Vec::new();
            for (i, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let checked = leadgate_ingest::body::parse_json(line.as_bytes())
                    .and_then(|v| leadgate_ingest::body::check_record(&v, ""));
                match checked {
                    Err(e) if e.code != "body.json" => {
                        return error(e.status, e.code, format!("line {}: {}", i + 1, e.message));
                    }
                    _ => lines.push(line.to_string()),
                }
            }
            lines
        }
    };
    if events.is_empty() {
        return error(400, "body.empty", "the request carries no events");
    }
    if events.len() > c.max_leads_per_request * 10 {
        return error(
            413,
            "body.too_many_events",
            format!(
                "{} events in one request; at most {} are accepted",
                events.len(),
                c.max_leads_per_request * 10
            ),
        );
    }
    let fp = fingerprint(&body);
    let key = match idempotency_key(&headers, "POST /v1/events", Some(format!("events:{fp}"))) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let fpc = fp.clone();
    submit(
        t,
        move |logged, done| {
            Job::Events(EventsJob {
                key,
                fingerprint: fpc,
                events,
                logged,
                done,
            })
        },
        &fp,
        started,
    )
    .await
}

/// The URL the sender signed: the configured public URL, else from the
/// Host header.
fn signed_uri(t: &Tenant, headers: &HeaderMap, path_and_query: &str) -> String {
    let base = t.config.serve.public_url.trim_end_matches('/');
    if !base.is_empty() {
        return format!("{base}{path_and_query}");
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("http");
    format!("{scheme}://{host}{path_and_query}")
}

fn refuse_signature(s: &Shared, tenant: &str, e: &leadgate_signature::SignatureError) -> Response {
    tracing::warn!(tenant = %tenant, code = e.code(), reason = %e, "refused a webhook signature");
    s.metrics
        .count(&s.metrics.signatures_refused, tenant, e.code());
    error(401, e.code(), e.to_string())
}

async fn hubspot_webhook(
    State(s): State<S>,
    tenant: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    req: Request,
) -> Response {
    let started = Instant::now();
    let Some((tenant, t)) = webhook_tenant(&s, tenant) else {
        return error(404, "tenant.unknown", "no such tenant");
    };
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let body = match read_body(&s, req.into_body(), &headers, t.config.serve.max_body_bytes).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let uri = signed_uri(t, &headers, &path_and_query);
    if let Err(e) = leadgate_signature::hubspot_v3::verify(
        t.hubspot_secret.as_deref().unwrap_or_default(),
        "POST",
        &uri,
        &body,
        header(leadgate_signature::HUBSPOT_SIGNATURE),
        header(leadgate_signature::HUBSPOT_TIMESTAMP),
        crate::clock::now_ms(),
        t.config.serve.signature_window_ms,
    ) {
        return refuse_signature(&s, &tenant, &e);
    }
    let events: Vec<serde_json::Value> = match serde_json::from_slice(&body) {
        Ok(serde_json::Value::Array(a)) => a,
        Ok(v @ serde_json::Value::Object(_)) => vec![v],
        Ok(_) | Err(_) => {
            return error(
                400,
                "body.json",
                "a HubSpot webhook body is a JSON array of events",
            );
        }
    };
    let mut outcomes = Vec::new();
    for event in events {
        let event_id = event
            .get("eventId")
            .map(|v| v.to_string().trim_matches('"').to_string());
        let kind = event
            .get("subscriptionType")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let object = event
            .get("objectId")
            .map(|v| v.to_string().trim_matches('"').to_string());
        let (Some(event_id), Some(object)) = (event_id, object) else {
            outcomes.push(
                serde_json::json!({"error": "an event without eventId or objectId was skipped"}),
            );
            continue;
        };
        if kind != "contact.creation" {
            outcomes.push(serde_json::json!({"event_id": event_id, "ignored": format!("subscription type '{kind}' is not handled")}));
            continue;
        }
        if t.config.crm.target != super::config::Target::Hubspot {
            return error(
                501,
                "crm.not_hubspot",
                "this tenant's [crm] target is not hubspot: its contacts cannot be fetched",
            );
        }
        // The contact from the CRM, then the pipeline.
        let config = t.config.clone();
        let token = t.crm_token.clone();
        let id = object.clone();
        let fetched = tokio::task::spawn_blocking(move || {
            crate::handoff::fetch_hubspot_contact(&config, token.as_deref(), &id)
        })
        .await;
        let lead = match fetched {
            Ok(Ok(lead)) => lead,
            Ok(Err(e)) => {
                tracing::warn!(tenant = %tenant, contact = %object, error = %format!("{e:#}"), "cannot fetch a HubSpot contact");
                return with_retry_after(
                    error(
                        503,
                        "crm.fetch_failed",
                        format!(
                            "contact {object} could not be fetched from the CRM ({e:#}); redeliver later"
                        ),
                    ),
                    60,
                );
            }
            Err(_) => return error(500, "internal", "the fetch task failed"),
        };
        let request = LeadsRequest {
            source: "crm".into(),
            crm_id: Some(object.clone()),
            leads: vec![lead],
        };
        let fp = fingerprint(event.to_string().as_bytes());
        let key = scoped_key(
            "POST /v1/webhooks/{tenant}/hubspot",
            &format!("hubspot:{event_id}"),
        );
        let r = submit_leads(t, key, "hubspot", fp, request, started).await;
        let status = r.status().as_u16();
        if status >= 500 {
            return r;
        }
        let body = axum::body::to_bytes(r.into_body(), 1 << 24)
            .await
            .unwrap_or_default();
        let result: serde_json::Value =
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        outcomes.push(serde_json::json!({"event_id": event_id, "contact_id": object, "status": status, "result": result}));
    }
    json(200, serde_json::json!({"events": outcomes}).to_string())
}

/// The tenant a webhook's path names, if this instance serves it.
fn webhook_tenant(
    s: &Shared,
    tenant: Result<Path<String>, PathRejection>,
) -> Option<(String, &Tenant)> {
    let Path(name) = tenant.ok()?;
    let t = s.tenants.get(&name)?;
    Some((name, t))
}

/// A leadgate-signed webhook carrying the lead itself.
async fn lead_webhook(
    State(s): State<S>,
    tenant: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let Some((tenant, t)) = webhook_tenant(&s, tenant) else {
        return error(404, "tenant.unknown", "no such tenant");
    };
    let body = match read_body(&s, body, &headers, t.config.serve.max_body_bytes).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Err(e) = leadgate_signature::leadgate_v1::verify(
        t.webhook_secret.as_deref().unwrap_or_default(),
        &body,
        headers
            .get(leadgate_signature::LEADGATE_SIGNATURE)
            .and_then(|v| v.to_str().ok()),
        crate::clock::now_ms(),
        t.config.serve.signature_window_ms,
    ) {
        return refuse_signature(&s, &tenant, &e);
    }
    let leads = match leads_of(
        &body,
        &content_type(&headers),
        t.config.serve.max_leads_per_request,
        leadgate_ingest::body::WEBHOOK_ENVELOPE,
    ) {
        Ok(l) => l,
        Err(r) => return r,
    };
    // The provider's event id, when the body has one.
    let event_id = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v.get("event_id")
                .or_else(|| v.get("eventId"))
                .map(|e| format!("event:{}", e.to_string().trim_matches('"')))
        });
    let key = match idempotency_key(&headers, "POST /v1/webhooks/{tenant}/lead", event_id) {
        Ok(k) => k,
        Err(r) => return r,
    };
    // A signed webhook's URL is the sender's configuration: parameters
    // other than `source` are left alone.
    let q = Params::any(q);
    let source = match source_of(&q, &headers, "api") {
        Ok(s) => s,
        Err(r) => return r,
    };
    let fp = fingerprint(&body);
    let request = LeadsRequest {
        source,
        crm_id: None,
        leads,
    };
    submit_leads(t, key, "webhook", fp, request, started).await
}

/// A JSON object body read strictly into `T`; `shape` says what is
/// expected when it is not one (serde would read a struct from an array).
fn object_body<T: serde::de::DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, Response> {
    let value = leadgate_ingest::body::parse_json(body).map_err(refused)?;
    if !value.is_object() {
        return Err(error(
            400,
            "body.shape",
            format!("{shape}, not {}", leadgate_ingest::body::kind(&value)),
        ));
    }
    serde_json::from_value(value).map_err(|e| error(400, "body.json", format!("{shape}: {e}")))
}

/// Runs a store read for a handler off the async threads.
async fn with_store<T: Send + 'static>(
    s: &S,
    f: impl FnOnce(&leadgate_store::Store) -> anyhow::Result<T> + Send + 'static,
) -> Result<T, Response> {
    let s = s.clone();
    match tokio::task::spawn_blocking(move || {
        let store = s
            .reader
            .lock()
            .map_err(|_| anyhow::anyhow!("the store connection is poisoned"))?;
        f(&store)
    })
    .await
    {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(error(500, "store", format!("{e:#}"))),
        Err(_) => Err(error(500, "internal", "the store task failed")),
    }
}

async fn get_request(
    State(s): State<S>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let (tenant, _) = match authenticate(&s, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let id = match path_id(id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let tenant = tenant.to_string();
    let row = match with_store(&s, move |st| Ok(st.intake(&tenant, id)?)).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    match row {
        None => error(404, "request.not_found", format!("no request {id}")),
        Some(row) => {
            let result: serde_json::Value = row
                .result
                .as_deref()
                .and_then(|r| serde_json::from_str(r).ok())
                .unwrap_or(serde_json::Value::Null);
            json(
                200,
                serde_json::json!({
                    "request_id": row.id,
                    "kind": row.kind,
                    "state": row.state,
                    "received_at": row.received_at,
                    "done_at": row.done_at,
                    "status_code": row.status_code,
                    "result": result,
                })
                .to_string(),
            )
        }
    }
}

async fn get_lead(
    State(s): State<S>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let (tenant, _) = match authenticate(&s, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Ok(Path(id)) = id else {
        return param_error("path", "id", "is not UTF-8 once percent-decoded");
    };
    let tenant = tenant.to_string();
    let lid = id.clone();
    let found = with_store(&s, move |st| {
        let Some(row) = st.lead_row(&lid)? else {
            return Ok(None);
        };
        if row.tenant != tenant {
            return Ok(None);
        }
        let parse = |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap_or_default();
        let e = st.enrichment(&lid)?.unwrap_or_default();
        let score = st.stored_score(&lid)?;
        Ok(Some(serde_json::json!({
            "id": row.id,
            "status": row.status,
            "master_id": row.master_id,
            "lead": row.normalized.as_deref().map(parse),
            "enrichment": e.enrichment.as_deref().map(parse),
            "qualification": e.qualification,
            "score": score.map(|s| parse(&s.detail)),
            "crm": st.handoffs_of(&tenant, &lid)?,
        })))
    })
    .await;
    match found {
        Ok(Some(v)) => json(200, v.to_string()),
        Ok(None) => error(404, "lead.not_found", format!("no lead {id}")),
        Err(r) => r,
    }
}

/// A `GET` list route: the tenant's items from `read(store, tenant,
/// config, limit, state)`, as `{"items": [...]}`. `states` are the values
/// the route's `state` parameter takes (none: it has no such parameter).
async fn list<T: serde::Serialize + Send + 'static>(
    s: &S,
    headers: &HeaderMap,
    query: Option<String>,
    default_limit: usize,
    states: &[&str],
    read: impl FnOnce(
        &leadgate_store::Store,
        &str,
        &crate::config::Config,
        usize,
        Option<String>,
    ) -> anyhow::Result<Vec<T>>
    + Send
    + 'static,
) -> Response {
    let (tenant, t) = match authenticate(s, headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let known: &[&str] = if states.is_empty() {
        &["limit"]
    } else {
        &["limit", "state"]
    };
    let q = match Params::of(query, known) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let limit = match q.limit(default_limit) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let state = if states.is_empty() {
        None
    } else {
        match q.one_of("state", states) {
            Ok(st) => st,
            Err(r) => return r,
        }
    };
    let tenant = tenant.to_string();
    let config = t.config.clone();
    match with_store(s, move |st| read(st, &tenant, &config, limit, state)).await {
        Ok(items) => json(200, serde_json::json!({"items": items}).to_string()),
        Err(r) => r,
    }
}

async fn list_review(State(s): State<S>, RawQuery(q): RawQuery, headers: HeaderMap) -> Response {
    list(&s, &headers, q, 50, &[], |st, tenant, config, limit, _| {
        crate::review::prioritized(config, st, tenant, limit, crate::clock::now_ms())
    })
    .await
}

async fn get_review(
    State(s): State<S>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let (tenant, t) = match authenticate(&s, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let id = match path_id(id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let tenant = tenant.to_string();
    let config = t.config.clone();
    match with_store(&s, move |st| {
        crate::review::detail(&config, st, &tenant, id)
    })
    .await
    {
        Ok(Some(v)) => json(200, v.to_string()),
        Ok(None) => error(404, "review.not_found", format!("no review item {id}")),
        Err(r) => r,
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    decision: String,
    reviewer: String,
    note: Option<String>,
}

async fn decide_review(
    State(s): State<S>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (tenant, t) = match authenticate(&s, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let id = match path_id(id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let body = match read_body(&s, body, &headers, 64 * 1024).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let d: DecisionBody = match object_body(
        &body,
        "a decision is {\"decision\": \"merge|not_duplicate|accept|reject\", \"reviewer\": \"...\", \"note\": \"...\"}",
    ) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let tenant = tenant.to_string();
    let config = t.config.clone();
    let db = s.db.clone();
    let decided = tokio::task::spawn_blocking(move || {
        let mut store = leadgate_store::Store::open(&db)?;
        crate::review::decide(
            &config,
            &mut store,
            &tenant,
            id,
            &d.decision,
            &d.reviewer,
            d.note.as_deref(),
            crate::clock::now_ms(),
        )
    })
    .await;
    match decided {
        Ok(Ok(outcome)) => {
            s.metrics.count(
                &s.metrics.review_decisions,
                &t.config.tenant,
                &outcome.decision,
            );
            json(200, serde_json::to_string(&outcome).unwrap_or_default())
        }
        Ok(Err(e)) => match e.downcast_ref::<crate::review::DecideError>() {
            Some(de) => error(de.status(), de.code(), de.to_string()),
            None => error(500, "store", format!("{e:#}")),
        },
        Err(_) => error(500, "internal", "the decision task failed"),
    }
}

/// The states of a CRM handoff, as `GET /v1/outbox?state=` takes them.
const OUTBOX_STATES: &[&str] = &["pending", "delivered", "failed", "dead"];

async fn list_outbox(State(s): State<S>, RawQuery(q): RawQuery, headers: HeaderMap) -> Response {
    list(
        &s,
        &headers,
        q,
        100,
        OUTBOX_STATES,
        |st, tenant, _, limit, state| Ok(st.handoffs(tenant, state.as_deref(), limit)?),
    )
    .await
}

async fn list_alerts(State(s): State<S>, RawQuery(q): RawQuery, headers: HeaderMap) -> Response {
    list(&s, &headers, q, 100, &[], |st, tenant, _, limit, _| {
        Ok(st.alerts(tenant, limit)?)
    })
    .await
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RetryBody {
    #[serde(default)]
    ids: Vec<i64>,
}

async fn retry_outbox(State(s): State<S>, headers: HeaderMap, body: Body) -> Response {
    let (tenant, _) = match authenticate(&s, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let body = match read_body(&s, body, &headers, 64 * 1024).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let r: RetryBody = if body.is_empty() {
        RetryBody::default()
    } else {
        match object_body(
            &body,
            "a retry is {\"ids\": [..]} (or no body: every failed one)",
        ) {
            Ok(r) => r,
            Err(r) => return r,
        }
    };
    if let Some(bad) = r.ids.iter().find(|id| **id < 1) {
        return field_error(
            "body.invalid",
            "ids",
            format!("ids are handoff ids, whole numbers from 1 up, not {bad}"),
        );
    }
    let tenant = tenant.to_string();
    let db = s.db.clone();
    let n = tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
        let mut store = leadgate_store::Store::open(&db)?;
        Ok(store.retry_handoffs(&tenant, &r.ids, crate::clock::now_ms())?)
    })
    .await;
    match n {
        Ok(Ok(n)) => json(200, serde_json::json!({"requeued": n}).to_string()),
        Ok(Err(e)) => error(500, "store", format!("{e:#}")),
        Err(_) => error(500, "internal", "the retry task failed"),
    }
}
