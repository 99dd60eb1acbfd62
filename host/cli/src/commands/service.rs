//! The verbs of the running service and its queues: serve, keys, the
//! review queue, the CRM outbox, alerts and tick.

use super::routing;
use super::*;

pub(super) fn review(config: Config, db: String, args: ReviewArgs) -> Result<ExitCode> {
    let ReviewArgs { action } = args;
    review::execute(&config, &db, action)?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn serve(config: Config, db: String, args: ServeArgs) -> Result<ExitCode> {
    let ServeArgs {
        listen,
        no_handoff,
        text_logs,
    } = args;
    serve::serve(
        &config,
        &serve::Options {
            listen,
            db,
            no_handoff,
            json_logs: !text_logs,
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn keys(config: Config, db: String, args: KeysArgs) -> Result<ExitCode> {
    let KeysArgs { action } = args;
    let store = leadgate_store::Store::open(&db)?;
    match action {
        KeysAction::Create { tenant, label } => {
            let tenant = tenant.unwrap_or_else(|| config.tenant.clone());
            let key = serve::auth::new_key(&tenant);
            store.add_api_key(
                &tenant,
                &label,
                &serve::auth::hash(&key),
                &serve::auth::prefix(&key),
                clock::now_ms(),
            )?;
            eprintln!("API key for tenant {tenant} ({label}); it is not shown again:");
            println!("{key}");
        }
        KeysAction::List => {
            for k in store.api_keys(None)? {
                println!(
                    "{:<16} {:<16} {:<28} {}",
                    k.tenant,
                    k.label,
                    k.prefix,
                    if k.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "active"
                    }
                );
            }
        }
        KeysAction::Revoke { which, tenant } => {
            let tenant = tenant.unwrap_or_else(|| config.tenant.clone());
            let n = store.revoke_api_key(&tenant, &which, clock::now_ms())?;
            if n == 0 {
                anyhow::bail!("no active key of tenant {tenant} has the label or prefix '{which}'");
            }
            println!("revoked {n} key(s); a running service refuses them within a minute");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn outbox(config: Config, db: String, args: OutboxArgs) -> Result<ExitCode> {
    let OutboxArgs { action } = args;
    let mut store = leadgate_store::Store::open(&db)?;
    let tenant = config.tenant.as_str();
    match action {
        OutboxAction::List { state, limit, json } => {
            let items = store.handoffs(tenant, state.as_deref(), limit)?;
            if json {
                for h in &items {
                    println!("{}", serde_json::to_string(h)?);
                }
            } else if items.is_empty() {
                println!("the outbox is empty");
            } else {
                for h in &items {
                    println!(
                        "#{:<6} {:<9} {:<8} {:<6} lead {}  attempts {}  {}",
                        h.id,
                        h.state,
                        h.target,
                        h.op,
                        h.lead_id,
                        h.attempts,
                        h.last_error.as_deref().unwrap_or("")
                    );
                }
            }
        }
        OutboxAction::Retry { ids } => {
            let n = store.retry_handoffs(tenant, &ids, clock::now_ms())?;
            println!("{n} handoff(s) queued again");
        }
        OutboxAction::Deliver => deliver_once(&config, &mut store, clock::now_ms())?,
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn tick(config: Config, db: String, args: TickArgs) -> Result<ExitCode> {
    let TickArgs { no_handoff, at } = args;
    let mut store = leadgate_store::Store::open(&db)?;
    let now = match at {
        Some(at) => routing::time(&at, "--at")?,
        None => clock::now_ms(),
    };
    let t = review::tick(&config, &mut store, now)?;
    println!(
        "review SLA: {} escalated · {} past the fallback threshold",
        t.escalated, t.fallbacks
    );
    if config.routing.enabled {
        let mut assigner = leadgate_pipeline::assign::Assigner::open(&config, &mut store, now)?;
        let claim = serve::claim(&config.serve);
        let f = leadgate_pipeline::assign::fire_due(
            &config,
            &mut store,
            &mut assigner,
            claim.holder,
            claim.lease_ms,
            now,
        )?;
        println!(
            "response SLA: {} reassigned · {} escalated · queued leads: {} routed, {} still waiting",
            f.reassigned, f.escalated, f.routed, f.waiting
        );
    }
    if !no_handoff {
        deliver_once(&config, &mut store, now)?;
    }
    if let Some(n) = leadgate_service::notifier::Notifier::open(&config)? {
        let p = n.pass(&config, &mut store, now)?;
        super::alerts::print_pass(&p);
    }
    Ok(ExitCode::SUCCESS)
}
