//! `leadgate eval`: how well a run's verdicts agree with ground truth
//! (validation), and how well dedupe finds the same people
//! ([`dedupe`]: pair precision, recall and F1 over labelled records).

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io::BufRead;
use std::path::Path;

#[derive(Deserialize)]
struct ResultLine {
    line: u64,
    status: String,
    issues: Vec<ResultIssue>,
}

#[derive(Deserialize)]
struct ResultIssue {
    #[serde(default)]
    field: String,
    code: String,
    severity: leadgate_lead::Severity,
    #[serde(default)]
    message: String,
}

struct Expected {
    status: String,
    codes: BTreeSet<String>,
    kind: String,
}

/// Agreement figures.
pub struct Report {
    pub records: usize,
    pub status_agree: usize,
    pub codes_agree: usize,
    /// kind → (records, status agreements, code agreements)
    pub by_kind: BTreeMap<String, (usize, usize, usize)>,
    /// (expected, actual) → count
    pub confusion: BTreeMap<(String, String), usize>,
    pub disagreements: Vec<String>,
}

pub fn evaluate(results: &Path, truth: &Path) -> Result<Report> {
    let mut expected: HashMap<u64, Expected> = HashMap::new();
    let mut rdr = csv::Reader::from_path(truth)
        .with_context(|| format!("cannot read {}", truth.display()))?;
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.with_context(|| format!("{} record {}", truth.display(), i + 1))?;
        let field = |n: usize| rec.get(n).unwrap_or("").to_string();
        let line: u64 = field(0).parse().with_context(|| {
            format!("{} record {}: line is not a number", truth.display(), i + 1)
        })?;
        expected.insert(
            line,
            Expected {
                status: field(1),
                codes: field(2)
                    .split(';')
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect(),
                kind: field(4),
            },
        );
    }
    let file = std::fs::File::open(results)
        .with_context(|| format!("cannot read {}", results.display()))?;
    let mut report = Report {
        records: 0,
        status_agree: 0,
        codes_agree: 0,
        by_kind: BTreeMap::new(),
        confusion: BTreeMap::new(),
        disagreements: Vec::new(),
    };
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{} line {}", results.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let r: ResultLine = serde_json::from_str(&line)
            .with_context(|| format!("{} line {} is not a result", results.display(), i + 1))?;
        let Some(exp) = expected.get(&r.line) else {
            bail!(
                "result for line {} has no ground truth in {}",
                r.line,
                truth.display()
            );
        };
        // Validation agreement: what dedupe added (a duplicate status, a
        // possible-duplicate review) is set aside and the validation
        // verdict read back from the remaining issues; enrichment's
        // findings (which never change the status) are set aside too, as
        // is an enrich component's failure on an otherwise valid lead.
        let later = |i: &ResultIssue| {
            i.code.starts_with("dedupe.")
                || i.code.starts_with("enrich.")
                || (i.field == "component" && i.message.starts_with("enrich component failed"))
        };
        let dedupe =
            r.status == "duplicate" || r.issues.iter().any(|i| i.code.starts_with("dedupe."));
        let issues: Vec<ResultIssue> = r.issues.into_iter().filter(|i| !later(i)).collect();
        let status = if dedupe && r.status != "rejected" && r.status != "exception" {
            let worst = issues.iter().map(|i| i.severity).max();
            match worst {
                Some(leadgate_lead::Severity::Error) => "rejected".to_string(),
                Some(leadgate_lead::Severity::Warning) => "review".to_string(),
                _ => "accepted".to_string(),
            }
        } else {
            r.status
        };
        let r = ResultLine {
            line: r.line,
            status,
            issues,
        };
        let got: BTreeSet<String> = r.issues.into_iter().map(|i| i.code).collect();
        let status_ok = r.status == exp.status;
        let codes_ok = got == exp.codes;
        report.records += 1;
        report.status_agree += usize::from(status_ok);
        report.codes_agree += usize::from(codes_ok);
        let k = report.by_kind.entry(exp.kind.clone()).or_default();
        k.0 += 1;
        k.1 += usize::from(status_ok);
        k.2 += usize::from(codes_ok);
        *report
            .confusion
            .entry((exp.status.clone(), r.status.clone()))
            .or_default() += 1;
        if !(status_ok && codes_ok) && report.disagreements.len() < 20 {
            report.disagreements.push(format!(
                "line {} ({}): expected {} {:?}, got {} {:?}",
                r.line, exp.kind, exp.status, exp.codes, r.status, got
            ));
        }
    }
    if report.records != expected.len() {
        bail!(
            "{} has {} results but the truth has {} records",
            results.display(),
            report.records,
            expected.len()
        );
    }
    Ok(report)
}

fn pct(n: usize, d: usize) -> f64 {
    if d == 0 {
        0.0
    } else {
        100.0 * n as f64 / d as f64
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "validation agreement over {} records", self.records)?;
        writeln!(
            f,
            "  status:       {:6.2}% ({}/{})",
            pct(self.status_agree, self.records),
            self.status_agree,
            self.records
        )?;
        writeln!(
            f,
            "  issue codes:  {:6.2}% ({}/{}) exact set",
            pct(self.codes_agree, self.records),
            self.codes_agree,
            self.records
        )?;
        writeln!(f, "by kind:            records   status    codes")?;
        for (kind, (n, s, c)) in &self.by_kind {
            writeln!(
                f,
                "  {kind:<18} {n:>7} {:>7.1}% {:>7.1}%",
                pct(*s, *n),
                pct(*c, *n)
            )?;
        }
        writeln!(f, "expected → got:")?;
        for ((e, g), n) in &self.confusion {
            writeln!(f, "  {e:<9} → {g:<9} {n:>7}")?;
        }
        if !self.disagreements.is_empty() {
            writeln!(f, "disagreements (first {}):", self.disagreements.len())?;
            for d in &self.disagreements {
                writeln!(f, "  {d}")?;
            }
        }
        Ok(())
    }
}

/// Dedupe accuracy over labelled records.
pub mod dedupe {
    use crate::dedupe::Prepared;
    use leadgate_merge::cluster::Guard;
    use std::collections::HashMap;
    use std::fmt;

    /// Precision, recall and F1 of the pairs that clustering at one
    /// threshold puts together.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct AtThreshold {
        pub threshold: f64,
        pub predicted: u64,
        pub true_positive: u64,
        pub false_positive: u64,
        pub false_negative: u64,
    }

    impl AtThreshold {
        pub fn precision(&self) -> f64 {
            ratio(self.true_positive, self.predicted)
        }
        pub fn recall(&self) -> f64 {
            ratio(self.true_positive, self.true_positive + self.false_negative)
        }
        pub fn f1(&self) -> f64 {
            let (p, r) = (self.precision(), self.recall());
            if p + r == 0.0 {
                0.0
            } else {
                2.0 * p * r / (p + r)
            }
        }
    }

    fn ratio(n: u64, d: u64) -> f64 {
        if d == 0 { 1.0 } else { n as f64 / d as f64 }
    }

    pub struct Report {
        pub records: usize,
        pub entities: usize,
        pub true_pairs: u64,
        pub compared: usize,
        /// True pairs that were compared (shared a blocking key).
        pub true_compared: u64,
        pub review: f64,
        pub auto_merge: f64,
        pub rows: Vec<AtThreshold>,
        /// (bin, pairs, mean probability, duplicates) over compared pairs.
        pub calibration: Vec<(usize, u64, f64, u64)>,
        /// Blocking, pass by pass.
        pub passes: Vec<crate::dedupe::PassStats>,
        /// Which model compared the pairs.
        pub model: String,
    }

    impl Report {
        pub fn at(&self, t: f64) -> Option<&AtThreshold> {
            self.rows.iter().find(|r| (r.threshold - t).abs() < 1e-9)
        }
    }

    fn pairs_of(n: u64) -> u64 {
        n * n.saturating_sub(1) / 2
    }

    /// Scores clusters at each threshold (and at the tenant's two) against
    /// the truth. Records without a truth value count as their own entity.
    pub fn evaluate(p: &Prepared, review: f64, auto_merge: f64, guard: Guard) -> Report {
        let mut ids: HashMap<&str, u32> = HashMap::new();
        let entity: Vec<u32> = p
            .truth
            .iter()
            .enumerate()
            .map(|(i, t)| match t.as_deref().filter(|t| !t.is_empty()) {
                Some(t) => {
                    let next = ids.len() as u32;
                    *ids.entry(t).or_insert(next)
                }
                None => u32::MAX - i as u32,
            })
            .collect();
        let mut sizes: HashMap<u32, u64> = HashMap::new();
        for e in &entity {
            *sizes.entry(*e).or_default() += 1;
        }
        let true_pairs: u64 = sizes.values().map(|n| pairs_of(*n)).sum();
        let same = |i: usize| {
            let (a, b) = p.pair(i);
            entity[a as usize] == entity[b as usize]
        };
        let true_compared = (0..p.pairs.len()).filter(|&i| same(i)).count() as u64;

        let mut thresholds: Vec<f64> =
            vec![0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99];
        for t in [review, auto_merge] {
            if !thresholds.iter().any(|x| (x - t).abs() < 1e-9) {
                thresholds.push(t);
            }
        }
        thresholds.sort_by(f64::total_cmp);
        let rows = thresholds
            .into_iter()
            .map(|t| {
                let clusters = p.clusters(t, guard);
                let (mut predicted, mut tp) = (0, 0);
                for g in &clusters.groups {
                    predicted += pairs_of(g.len() as u64);
                    let mut by: HashMap<u32, u64> = HashMap::new();
                    for r in g {
                        *by.entry(entity[*r as usize]).or_default() += 1;
                    }
                    tp += by.values().map(|n| pairs_of(*n)).sum::<u64>();
                }
                AtThreshold {
                    threshold: t,
                    predicted,
                    true_positive: tp,
                    false_positive: predicted - tp,
                    false_negative: true_pairs - tp,
                }
            })
            .collect();

        let mut bins = vec![(0u64, 0.0f64, 0u64); 10];
        for i in 0..p.pairs.len() {
            let prob = f64::from(p.probabilities[i]);
            let b = ((prob * 10.0) as usize).min(9);
            bins[b].0 += 1;
            bins[b].1 += prob;
            bins[b].2 += u64::from(same(i));
        }
        let calibration = bins
            .into_iter()
            .enumerate()
            .map(|(b, (n, sum, dup))| (b, n, if n == 0 { 0.0 } else { sum / n as f64 }, dup))
            .collect();
        Report {
            records: p.leads.len(),
            entities: sizes.len(),
            true_pairs,
            compared: p.pairs.len(),
            true_compared,
            review,
            auto_merge,
            rows,
            calibration,
            passes: p.stats.passes.clone(),
            model: crate::dedupe::describe_model(p),
        }
    }

    impl fmt::Display for Report {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            writeln!(
                f,
                "dedupe evaluation over {} records ({} people, {} true duplicate pairs)",
                self.records, self.entities, self.true_pairs
            )?;
            writeln!(
                f,
                "  blocking: {} pairs compared ({:.2} per record); {:.2}% of true pairs were compared",
                self.compared,
                self.compared as f64 / self.records.max(1) as f64,
                100.0 * ratio(self.true_compared, self.true_pairs)
            )?;
            crate::dedupe::write_passes(f, &self.passes, self.records)?;
            writeln!(f, "  model: {}", self.model)?;
            if let Some(r) = self.at(self.review) {
                writeln!(
                    f,
                    "  at the review threshold {:.2} (clusters): precision {:.4}  recall {:.4}  F1 {:.4}",
                    self.review,
                    r.precision(),
                    r.recall(),
                    r.f1()
                )?;
            }
            if let Some(r) = self.at(self.auto_merge) {
                writeln!(
                    f,
                    "  auto-merge decisions (≥ {:.2}): {} pairs, precision {:.4}",
                    self.auto_merge,
                    r.predicted,
                    r.precision()
                )?;
            }
            writeln!(
                f,
                "  threshold  predicted        TP      FP      FN  precision  recall      F1"
            )?;
            for r in &self.rows {
                writeln!(
                    f,
                    "  {:>9.2} {:>10} {:>9} {:>7} {:>7} {:>10.4} {:>7.4} {:>7.4}",
                    r.threshold,
                    r.predicted,
                    r.true_positive,
                    r.false_positive,
                    r.false_negative,
                    r.precision(),
                    r.recall(),
                    r.f1()
                )?;
            }
            writeln!(
                f,
                "  calibration of compared pairs: probability bin → share that are duplicates"
            )?;
            for (b, n, mean, dup) in &self.calibration {
                if *n > 0 {
                    writeln!(
                        f,
                        "    {:.1}–{:.1}: {:>8} pairs, mean probability {:.3}, duplicates {:.3}",
                        *b as f64 / 10.0,
                        (*b + 1) as f64 / 10.0,
                        n,
                        mean,
                        *dup as f64 / *n as f64
                    )?;
                }
            }
            Ok(())
        }
    }
}
