//! The routing verbs: `leadgate reps`, `leadgate route`, `leadgate touch`.

use super::*;
use leadgate_service::routing as verbs;

/// An RFC 3339 time given as `flag`.
pub(super) fn time(text: &str, flag: &str) -> Result<i64> {
    leadgate_routing::parse_time(text).map_err(|e| anyhow::anyhow!("{flag}: {e}"))
}

fn when(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".into(), leadgate_routing::format_time)
}

pub(super) fn reps(config: Config, db: String, args: RepsArgs) -> Result<ExitCode> {
    let RepsArgs { action } = args;
    let mut store = leadgate_store::Store::open(&db)?;
    let now = clock::now_ms();
    match action {
        RepsAction::List { json } => {
            let reps = verbs::reps(&config, &mut store, now)?;
            if json {
                for r in &reps {
                    println!("{}", serde_json::to_string(r)?);
                }
            } else if reps.is_empty() {
                println!(
                    "no reps for tenant {}: add them to [[routing.reps]] or with `leadgate reps set`",
                    config.tenant
                );
            } else {
                println!(
                    "{:<14} {:<20} {:<18} {:>6} {:>5} {:>6}  {:<7} hours",
                    "rep", "name", "teams", "today", "open", "total", "status"
                );
                for r in &reps {
                    let status = if r.rep.away {
                        match r.rep.away_until {
                            Some(u) if u <= now => "active",
                            _ => "away",
                        }
                    } else {
                        "active"
                    };
                    println!(
                        "{:<14} {:<20} {:<18} {:>6} {:>5} {:>6}  {:<7} {} {}",
                        r.rep.id,
                        r.rep.name,
                        r.rep.teams.join(","),
                        r.assigned_today,
                        r.open,
                        r.assigned_total,
                        status,
                        if r.rep.hours.is_empty() {
                            "any time"
                        } else {
                            &r.rep.hours
                        },
                        r.rep.timezone
                    );
                }
            }
        }
        RepsAction::Set(set) => {
            let existing = verbs::rep(&config, &mut store, &set.id, now).ok();
            let fresh = existing.is_none();
            if fresh && set.teams.is_empty() {
                anyhow::bail!("--team: a new rep needs at least one team of [routing.teams]");
            }
            let mut rep = existing.unwrap_or_else(|| leadgate_routing::Rep {
                id: set.id.clone(),
                name: String::new(),
                email: None,
                crm_owner_id: None,
                slack_id: None,
                teams: Vec::new(),
                timezone: "UTC".into(),
                hours: String::new(),
                capacity_per_day: None,
                max_open: None,
                weight: 1,
                away: false,
                away_until: None,
            });
            if let Some(v) = set.name {
                rep.name = v;
            }
            if set.email.is_some() {
                rep.email = set.email;
            }
            if set.crm_owner_id.is_some() {
                rep.crm_owner_id = set.crm_owner_id;
            }
            if set.slack_id.is_some() {
                rep.slack_id = set.slack_id;
            }
            if !set.teams.is_empty() {
                rep.teams = set.teams;
            }
            if let Some(v) = set.timezone {
                rep.timezone = v;
            }
            if let Some(v) = set.hours {
                rep.hours = v;
            }
            if set.capacity_per_day.is_some() {
                rep.capacity_per_day = set.capacity_per_day;
            }
            if set.max_open.is_some() {
                rep.max_open = set.max_open;
            }
            if let Some(v) = set.weight {
                rep.weight = v;
            }
            let created = verbs::set_rep(&config, &mut store, &rep, now)?;
            println!(
                "{} rep {} ({}); a running service routes to the change with its next batch",
                if created { "added" } else { "changed" },
                rep.id,
                rep.teams.join(", ")
            );
        }
        RepsAction::Away { id, until } => {
            let until = until.map(|u| time(&u, "--until")).transpose()?;
            let r = verbs::set_away(&config, &mut store, &id, true, until, now)?;
            match r.away_until {
                Some(u) => println!(
                    "rep {id} is away until {}: no new leads till then",
                    when(Some(u))
                ),
                None => println!("rep {id} is away: no new leads until `leadgate reps back {id}`"),
            }
        }
        RepsAction::Back { id } => {
            verbs::set_away(&config, &mut store, &id, false, None, now)?;
            println!("rep {id} is back and takes new leads");
        }
        RepsAction::Stats { json } => {
            let reps = verbs::reps(&config, &mut store, now)?;
            if json {
                for r in &reps {
                    println!(
                        "{}",
                        serde_json::json!({
                            "rep": r.rep.id,
                            "team": r.rep.teams.first(),
                            "assigned_total": r.assigned_total,
                            "share": r.share,
                            "weight_share": r.weight_share,
                            "open": r.open,
                            "touched": r.touched,
                            "breached": r.breached,
                            "sla_adherence": r.sla_adherence,
                        })
                    );
                }
            } else {
                println!(
                    "{:<14} {:<12} {:>6} {:>7} {:>8} {:>5} {:>8} {:>8} {:>6}",
                    "rep",
                    "team",
                    "total",
                    "share",
                    "weight",
                    "open",
                    "touched",
                    "missed",
                    "in SLA"
                );
                for r in &reps {
                    println!(
                        "{:<14} {:<12} {:>6} {:>6.1}% {:>7.1}% {:>5} {:>8} {:>8} {:>5.1}%",
                        r.rep.id,
                        r.rep.teams.first().map_or("-", String::as_str),
                        r.assigned_total,
                        r.share * 100.0,
                        r.weight_share * 100.0,
                        r.open,
                        r.touched,
                        r.breached,
                        r.sla_adherence * 100.0
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_decision(lead: &str, d: &leadgate_routing::Decision, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::json!({"lead_id": lead, "decision": d}));
        return Ok(());
    }
    match &d.rep {
        Some(rep) => println!(
            "lead {lead} → {rep} (team {}, response SLA {} min)",
            d.team, d.sla_minutes
        ),
        None => println!("lead {lead} → no one: held in {:?}", d.team),
    }
    println!("  rule: {}", d.rule);
    if !d.distribution.is_empty() {
        println!("  within the team: {}", d.distribution);
    }
    for c in &d.candidates {
        println!(
            "  {:<14} {:<10} {:<14} {}",
            c.rep,
            c.team.as_deref().unwrap_or("-"),
            c.outcome,
            c.detail
        );
    }
    if d.more_candidates > 0 {
        println!("  … {} more passed over", d.more_candidates);
    }
    Ok(())
}

pub(super) fn route(config: Config, db: String, args: RouteArgs) -> Result<ExitCode> {
    let RouteArgs {
        leads,
        unassigned,
        dry_run,
        fields,
        to,
        by,
        json,
    } = args;
    let mut store = leadgate_store::Store::open(&db)?;
    let now = clock::now_ms();
    if let Some(fields) = fields {
        let subject: leadgate_routing::Subject = serde_json::from_str(&fields)
            .with_context(|| "--fields: not a lead's routing fields (JSON: country, region, industry, employee_range, source, grade, owner_id)")?;
        let ask = verbs::DryRun {
            lead_id: None,
            lead: Some(subject),
        };
        let d = verbs::dry_run(&config, &mut store, &ask, now)?;
        print_decision("(given)", &d, json)?;
        return Ok(ExitCode::SUCCESS);
    }
    if unassigned {
        let started = std::time::Instant::now();
        let routed = verbs::route_unassigned(&config, &mut store, &by, now, 500, |round| {
            if !json {
                eprintln!(
                    "routed {} more leads ({:.1}s)",
                    round.len(),
                    started.elapsed().as_secs_f64()
                );
            }
        })?;
        let mut by_step: std::collections::BTreeMap<&str, usize> = Default::default();
        for r in &routed {
            *by_step
                .entry(leadgate_pipeline::assign::step_name(r.decision.step))
                .or_default() += 1;
            if json {
                print_decision(&r.lead_id, &r.decision, true)?;
            }
        }
        let queued = routed.iter().filter(|r| r.decision.rep.is_none()).count();
        let steps: Vec<String> = by_step.iter().map(|(s, n)| format!("{s} {n}")).collect();
        eprintln!(
            "routed {} leads · {} to reps · {} held in the queue{}",
            routed.len(),
            routed.len() - queued,
            queued,
            if steps.is_empty() {
                String::new()
            } else {
                format!(" · by step: {}", steps.join(", "))
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    for lead in &leads {
        let d = if dry_run {
            let ask = verbs::DryRun {
                lead_id: Some(lead.clone()),
                lead: None,
            };
            verbs::dry_run(&config, &mut store, &ask, now)?
        } else {
            verbs::route_now(&config, &mut store, lead, to.as_deref(), &by, now)?
        };
        print_decision(lead, &d, json)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn touch(config: Config, db: String, args: TouchArgs) -> Result<ExitCode> {
    let TouchArgs { lead, at } = args;
    let mut store = leadgate_store::Store::open(&db)?;
    let at = match at {
        Some(a) => time(&a, "--at")?,
        None => clock::now_ms(),
    };
    let a = verbs::touch(&config, &mut store, &lead, at)?;
    let within = a.sla_due_at.is_none_or(|due| at <= due);
    println!(
        "lead {lead}: first touch by {} recorded{}",
        a.rep_id.as_deref().unwrap_or("(no rep)"),
        if within {
            ", within the SLA"
        } else {
            ", after the SLA"
        }
    );
    Ok(ExitCode::SUCCESS)
}
