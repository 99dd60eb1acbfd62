//! Recomputing the blocking-key index of stored leads (`leadgate rekey`).
//!
//! Blocking keys are whatever the tenant's dedupe component says they are,
//! so the index is only as current as the component that wrote it: after a
//! swapped component or a changed key (a setting such as `name_city_key`,
//! or a new version of the bundled one), stored leads keep the keys of the
//! old one, and a new lead no longer meets them on the keys that changed.
//! [`SqliteStore::rekey`] replaces the keys of every keyed lead of a tenant — the
//! leads that have any key now — with the ones the caller computes, in one
//! transaction: if anything fails, the index is as it was.

use crate::pending_keys::{self, PendingKeys};
use crate::{SqliteStore, StoreError, key_filter, sql};
use rusqlite::params;

/// A stored lead whose keys are recomputed.
#[derive(Debug, Clone)]
pub struct KeyedLead {
    /// The lead's id.
    pub id: String,
    /// Its normalized record (JSON), as stored.
    pub normalized: String,
}

/// What [`SqliteStore::rekey`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rekeyed {
    /// Leads whose keys were replaced.
    pub leads: u64,
    /// Their index entries before (folded and pending), each once.
    pub keys_before: u64,
    /// Their index entries after.
    pub keys_after: u64,
}

/// Re-keying: a tenant's blocking keys rebuilt with a new deduper.
pub trait Rekey {
    /// Replaces the blocking keys of `tenant`'s keyed leads with those
    /// `keys_of` computes (hashed, as [`crate::key_hash`] makes them), in
    /// chunks of `chunk` leads in the order they were stored; `keys_of`
    /// also gets the number of leads in all, for progress. One
    /// transaction: when `keys_of` fails, nothing changes and its error
    /// is returned inside `Ok` (inside a [`crate::Batch`], the batch's
    /// commit or rollback decides instead). Another connection's deferred keys
    /// ([`SqliteStore::defer_match_keys`]) are not seen: run it while no service
    /// writes to the store.
    fn rekey<E>(
        &mut self,
        tenant: &str,
        chunk: usize,
        keys_of: impl FnMut(&[KeyedLead], u64) -> Result<Vec<Vec<i64>>, E>,
    ) -> Result<Result<Rekeyed, E>, StoreError>;

    /// Visits the tenant's keyed leads — the ones a new lead is matched
    /// against, and the ones [`SqliteStore::rekey`] keys again — in chunks of at
    /// most `chunk`, oldest first, and returns how many it visited. A
    /// lead with no normalized record is skipped. `visit`'s error stops the
    /// walk and is returned inside `Ok`. Read only; another connection's
    /// deferred keys ([`SqliteStore::defer_match_keys`]) are not seen.
    fn keyed_leads<E>(
        &self,
        tenant: &str,
        chunk: usize,
        visit: impl FnMut(&[KeyedLead]) -> Result<(), E>,
    ) -> Result<Result<u64, E>, StoreError>;
}

impl Rekey for SqliteStore {
    fn rekey<E>(
        &mut self,
        tenant: &str,
        chunk: usize,
        mut keys_of: impl FnMut(&[KeyedLead], u64) -> Result<Vec<Vec<i64>>, E>,
    ) -> Result<Result<Rekeyed, E>, StoreError> {
        let chunk = chunk.max(1);
        let tx = self.tx()?;
        // The tenant's keyed leads: any entry in the index, or a row of
        // keys not yet folded into it.
        tx.execute_batch(
            "DROP TABLE IF EXISTS temp.rekey_leads;
             CREATE TEMP TABLE rekey_leads (lead INTEGER PRIMARY KEY);",
        )
        .map_err(sql("create the rekey list"))?;
        let leads = tx
            .execute(
                "INSERT OR IGNORE INTO temp.rekey_leads (lead)
                 SELECT k.lead FROM (SELECT DISTINCT lead FROM match_keys
                                     UNION SELECT lead FROM match_keys_mid
                                     UNION SELECT lead FROM match_keys_new) k
                   JOIN leads l ON l.rowid = k.lead
                  WHERE l.tenant = ?1",
                [tenant],
            )
            .map_err(sql("list keyed leads"))? as u64;
        let keys_before = entries_not_in_match_keys(&tx)?
            + tx.execute(
                "DELETE FROM match_keys WHERE lead IN (SELECT lead FROM temp.rekey_leads)",
                [],
            )
            .map_err(sql("delete old keys"))? as u64;
        tx.execute(
            "DELETE FROM match_keys_mid WHERE lead IN (SELECT lead FROM temp.rekey_leads)",
            [],
        )
        .map_err(sql("delete old keys"))?;
        tx.execute(
            "DELETE FROM match_keys_new WHERE lead IN (SELECT lead FROM temp.rekey_leads)",
            [],
        )
        .map_err(sql("delete old pending keys"))?;

        let mut keys_after = 0;
        let mut after: i64 = -1;
        loop {
            let batch: Vec<(i64, KeyedLead)> = {
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT r.lead, l.id, l.normalized FROM temp.rekey_leads r
                           JOIN leads l ON l.rowid = r.lead
                          WHERE r.lead > ?1 ORDER BY r.lead LIMIT ?2",
                    )
                    .map_err(sql("read leads to rekey"))?;
                let rows = stmt
                    .query_map(params![after, chunk as i64], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            KeyedLead {
                                id: r.get(1)?,
                                normalized: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                            },
                        ))
                    })
                    .map_err(sql("read leads to rekey"))?;
                rows.collect::<Result<_, _>>()
                    .map_err(sql("read leads to rekey"))?
            };
            let Some(last) = batch.last() else { break };
            after = last.0;
            let (rows, leads_of): (Vec<i64>, Vec<KeyedLead>) = batch.into_iter().unzip();
            let keys = match keys_of(&leads_of, leads) {
                Ok(k) => k,
                // Dropping the transaction rolls it back.
                Err(e) => return Ok(Err(e)),
            };
            let entries: Vec<(i64, i64)> = rows
                .iter()
                .zip(&keys)
                .flat_map(|(row, ks)| ks.iter().map(move |k| (*k, *row)))
                .collect();
            keys_after +=
                pending_keys::insert_in_key_order(&tx, pending_keys::Index::Main, entries)?;
        }
        // Other connections' key filters learn of the new keys by this.
        tx.execute(key_filter::COUNT_DIRECT_WRITE, [])
            .map_err(sql("count match key writes"))?;
        tx.execute_batch("DROP TABLE temp.rekey_leads")
            .map_err(sql("drop the rekey list"))?;
        tx.commit().map_err(sql("commit rekey"))?;
        // This connection's view of the pending rows is read again.
        *self.pending.get_mut() = PendingKeys::default();
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
        let keyed: Vec<i64> = {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT lead FROM match_keys UNION SELECT lead FROM match_keys_mid
                     UNION SELECT lead FROM match_keys_new ORDER BY 1",
                )
                .map_err(sql("list keyed leads"))?;
            let rows = stmt
                .query_map([], |r| r.get::<_, i64>(0))
                .map_err(sql("list keyed leads"))?;
            rows.collect::<Result<_, _>>()
                .map_err(sql("list keyed leads"))?
        };
        let mut stmt = self
            .conn
            .prepare(
                "SELECT rowid, id, normalized FROM leads
                  WHERE tenant = ?1 AND rowid > ?2 AND normalized IS NOT NULL
                  ORDER BY rowid LIMIT ?3",
            )
            .map_err(sql("read keyed leads"))?;
        let mut visited = 0u64;
        let mut after: i64 = -1;
        let mut batch: Vec<KeyedLead> = Vec::with_capacity(chunk);
        loop {
            let rows: Vec<(i64, KeyedLead)> = stmt
                .query_map(params![tenant, after, chunk as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        KeyedLead {
                            id: r.get(1)?,
                            normalized: r.get(2)?,
                        },
                    ))
                })
                .map_err(sql("read keyed leads"))?
                .collect::<Result<_, _>>()
                .map_err(sql("read keyed leads"))?;
            let Some(last) = rows.last() else { break };
            after = last.0;
            for (row, lead) in rows {
                if keyed.binary_search(&row).is_ok() {
                    batch.push(lead);
                }
            }
            if batch.len() >= chunk {
                visited += batch.len() as u64;
                if let Err(e) = visit(&batch) {
                    return Ok(Err(e));
                }
                batch.clear();
            }
        }
        if !batch.is_empty() {
            visited += batch.len() as u64;
            if let Err(e) = visit(&batch) {
                return Ok(Err(e));
            }
        }
        Ok(Ok(visited))
    }
}

/// The distinct `(key, lead)` entries of the leads in
/// `temp.rekey_leads` that are in the middle tier or pending but not in
/// `match_keys`: an entry can be in more than one tier at once (a pending
/// row stays until every slice has folded it, and a writer started again
/// folds its rows again), and is counted once.
fn entries_not_in_match_keys(conn: &rusqlite::Connection) -> Result<u64, StoreError> {
    let mid: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM match_keys_mid k
              WHERE lead IN (SELECT lead FROM temp.rekey_leads)
                AND NOT EXISTS (SELECT 1 FROM match_keys m WHERE m.key = k.key AND m.lead = k.lead)",
            [],
            |r| r.get(0),
        )
        .map_err(sql("count old keys"))?;
    // Pending keys are packed; at most about a round of rows is pending.
    let mut pending = std::collections::HashSet::new();
    {
        let mut rows = conn
            .prepare(
                "SELECT id, lead, keys FROM match_keys_new
                  WHERE lead IN (SELECT lead FROM temp.rekey_leads)",
            )
            .map_err(sql("count pending keys"))?;
        let mut rows = rows.query([]).map_err(sql("count pending keys"))?;
        while let Some(row) = rows.next().map_err(sql("count pending keys"))? {
            let id: i64 = row.get(0).map_err(sql("count pending keys"))?;
            let lead: i64 = row.get(1).map_err(sql("count pending keys"))?;
            let keys: Vec<u8> = row.get(2).map_err(sql("count pending keys"))?;
            for key in pending_keys::unpack(id, &keys)? {
                pending.insert((key, lead));
            }
        }
    }
    let mut indexed = conn
        .prepare(
            "SELECT EXISTS (SELECT 1 FROM match_keys WHERE key = ?1 AND lead = ?2)
                 OR EXISTS (SELECT 1 FROM match_keys_mid WHERE key = ?1 AND lead = ?2)",
        )
        .map_err(sql("count pending keys"))?;
    let mut only_pending = 0u64;
    for (key, lead) in pending {
        let found: bool = indexed
            .query_row(params![key, lead], |r| r.get(0))
            .map_err(sql("count pending keys"))?;
        if !found {
            only_pending += 1;
        }
    }
    Ok(mid.max(0) as u64 + only_pending)
}

#[cfg(test)]
mod tests {
    use crate::prelude::*;
    use crate::test_support::{TempStore, plain_record};
    use crate::{SqliteStore, Status, key_hash};
    use leadgate_lead::Lead;
    use rusqlite::params;

    /// Records leads `{tenant}-{from}`… `{tenant}-{to - 1}`, lead `i` with
    /// the key `old:{i % 10}`, each in its own transaction.
    fn keyed(s: &mut SqliteStore, tenant: &str, from: usize, to: usize) {
        let run = s.begin_run(tenant, "x", "{}", 1).unwrap();
        for i in from..to {
            let lead = Lead {
                id: format!("{tenant}-{i}"),
                tenant: tenant.into(),
                email: Some(format!("{i}@x.com")),
                ..Lead::default()
            };
            let json = serde_json::to_string(&lead).unwrap();
            let keys = [key_hash(tenant, &format!("old:{}", i % 10))];
            let record = plain_record(&lead, Status::Accepted, Some(&json), &keys);
            s.record(run, "validate", "sha", &[record], 1).unwrap();
        }
    }

    fn candidates(store: &SqliteStore, tenant: &str, key: &str) -> Vec<String> {
        let mut ids: Vec<String> = store
            .candidates_for_each(tenant, &[vec![key_hash(tenant, key)]], 1000, 1000)
            .unwrap()
            .remove(0)
            .into_iter()
            .map(|c| c.id)
            .collect();
        ids.sort();
        ids
    }

    #[test]
    fn rekeying_replaces_a_tenants_keys_and_nothing_else() {
        let dir = TempStore::new("rekey");
        let mut s = dir.open();
        keyed(&mut s, "a", 0, 30);
        keyed(&mut s, "b", 0, 20);
        // Some of tenant a's keys in the index's middle tier (folded by a
        // service's writer, not yet moved on)…
        s.conn
            .execute_batch(
                "INSERT INTO match_keys_mid SELECT key, lead FROM match_keys
                  WHERE lead IN (SELECT rowid FROM leads WHERE tenant = 'a' AND id LIKE 'a-2_');
                 DELETE FROM match_keys WHERE (key, lead) IN (SELECT key, lead FROM match_keys_mid);",
            )
            .unwrap();
        assert_eq!(s.count("match_keys_mid").unwrap(), 10);
        // … and some still pending (a service's writer).
        let mut w = dir.open();
        w.defer_match_keys(1 << 20);
        keyed(&mut w, "a", 30, 35);
        assert!(w.count("match_keys_new").unwrap() > 0);
        drop(w);
        // Two pending leads' keys already folded into the middle tier as
        // well (a pending row stays until every slice has folded it): each
        // entry is still counted once.
        for i in [30, 31] {
            s.conn
                .execute(
                    "INSERT OR IGNORE INTO match_keys_mid (key, lead)
                     SELECT ?1, rowid FROM leads WHERE id = ?2",
                    params![key_hash("a", &format!("old:{}", i % 10)), format!("a-{i}")],
                )
                .unwrap();
        }
        assert_eq!(s.count("match_keys_mid").unwrap(), 12);
        assert_eq!(candidates(&s, "a", "old:3").len(), 4);
        let other = dir.open();
        assert_eq!(candidates(&other, "a", "old:3").len(), 4);

        let mut seen = Vec::new();
        let done = s
            .rekey("a", 8, |leads, total| {
                seen.push((leads.len(), total));
                Ok::<_, String>(
                    leads
                        .iter()
                        .map(|l| {
                            assert!(l.normalized.contains(&l.id), "{l:?}");
                            vec![
                                key_hash("a", "new:all"),
                                key_hash("a", &format!("id:{}", l.id)),
                            ]
                        })
                        .collect(),
                )
            })
            .unwrap()
            .unwrap();
        assert_eq!(done.leads, 35);
        assert_eq!(done.keys_before, 35);
        assert_eq!(done.keys_after, 70);
        assert_eq!(seen.iter().map(|(n, _)| n).sum::<usize>(), 35);
        assert!(seen.iter().all(|(n, t)| *n <= 8 && *t == 35), "{seen:?}");

        // The old keys find nothing, the new ones every lead; tenant b is
        // untouched. A connection opened before sees the same.
        for store in [&s, &other, &dir.open()] {
            assert!(candidates(store, "a", "old:3").is_empty());
            assert_eq!(candidates(store, "a", "new:all").len(), 35);
            assert_eq!(candidates(store, "a", "id:a-33"), vec!["a-33".to_string()]);
            assert_eq!(candidates(store, "b", "old:3").len(), 2);
        }
        assert_eq!(s.count("match_keys_new").unwrap(), 0);
        assert_eq!(s.count("match_keys_mid").unwrap(), 0);
    }

    #[test]
    fn keyed_leads_are_the_tenants_leads_with_keys() {
        let dir = TempStore::new("keyed-leads");
        let mut s = dir.open();
        keyed(&mut s, "a", 0, 25);
        keyed(&mut s, "b", 0, 5);
        // A lead with no key (a rejected one outside an import) is not
        // matched against, so it is not visited.
        let run = s.begin_run("a", "x", "{}", 1).unwrap();
        let lead = Lead {
            id: "a-unkeyed".into(),
            tenant: "a".into(),
            ..Lead::default()
        };
        let json = serde_json::to_string(&lead).unwrap();
        let record = plain_record(&lead, Status::Rejected, Some(&json), &[]);
        s.record(run, "validate", "sha", &[record], 1).unwrap();
        // Keys still pending in another writer count.
        let mut w = dir.open();
        w.defer_match_keys(1 << 20);
        keyed(&mut w, "a", 25, 28);
        drop(w);

        let mut chunks = Vec::new();
        let mut ids = Vec::new();
        let n = s
            .keyed_leads("a", 10, |leads| {
                chunks.push(leads.len());
                ids.extend(leads.iter().map(|l| l.id.clone()));
                Ok::<_, String>(())
            })
            .unwrap()
            .unwrap();
        assert_eq!(n, 28);
        assert_eq!(chunks, vec![10, 10, 8]);
        assert!(
            ids.iter()
                .all(|id| id.starts_with("a-") && id != "a-unkeyed")
        );
        assert_eq!(ids.first().map(String::as_str), Some("a-0"));

        let err = s
            .keyed_leads("a", 10, |_| Err("stop".to_string()))
            .unwrap()
            .unwrap_err();
        assert_eq!(err, "stop");
        assert_eq!(
            s.keyed_leads("c", 10, |_| Ok::<_, String>(())).unwrap(),
            Ok(0)
        );
    }

    #[test]
    fn a_failed_rekey_changes_nothing() {
        let dir = TempStore::new("rekey-failed");
        let mut s = dir.open();
        keyed(&mut s, "a", 0, 30);
        let keys = s.count("match_keys").unwrap();
        let mut calls = 0;
        let err = s
            .rekey("a", 10, |leads, _| {
                calls += 1;
                if calls == 2 {
                    Err(format!("lead {}: the component trapped", leads[0].id))
                } else {
                    Ok(leads.iter().map(|_| vec![key_hash("a", "new")]).collect())
                }
            })
            .unwrap()
            .unwrap_err();
        assert_eq!(err, "lead a-10: the component trapped");
        assert_eq!(s.count("match_keys").unwrap(), keys);
        assert_eq!(candidates(&s, "a", "old:3").len(), 3);
        assert!(candidates(&s, "a", "new").is_empty());
        // And it can be run again.
        let done = s
            .rekey("a", 10, |leads, _| {
                Ok::<_, String>(leads.iter().map(|_| vec![key_hash("a", "new")]).collect())
            })
            .unwrap()
            .unwrap();
        assert_eq!((done.leads, done.keys_after), (30, 30));
    }
}
