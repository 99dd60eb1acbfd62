//! Re-keying on PostgreSQL: a tenant's blocking keys replaced in one
//! transaction, as on SQLite (`rekey.rs`); the list of keyed leads is a
//! temporary table dropped at commit.

use super::{PgStore, limit, pg};
use crate::StoreError;
use crate::rekey::{KeyedLead, Rekey, Rekeyed};

impl Rekey for PgStore {
    fn rekey<E>(
        &mut self,
        tenant: &str,
        chunk: usize,
        mut keys_of: impl FnMut(&[KeyedLead], u64) -> Result<Vec<Vec<i64>>, E>,
    ) -> Result<Result<Rekeyed, E>, StoreError> {
        let chunk = chunk.max(1);
        let mut tx = self.tx("begin rekey")?;
        tx.batch_execute(
            "DROP TABLE IF EXISTS rekey_leads;
             CREATE TEMP TABLE rekey_leads (lead BIGINT PRIMARY KEY) ON COMMIT DROP;",
        )
        .map_err(pg("create the rekey list"))?;
        let leads = tx
            .execute(
                "INSERT INTO rekey_leads (lead)
                 SELECT DISTINCT k.lead FROM match_keys k JOIN leads l ON l.seq = k.lead WHERE l.tenant = $1",
                &[&tenant],
            )
            .map_err(pg("list keyed leads"))?;
        let keys_before = tx
            .execute(
                "DELETE FROM match_keys WHERE lead IN (SELECT lead FROM rekey_leads)",
                &[],
            )
            .map_err(pg("delete old keys"))?;
        let mut keys_after = 0;
        let mut after: i64 = -1;
        loop {
            let rows = tx
                .query(
                    "SELECT r.lead, l.id, l.normalized FROM rekey_leads r JOIN leads l ON l.seq = r.lead
                      WHERE r.lead > $1 ORDER BY r.lead LIMIT $2",
                    &[&after, &limit(chunk)],
                )
                .map_err(pg("read leads to rekey"))?;
            let Some(last) = rows.last() else { break };
            after = last.get(0);
            let seqs: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
            let batch: Vec<KeyedLead> = rows
                .iter()
                .map(|r| KeyedLead {
                    id: r.get(1),
                    normalized: r.get::<_, Option<String>>(2).unwrap_or_default(),
                })
                .collect();
            let keys = match keys_of(&batch, leads) {
                Ok(k) => k,
                // Dropping the transaction rolls it back.
                Err(e) => return Ok(Err(e)),
            };
            let (mut key, mut lead) = (Vec::new(), Vec::new());
            for (seq, ks) in seqs.iter().zip(&keys) {
                for k in ks {
                    key.push(*k);
                    lead.push(*seq);
                }
            }
            keys_after += tx
                .execute(
                    "INSERT INTO match_keys (key, lead) SELECT * FROM unnest($1::BIGINT[], $2::BIGINT[])
                     ON CONFLICT DO NOTHING",
                    &[&key, &lead],
                )
                .map_err(pg("insert keys"))?;
        }
        tx.commit().map_err(pg("commit rekey"))?;
        Ok(Ok(Rekeyed {
            leads,
            keys_before,
            keys_after,
        }))
    }

    fn keyed_leads<E>(
        &self,
        tenant: &str,
        chunk: usize,
        mut visit: impl FnMut(&[KeyedLead]) -> Result<(), E>,
    ) -> Result<Result<u64, E>, StoreError> {
        let chunk = chunk.max(1);
        let mut visited = 0u64;
        let mut after: i64 = -1;
        loop {
            let rows = self
                .client()
                .query(
                    "SELECT l.seq, l.id, l.normalized FROM leads l
                      WHERE l.tenant = $1 AND l.seq > $2 AND l.normalized IS NOT NULL
                        AND EXISTS (SELECT 1 FROM match_keys k WHERE k.lead = l.seq)
                      ORDER BY l.seq LIMIT $3",
                    &[&tenant, &after, &limit(chunk)],
                )
                .map_err(pg("read keyed leads"))?;
            let Some(last) = rows.last() else { break };
            after = last.get(0);
            let batch: Vec<KeyedLead> = rows
                .iter()
                .map(|r| KeyedLead {
                    id: r.get(1),
                    normalized: r.get(2),
                })
                .collect();
            visited += batch.len() as u64;
            if let Err(e) = visit(&batch) {
                return Ok(Err(e));
            }
        }
        Ok(Ok(visited))
    }
}
