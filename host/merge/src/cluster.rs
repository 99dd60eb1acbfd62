//! Clustering match pairs into groups of the same person.
//!
//! Pairs are joined strongest first (union-find). Transitivity is what makes
//! clusters useful — A~B and B~C put A, B and C together — and what makes
//! them dangerous: a chain of plausible steps can join people who are
//! clearly different. Two guards stop that: a group never grows past
//! `max_size`, and two groups are never joined when any pair across them was
//! compared and found clearly different (probability below
//! `cannot_link_below`).

/// A compared pair above the clustering threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Edge {
    pub a: u32,
    pub b: u32,
    pub probability: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Guard {
    /// Largest group allowed.
    pub max_size: usize,
    /// A compared pair below this is "clearly different".
    pub cannot_link_below: f64,
}

impl Default for Guard {
    fn default() -> Self {
        Guard {
            max_size: 50,
            cannot_link_below: 0.05,
        }
    }
}

/// Groups of records, each sorted, records of a group in ascending order;
/// singletons left out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Clusters {
    pub groups: Vec<Vec<u32>>,
    /// Joins the guard refused.
    pub refused: u64,
}

/// The key of an unordered pair: both records in one sortable number.
pub fn pair_key(a: u32, b: u32) -> u64 {
    let (x, y) = if a < b { (a, b) } else { (b, a) };
    (u64::from(x) << 32) | u64::from(y)
}

/// Clusters `n` records joined by `edges`; `different(a, b)` tells whether
/// the two records were compared and found clearly different.
pub fn cluster(
    n: usize,
    edges: &[Edge],
    different: impl Fn(u32, u32) -> bool,
    guard: Guard,
) -> Clusters {
    let mut order: Vec<&Edge> = edges.iter().collect();
    order.sort_by(|x, y| y.probability.total_cmp(&x.probability));
    let mut parent: Vec<u32> = (0..n as u32).collect();
    let mut members: Vec<Vec<u32>> = Vec::new();
    let mut slot: Vec<u32> = vec![u32::MAX; n];
    let mut refused = 0;
    fn find(parent: &mut [u32], mut x: u32) -> u32 {
        while parent[x as usize] != x {
            let up = parent[parent[x as usize] as usize];
            parent[x as usize] = up;
            x = up;
        }
        x
    }
    for e in order {
        if e.a as usize >= n || e.b as usize >= n {
            continue;
        }
        let (ra, rb) = (find(&mut parent, e.a), find(&mut parent, e.b));
        if ra == rb {
            continue;
        }
        let list = |r: u32, slot: &[u32], members: &[Vec<u32>]| -> Vec<u32> {
            match slot[r as usize] {
                u32::MAX => vec![r],
                s => members[s as usize].clone(),
            }
        };
        let (la, lb) = (list(ra, &slot, &members), list(rb, &slot, &members));
        if la.len() + lb.len() > guard.max_size
            || la.iter().any(|x| lb.iter().any(|y| different(*x, *y)))
        {
            refused += 1;
            continue;
        }
        let (keep, gone, mut joined) = if la.len() >= lb.len() {
            (ra, rb, la)
        } else {
            (rb, ra, lb)
        };
        let other = if keep == ra {
            list(rb, &slot, &members)
        } else {
            list(ra, &slot, &members)
        };
        joined.extend(other);
        parent[gone as usize] = keep;
        match slot[keep as usize] {
            u32::MAX => {
                slot[keep as usize] = members.len() as u32;
                members.push(joined);
            }
            s => members[s as usize] = joined,
        }
        if slot[gone as usize] != u32::MAX {
            let s = slot[gone as usize] as usize;
            members[s].clear();
            slot[gone as usize] = u32::MAX;
        }
    }
    let mut groups: Vec<Vec<u32>> = members
        .into_iter()
        .filter(|g| g.len() > 1)
        .map(|mut g| {
            g.sort_unstable();
            g
        })
        .collect();
    groups.sort();
    Clusters { groups, refused }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn none(_: u32, _: u32) -> bool {
        false
    }

    fn e(a: u32, b: u32, p: f64) -> Edge {
        Edge {
            a,
            b,
            probability: p,
        }
    }

    #[test]
    fn pairs_join_transitively() {
        let c = cluster(
            5,
            &[e(0, 1, 0.9), e(1, 2, 0.8), e(3, 4, 0.99)],
            none,
            Guard::default(),
        );
        assert_eq!(c.groups, vec![vec![0, 1, 2], vec![3, 4]]);
        assert_eq!(c.refused, 0);
    }

    #[test]
    fn a_chain_does_not_join_clearly_different_people() {
        // 0~1 and 1~2 are plausible, but 0 and 2 were compared: different.
        let different: HashSet<u64> = [pair_key(2, 0)].into();
        let c = cluster(
            3,
            &[e(0, 1, 0.9), e(1, 2, 0.8)],
            |a, b| different.contains(&pair_key(a, b)),
            Guard::default(),
        );
        assert_eq!(c.groups, vec![vec![0, 1]]);
        assert_eq!(c.refused, 1);
    }

    #[test]
    fn groups_stop_growing_at_the_size_limit() {
        let edges: Vec<Edge> = (0..9).map(|i| e(i, i + 1, 0.9)).collect();
        let guard = Guard {
            max_size: 4,
            ..Guard::default()
        };
        let c = cluster(10, &edges, none, guard);
        assert!(c.groups.iter().all(|g| g.len() <= 4), "{c:?}");
        assert!(c.refused > 0);
    }
}
