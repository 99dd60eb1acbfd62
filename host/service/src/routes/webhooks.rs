//! Signed webhooks: HubSpot's (v3 signature) and leadgate's own, checked
//! before anything is read, then taken in as intake.

use super::*;

/// The URL the sender signed: the configured public URL, else from the
/// Host header.
pub(super) fn signed_uri(t: &Tenant, headers: &HeaderMap, path_and_query: &str) -> String {
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

pub(super) fn refuse_signature(
    s: &Shared,
    tenant: &str,
    e: &leadgate_signature::SignatureError,
) -> Response {
    tracing::warn!(tenant = %tenant, code = e.code(), reason = %e, "refused a webhook signature");
    s.metrics
        .count(&s.metrics.signatures_refused, tenant, e.code());
    error(401, e.code(), e.to_string())
}

pub(super) async fn hubspot_webhook(
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
        if kind == "contact.propertyChange"
            && event.get("propertyName").and_then(|v| v.as_str()) == Some(LIFECYCLE_STAGE)
        {
            match crm_stage(&s, t, &event, &event_id, &object).await {
                Ok(outcome) => outcomes.push(outcome),
                Err(r) => return r,
            }
            continue;
        }
        if kind == "contact.propertyChange" {
            match crm_touch(&s, t, &event, &event_id, &object).await {
                Ok(outcome) => outcomes.push(outcome),
                Err(r) => return r,
            }
            continue;
        }
        if kind != "contact.creation" {
            outcomes.push(serde_json::json!({"event_id": event_id, "ignored": format!("subscription type '{kind}' is not handled")}));
            continue;
        }
        if t.config.crm.target != leadgate_pipeline::config::serve::Target::Hubspot {
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

/// A HubSpot contact property change: when the property is one of
/// `[routing] touch_properties` (a rep's call, email or meeting logged),
/// the first touch of the contact's lead, at the time the property holds
/// (else when the change happened). Anything else is answered, never
/// retried: HubSpot redelivers only on a 5xx, kept for a store failure.
async fn crm_touch(
    s: &S,
    t: &Tenant,
    event: &serde_json::Value,
    event_id: &str,
    contact: &str,
) -> Result<serde_json::Value, Response> {
    let property = event
        .get("propertyName")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let ignored = |why: String| serde_json::json!({"event_id": event_id, "contact_id": contact, "ignored": why});
    if !t.config.routing.enabled {
        return Ok(ignored(
            "routing is off: a rep's activity is no first touch".into(),
        ));
    }
    if !t
        .config
        .routing
        .touch_properties
        .iter()
        .any(|p| p == property)
    {
        return Ok(ignored(format!(
            "property '{property}' is not in [routing] touch_properties"
        )));
    }
    let value = event.get("propertyValue");
    if value.is_none_or(|v| v.is_null() || v.as_str() == Some("")) {
        return Ok(ignored(format!("property '{property}' was cleared")));
    }
    let now = crate::clock::now_ms();
    let ms = |v: Option<&serde_json::Value>| {
        v.and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        })
        .filter(|ms: &i64| *ms > 0)
    };
    let at = ms(value)
        .or_else(|| ms(event.get("occurredAt")))
        .unwrap_or(now)
        .min(now);
    let (id, contact_id) = (event_id.to_string(), contact.to_string());
    let pool = s.reader.clone();
    let config = t.config.clone();
    let done = tokio::task::spawn_blocking(move || {
        let mut store = pool.get()?;
        crate::routing::touch_from_crm(&config, &mut store, "hubspot", &contact_id, at)
    })
    .await;
    let outcome = match done {
        Ok(Ok(crate::routing::CrmTouch::Touched(a))) => serde_json::json!({
            "event_id": id, "contact_id": contact, "lead_id": a.lead_id, "rep": a.rep_id,
            "touched_at": a.touched_at,
            "within_sla": a.sla_due_at.zip(a.touched_at).is_none_or(|(due, at)| at <= due),
        }),
        Ok(Ok(crate::routing::CrmTouch::NoLead)) => ignored(format!(
            "contact {contact} is no lead leadgate handed to HubSpot"
        )),
        Ok(Ok(crate::routing::CrmTouch::NotAwaiting(lead))) => serde_json::json!({
            "event_id": id, "contact_id": contact, "lead_id": lead,
            "ignored": "the lead has no assignment awaiting a first touch",
        }),
        Ok(Ok(crate::routing::CrmTouch::Earlier(lead))) => serde_json::json!({
            "event_id": id, "contact_id": contact, "lead_id": lead,
            "ignored": "the activity predates the lead's current assignment",
        }),
        Ok(Err(e)) => {
            tracing::warn!(tenant = %t.config.tenant, contact = %contact, error = %format!("{e:#}"), "cannot record a CRM touch");
            return Err(error(500, "store", format!("{e:#}")));
        }
        Err(_) => return Err(error(500, "internal", "the task failed")),
    };
    Ok(outcome)
}

/// HubSpot's contact property holding the lifecycle stage.
const LIFECYCLE_STAGE: &str = "lifecyclestage";

/// A HubSpot contact's lifecycle stage changed: the stage of the
/// contact's lead, at the time the change happened, and the lead queued
/// for the workflow rules. Unknown contacts and cleared stages are
/// answered 200 with the reason; a store failure is a 5xx, so HubSpot
/// redelivers (a redelivery moves nothing twice).
async fn crm_stage(
    s: &S,
    t: &Tenant,
    event: &serde_json::Value,
    event_id: &str,
    contact: &str,
) -> Result<serde_json::Value, Response> {
    let ignored = |why: String| serde_json::json!({"event_id": event_id, "contact_id": contact, "ignored": why});
    let stage = event
        .get("propertyValue")
        .and_then(|v| v.as_str())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if stage.is_empty() {
        return Ok(ignored("the lifecycle stage was cleared".into()));
    }
    let now = crate::clock::now_ms();
    let at = event
        .get("occurredAt")
        .and_then(|v| v.as_i64())
        .filter(|ms| *ms > 0)
        .unwrap_or(now)
        .min(now);
    let (contact_id, pool, config) = (contact.to_string(), s.reader.clone(), t.config.clone());
    let to = stage.clone();
    let done = tokio::task::spawn_blocking(move || -> anyhow::Result<Option<(String, bool)>> {
        let mut store = pool.get()?;
        let Some(lead) = store.lead_of_crm_record(&config.tenant, "hubspot", &contact_id)? else {
            return Ok(None);
        };
        let moved =
            leadgate_pipeline::rules::set_stage(&config, &mut store, &lead, &to, at, "hubspot")?;
        Ok(Some((lead, moved)))
    })
    .await;
    match done {
        Ok(Ok(Some((lead, moved)))) => Ok(serde_json::json!({
            "event_id": event_id, "contact_id": contact, "lead_id": lead,
            "stage": stage, "moved": moved,
        })),
        Ok(Ok(None)) => Ok(ignored(format!(
            "contact {contact} is no lead leadgate handed to HubSpot"
        ))),
        Ok(Err(e)) => {
            tracing::warn!(tenant = %t.config.tenant, contact = %contact, error = %format!("{e:#}"), "cannot record a CRM stage");
            Err(error(500, "store", format!("{e:#}")))
        }
        Err(_) => Err(error(500, "internal", "the task failed")),
    }
}

/// The tenant a webhook's path names, if this instance serves it.
pub(super) fn webhook_tenant(
    s: &Shared,
    tenant: Result<Path<String>, PathRejection>,
) -> Option<(String, &Tenant)> {
    let Path(name) = tenant.ok()?;
    let t = s.tenants.get(&name)?;
    Some((name, t))
}

/// A leadgate-signed webhook carrying the lead itself.
pub(super) async fn lead_webhook(
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
pub(super) fn object_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
    shape: &str,
) -> Result<T, Response> {
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
