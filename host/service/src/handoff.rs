//! Handoff to the CRM: the outbox worker. A lead reaches the CRM only after
//! qualification; what is sent is built from the store when it is sent, so
//! a handoff that waited carries the latest data.
//!
//! - **HubSpot**: new leads by batch upsert keyed by email
//!   (`POST /crm/v3/objects/contacts/batch/upsert`), so a retry, a restart or
//!   a second handoff of the same lead updates the one contact instead of
//!   creating another; a contact that came from a HubSpot webhook is
//!   updated in place (`PATCH /crm/v3/objects/contacts/{id}`).
//! - **webhook**: one `POST` per lead with `Idempotency-Key:
//!   leadgate:{tenant}:{lead}`, signed like leadgate's own webhooks when a
//!   token is configured; the receiver upserts by `lead_id`.
//!
//! 2xx: delivered, the CRM's record id kept. 429, 5xx, timeouts and refused
//! connections: retried with exponential backoff and jitter (a 429's
//! `Retry-After` is honoured), dead-lettered after `crm.max_attempts` with
//! an exception item. Any other 4xx — a schema mismatch, a property the CRM
//! does not have — fails the handoff at once with an exception item holding
//! the CRM's error, never a silent partial write; a batch refused as a
//! whole is split, so only the leads at fault fail. `leadgate outbox retry`
//! puts failed and dead handoffs back.

use crate::config::Config;
use anyhow::{Context, Result, bail};
use leadgate_pipeline::config::serve::Target;
use leadgate_store::Store;
use leadgate_store::prelude::*;
use leadgate_store::service::Handoff;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// The CRM's error text kept with a failed handoff, at most.
const MAX_ERROR: usize = 2_000;

/// The HTTP client for CRM calls.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .user_agent(concat!("leadgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// What one delivery pass did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Delivered {
    pub delivered: u64,
    pub retried: u64,
    pub failed: u64,
    pub dead: u64,
}

impl Delivered {
    pub fn attempted(&self) -> u64 {
        self.delivered + self.retried + self.failed + self.dead
    }
}

/// How a CRM call ended.
pub(crate) enum Answer {
    /// 2xx, with the body.
    Ok(String),
    /// Worth trying again: 429, 5xx, timeout, connection.
    Transient {
        error: String,
        retry_after: Option<Duration>,
    },
    /// The CRM refused this payload.
    Refused { status: u16, error: String },
}

pub(crate) fn call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    token: Option<&str>,
    extra: &[(&str, String)],
    body: &str,
    timeout: Duration,
) -> Answer {
    let mut req = match method {
        "PATCH" => agent.patch(url),
        _ => agent.post(url),
    }
    .config()
    .timeout_global(Some(timeout))
    .build()
    .header("Content-Type", "application/json");
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    for (k, v) in extra {
        req = req.header(*k, v.as_str());
    }
    let mut resp = match req.send(body) {
        Ok(r) => r,
        Err(ureq::Error::Timeout(_)) => {
            return Answer::Transient {
                error: format!("timeout after {} ms", timeout.as_millis()),
                retry_after: None,
            };
        }
        Err(e) => {
            return Answer::Transient {
                error: format!("connection: {e}"),
                retry_after: None,
            };
        }
    };
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(leadgate_providers::retry::parse_retry_after);
    let text = resp
        .body_mut()
        .with_config()
        .limit(8 << 20)
        .read_to_string()
        .unwrap_or_default();
    let short = |t: &str| {
        let mut s: String = t.chars().take(MAX_ERROR).collect();
        if s.is_empty() {
            s = "(no body)".into();
        }
        s
    };
    match status {
        200..=299 => Answer::Ok(text),
        408 | 425 | 429 | 500..=599 | 401 | 403 => Answer::Transient {
            error: format!("HTTP {status}: {}", short(&text)),
            retry_after,
        },
        _ => Answer::Refused {
            status,
            error: format!("HTTP {status}: {}", short(&text)),
        },
    }
}

/// The next attempt's delay in milliseconds: the retry schedule every
/// outbound call of leadgate uses ([`leadgate_providers::retry::delay`]:
/// `backoff · 2^attempts`, capped, jittered over its upper half), and never
/// sooner than the CRM asked.
pub(crate) fn backoff(config: &Config, attempts: i64, retry_after: Option<Duration>) -> i64 {
    let c = &config.crm;
    let wait = leadgate_providers::retry::delay(
        u32::try_from(attempts.clamp(0, 31)).unwrap_or(31),
        Duration::from_millis(c.backoff_ms),
        Duration::from_millis(c.max_backoff_ms),
        retry_after,
        &mut rand::rng(),
    );
    i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)
}

/// A lead as the CRM gets it.
struct Payload {
    email: Option<String>,
    properties: serde_json::Map<String, serde_json::Value>,
    document: serde_json::Value,
}

/// The tenant's reps by id, for the owner each handoff carries (none when
/// routing is off).
fn owners(config: &Config, store: &Store) -> Result<HashMap<String, leadgate_routing::Rep>> {
    if !config.routing.enabled {
        return Ok(HashMap::new());
    }
    let rows = store.reps(&config.tenant)?;
    Ok(leadgate_pipeline::assign::reps_of(&rows)?
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect())
}

fn payload(
    config: &Config,
    store: &Store,
    owners: &HashMap<String, leadgate_routing::Rep>,
    h: &Handoff,
) -> Result<Payload> {
    let row = store
        .lead_row(&h.lead_id)?
        .with_context(|| format!("lead {} is not in the store", h.lead_id))?;
    let lead: serde_json::Value = row
        .normalized
        .as_deref()
        .and_then(|n| serde_json::from_str(n).ok())
        .unwrap_or_default();
    let e = store.enrichment(&h.lead_id)?.unwrap_or_default();
    let score: Option<serde_json::Value> = store
        .stored_score(&h.lead_id)?
        .and_then(|s| serde_json::from_str(&s.detail).ok());
    let mut properties = serde_json::Map::new();
    for (field, prop) in &config.crm.properties {
        if let Some(v) = lead.get(field).filter(|v| !v.is_null()) {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if !text.is_empty() {
                properties.insert(prop.clone(), serde_json::Value::String(text));
            }
        }
    }
    let assignment = if config.routing.enabled {
        store.assignment(&h.tenant, &h.lead_id)?
    } else {
        None
    };
    let owner = assignment
        .as_ref()
        .and_then(|a| a.rep_id.as_ref())
        .and_then(|r| owners.get(r));
    let result_values: BTreeMap<&str, Option<String>> = [
        ("owner", owner.and_then(|o| o.crm_owner_id.clone())),
        ("lead_id", Some(h.lead_id.clone())),
        ("status", Some(row.status.clone())),
        ("qualification", e.qualification.clone()),
        (
            "score",
            score
                .as_ref()
                .and_then(|s| s.get("total"))
                .map(|t| t.to_string()),
        ),
        (
            "grade",
            score
                .as_ref()
                .and_then(|s| s.get("grade"))
                .and_then(|g| g.as_str())
                .map(str::to_string),
        ),
    ]
    .into_iter()
    .collect();
    for (what, prop) in &config.crm.results {
        if let Some(Some(v)) = result_values.get(what.as_str()) {
            properties.insert(prop.clone(), serde_json::Value::String(v.clone()));
        }
    }
    let email = lead
        .get("email")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let document = serde_json::json!({
        "event": if h.op == "create" { "lead.qualified" } else { "lead.updated" },
        "tenant": h.tenant,
        "lead_id": h.lead_id,
        "crm_id": h.crm_id,
        "status": row.status,
        "qualification": e.qualification,
        "lead": lead,
        "score": score,
        "properties": properties,
        "owner": assignment.as_ref().map(|a| serde_json::json!({
            "rep": a.rep_id,
            "name": owner.map(|o| o.name.clone()),
            "email": owner.and_then(|o| o.email.clone()),
            "crm_owner_id": owner.and_then(|o| o.crm_owner_id.clone()),
            "team": a.team,
            "sla_due_at": a.sla_due_at,
        })),
    });
    Ok(Payload {
        email,
        properties,
        document,
    })
}

/// Delivers `tenant`'s due handoffs (and turns newly surfaced leads into
/// updates first), claiming them first so that hosts sharing the store
/// deliver each once. `token` is the CRM token from the environment.
pub fn deliver_due(
    config: &Config,
    store: &mut Store,
    agent: &ureq::Agent,
    token: Option<&str>,
    now: i64,
) -> Result<Delivered> {
    let mut report = Delivered::default();
    let target = config.crm.target;
    if target == Target::None {
        return Ok(report);
    }
    let tenant = config.tenant.as_str();
    // Leads surfaced by scoring since: their new score goes to the CRM.
    let surfaced = store.undelivered_surfaced(tenant, 500)?;
    if !surfaced.is_empty() {
        let mut ids = Vec::new();
        for (id, lead) in &surfaced {
            if let Some(crm_id) = store.crm_record(tenant, lead, target.as_str())? {
                store.enqueue_handoff(
                    tenant,
                    lead,
                    target.as_str(),
                    "update",
                    Some(&crm_id),
                    now,
                )?;
            }
            ids.push(*id);
        }
        store.surfaced_delivered(&ids, now)?;
    }
    let claim = crate::claim(&config.serve);
    let due = store.claim_due_handoffs(
        tenant,
        claim.holder,
        claim.lease_ms,
        now,
        config.crm.batch_size * 4,
    )?;
    if due.is_empty() {
        return Ok(report);
    }
    let timeout = Duration::from_millis(config.crm.timeout_ms);
    // Payloads; a lead that cannot be sent as it is fails at once.
    let mut ready: Vec<(Handoff, Payload)> = Vec::new();
    let owners = owners(config, store)?;
    for h in due {
        match payload(config, store, &owners, &h) {
            Ok(p) if target == Target::Hubspot && h.crm_id.is_none() && p.email.is_none() => {
                store.handoff_failed(
                    &h,
                    "failed",
                    "handoff.schema",
                    "the CRM upserts contacts by email and this lead has none",
                    now,
                )?;
                report.failed += 1;
            }
            Ok(p) => ready.push((h, p)),
            Err(e) => {
                store.handoff_failed(&h, "failed", "handoff.payload", &format!("{e:#}"), now)?;
                report.failed += 1;
            }
        }
    }
    match target {
        Target::Hubspot => {
            let base = config.crm.url.trim_end_matches('/');
            let (updates, creates): (Vec<_>, Vec<_>) =
                ready.into_iter().partition(|(h, _)| h.crm_id.is_some());
            for (h, p) in updates {
                let url = format!(
                    "{base}/crm/v3/objects/contacts/{}",
                    h.crm_id.as_deref().unwrap_or_default()
                );
                let body = serde_json::json!({"properties": p.properties}).to_string();
                let answer = call(agent, "PATCH", &url, token, &[], &body, timeout);
                settle(
                    config,
                    store,
                    &h,
                    answer,
                    h.crm_id.clone(),
                    now,
                    &mut report,
                )?;
            }
            for batch in creates.chunks(config.crm.batch_size) {
                upsert(config, store, agent, token, batch, now, &mut report)?;
            }
        }
        Target::Webhook => {
            for (h, p) in ready {
                let body = p.document.to_string();
                let mut extra = vec![(
                    "Idempotency-Key",
                    format!("leadgate:{}:{}", h.tenant, h.lead_id),
                )];
                if let Some(t) = token {
                    extra.push((
                        "X-Leadgate-Signature",
                        leadgate_signature::leadgate_v1::sign(t.as_bytes(), body.as_bytes(), now),
                    ));
                }
                let answer = call(agent, "POST", &config.crm.url, None, &extra, &body, timeout);
                // The receiver's record id from its answer, else the lead's.
                settle(config, store, &h, answer, None, now, &mut report)?;
            }
        }
        Target::None => {}
    }
    Ok(report)
}

/// HubSpot batch upsert by email; a batch refused as a whole is split.
fn upsert(
    config: &Config,
    store: &mut Store,
    agent: &ureq::Agent,
    token: Option<&str>,
    batch: &[(Handoff, Payload)],
    now: i64,
    report: &mut Delivered,
) -> Result<()> {
    let base = config.crm.url.trim_end_matches('/');
    let url = format!("{base}/crm/v3/objects/contacts/batch/upsert");
    let inputs: Vec<serde_json::Value> = batch
        .iter()
        .map(|(_, p)| {
            serde_json::json!({
                "idProperty": "email",
                "id": p.email,
                "properties": p.properties,
            })
        })
        .collect();
    let body = serde_json::json!({ "inputs": inputs }).to_string();
    let timeout = Duration::from_millis(config.crm.timeout_ms);
    match call(agent, "POST", &url, token, &[], &body, timeout) {
        Answer::Ok(text) => {
            // Record ids by email.
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let mut ids: BTreeMap<String, String> = BTreeMap::new();
            for r in v["results"].as_array().into_iter().flatten() {
                let email = r["properties"]["email"]
                    .as_str()
                    .map(str::to_ascii_lowercase);
                let id = r["id"]
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| r["id"].as_i64().map(|i| i.to_string()));
                if let (Some(e), Some(i)) = (email, id) {
                    ids.insert(e, i);
                }
            }
            let mut done = Vec::new();
            let mut missing = Vec::new();
            for (h, p) in batch {
                let key = p.email.as_deref().unwrap_or_default().to_ascii_lowercase();
                match ids.get(&key) {
                    Some(id) => done.push((h, id.clone())),
                    None => missing.push(h),
                }
            }
            let pairs: Vec<(&Handoff, &str)> =
                done.iter().map(|(h, id)| (*h, id.as_str())).collect();
            store.handoffs_delivered(&pairs, now)?;
            report.delivered += pairs.len() as u64;
            for h in missing {
                store.handoff_failed(
                    h,
                    "failed",
                    "handoff.unconfirmed",
                    "the CRM answered the batch without a record for this lead's email",
                    now,
                )?;
                report.failed += 1;
            }
        }
        Answer::Refused { .. } if batch.len() > 1 => {
            for one in batch {
                upsert(
                    config,
                    store,
                    agent,
                    token,
                    std::slice::from_ref(one),
                    now,
                    report,
                )?;
            }
        }
        answer => {
            let (h, _) = &batch[0];
            if batch.len() == 1 {
                settle(config, store, h, answer, None, now, report)?;
            } else if let Answer::Transient { error, retry_after } = answer {
                for (h, _) in batch {
                    retry_or_dead(config, store, h, &error, retry_after, now, report)?;
                }
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn retry_or_dead(
    config: &Config,
    store: &mut Store,
    h: &Handoff,
    error: &str,
    retry_after: Option<Duration>,
    now: i64,
    report: &mut Delivered,
) -> Result<()> {
    if h.attempts + 1 >= config.crm.max_attempts as i64 {
        store.handoff_failed(
            h,
            "dead",
            "handoff.dead",
            &format!(
                "gave up after {} attempts; last error: {error}; `leadgate outbox retry` sends it again",
                h.attempts + 1
            ),
            now,
        )?;
        report.dead += 1;
        tracing::warn!(tenant = %h.tenant, lead = %h.lead_id, error, "handoff dead-lettered");
        // The lead stops here: someone is told.
        store.add_alert(
            &h.tenant,
            "handoff.dead",
            &h.lead_id,
            &format!(
                "lead {} did not reach the CRM after {} attempts ({error}); `leadgate outbox retry` sends it again",
                h.lead_id,
                h.attempts + 1
            ),
            now,
        )?;
    } else {
        let next = now + backoff(config, h.attempts, retry_after);
        store.handoff_retry(h.id, next, error, now)?;
        report.retried += 1;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn settle(
    config: &Config,
    store: &mut Store,
    h: &Handoff,
    answer: Answer,
    crm_id: Option<String>,
    now: i64,
    report: &mut Delivered,
) -> Result<()> {
    match answer {
        Answer::Ok(text) => {
            let id = crm_id
                .or_else(|| {
                    serde_json::from_str::<serde_json::Value>(&text)
                        .ok()
                        .and_then(|v| {
                            v.get("id")
                                .map(|i| i.to_string().trim_matches('"').to_string())
                        })
                })
                .unwrap_or_else(|| h.lead_id.clone());
            store.handoffs_delivered(&[(h, &id)], now)?;
            report.delivered += 1;
        }
        Answer::Transient { error, retry_after } => {
            retry_or_dead(config, store, h, &error, retry_after, now, report)?;
        }
        Answer::Refused { status, error } => {
            store.handoff_failed(h, "failed", &format!("handoff.http_{status}"), &error, now)?;
            report.failed += 1;
            tracing::warn!(tenant = %h.tenant, lead = %h.lead_id, error, "the CRM refused a handoff");
        }
    }
    Ok(())
}

/// A HubSpot contact as a lead object for the pipeline: its properties
/// mapped back through `crm.properties`, its id as `external_id`.
pub fn fetch_hubspot_contact(
    config: &Config,
    token: Option<&str>,
    id: &str,
) -> Result<serde_json::Value> {
    if !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        bail!("contact id '{id}' is not an id");
    }
    let props: Vec<&str> = config.crm.properties.values().map(String::as_str).collect();
    let url = format!(
        "{}/crm/v3/objects/contacts/{id}?properties={}",
        config.crm.url.trim_end_matches('/'),
        props.join(",")
    );
    let mut req = agent()
        .get(&url)
        .config()
        .timeout_global(Some(Duration::from_millis(config.crm.timeout_ms)))
        .build();
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let mut resp = req.call().map_err(|e| anyhow::anyhow!("{e}"))?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .with_config()
        .limit(4 << 20)
        .read_to_string()
        .unwrap_or_default();
    if !(200..300).contains(&status) {
        bail!(
            "the CRM answered HTTP {status}: {}",
            text.chars().take(500).collect::<String>()
        );
    }
    let v: serde_json::Value =
        serde_json::from_str(&text).context("the CRM's contact is not JSON")?;
    let reverse: BTreeMap<&str, &str> = config
        .crm
        .properties
        .iter()
        .map(|(field, prop)| (prop.as_str(), field.as_str()))
        .collect();
    let mut lead = serde_json::Map::new();
    if let Some(p) = v["properties"].as_object() {
        for (k, val) in p {
            if let (Some(field), Some(s)) = (reverse.get(k.as_str()), val.as_str())
                && !s.is_empty()
            {
                lead.insert(
                    (*field).to_string(),
                    serde_json::Value::String(s.to_string()),
                );
            }
        }
    }
    lead.insert(
        "external_id.hubspot".into(),
        serde_json::Value::String(id.to_string()),
    );
    Ok(serde_json::Value::Object(lead))
}
