//! Verbs about the store itself: `migrate-store`.

use super::MigrateStoreArgs;
use anyhow::{Context, Result};
use leadgate::config::Config;
use leadgate_store::Store;
use leadgate_store::copy::{Copied, copy_store};
use std::process::ExitCode;

/// Copies the store at `--from` (default: the configured one) into the
/// empty store at `--to`, a table at a time, and prints each table's rows
/// and checksum before and after; fails unless every table verifies.
pub(super) fn migrate(_config: Config, db: String, args: MigrateStoreArgs) -> Result<ExitCode> {
    let from_location = args.from.unwrap_or(db);
    let from = Store::open(&from_location).with_context(|| {
        format!(
            "cannot open the source store {}",
            leadgate_store::pg::redact(&from_location)
        )
    })?;
    let mut to = Store::open(&args.to).with_context(|| {
        format!(
            "cannot open the destination store {}",
            leadgate_store::pg::redact(&args.to)
        )
    })?;
    eprintln!(
        "copying {} ({}) into {} ({})",
        from.path(),
        from.backend(),
        to.path(),
        to.backend()
    );
    let started = std::time::Instant::now();
    let copied = copy_store(&from, &mut to, |c: &Copied| {
        eprintln!(
            "  {:<16} {:>10} rows  checksum {:016x}  {}",
            c.table,
            c.rows,
            c.checksum,
            if c.verified() {
                "verified".to_string()
            } else {
                format!(
                    "MISMATCH: {} rows, checksum {:016x} in the destination",
                    c.rows_after, c.checksum_after
                )
            }
        );
    })
    .with_context(|| format!("cannot copy {} into {}", from.path(), to.path()))?;
    let rows: u64 = copied.iter().map(|c| c.rows).sum();
    let bad: Vec<&str> = copied
        .iter()
        .filter(|c| !c.verified())
        .map(|c| c.table)
        .collect();
    if !bad.is_empty() {
        anyhow::bail!(
            "the copy in {} differs from the source in: {}",
            to.path(),
            bad.join(", ")
        );
    }
    eprintln!(
        "copied {rows} rows in {} tables in {:.1} s; every table verified",
        copied.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
