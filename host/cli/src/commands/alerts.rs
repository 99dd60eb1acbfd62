//! `leadgate alerts`: the alerts, silences, the notification outbox, and a
//! notifier pass on demand.

use super::*;
use leadgate_service::notifier;
use leadgate_store::prelude::*;

fn when(ms: i64) -> String {
    leadgate_routing::format_time(ms)
}

pub(super) fn print_pass(p: &notifier::Pass) {
    println!(
        "alerts: {} routed · {} unrouted · {} silenced · {} inhibited; notifications: {} queued · {} held for quiet hours · {} sent · {} to retry · {} paced · {} dead · {} failed",
        p.routed,
        p.unrouted,
        p.silenced,
        p.inhibited,
        p.queued,
        p.held,
        p.sent,
        p.retried,
        p.paced,
        p.dead,
        p.failed
    );
}

pub(super) fn alerts(config: Config, db: String, args: AlertsArgs) -> Result<ExitCode> {
    let AlertsArgs {
        action,
        limit,
        json,
    } = args;
    let mut store = leadgate_store::Store::open(&db)?;
    let now = clock::now_ms();
    let tenant = config.tenant.clone();
    match action.unwrap_or(AlertsAction::List) {
        AlertsAction::List => {
            let alerts = store.alerts(&tenant, limit)?;
            if alerts.is_empty() && !json {
                println!("no alerts");
            }
            for a in alerts {
                if json {
                    println!("{}", serde_json::to_string(&a)?);
                } else {
                    println!("#{:<5} {:<18} {:<12} {}", a.id, a.kind, a.state, a.message);
                }
            }
        }
        AlertsAction::Silence {
            matchers,
            duration,
            until,
            from,
            comment,
            by,
        } => {
            let mut m = std::collections::BTreeMap::new();
            for text in &matchers {
                let (k, v) = text
                    .split_once('=')
                    .with_context(|| format!("--match {text:?}: expected label=value"))?;
                m.insert(k.trim().to_string(), v.trim().to_string());
            }
            let s = notifier::add_silence(
                &config,
                &mut store,
                &notifier::NewSilence {
                    matchers: m,
                    starts_at: from
                        .as_deref()
                        .map(|t| routing::time(t, "--from"))
                        .transpose()?,
                    ends_at: until
                        .as_deref()
                        .map(|t| routing::time(t, "--until"))
                        .transpose()?,
                    duration,
                    comment,
                    created_by: by,
                },
                now,
            )?;
            if json {
                println!("{}", serde_json::to_string(&s)?);
            } else {
                println!("silence #{} {} until {}", s.id, s.state, when(s.ends_at));
            }
        }
        AlertsAction::Silences { all } => {
            let list = notifier::list_silences(&config, &store, all, now)?;
            if list.is_empty() && !json {
                println!("no silences");
            }
            for s in list {
                if json {
                    println!("{}", serde_json::to_string(&s)?);
                } else {
                    let m: Vec<String> =
                        s.matchers.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    println!(
                        "#{:<4} {:<8} {} → {}  {}  ({}: {})",
                        s.id,
                        s.state,
                        when(s.starts_at),
                        when(s.ends_at),
                        m.join(" "),
                        s.created_by,
                        s.comment
                    );
                }
            }
        }
        AlertsAction::Unsilence { id } => {
            notifier::expire_silence(&config, &mut store, id, now)?;
            println!("silence #{id} ended");
        }
        AlertsAction::Notifications { state } => {
            if let Some(s) = &state
                && !["pending", "sent", "dead", "failed"].contains(&s.as_str())
            {
                anyhow::bail!("--state {s:?}: expected pending, sent, dead or failed");
            }
            let rows = store.notifications(&tenant, state.as_deref(), limit)?;
            if rows.is_empty() && !json {
                println!("no notifications");
            }
            for n in rows {
                if json {
                    println!("{}", serde_json::to_string(&n)?);
                } else {
                    println!(
                        "#{:<5} {:<8} {:<16} {:<24} tries {:<2} {}{}",
                        n.id,
                        n.state,
                        n.destination,
                        n.route,
                        n.attempts,
                        n.title,
                        n.last_error
                            .as_deref()
                            .map(|e| format!("  [{e}]"))
                            .unwrap_or_default()
                    );
                }
            }
        }
        AlertsAction::Retry { ids } => {
            let n = store.retry_notifications(&tenant, &ids, now)?;
            println!("{n} notification(s) queued again");
        }
        AlertsAction::Send { at } => {
            let at = match at {
                Some(t) => routing::time(&t, "--at")?,
                None => now,
            };
            match notifier::Notifier::open(&config)? {
                Some(n) => print_pass(&n.pass(&config, &mut store, at)?),
                None => println!(
                    "tenant {tenant} has no [[alerts.routes]]: alerts stay in the store (`leadgate alerts`)"
                ),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
