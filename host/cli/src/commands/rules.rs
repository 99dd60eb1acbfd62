//! `leadgate rules`: workflow rules documents checked, every mistake named
//! with its file, line, rule and field.

use super::*;

pub(super) fn rules(config: Config, db: String, args: RulesArgs) -> Result<ExitCode> {
    match args.action {
        RulesAction::Backtest {
            from,
            to,
            output,
            files,
        } => backtest(&config, &db, &from, to.as_deref(), output, files),
        RulesAction::Check { files, json } => check(&config, files, json),
        RulesAction::Test {
            leads,
            events,
            until,
            output,
            files,
        } => test(&config, &leads, events.as_deref(), until, output, files),
    }
}

/// The documents to read: those given, else `[rules] files`.
fn documents(config: &Config, files: Vec<PathBuf>) -> Result<Vec<PathBuf>> {
    let files = if files.is_empty() {
        config.rules_files()
    } else {
        files
    };
    if files.is_empty() {
        anyhow::bail!(
            "no rules documents: name them (leadgate rules check FILE…) or list them in [rules] files"
        );
    }
    Ok(files)
}

/// A lead snapshot of `rules test --leads`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LeadLine {
    id: String,
    at: serde_json::Value,
    #[serde(default)]
    lead: leadgate_lead::Lead,
    #[serde(default)]
    enrichment: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    score: Option<ScoreLine>,
    #[serde(default)]
    stage: Option<String>,
    #[serde(default)]
    qualification: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ScoreLine {
    total: u8,
    #[serde(default)]
    grade: String,
    #[serde(default)]
    fit: f64,
    #[serde(default)]
    engagement: f64,
    #[serde(default)]
    intent: f64,
}

/// What `rules test` feeds the engine, in time order.
enum Input {
    Lead(String, Box<leadgate_rules::engine::LeadState>),
    Event(String, leadgate_rules::engine::EventIn),
}

fn time_value(v: &serde_json::Value, what: &str) -> Result<i64> {
    match v {
        serde_json::Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| anyhow::anyhow!("{what}: {n} is not ms since the epoch")),
        serde_json::Value::String(s) => {
            leadgate_routing::parse_time(s).map_err(|e| anyhow::anyhow!("{what}: {e}"))
        }
        other => anyhow::bail!("{what}: {other} is not a time (RFC 3339 or ms since the epoch)"),
    }
}

fn test(
    config: &Config,
    leads: &std::path::Path,
    events: Option<&std::path::Path>,
    until: Option<String>,
    output: Option<PathBuf>,
    files: Vec<PathBuf>,
) -> Result<ExitCode> {
    use leadgate_rules::engine::{Engine, EventIn, LeadState};
    use std::io::{BufRead, Write};
    let set = match leadgate_pipeline::rules::load_checked(config, &documents(config, files)?) {
        Ok(set) => set,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            anyhow::bail!("{} mistakes in the rules documents", errors.len());
        }
    };
    let until = until.map(|u| routing::time(&u, "--until")).transpose()?;
    // (time, order read, input): leads before events at the same time.
    let mut inputs: Vec<(i64, usize, Input)> = Vec::new();
    let mut by_email: std::collections::HashMap<String, String> = Default::default();
    let file =
        std::fs::File::open(leads).with_context(|| format!("cannot read {}", leads.display()))?;
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}", leads.display(), n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let l: LeadLine = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not a lead snapshot", leads.display(), n + 1))?;
        let at = time_value(&l.at, &format!("{}:{}: at", leads.display(), n + 1))?;
        if let Some(e) = &l.lead.email {
            by_email.insert(e.to_ascii_lowercase(), l.id.clone());
        }
        let state = LeadState {
            lead: l.lead,
            enrichment: l.enrichment.into_iter().collect(),
            score: l.score.map(|s| leadgate_lead::score::Scored {
                total: s.total.min(100),
                grade: s.grade,
                fit: s.fit,
                engagement: s.engagement,
                intent: s.intent,
                probability: None,
                reasons: Vec::new(),
            }),
            stage: l.stage.map(|s| s.to_ascii_lowercase()),
            qualification: l.qualification,
        };
        inputs.push((at, inputs.len(), Input::Lead(l.id, Box::new(state))));
    }
    let mut unattached = 0usize;
    if let Some(events) = events {
        let file = std::fs::File::open(events)
            .with_context(|| format!("cannot read {}", events.display()))?;
        let far = until.unwrap_or(i64::MAX / 4);
        for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("{}:{}", events.display(), n + 1))?;
            if line.trim().is_empty() {
                continue;
            }
            let e = leadgate_pipeline::events::parse(n as u64 + 1, &line, &config.score.pages, far)
                .map_err(|r| {
                    anyhow::anyhow!(
                        "{}:{}: {}: {}",
                        events.display(),
                        r.line,
                        r.field,
                        r.message
                    )
                })?;
            let raw: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            let received = match raw.get("received_at") {
                Some(v) => time_value(v, &format!("{}:{}: received_at", events.display(), n + 1))?,
                None => e.at,
            };
            let lead = e.lead_ref.clone().or_else(|| {
                e.email
                    .as_ref()
                    .and_then(|m| by_email.get(&m.to_ascii_lowercase()).cloned())
            });
            let Some(lead) = lead else {
                unattached += 1;
                continue;
            };
            let Some(kind) = leadgate_lead::score::EventKind::parse(e.kind) else {
                continue;
            };
            inputs.push((
                received,
                inputs.len(),
                Input::Event(
                    lead,
                    EventIn {
                        id: e.id,
                        kind,
                        category: e.category,
                        url: e.url,
                        at: e.at,
                    },
                ),
            ));
        }
    }
    inputs.sort_by_key(|(at, order, _)| (*at, *order));
    let mut engine = Engine::new(set);
    let mut out: Box<dyn Write> = match &output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot write {}", p.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut written = 0usize;
    let mut write =
        |execs: Vec<leadgate_rules::engine::Execution>, out: &mut Box<dyn Write>| -> Result<()> {
            for x in execs {
                serde_json::to_writer(&mut *out, &x)?;
                out.write_all(b"\n")?;
                written += 1;
            }
            Ok(())
        };
    let mut last = i64::MIN;
    for (at, _, input) in inputs {
        write(engine.advance(at), &mut out)?;
        let execs = match input {
            Input::Lead(id, state) => engine.lead(&id, *state, at),
            Input::Event(id, ev) => engine.event(&id, ev, at),
        };
        write(execs, &mut out)?;
        last = last.max(at);
    }
    if let Some(until) = until {
        write(engine.advance(until), &mut out)?;
    }
    out.flush()?;
    drop(out);
    eprintln!(
        "{written} rule executions{}; {} inactivity timers waiting at {}",
        if unattached > 0 {
            format!("; {unattached} events for no lead in --leads, skipped")
        } else {
            String::new()
        },
        engine.pending_timers(),
        leadgate_routing::format_time(until.unwrap_or(last).max(0))
    );
    Ok(ExitCode::SUCCESS)
}

/// `rules backtest`: the rules over the store's history between two
/// times, in memory, changing nothing. Each lead enters as it was first
/// recorded (a lead older than the windows' reach enters at their start,
/// so it fires no `lead_created` inside the range), its score at each
/// point of its score history, its stage at each `stage_change` event;
/// its events at their own times. Executions inside the range are
/// written.
fn backtest(
    config: &Config,
    db: &str,
    from: &str,
    to: Option<&str>,
    output: Option<PathBuf>,
    files: Vec<PathBuf>,
) -> Result<ExitCode> {
    use leadgate_rules::engine::{Engine, EventIn};
    use std::io::Write;
    let set = match leadgate_pipeline::rules::load_checked(config, &documents(config, files)?) {
        Ok(set) => set,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            anyhow::bail!("{} mistakes in the rules documents", errors.len());
        }
    };
    let from = routing::time(from, "--from")?;
    let to = match to {
        Some(t) => routing::time(t, "--to")?,
        None => leadgate_pipeline::clock::now_ms(),
    };
    anyhow::ensure!(from < to, "--from must be before --to");
    let horizon = leadgate_rules::engine::Evaluator::new(set.clone()).horizon_ms();
    let start = from.saturating_sub(horizon);
    let store = leadgate_store::Store::open(db)?;
    let tenant = config.tenant.as_str();
    // (time, order, input): what happened, in time order.
    let mut inputs: Vec<(i64, usize, Input)> = Vec::new();
    let leads = store.scoring_leads(tenant, None)?;
    for l in &leads {
        let Some((mut state, _)) = leadgate_pipeline::rules::lead_state(&store, &l.id)? else {
            continue;
        };
        let first = state.lead.received_at.max(start);
        if first > to {
            continue;
        }
        // Its score as it was: each point of its history in the range.
        let history = store
            .stored_score(&l.id)?
            .map(|s| s.history)
            .unwrap_or_default();
        let score_at = |t: i64| {
            history
                .iter()
                .rev()
                .find(|(at, _, _)| *at <= t)
                .map(|(_, total, _)| *total)
        };
        let current = state.score.clone();
        let with_total = |total: Option<i64>| {
            total.and_then(|t| {
                current.clone().map(|mut s| {
                    s.total = u8::try_from(t.clamp(0, 100)).unwrap_or(100);
                    s
                })
            })
        };
        state.stage = None;
        let mut snapshot = state.clone();
        snapshot.score = with_total(score_at(first));
        inputs.push((
            first,
            inputs.len(),
            Input::Lead(l.id.clone(), Box::new(snapshot)),
        ));
        for (at, total, _) in &history {
            if *at > first && *at <= to {
                let mut s = state.clone();
                s.score = with_total(Some(*total));
                inputs.push((*at, inputs.len(), Input::Lead(l.id.clone(), Box::new(s))));
            }
        }
    }
    let mut ids = std::collections::HashMap::new();
    for (lead, e) in store.recent_events(tenant, start, None)? {
        if e.at > to {
            continue;
        }
        if e.kind == "stage_change" {
            // A stage snapshot: the lead as its last snapshot, in the stage.
            let last = inputs.iter().rev().find_map(|(_, _, i)| match i {
                Input::Lead(id, s) if *id == lead => Some(s.clone()),
                _ => None,
            });
            if let Some(mut s) = last {
                s.stage = e.category.clone();
                inputs.push((e.at, inputs.len(), Input::Lead(lead, s)));
            }
            continue;
        }
        let Some(kind) = leadgate_lead::score::EventKind::parse(&e.kind) else {
            continue;
        };
        // Stored events are unique; an id from the lead, kind, time and
        // its rank among those alike keeps them apart.
        let n = ids
            .entry((lead.clone(), e.kind.clone(), e.at))
            .and_modify(|n| *n += 1)
            .or_insert(0usize);
        inputs.push((
            e.at,
            inputs.len(),
            Input::Event(
                lead.clone(),
                EventIn {
                    id: format!("{lead}:{}:{}:{n}", e.kind, e.at),
                    kind,
                    category: e.category,
                    url: None,
                    at: e.at,
                },
            ),
        ));
    }
    inputs.sort_by_key(|(at, order, _)| (*at, *order));
    let mut engine = Engine::new(set);
    let mut out: Box<dyn Write> = match &output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot write {}", p.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut by_rule: std::collections::BTreeMap<
        String,
        (usize, std::collections::BTreeSet<String>),
    > = Default::default();
    let mut written = 0usize;
    let mut write =
        |execs: Vec<leadgate_rules::engine::Execution>, out: &mut Box<dyn Write>| -> Result<()> {
            for x in execs.into_iter().filter(|x| x.at >= from && x.at <= to) {
                serde_json::to_writer(&mut *out, &x)?;
                out.write_all(b"\n")?;
                written += 1;
                let e = by_rule.entry(x.rule.clone()).or_default();
                e.0 += 1;
                if !x.actions.is_empty() {
                    e.1.insert(x.lead_id.clone());
                }
            }
            Ok(())
        };
    for (at, _, input) in inputs {
        write(engine.advance(at), &mut out)?;
        let execs = match input {
            Input::Lead(id, state) => engine.lead(&id, *state, at),
            Input::Event(id, ev) => engine.event(&id, ev, at),
        };
        write(execs, &mut out)?;
    }
    write(engine.advance(to), &mut out)?;
    out.flush()?;
    drop(out);
    eprintln!(
        "backtest {} → {}: {written} rule executions over {} leads",
        leadgate_routing::format_time(from),
        leadgate_routing::format_time(to),
        leads.len()
    );
    for (rule, (n, entered)) in &by_rule {
        eprintln!(
            "  {rule}: {n} executions, {} leads would have entered",
            entered.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn check(config: &Config, files: Vec<PathBuf>, json: bool) -> Result<ExitCode> {
    let files = documents(config, files)?;
    let (rules, refusals) = match leadgate_pipeline::rules::load_checked(config, &files) {
        Ok(set) => (set.rules, Vec::new()),
        Err(errors) => (Vec::new(), errors),
    };
    if json {
        let doc = serde_json::json!({
            "files": files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
            "rules": rules.iter().map(|r| serde_json::json!({
                "id": r.id,
                "version": r.version,
                "mode": r.mode,
                "trigger": r.trigger,
                "when": r.when.as_ref().map(|c| c.source()),
                "goal": r.goal.as_ref().map(|c| c.source()),
                "enrol": r.enrol,
                "actions": r.actions,
                "file": r.file,
                "line": r.line,
            })).collect::<Vec<_>>(),
            "refusals": refusals.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        });
        println!("{doc}");
    } else if refusals.is_empty() {
        for r in &rules {
            let actions: Vec<&str> = r.actions.iter().map(|a| a.kind()).collect();
            println!(
                "{}:{}: {} v{} ({}): {} → {}",
                r.file,
                r.line,
                r.id,
                r.version,
                name_of(&r.mode, None),
                name_of(&r.trigger, Some("on")),
                actions.join(", ")
            );
        }
        println!(
            "{} rules in {} documents: no mistakes",
            rules.len(),
            files.len()
        );
    } else {
        for e in &refusals {
            eprintln!("{e}");
        }
        eprintln!("{} mistakes in {} documents", refusals.len(), files.len());
    }
    Ok(if refusals.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// How documents spell `value` (its `key` field, for a tagged one).
fn name_of<T: serde::Serialize>(value: &T, key: Option<&str>) -> String {
    let v = serde_json::to_value(value).unwrap_or_default();
    let v = match key {
        Some(k) => v.get(k).cloned().unwrap_or_default(),
        None => v,
    };
    v.as_str().unwrap_or_default().to_string()
}
