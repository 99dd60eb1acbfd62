//! Passes: work over a whole tenant that must not run twice at once —
//! re-enriching its queue, rescoring every lead — leased to one holder at
//! a time across every process and host sharing the store. A holder renews
//! its lease as it goes; one that stopped loses it when the lease runs out.

use crate::service::Claim;
use crate::{SqliteStore, StoreError, sql};
use rusqlite::{OptionalExtension, params};

/// Who holds a pass someone else asked for, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassHeld {
    pub holder: String,
    pub until: i64,
}

/// Leases on a tenant's passes.
pub trait Passes {
    /// Takes (or, for its holder, renews) the pass `name` of `tenant` for
    /// `claim.holder` until `now + claim.lease_ms`, unless another holder's
    /// lease is still running: then who holds it, and nothing changes.
    fn take_pass(
        &mut self,
        tenant: &str,
        name: &str,
        claim: Claim<'_>,
        now: i64,
    ) -> Result<Option<PassHeld>, StoreError>;

    /// Gives the pass up, if `holder` holds it.
    fn release_pass(&mut self, tenant: &str, name: &str, holder: &str) -> Result<(), StoreError>;
}

/// Takes the pass unless another holder's lease runs on (the same upsert
/// on PostgreSQL, with `$N` parameters).
const TAKE: &str = "INSERT INTO passes (tenant, name, holder, until) VALUES (?1, ?2, ?3, ?4)
    ON CONFLICT (tenant, name) DO UPDATE SET holder = excluded.holder, until = excluded.until
     WHERE passes.until <= ?5 OR passes.holder = excluded.holder
    RETURNING holder";

impl Passes for SqliteStore {
    fn take_pass(
        &mut self,
        tenant: &str,
        name: &str,
        claim: Claim<'_>,
        now: i64,
    ) -> Result<Option<PassHeld>, StoreError> {
        let until = now.saturating_add(claim.lease_ms);
        // Twice at most: a holder may release between the two statements.
        for _ in 0..2 {
            let taken: Option<String> = self
                .conn
                .query_row(TAKE, params![tenant, name, claim.holder, until, now], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(sql("take a pass"))?;
            if taken.is_some() {
                return Ok(None);
            }
            let held = self
                .conn
                .query_row(
                    "SELECT holder, until FROM passes WHERE tenant = ?1 AND name = ?2",
                    params![tenant, name],
                    |r| {
                        Ok(PassHeld {
                            holder: r.get(0)?,
                            until: r.get(1)?,
                        })
                    },
                )
                .optional()
                .map_err(sql("read a pass"))?;
            if held.is_some() {
                return Ok(held);
            }
        }
        Err(StoreError::PassContended(name.to_string()))
    }

    fn release_pass(&mut self, tenant: &str, name: &str, holder: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "DELETE FROM passes WHERE tenant = ?1 AND name = ?2 AND holder = ?3",
                params![tenant, name, holder],
            )
            .map_err(sql("release a pass"))?;
        Ok(())
    }
}
