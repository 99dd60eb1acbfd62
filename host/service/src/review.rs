//! The review queue (`leadgate review list | show | decide | stats`, and
//! the same over HTTP), its SLA (`leadgate tick`, and the service's
//! scheduler), undoing merges (`leadgate unmerge`), and looking at a
//! stored lead (`leadgate show`).
//!
//! Every lead that needs a person is one item: a lead validation sent to
//! review (`validation`), an uncertain match or consent conflict (`match`),
//! or a lead classification found ambiguous (`classification`). Items are
//! ordered by priority:
//!
//! ```text
//! priority = source weight            ([review] source_weights: form 3 … import 1)
//!          + 2 × score / 100          (downstream urgency: a hot lead first)
//!          + uncertainty              (match: 1 − |2p − 1|; others: issues / 3, at most 1)
//!          + min(age / escalation, 2) (waiting long raises it)
//! ```
//!
//! A match item is decided `merge` or `not_duplicate` (`distinct`); the
//! others `accept` or `reject`. Decisions are stored with the reviewer and
//! note. Match decisions are labelled pairs for `leadgate dedupe-train
//! --reviews`; validation decisions are tallied per issue code by
//! `leadgate review stats`, which says which rules reviewers keep
//! overruling.
//!
//! SLA: an item undecided after `escalate_after_hours` (4) is escalated
//! with an alert; after `fallback_after_hours` (24) the fallback applies —
//! `manual` (an alert to a manager; the item stays open), or `accept` /
//! `reject` decided as `sla:fallback` (never for a match: a timer does not
//! merge people).

use crate::clock::now_ms;
use crate::config::Config;
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use leadgate_pipeline::config::serve::{Fallback, Target};
use leadgate_store::prelude::*;
use leadgate_store::service::QueueItem;
use leadgate_store::{Link, LinkKind, Status, Store};
use serde::Serialize;

#[derive(Subcommand)]
pub enum Action {
    /// Undecided items, highest priority first.
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One item with its lead(s) and the evidence.
    Show { id: i64 },
    /// Decide an item: merge | not-duplicate (distinct) for a match;
    /// accept | reject for the others.
    Decide {
        id: i64,
        decision: String,
        /// Who decided, for the audit trail.
        #[arg(long)]
        reviewer: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// How reviewers decided, per issue code: the rules they keep
    /// overruling.
    Stats,
}

/// Why a decision was refused.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error("no review item #{0} for this tenant")]
    NotFound(i64),
    #[error(
        "review item #{id} was already decided ({decision}, by {reviewer}); undo a merge with `leadgate unmerge`"
    )]
    AlreadyDecided {
        id: i64,
        decision: String,
        reviewer: String,
    },
    #[error("{0}")]
    Invalid(String),
}

impl DecideError {
    pub fn status(&self) -> u16 {
        match self {
            DecideError::NotFound(_) => 404,
            DecideError::AlreadyDecided { .. } => 409,
            DecideError::Invalid(_) => 422,
        }
    }
    pub fn code(&self) -> &'static str {
        match self {
            DecideError::NotFound(_) => "review.not_found",
            DecideError::AlreadyDecided { .. } => "review.already_decided",
            DecideError::Invalid(_) => "review.invalid_decision",
        }
    }
}

/// What a decision did.
#[derive(Debug, Clone, Serialize)]
pub struct Decided {
    pub id: i64,
    pub kind: String,
    pub lead_id: String,
    pub decision: String,
    pub reviewer: String,
    /// In words: what changed.
    pub effect: String,
    /// The merge made, for `leadgate unmerge`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merge_id: Option<i64>,
}

/// An item with its priority and SLA state.
#[derive(Debug, Clone, Serialize)]
pub struct Prioritized {
    #[serde(flatten)]
    pub item: QueueItem,
    pub priority: f64,
    pub age_hours: f64,
    /// `ok`, `escalated` (past the first threshold) or `overdue` (past
    /// the second).
    pub sla: &'static str,
}

pub fn priority(config: &Config, item: &QueueItem, now: i64) -> Prioritized {
    let r = &config.review;
    let source = r.source_weights.get(&item.source).copied().unwrap_or(1.0);
    let urgency = item.score.map_or(0.0, |s| 2.0 * s as f64 / 100.0);
    let uncertainty = match (item.kind.as_str(), item.confidence) {
        ("match", Some(p)) => 1.0 - (2.0 * p - 1.0).abs(),
        _ => (item.issues as f64 / 3.0).min(1.0),
    };
    let age = (now - item.created_at).max(0) as f64;
    let aging = (age / r.escalate_ms().max(1) as f64).min(2.0);
    let sla = if age >= r.fallback_ms() as f64 {
        "overdue"
    } else if age >= r.escalate_ms() as f64 {
        "escalated"
    } else {
        "ok"
    };
    Prioritized {
        item: item.clone(),
        priority: ((source + urgency + uncertainty + aging) * 1000.0).round() / 1000.0,
        age_hours: (age / 3_600_000.0 * 100.0).round() / 100.0,
        sla,
    }
}

/// The undecided items of `tenant`, highest priority first.
pub fn prioritized(
    config: &Config,
    store: &Store,
    tenant: &str,
    limit: usize,
    now: i64,
) -> Result<Vec<Prioritized>> {
    let mut items: Vec<Prioritized> = store
        .open_queue(Some(tenant))?
        .iter()
        .map(|i| priority(config, i, now))
        .collect();
    items.sort_by(|a, b| {
        b.priority
            .total_cmp(&a.priority)
            .then(a.item.created_at.cmp(&b.item.created_at))
    });
    items.truncate(limit);
    Ok(items)
}

/// One item with its lead(s) and evidence.
pub fn detail(
    config: &Config,
    store: &Store,
    tenant: &str,
    id: i64,
) -> Result<Option<serde_json::Value>> {
    let Some(item) = store.queue_item(tenant, id)? else {
        return Ok(None);
    };
    let lead = |id: &str| -> Result<serde_json::Value> {
        Ok(match store.lead_row(id)? {
            Some(row) => row
                .normalized
                .as_deref()
                .and_then(|n| serde_json::from_str(n).ok())
                .unwrap_or(serde_json::Value::Null),
            None => serde_json::Value::Null,
        })
    };
    let mut out = serde_json::to_value(priority(config, &item, now_ms()))?;
    out["lead"] = lead(&item.lead_id)?;
    if let Some(m) = item.match_review
        && let Some(pair) = store.review_item(tenant, m)?
    {
        out["lead_a"] = serde_json::Value::String(pair.lead_a.clone());
        out["lead_b"] = serde_json::Value::String(pair.lead_b.clone());
        out["probability"] = pair.probability.into();
        out["other"] = lead(&pair.lead_a)?;
        out["evidence"] = serde_json::from_str(&pair.evidence).unwrap_or(serde_json::Value::Null);
    }
    let issues: Vec<serde_json::Value> = store
        .lead_issues(&item.lead_id)?
        .into_iter()
        .map(|(field, code, severity, message)| {
            serde_json::json!({"field": field, "code": code, "severity": severity, "message": message})
        })
        .collect();
    out["issues"] = issues.into();
    Ok(Some(out))
}

/// Decides an item. Errors that are the caller's are [`DecideError`]s.
#[allow(clippy::too_many_arguments)]
pub fn decide(
    config: &Config,
    store: &mut Store,
    tenant: &str,
    id: i64,
    decision: &str,
    reviewer: &str,
    note: Option<&str>,
    now: i64,
) -> Result<Decided> {
    if reviewer.trim().is_empty() {
        return Err(DecideError::Invalid("the reviewer must name who decided".into()).into());
    }
    let item = store
        .queue_item(tenant, id)?
        .ok_or(DecideError::NotFound(id))?;
    if let Some(d) = &item.decision {
        return Err(DecideError::AlreadyDecided {
            id,
            decision: d.clone(),
            reviewer: item.reviewer.clone().unwrap_or_else(|| "?".into()),
        }
        .into());
    }
    let word = match decision
        .trim()
        .to_ascii_lowercase()
        .replace('-', "_")
        .as_str()
    {
        "merge" => "merge",
        "distinct" | "not_duplicate" => "distinct",
        "accept" => "accept",
        "reject" => "reject",
        other => {
            return Err(DecideError::Invalid(format!(
                "'{other}' is not a decision: merge or not_duplicate for a match, accept or reject otherwise"
            ))
            .into());
        }
    };
    let is_match = item.kind == "match";
    if is_match != matches!(word, "merge" | "distinct") {
        return Err(DecideError::Invalid(if is_match {
            format!("item #{id} is a possible duplicate: decide merge or not_duplicate")
        } else {
            format!(
                "item #{id} is a {} item: decide accept or reject",
                item.kind
            )
        })
        .into());
    }
    let by = format!("reviewer:{reviewer}");
    if !store.decide_queue(id, word, reviewer, note, now)? {
        return Err(DecideError::AlreadyDecided {
            id,
            decision: "another decision".into(),
            reviewer: "someone else".into(),
        }
        .into());
    }
    let mut merge_id = None;
    let effect = match word {
        "merge" => {
            let pair = store
                .review_item(tenant, item.match_review.unwrap_or_default())?
                .context("the match pair of this item is missing")?;
            let master = store.master_of(&pair.lead_a)?;
            let merge = store.link(
                tenant,
                &pair.lead_b,
                &Link {
                    master: &master,
                    kind: LinkKind::Merge,
                    probability: pair.probability,
                    evidence: &pair.evidence,
                    decided_by: &by,
                },
                now,
            )?;
            crate::matching::refresh_golden(
                store,
                tenant,
                std::slice::from_ref(&master),
                &config.dedupe.survivorship,
                now,
            )?;
            merge_id = Some(merge);
            format!(
                "merged {} into {master} (merge #{merge}); `leadgate unmerge {merge}` undoes it",
                pair.lead_b
            )
        }
        "distinct" | "accept" => {
            store.set_outcome(&item.lead_id, Status::Accepted, "qualified", &by, now)?;
            let mut effect = if word == "distinct" {
                format!(
                    "{} is a different person: accepted and qualified",
                    item.lead_id
                )
            } else {
                format!("{} accepted and qualified", item.lead_id)
            };
            // With routing on, the lead gets an owner first; one held in
            // the queue is handed off once someone takes it.
            let mut owned = true;
            if config.routing.enabled
                && config.crm.handoff.iter().any(|s| s == "qualified")
                && store.assignment(tenant, &item.lead_id)?.is_none()
            {
                let mut a = leadgate_pipeline::assign::Assigner::open(config, store, now)?;
                let routed = a.assign(
                    config,
                    store,
                    &[(item.lead_id.clone(), Vec::new())],
                    &by,
                    now,
                )?;
                match routed.first().and_then(|r| r.decision.rep.as_deref()) {
                    Some(rep) => effect.push_str(&format!("; assigned to {rep}")),
                    None => {
                        owned = false;
                        effect.push_str("; no rep available: held in the routing queue");
                    }
                }
            }
            if owned
                && config.crm.target != Target::None
                && config.crm.handoff.iter().any(|s| s == "qualified")
                && store
                    .enqueue_handoff(
                        tenant,
                        &item.lead_id,
                        config.crm.target.as_str(),
                        "create",
                        None,
                        now,
                    )?
                    .is_some()
            {
                effect.push_str("; queued for the CRM");
            }
            effect
        }
        _ => {
            store.set_outcome(&item.lead_id, Status::Rejected, "rejected", &by, now)?;
            format!("{} rejected", item.lead_id)
        }
    };
    Ok(Decided {
        id,
        kind: item.kind,
        lead_id: item.lead_id,
        decision: word.to_string(),
        reviewer: reviewer.to_string(),
        effect,
        merge_id,
    })
}

/// What an SLA pass did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Ticked {
    pub escalated: u64,
    pub fallbacks: u64,
}

/// Escalates items past the first SLA threshold and applies the fallback
/// to those past the second, each once, with an alert. Only the items due
/// are read (`ReviewQueue::due_queue`), however long the open queue is.
pub fn tick(config: &Config, store: &mut Store, now: i64) -> Result<Ticked> {
    let r = &config.review;
    let tenant = config.tenant.as_str();
    let mut t = Ticked::default();
    for item in store.due_queue(tenant, now - r.escalate_ms(), now - r.fallback_ms())? {
        let age = now - item.created_at;
        let hours = age as f64 / 3_600_000.0;
        if age >= r.fallback_ms() && item.fallback_at.is_none() {
            let fallback = if item.kind == "match" {
                Fallback::Manual
            } else {
                r.fallback
            };
            let what = match fallback {
                Fallback::Manual => "manual",
                Fallback::Accept => "accept",
                Fallback::Reject => "reject",
            };
            if !store.fallback_item(item.id, what, now)? {
                // Another host's scheduler applied it (hosts sharing a store).
                continue;
            }
            let message = match fallback {
                Fallback::Manual => format!(
                    "review item #{} ({}, lead {}) has waited {hours:.1} h, past the {} h SLA: escalated to a manager",
                    item.id, item.kind, item.lead_id, r.fallback_after_hours
                ),
                _ => {
                    decide(
                        config,
                        store,
                        tenant,
                        item.id,
                        what,
                        "sla:fallback",
                        Some("SLA fallback"),
                        now,
                    )?;
                    format!(
                        "review item #{} ({}, lead {}) waited {hours:.1} h, past the {} h SLA: the fallback decided '{what}'",
                        item.id, item.kind, item.lead_id, r.fallback_after_hours
                    )
                }
            };
            store.add_alert(tenant, "review.fallback", &item.lead_id, &message, now)?;
            tracing::warn!(tenant, item = item.id, "{message}");
            t.fallbacks += 1;
        } else if age >= r.escalate_ms() && item.escalated_at.is_none() {
            if !store.escalate_item(item.id, now)? {
                continue;
            }
            let message = format!(
                "review item #{} ({}, lead {}) has waited {hours:.1} h, past the {} h escalation threshold",
                item.id, item.kind, item.lead_id, r.escalate_after_hours
            );
            store.add_alert(tenant, "review.escalated", &item.lead_id, &message, now)?;
            tracing::warn!(tenant, item = item.id, "{message}");
            t.escalated += 1;
        }
    }
    Ok(t)
}

pub fn execute(config: &Config, db: &str, action: Action) -> Result<()> {
    let mut store = Store::open(db)?;
    let tenant = config.tenant.as_str();
    match action {
        Action::List { limit, json } => {
            let items = prioritized(config, &store, tenant, limit, now_ms())?;
            if json {
                for item in &items {
                    println!("{}", serde_json::to_string(item)?);
                }
            } else if items.is_empty() {
                println!("the review queue is empty");
            } else {
                for p in &items {
                    let i = &p.item;
                    let what = match (&i.lead_a, i.confidence) {
                        (Some(a), Some(c)) => format!("{} ~ {a} ({c:.3})", i.lead_id),
                        _ => i.lead_id.clone(),
                    };
                    println!(
                        "#{:<5} {:>6.2}  {:<14} {:<8} {:<7} {:>6.1}h  {what}  ({})",
                        i.id, p.priority, i.kind, i.source, p.sla, p.age_hours, i.reason
                    );
                }
            }
        }
        Action::Show { id } => {
            let item = detail(config, &store, tenant, id)?
                .with_context(|| format!("no review item #{id} for tenant {tenant}"))?;
            println!("{}", serde_json::to_string_pretty(&item)?);
        }
        Action::Decide {
            id,
            decision,
            reviewer,
            note,
        } => {
            let d = decide(
                config,
                &mut store,
                tenant,
                id,
                &decision,
                &reviewer,
                note.as_deref(),
                now_ms(),
            )?;
            println!("{}", d.effect);
        }
        Action::Stats => {
            let rows = store.review_outcomes_by_issue(tenant)?;
            if rows.is_empty() {
                println!("no validation or classification items decided by a reviewer yet");
            }
            for (code, accepted, rejected) in rows {
                let n = accepted + rejected;
                let hint = if n >= 10 && accepted as f64 >= 0.9 * n as f64 {
                    "  ← reviewers accept almost all: consider `ignore` (or a lower severity) for this finding"
                } else if n >= 10 && rejected as f64 >= 0.9 * n as f64 {
                    "  ← reviewers reject almost all: consider rejecting it automatically"
                } else {
                    ""
                };
                println!("{code:<32} accepted {accepted:>5}  rejected {rejected:>5}{hint}");
            }
            let pairs = store.decided_reviews(tenant)?.len();
            println!(
                "{pairs} decided match pair(s): `leadgate dedupe-train --reviews` re-estimates the matching model and thresholds from them"
            );
        }
    }
    Ok(())
}

/// `leadgate unmerge ID`.
pub fn unmerge(config: &Config, db: &str, id: &str, by: &str) -> Result<()> {
    let mut store = Store::open(db)?;
    let now = now_ms();
    let undone = store.unmerge(id, by, now)?;
    if undone.is_empty() {
        bail!("nothing to undo: {id} is neither an active merge id nor a lead in an active merge");
    }
    let mut masters: Vec<String> = undone.iter().map(|m| m.master_id.clone()).collect();
    masters.sort();
    masters.dedup();
    crate::matching::refresh_golden(
        &store,
        &config.tenant,
        &masters,
        &config.dedupe.survivorship,
        now,
    )?;
    for m in &undone {
        println!(
            "undid merge #{}: {} is no longer part of {} ({})",
            m.id, m.lead_id, m.master_id, m.kind
        );
    }
    Ok(())
}

/// `leadgate show ID`.
pub fn show(db: &str, id: &str) -> Result<()> {
    let store = Store::open(db)?;
    let row = store
        .lead_row(id)?
        .with_context(|| format!("no lead {id} in {db}"))?;
    let json =
        |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap_or(serde_json::Value::Null);
    let golden = store.golden(id)?.map(|g| json(&g));
    let enriched = store.enrichment(id)?.unwrap_or_default();
    let score = store.stored_score(id)?;
    let out = serde_json::json!({
        "id": row.id,
        "tenant": row.tenant,
        "status": row.status,
        "master_id": row.master_id,
        "raw": json(&row.raw),
        "normalized": row.normalized.as_deref().map(json),
        "golden": golden,
        "merges": store.merges_of(id)?,
        "enrichment": enriched.enrichment.as_deref().map(json),
        "enrichment_queued": enriched.queued,
        "qualification": enriched.qualification.map(|state| serde_json::json!({
            "state": state,
            "reasons": enriched.reasons.as_deref().map(json),
        })),
        "score": score.map(|s| serde_json::json!({
            "current": json(&s.detail),
            "scored_at": s.scored_at,
            "above_threshold": s.above,
            "surfaced_at": s.surfaced_at,
            "history": s.history.iter().map(|(at, total, cause)| serde_json::json!({"at": at, "total": total, "cause": cause})).collect::<Vec<_>>(),
        })),
        "assignment": crate::routing::assignment_json(&store, &row.tenant, id)?,
        "rules": leadgate_pipeline::rules::lead_json(&store, &row.tenant, id)?,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
