//! The notifier's passes over the store, run by the service's scheduler
//! and `leadgate tick`: new alerts are filed into groups (or muted by a
//! silence, inhibited by an active alert, or found to be repeats), due
//! groups become notifications in the outbox (or are held through quiet
//! hours into a digest), and due notifications are delivered at each
//! channel's pace, retried with backoff, and dead-lettered when attempts
//! run out. Every step is claimed, so hosts sharing a store do each once;
//! a notification is queued once under its idempotency key, and marked
//! sent as soon as its destination accepts it.
//!
//! The policy (routes, groups, fingerprints, inhibition, quiet hours) is
//! `leadgate_notify`'s; this module reads and writes the store.

use crate::config::Config;
use anyhow::{Context, Result};
use leadgate_notify::{
    Alert, Deliver, Delivery, LeadView, Outcome, Policy, Rendered, Silence, Transport, fingerprint,
};
use leadgate_store::Store;
use leadgate_store::notify::{AlertRow, Filed, Member, NewNotification};
use leadgate_store::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Alerts filed, groups flushed and notifications tried per pass, at most.
const BATCH: usize = 200;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pass {
    /// Alerts filed into at least one group.
    pub routed: u64,
    pub unrouted: u64,
    pub silenced: u64,
    pub inhibited: u64,
    /// Messages queued (one per group flushed).
    pub queued: u64,
    /// Groups held through quiet hours.
    pub held: u64,
    pub sent: u64,
    pub retried: u64,
    /// Waiting for their channel's pace.
    pub paced: u64,
    pub dead: u64,
    pub failed: u64,
    /// Per destination: sent, dead or failed.
    pub outcomes: BTreeMap<(String, &'static str), u64>,
}

impl Pass {
    pub fn any(&self) -> bool {
        self.routed
            + self.unrouted
            + self.silenced
            + self.inhibited
            + self.queued
            + self.held
            + self.sent
            + self.retried
            + self.dead
            + self.failed
            > 0
    }
}

/// A tenant's notifier: its policy and transport.
pub struct Notifier {
    policy: Policy,
    transport: Box<dyn Deliver + Send + Sync>,
}

impl Notifier {
    /// The tenant's notifier; none when `[alerts]` has no routes.
    pub fn open(config: &Config) -> Result<Option<Notifier>> {
        if !config.alerts.enabled() {
            return Ok(None);
        }
        Ok(Some(Notifier::with_transport(
            config,
            Box::new(Transport::new(&config.alerts)),
        )?))
    }

    /// The notifier with another transport (tests).
    pub fn with_transport(
        config: &Config,
        transport: Box<dyn Deliver + Send + Sync>,
    ) -> Result<Notifier> {
        Ok(Notifier {
            policy: Policy::new(&config.alerts)?,
            transport,
        })
    }

    /// Files new alerts, flushes due groups and delivers due notifications.
    pub fn pass(&self, config: &Config, store: &mut Store, now: i64) -> Result<Pass> {
        let mut pass = Pass::default();
        self.file(config, store, now, &mut pass)?;
        self.flush(config, store, now, &mut pass)?;
        self.deliver(config, store, now, &mut pass)?;
        Ok(pass)
    }

    fn active_ms(&self) -> i64 {
        i64::from(self.policy.config.active_minutes) * 60_000
    }

    fn alert(&self, row: &AlertRow) -> Alert {
        let mut labels: BTreeMap<String, String> = row
            .labels
            .as_deref()
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or_default();
        labels.insert("kind".into(), row.kind.clone());
        labels
            .entry("lead".into())
            .or_insert_with(|| row.subject.clone());
        Alert {
            id: row.id,
            kind: row.kind.clone(),
            labels,
            message: row.message.clone(),
            created_at: row.created_at,
            ends_at: row
                .ends_at
                .unwrap_or_else(|| row.created_at.saturating_add(self.active_ms())),
        }
    }

    /// Why `alert` is not to be sent now: a silence, or an active alert
    /// that inhibits it. When inhibition is not by lead, the tenant's
    /// active alerts are read once per pass (`tenant_active`).
    fn muted(
        &self,
        config: &Config,
        store: &Store,
        alert: &Alert,
        silences: &[Silence],
        tenant_active: &mut Option<Vec<Alert>>,
        now: i64,
    ) -> Result<Option<&'static str>> {
        if silences.iter().any(|s| s.mutes(alert, now)) {
            return Ok(Some("silenced"));
        }
        if !self.policy.may_be_inhibited(alert) {
            return Ok(None);
        }
        let read = |subject: Option<&str>| -> Result<Vec<Alert>> {
            Ok(store
                .active_alerts(&config.tenant, subject, self.active_ms(), now, 1_000)?
                .iter()
                .map(|r| self.alert(r))
                .collect())
        };
        let inhibited = if self.policy.inhibition_by_lead() {
            let active = read(alert.labels.get("lead").map(String::as_str))?;
            self.policy.inhibitor(alert, &active, now).is_some()
        } else {
            if tenant_active.is_none() {
                *tenant_active = Some(read(None)?);
            }
            let active = tenant_active.as_deref().unwrap_or_default();
            self.policy.inhibitor(alert, active, now).is_some()
        };
        Ok(inhibited.then_some("inhibited"))
    }

    fn file(&self, config: &Config, store: &mut Store, now: i64, pass: &mut Pass) -> Result<()> {
        let claim = crate::claim(&config.serve);
        let rows =
            store.claim_new_alerts(&config.tenant, claim.holder, claim.lease_ms, now, BATCH)?;
        if rows.is_empty() {
            return Ok(());
        }
        let silences = silences(config, store, now)?;
        let mut tenant_active = None;
        let slack_ids = slack_ids(config, store)?;
        // Owned strings the members borrow.
        struct Plan {
            alert: i64,
            state: &'static str,
            ends_at: i64,
            fingerprint: String,
            members: Vec<(usize, String, String, String, String)>,
        }
        let mut plans = Vec::with_capacity(rows.len());
        for row in &rows {
            let alert = self.alert(row);
            let fp = fingerprint(&alert.labels);
            let mut plan = Plan {
                alert: alert.id,
                state: "routed",
                ends_at: alert.ends_at,
                fingerprint: fp,
                members: Vec::new(),
            };
            if let Some(why) =
                self.muted(config, store, &alert, &silences, &mut tenant_active, now)?
            {
                plan.state = why;
                plans.push(plan);
                continue;
            }
            for m in self.policy.routes_for(&alert) {
                let Some(dest) = self.policy.config.destinations.get(&m.destination) else {
                    continue;
                };
                let (name, channel) = if dest.to_owner() {
                    match alert.labels.get("rep").and_then(|r| slack_ids.get(r)) {
                        Some(id) => (m.destination.clone(), id.clone()),
                        None => match &dest.fallback {
                            // The fallback's own channel, when it has one.
                            Some(f) => (
                                f.clone(),
                                self.policy
                                    .config
                                    .destinations
                                    .get(f)
                                    .and_then(|d| d.channel.clone())
                                    .unwrap_or_default(),
                            ),
                            None => {
                                tracing::warn!(alert = alert.id, destination = %m.destination,
                                    "the alert's rep has no Slack id and the destination no fallback");
                                continue;
                            }
                        },
                    }
                } else {
                    (
                        m.destination.clone(),
                        dest.channel.clone().unwrap_or_default(),
                    )
                };
                plan.members
                    .push((m.route, m.route_name, name, channel, m.group_key));
            }
            if plan.members.is_empty() {
                plan.state = "unrouted";
            }
            plans.push(plan);
        }
        let filed: Vec<Filed<'_>> = plans
            .iter()
            .map(|p| Filed {
                alert_id: p.alert,
                state: p.state,
                ends_at: p.ends_at,
                members: p
                    .members
                    .iter()
                    .filter_map(|(i, route, dest, channel, key)| {
                        let r = self.policy.route(*i)?;
                        Some(Member {
                            route,
                            destination: dest,
                            channel,
                            group_key: key,
                            fingerprint: &p.fingerprint,
                            group_wait_ms: ms(r.group_wait_seconds),
                            group_interval_ms: ms(r.group_interval_seconds),
                            repeat_ms: ms(r.repeat_interval_seconds),
                        })
                    })
                    .collect(),
            })
            .collect();
        store.file_alerts(&config.tenant, &filed, now)?;
        for p in &plans {
            match p.state {
                "routed" => pass.routed += 1,
                "silenced" => pass.silenced += 1,
                "inhibited" => pass.inhibited += 1,
                _ => pass.unrouted += 1,
            }
        }
        Ok(())
    }

    fn flush(&self, config: &Config, store: &mut Store, now: i64, pass: &mut Pass) -> Result<()> {
        let claim = crate::claim(&config.serve);
        let groups =
            store.claim_due_groups(&config.tenant, claim.holder, claim.lease_ms, now, BATCH)?;
        if groups.is_empty() {
            return Ok(());
        }
        let silences = silences(config, store, now)?;
        let mut tenant_active = None;
        let reps = rep_names(config, store)?;
        for g in groups {
            let Some(route) = self.policy.route_index(&g.route) else {
                // The route is gone from the configuration.
                let members = store.group_members(g.id)?;
                let dropped: Vec<(i64, &str)> =
                    members.iter().map(|(a, _)| (a.id, "unrouted")).collect();
                store.flush_group(&g, &dropped, None, now)?;
                pass.unrouted += dropped.len() as u64;
                continue;
            };
            if let Some(until) = self.policy.quiet_until(route, now) {
                store.hold_group(g.id, until)?;
                pass.held += 1;
                continue;
            }
            let members = store.group_members(g.id)?;
            let mut dropped: Vec<(i64, &str)> = Vec::new();
            let mut kept: Vec<(Alert, Option<LeadView>)> = Vec::new();
            for (row, _repeats) in &members {
                let alert = self.alert(row);
                match self.muted(config, store, &alert, &silences, &mut tenant_active, now)? {
                    Some(why) => {
                        dropped.push((alert.id, why));
                        match why {
                            "silenced" => pass.silenced += 1,
                            _ => pass.inhibited += 1,
                        }
                    }
                    None => {
                        let lead = lead_view(config, store, &reps, &row.subject)?;
                        kept.push((alert, lead));
                    }
                }
            }
            if kept.is_empty() {
                store.flush_group(&g, &dropped, None, now)?;
                continue;
            }
            let rendered = leadgate_notify::render(
                &config.tenant,
                &g.route,
                &g.group_key,
                &kept,
                self.policy.config.link.as_deref(),
                g.held,
            );
            let body = serde_json::to_string(&rendered)?;
            let ids: Vec<i64> = kept.iter().map(|(a, _)| a.id).collect();
            store.flush_group(
                &g,
                &dropped,
                Some(&NewNotification {
                    title: &rendered.title,
                    body: &body,
                    alert_ids: &ids,
                }),
                now,
            )?;
            pass.queued += 1;
        }
        Ok(())
    }

    fn deliver(&self, config: &Config, store: &mut Store, now: i64, pass: &mut Pass) -> Result<()> {
        let claim = crate::claim(&config.serve);
        let due = store.claim_due_notifications(
            &config.tenant,
            claim.holder,
            claim.lease_ms,
            now,
            BATCH,
        )?;
        let tenant = config.tenant.as_str();
        for n in due {
            let Some(dest) = self.policy.config.destinations.get(&n.destination) else {
                store.notification_failed(
                    n.id,
                    "failed",
                    &format!("no destination is named {:?} any more", n.destination),
                    now,
                )?;
                pass.failed += 1;
                continue;
            };
            let pace_key = format!("{}/{}", n.destination, n.channel);
            if let Some(at) = store.pace(tenant, &pace_key)?
                && at > now
            {
                store.notification_retry(n.id, at, None, false)?;
                pass.paced += 1;
                continue;
            }
            let rendered: Rendered = serde_json::from_str(&n.body)
                .with_context(|| format!("notification {} is not a message", n.id))?;
            let outcome = self.transport.deliver(&Delivery {
                destination: dest,
                channel: (!n.channel.is_empty()).then_some(n.channel.as_str()),
                rendered: &rendered,
                idempotency_key: &n.idem_key,
                now_ms: now,
            });
            let interval = i64::try_from(dest.min_interval_ms()).unwrap_or(i64::MAX);
            match outcome {
                Outcome::Sent => {
                    store.notification_sent(n.id, now)?;
                    if interval > 0 {
                        store.set_pace(tenant, &pace_key, now.saturating_add(interval))?;
                    }
                    pass.sent += 1;
                    *pass
                        .outcomes
                        .entry((n.destination.clone(), "sent"))
                        .or_default() += 1;
                }
                Outcome::Retry { error, retry_after } => {
                    let retry_after = retry_after
                        .as_deref()
                        .and_then(leadgate_providers::retry::parse_retry_after);
                    if n.attempts + 1 >= i64::from(dest.max_attempts) {
                        let error = format!(
                            "gave up after {} attempts; last error: {error}; `leadgate notifications retry` sends it again",
                            n.attempts + 1
                        );
                        store.notification_failed(n.id, "dead", &error, now)?;
                        tracing::warn!(tenant, destination = %n.destination, notification = n.id, error, "notification dead-lettered");
                        pass.dead += 1;
                        *pass
                            .outcomes
                            .entry((n.destination.clone(), "dead"))
                            .or_default() += 1;
                        continue;
                    }
                    if let Some(wait) = retry_after {
                        // The channel asked everyone to wait.
                        let at =
                            now.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
                        store.set_pace(tenant, &pace_key, at)?;
                    }
                    let wait = leadgate_providers::retry::delay(
                        u32::try_from(n.attempts.clamp(0, 31)).unwrap_or(31),
                        Duration::from_millis(dest.backoff_ms),
                        Duration::from_millis(dest.max_backoff_ms),
                        retry_after,
                        &mut rand::rng(),
                    );
                    let next =
                        now.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
                    store.notification_retry(n.id, next, Some(&error), true)?;
                    pass.retried += 1;
                }
                Outcome::Refused { error } => {
                    store.notification_failed(n.id, "failed", &error, now)?;
                    tracing::warn!(tenant, destination = %n.destination, notification = n.id, error, "a destination refused a notification");
                    pass.failed += 1;
                    *pass
                        .outcomes
                        .entry((n.destination.clone(), "failed"))
                        .or_default() += 1;
                }
            }
        }
        Ok(())
    }
}

fn ms(seconds: u64) -> i64 {
    i64::try_from(seconds.saturating_mul(1_000)).unwrap_or(i64::MAX)
}

/// The tenant's silences in force at `now`.
pub fn silences(config: &Config, store: &Store, now: i64) -> Result<Vec<Silence>> {
    let mut out = Vec::new();
    for row in store.silences(&config.tenant, false, now)? {
        match serde_json::from_str(&row.matchers) {
            Ok(matchers) => out.push(Silence {
                id: row.id,
                matchers,
                starts_at: row.starts_at,
                ends_at: row.ends_at,
                comment: row.comment,
                created_by: row.created_by,
            }),
            Err(e) => {
                tracing::warn!(silence = row.id, error = %e, "a silence's matchers cannot be read")
            }
        }
    }
    Ok(out)
}

fn reps(config: &Config, store: &Store) -> Result<Vec<leadgate_routing::Rep>> {
    if !config.routing.enabled {
        return Ok(Vec::new());
    }
    leadgate_pipeline::assign::reps_of(&store.reps(&config.tenant)?)
}

fn slack_ids(config: &Config, store: &Store) -> Result<HashMap<String, String>> {
    Ok(reps(config, store)?
        .into_iter()
        .filter_map(|r| Some((r.id, r.slack_id?)))
        .collect())
}

fn rep_names(config: &Config, store: &Store) -> Result<HashMap<String, String>> {
    Ok(reps(config, store)?
        .into_iter()
        .map(|r| (r.id, r.name))
        .collect())
}

/// What a message says of `lead`: who, company, score and reasons, owner.
fn lead_view(
    config: &Config,
    store: &Store,
    reps: &HashMap<String, String>,
    lead: &str,
) -> Result<Option<LeadView>> {
    let Some(row) = store.lead_row(lead)? else {
        return Ok(None);
    };
    let l: serde_json::Value = row
        .normalized
        .as_deref()
        .and_then(|n| serde_json::from_str(n).ok())
        .unwrap_or_default();
    let text = |k: &str| {
        l.get(k)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let name = text("full_name").or_else(|| {
        let parts: Vec<String> = [text("first_name"), text("last_name")]
            .into_iter()
            .flatten()
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    });
    let score: Option<leadgate_lead::score::Scored> = store
        .stored_score(lead)?
        .and_then(|s| serde_json::from_str(&s.detail).ok());
    let mut reasons: Vec<&leadgate_lead::score::Reason> = score
        .as_ref()
        .map(|s| s.reasons.iter().collect())
        .unwrap_or_default();
    reasons.sort_by(|a, b| b.contribution.total_cmp(&a.contribution));
    let owner = if config.routing.enabled {
        store
            .assignment(&config.tenant, lead)?
            .and_then(|a| a.rep_id)
            .map(|r| reps.get(&r).cloned().unwrap_or(r))
    } else {
        None
    };
    Ok(Some(LeadView {
        id: lead.to_string(),
        name,
        email: text("email"),
        company: text("company"),
        score: score.as_ref().map(|s| f64::from(s.total)),
        grade: score.as_ref().map(|s| s.grade.clone()),
        reasons: reasons
            .iter()
            .take(3)
            .filter(|r| r.contribution > 0.0)
            .map(|r| r.detail.clone())
            .collect(),
        owner,
    }))
}

/// Ends the lead's routing alerts (a first touch answers them).
pub fn resolve_on_touch(config: &Config, store: &Store, lead: &str, now: i64) -> Result<()> {
    let active_ms = i64::from(config.alerts.active_minutes) * 60_000;
    store.resolve_alerts(
        &config.tenant,
        lead,
        &["routing.", "lead.hot"],
        active_ms,
        now,
    )?;
    Ok(())
}

/// A silence refused, naming the field and the reason.
#[derive(Debug, thiserror::Error)]
pub enum SilenceRefused {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("silence {0} is not this tenant's, or has ended")]
    NotFound(i64),
}

impl SilenceRefused {
    fn invalid(field: &'static str, reason: impl Into<String>) -> SilenceRefused {
        SilenceRefused::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// A silence to add.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    /// Label → matcher (`value`, `!value`, `prefix*`, `*suffix`).
    pub matchers: BTreeMap<String, String>,
    /// From (milliseconds since the epoch); now when not given.
    #[serde(default)]
    pub starts_at: Option<i64>,
    /// Until (milliseconds since the epoch), or `duration` from the start.
    #[serde(default)]
    pub ends_at: Option<i64>,
    /// `2h`, `30m`, `1d`, `PT2H`.
    #[serde(default)]
    pub duration: Option<String>,
    pub comment: String,
    pub created_by: String,
}

/// A silence as the API and CLI show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SilenceView {
    pub id: i64,
    pub matchers: BTreeMap<String, String>,
    pub starts_at: i64,
    pub ends_at: i64,
    pub comment: String,
    pub created_by: String,
    pub created_at: i64,
    /// `pending` (not started), `active` or `expired` at the time asked.
    pub state: &'static str,
}

fn view(row: leadgate_store::notify::SilenceRow, now: i64) -> SilenceView {
    let state = if row.ends_at <= now {
        "expired"
    } else if row.starts_at > now {
        "pending"
    } else {
        "active"
    };
    SilenceView {
        id: row.id,
        matchers: serde_json::from_str(&row.matchers).unwrap_or_default(),
        starts_at: row.starts_at,
        ends_at: row.ends_at,
        comment: row.comment,
        created_by: row.created_by,
        created_at: row.created_at,
        state,
    }
}

/// Adds a silence after checking it: matchers that parse (at least one),
/// an end after its start and after now, a comment and an author.
pub fn add_silence(
    config: &Config,
    store: &mut Store,
    s: &NewSilence,
    now: i64,
) -> Result<SilenceView> {
    if s.matchers.is_empty() {
        return Err(
            SilenceRefused::invalid("matchers", "a silence needs at least one matcher").into(),
        );
    }
    let mut parsed = leadgate_notify::Matchers::new();
    for (k, v) in &s.matchers {
        let m = leadgate_notify::Matcher::parse(v)
            .map_err(|e| SilenceRefused::invalid("matchers", e))?;
        parsed.insert(k.clone(), m);
    }
    leadgate_notify::policy::check_matchers(&parsed)
        .map_err(|e| SilenceRefused::invalid("matchers", e))?;
    if s.matchers.values().all(|v| v == "*" || v.is_empty()) {
        return Err(SilenceRefused::invalid(
            "matchers",
            "a silence must match something narrower than every alert",
        )
        .into());
    }
    if s.comment.trim().is_empty() {
        return Err(
            SilenceRefused::invalid("comment", "say why (it is shown with the silence)").into(),
        );
    }
    if s.created_by.trim().is_empty() {
        return Err(SilenceRefused::invalid("created_by", "say who").into());
    }
    let starts = s.starts_at.unwrap_or(now).max(0);
    let ends = match (s.ends_at, s.duration.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(
                SilenceRefused::invalid("duration", "give ends_at or duration, not both").into(),
            );
        }
        (Some(e), None) => e,
        (None, Some(d)) => {
            let d: jiff::SignedDuration = d.parse().map_err(|e| {
                SilenceRefused::invalid(
                    "duration",
                    format!("{d:?} is not a duration (2h, 30m, 1d): {e}"),
                )
            })?;
            let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            if ms <= 0 {
                return Err(SilenceRefused::invalid("duration", "must be positive").into());
            }
            starts.saturating_add(ms)
        }
        (None, None) => {
            return Err(SilenceRefused::invalid("ends_at", "give ends_at or duration").into());
        }
    };
    if ends <= starts {
        return Err(SilenceRefused::invalid("ends_at", "must come after the start").into());
    }
    if ends <= now {
        return Err(SilenceRefused::invalid("ends_at", "is in the past").into());
    }
    let matchers = serde_json::to_string(&s.matchers)?;
    let id = store.add_silence(
        &config.tenant,
        &leadgate_store::notify::NewSilence {
            matchers: &matchers,
            starts_at: starts,
            ends_at: ends,
            comment: s.comment.trim(),
            created_by: s.created_by.trim(),
        },
        now,
    )?;
    Ok(view(
        leadgate_store::notify::SilenceRow {
            id,
            matchers,
            starts_at: starts,
            ends_at: ends,
            comment: s.comment.trim().to_string(),
            created_by: s.created_by.trim().to_string(),
            created_at: now,
        },
        now,
    ))
}

/// The tenant's silences: those not ended, or all.
pub fn list_silences(
    config: &Config,
    store: &Store,
    all: bool,
    now: i64,
) -> Result<Vec<SilenceView>> {
    Ok(store
        .silences(&config.tenant, all, now)?
        .into_iter()
        .map(|r| view(r, now))
        .collect())
}

/// Ends a silence now.
pub fn expire_silence(config: &Config, store: &mut Store, id: i64, now: i64) -> Result<()> {
    if store.expire_silence(&config.tenant, id, now)? {
        Ok(())
    } else {
        Err(SilenceRefused::NotFound(id).into())
    }
}
