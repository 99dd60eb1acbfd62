//! `leadgate events`: behavioural events from an NDJSON file — page views,
//! content downloads, email opens and clicks, form submissions, trial
//! sign-ups, product usage, support inquiries, replies — attached to their
//! lead by lead id, email or external id, then the leads they touch (and
//! their accounts) re-scored.
//!
//! One JSON object per line:
//!
//! ```json
//! {"id": "ev-1", "type": "page_view", "at": "2026-11-02T10:00:00Z",
//!  "email": "ann@acme.com", "url": "https://acme.com/pricing"}
//! ```
//!
//! A malformed event is rejected with the field and the reason, counted,
//! and kept in the store (`event_rejects`); an event id seen before is
//! ignored, so a file can be loaded twice; an event for a person not known
//! yet is kept and attached when the person appears.

use crate::config::Config;
use anyhow::{Context, Result};
use leadgate_lead::score::EventKind;
use leadgate_store::Store;
use leadgate_store::prelude::*;
use leadgate_store::score::{EventReject, NewEvent};
use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;

/// Events stored per transaction.
const BATCH: usize = 5_000;
/// The longest event line read.
const MAX_LINE: usize = 1 << 20;
/// How far ahead of "now" an event may be stamped (clock skew).
const FUTURE_SLACK_MS: i64 = 86_400_000;

fn reject(line: u64, field: &str, code: &str, message: String, raw: &str) -> EventReject {
    EventReject {
        line,
        field: field.to_string(),
        code: code.to_string(),
        message,
        raw: raw.to_string(),
    }
}

fn text<'a>(
    o: &'a serde_json::Map<String, serde_json::Value>,
    names: &[&'static str],
) -> Option<(&'static str, &'a serde_json::Value)> {
    names
        .iter()
        .find_map(|n| o.get(*n).filter(|v| !v.is_null()).map(|v| (*n, v)))
}

/// An event line's JSON object.
type Object = serde_json::Map<String, serde_json::Value>;

/// Builds the refusal of a line: field, code, message.
type Bad<'a> = &'a dyn Fn(&str, &str, String) -> EventReject;

/// Parses one event line.
pub fn parse(
    line: u64,
    raw: &str,
    pages: &BTreeMap<String, Vec<String>>,
    now: i64,
) -> Result<NewEvent, EventReject> {
    let bad = |field: &str, code: &str, message: String| reject(line, field, code, message, raw);
    let json: serde_json::Value = serde_json::from_str(raw)
        .map_err(|e| bad("event", "event.json", format!("not JSON: {e}")))?;
    let Some(o) = json.as_object() else {
        return Err(bad(
            "event",
            "event.json",
            "an event must be a JSON object".into(),
        ));
    };
    if let Some((_, serde_json::Value::String(t))) = text(o, &["type", "kind", "event"])
        && STAGE_CHANGE.contains(&t.trim().to_ascii_lowercase().as_str())
    {
        return stage_change(o, &json, raw, now, &bad);
    }
    let kind = kind_of(o, &bad)?;
    let at = time_of(o, now, &bad)?;
    let (email, lead_ref, external) = subject_of(o, &bad)?;
    let url = o
        .get("url")
        .and_then(|u| u.as_str())
        .map(|s| s.trim().to_string());
    let category = match o.get("category").and_then(|c| c.as_str()) {
        Some(c) if !c.trim().is_empty() => Some(c.trim().to_ascii_lowercase()),
        _ if kind == EventKind::PageView => url
            .as_deref()
            .and_then(|u| crate::score::categorize(pages, u)),
        _ => None,
    };
    let value = match o.get("value") {
        None | Some(serde_json::Value::Null) => 1.0,
        Some(v) => match v.as_f64() {
            Some(x) if x.is_finite() && x >= 0.0 => x,
            _ => {
                return Err(bad(
                    "value",
                    "event.value",
                    format!("`value` {v} must be a number of 0 or more"),
                ));
            }
        },
    };
    let id = id_of(o, &json, &bad)?;
    Ok(NewEvent {
        id,
        kind: kind.as_str(),
        at,
        category,
        value,
        url,
        email,
        lead_ref,
        external,
        payload: raw.to_string(),
    })
}

/// Whom the event is about: email, lead id and external id; at least one.
type Subject = (Option<String>, Option<String>, Option<(String, String)>);

fn subject_of(o: &Object, bad: Bad<'_>) -> Result<Subject, EventReject> {
    let email = email_of(o, bad)?;
    let lead_ref = match text(o, &["lead_id", "lead"]) {
        None => None,
        Some((_, serde_json::Value::String(s))) if !s.trim().is_empty() => {
            Some(s.trim().to_string())
        }
        Some((name, v)) => {
            return Err(bad(
                name,
                "event.lead_id",
                format!("`{name}` {v} is not a lead id"),
            ));
        }
    };
    let external = external_of(o, bad)?;
    if email.is_none() && lead_ref.is_none() && external.is_none() {
        return Err(bad(
            "email",
            "event.subject_missing",
            "the event names no one: give `email`, `lead_id` or `external_id`".into(),
        ));
    }
    Ok((email, lead_ref, external))
}

/// The spellings of a lifecycle stage change's type.
const STAGE_CHANGE: &[&str] = &["stage_change", "stage change", "lifecycle_stage"];

/// The longest stage name taken.
const MAX_STAGE: usize = 64;

/// A lifecycle or opportunity stage change (`{"type": "stage_change",
/// "stage": "opportunity", …}`): kept as an event of kind `stage_change`
/// whose category is the stage, attached to its lead like any event, and
/// not scored. The lead's stage is the latest by time.
fn stage_change(
    o: &Object,
    json: &serde_json::Value,
    raw: &str,
    now: i64,
    bad: Bad<'_>,
) -> Result<NewEvent, EventReject> {
    let at = time_of(o, now, bad)?;
    let stage = match text(o, &["stage", "to", "lifecycle_stage"]) {
        Some((_, serde_json::Value::String(s))) => s.trim().to_ascii_lowercase(),
        Some((name, v)) => {
            return Err(bad(
                name,
                "event.stage",
                format!("`{name}` {v} is not a stage name"),
            ));
        }
        None => {
            return Err(bad(
                "stage",
                "event.stage_missing",
                "a stage_change event names its new `stage`".into(),
            ));
        }
    };
    if stage.is_empty()
        || stage.len() > MAX_STAGE
        || !stage
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(bad(
            "stage",
            "event.stage",
            format!(
                "`stage` {stage:?} must be 1 to {MAX_STAGE} letters, digits, `_` or `-` (e.g. opportunity)"
            ),
        ));
    }
    let (email, lead_ref, external) = subject_of(o, bad)?;
    Ok(NewEvent {
        id: id_of(o, json, bad)?,
        kind: "stage_change",
        at,
        category: Some(stage),
        value: 0.0,
        url: None,
        email,
        lead_ref,
        external,
        payload: raw.to_string(),
    })
}

/// The event type (`type`, `kind` or `event`).
fn kind_of(o: &Object, bad: Bad<'_>) -> Result<EventKind, EventReject> {
    Ok(match text(o, &["type", "kind", "event"]) {
        None => {
            return Err(bad(
                "type",
                "event.type_missing",
                "the event has no `type`".into(),
            ));
        }
        Some((name, v)) => {
            let s = v.as_str().unwrap_or_default();
            EventKind::parse(s).ok_or_else(|| {
                bad(
                    name,
                    "event.type",
                    format!(
                        "`{name}` {v} is not an event type; use one of {}, or stage_change",
                        EventKind::ALL.map(EventKind::as_str).join(", ")
                    ),
                )
            })?
        }
    })
}

/// When it happened, in ms: RFC 3339, a date, or Unix seconds or
/// milliseconds; not more than a day ahead of `now`.
fn time_of(o: &Object, now: i64, bad: Bad<'_>) -> Result<i64, EventReject> {
    Ok(match text(o, &["at", "timestamp", "time", "occurred_at"]) {
        None => {
            return Err(bad(
                "at",
                "event.at_missing",
                "the event has no `at` time".into(),
            ));
        }
        Some((name, v)) => {
            let ms = match v {
                serde_json::Value::Number(n) => n.as_i64().map(|n| {
                    if n.abs() < 100_000_000_000 {
                        n * 1000
                    } else {
                        n
                    }
                }),
                serde_json::Value::String(s) => leadgate_ingest::timestamp_ms(s),
                _ => None,
            };
            let ms = ms.ok_or_else(|| {
                bad(name, "event.at", format!("`{name}` {v} is not a time (RFC 3339, a date, or Unix seconds/milliseconds)"))
            })?;
            if ms > now + FUTURE_SLACK_MS {
                return Err(bad(
                    name,
                    "event.at_future",
                    format!("`{name}` {v} is more than a day in the future"),
                ));
            }
            ms
        }
    })
}

/// The person's email address, lower-cased, if the event gives one.
fn email_of(o: &Object, bad: Bad<'_>) -> Result<Option<String>, EventReject> {
    Ok(match text(o, &["email", "email_address"]) {
        None => None,
        Some((name, v)) => {
            let e = v
                .as_str()
                .map(|s| s.trim().to_lowercase())
                .unwrap_or_default();
            match e.split_once('@') {
                Some((l, d)) if !l.is_empty() && d.contains('.') => Some(e),
                _ => {
                    return Err(bad(
                        name,
                        "event.email",
                        format!("`{name}` {v} is not an email address"),
                    ));
                }
            }
        }
    })
}

/// The person's id in another system, `{"system": …, "id": …}` or
/// `"system:id"`, if the event gives one.
fn external_of(o: &Object, bad: Bad<'_>) -> Result<Option<(String, String)>, EventReject> {
    Ok(match text(o, &["external_id"]) {
        None => None,
        Some((_, v)) => {
            let pair = match v {
                serde_json::Value::Object(x) => x
                    .get("system")
                    .and_then(|s| s.as_str())
                    .zip(x.get("id").and_then(|s| {
                        s.as_str()
                            .map(String::from)
                            .or_else(|| x.get("id").map(|n| n.to_string()))
                    }))
                    .map(|(s, i)| (s.trim().to_lowercase(), i.trim().to_string())),
                serde_json::Value::String(s) => s
                    .split_once(':')
                    .map(|(s, i)| (s.trim().to_lowercase(), i.trim().to_string())),
                _ => None,
            };
            match pair {
                Some((s, i)) if !s.is_empty() && !i.is_empty() => Some((s, i)),
                _ => {
                    return Err(bad(
                        "external_id",
                        "event.external_id",
                        format!(
                            "`external_id` {v} must be {{\"system\": …, \"id\": …}} or \"system:id\""
                        ),
                    ));
                }
            }
        }
    })
}

/// The event's id (`id` or `event_id`); without one, a digest of its
/// whole content, so the same line loaded twice is one event and two
/// different ones are two.
fn id_of(o: &Object, json: &serde_json::Value, bad: Bad<'_>) -> Result<String, EventReject> {
    Ok(match o.get("id").or_else(|| o.get("event_id")) {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        None | Some(serde_json::Value::Null) => {
            // No id: the content is the identity, so the same line loaded
            // twice is still one event, and two different ones are two.
            let canonical = json.to_string();
            format!(
                "sha256:{}",
                &leadgate_runtime::digest(canonical.as_bytes())[..32]
            )
        }
        Some(v) => {
            return Err(bad(
                "id",
                "event.id",
                format!("`id` {v} must be a non-empty string or a number"),
            ));
        }
    })
}

/// What `leadgate events` did.
#[derive(Debug, Default)]
pub struct Report {
    pub read: u64,
    pub stored: u64,
    pub duplicates: u64,
    pub attached: u64,
    /// Stored events still waiting for their person.
    pub unattached: u64,
    /// Rejected, by code.
    pub rejected: BTreeMap<String, u64>,
    /// The first few rejections, for the summary.
    pub examples: Vec<String>,
    /// Leads that got events (this file's, or earlier ones now attached).
    pub touched: BTreeSet<String>,
    pub score: Option<crate::score::Report>,
    /// What the workflow rules did, when the tenant has rules.
    pub rules: Option<crate::rules::Summary>,
}

pub struct Options {
    pub input: String,
    pub db: String,
    pub pipeline: Option<std::path::PathBuf>,
    pub score: bool,
}

/// Reads, stores and attaches events, then re-scores what they touch.
pub fn run(config: &Config, opts: &Options) -> Result<Report> {
    let now = crate::clock::now_ms();
    let tenant = config.tenant.as_str();
    let mut store = Store::open(&opts.db)?;
    let reader: Box<dyn BufRead> = if opts.input == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(&opts.input)
                .with_context(|| format!("cannot open events {}", opts.input))?,
        ))
    };
    let mut report = Report::default();
    let mut good = Vec::with_capacity(BATCH);
    let mut bad = Vec::new();
    let flush = |store: &mut Store,
                 good: &mut Vec<NewEvent>,
                 bad: &mut Vec<EventReject>,
                 report: &mut Report|
     -> Result<()> {
        let r = store.insert_events(tenant, good, now)?;
        report.stored += r.stored;
        report.duplicates += r.duplicates;
        report.attached += r.attached;
        report.touched.extend(r.leads);
        for b in bad.iter() {
            *report.rejected.entry(b.code.clone()).or_default() += 1;
            if report.examples.len() < 5 {
                report
                    .examples
                    .push(format!("line {}: {}: {}", b.line, b.field, b.message));
            }
        }
        store.reject_events(tenant, &opts.input, bad, now)?;
        good.clear();
        bad.clear();
        Ok(())
    };
    let mut line_no = 0u64;
    let mut buf = Vec::new();
    let mut reader = reader;
    loop {
        buf.clear();
        let n = std::io::Read::take(&mut reader, MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("reading {} stopped after line {line_no}", opts.input))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if buf.len() > MAX_LINE && !buf.ends_with(b"\n") {
            // Skip the rest of the oversize line, keeping its start.
            let mut rest = Vec::new();
            reader.read_until(b'\n', &mut rest).ok();
            report.read += 1;
            bad.push(reject(
                line_no,
                "event",
                "event.too_long",
                format!("the line is longer than {MAX_LINE} bytes"),
                &String::from_utf8_lossy(&buf[..1024]),
            ));
            continue;
        }
        let text = String::from_utf8_lossy(&buf);
        let raw = text.trim();
        if raw.is_empty() {
            continue;
        }
        report.read += 1;
        if std::str::from_utf8(&buf).is_err() {
            bad.push(reject(
                line_no,
                "event",
                "event.encoding",
                "the line is not valid UTF-8".into(),
                raw,
            ));
        } else {
            match parse(line_no, raw, &config.score.pages, now) {
                Ok(e) => good.push(e),
                Err(r) => bad.push(r),
            }
        }
        if good.len() + bad.len() >= BATCH {
            flush(&mut store, &mut good, &mut bad, &mut report)?;
        }
    }
    flush(&mut store, &mut good, &mut bad, &mut report)?;
    // Earlier events whose person has appeared since.
    let late = store.attach_pending(tenant)?;
    report.attached += late.len() as u64;
    report.touched.extend(late);
    report.unattached = store.unattached_events(tenant)?;
    if opts.score && config.score.enabled && !report.touched.is_empty() {
        let runtime = leadgate_runtime::Runtime::new(config.runtime_limits(), config.cache_dir())?;
        let stage = crate::score::Stage::load(config, &runtime, None)?;
        let mut scoring = stage.scoring(config)?;
        let pipeline_path = opts
            .pipeline
            .clone()
            .or_else(|| config.score.pipeline.as_ref().map(|p| config.base.join(p)));
        let mut pipeline = crate::score::Pipeline::open(pipeline_path.as_deref())?;
        report.score = Some(crate::score::rescore(
            config,
            &mut store,
            &mut scoring,
            crate::score::Scope::WithAccounts(&report.touched),
            "events",
            &mut pipeline,
            now,
        )?);
    }
    if !report.touched.is_empty() {
        report.rules = crate::rules::run_queued(
            config,
            &mut store,
            &report.touched,
            crate::rules::cause::EVENTS,
            now,
        )?;
    }
    Ok(report)
}

pub fn print_report(r: &Report) {
    let rejected: u64 = r.rejected.values().sum();
    eprintln!(
        "events: {} read · {} stored · {} duplicates ignored · {} rejected · {} attached to leads · {} waiting for their person",
        r.read, r.stored, r.duplicates, rejected, r.attached, r.unattached
    );
    if rejected > 0 {
        let by: Vec<String> = r.rejected.iter().map(|(c, n)| format!("{c} {n}")).collect();
        eprintln!(
            "rejected: {} (kept in the store's event_rejects)",
            by.join(" · ")
        );
        for e in &r.examples {
            eprintln!("  {e}");
        }
    }
    if let Some(s) = &r.score {
        eprintln!("{}", crate::score::summary(s));
    }
    if let Some(s) = &r.rules {
        eprintln!("{}", s.line());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const NOW: i64 = 1_790_000_000_000;

    fn p(raw: &str) -> Result<NewEvent, EventReject> {
        parse(7, raw, &crate::config::ScoreConfig::default().pages, NOW)
    }

    #[test]
    fn a_page_view_gets_its_category_from_the_url() {
        let e = p(r#"{"id": "e1", "type": "Page View", "at": "2026-09-01T10:00:00Z", "email": "Ann@Acme.com", "url": "https://acme.com/pricing"}"#).unwrap();
        assert_eq!(e.kind, "page_view");
        assert_eq!(e.category.as_deref(), Some("pricing"));
        assert_eq!(e.email.as_deref(), Some("ann@acme.com"));
        assert_eq!(e.value, 1.0);
        let e = p(r#"{"type": "reply", "at": 1780000000, "external_id": "hubspot:42"}"#).unwrap();
        assert_eq!(e.at, 1_780_000_000_000);
        assert_eq!(e.external, Some(("hubspot".into(), "42".into())));
        assert!(e.id.starts_with("sha256:"), "an id from the content");
        assert_eq!(
            e.id,
            p(r#"{"type": "reply", "at": 1780000000, "external_id": "hubspot:42"}"#)
                .unwrap()
                .id
        );
        for other in [
            r#"{"type": "reply", "at": 1780000001, "external_id": "hubspot:42"}"#,
            r#"{"type": "reply", "at": 1780000000, "external_id": "hubspot:43"}"#,
            r#"{"type": "email_open", "at": 1780000000, "external_id": "hubspot:42"}"#,
        ] {
            assert_ne!(e.id, p(other).unwrap().id, "{other} is another event");
        }
    }

    #[test]
    fn malformed_events_name_the_field_and_reason() {
        let cases = [
            ("not json", "event.json", "event"),
            ("[1]", "event.json", "event"),
            (
                r#"{"at": 1, "email": "a@b.co"}"#,
                "event.type_missing",
                "type",
            ),
            (
                r#"{"type": "webinar", "at": 1, "email": "a@b.co"}"#,
                "event.type",
                "type",
            ),
            (
                r#"{"type": "reply", "email": "a@b.co"}"#,
                "event.at_missing",
                "at",
            ),
            (
                r#"{"type": "reply", "at": "yesterday", "email": "a@b.co"}"#,
                "event.at",
                "at",
            ),
            (
                r#"{"type": "reply", "at": 4102444800, "email": "a@b.co"}"#,
                "event.at_future",
                "at",
            ),
            (
                r#"{"type": "reply", "at": 1, "email": "nobody"}"#,
                "event.email",
                "email",
            ),
            (
                r#"{"type": "reply", "at": 1}"#,
                "event.subject_missing",
                "email",
            ),
            (
                r#"{"type": "reply", "at": 1, "email": "a@b.co", "value": -2}"#,
                "event.value",
                "value",
            ),
            (
                r#"{"type": "reply", "at": 1, "external_id": {"system": "x"}}"#,
                "event.external_id",
                "external_id",
            ),
        ];
        for (raw, code, field) in cases {
            let r = p(raw).unwrap_err();
            assert_eq!(
                (r.code.as_str(), r.field.as_str()),
                (code, field),
                "{raw}: {}",
                r.message
            );
            assert_eq!(r.line, 7);
            assert_eq!(r.raw, raw);
        }
    }
}
