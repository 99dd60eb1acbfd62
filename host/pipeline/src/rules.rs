//! Workflow rules run against the store. Intake, events, stage changes and
//! the pipeline's signals queue a lead for the rules ([`queue`]); a
//! [`Runner`] takes the queued leads and those whose inactivity timer is
//! due (claimed, so one host runs each), runs the rules over what the
//! store holds of the lead — after validation, enrichment, dedupe and
//! scoring: the rules never see a lead before the pipeline has — and
//! records each execution under its idempotency key with its actions, in
//! one transaction with the lead's rules record. [`Runner::perform`]
//! carries out the actions kept in the store (score, alert, assign,
//! enrich, stage, review); the service delivers those that call out (CRM
//! updates and tasks, sequences).
//!
//! The evaluation is `leadgate_rules::engine::Evaluator`'s, the one
//! `leadgate rules test` runs in memory: the store only keeps each lead's
//! record between passes.

use crate::config::Config;
use anyhow::{Context, Result, bail};
use leadgate_lead::Lead;
use leadgate_lead::score::{EventKind, Reason, Scored};
use leadgate_rules::engine::{Evaluator, EventIn, Execution, LeadRules, LeadState};
use leadgate_rules::{Action, Mode};
use leadgate_store::Store;
use leadgate_store::prelude::*;
use leadgate_store::rules::{
    Committed, InboxRow, NewExecution, NewRuleAction, RuleActionRow, RuleVersion, RulesCommit,
};
use leadgate_store::score::ScoreWrite;
use leadgate_store::service::Claim;
use std::collections::{BTreeMap, BTreeSet};

/// Why a lead is queued for the rules.
pub mod cause {
    /// Recorded or changed (score, qualification, fields).
    pub const LEAD: &str = "lead";
    /// Events attached to it.
    pub const EVENTS: &str = "events";
    /// Its lifecycle stage moved.
    pub const STAGE: &str = "stage";
    /// A duplicate conflict waits for review (the reference: the item).
    pub const DUPLICATE_CONFLICT: &str = "duplicate_conflict";
    /// Its enrichment failed (the reference: the attempt).
    pub const ENRICHMENT_FAILED: &str = "enrichment_failed";
}

/// Queues `leads` for the rules of `config`'s tenant, when it has rules.
pub fn queue<'a>(
    config: &Config,
    store: &mut Store,
    leads: impl IntoIterator<Item = &'a String>,
    kind: &str,
    at: i64,
) -> Result<()> {
    if config.rules.files.is_empty() {
        return Ok(());
    }
    let items: Vec<(String, String, String)> = leads
        .into_iter()
        .map(|l| (l.clone(), kind.to_string(), String::new()))
        .collect();
    store.queue_for_rules(&config.tenant, &items, at)?;
    Ok(())
}

/// Queues a signal about lead `lead` for the rules (`cause::
/// DUPLICATE_CONFLICT`, `cause::ENRICHMENT_FAILED`), with a reference of
/// its own that makes its key: the same signal queued again fires nothing
/// new.
pub fn queue_signal(
    config: &Config,
    store: &mut Store,
    lead: &str,
    kind: &str,
    reference: &str,
    at: i64,
) -> Result<()> {
    if config.rules.files.is_empty() {
        return Ok(());
    }
    store.queue_for_rules(
        &config.tenant,
        &[(lead.to_string(), kind.to_string(), reference.to_string())],
        at,
    )?;
    Ok(())
}

/// What one pass of [`Runner::run`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Leads the rules ran over.
    pub leads: u64,
    /// Executions recorded (fired, suppressed, shadow or failed).
    pub executions: u64,
    /// Executions whose key was recorded before: nothing repeated.
    pub repeated: u64,
    /// Leads another host wrote meanwhile: left for the next pass.
    pub stale: u64,
    /// Leads whose inactivity timer came due.
    pub due: u64,
}

impl Pass {
    pub fn any(&self) -> bool {
        self.leads > 0
    }

    fn absorb(&mut self, o: Pass) {
        self.leads += o.leads;
        self.executions += o.executions;
        self.repeated += o.repeated;
        self.stale += o.stale;
        self.due += o.due;
    }
}

/// What one pass of [`Runner::perform`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Performed {
    pub done: u64,
    pub failed: u64,
    /// Put back to be tried again later.
    pub retried: u64,
    /// By action type: done and failed.
    pub by_kind: BTreeMap<String, (u64, u64)>,
    /// Leads whose score an action moved (queued for the rules again).
    pub rescored: BTreeSet<String>,
}

/// Records lead `lead`'s lifecycle or opportunity stage, reported by
/// `source` at `at`, and queues the lead for the rules when it moved:
/// whether it did (the same stage again, or a report older than the
/// current one, moves nothing).
pub fn set_stage(
    config: &Config,
    store: &mut Store,
    lead: &str,
    stage: &str,
    at: i64,
    source: &str,
) -> Result<bool> {
    let moved = store.set_stage(&config.tenant, lead, stage, at, source)?;
    if moved {
        queue(config, store, [&lead.to_string()], cause::STAGE, at)?;
    }
    Ok(moved)
}

/// What [`run_queued`] did: the rules' passes and the actions carried out.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub pass: Pass,
    pub performed: Performed,
    /// Actions that call out, waiting for the service to deliver them.
    pub waiting: i64,
}

impl Summary {
    pub fn line(&self) -> String {
        let kinds: Vec<String> = self
            .performed
            .by_kind
            .iter()
            .map(|(k, (d, f))| {
                if *f > 0 {
                    format!("{k} {d} ({f} failed)")
                } else {
                    format!("{k} {d}")
                }
            })
            .collect();
        format!(
            "rules: {} leads · {} executions recorded · {} seen before · {} timers due · actions: {} · {} waiting for the service",
            self.pass.leads,
            self.pass.executions,
            self.pass.repeated,
            self.pass.due,
            if kinds.is_empty() {
                "none".to_string()
            } else {
                kinds.join(", ")
            },
            self.waiting
        )
    }
}

/// How many times a batch command runs the rules after the actions they
/// fired (a score action can make another rule fire).
const ROUNDS: usize = 4;

/// For batch commands: queues `leads` for the rules (`cause`), runs them,
/// carries out the actions kept in the store, and runs them again over
/// the leads those moved. `None` when the tenant has no rules.
pub fn run_queued(
    config: &Config,
    store: &mut Store,
    leads: &BTreeSet<String>,
    cause: &str,
    now: i64,
) -> Result<Option<Summary>> {
    let Some(runner) = Runner::open(config, store, now)? else {
        return Ok(None);
    };
    queue(config, store, leads, cause, now)?;
    let holder = format!("cli-{}", std::process::id());
    let claim = Claim {
        holder: &holder,
        lease_ms: 300_000,
    };
    let mut summary = Summary::default();
    for _ in 0..ROUNDS {
        summary.pass.absorb(runner.run(store, claim, now, None)?);
        let p = runner.perform(config, store, claim, now, 10_000, None)?;
        let again = !p.rescored.is_empty() || p.by_kind.contains_key("stage");
        summary.performed.done += p.done;
        summary.performed.failed += p.failed;
        for (k, (d, f)) in p.by_kind {
            let e = summary.performed.by_kind.entry(k).or_default();
            e.0 += d;
            e.1 += f;
        }
        summary.performed.rescored.extend(p.rescored);
        if !again {
            break;
        }
    }
    summary.waiting = store.rules_backlog(&config.tenant)?.actions;
    Ok(Some(summary))
}

/// Reads and checks the rules documents at `files` as `load` does, and
/// against the tenant's configuration: every page category an event
/// trigger names must be one `[score.pages]` defines (else the trigger
/// could never fire).
pub fn load_checked(
    config: &Config,
    files: &[std::path::PathBuf],
) -> std::result::Result<leadgate_rules::RuleSet, Vec<leadgate_rules::RulesError>> {
    let set = leadgate_rules::load(files)?;
    let known: Vec<&str> = config.score.pages.keys().map(String::as_str).collect();
    let mut errors = Vec::new();
    for r in &set.rules {
        if let leadgate_rules::Trigger::Event { categories, .. } = &r.trigger {
            for c in categories.iter().filter(|c| !known.contains(&c.as_str())) {
                errors.push(leadgate_rules::RulesError::Invalid {
                    file: r.file.clone(),
                    line: r.line,
                    rule: Some(r.id.clone()),
                    field: Some("trigger.categories".into()),
                    reason: format!(
                        "{c:?} is not a page category of [score.pages] ({}), so no event would match",
                        known.join(", ")
                    ),
                });
            }
        }
    }
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(errors)
    }
}

/// A tenant's rules, run against its store.
pub struct Runner {
    eval: Evaluator,
    tenant: String,
    /// The documents read, and when each was last modified then.
    stamps: Vec<(std::path::PathBuf, Option<std::time::SystemTime>)>,
}

/// When each of `files` was last modified (`None`: unreadable).
fn stamps_of(
    files: &[std::path::PathBuf],
) -> Vec<(std::path::PathBuf, Option<std::time::SystemTime>)> {
    files
        .iter()
        .map(|f| {
            (
                f.clone(),
                std::fs::metadata(f).and_then(|m| m.modified()).ok(),
            )
        })
        .collect()
}

/// Leads taken per claim.
const CLAIM: usize = 500;

impl Runner {
    /// The rules `config` names, checked, and their versions recorded in
    /// the store: a version loaded before with other behaviour is refused
    /// (give the rule a new version). `None` without rules.
    pub fn open(config: &Config, store: &mut Store, now: i64) -> Result<Option<Runner>> {
        let files = config.rules_files();
        if files.is_empty() {
            return Ok(None);
        }
        let stamps = stamps_of(&files);
        let set = load_checked(config, &files).map_err(|errors| {
            let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
            anyhow::anyhow!(
                "the rules documents have {} mistake(s) (`leadgate rules check` lists them):\n{}",
                errors.len(),
                lines.join("\n")
            )
        })?;
        let versions: Vec<RuleVersion> = set
            .rules
            .iter()
            .map(|r| {
                let doc = r.behaviour();
                RuleVersion {
                    rule_id: r.id.clone(),
                    version: i64::from(r.version),
                    digest: leadgate_runtime::digest(doc.as_bytes()),
                    doc,
                }
            })
            .collect();
        let refused = store.load_rule_versions(&config.tenant, &versions, now)?;
        if !refused.is_empty() {
            let names: Vec<String> = refused
                .iter()
                .map(|v| format!("{} version {}", v.rule_id, v.version))
                .collect();
            bail!(
                "rules changed without a new version: {} (a loaded version is immutable, so runs pinned to it stay explainable; raise `version`)",
                names.join(", ")
            );
        }
        Ok(Some(Runner {
            eval: Evaluator::new(set),
            tenant: config.tenant.clone(),
            stamps,
        }))
    }

    /// Takes the documents as they are now as read (a change refused is
    /// not looked at again until they change again).
    pub fn mark_read(&mut self) {
        self.stamps = stamps_of(&self.files());
    }

    fn files(&self) -> Vec<std::path::PathBuf> {
        self.stamps.iter().map(|(f, _)| f.clone()).collect()
    }

    /// Whether a document changed since the rules were read (the service
    /// reads them again then).
    pub fn documents_changed(&self) -> bool {
        stamps_of(&self.files()) != self.stamps
    }

    /// The rules.
    pub fn rules(&self) -> &leadgate_rules::RuleSet {
        self.eval.rules()
    }

    /// Runs the rules over the queued leads and those whose timer is due
    /// by `now`, until none is left (at most `max_leads`, when given).
    pub fn run(
        &self,
        store: &mut Store,
        claim: Claim<'_>,
        now: i64,
        max_leads: Option<u64>,
    ) -> Result<Pass> {
        let (holder, lease_ms) = (claim.holder, claim.lease_ms);
        let mut pass = Pass::default();
        loop {
            let rows = store.claim_rule_inbox(&self.tenant, holder, lease_ms, now, CLAIM)?;
            if rows.is_empty() {
                break;
            }
            let mut by_lead: BTreeMap<String, Vec<InboxRow>> = BTreeMap::new();
            for r in rows {
                by_lead.entry(r.lead_id.clone()).or_default().push(r);
            }
            let mut done = Pass::default();
            let mut batch = store.batch()?;
            for (lead, rows) in &by_lead {
                done.absorb(self.lead(&mut batch, lead, rows, now)?);
            }
            batch.commit()?;
            pass.absorb(done);
            // Leads another host holds the record of stay claimed by this
            // one until the lease runs out: come back next pass.
            if done.stale > 0 || max_leads.is_some_and(|m| pass.leads >= m) {
                return Ok(pass);
            }
        }
        loop {
            let due = store.claim_due_rule_leads(&self.tenant, holder, lease_ms, now, CLAIM)?;
            if due.is_empty() {
                break;
            }
            let mut done = Pass::default();
            let mut batch = store.batch()?;
            for (lead, _) in &due {
                let mut p = self.lead(&mut batch, lead, &[], now)?;
                p.due = 1;
                done.absorb(p);
            }
            batch.commit()?;
            pass.absorb(done);
            if done.stale > 0 || max_leads.is_some_and(|m| pass.leads >= m) {
                break;
            }
        }
        Ok(pass)
    }

    /// Runs the rules over one lead: what changed, its new events, its
    /// signals and its due timers; records the executions and the lead's
    /// record (unless another host wrote it since it was read).
    fn lead(&self, store: &mut Store, lead: &str, rows: &[InboxRow], now: i64) -> Result<Pass> {
        let mut pass = Pass {
            leads: 1,
            ..Pass::default()
        };
        let inbox: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let row = store.rule_lead(&self.tenant, lead)?;
        let mut rec: LeadRules = match &row {
            Some(r) => serde_json::from_str(&r.state)
                .with_context(|| format!("lead {lead}: its rules record is not readable"))?,
            None => LeadRules::default(),
        };
        let Some((state, stage_since)) = lead_state(store, lead)? else {
            // Erased, or never recorded: nothing to run; the queue entries go.
            let c = RulesCommit {
                lead_id: lead.to_string(),
                read_version: row.as_ref().map(|r| r.version),
                state: serde_json::to_string(&rec)?,
                due_at: None,
                executions: Vec::new(),
                inbox,
            };
            if store.commit_rules(&self.tenant, &c, now)? == Committed::Stale {
                pass.stale = 1;
            }
            return Ok(pass);
        };
        let mut fired: Vec<Execution> = Vec::new();
        // What changed, at the earliest queued time (a new lead: when it
        // was queued, its recording).
        let changed_at = rows
            .iter()
            .filter(|r| matches!(r.kind.as_str(), cause::LEAD | cause::STAGE))
            .map(|r| r.at)
            .min();
        // A new stage counts from when the lead entered it.
        let stage_moved = rec.seen.as_ref().is_some_and(|s| s.stage != state.stage);
        let changed_at = match stage_since {
            Some(since) if stage_moved => Some(since),
            _ => changed_at,
        };
        // Whatever queued it (events move the score too), what changed is
        // looked at; a timer coming due alone changes nothing of the lead.
        match changed_at {
            Some(at) => fired.extend(self.eval.lead(&mut rec, lead, state, at)),
            None if rec.seen.is_none() || !rows.is_empty() => {
                fired.extend(self.eval.lead(&mut rec, lead, state, now));
            }
            None => rec.state = state,
        }
        // Its events inside the windows' reach, those not kept yet.
        let since = now.saturating_sub(self.eval.horizon_ms());
        let kept: BTreeSet<String> = rec.events.iter().map(|k| k.id.clone()).collect();
        for e in store.rule_events(&self.tenant, lead, since)? {
            if kept.contains(&e.id) {
                continue;
            }
            let Some(kind) = EventKind::parse(&e.kind) else {
                continue;
            };
            let ev = EventIn {
                id: e.id,
                kind,
                category: e.category,
                url: e.url,
                at: e.at,
            };
            fired.extend(self.eval.event(&mut rec, lead, ev, now));
        }
        for r in rows {
            if matches!(
                r.kind.as_str(),
                cause::DUPLICATE_CONFLICT | cause::ENRICHMENT_FAILED
            ) {
                fired.extend(
                    self.eval
                        .signal(&mut rec, lead, &r.kind, &r.reference, r.at),
                );
            }
        }
        fired.extend(self.eval.due(&mut rec, lead, now));
        let executions: Vec<NewExecution> = fired
            .iter()
            .map(|e| new_execution(e, &rec.state))
            .collect::<Result<_>>()?;
        let c = RulesCommit {
            lead_id: lead.to_string(),
            read_version: row.as_ref().map(|r| r.version),
            state: serde_json::to_string(&rec)?,
            due_at: rec.next_due(),
            executions,
            inbox,
        };
        match store.commit_rules(&self.tenant, &c, now)? {
            Committed::Stale => pass.stale = 1,
            Committed::Done { recorded, repeated } => {
                pass.executions = recorded.len() as u64;
                pass.repeated = repeated.len() as u64;
                for e in fired.iter().filter(|e| recorded.contains(&e.key)) {
                    tracing::info!(tenant = %self.tenant, rule = %e.rule, version = e.version, lead = %e.lead_id,
                        trigger = e.trigger, key = %e.key, actions = e.actions.len(), suppressed = e.suppressed.len(),
                        failed = e.failed.as_deref().unwrap_or(""), "rule fired");
                }
            }
        }
        Ok(pass)
    }

    /// Carries out up to `limit` pending actions kept in the store (not
    /// those that call out): each once, its outcome recorded; a lead
    /// whose score moved is queued for the rules again.
    pub fn perform(
        &self,
        config: &Config,
        store: &mut Store,
        claim: Claim<'_>,
        now: i64,
        limit: usize,
        mut deliver: Option<&mut dyn Deliver>,
    ) -> Result<Performed> {
        let (holder, lease_ms) = (claim.holder, claim.lease_ms);
        let mut out = Performed::default();
        let actions = store.claim_rule_actions(
            &self.tenant,
            holder,
            lease_ms,
            now,
            limit,
            deliver.is_some(),
        )?;
        let mut assigner: Option<crate::assign::Assigner> = None;
        for a in actions {
            let remote = leadgate_store::rules::REMOTE_ACTIONS.contains(&a.kind.as_str());
            let done = match deliver.as_deref_mut() {
                Some(d) if remote => match serde_json::from_str::<Action>(&a.body) {
                    Ok(action) => d.deliver(config, store, &a, &action, now),
                    Err(e) => Ok(Outcome::Failed(format!("the action is not readable: {e}"))),
                },
                _ => self.perform_one(config, store, &a, &mut assigner, now),
            };
            let (state, outcome, retry) = match done {
                Ok(Outcome::Done(text)) => ("done", text, None),
                Ok(Outcome::Failed(text)) => ("failed", text, None),
                Ok(Outcome::Rescored(text)) => {
                    out.rescored.insert(a.lead_id.clone());
                    ("done", text, None)
                }
                Ok(Outcome::Retry { reason, at }) => ("pending", reason, Some(at)),
                // A store failure: the action stays claimed, taken again
                // when the lease runs out.
                Err(e) => return Err(e.context(format!("rule action {}", a.key))),
            };
            store.finish_rule_action(a.id, state, &outcome, retry, now)?;
            if retry.is_some() {
                out.retried += 1;
                continue;
            }
            let k = out.by_kind.entry(a.kind.clone()).or_default();
            if state == "done" {
                out.done += 1;
                k.0 += 1;
            } else {
                out.failed += 1;
                k.1 += 1;
                tracing::warn!(tenant = %self.tenant, lead = %a.lead_id, action = %a.kind, key = %a.key, reason = %outcome, "rule action failed");
            }
        }
        let rescored: Vec<String> = out.rescored.iter().cloned().collect();
        queue(config, store, &rescored, cause::LEAD, now)?;
        Ok(out)
    }

    fn perform_one(
        &self,
        config: &Config,
        store: &mut Store,
        a: &RuleActionRow,
        assigner: &mut Option<crate::assign::Assigner>,
        now: i64,
    ) -> Result<Outcome> {
        let tenant = self.tenant.as_str();
        let action: Action = match serde_json::from_str(&a.body) {
            Ok(x) => x,
            Err(e) => return Ok(Outcome::Failed(format!("the action is not readable: {e}"))),
        };
        let rule = a.key.split(':').next().unwrap_or_default();
        Ok(match action {
            Action::Alert { message } => {
                let rep = store
                    .assignment(tenant, &a.lead_id)?
                    .and_then(|x| x.rep_id)
                    .unwrap_or_default();
                crate::assign::raise(
                    store,
                    tenant,
                    &format!("rule.{rule}"),
                    &a.lead_id,
                    &[("rule", rule), ("rep", &rep), ("key", &a.key)],
                    &format!("lead {}: {message} (rule {rule})", a.lead_id),
                    now,
                )?;
                Outcome::Done(if rep.is_empty() {
                    "alert raised (the lead has no rep yet)".into()
                } else {
                    format!("alert raised for rep {rep}")
                })
            }
            Action::Score { .. } => match rescore_with_rules(store, tenant, a, now)? {
                Some((from, to)) => Outcome::Rescored(format!("score {from} → {to}")),
                None => Outcome::Done(
                    "recorded; the lead has no score yet, it counts when first scored".into(),
                ),
            },
            Action::Assign {} => {
                if !config.routing.enabled {
                    return Ok(Outcome::Failed(
                        "routing is off ([routing] enabled = false)".into(),
                    ));
                }
                if let Some(cur) = store.assignment(tenant, &a.lead_id)? {
                    return Ok(Outcome::Done(match cur.rep_id {
                        Some(rep) => format!("already assigned to {rep}"),
                        None => format!("already waiting in team {}", cur.team),
                    }));
                }
                if assigner.is_none() {
                    *assigner = Some(crate::assign::Assigner::open(config, store, now)?);
                }
                let Some(router) = assigner.as_mut() else {
                    return Ok(Outcome::Failed("the router could not start".into()));
                };
                let routed = router.assign(
                    config,
                    store,
                    &[(a.lead_id.clone(), Vec::new())],
                    &format!("rule:{rule}"),
                    now,
                )?;
                match routed.first().map(|r| &r.decision) {
                    Some(d) => Outcome::Done(match &d.rep {
                        Some(rep) => format!("assigned to {rep} ({})", d.rule),
                        None => format!("queued in team {} ({})", d.team, d.rule),
                    }),
                    None => Outcome::Failed("routing gave no decision".into()),
                }
            }
            Action::Enrich {} => {
                let current = store.enrichment(&a.lead_id)?;
                match current {
                    Some(e) if e.enrichment.is_some() && e.queued.is_none() => {
                        Outcome::Done("enriched already; nothing waits".into())
                    }
                    _ => {
                        store.queue_enrichment(tenant, &a.lead_id, &format!("rule {rule}"), now)?;
                        Outcome::Done("queued for re-enrichment (`leadgate enrich`)".into())
                    }
                }
            }
            Action::Stage { to } => {
                if set_stage(config, store, &a.lead_id, &to, now, &format!("rule:{rule}"))? {
                    Outcome::Done(format!("stage moved to {to}"))
                } else {
                    Outcome::Done(format!("already in stage {to}"))
                }
            }
            Action::Review { reason } => {
                let kind = format!("rule:{rule}");
                if store.open_rule_review(tenant, &a.lead_id, &kind, &reason, now)? {
                    Outcome::Done("review item opened".into())
                } else {
                    Outcome::Done(format!("a {kind} review item exists already"))
                }
            }
            Action::CrmUpdate { .. } | Action::CrmTask { .. } | Action::Sequence { .. } => {
                // Claimed only with `remote`; never here.
                Outcome::Failed(format!("{} is delivered by the service", action.kind()))
            }
        })
    }
}

/// How carrying out an action ended.
pub enum Outcome {
    Done(String),
    /// For good, with the reason.
    Failed(String),
    /// Done, and the lead's score moved.
    Rescored(String),
    /// Not now (the receiver is down, the lead is not in the CRM yet):
    /// tried again at `at`.
    Retry {
        reason: String,
        at: i64,
    },
}

/// Carries out the actions that call out of the store — CRM updates and
/// tasks, sequences — for [`Runner::perform`]: the service's CRM client.
pub trait Deliver {
    fn deliver(
        &mut self,
        config: &Config,
        store: &mut Store,
        row: &RuleActionRow,
        action: &Action,
        now: i64,
    ) -> Result<Outcome>;
}

/// What the store holds of lead `id` for the rules: its normalized record,
/// enrichment attributes, score, qualification and stage, and since when
/// it is in that stage. `None` when the rules do not see the lead: not in
/// the store, refused or failed (the pipeline is not done with it), or a
/// duplicate (its golden record's lead is the one they see, with its
/// events).
pub fn lead_state(store: &Store, id: &str) -> Result<Option<(LeadState, Option<i64>)>> {
    let Some(row) = store.lead_row(id)? else {
        return Ok(None);
    };
    if !matches!(row.status.as_str(), "accepted" | "review") || row.master_id.is_some() {
        return Ok(None);
    }
    let lead: Lead = row
        .normalized
        .as_deref()
        .and_then(|n| serde_json::from_str(n).ok())
        .or_else(|| serde_json::from_str(&row.raw).ok())
        .unwrap_or_default();
    let enrichment = store.enrichment(id)?;
    let enrichment_attrs =
        crate::score::stored_attributes(enrichment.as_ref().and_then(|e| e.enrichment.as_deref()));
    let score: Option<Scored> = store
        .stored_score(id)?
        .and_then(|s| serde_json::from_str(&s.detail).ok());
    let qualification = enrichment.and_then(|e| e.qualification);
    let (stage, since) = store.stage_of(&row.tenant, id)?.unzip();
    Ok(Some((
        LeadState {
            lead,
            enrichment: enrichment_attrs,
            score,
            stage,
            qualification,
        },
        since,
    )))
}

/// An execution as the store records it: the execution and what it saw.
fn new_execution(e: &Execution, state: &LeadState) -> Result<NewExecution> {
    let mut record = serde_json::to_value(e)?;
    if let Some(o) = record.as_object_mut() {
        o.insert(
            "inputs".into(),
            serde_json::json!({
                "score": state.score.as_ref().map(|s| s.total),
                "grade": state.score.as_ref().map(|s| s.grade.clone()),
                "qualification": state.qualification,
                "stage": state.stage,
                "source": state.lead.source,
            }),
        );
    }
    let mode = match e.mode {
        Mode::Active => "active",
        Mode::Shadow => "shadow",
        Mode::Paused => "paused",
    };
    let mut actions = Vec::new();
    for a in &e.actions {
        actions.push(NewRuleAction {
            kind: a.kind().to_string(),
            body: serde_json::to_string(a)?,
            state: if e.mode == Mode::Shadow {
                "shadow".into()
            } else {
                "pending".into()
            },
            outcome: (e.mode == Mode::Shadow).then(|| "shadow mode: not carried out".into()),
        });
    }
    for s in &e.suppressed {
        actions.push(NewRuleAction {
            kind: s.kind.clone(),
            body: serde_json::json!({"type": s.kind}).to_string(),
            state: "suppressed".into(),
            outcome: Some(s.reason.clone()),
        });
    }
    Ok(NewExecution {
        key: e.key.clone(),
        rule_id: e.rule.clone(),
        version: i64::from(e.version),
        lead_id: e.lead_id.clone(),
        fired_by: e.trigger.to_string(),
        mode: mode.into(),
        at: e.at,
        record: record.to_string(),
        actions,
    })
}

/// The factor of the reasons rules add to a score.
pub const RULE_FACTOR: &str = "rule";

/// Applies the score actions carried out (`(key, action JSON)`, oldest
/// first) to `scored`, in place of any applied before: each adds its
/// points, within 0–100, as a reason of factor `rule` naming the rule.
pub fn adjust(scored: &mut Scored, actions: &[(String, String)]) {
    let before: f64 = scored
        .reasons
        .iter()
        .filter(|r| r.factor == RULE_FACTOR)
        .map(|r| r.contribution)
        .sum();
    scored.reasons.retain(|r| r.factor != RULE_FACTOR);
    let mut total = (f64::from(scored.total) - before).clamp(0.0, 100.0);
    for (key, body) in actions {
        let Ok(Action::Score { points, reason }) = serde_json::from_str::<Action>(body) else {
            continue;
        };
        let next = (total + f64::from(points)).clamp(0.0, 100.0);
        let rule = key.split(':').next().unwrap_or_default();
        scored.reasons.push(Reason {
            code: format!("rule.{rule}"),
            factor: RULE_FACTOR.into(),
            contribution: next - total,
            detail: reason,
        });
        total = next;
    }
    scored.total = total.round() as u8;
}

/// The score actions carried out, by lead: for the leads `only` names, or
/// every lead of the tenant.
pub fn score_actions(
    store: &Store,
    tenant: &str,
    only: Option<&[String]>,
) -> Result<BTreeMap<String, Vec<(String, String)>>> {
    let rows = store.rule_score_actions(tenant, only)?;
    let mut by: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (lead, key, body) in rows {
        by.entry(lead).or_default().push((key, body));
    }
    Ok(by)
}

/// Applies the lead's score actions carried out, and `action` (being
/// carried out), to its stored score and records it: `(from, to)`, or
/// `None` when the lead has no score yet.
fn rescore_with_rules(
    store: &mut Store,
    tenant: &str,
    action: &RuleActionRow,
    now: i64,
) -> Result<Option<(u8, u8)>> {
    let lead = action.lead_id.as_str();
    let Some(stored) = store.stored_score(lead)? else {
        return Ok(None);
    };
    let Ok(mut scored) = serde_json::from_str::<Scored>(&stored.detail) else {
        return Ok(None);
    };
    let from = scored.total;
    let actions = store.rule_score_actions(tenant, Some(&[lead.to_string()]))?;
    let mut actions: Vec<(String, String)> = actions.into_iter().map(|(_, k, b)| (k, b)).collect();
    if !actions.iter().any(|(k, _)| *k == action.key) {
        actions.push((action.key.clone(), action.body.clone()));
    }
    adjust(&mut scored, &actions);
    let write = ScoreWrite {
        lead_id: lead.to_string(),
        total: scored.total,
        grade: scored.grade.clone(),
        probability: scored.probability,
        fit: scored.fit,
        engagement: scored.engagement,
        intent: scored.intent,
        detail: serde_json::to_string(&scored)?,
        above: stored.above,
        surfaced_at: stored.surfaced_at,
        changed: scored.total != from,
        cause: "rule".into(),
    };
    let component = "rules";
    store.save_scores(tenant, component, &[write], &[], now)?;
    Ok(Some((from, scored.total)))
}

/// The rules that fired for a lead and why, newest last, with each
/// action's state and outcome; and its stage. For `leadgate show` and
/// `GET /v1/leads/{id}`.
pub fn lead_json(store: &Store, tenant: &str, lead: &str) -> Result<serde_json::Value> {
    let executions = store.rule_executions(tenant, Some(lead), i64::MIN, i64::MAX, 1_000)?;
    let actions = store.rule_actions_of(tenant, lead)?;
    let mut by_execution: BTreeMap<i64, Vec<serde_json::Value>> = BTreeMap::new();
    for a in &actions {
        let body: serde_json::Value = serde_json::from_str(&a.body).unwrap_or_default();
        by_execution
            .entry(a.execution_id)
            .or_default()
            .push(serde_json::json!({
                "key": a.key,
                "type": a.kind,
                "action": body,
                "state": a.state,
                "outcome": a.outcome,
                "attempts": a.attempts,
                "updated_at": a.updated_at,
            }));
    }
    let fired: Vec<serde_json::Value> = executions
        .iter()
        .map(|e| {
            let record: serde_json::Value = serde_json::from_str(&e.record).unwrap_or_default();
            serde_json::json!({
                "rule": e.rule_id,
                "version": e.version,
                "key": e.key,
                "at": e.at,
                "trigger": e.fired_by,
                "mode": e.mode,
                "inputs": record.get("inputs"),
                "failed": record.get("failed"),
                "actions": by_execution.remove(&e.id).unwrap_or_default(),
            })
        })
        .collect();
    let stage = store
        .stage_of(tenant, lead)?
        .map(|(stage, since)| serde_json::json!({"stage": stage, "since": since}));
    Ok(serde_json::json!({"stage": stage, "fired": fired}))
}
