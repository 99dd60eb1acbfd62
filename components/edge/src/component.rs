//! The WASI HTTP face: routes, the body read under its limit, validation
//! through the imported validate component, and forwarding to the core.
//!
//! | route | does |
//! |---|---|
//! | `POST /forms/{form}` | form intake: 422 with field errors, else forwarded to `POST /v1/leads?source=form`; the form is told accepted (or queued), its lead id and warnings |
//! | `POST /webhooks/hubspot` | HubSpot v3 signature checked, then relayed (signed again) to `/v1/webhooks/hubspot/{tenant}` |
//! | `POST /webhooks/leads` | leadgate's own signed webhook: checked, validated, relayed to `/v1/webhooks/leads/{tenant}` |
//! | `GET /healthz` | 200 when the configuration is complete |

use crate::config::Config;
use crate::retry::{self, Outcome};
use crate::{Refusal, intake};
use futures::{SinkExt, StreamExt};
use leadgate_lead::{Issue, Severity, Source, Verdict};
use leadgate_sdk::CallContext;
use leadgate_sdk::v0_1_0::client::Validator;
use spin_sdk::http::{Fields, IncomingRequest, Method, OutgoingResponse, ResponseOutparam};
use std::time::{Duration, Instant};

/// Each attempt at the core gets at least this much of the budget.
const MIN_ATTEMPT_MS: u64 = 200;
/// Most leads one webhook request may carry.
const MAX_WEBHOOK_LEADS: usize = 100;

/// An answer: status, JSON body, and `Retry-After` for 503s.
struct Reply {
    status: u16,
    body: String,
    retry_after: Option<u64>,
}

impl From<Refusal> for Reply {
    fn from(r: Refusal) -> Reply {
        Reply {
            status: r.status,
            body: r.body(),
            retry_after: r.retry_after,
        }
    }
}

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    let started = Instant::now();
    let reply = match route(req, started).await {
        Ok(r) => r,
        Err(r) => r.into(),
    };
    let mut headers = vec![("content-type".to_string(), b"application/json".to_vec())];
    if let Some(s) = reply.retry_after {
        headers.push(("retry-after".to_string(), s.to_string().into_bytes()));
    }
    let Ok(fields) = Fields::from_list(&headers) else {
        return;
    };
    let response = OutgoingResponse::new(fields);
    if response.set_status_code(reply.status).is_err() {
        return;
    }
    let mut body = response.take_body();
    out.set(response);
    // A sender that went away cannot be answered; nothing else to do.
    let _ = body.send(reply.body.into_bytes()).await;
}

fn header(req: &IncomingRequest, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .into_iter()
        .next()
        .and_then(|v| String::from_utf8(v).ok())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn config() -> Result<Config, Refusal> {
    Config::read(|k| std::env::var(k).ok()).map_err(|e| {
        Refusal::unavailable(
            "edge.config",
            format!("the edge is not configured: {e}; nothing was taken"),
            60,
        )
    })
}

async fn route(req: IncomingRequest, started: Instant) -> Result<Reply, Refusal> {
    let path_and_query = req.path_with_query().unwrap_or_default();
    let path = path_and_query.split('?').next().unwrap_or("").to_string();
    let method = req.method();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (&method, segments.as_slice()) {
        (Method::Get, ["healthz"]) => {
            config()?;
            Ok(Reply {
                status: 200,
                body: "{\"status\":\"ok\"}".into(),
                retry_after: None,
            })
        }
        (Method::Post, ["forms", form]) if !form.is_empty() => {
            let form = form.to_string();
            let c = config()?;
            let ctype = intake::media_type(header(&req, "content-type").as_deref());
            let key = header(&req, "idempotency-key");
            let body = read_body(req, c.max_body_bytes).await?;
            form_intake(&c, &form, &ctype, key.as_deref(), &body, started).await
        }
        (Method::Post, ["webhooks", "hubspot"]) => {
            let c = config()?;
            let uri = signed_uri(&c, &req, &path_and_query);
            let signature = header(&req, leadgate_signature::HUBSPOT_SIGNATURE);
            let timestamp = header(&req, leadgate_signature::HUBSPOT_TIMESTAMP);
            let body = read_body(req, c.max_body_bytes).await?;
            let secret = secret(
                c.hubspot_secret.as_deref(),
                "LEADGATE_HUBSPOT_SECRET",
                "HubSpot webhooks",
            )?;
            leadgate_signature::hubspot_v3::verify(
                secret.as_bytes(),
                "POST",
                &uri,
                &body,
                signature.as_deref(),
                timestamp.as_deref(),
                now_ms(),
                c.signature_window_ms,
            )
            .map_err(|e| Refusal::new(401, e.code(), e.to_string()))?;
            // The core checks the same secret over the URL it is called at.
            let target = format!("{}/v1/webhooks/hubspot/{}", c.upstream, c.tenant);
            let ts = now_ms().to_string();
            let sig = leadgate_signature::hubspot_v3::sign(
                secret.as_bytes(),
                "POST",
                &target,
                &body,
                &ts,
            );
            let headers = vec![
                (leadgate_signature::HUBSPOT_SIGNATURE.to_string(), sig),
                (leadgate_signature::HUBSPOT_TIMESTAMP.to_string(), ts),
            ];
            forward(&c, &target, headers, body, started).await
        }
        (Method::Post, ["webhooks", "leads"]) => {
            let c = config()?;
            let signature = header(&req, leadgate_signature::LEADGATE_SIGNATURE);
            let key = header(&req, "idempotency-key");
            let body = read_body(req, c.max_body_bytes).await?;
            let secret = secret(
                c.webhook_secret.as_deref(),
                "LEADGATE_WEBHOOK_SECRET",
                "signed lead webhooks",
            )?;
            leadgate_signature::leadgate_v1::verify(
                secret.as_bytes(),
                &body,
                signature.as_deref(),
                now_ms(),
                c.signature_window_ms,
            )
            .map_err(|e| Refusal::new(401, e.code(), e.to_string()))?;
            let leads = intake::webhook_leads(&body, MAX_WEBHOOK_LEADS)?;
            let validator = validator(&c)?;
            let mut rejected = Vec::new();
            for (i, lead) in leads.iter().enumerate() {
                let issues = validate(&c, &validator, lead, Source::Crm)?;
                if intake::has_errors(&issues) {
                    let mut found = intake::findings(&issues);
                    found.insert("index".into(), i.into());
                    rejected.push(serde_json::Value::Object(found));
                }
            }
            if !rejected.is_empty() {
                return Ok(Reply {
                    status: 422,
                    body: serde_json::json!({"status": "rejected", "leads": rejected}).to_string(),
                    retry_after: None,
                });
            }
            // The sender's signature covers only the body and its time:
            // the core checks it again as it is.
            let mut headers = vec![(
                leadgate_signature::LEADGATE_SIGNATURE.to_string(),
                signature.unwrap_or_default(),
            )];
            if let Some(k) = key {
                headers.push((
                    "idempotency-key".into(),
                    intake::idempotency_key(Some(&k), "", &[])?,
                ));
            }
            let target = format!("{}/v1/webhooks/leads/{}", c.upstream, c.tenant);
            forward(&c, &target, headers, body, started).await
        }
        (_, ["forms", _]) | (_, ["webhooks", "hubspot" | "leads"]) => Err(Refusal::new(
            405,
            "method.not_allowed",
            format!("{method} is not accepted here: send POST"),
        )),
        _ => Err(Refusal::new(
            404,
            "route.unknown",
            format!("no route for {method} {path}"),
        )),
    }
}

/// A webhook's signing secret, or 503 naming the variable that is not set.
fn secret<'a>(value: Option<&'a str>, var: &str, what: &str) -> Result<&'a str, Refusal> {
    value.ok_or_else(|| {
        Refusal::unavailable(
            "edge.config",
            format!("{var} is not set: {what} cannot be verified; nothing was taken"),
            60,
        )
    })
}

/// The URL the sender signed: `LEADGATE_PUBLIC_URL` plus the path, else
/// the scheme and host the request came in on.
fn signed_uri(c: &Config, req: &IncomingRequest, path_and_query: &str) -> String {
    if let Some(base) = &c.public_url {
        return format!("{base}{path_and_query}");
    }
    let scheme = match req.scheme() {
        Some(spin_sdk::http::Scheme::Https) => "https",
        _ => "http",
    };
    let host = req
        .authority()
        .or_else(|| header(req, "host"))
        .unwrap_or_else(|| "localhost".into());
    format!("{scheme}://{host}{path_and_query}")
}

/// The body, refused with 413 past `max` bytes (before reading it all
/// when the sender announced its length).
async fn read_body(req: IncomingRequest, max: usize) -> Result<Vec<u8>, Refusal> {
    let too_large = || {
        Refusal::new(
            413,
            "body.too_large",
            format!("the body is larger than {max} bytes (LEADGATE_MAX_BODY_BYTES)"),
        )
    };
    if let Some(n) = header(&req, "content-length").and_then(|v| v.trim().parse::<usize>().ok())
        && n > max
    {
        return Err(too_large());
    }
    let mut stream = req.into_body_stream();
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            Refusal::new(
                400,
                "body.read",
                format!("the body could not be read: {e:?}"),
            )
        })?;
        if body.len() + chunk.len() > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The composed validate component, opened with the tenant's settings
/// (once per request).
fn validator(c: &Config) -> Result<Validator, Refusal> {
    Validator::open(&c.validate_settings).map_err(|e| {
        Refusal::unavailable(
            "edge.validate_settings",
            format!("LEADGATE_VALIDATE_SETTINGS is refused by the validate component: {e}; nothing was taken"),
            60,
        )
    })
}

/// Validates one submission with the composed validate component; the
/// lead's problems and the validator's issues together.
fn validate(
    c: &Config,
    validator: &Validator,
    fields: &serde_json::Value,
    source: Source,
) -> Result<Vec<Issue>, Refusal> {
    let now = now_ms();
    let (lead, mut issues) = intake::lead_of(fields, &c.tenant, source, now)?;
    let result = validator.validate(
        lead,
        &CallContext {
            tenant: c.tenant.clone(),
            now,
        },
    );
    issues.extend(result.issues);
    if result.verdict == Verdict::Reject && !intake::has_errors(&issues) {
        issues.push(Issue::new(
            "lead",
            "lead.rejected",
            Severity::Error,
            "the validator rejected the lead",
        ));
    }
    Ok(issues)
}

async fn form_intake(
    c: &Config,
    form: &str,
    ctype: &str,
    key: Option<&str>,
    body: &[u8],
    started: Instant,
) -> Result<Reply, Refusal> {
    let fields = serde_json::Value::Object(intake::form_fields(body, ctype, form)?);
    let issues = validate(c, &validator(c)?, &fields, Source::Form)?;
    if intake::has_errors(&issues) {
        return Ok(Reply {
            status: 422,
            body: intake::rejection(&issues),
            retry_after: None,
        });
    }
    let key = intake::idempotency_key(key, &format!("forms/{form}"), body)?;
    let target = format!("{}/v1/leads?source=form", c.upstream);
    let forwarded =
        serde_json::to_vec(&fields).map_err(|e| Refusal::new(500, "internal", e.to_string()))?;
    let reply = forward(
        c,
        &target,
        vec![("idempotency-key".into(), key)],
        forwarded,
        started,
    )
    .await?;
    Ok(Reply {
        body: intake::accepted(reply.status, &reply.body, &issues),
        ..reply
    })
}

/// Posts to the core with the tenant's key until it accepts, refuses, or
/// the budget runs out. The core's answer is returned when it accepted
/// (webhooks pass it on; forms tell less); anything else is a 503 with
/// `Retry-After`.
async fn forward(
    c: &Config,
    url: &str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    started: Instant,
) -> Result<Reply, Refusal> {
    let budget = Duration::from_millis(c.budget_ms);
    let mut attempt = 0u32;
    let mut asked: Option<u64> = None;
    loop {
        let remaining = budget.saturating_sub(started.elapsed());
        let mut req = spin_sdk::http::Request::builder();
        req.method(Method::Post)
            .uri(url)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", c.api_key));
        for (k, v) in &headers {
            req.header(k.clone(), v.clone());
        }
        let req = req.body(body.clone()).build();
        let send = spin_sdk::http::send::<_, spin_sdk::http::Response>(req);
        let answer = match futures::future::select(Box::pin(send), Box::pin(sleep(remaining))).await
        {
            futures::future::Either::Left((Ok(r), _)) => Ok(r),
            futures::future::Either::Left((Err(e), _)) => Err(unreachable(&e)),
            futures::future::Either::Right(_) => Err(format!(
                "the core did not answer within {} ms",
                remaining.as_millis()
            )),
        };
        let last = match answer {
            Ok(r) => {
                let status = *r.status();
                asked = r
                    .header("retry-after")
                    .and_then(|h| h.as_str())
                    .and_then(|s| s.trim().parse().ok());
                match retry::outcome(status) {
                    Outcome::Accepted => {
                        let body = String::from_utf8_lossy(r.body()).into_owned();
                        return Ok(Reply {
                            status,
                            body,
                            retry_after: None,
                        });
                    }
                    Outcome::Refused => {
                        let core: serde_json::Value =
                            serde_json::from_slice(r.body()).unwrap_or(serde_json::Value::Null);
                        return Err(Refusal::unavailable(
                            "upstream.refused",
                            format!(
                                "the core refused the submission with {status} ({}); nothing was taken — deliver it again once that is fixed",
                                core.pointer("/error/message")
                                    .and_then(|m| m.as_str())
                                    .unwrap_or("no reason given")
                            ),
                            60,
                        ));
                    }
                    Outcome::Retry => format!("the core answered {status}"),
                }
            }
            Err(e) => e,
        };
        let remaining = budget.saturating_sub(started.elapsed()).as_millis() as u64;
        match retry::wait_ms(attempt, asked, remaining, MIN_ATTEMPT_MS) {
            Some(ms) => sleep(Duration::from_millis(ms)).await,
            None => {
                return Err(Refusal::unavailable(
                    "upstream.unavailable",
                    format!(
                        "{last} after {} attempt(s) in {} ms; nothing was taken — deliver it again",
                        attempt + 1,
                        started.elapsed().as_millis()
                    ),
                    retry::retry_after(asked),
                ));
            }
        }
        attempt += 1;
    }
}

/// Why a request to the core got no answer, in words.
fn unreachable(e: &spin_sdk::http::SendError) -> String {
    use spin_sdk::http::SendError;
    match e {
        SendError::Http(code) => format!("the core could not be reached ({code:?})"),
        SendError::Io(_) => {
            "the core could not be reached (the connection closed while the request was sent)"
                .into()
        }
        other => format!("the request to the core failed: {other}"),
    }
}

/// A timer on WASI's monotonic clock, driven by the Spin SDK's executor.
fn sleep(d: Duration) -> impl std::future::Future<Output = ()> {
    use wasi::clocks::monotonic_clock;
    let deadline = monotonic_clock::now().saturating_add(d.as_nanos().min(u64::MAX as u128) as u64);
    let mut token: Option<spin_executor::CancelToken> = None;
    std::future::poll_fn(move |cx| {
        if monotonic_clock::now() >= deadline {
            if let Some(t) = token.take() {
                t.cancel();
            }
            return std::task::Poll::Ready(());
        }
        if token.is_none() {
            token = Some(spin_executor::push_waker_and_get_token(
                monotonic_clock::subscribe_instant(deadline),
                cx.waker().clone(),
            ));
        }
        std::task::Poll::Pending
    })
}
