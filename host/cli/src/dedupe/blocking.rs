//! Blocking: the records that share a key of the dedupe component, each
//! pass's blocks, and oversize blocks compared as a sorted neighbourhood
//! instead of dropped.

use super::*;

/// The blocking keys of records, gathered record by record.
#[derive(Default)]
pub(super) struct Blocking {
    entries: Vec<Entry>,
    /// Pass names, in the order first seen.
    passes: Vec<String>,
}

impl Blocking {
    /// Adds the keys of record `record` (as the component gave them, and
    /// hashed).
    pub(super) fn add(&mut self, record: u32, keys: &[String], hashed: &[i64]) {
        for (k, h) in keys.iter().zip(hashed) {
            let name = pass_of(k);
            let pass = match self.passes.iter().position(|p| p == name) {
                Some(i) => i,
                None => {
                    self.passes.push(name.to_string());
                    self.passes.len() - 1
                }
            };
            self.entries.push(Entry {
                key: *h as u64,
                record,
                pass: u16::try_from(pass).unwrap_or(u16::MAX),
            });
        }
    }

    /// The candidate pairs (see [`block`]).
    pub(super) fn pairs(
        mut self,
        leads: &[Lead],
        config: &crate::config::DedupeConfig,
        stats: &mut Stats,
    ) -> Vec<u64> {
        if self.passes.is_empty() {
            return Vec::new();
        }
        block(&mut self.entries, leads, &self.passes, config, stats)
    }
}

/// Neighbours each record of an oversize block is compared with.
pub(super) const WINDOW: usize = 8;

/// The sort key of a record in an oversize block's sorted neighbourhood:
/// family name, given name, postcode, folded to lowercase.
pub(super) fn neighbourhood_key(lead: &Lead) -> String {
    let part = |s: &Option<String>| s.as_deref().unwrap_or("").to_lowercase();
    format!(
        "{}\u{1f}{}\u{1f}{}",
        part(&lead.last_name),
        part(&lead.first_name),
        part(&lead.postcode)
    )
}

/// Candidate pairs from the blocking keys, sorted and without duplicates.
///
/// A block of up to `max_block` records gives every pair in it. A larger
/// one (a shared switchboard number, a common name in a big city) is
/// compared as a sorted neighbourhood: ordered by family name, given name
/// and postcode, each record meets its [`WINDOW`] next neighbours, so
/// near-identical records still meet and the cost stays linear.
///
/// Passes are taken most selective (fewest distinct pairs) first while
/// their pairs fit in `max_pairs_per_record` pairs a record; the rest are
/// left out whole, and the report names them.
pub(super) fn block(
    entries: &mut [Entry],
    leads: &[Lead],
    passes: &[String],
    config: &crate::config::DedupeConfig,
    stats: &mut Stats,
) -> Vec<u64> {
    entries.sort_unstable();
    let max_block = config.max_block.max(2);
    let mut by_pass: Vec<PassStats> = passes
        .iter()
        .map(|name| PassStats {
            name: name.clone(),
            ..PassStats::default()
        })
        .collect();
    // The blocks of each pass: (start, end) into entries.
    let mut of_pass: Vec<Vec<(usize, usize)>> = vec![Vec::new(); by_pass.len()];
    let mut start = 0;
    while start < entries.len() {
        let key = entries[start].key;
        let mut end = start;
        while end < entries.len() && entries[end].key == key {
            end += 1;
        }
        let n = (end - start) as u64;
        if n > 1 {
            let index = usize::from(entries[start].pass).min(passes.len() - 1);
            let pass = &mut by_pass[index];
            pass.blocks += 1;
            if n as usize > max_block {
                pass.oversize += 1;
                if stats
                    .oversize_example
                    .as_ref()
                    .is_none_or(|(_, m)| n as usize > *m)
                {
                    let lead = &leads[entries[start].record as usize];
                    let name = lead
                        .email
                        .clone()
                        .or_else(|| lead.phone.clone())
                        .unwrap_or_else(|| {
                            format!("a `{}` key", passes[usize::from(entries[start].pass)])
                        });
                    stats.oversize_example = Some((name, n as usize));
                }
                stats.oversize_blocks += 1;
            }
            stats.blocks += 1;
            of_pass[index].push((start, end));
        }
        start = end;
    }
    // Each pass's distinct pairs (several keys of one pass, such as the
    // deletion variants of one name, often propose the same pair).
    let mut order: Vec<(String, u32)> = Vec::new();
    let mut pairs_of = |blocks: &[(usize, usize)], pairs: &mut Vec<u64>| {
        // Several keys of one pass often propose the same pair (the
        // deletion variants of one name): duplicates are folded away as the
        // list grows, so it never holds many more than the distinct pairs.
        let mut compacted = pairs.len();
        for &(start, end) in blocks {
            if pairs.len() > 2 * compacted + (1 << 20) {
                pairs.sort_unstable();
                pairs.dedup();
                compacted = pairs.len();
            }
            let block = &entries[start..end];
            if block.len() > max_block {
                order.clear();
                order.extend(
                    block
                        .iter()
                        .map(|e| (neighbourhood_key(&leads[e.record as usize]), e.record)),
                );
                order.sort_unstable();
                for (i, (_, x)) in order.iter().enumerate() {
                    for (_, y) in order.iter().skip(i + 1).take(WINDOW) {
                        if x != y {
                            pairs.push(cluster::pair_key(*x, *y));
                        }
                    }
                }
            } else {
                for (i, x) in block.iter().enumerate() {
                    for y in &block[i + 1..] {
                        if x.record != y.record {
                            pairs.push(cluster::pair_key(x.record, y.record));
                        }
                    }
                }
            }
        }
    };
    // Counted pass by pass (a kept pass's pairs are made again below, so
    // that only one pass's pairs are held at a time).
    let mut scratch: Vec<u64> = Vec::new();
    for (pass, blocks) in of_pass.iter().enumerate() {
        scratch.clear();
        pairs_of(blocks, &mut scratch);
        scratch.sort_unstable();
        scratch.dedup();
        by_pass[pass].pairs = scratch.len() as u64;
    }
    drop(scratch);
    // The budget: the most selective passes first, while they fit; the
    // rest are left out (never the first).
    let budget = (config.max_pairs_per_record as u64).saturating_mul(leads.len() as u64);
    let mut ranked: Vec<usize> = (0..by_pass.len()).collect();
    ranked.sort_by_key(|&i| by_pass[i].pairs);
    let mut total = 0u64;
    for (rank, &i) in ranked.iter().enumerate() {
        if rank > 0 && total + by_pass[i].pairs > budget {
            by_pass[i].dropped = true;
        } else {
            total += by_pass[i].pairs;
        }
    }
    let mut pairs: Vec<u64> = Vec::with_capacity(total as usize);
    for (pass, blocks) in of_pass.iter().enumerate() {
        if !by_pass[pass].dropped {
            pairs_of(blocks, &mut pairs);
        }
    }
    pairs.sort_unstable();
    pairs.dedup();
    stats.passes = by_pass;
    pairs
}
