//! Writing a merge plan into the store: the kept records with their keys,
//! recorded as a run.

use super::*;

/// Pairs per component call in batch comparison.
pub(super) const COMPARE_BATCH: usize = 1024;

/// A record that took part, as read and as validated.
pub(super) struct Kept {
    pub(super) line: u64,
    pub(super) lead: Lead,
    pub(super) verdict: Verdict,
    pub(super) issues: Vec<leadgate_lead::Issue>,
    pub(super) truth: Option<String>,
    pub(super) raw: Lead,
}

/// Stores the records of a chunk (batch clean-up without `--dry-run`),
/// with their validation issues and blocking keys.
pub(super) fn write_records(
    a: &mut Apply<'_>,
    kept: &[Kept],
    keys: &[Vec<i64>],
    now: i64,
) -> Result<()> {
    let normalized: Vec<String> = kept
        .iter()
        .map(|k| serde_json::to_string(&k.lead))
        .collect::<Result<_, _>>()?;
    let records: Vec<Record<'_>> = kept
        .iter()
        .zip(&normalized)
        .zip(keys)
        .map(|((k, json), keys)| {
            let status = Status::of(k.verdict);
            Record {
                line: k.line,
                raw: &k.raw,
                status,
                validation: status,
                normalized: Some(json),
                issues: &k.issues,
                exception: None,
                keys,
                link: None,
                review: None,
                enrichment: None,
                qualification: None,
            }
        })
        .collect();
    a.store
        .record(a.run_id, "validate", &a.component, &records, now)?;
    Ok(())
}

/// The merge plan of a clean-up, as applied to the store.
pub(super) struct Plan<'a> {
    pub(super) merge_clusters: &'a cluster::Clusters,
    /// Pairs for a person to decide: lead a, lead b, probability, and
    /// whether their consent conflicts.
    pub(super) reviews: &'a [(u32, u32, f64, bool)],
    pub(super) kind: LinkKind,
    pub(super) merged_records: usize,
}

/// Applies a merge plan to the store as the run's outcome: the links and
/// merges (with golden records refreshed), the pairs for review with their
/// evidence, and the run's totals.
pub(super) fn apply_plan(
    store: &mut Store,
    run_id: i64,
    config: &Config,
    prepared: &Prepared,
    plan: &Plan<'_>,
) -> Result<()> {
    let review_pairs: Vec<usize> = plan
        .reviews
        .iter()
        .filter_map(|(a, b, _, _)| {
            prepared
                .pairs
                .binary_search(&cluster::pair_key(*a, *b))
                .ok()
        })
        .collect();
    let evidence: Vec<String> = explain(config, prepared, &review_pairs)?
        .iter()
        .map(serde_json::to_string)
        .collect::<Result<_, _>>()?;
    let now = now_ms();
    let tenant = config.tenant.as_str();
    let mut masters = Vec::new();
    for group in &plan.merge_clusters.groups {
        let master = &prepared.leads[group[0] as usize].id;
        for &r in &group[1..] {
            let prob = group
                .iter()
                .filter(|&&o| o != r)
                .filter_map(|&o| prepared.probability(r, o))
                .fold(0.0f32, f32::max);
            store.link(
                tenant,
                &prepared.leads[r as usize].id,
                &Link {
                    master,
                    kind: plan.kind,
                    probability: f64::from(prob),
                    evidence: "[]",
                    decided_by: "dedupe",
                },
                now,
            )?;
        }
        if plan.kind == LinkKind::Merge {
            masters.push(master.clone());
        }
    }
    crate::matching::refresh_golden(store, tenant, &masters, &config.dedupe.survivorship, now)?;
    for ((a, b, prob, conflict), evidence) in plan.reviews.iter().zip(&evidence) {
        store.add_review(
            tenant,
            &prepared.leads[*b as usize].id,
            &Review {
                other: &prepared.leads[*a as usize].id,
                probability: *prob,
                evidence,
                reason: if *conflict {
                    "consent_conflict"
                } else {
                    "uncertain"
                },
            },
            Some(run_id),
            now,
        )?;
    }
    let totals = leadgate_store::Totals {
        total: prepared.stats.records,
        duplicates: plan.merged_records as u64,
        review: plan.reviews.len() as u64,
        rejected: prepared
            .verdicts
            .iter()
            .filter(|v| **v == Verdict::Reject)
            .count() as u64,
        ..leadgate_store::Totals::default()
    };
    store.finish_run(run_id, &totals, "done", now)?;
    Ok(())
}
