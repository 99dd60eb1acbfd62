//! Routing's verbs, shared by the HTTP API and the CLI (`leadgate reps`,
//! `leadgate route`, `leadgate touch`): the reps with their load and SLA
//! record, changing a rep without a restart, "who would get this lead,
//! and why", routing a lead now (or to a named rep), and recording a
//! first touch. The decisions are `leadgate_routing`'s; the records and
//! timers are `leadgate_pipeline::assign`'s.

use crate::config::Config;
use anyhow::{Result, bail};
use leadgate_pipeline::assign::{self, Assigner};
use leadgate_routing::{Decision, Rep, Step, Subject};
use leadgate_store::Store;
use leadgate_store::prelude::*;
use leadgate_store::routing::{AssignmentRow, NewAssignment, RepRow};
use serde::Serialize;

/// Why a routing request was refused.
#[derive(Debug, thiserror::Error)]
pub enum RoutingRefused {
    #[error("routing is off for tenant {0}: set [routing] enabled = true")]
    Off(String),
    #[error("no rep {0:?}")]
    NoRep(String),
    #[error("no lead {0}")]
    NoLead(String),
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("lead {0} has no assignment awaiting a first touch")]
    NothingToTouch(String),
}

impl RoutingRefused {
    pub fn status(&self) -> u16 {
        match self {
            RoutingRefused::Off(_) => 409,
            RoutingRefused::NoRep(_) | RoutingRefused::NoLead(_) => 404,
            RoutingRefused::Invalid { .. } => 422,
            RoutingRefused::NothingToTouch(_) => 409,
        }
    }
    pub fn code(&self) -> &'static str {
        match self {
            RoutingRefused::Off(_) => "routing.off",
            RoutingRefused::NoRep(_) => "rep.not_found",
            RoutingRefused::NoLead(_) => "lead.not_found",
            RoutingRefused::Invalid { .. } => "body.invalid",
            RoutingRefused::NothingToTouch(_) => "lead.not_awaiting_touch",
        }
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> anyhow::Error {
    RoutingRefused::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
    .into()
}

fn enabled(config: &Config) -> Result<()> {
    if !config.routing.enabled {
        return Err(RoutingRefused::Off(config.tenant.clone()).into());
    }
    Ok(())
}

/// A rep with their load and response record.
#[derive(Debug, Clone, Serialize)]
pub struct RepView {
    #[serde(flatten)]
    pub rep: Rep,
    pub assigned_today: i64,
    pub open: i64,
    pub assigned_total: i64,
    /// Their share of the leads assigned in their first team.
    pub share: f64,
    /// Their weight's share of that team's weights.
    pub weight_share: f64,
    pub touched: i64,
    pub breached: i64,
    /// Touched within the SLA, of those touched or missed (1 with none).
    pub sla_adherence: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_assigned_at: Option<i64>,
}

/// The tenant's reps (seeded from `[[routing.reps]]` on first use).
pub fn reps(config: &Config, store: &mut Store, now: i64) -> Result<Vec<RepView>> {
    assign::seed(config, store, now)?;
    let rows = store.reps(&config.tenant)?;
    let reps = assign::reps_of(&rows)?;
    let round = |x: f64| (x * 10_000.0).round() / 10_000.0;
    Ok(views(&rows, &reps, now)
        .into_iter()
        .map(|v| RepView {
            share: round(v.share),
            weight_share: round(v.weight_share),
            sla_adherence: round(v.sla_adherence),
            ..v
        })
        .collect())
}

/// Each rep's load, share of their first team's leads against their
/// weight's share, and SLA record, from the stored rows (`reps` are
/// `rows` read, in the same order).
pub fn views(rows: &[RepRow], reps: &[Rep], now: i64) -> Vec<RepView> {
    let team_of = |r: &Rep| r.teams.first().cloned().unwrap_or_default();
    // Per team: leads assigned, weights.
    let mut teams: std::collections::HashMap<String, (i64, u64)> = Default::default();
    for (row, rep) in rows.iter().zip(reps) {
        let t = teams.entry(team_of(rep)).or_default();
        t.0 += row.total;
        t.1 += u64::from(rep.weight);
    }
    rows.iter()
        .zip(reps)
        .map(|(row, rep)| {
            let (total, weights) = teams.get(&team_of(rep)).copied().unwrap_or_default();
            let judged = row.touched + row.breached;
            // Yesterday's count is not today's.
            let today =
                if leadgate_routing::local_day(&rep.timezone, now).as_ref() == Some(&row.day) {
                    row.today
                } else {
                    0
                };
            RepView {
                rep: rep.clone(),
                assigned_today: today,
                open: row.open,
                assigned_total: row.total,
                share: ratio(row.total as f64, total as f64, 0.0),
                weight_share: ratio(f64::from(rep.weight), weights as f64, 0.0),
                touched: row.touched,
                breached: row.breached,
                sla_adherence: ratio(row.touched_in_sla as f64, judged as f64, 1.0),
                last_assigned_at: row.last_at,
            }
        })
        .collect()
}

fn ratio(a: f64, b: f64, none: f64) -> f64 {
    if b > 0.0 { a / b } else { none }
}

/// Adds or replaces a rep (their counters are kept); every team named
/// must be a team of `[routing.teams]`. True when the rep is new.
pub fn set_rep(config: &Config, store: &mut Store, rep: &Rep, now: i64) -> Result<bool> {
    rep.check().map_err(|e| match e {
        leadgate_routing::RoutingError::Rep { field, reason, .. } => invalid(&field, reason),
        other => invalid("rep", other.to_string()),
    })?;
    for t in &rep.teams {
        if !config.routing.teams.contains_key(t) {
            return Err(invalid(
                "teams",
                format!("{t:?} is not a team of [routing.teams]"),
            ));
        }
    }
    assign::seed(config, store, now)?;
    Ok(store.put_rep(&config.tenant, &rep.id, &serde_json::to_string(rep)?, now)?)
}

/// A stored rep by id.
pub fn rep(config: &Config, store: &mut Store, id: &str, now: i64) -> Result<Rep> {
    assign::seed(config, store, now)?;
    let rows = store.reps(&config.tenant)?;
    let Some(row) = rows.iter().find(|r| r.id == id) else {
        return Err(RoutingRefused::NoRep(id.to_string()).into());
    };
    Ok(assign::reps_of(std::slice::from_ref(row))?.remove(0))
}

/// Marks a rep away (until a time, or until `back`), or back.
pub fn set_away(
    config: &Config,
    store: &mut Store,
    id: &str,
    away: bool,
    until: Option<i64>,
    now: i64,
) -> Result<Rep> {
    let mut r = rep(config, store, id, now)?;
    if let Some(u) = until
        && u <= now
    {
        return Err(invalid("until", "must be in the future"));
    }
    r.away = away;
    r.away_until = if away { until } else { None };
    store.put_rep(&config.tenant, &r.id, &serde_json::to_string(&r)?, now)?;
    Ok(r)
}

/// What a dry run is asked about: a stored lead, or a lead's routing
/// fields as given.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DryRun {
    #[serde(default)]
    pub lead_id: Option<String>,
    #[serde(default)]
    pub lead: Option<Subject>,
}

/// Who would get the lead now, and why; nothing is recorded.
pub fn dry_run(config: &Config, store: &mut Store, ask: &DryRun, now: i64) -> Result<Decision> {
    enabled(config)?;
    let subject = match (&ask.lead_id, &ask.lead) {
        (Some(id), None) => {
            if !lead_of_tenant(store, &config.tenant, id)? {
                return Err(RoutingRefused::NoLead(id.clone()).into());
            }
            assign::facts(config, store, id)?.subject
        }
        (None, Some(s)) => s.clone(),
        _ => {
            return Err(invalid(
                "lead_id",
                "give either lead_id (a stored lead) or lead (its routing fields)",
            ));
        }
    };
    let mut a = Assigner::open(config, store, now)?;
    a.dry_run(config, store, &subject, now)
}

fn lead_of_tenant(store: &Store, tenant: &str, id: &str) -> Result<bool> {
    Ok(store.lead_row(id)?.is_some_and(|r| r.tenant == tenant))
}

/// Routes a stored lead now (again, if it was assigned), or gives it to
/// rep `to` by hand; its owner goes to the CRM.
pub fn route_now(
    config: &Config,
    store: &mut Store,
    lead: &str,
    to: Option<&str>,
    by: &str,
    now: i64,
) -> Result<Decision> {
    enabled(config)?;
    let tenant = config.tenant.as_str();
    if !lead_of_tenant(store, tenant, lead)? {
        return Err(RoutingRefused::NoLead(lead.to_string()).into());
    }
    let mut a = Assigner::open(config, store, now)?;
    let decision = match to {
        None => {
            let routed = a.assign(config, store, &[(lead.to_string(), Vec::new())], by, now)?;
            match routed.into_iter().next() {
                Some(r) => r.decision,
                None => bail!("lead {lead} was not routed"),
            }
        }
        Some(rep) => {
            let Some(r) = a.router().rep(rep).cloned() else {
                return Err(RoutingRefused::NoRep(rep.to_string()).into());
            };
            let facts = assign::facts(config, store, lead)?;
            let sla_minutes = config
                .routing
                .sla
                .minutes_for(facts.subject.grade.as_deref());
            let d = Decision {
                rep: Some(r.id.clone()),
                team: r.teams.first().cloned().unwrap_or_default(),
                step: Step::Manual,
                rule: format!("assigned by hand by {by}"),
                distribution: String::new(),
                sla_minutes,
                candidates: Vec::new(),
                more_candidates: 0,
            };
            let due = now + i64::from(sla_minutes) * 60_000;
            let day = a.router().local_day(&r.id, now).unwrap_or_default();
            // The next turn: round robin goes on after the rep chosen by hand.
            let turn = store
                .reps(tenant)?
                .iter()
                .map(|r| r.turn)
                .max()
                .unwrap_or(0)
                + 1;
            store.assign(
                tenant,
                &NewAssignment {
                    lead_id: lead,
                    rep_id: Some(&r.id),
                    rep_day: &day,
                    turn,
                    team: &d.team,
                    step: "manual",
                    state: "open",
                    explanation: &serde_json::to_string(&d)?,
                    domain: facts.domain.as_deref(),
                    company_key: facts.company_key.as_deref(),
                    sla_due_at: Some(due),
                    assigned_by: by,
                    timer: Some(("sla", due)),
                },
                now,
            )?;
            d
        }
    };
    if decision.rep.is_some() {
        assign::hand_off_owner(config, store, lead, now)?;
    }
    Ok(decision)
}

/// Routes every accepted lead of the tenant that qualifies for handoff
/// (`[crm] handoff`) and was never assigned — the batch path, for leads
/// recorded by `leadgate run` — in rounds of `round`, calling `progress`
/// after each; those who get a rep are handed off with their owner.
pub fn route_unassigned(
    config: &Config,
    store: &mut Store,
    by: &str,
    now: i64,
    round: usize,
    mut progress: impl FnMut(&[assign::Routed]),
) -> Result<Vec<assign::Routed>> {
    enabled(config)?;
    let mut a = Assigner::open(config, store, now)?;
    let mut all = Vec::new();
    for state in &config.crm.handoff {
        loop {
            let ids = store.unassigned(&config.tenant, state, round.max(1))?;
            if ids.is_empty() {
                break;
            }
            let leads: Vec<(String, Vec<String>)> =
                ids.into_iter().map(|id| (id, Vec::new())).collect();
            let routed = a.assign(config, store, &leads, by, now)?;
            for r in &routed {
                if r.decision.rep.is_some() {
                    assign::hand_off_owner(config, store, &r.lead_id, now)?;
                }
            }
            progress(&routed);
            all.extend(routed);
        }
    }
    Ok(all)
}

/// Records the first touch of a lead's assignment.
pub fn touch(config: &Config, store: &mut Store, lead: &str, at: i64) -> Result<AssignmentRow> {
    enabled(config)?;
    let tenant = config.tenant.as_str();
    if !lead_of_tenant(store, tenant, lead)? {
        return Err(RoutingRefused::NoLead(lead.to_string()).into());
    }
    match store.touch(tenant, lead, at)? {
        Some(a) => {
            crate::notifier::resolve_on_touch(config, store, lead, at)?;
            Ok(a)
        }
        None => Err(RoutingRefused::NothingToTouch(lead.to_string()).into()),
    }
}

/// What a rep's activity, reported by the CRM on one of its records, did.
#[derive(Debug)]
pub enum CrmTouch {
    /// The first touch of the lead's assignment is recorded.
    Touched(Box<AssignmentRow>),
    /// The record is not a lead of this tenant's that leadgate handed to
    /// (or took from) that CRM.
    NoLead,
    /// The lead has no assignment awaiting a first touch: touched
    /// before, or never assigned.
    NotAwaiting(String),
    /// The activity happened before the lead's current assignment (an
    /// earlier owner's, reported late): it is not this owner's touch.
    Earlier(String),
}

/// Records a rep's activity on the CRM's record `crm_id` in `target` (a
/// call, email or meeting logged) as the first touch of its lead's
/// assignment.
pub fn touch_from_crm(
    config: &Config,
    store: &mut Store,
    target: &str,
    crm_id: &str,
    at: i64,
) -> Result<CrmTouch> {
    enabled(config)?;
    let Some(lead) = store.lead_of_crm_record(&config.tenant, target, crm_id)? else {
        return Ok(CrmTouch::NoLead);
    };
    match store.assignment(&config.tenant, &lead)? {
        Some(a) if !matches!(a.state.as_str(), "open" | "escalated") => {
            return Ok(CrmTouch::NotAwaiting(lead));
        }
        Some(a) if at < a.created_at => return Ok(CrmTouch::Earlier(lead)),
        _ => {}
    }
    match touch(config, store, &lead, at) {
        Ok(a) => Ok(CrmTouch::Touched(Box::new(a))),
        Err(e) => match e.downcast_ref::<RoutingRefused>() {
            Some(RoutingRefused::NothingToTouch(_)) => Ok(CrmTouch::NotAwaiting(lead)),
            Some(RoutingRefused::NoLead(_)) => Ok(CrmTouch::NoLead),
            _ => Err(e),
        },
    }
}

/// A lead's assignment and history, as `leadgate show` and
/// `GET /v1/leads/{id}` give them.
pub fn assignment_json(store: &Store, tenant: &str, lead: &str) -> Result<serde_json::Value> {
    let rows = store.assignments_of(tenant, lead)?;
    let one = |a: &AssignmentRow| {
        serde_json::json!({
            "id": a.id,
            "rep": a.rep_id,
            "team": a.team,
            "step": a.step,
            "state": a.state,
            "assigned_by": a.assigned_by,
            "assigned_at": a.created_at,
            "sla_due_at": a.sla_due_at,
            "touched_at": a.touched_at,
            "replaced_at": a.replaced_at,
            "explanation": serde_json::from_str::<serde_json::Value>(&a.explanation).unwrap_or_default(),
        })
    };
    let current = rows.iter().rev().find(|a| a.replaced_at.is_none()).map(one);
    Ok(serde_json::json!({
        "current": current,
        "history": rows.iter().map(one).collect::<Vec<_>>(),
    }))
}
