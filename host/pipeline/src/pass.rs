//! A pass over a whole tenant (rescoring every lead, re-enriching the
//! queue) run by one process at a time across every host sharing the
//! store: [`PassLease::take`] leases it (the store's `Passes`), a thread
//! of the lease's own, on a connection of its own, renews the lease while
//! the pass runs, and dropping the lease gives it up. A process that dies
//! mid-pass stops renewing; its lease runs out and another host may run
//! the pass.

use leadgate_store::Store;
use leadgate_store::passes::PassHeld;
use leadgate_store::prelude::*;
use leadgate_store::service::Claim;
use std::sync::mpsc;
use std::time::Duration;

/// How long a lease lasts unless renewed.
pub const LEASE_MS: i64 = 120_000;
/// How often the holder renews it.
const RENEW_EVERY: Duration = Duration::from_secs(30);

/// This host's name: `HOSTNAME`, else the kernel's host name. Claims and
/// leases are made under it.
pub fn instance() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string())
    })
}

/// A pass this process holds; given up when dropped.
#[derive(Debug)]
pub struct PassLease {
    stop: Option<mpsc::Sender<()>>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

impl PassLease {
    /// Takes the pass `name` of `tenant` in the store at `db` for this
    /// process (`HOST:PID`), or says who holds it.
    pub fn take(
        db: &str,
        tenant: &str,
        name: &str,
    ) -> Result<Result<PassLease, PassHeld>, leadgate_store::StoreError> {
        let holder = format!("{}:{}", instance(), std::process::id());
        let mut store = Store::open(db)?;
        let claim = Claim {
            holder: &holder,
            lease_ms: LEASE_MS,
        };
        if let Some(held) = store.take_pass(tenant, name, claim, crate::clock::now_ms())? {
            return Ok(Err(held));
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let (tenant, name) = (tenant.to_string(), name.to_string());
        let renewer = std::thread::Builder::new()
            .name(format!("pass-{name}"))
            .spawn(move || {
                let claim = Claim {
                    holder: &holder,
                    lease_ms: LEASE_MS,
                };
                // Until the lease is dropped (or its sender is gone).
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(RENEW_EVERY) {
                    match store.take_pass(&tenant, &name, claim, crate::clock::now_ms()) {
                        Ok(None) => {}
                        Ok(Some(held)) => tracing::error!(
                            pass = %name, tenant = %tenant, holder = %held.holder,
                            "the pass's lease ran out and another process took it over"
                        ),
                        Err(e) => tracing::warn!(pass = %name, error = %e, "cannot renew the pass's lease"),
                    }
                }
                if let Err(e) = store.release_pass(&tenant, &name, &holder) {
                    tracing::warn!(pass = %name, error = %e, "cannot give the pass up; its lease will run out");
                }
            })
            .map_err(|e| leadgate_store::StoreError::Io {
                op: "start the lease renewal thread for",
                path: leadgate_store::pg::redact(db),
                source: e,
            })?;
        Ok(Ok(PassLease {
            stop: Some(stop),
            renewer: Some(renewer),
        }))
    }
}

impl Drop for PassLease {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.renewer.take() {
            let _ = t.join();
        }
    }
}

/// What a process that found the pass held tells its user.
pub fn held_message(name: &str, tenant: &str, held: &PassHeld) -> String {
    let seconds = (held.until - crate::clock::now_ms()).max(0) / 1000;
    format!(
        "another leadgate ({}) is {name} tenant {tenant}: nothing done here (its lease runs {seconds} s more unless it renews it)",
        held.holder
    )
}
