//! API keys and the intake log on PostgreSQL: the same semantics as
//! SQLite's (`service/intake.rs`), with set-based statements where a batch
//! is written.

use super::{PgStore, pg};
use crate::StoreError;
use crate::service::{
    ApiKey, ApiKeys, Claim, IntakeLog, IntakeRow, LEGACY_FORM_SCOPE, Logged, NewIntake, scoped_key,
};
use std::collections::HashSet;

const INTAKE_COLUMNS: &str = "id, tenant, key, kind, fingerprint, body, lead_ids, received_at, state, status_code, result, done_at";

fn intake_row(r: &postgres::Row) -> IntakeRow {
    IntakeRow {
        id: r.get(0),
        tenant: r.get(1),
        key: r.get(2),
        kind: r.get(3),
        fingerprint: r.get(4),
        body: r.get(5),
        lead_ids: r.get(6),
        received_at: r.get(7),
        state: r.get(8),
        status_code: r.get(9),
        result: r.get(10),
        done_at: r.get(11),
    }
}

impl ApiKeys for PgStore {
    fn add_api_key(
        &self,
        tenant: &str,
        label: &str,
        hash: &str,
        prefix: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.client()
            .execute(
                "INSERT INTO api_keys (hash, tenant, label, prefix, created_at) VALUES ($1, $2, $3, $4, $5)",
                &[&hash, &tenant, &label, &prefix, &now],
            )
            .map_err(pg("add API key"))?;
        Ok(())
    }

    fn api_key_tenant(&self, hash: &str) -> Result<Option<String>, StoreError> {
        let row = self
            .client()
            .query_opt(
                "SELECT tenant FROM api_keys WHERE hash = $1 AND revoked_at IS NULL",
                &[&hash],
            )
            .map_err(pg("look up API key"))?;
        Ok(row.map(|r| r.get(0)))
    }

    fn api_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKey>, StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT tenant, label, prefix, created_at, revoked_at FROM api_keys
                  WHERE $1::TEXT IS NULL OR tenant = $1 ORDER BY tenant, created_at",
                &[&tenant],
            )
            .map_err(pg("list API keys"))?;
        Ok(rows
            .iter()
            .map(|r| ApiKey {
                tenant: r.get(0),
                label: r.get(1),
                prefix: r.get(2),
                created_at: r.get(3),
                revoked_at: r.get(4),
            })
            .collect())
    }

    fn revoke_api_key(&self, tenant: &str, which: &str, now: i64) -> Result<usize, StoreError> {
        let n = self
            .client()
            .execute(
                "UPDATE api_keys SET revoked_at = $3
                  WHERE tenant = $1 AND (prefix = $2 OR label = $2) AND revoked_at IS NULL",
                &[&tenant, &which, &now],
            )
            .map_err(pg("revoke API key"))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

impl IntakeLog for PgStore {
    /// Each request is inserted unless its tenant and key are taken
    /// (`ON CONFLICT DO NOTHING`, which holds with several hosts inserting
    /// at once); a taken key reads back the request logged under it.
    fn log_intake(
        &mut self,
        requests: &[NewIntake<'_>],
        claim: Claim<'_>,
        now: i64,
    ) -> Result<Vec<Logged>, StoreError> {
        let until = now.saturating_add(claim.lease_ms);
        let mut tx = self.tx("begin intake")?;
        let insert = tx
            .prepare(
                "INSERT INTO intake (tenant, key, kind, fingerprint, body, lead_ids, received_at, state,
                                     claimed_by, claimed_until)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9)
                 ON CONFLICT (tenant, key) DO NOTHING RETURNING id",
            )
            .map_err(pg("prepare intake insert"))?;
        let seen = tx
            .prepare(&format!(
                "SELECT {INTAKE_COLUMNS} FROM intake WHERE tenant = $1 AND key = $2"
            ))
            .map_err(pg("prepare intake lookup"))?;
        // In key order, whatever order the batch came in: two hosts logging
        // overlapping batches then wait on each other's keys in one order,
        // never in a cycle (a deadlock PostgreSQL would break by failing
        // one of them).
        let mut order: Vec<usize> = (0..requests.len()).collect();
        order.sort_by(|&a, &b| {
            (requests[a].tenant, requests[a].key).cmp(&(requests[b].tenant, requests[b].key))
        });
        let mut out: Vec<Option<Logged>> = (0..requests.len()).map(|_| None).collect();
        for i in order {
            let r = &requests[i];
            let inserted = tx
                .query_opt(
                    &insert,
                    &[
                        &r.tenant,
                        &r.key,
                        &r.kind,
                        &r.fingerprint,
                        &r.body,
                        &r.lead_ids,
                        &now,
                        &claim.holder,
                        &until,
                    ],
                )
                .map_err(pg("log request"))?;
            out[i] = Some(match inserted {
                Some(row) => Logged::New(row.get(0)),
                None => {
                    let row = tx
                        .query_one(&seen, &[&r.tenant, &r.key])
                        .map_err(pg("read logged request"))?;
                    Logged::Seen(Box::new(intake_row(&row)))
                }
            });
        }
        tx.commit().map_err(pg("commit intake"))?;
        Ok(out.into_iter().flatten().collect())
    }

    fn legacy_form_key(&self, tenant: &str, key: &str) -> Result<Option<String>, StoreError> {
        let legacy = scoped_key(LEGACY_FORM_SCOPE, key);
        let found = self
            .client()
            .query_opt(
                "SELECT 1 FROM intake WHERE tenant = $1 AND key = $2",
                &[&tenant, &legacy],
            )
            .map_err(pg("look up idempotency key"))?;
        Ok(found.map(|_| legacy))
    }

    fn tenants_with_legacy_form_keys(&self) -> Result<Vec<String>, StoreError> {
        let prefix = scoped_key(LEGACY_FORM_SCOPE, "");
        let rows = self
            .client()
            .query(
                "SELECT DISTINCT tenant FROM intake WHERE starts_with(key, $1) ORDER BY tenant",
                &[&prefix],
            )
            .map_err(pg("list legacy form keys"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn logged_keys<'k>(
        &self,
        tenant: &str,
        keys: impl IntoIterator<Item = &'k str>,
    ) -> Result<HashSet<&'k str>, StoreError> {
        let keys: Vec<&'k str> = keys.into_iter().collect();
        let rows = self
            .client()
            .query(
                "SELECT key FROM intake WHERE tenant = $1 AND key = ANY($2)",
                &[&tenant, &keys],
            )
            .map_err(pg("look up idempotency keys"))?;
        let found: HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
        Ok(keys.into_iter().filter(|k| found.contains(*k)).collect())
    }

    /// One statement for the whole batch (`UPDATE … FROM unnest(…)`).
    fn finish_intake(&mut self, done: &[(i64, u16, &str)], now: i64) -> Result<(), StoreError> {
        let ids: Vec<i64> = done.iter().map(|d| d.0).collect();
        let codes: Vec<i64> = done.iter().map(|d| i64::from(d.1)).collect();
        let results: Vec<&str> = done.iter().map(|d| d.2).collect();
        self.client()
            .execute(
                "UPDATE intake SET state = 'done', status_code = d.code, result = d.result,
                        done_at = $4, body = ''
                   FROM unnest($1::BIGINT[], $2::BIGINT[], $3::TEXT[]) AS d(id, code, result)
                  WHERE intake.id = d.id",
                &[&ids, &codes, &results, &now],
            )
            .map_err(pg("finish requests"))?;
        Ok(())
    }

    fn pending_intake(&self, tenant: &str, limit: usize) -> Result<Vec<IntakeRow>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .client()
            .query(
                &format!(
                    "SELECT {INTAKE_COLUMNS} FROM intake WHERE state = 'pending' AND tenant = $1 ORDER BY id LIMIT $2"
                ),
                &[&tenant, &limit],
            )
            .map_err(pg("list pending requests"))?;
        Ok(rows.iter().map(intake_row).collect())
    }

    /// `FOR UPDATE SKIP LOCKED`: hosts claiming at once take different
    /// requests without waiting on each other.
    fn claim_pending_intake(
        &mut self,
        tenant: &str,
        claim: Claim<'_>,
        own: bool,
        now: i64,
        limit: usize,
    ) -> Result<Vec<IntakeRow>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let until = now.saturating_add(claim.lease_ms);
        let mut rows: Vec<IntakeRow> = self
            .client()
            .query(
                &format!(
                    "UPDATE intake SET claimed_by = $3, claimed_until = $4
                      WHERE id IN (SELECT id FROM intake
                                    WHERE state = 'pending' AND tenant = $1
                                      AND ((claimed_by IS DISTINCT FROM $3
                                            AND (claimed_until IS NULL OR claimed_until <= $2))
                                        OR ($6 AND claimed_by = $3))
                                    ORDER BY id LIMIT $5 FOR UPDATE SKIP LOCKED)
                      RETURNING {INTAKE_COLUMNS}"
                ),
                &[&tenant, &now, &claim.holder, &until, &limit, &own],
            )
            .map_err(pg("claim pending requests"))?
            .iter()
            .map(intake_row)
            .collect();
        rows.sort_by_key(|r| r.id);
        Ok(rows)
    }

    fn intake(&self, tenant: &str, id: i64) -> Result<Option<IntakeRow>, StoreError> {
        let row = self
            .client()
            .query_opt(
                &format!("SELECT {INTAKE_COLUMNS} FROM intake WHERE id = $1 AND tenant = $2"),
                &[&id, &tenant],
            )
            .map_err(pg("read request"))?;
        Ok(row.as_ref().map(intake_row))
    }
}
