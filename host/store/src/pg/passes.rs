//! Pass leases on PostgreSQL (`crate::passes`): the same upsert as
//! SQLite's; hosts asking at once are ordered by the row's lock.

use super::{PgStore, pg};
use crate::StoreError;
use crate::passes::{PassHeld, Passes};
use crate::service::Claim;

const TAKE: &str = "INSERT INTO passes (tenant, name, holder, until) VALUES ($1, $2, $3, $4)
    ON CONFLICT (tenant, name) DO UPDATE SET holder = excluded.holder, until = excluded.until
     WHERE passes.until <= $5 OR passes.holder = excluded.holder
    RETURNING holder";

impl Passes for PgStore {
    fn take_pass(
        &mut self,
        tenant: &str,
        name: &str,
        claim: Claim<'_>,
        now: i64,
    ) -> Result<Option<PassHeld>, StoreError> {
        let until = now.saturating_add(claim.lease_ms);
        let mut client = self.client();
        // Twice at most: a holder may release between the two statements.
        for _ in 0..2 {
            let taken = client
                .query_opt(TAKE, &[&tenant, &name, &claim.holder, &until, &now])
                .map_err(pg("take a pass"))?;
            if taken.is_some() {
                return Ok(None);
            }
            let held = client
                .query_opt(
                    "SELECT holder, until FROM passes WHERE tenant = $1 AND name = $2",
                    &[&tenant, &name],
                )
                .map_err(pg("read a pass"))?;
            if let Some(r) = held {
                return Ok(Some(PassHeld {
                    holder: r.get(0),
                    until: r.get(1),
                }));
            }
        }
        Err(StoreError::PassContended(name.to_string()))
    }

    fn release_pass(&mut self, tenant: &str, name: &str, holder: &str) -> Result<(), StoreError> {
        self.client()
            .execute(
                "DELETE FROM passes WHERE tenant = $1 AND name = $2 AND holder = $3",
                &[&tenant, &name, &holder],
            )
            .map_err(pg("release a pass"))?;
        Ok(())
    }
}
