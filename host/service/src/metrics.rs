//! `/metrics` in Prometheus text format: counters the service keeps as it
//! works (requests, leads by validation outcome, duplicates and merge
//! decisions, enrichment, handoffs, refused signatures) and gauges read
//! from the store when scraped (review backlog and SLA adherence, outbox
//! states, enrichment providers' latency).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Http {
    pub route: String,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Route {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub tenant: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Tenant {
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RepLabel {
    pub tenant: String,
    pub rep: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Destination {
    pub tenant: String,
    pub destination: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Provider {
    pub tenant: String,
    pub provider: String,
    pub quantile: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric, registered once.
pub struct Metrics {
    pub registry: Registry,
    pub http_requests: Family<Http, Counter>,
    pub http_seconds: Family<Route, Histogram>,
    /// Leads by validation outcome: `pass`, `review`, `reject`, `exception`.
    pub validation: Family<Outcome, Counter>,
    /// Leads found to be duplicates: `merge`, `link`, `review`.
    pub duplicates: Family<Outcome, Counter>,
    /// Leads processed, for the duplicate rate's denominator.
    pub leads: Family<Tenant, Counter>,
    /// Reviewers' decisions: `merge`, `distinct`, `accept`, `reject`.
    pub review_decisions: Family<Outcome, Counter>,
    /// Enrichment per lead: `complete`, `partial`, `failed`, ...
    pub enrichment: Family<Outcome, Counter>,
    /// Handoff attempts: `delivered`, `retry`, `failed`, `dead`.
    pub handoffs: Family<Outcome, Counter>,
    /// Refused webhook signatures, by code.
    pub signatures_refused: Family<Outcome, Counter>,
    /// Connections refused because their client held too many already.
    pub connections_refused: Counter,
    /// Seconds from a request's arrival to its leads being recorded.
    pub processing_seconds: Family<Tenant, Histogram>,
    // Gauges set at scrape time.
    pub review_open: Family<Tenant, Gauge>,
    pub review_escalated: Family<Tenant, Gauge>,
    pub review_overdue: Family<Tenant, Gauge>,
    pub review_sla_adherence: Family<Tenant, FloatGauge>,
    pub outbox: Family<Outcome, Gauge>,
    pub handoff_failure_rate: Family<Tenant, FloatGauge>,
    pub intake_pending: Family<Tenant, Gauge>,
    pub enrichment_latency_ms: Family<Provider, FloatGauge>,
    pub enrichment_success: Family<Outcome, FloatGauge>,
    /// Leads routed, by the step that decided.
    pub assignments: Family<Outcome, Counter>,
    pub rep_assigned: Family<RepLabel, Gauge>,
    pub rep_open: Family<RepLabel, Gauge>,
    pub rep_share: Family<RepLabel, FloatGauge>,
    pub rep_weight_share: Family<RepLabel, FloatGauge>,
    pub rep_sla_adherence: Family<RepLabel, FloatGauge>,
    pub timers_pending: Family<Tenant, Gauge>,
    /// Alerts filed by the notifier, by what became of them.
    pub alerts: Family<Outcome, Counter>,
    /// Notifications by destination and outcome (sent, dead, failed).
    pub notifications: Family<Destination, Counter>,
    /// Notifier backlog: new alerts, groups waiting, pending, dead.
    pub notify_backlog: Family<Outcome, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("leadgate");
        let http_seconds = Family::<Route, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.000_25, 2.0, 16))) as fn() -> Histogram,
        );
        let processing_seconds = Family::<Tenant, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.000_5, 2.0, 18))) as fn() -> Histogram,
        );
        let m = Metrics {
            http_requests: Family::default(),
            http_seconds: http_seconds.clone(),
            validation: Family::default(),
            duplicates: Family::default(),
            leads: Family::default(),
            review_decisions: Family::default(),
            enrichment: Family::default(),
            handoffs: Family::default(),
            signatures_refused: Family::default(),
            connections_refused: Counter::default(),
            processing_seconds: processing_seconds.clone(),
            review_open: Family::default(),
            review_escalated: Family::default(),
            review_overdue: Family::default(),
            review_sla_adherence: Family::default(),
            outbox: Family::default(),
            handoff_failure_rate: Family::default(),
            intake_pending: Family::default(),
            enrichment_latency_ms: Family::default(),
            enrichment_success: Family::default(),
            assignments: Family::default(),
            rep_assigned: Family::default(),
            rep_open: Family::default(),
            rep_share: Family::default(),
            rep_weight_share: Family::default(),
            rep_sla_adherence: Family::default(),
            timers_pending: Family::default(),
            alerts: Family::default(),
            notifications: Family::default(),
            notify_backlog: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests by route and status code",
            m.http_requests.clone(),
        );
        registry.register(
            "http_request_seconds",
            "HTTP request latency by route",
            http_seconds,
        );
        registry.register("leads", "Leads processed by the pipeline", m.leads.clone());
        registry.register(
            "connections_refused",
            "Connections refused because their client held serve.max_connections_per_client already",
            m.connections_refused.clone(),
        );
        registry.register(
            "validation",
            "Leads by validation outcome (pass, review, reject, exception)",
            m.validation.clone(),
        );
        registry.register(
            "duplicates",
            "Leads matched to a stored lead, by decision (merge, link, review)",
            m.duplicates.clone(),
        );
        registry.register(
            "review_decisions",
            "Reviewers' decisions (merge, distinct, accept, reject)",
            m.review_decisions.clone(),
        );
        registry.register(
            "enrichment",
            "Leads by enrichment status",
            m.enrichment.clone(),
        );
        registry.register(
            "handoffs",
            "CRM handoff attempts by result (delivered, retry, failed, dead)",
            m.handoffs.clone(),
        );
        registry.register(
            "signatures_refused",
            "Webhook requests refused for their signature, by code",
            m.signatures_refused.clone(),
        );
        registry.register(
            "processing_seconds",
            "Seconds from a request's arrival to its leads being recorded",
            processing_seconds,
        );
        registry.register(
            "review_open",
            "Undecided review queue items",
            m.review_open.clone(),
        );
        registry.register(
            "review_escalated",
            "Undecided review items past the escalation threshold and escalated",
            m.review_escalated.clone(),
        );
        registry.register(
            "review_overdue",
            "Undecided review items older than the escalation threshold",
            m.review_overdue.clone(),
        );
        registry.register(
            "review_sla_adherence",
            "Share of decided review items decided by a person before they were escalated",
            m.review_sla_adherence.clone(),
        );
        registry.register(
            "outbox",
            "CRM handoffs by state (pending, delivered, failed, dead)",
            m.outbox.clone(),
        );
        registry.register(
            "handoff_failure_rate",
            "Share of finished handoffs that failed or were dead-lettered",
            m.handoff_failure_rate.clone(),
        );
        registry.register(
            "intake_pending",
            "Accepted requests not processed yet",
            m.intake_pending.clone(),
        );
        registry.register(
            "enrichment_latency_ms",
            "Enrichment provider latency quantiles (milliseconds)",
            m.enrichment_latency_ms.clone(),
        );
        registry.register(
            "enrichment_success",
            "Enrichment provider success rate (answered lookups / lookups sent)",
            m.enrichment_success.clone(),
        );
        registry.register(
            "assignments",
            "Qualified leads routed, by the step that decided (owner, account, territory, default, fallback, queue)",
            m.assignments.clone(),
        );
        registry.register(
            "rep_assigned",
            "Leads ever assigned to each rep",
            m.rep_assigned.clone(),
        );
        registry.register(
            "rep_open",
            "Leads assigned to each rep and not yet touched",
            m.rep_open.clone(),
        );
        registry.register(
            "rep_share",
            "Each rep's share of the leads assigned in their first team",
            m.rep_share.clone(),
        );
        registry.register(
            "rep_weight_share",
            "Each rep's weight as a share of their first team's weights (what rep_share follows under weighted routing)",
            m.rep_weight_share.clone(),
        );
        registry.register(
            "rep_sla_adherence",
            "Share of each rep's leads first touched within the response SLA (of those touched or missed)",
            m.rep_sla_adherence.clone(),
        );
        registry.register(
            "timers_pending",
            "Response-SLA and routing timers not yet fired",
            m.timers_pending.clone(),
        );
        registry.register(
            "alerts",
            "Alerts the notifier filed, by what became of them (routed, unrouted, silenced, inhibited)",
            m.alerts.clone(),
        );
        registry.register(
            "notifications",
            "Notifications by destination and outcome (sent, dead, failed)",
            m.notifications.clone(),
        );
        registry.register(
            "notify_backlog",
            "What the notifier has waiting: new alerts, groups waiting to flush, pending and dead notifications",
            m.notify_backlog.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn count(&self, family: &Family<Outcome, Counter>, tenant: &str, outcome: &str) {
        family
            .get_or_create(&Outcome {
                tenant: tenant.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Counts a routing decision.
    pub fn count_assignment(&self, tenant: &str, d: &leadgate_routing::Decision) {
        self.count(
            &self.assignments,
            tenant,
            leadgate_pipeline::assign::step_name(d.step),
        );
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
