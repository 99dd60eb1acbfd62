//! `[serve]`, `[crm]` and `[review]` in `leadgate.toml`: how the service
//! takes requests, where qualified leads are handed off, and the review
//! queue's SLA. Secrets are never in the file: it names the environment
//! variables that hold them.

use anyhow::{Result, bail};
use serde::Deserialize;
use std::collections::BTreeMap;

/// `[serve]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Address to listen on when `--listen` is not given.
    pub listen: String,
    /// Other tenants' configuration files, served by the same process and
    /// store (relative to this file). Each names its own `tenant`.
    pub tenants: Vec<String>,
    /// How long a request waits for its leads to be processed before it
    /// is answered 202 with a status URL (processing goes on).
    pub sync_budget_ms: u64,
    /// Largest request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// Most leads in one request.
    pub max_leads_per_request: usize,
    /// Requests per second per tenant (a token bucket), and its burst.
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    /// Requests waiting for the tenant's pipeline before new ones get 503.
    pub queue_capacity: usize,
    /// Most leads processed together (one store transaction).
    pub max_batch: usize,
    /// When requests come closer together than this, a batch waits up to
    /// this long (from its first request's arrival) for more before it is
    /// processed; 0 never waits. Requests far apart are never held back.
    pub batch_wait_ms: u64,
    /// Threads that take HTTP requests (parse, check, queue, answer);
    /// the work itself is done by each tenant's two pipeline threads.
    /// Default: a quarter of the cores, at least one (see
    /// [`ServeConfig::http_threads`]).
    pub http_threads: Option<usize>,
    /// Environment variable holding the HubSpot app's client secret
    /// (`/v1/webhooks/{tenant}/hubspot`); unset or empty turns it off.
    pub hubspot_secret_env: String,
    /// Environment variable holding the secret of leadgate-signed
    /// webhooks (`/v1/webhooks/{tenant}/lead`).
    pub webhook_secret_env: String,
    /// The public base URL HubSpot calls (`https://leads.example.com`):
    /// v3 signatures cover the full URL. Default: from the Host header.
    pub public_url: String,
    /// Signature replay window, past and future.
    pub signature_window_ms: i64,
    /// How often the scheduler escalates stale review items.
    pub tick_seconds: u64,
    /// How often the background thread copies the write-ahead log back
    /// into the database file. Shorter keeps the log short (less for a
    /// restart to copy); longer copies a page that changes often once
    /// instead of several times. The store is the process's, so with
    /// several tenants the shortest of theirs is used.
    pub checkpoint_ms: u64,
    /// How long a host's claim on work it took from the shared store — a
    /// logged request it is processing, a due CRM handoff it is delivering —
    /// holds. Past it, another host sharing the store takes the work over
    /// (the first one stopped). A host is known by `HOSTNAME`; one that
    /// restarts under the same name takes its own claims back at once.
    pub claim_lease_ms: u64,
    /// Store connections the request handlers share (reads, review
    /// decisions, retries), opened as load needs them. Pipelines and the
    /// background thread have their own. The process's own `[serve]` sets
    /// it, as `listen`.
    pub store_connections: u32,
    /// How long a client has to send a request's headers, from the first
    /// byte of the request (and an idle keep-alive connection to start its
    /// next one); past it the connection is closed. The process's own
    /// `[serve]` sets it, as `listen`.
    pub header_timeout_ms: u64,
    /// How long a client has to send a request's body once its headers
    /// are in: past it the request is answered 408 and nothing is
    /// accepted. The process's own `[serve]` sets it.
    pub body_timeout_ms: u64,
    /// Connections one client address may hold open at once; one more is
    /// answered 503 and closed. Behind a reverse proxy every connection
    /// comes from the proxy: raise it to the proxy's pool. The process's
    /// own `[serve]` sets it.
    pub max_connections_per_client: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: "127.0.0.1:8080".into(),
            tenants: Vec::new(),
            sync_budget_ms: 2_000,
            max_body_bytes: 1 << 20,
            max_leads_per_request: 1_000,
            rate_limit_per_second: 2_000,
            rate_limit_burst: 4_000,
            queue_capacity: 20_000,
            max_batch: 512,
            batch_wait_ms: 4,
            http_threads: None,
            hubspot_secret_env: "LEADGATE_HUBSPOT_SECRET".into(),
            webhook_secret_env: "LEADGATE_WEBHOOK_SECRET".into(),
            public_url: String::new(),
            signature_window_ms: leadgate_signature::DEFAULT_WINDOW_MS,
            tick_seconds: 60,
            checkpoint_ms: 100,
            claim_lease_ms: 300_000,
            store_connections: 4,
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            max_connections_per_client: 256,
        }
    }
}

impl ServeConfig {
    /// HTTP threads: as configured, else a quarter of `cores`, at least
    /// one. Taking a request is a small part of its cost — at 500
    /// requests/s one thread is busy a tenth of the time — and on a small
    /// machine a second one mostly wakes the first to share its work,
    /// taking a core from a pipeline thread each time.
    pub fn http_threads(&self, cores: usize) -> usize {
        self.http_threads.unwrap_or(cores / 4).max(1)
    }
}

/// Where qualified leads go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Nowhere: leads stay in leadgate.
    None,
    /// HubSpot's CRM API: batch upsert of contacts by email; a contact
    /// that came from a HubSpot webhook is updated in place.
    Hubspot,
    /// A JSON webhook of the tenant's own.
    Webhook,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::None => "none",
            Target::Hubspot => "hubspot",
            Target::Webhook => "webhook",
        }
    }
}

/// `[crm]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CrmConfig {
    pub target: Target,
    /// HubSpot's API base, or the webhook's URL.
    pub url: String,
    /// Environment variable holding the CRM's bearer token (HubSpot's
    /// private app token) or the webhook's signing secret.
    pub token_env: String,
    /// Qualification states handed off (`qualified` by default).
    pub handoff: Vec<String>,
    /// Attempts before a handoff is dead-lettered.
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt, with jitter, up to the max.
    pub backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// Per-request timeout.
    pub timeout_ms: u64,
    /// Contacts per batch upsert (HubSpot allows 100).
    pub batch_size: usize,
    /// Lead field → CRM property. Defaults map the standard fields to
    /// HubSpot's contact properties.
    pub properties: BTreeMap<String, String>,
    /// leadgate's results → CRM property: `lead_id`, `status`,
    /// `qualification`, `score`, `grade`, `owner` (the assigned rep's
    /// `crm_owner_id`). The properties must exist in the
    /// CRM (HubSpot refuses unknown ones: the handoff fails with its error).
    pub results: BTreeMap<String, String>,
}

impl Default for CrmConfig {
    fn default() -> Self {
        let properties = [
            ("email", "email"),
            ("first_name", "firstname"),
            ("last_name", "lastname"),
            ("phone", "phone"),
            ("company", "company"),
            ("job_title", "jobtitle"),
            ("website", "website"),
            ("city", "city"),
            ("region", "state"),
            ("postal_code", "zip"),
            ("country", "country"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        CrmConfig {
            target: Target::None,
            url: "https://api.hubapi.com".into(),
            token_env: "LEADGATE_CRM_TOKEN".into(),
            handoff: vec!["qualified".into()],
            max_attempts: 8,
            backoff_ms: 1_000,
            max_backoff_ms: 3_600_000,
            timeout_ms: 10_000,
            batch_size: 100,
            properties,
            results: [
                ("lead_id", "leadgate_lead_id"),
                ("qualification", "leadgate_qualification"),
                ("score", "leadgate_score"),
                ("grade", "leadgate_grade"),
                ("owner", "hubspot_owner_id"),
            ]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        }
    }
}

/// What happens to an item still undecided at the second SLA threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// Escalate to a manager: an alert, the item stays open.
    Manual,
    /// Decide it automatically (recorded as `sla:fallback`).
    Accept,
    Reject,
}

/// `[review]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReviewConfig {
    /// Undecided this long: escalated, with an alert.
    pub escalate_after_hours: f64,
    /// Undecided this long: the fallback applies.
    pub fallback_after_hours: f64,
    pub fallback: Fallback,
    /// Priority weight by lead source (`form`, `ads`, `api`, `crm`,
    /// `import`, `other`).
    pub source_weights: BTreeMap<String, f64>,
}

impl Default for ReviewConfig {
    fn default() -> Self {
        ReviewConfig {
            escalate_after_hours: 4.0,
            fallback_after_hours: 24.0,
            fallback: Fallback::Manual,
            source_weights: [
                ("form", 3.0),
                ("ads", 2.0),
                ("api", 2.0),
                ("crm", 1.5),
                ("import", 1.0),
                ("other", 1.0),
            ]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b))
            .collect(),
        }
    }
}

impl ReviewConfig {
    pub fn escalate_ms(&self) -> i64 {
        (self.escalate_after_hours * 3_600_000.0) as i64
    }
    pub fn fallback_ms(&self) -> i64 {
        (self.fallback_after_hours * 3_600_000.0) as i64
    }
}

pub fn check(serve: &ServeConfig, crm: &CrmConfig, review: &ReviewConfig) -> Result<()> {
    if serve.sync_budget_ms > 55_000 {
        bail!(
            "serve.sync_budget_ms must be at most 55000 (leads are processed well under 60 s), not {}",
            serve.sync_budget_ms
        );
    }
    if serve.max_body_bytes < 1024 || serve.max_leads_per_request == 0 {
        bail!(
            "serve.max_body_bytes must be at least 1024 and serve.max_leads_per_request at least 1"
        );
    }
    if serve.rate_limit_per_second == 0 || serve.rate_limit_burst == 0 {
        bail!("serve.rate_limit_per_second and serve.rate_limit_burst must be at least 1");
    }
    if serve.queue_capacity == 0 || serve.max_batch == 0 {
        bail!("serve.queue_capacity and serve.max_batch must be at least 1");
    }
    if serve.batch_wait_ms > 1_000 {
        bail!(
            "serve.batch_wait_ms must be at most 1000, not {}",
            serve.batch_wait_ms
        );
    }
    if !(10..=10_000).contains(&serve.checkpoint_ms) {
        bail!(
            "serve.checkpoint_ms must be from 10 to 10000, not {}",
            serve.checkpoint_ms
        );
    }
    if !(1_000..=86_400_000).contains(&serve.claim_lease_ms) {
        bail!(
            "serve.claim_lease_ms must be from 1000 (a second) to 86400000 (a day), not {}",
            serve.claim_lease_ms
        );
    }
    if !(1..=256).contains(&serve.store_connections) {
        bail!(
            "serve.store_connections must be from 1 to 256, not {}",
            serve.store_connections
        );
    }
    for (name, ms) in [
        ("header_timeout_ms", serve.header_timeout_ms),
        ("body_timeout_ms", serve.body_timeout_ms),
    ] {
        if !(100..=600_000).contains(&ms) {
            bail!("serve.{name} must be from 100 to 600000, not {ms}");
        }
    }
    if !(1..=100_000).contains(&serve.max_connections_per_client) {
        bail!(
            "serve.max_connections_per_client must be from 1 to 100000, not {}",
            serve.max_connections_per_client
        );
    }
    if let Some(n) = serve.http_threads
        && !(1..=256).contains(&n)
    {
        bail!("serve.http_threads must be from 1 to 256, not {n}");
    }
    if serve.signature_window_ms <= 0 {
        bail!("serve.signature_window_ms must be positive");
    }
    if crm.target != Target::None && crm.url.trim().is_empty() {
        bail!(
            "crm.url is required when crm.target is {}",
            crm.target.as_str()
        );
    }
    if crm.max_attempts == 0 || crm.backoff_ms == 0 || crm.timeout_ms == 0 {
        bail!("crm.max_attempts, crm.backoff_ms and crm.timeout_ms must be at least 1");
    }
    if !(1..=100).contains(&crm.batch_size) {
        bail!(
            "crm.batch_size must be between 1 and 100, not {}",
            crm.batch_size
        );
    }
    for k in crm.results.keys() {
        if ![
            "lead_id",
            "status",
            "qualification",
            "score",
            "grade",
            "owner",
        ]
        .contains(&k.as_str())
        {
            bail!(
                "crm.results.{k}: not a result (lead_id, status, qualification, score, grade, owner)"
            );
        }
    }
    for s in &crm.handoff {
        if !["qualified", "incomplete", "needs_review"].contains(&s.as_str()) {
            bail!(
                "crm.handoff: '{s}' is not a state that can be handed off (qualified, incomplete, needs_review)"
            );
        }
    }
    if !(review.escalate_after_hours > 0.0
        && review.fallback_after_hours > review.escalate_after_hours)
    {
        bail!(
            "review.escalate_after_hours must be positive and below review.fallback_after_hours ({} / {})",
            review.escalate_after_hours,
            review.fallback_after_hours
        );
    }
    for (k, w) in &review.source_weights {
        if leadgate_lead::Source::parse(k).is_none() || !w.is_finite() || *w < 0.0 {
            bail!("review.source_weights.{k}: a lead source with a weight of zero or more");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_threads_are_a_quarter_of_the_cores_unless_set() {
        let mut serve = ServeConfig::default();
        assert_eq!(serve.http_threads(2), 1);
        assert_eq!(serve.http_threads(1), 1);
        assert_eq!(serve.http_threads(16), 4);
        serve.http_threads = Some(3);
        assert_eq!(serve.http_threads(2), 3);
        let (crm, review) = (CrmConfig::default(), ReviewConfig::default());
        assert!(check(&serve, &crm, &review).is_ok());
        for bad in [0, 257] {
            serve.http_threads = Some(bad);
            let e = check(&serve, &crm, &review).unwrap_err().to_string();
            assert!(
                e.contains("serve.http_threads") && e.contains(&bad.to_string()),
                "{e}"
            );
        }
    }

    #[test]
    fn checkpoints_come_every_100_ms_unless_set_within_bounds() {
        let mut serve = ServeConfig::default();
        assert_eq!(serve.checkpoint_ms, 100);
        let (crm, review) = (CrmConfig::default(), ReviewConfig::default());
        for good in [10, 400, 10_000] {
            serve.checkpoint_ms = good;
            assert!(check(&serve, &crm, &review).is_ok(), "{good}");
        }
        for bad in [0, 9, 10_001] {
            serve.checkpoint_ms = bad;
            let e = check(&serve, &crm, &review).unwrap_err().to_string();
            assert!(
                e.contains("serve.checkpoint_ms") && e.contains(&bad.to_string()),
                "{e}"
            );
        }
    }
}
