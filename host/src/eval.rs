//! `leadgate eval`: how well a run's verdicts agree with ground truth.

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
    code: String,
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
