//! Intake routes: leads (JSON or NDJSON), forms and behavioural events, handed
//! to the tenant's pipeline with an idempotency key.

use super::*;

/// Leads from a JSON body: one object, an array, or `{"leads": [...]}`
/// (beside which only the keys in `envelope` may stand); or NDJSON.
pub(super) fn leads_of(
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
pub(super) async fn submit(
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
pub(super) async fn submit_leads(
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
pub(super) fn pending(id: i64) -> Response {
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

pub(super) fn source_of(
    q: &Params,
    headers: &HeaderMap,
    default: &str,
) -> Result<String, Response> {
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

pub(super) async fn post_leads(
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
pub(super) async fn post_form(
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

pub(super) async fn post_events(State(s): State<S>, headers: HeaderMap, body: Body) -> Response {
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
