//! The report of a clean-up: what was read, blocked, compared and merged,
//! per pass, the model used, and a pair explained.

use super::*;

pub fn print_report(r: &Report, opts: &Options) {
    let s = &r.stats;
    eprintln!(
        "leadgate dedupe: {} records ({} took part, {} left out: unreadable or a component failure) in {:.1} s",
        s.records,
        r.records,
        s.left_out,
        r.elapsed.as_secs_f64()
    );
    eprintln!(
        "  read and validated in {:.1} s; model in {:.1} s",
        s.read.as_secs_f64(),
        s.estimate.as_secs_f64()
    );
    eprintln!(
        "  blocking: {} keys, {} blocks, {} pairs compared ({:.2} per record) in {:.1} s",
        s.keys,
        s.blocks,
        r.pairs_compared,
        r.pairs_compared as f64 / (r.records.max(1) as f64),
        s.compare.as_secs_f64()
    );
    let mut passes = String::new();
    if write_passes(&mut passes, &s.passes, r.records).is_ok() {
        eprint!("{passes}");
    }
    if let Some((example, n)) = &s.oversize_example {
        eprintln!(
            "  {} keys were shared by more than dedupe.max_block records: compared as a sorted neighbourhood (largest: {example}, {n} records)",
            s.oversize_blocks
        );
    }
    eprintln!("  model: {}", r.model);
    if s.compare_failures > 0 {
        eprintln!(
            "  {} pairs could not be compared (the component failed on them): scored 0",
            s.compare_failures
        );
    }
    eprintln!(
        "  {} pairs at or above the review threshold → {}",
        r.pairs_written,
        opts.pairs.display()
    );
    eprintln!(
        "  {} clusters; merge plan: {} groups absorbing {} records; {} pairs for review{}",
        r.clusters,
        r.merge_groups,
        r.merged_records,
        r.reviews,
        if r.refused_joins > 0 {
            format!("; the chain guard refused {} joins", r.refused_joins)
        } else {
            String::new()
        }
    );
    if let Some(peak) = peak_memory() {
        eprintln!("  peak memory {peak}");
    }
    match r.applied {
        Some(run) => eprintln!(
            "  applied to {} as run {run}: every merge can be undone with `leadgate unmerge`",
            opts.db
        ),
        None => eprintln!("  dry run: nothing was written to the store"),
    }
}

/// One line per blocking pass: its blocks, oversize blocks and proposed
/// pairs per record, and whether it was left out.
pub fn write_passes(
    f: &mut impl std::fmt::Write,
    passes: &[PassStats],
    records: usize,
) -> std::fmt::Result {
    for pass in passes {
        writeln!(
            f,
            "    pass {:<4} {:>9} blocks {:>6} oversize {:>8.2} pairs a record{}",
            pass.name,
            pass.blocks,
            pass.oversize,
            pass.pairs as f64 / records.max(1) as f64,
            if pass.dropped {
                " (left out: over dedupe.max_pairs_per_record)"
            } else {
                ""
            }
        )?;
    }
    Ok(())
}

/// Which model compared the pairs, for reports.
pub fn describe_model(p: &Prepared) -> String {
    match &p.estimate {
        None => "the configured model (pinned)".into(),
        Some(Estimated::Skipped(why)) => format!("{why}: the configured model was used"),
        Some(e @ Estimated::Done(_)) => format!("estimated on this file: {}", describe_estimate(e)),
    }
}

/// What estimating did: the EM run, or why there was none.
pub fn describe_estimate(e: &Estimated) -> String {
    match e {
        Estimated::Skipped(why) => why.clone(),
        Estimated::Done(r) => format!(
            "EM over {} candidate pairs ({} iterations{}), u from {} random pairs; about {:.0} of the {:.0} candidate pairs are duplicates (prior {:.3e})",
            r.blocked_pairs,
            r.iterations,
            if r.converged { "" } else { ", not converged" },
            r.random_pairs,
            r.duplicates,
            r.candidate_pairs,
            r.prior
        ),
    }
}

/// The evidence of chosen pairs (indexes into `p.pairs`), from a fresh
/// instance of the dedupe component: for review items and for training.
pub fn explain(
    config: &Config,
    p: &Prepared,
    which: &[usize],
) -> Result<Vec<Vec<leadgate_lead::Evidence>>> {
    let runtime = Runtime::new(config.runtime_limits(), config.cache_dir())?;
    let dedupe = DeduperComponent::load(&runtime, &config.dedupe_component()?)?;
    let mut matcher = Matcher::new(&dedupe, p.settings.clone())?;
    let now = now_ms();
    let mut out = Vec::with_capacity(which.len());
    for chunk in which.chunks(COMPARE_BATCH) {
        let pairs: Vec<(u32, u32)> = chunk.iter().map(|&i| p.pair(i)).collect();
        for m in matcher.compare_pairs(&p.leads, &pairs, true, now) {
            out.push(m.map(|m| m.evidence).unwrap_or_default());
        }
    }
    Ok(out)
}

/// This process's peak resident memory (Linux), for the report.
pub(super) fn peak_memory() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(format!("{:.0} MiB", kib / 1024.0))
}

/// Writes the clusters file: each group at the review threshold, what the
/// plan does with it, and (for a merge) the golden record.
pub(super) fn write_clusters(
    path: &std::path::Path,
    config: &Config,
    prepared: &Prepared,
    review_clusters: &cluster::Clusters,
    merge_clusters: &cluster::Clusters,
    kind: LinkKind,
    applied: bool,
) -> Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    for (k, group) in review_clusters.groups.iter().enumerate() {
        let planned = merge_clusters.groups.binary_search(group).is_ok();
        let members: Vec<(String, Lead)> = group
            .iter()
            .map(|&r| {
                (
                    prepared.leads[r as usize].id.clone(),
                    prepared.leads[r as usize].clone(),
                )
            })
            .collect();
        let line = ClusterLine {
            cluster: k + 1,
            lines: group.iter().map(|&r| prepared.lines[r as usize]).collect(),
            decision: if planned { kind.as_str() } else { "review" },
            lead_ids: applied.then(|| {
                group
                    .iter()
                    .map(|&r| prepared.leads[r as usize].id.as_str())
                    .collect()
            }),
            golden: (planned && kind == LinkKind::Merge)
                .then(|| survivorship::golden(&members, &config.dedupe.survivorship))
                .flatten(),
        };
        serde_json::to_writer(&mut w, &line)?;
        w.write_all(b"\n")?;
    }
    w.flush()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
