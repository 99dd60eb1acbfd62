//! Routing on the store: who gets each qualified lead (the decision is
//! `leadgate_routing`'s), recorded as an assignment with its explanation,
//! a response-SLA timer, and the owner handed to the CRM; the timers fired
//! (SLA breaches reassigned or escalated, queued leads routed again); first
//! touches recorded. The service's pipeline and scheduler and the CLI
//! (`leadgate route`, `leadgate tick`, `leadgate reps`) share it.
//!
//! A lead no one can take is never dropped: it waits in the queue — not
//! handed off — someone is alerted, and it is routed again every
//! `retry_minutes` until a rep can take it.

use crate::config::Config;
use anyhow::{Context, Result};
use leadgate_lead::Lead;
use leadgate_routing::{AccountOwner, Decision, Load, OnBreach, Rep, Router, Step, Subject};
use leadgate_store::Store;
use leadgate_store::prelude::*;
use leadgate_store::routing::{AssignmentRow, NewAssignment, RepRow};
use std::collections::HashMap;

/// A minute in milliseconds.
const MINUTE: i64 = 60_000;
/// Timers fired per round of a tick, at most.
const TIMERS_PER_ROUND: usize = 500;

/// What routing knows of a stored lead, and the account keys it is
/// recorded under.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub subject: Subject,
    /// The lead's corporate domain (none for a free-mail address).
    pub domain: Option<String>,
    pub company_key: Option<String>,
}

/// A routed lead.
#[derive(Debug, Clone)]
pub struct Routed {
    pub lead_id: String,
    pub decision: Decision,
    /// The assignment recorded (none for a dry run).
    pub assignment: Option<i64>,
}

/// The tenant's reps as a router, rebuilt when they change.
pub struct Assigner {
    router: Router,
    /// Each rep's id and settings as last read.
    seen: Vec<(String, String)>,
}

impl Assigner {
    /// Seeds the store with `[[routing.reps]]` when it has no reps for the
    /// tenant, and reads them.
    pub fn open(config: &Config, store: &mut Store, now: i64) -> Result<Assigner> {
        seed(config, store, now)?;
        let rows = store.reps(&config.tenant)?;
        let mut a = Assigner {
            router: build(config, &rows)?,
            seen: Vec::new(),
        };
        a.seen = settings(&rows);
        Ok(a)
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The router over `rows`, rebuilt when their settings changed; and
    /// the loads they carry.
    fn refresh(&mut self, config: &Config, rows: &[RepRow]) -> Result<HashMap<String, Load>> {
        let now = settings(rows);
        if now != self.seen {
            self.router = build(config, rows)?;
            self.seen = now;
        }
        Ok(loads(rows))
    }

    /// Routes `leads` (stored, qualified) and records each assignment;
    /// `by` says who asked (`routing`, `sla`, `retry`, a person).
    /// `exclude` leaves reps out per lead (those who missed its SLA).
    pub fn assign(
        &mut self,
        config: &Config,
        store: &mut Store,
        leads: &[(String, Vec<String>)],
        by: &str,
        now: i64,
    ) -> Result<Vec<Routed>> {
        let known = leads
            .iter()
            .map(|(lead, exclude)| Ok((stored_facts(config, store, lead)?, exclude.clone())))
            .collect::<Result<Vec<_>>>()?;
        self.assign_known(config, store, known, by, now)
    }

    /// [`assign`](Self::assign) for leads whose facts the caller holds
    /// ([`facts_of`]); each lead's account owner is looked up as it is
    /// routed, so a lead finds the owner an earlier one of its account
    /// got in the same call.
    pub fn assign_known(
        &mut self,
        config: &Config,
        store: &mut Store,
        leads: Vec<(Facts, Vec<String>)>,
        by: &str,
        now: i64,
    ) -> Result<Vec<Routed>> {
        let tenant = config.tenant.as_str();
        let rows = store.reps(tenant)?;
        let loads = self.refresh(config, &rows)?;
        let mut roster = self.router.roster(&loads, now);
        let mut out = Vec::with_capacity(leads.len());
        for (mut facts, exclude) in leads {
            let exclude = &exclude;
            account_owner(config, store, &mut facts)?;
            let decision = self.router.route(&roster, &facts.subject, exclude);
            self.router.apply(&mut roster, &decision);
            let id = record(
                config,
                store,
                &self.router,
                &roster,
                &facts,
                &decision,
                by,
                now,
            )?;
            out.push(Routed {
                lead_id: facts.subject.lead_id.clone(),
                decision,
                assignment: Some(id),
            });
        }
        Ok(out)
    }

    /// Who would get `subject` now, and why — nothing recorded.
    pub fn dry_run(
        &mut self,
        config: &Config,
        store: &Store,
        subject: &Subject,
        now: i64,
    ) -> Result<Decision> {
        let rows = store.reps(&config.tenant)?;
        let loads = self.refresh(config, &rows)?;
        let roster = self.router.roster(&loads, now);
        Ok(self.router.route(&roster, subject, &[]))
    }
}

/// Writes `[[routing.reps]]` to the store when the tenant has none.
pub fn seed(config: &Config, store: &mut Store, now: i64) -> Result<usize> {
    if config.routing.reps.is_empty() {
        return Ok(0);
    }
    let reps: Vec<(String, String)> = config
        .routing
        .reps
        .iter()
        .map(|r| Ok((r.id.clone(), serde_json::to_string(r)?)))
        .collect::<Result<_, serde_json::Error>>()?;
    Ok(store.seed_reps(&config.tenant, &reps, now)?)
}

fn settings(rows: &[RepRow]) -> Vec<(String, String)> {
    rows.iter().map(|r| (r.id.clone(), r.doc.clone())).collect()
}

/// The reps of `rows`; a stored rep whose settings no longer read (an
/// older leadgate wrote them, or they were edited by hand) is refused by
/// name.
pub fn reps_of(rows: &[RepRow]) -> Result<Vec<Rep>> {
    rows.iter()
        .map(|r| {
            serde_json::from_str::<Rep>(&r.doc)
                .with_context(|| format!("stored rep {:?}: its settings do not read", r.id))
        })
        .collect()
}

fn build(config: &Config, rows: &[RepRow]) -> Result<Router> {
    Ok(Router::new(config.routing.clone(), reps_of(rows)?)?)
}

pub fn loads(rows: &[RepRow]) -> HashMap<String, Load> {
    rows.iter()
        .map(|r| {
            (
                r.id.clone(),
                Load {
                    day: r.day.clone(),
                    today: u32::try_from(r.today).unwrap_or(u32::MAX),
                    open: u32::try_from(r.open).unwrap_or(u32::MAX),
                    total: u64::try_from(r.total).unwrap_or(0),
                    last_at: r.last_at,
                    turn: r.turn,
                },
            )
        })
        .collect()
}

/// What routing knows of stored lead `lead`: its fields, enrichment
/// attributes, grade, existing owner and account owner — read from the
/// store.
pub fn facts(config: &Config, store: &Store, lead: &str) -> Result<Facts> {
    let mut facts = stored_facts(config, store, lead)?;
    account_owner(config, store, &mut facts)?;
    Ok(facts)
}

/// [`facts_of`] the lead as stored (the account owner is looked up when
/// it is routed).
pub fn stored_facts(config: &Config, store: &Store, lead: &str) -> Result<Facts> {
    let row = store
        .lead_row(lead)?
        .with_context(|| format!("lead {lead} is not in the store"))?;
    // The normalized lead as stored (a lead refused before normalization
    // has none: routing then knows only its id).
    let normalized: Lead = row
        .normalized
        .as_deref()
        .and_then(|n| serde_json::from_str(n).ok())
        .unwrap_or_else(|| Lead {
            source: leadgate_lead::Source::Api,
            ..Lead::default()
        });
    let enrichment = store.enrichment(lead)?.unwrap_or_default();
    let attributes = crate::score::stored_attributes(enrichment.enrichment.as_deref());
    let grade = store.stored_score(lead)?.map(|s| s.grade);
    Ok(facts_of(config, lead, &normalized, &attributes, grade))
}

/// What routing knows of stored lead `id` from its normalized record,
/// its enrichment attributes and its grade, as the caller holds them (the
/// service's intake has just recorded and scored the lead). The account
/// owner is not among them: [`Assigner::assign_known`] looks it up.
pub fn facts_of(
    config: &Config,
    id: &str,
    lead: &Lead,
    attributes: &[(String, String)],
    grade: Option<String>,
) -> Facts {
    let text = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let attribute = |k: &str| {
        attributes
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let custom = |k: &str| {
        lead.custom
            .iter()
            .find(|f| f.key.eq_ignore_ascii_case(k))
            .map(|f| f.value.trim())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let owner_id = config
        .routing
        .owner_fields
        .iter()
        .find_map(|f| custom(f).or_else(|| attribute(f)));
    let domain = text(&lead.domain)
        .or_else(|| text(&lead.email).and_then(|e| e.rsplit_once('@').map(|(_, d)| d.to_string())))
        .map(|d| d.to_ascii_lowercase())
        .filter(|d| !leadgate_lead::mail::is_free_mail_domain(d));
    let company_key = text(&lead.company_key);
    Facts {
        subject: Subject {
            lead_id: id.to_string(),
            country: text(&lead.country),
            region: text(&lead.region),
            industry: attribute("industry"),
            employee_range: attribute("employee_range"),
            source: Some(lead.source.as_str().to_string()),
            grade,
            owner_id,
            account_owner: None,
        },
        domain,
        company_key,
    }
}

/// The grade in a stored score's detail (the score as JSON, as
/// `score_details` reads it).
pub fn grade_in(detail: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Graded {
        grade: String,
    }
    serde_json::from_str::<Graded>(detail).ok().map(|g| g.grade)
}

/// The owner of the lead's account, when `existing_owner` is on: the
/// current owner of another lead of its corporate domain, else of its
/// company key.
fn account_owner(config: &Config, store: &Store, facts: &mut Facts) -> Result<()> {
    if !config.routing.existing_owner {
        return Ok(());
    }
    let (domain, company_key) = (facts.domain.as_deref(), facts.company_key.as_deref());
    let found = store.account_owner(&config.tenant, &facts.subject.lead_id, domain, company_key)?;
    facts.subject.account_owner = found.map(|o| {
        let value = if o.by == "domain" {
            domain
        } else {
            company_key
        };
        AccountOwner {
            rep: o.rep_id,
            via: format!(
                "lead {} of the same {} {}",
                o.lead_id,
                o.by.replace('_', " "),
                value.unwrap_or_default()
            ),
        }
    });
    Ok(())
}

/// Records `decision` for the lead of `facts`, with its timer; a lead
/// held in the queue raises an alert.
#[allow(clippy::too_many_arguments)]
fn record(
    config: &Config,
    store: &mut Store,
    router: &Router,
    roster: &leadgate_routing::Roster,
    facts: &Facts,
    decision: &Decision,
    by: &str,
    now: i64,
) -> Result<i64> {
    let tenant = config.tenant.as_str();
    let explanation = serde_json::to_string(decision)?;
    let rep_day = decision
        .rep
        .as_deref()
        .and_then(|r| roster.day(router, r))
        .unwrap_or_default()
        .to_string();
    let (state, timer, sla_due_at) = match &decision.rep {
        Some(_) => {
            let due = now + i64::from(decision.sla_minutes) * MINUTE;
            ("open", ("sla", due), Some(due))
        }
        None => (
            "queued",
            (
                "route",
                now + i64::from(config.routing.retry_minutes) * MINUTE,
            ),
            None,
        ),
    };
    let id = store.assign(
        tenant,
        &NewAssignment {
            lead_id: &facts.subject.lead_id,
            rep_id: decision.rep.as_deref(),
            rep_day: &rep_day,
            turn: decision
                .rep
                .as_deref()
                .map_or(0, |r| roster.turn(router, r)),
            team: &decision.team,
            step: step_name(decision.step),
            state,
            explanation: &explanation,
            domain: facts.domain.as_deref(),
            company_key: facts.company_key.as_deref(),
            sla_due_at,
            assigned_by: by,
            timer: Some(timer),
        },
        now,
    )?;
    let lead = facts.subject.lead_id.as_str();
    let grade = facts.subject.grade.as_deref().unwrap_or_default();
    match &decision.rep {
        None => raise(
            store,
            tenant,
            "routing.queued",
            lead,
            &[("team", &decision.team), ("grade", grade)],
            &format!(
                "lead {lead} has no owner: {}. It waits in {:?} and is routed again every {} min.",
                decision.rule, decision.team, config.routing.retry_minutes
            ),
            now,
        )?,
        Some(rep) if config.alerts.hot_grades.iter().any(|g| g == grade) => raise(
            store,
            tenant,
            "lead.hot",
            lead,
            &[("rep", rep), ("team", &decision.team), ("grade", grade)],
            &format!(
                "new grade {grade} lead {lead} for rep {rep} (team {}); respond within {} min",
                decision.team, decision.sla_minutes
            ),
            now,
        )?,
        Some(_) => {}
    }
    Ok(id)
}

/// Raises an alert about `lead` with labels (`kind` and `lead`, and
/// `extra` where not empty) for the notifier to route.
pub fn raise(
    store: &Store,
    tenant: &str,
    kind: &str,
    lead: &str,
    extra: &[(&str, &str)],
    message: &str,
    now: i64,
) -> Result<()> {
    let mut labels = serde_json::Map::new();
    labels.insert("kind".into(), kind.into());
    labels.insert("lead".into(), lead.into());
    for (k, v) in extra {
        if !v.is_empty() {
            labels.insert((*k).into(), (*v).into());
        }
    }
    store.raise_alert(
        tenant,
        kind,
        lead,
        &serde_json::Value::Object(labels).to_string(),
        message,
        now,
    )?;
    Ok(())
}

pub fn step_name(step: Step) -> &'static str {
    match step {
        Step::Owner => "owner",
        Step::Account => "account",
        Step::Territory => "territory",
        Step::Default => "default",
        Step::Fallback => "fallback",
        Step::Queue => "queue",
        Step::Manual => "manual",
    }
}

/// Queues the owner's handoff to the CRM: an update of the CRM's record
/// when the lead is there already, else its creation (a creation already
/// waiting carries the new owner, as it is built when sent).
pub fn hand_off_owner(config: &Config, store: &Store, lead: &str, now: i64) -> Result<()> {
    let target = config.crm.target;
    if target == crate::config::serve::Target::None {
        return Ok(());
    }
    let tenant = config.tenant.as_str();
    match store.crm_record(tenant, lead, target.as_str())? {
        Some(crm_id) => {
            store.enqueue_handoff(tenant, lead, target.as_str(), "update", Some(&crm_id), now)?;
        }
        None => {
            store.enqueue_handoff(tenant, lead, target.as_str(), "create", None, now)?;
        }
    }
    Ok(())
}

/// What firing the due timers did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fired {
    /// SLA missed and the lead given to another rep (or the queue).
    pub reassigned: u64,
    /// SLA missed and escalated; the rep keeps the lead.
    pub escalated: u64,
    /// Queued leads that found a rep.
    pub routed: u64,
    /// Queued leads that still wait.
    pub waiting: u64,
    /// Timers whose assignment had moved on (touched, replaced).
    pub stale: u64,
}

impl Fired {
    pub fn any(&self) -> bool {
        self.reassigned + self.escalated + self.routed + self.waiting > 0
    }
}

/// Fires `config.tenant`'s due timers, claimed for `holder` so hosts
/// sharing the store fire each once: an SLA missed is reassigned (the
/// reps who missed it left out, up to `max_reassignments`) or escalated,
/// with an alert; a queued lead is routed again. Costs the timers due.
pub fn fire_due(
    config: &Config,
    store: &mut Store,
    assigner: &mut Assigner,
    holder: &str,
    lease_ms: i64,
    now: i64,
) -> Result<Fired> {
    let mut fired = Fired::default();
    let tenant = config.tenant.as_str();
    loop {
        let due = store.claim_due_timers(tenant, holder, lease_ms, now, TIMERS_PER_ROUND)?;
        if due.is_empty() {
            return Ok(fired);
        }
        for t in &due {
            let a = store.assignment_by_id(t.ref_id)?;
            match (t.kind.as_str(), a) {
                ("sla", Some(a)) if a.replaced_at.is_none() && a.state == "open" => {
                    sla_missed(config, store, assigner, &a, now, &mut fired)?;
                }
                ("route", Some(a)) if a.replaced_at.is_none() && a.state == "queued" => {
                    // Anyone who can take it now, those who missed its
                    // SLA before included: better late than waiting on.
                    let routed = assigner.assign(
                        config,
                        store,
                        &[(a.lead_id.clone(), Vec::new())],
                        "retry",
                        now,
                    )?;
                    if routed.iter().any(|r| r.decision.rep.is_some()) {
                        fired.routed += 1;
                        hand_off_owner(config, store, &a.lead_id, now)?;
                    } else {
                        fired.waiting += 1;
                    }
                }
                _ => fired.stale += 1,
            }
            store.finish_timer(t.id, now)?;
        }
    }
}

/// The reps who missed the lead's SLA before.
fn breached_by(store: &Store, tenant: &str, lead: &str) -> Result<Vec<String>> {
    Ok(store
        .assignments_of(tenant, lead)?
        .into_iter()
        .filter(|a| a.state == "breached" || a.state == "escalated")
        .filter_map(|a| a.rep_id)
        .collect())
}

fn sla_missed(
    config: &Config,
    store: &mut Store,
    assigner: &mut Assigner,
    a: &AssignmentRow,
    now: i64,
    fired: &mut Fired,
) -> Result<()> {
    let tenant = config.tenant.as_str();
    let sla = &config.routing.sla;
    let rep = a.rep_id.clone().unwrap_or_default();
    let mut missed = breached_by(store, tenant, &a.lead_id)?;
    let minutes = a.sla_due_at.map_or(0, |d| (d - a.created_at) / MINUTE);
    let reassign = sla.on_breach == OnBreach::Reassign
        && missed.len() < usize::try_from(sla.max_reassignments).unwrap_or(usize::MAX);
    if reassign {
        if !store.miss_sla(a.id, "breached", now)? {
            return Ok(());
        }
        missed.push(rep.clone());
        let routed = assigner.assign(config, store, &[(a.lead_id.clone(), missed)], "sla", now)?;
        let to = routed
            .first()
            .and_then(|r| r.decision.rep.clone())
            .map_or_else(
                || "the queue (no one else available)".to_string(),
                |r| format!("rep {r}"),
            );
        raise(
            store,
            tenant,
            "routing.sla_breach",
            &a.lead_id,
            &[("rep", &rep), ("team", &a.team), ("on_breach", "reassign")],
            &format!(
                "lead {}: rep {rep} did not respond within {minutes} min; reassigned to {to}",
                a.lead_id
            ),
            now,
        )?;
        if routed.iter().any(|r| r.decision.rep.is_some()) {
            hand_off_owner(config, store, &a.lead_id, now)?;
        }
        fired.reassigned += 1;
    } else {
        if !store.miss_sla(a.id, "escalated", now)? {
            return Ok(());
        }
        raise(
            store,
            tenant,
            "routing.sla_breach",
            &a.lead_id,
            &[("rep", &rep), ("team", &a.team), ("on_breach", "escalate")],
            &format!(
                "lead {}: rep {rep} did not respond within {minutes} min; escalated to team {:?} (the rep keeps it)",
                a.lead_id, a.team
            ),
            now,
        )?;
        fired.escalated += 1;
    }
    Ok(())
}
