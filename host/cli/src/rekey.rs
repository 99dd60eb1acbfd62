//! `leadgate rekey`: every keyed stored lead's blocking keys again, from
//! the tenant's dedupe component as it is configured now.
//!
//! The key index holds what the component said when each lead was stored.
//! After a swapped dedupe component, a changed key setting or a new
//! version of the bundled component whose keys changed, new leads no
//! longer meet the stored ones on the keys that changed; this brings the
//! index in line. One transaction: a lead the component cannot key stops
//! it, naming the lead, and nothing changes.

use crate::config::Config;
use crate::matcher::Matcher;
use anyhow::{Context, Result, bail};
use leadgate_lead::Lead;
use leadgate_runtime::{DeduperComponent, Runtime};
use leadgate_store::prelude::*;
use leadgate_store::rekey::Rekeyed;
use leadgate_store::{Store, key_hash};

/// Leads keyed per call of the component.
const CHUNK: usize = 2_000;

/// Recomputes the keys of the tenant's keyed leads in the store at `db`.
pub fn rekey(config: &Config, db: &str, quiet: bool) -> Result<Rekeyed> {
    let runtime = Runtime::new(config.runtime_limits(), config.cache_dir())?;
    let path = config.dedupe_component()?;
    let component = DeduperComponent::load(&runtime, &path)?;
    let mut matcher = Matcher::new(&component, config.dedupe_settings()?)?
        .only_passes(&config.dedupe.store_passes);
    let mut store = Store::open(db)?;
    let bar = crate::dedupe::progress(quiet, Some(0), "rekeying");
    let now = crate::clock::now_ms();
    let tenant = config.tenant.as_str();
    let done = store.rekey(tenant, CHUNK, |stored, total| -> Result<_, String> {
        bar.set_length(total);
        let leads = stored
            .iter()
            .map(|s| {
                serde_json::from_str::<Lead>(&s.normalized).map_err(|e| {
                    format!(
                        "lead {}: its stored normalized record cannot be read: {e}",
                        s.id
                    )
                })
            })
            .collect::<Result<Vec<Lead>, String>>()?;
        let refs: Vec<&Lead> = leads.iter().collect();
        let keys = matcher
            .keys(&refs, now)
            .into_iter()
            .zip(stored)
            .map(|(k, s)| match k {
                Ok(k) => Ok(k.iter().map(|k| key_hash(tenant, k)).collect()),
                Err(e) => Err(format!(
                    "lead {}: the dedupe component {} failed: {e}",
                    s.id,
                    path.display()
                )),
            })
            .collect::<Result<Vec<Vec<i64>>, String>>()?;
        bar.inc(stored.len() as u64);
        Ok(keys)
    });
    bar.finish_and_clear();
    match done.with_context(|| format!("cannot rekey the store at {db}"))? {
        Ok(done) => Ok(done),
        Err(e) => bail!("{e}; the key index was left as it was"),
    }
}
