//! The match review queue from the command line (`leadgate review list |
//! show | decide`), and undoing merges (`leadgate unmerge`), and looking at
//! a stored lead (`leadgate show`).
//!
//! A reviewer's decision is stored with the pair's evidence: `merge` links
//! the newer lead into the older one's golden record, `distinct` keeps them
//! apart. Decided pairs are labelled data for `leadgate dedupe-train
//! --reviews`, so the model learns the tenant's own ambiguities.

use crate::config::Config;
use crate::run::now_ms;
use anyhow::{Context, Result, bail};
use clap::{Subcommand, ValueEnum};
use leadgate_store::{Link, LinkKind, Store};

#[derive(Subcommand)]
pub enum Action {
    /// Undecided items, oldest first.
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One item with both leads and the evidence.
    Show { id: i64 },
    /// Decide an item.
    Decide {
        id: i64,
        #[arg(value_enum)]
        decision: ReviewDecision,
        /// Who decided, for the audit trail.
        #[arg(long)]
        reviewer: String,
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReviewDecision {
    /// The same person: merge the newer lead into the older one.
    Merge,
    /// Different people.
    #[value(alias = "not-duplicate")]
    Distinct,
}

pub fn execute(config: &Config, db: &str, action: Action) -> Result<()> {
    let mut store = Store::open(db)?;
    let tenant = config.tenant.as_str();
    match action {
        Action::List { limit, json } => {
            let items = store.open_reviews(tenant, limit)?;
            if json {
                for item in &items {
                    println!("{}", serde_json::to_string(item)?);
                }
            } else if items.is_empty() {
                println!("the match review queue is empty");
            } else {
                for i in &items {
                    println!(
                        "#{:<5} {:.3}  {} ~ {}  ({})",
                        i.id, i.probability, i.lead_a, i.lead_b, i.reason
                    );
                }
            }
        }
        Action::Show { id } => {
            let item = store
                .review_item(tenant, id)?
                .with_context(|| format!("no match review item #{id} for tenant {tenant}"))?;
            let evidence: serde_json::Value =
                serde_json::from_str(&item.evidence).unwrap_or(serde_json::Value::Null);
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
            let out = serde_json::json!({
                "id": item.id,
                "probability": item.probability,
                "reason": item.reason,
                "lead_a": lead(&item.lead_a)?,
                "lead_b": lead(&item.lead_b)?,
                "evidence": evidence,
                "decision": item.decision,
                "reviewer": item.reviewer,
                "note": item.note,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Action::Decide {
            id,
            decision,
            reviewer,
            note,
        } => {
            if reviewer.trim().is_empty() {
                bail!("--reviewer must name who decided");
            }
            let item = store
                .review_item(tenant, id)?
                .with_context(|| format!("no match review item #{id} for tenant {tenant}"))?;
            if let Some(d) = &item.decision {
                bail!(
                    "review item #{id} was already decided ({d}, by {}); undo a merge with `leadgate unmerge`",
                    item.reviewer.as_deref().unwrap_or("?")
                );
            }
            let now = now_ms();
            let word = match decision {
                ReviewDecision::Merge => "merge",
                ReviewDecision::Distinct => "distinct",
            };
            store.decide_review(id, word, &reviewer, note.as_deref(), now)?;
            if decision == ReviewDecision::Merge {
                let master = store.master_of(&item.lead_a)?;
                let by = format!("reviewer:{reviewer}");
                let merge = store.link(
                    tenant,
                    &item.lead_b,
                    &Link {
                        master: &master,
                        kind: LinkKind::Merge,
                        probability: item.probability,
                        evidence: &item.evidence,
                        decided_by: &by,
                    },
                    now,
                )?;
                crate::matching::refresh_golden(
                    &store,
                    tenant,
                    std::slice::from_ref(&master),
                    &config.dedupe.survivorship,
                    now,
                )?;
                println!(
                    "merged {} into {master} (merge #{merge}); `leadgate unmerge {merge}` undoes it",
                    item.lead_b
                );
            } else {
                println!(
                    "recorded: {} and {} are different people",
                    item.lead_a, item.lead_b
                );
            }
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
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
