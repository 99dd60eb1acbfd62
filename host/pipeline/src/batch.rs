//! Reading a file of records for batch scoring, calibration and reports:
//! each record becomes a lead (header aliases, `--map`), normalized by the
//! validate component the way live leads are — so a model fitted on a
//! history export sees values spelled as at intake — but never rejected:
//! history exports often carry only attributes and activity counts, no
//! contact fields, and every record still gets a score.

use crate::config::Config;
use anyhow::{Context, Result};
use leadgate_ingest::{Format, Limits as IngestLimits, Mapping, Reader};
use leadgate_lead::Lead;
use leadgate_lead::score::Subject;
use leadgate_runtime::{Runtime, ValidatorComponent};

/// Lead fields never used as features: identifiers and contact details.
pub const NOT_FEATURES: &[&str] = &[
    "email",
    "phone",
    "phone_extension",
    "first_name",
    "last_name",
    "full_name",
    "street",
    "company_key",
    "website",
];

/// Records read from a file, in order.
pub struct Records {
    /// 1-based record numbers of `subjects`.
    pub lines: Vec<u64>,
    pub subjects: Vec<Subject>,
    /// Records that could not be read: line and reason.
    pub malformed: Vec<(u64, String)>,
    /// Each column and the field it feeds.
    pub columns: Vec<(String, String)>,
}

pub struct Input<'a> {
    pub path: &'a str,
    pub format: Option<Format>,
    pub map: &'a [String],
}

/// Reads `input`; with `runtime`, normalizes each lead with the validate
/// component (a lead the component fails on is kept as read).
pub fn read(config: &Config, input: &Input<'_>, runtime: Option<&Runtime>) -> Result<Records> {
    let format = match input.format {
        Some(f) => f,
        None => Format::from_path(input.path).with_context(|| {
            format!(
                "cannot tell the format of {} from its name: pass --format csv or --format ndjson",
                input.path
            )
        })?,
    };
    let open = |map: &[String]| -> Result<Reader> {
        let mapping = Mapping::parse(map)?;
        let file = std::fs::File::open(input.path)
            .with_context(|| format!("cannot open input {}", input.path))?;
        Reader::new(Box::new(file), format, mapping, IngestLimits::default())
            .with_context(|| format!("cannot read {}", input.path))
    };
    let mut reader = open(input.map)?;
    // A column that feeds a field scoring cannot read as text (`Lead
    // Source` → source, a date → received_at, an opt-in → consent) is
    // kept as a custom column under its header: it may be a good feature.
    let kept: Vec<String> = reader
        .columns()
        .iter()
        .filter(|(h, t)| {
            t != "ignore"
                && !t.starts_with("custom.")
                && !leadgate_lead::TEXT_FIELDS.contains(&t.as_str())
                && !input.map.iter().any(|m| {
                    m.split_once('=')
                        .is_some_and(|(c, _)| c.trim().eq_ignore_ascii_case(h))
                })
        })
        .map(|(h, _)| format!("{h}=custom.{h}"))
        .collect();
    if !kept.is_empty() {
        let mut map = input.map.to_vec();
        map.extend(kept);
        reader = open(&map)?;
    }
    let columns = reader.columns();
    let validate = match runtime {
        Some(rt) => Some(ValidatorComponent::load(rt, &config.validate_component()?)?),
        None => None,
    };
    let mut validator = match &validate {
        Some(c) => Some(crate::engine::Validator::new(
            c,
            config.validate_settings()?,
        )?),
        None => None,
    };
    let now = crate::clock::now_ms();
    let mut out = Records {
        lines: Vec::new(),
        subjects: Vec::new(),
        malformed: Vec::new(),
        columns,
    };
    let batch = config.limits.batch_size.max(1);
    loop {
        let mut lines = Vec::with_capacity(batch);
        let mut leads: Vec<Lead> = Vec::with_capacity(batch);
        while leads.len() < batch {
            match reader.next_record() {
                None => break,
                Some(r) => {
                    let r = r.with_context(|| format!("reading {}", input.path))?;
                    match r.outcome {
                        Ok(p) => {
                            let mut lead = p.lead;
                            lead.tenant = config.tenant.clone();
                            lead.id = r.line.to_string();
                            if !p.has_received_at {
                                lead.received_at = now;
                            }
                            lines.push(r.line);
                            leads.push(lead);
                        }
                        Err(m) => out
                            .malformed
                            .push((r.line, format!("{}: {}", m.code, m.message))),
                    }
                }
            }
        }
        if leads.is_empty() {
            break;
        }
        let normalized: Vec<Lead> = match validator.as_mut() {
            None => leads,
            Some(v) => {
                let results = v.validate(&leads, now);
                leads
                    .into_iter()
                    .zip(results)
                    .map(|(raw, r)| match r {
                        Ok(v) => {
                            let mut l = v.lead;
                            // A value validation could not normalize (a
                            // country name it does not know) is kept as read
                            // under the field's name: an attribute of a
                            // history export is a feature as it is.
                            let mut kept: Vec<leadgate_lead::CustomField> = Vec::new();
                            for f in leadgate_lead::TEXT_FIELDS
                                .iter()
                                .filter(|f| !NOT_FEATURES.contains(f))
                            {
                                if let (Some(value), None) = (raw.field(f), l.field(f)) {
                                    kept.push(leadgate_lead::CustomField {
                                        key: (*f).to_string(),
                                        value: value.to_string(),
                                    });
                                }
                            }
                            // Custom columns are features: keep them as read.
                            if l.custom.is_empty() {
                                l.custom = raw.custom;
                            }
                            for c in kept {
                                if !l.custom.iter().any(|k| k.key.eq_ignore_ascii_case(&c.key)) {
                                    l.custom.push(c);
                                }
                            }
                            l
                        }
                        Err(_) => raw,
                    })
                    .collect()
            }
        };
        out.lines.extend(lines);
        out.subjects
            .extend(normalized.into_iter().map(|lead| Subject {
                lead,
                ..Subject::default()
            }));
    }
    Ok(out)
}

/// What batch scoring did.
#[derive(Debug, Default)]
pub struct Scored {
    pub scored: u64,
    pub malformed: u64,
    pub failed: u64,
}

/// Scores every record of `records` with `scoring`: one result per record,
/// in line order (the record's line, and its score or why it has none).
pub fn score_records(
    records: &Records,
    scoring: &mut crate::score::Scoring<'_>,
    now: i64,
) -> Vec<(u64, Result<leadgate_lead::score::Scored, String>)> {
    let refs: Vec<&Subject> = records.subjects.iter().collect();
    let results = scoring.score(&refs, now);
    let mut out: Vec<(u64, Result<leadgate_lead::score::Scored, String>)> = records
        .lines
        .iter()
        .copied()
        .zip(
            results
                .into_iter()
                .map(|r| r.map_err(|e| format!("{}: {e}", e.code()))),
        )
        .collect();
    out.extend(records.malformed.iter().map(|(l, m)| (*l, Err(m.clone()))));
    out.sort_by_key(|(l, _)| *l);
    out
}

/// `leadgate score`: one JSON object per record, `{"line": N, "score": …}`,
/// or `{"line": N, "error": …}` for a record that could not be read.
pub fn score_file(
    config: &Config,
    input: &Input<'_>,
    model: Option<&std::path::Path>,
    output: &str,
) -> Result<Scored> {
    use std::io::Write;
    let runtime = Runtime::new(config.runtime_limits(), config.cache_dir())?;
    let stage = crate::score::Stage::load(config, &runtime, model)?;
    let mut scoring = stage.scoring(config)?;
    let records = read(config, input, Some(&runtime))?;
    let now = crate::clock::now_ms();
    let results = score_records(&records, &mut scoring, now);
    let mut out: Box<dyn Write> = if output == "-" {
        Box::new(std::io::BufWriter::new(std::io::stdout()))
    } else {
        Box::new(std::io::BufWriter::new(
            std::fs::File::create(output).with_context(|| format!("cannot create {output}"))?,
        ))
    };
    let mut report = Scored {
        malformed: records.malformed.len() as u64,
        ..Scored::default()
    };
    for (line, r) in results {
        let v = match r {
            Ok(s) => {
                report.scored += 1;
                serde_json::json!({"line": line, "score": s})
            }
            Err(e) => {
                report.failed += 1;
                serde_json::json!({"line": line, "error": e})
            }
        };
        writeln!(out, "{v}").with_context(|| format!("cannot write {output}"))?;
    }
    report.failed -= report.malformed.min(report.failed);
    out.flush()
        .with_context(|| format!("cannot write {output}"))?;
    Ok(report)
}
