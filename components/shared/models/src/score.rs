//! A calibrated conversion model over a lead's values, as `leadgate
//! calibrate` writes it (`model.toml`) and the scorer applies it: logistic
//! regression (version 1), or gradient-boosted trees (version 2, a `boost`
//! section). Trees are data here: the scorer walks them, it never trains.
//!
//! Each feature reads one named value of the lead (a lead field, an
//! enrichment attribute, a custom column, or `events.KIND` / `score.fit`,
//! `score.engagement`, `score.intent`) and encodes it:
//!
//! - `number`: clipped to `[lo, hi]`, optionally `log1p`, then
//!   standardized with `center` and `scale`; a missing value counts as the
//!   center;
//! - `level`: 1 when the value equals `level` (case-insensitive), else 0;
//! - `missing`: 1 when the value is absent;
//! - `other`: 1 when the value is present but none of `levels` (the rare
//!   values of a category, pooled).
//!
//! A value listed in the model's `placeholders` (`Select`, `N/A`, …: a form
//! default that means "not answered") counts as absent.
//!
//! `mean` is the feature's average over the training rows, so each value's
//! contribution can be told against the average lead. With trees, a
//! feature's contribution is the change in the tree's value along the path
//! at that feature's splits (Saabas), summed over the trees and scaled by the
//! calibration's slope: contributions and the base add up to the log-odds.

use serde::{Deserialize, Serialize};

/// The model file format's version: 1 for logistic regression, 2 for a
/// model with trees.
pub const VERSION: u32 = 1;
/// The version of a model with a `boost` section.
pub const BOOSTED_VERSION: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    pub version: u32,
    /// The outcome column it was fitted on.
    pub outcome: String,
    pub intercept: f64,
    pub features: Vec<Feature>,
    /// Values that mean "not answered", compared trimmed and without case.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placeholders: Vec<String>,
    /// Gradient-boosted trees over the features (their weights unused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boost: Option<Boost>,
    /// How it was fitted and how it did on held-out rows (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fitted: Option<Fitted>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fitted {
    pub rows: u64,
    pub positives: u64,
    pub holdout_rows: u64,
    pub l2: f64,
    pub roc_auc: f64,
    pub pr_auc: f64,
    pub brier: f64,
    /// `logistic` or `gbt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_type: Option<String>,
}

/// Gradient-boosted trees: the log-odds are `base` plus the leaf value of
/// each tree, then calibrated (Platt): `p = σ(slope · margin + offset)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Boost {
    pub base: f64,
    pub slope: f64,
    pub offset: f64,
    pub trees: Vec<Tree>,
    /// The trees laid out for walking, made on first use (see [`Flat`]).
    #[serde(skip)]
    pub flat: std::sync::OnceLock<Option<Flat>>,
}

/// Every tree's nodes in one array of 16-byte nodes, so that a model of
/// hundreds of trees stays in the processor's cache: the threshold, the
/// value as `f32` (the trainer's own precision), and in one word the
/// feature, where a missing value goes, whether it is a leaf, and the left
/// child's distance (the right child follows it). A leaf points at itself
/// (distance 0, a NaN threshold no value reaches), so trees are walked in
/// groups of [`GROUP`] for as many steps as the group's deepest tree,
/// without a branch on where each tree is. Trees that do not fit this form
/// (a value that is not an `f32`, a child not beside its sibling) are
/// walked as they are written instead.
#[derive(Debug, Clone, PartialEq)]
pub struct Flat {
    nodes: Vec<FlatNode>,
    roots: Vec<u32>,
    /// Per group of [`GROUP`] trees, its deepest tree's depth.
    depths: Vec<u32>,
}

/// Trees walked side by side: their next nodes are independent loads.
const GROUP: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq)]
struct FlatNode {
    threshold: f64,
    value: f32,
    /// Bits 0–15 feature, 16–17 missing (0 left, 1 right, 2 two after the
    /// left), 18 leaf, 19–31 the left child's distance from this node.
    meta: u32,
}

const LEAF: u32 = 1 << 18;

/// One step of a tree walk.
enum Step {
    /// The tree's output.
    Leaf(f64),
    /// On to `next`; `change` is the value of `next` less that of this
    /// node, credited to `feature`.
    Split {
        feature: usize,
        next: u32,
        change: f64,
    },
}

impl Flat {
    fn of(trees: &[Tree]) -> Option<Flat> {
        let mut nodes = Vec::new();
        let mut roots = Vec::with_capacity(trees.len());
        let mut depths = Vec::with_capacity(trees.len().div_ceil(GROUP));
        for (t, tree) in trees.iter().enumerate() {
            let start = u32::try_from(nodes.len()).ok()?;
            roots.push(start);
            // Children come after their parent: one pass finds the depths.
            let mut depth = vec![0u32; tree.nodes.len()];
            let mut deepest = 0;
            for (n, node) in tree.nodes.iter().enumerate() {
                let value = node.value as f32;
                if f64::from(value) != node.value {
                    return None;
                }
                let d = depth.get(n).copied()?;
                deepest = deepest.max(d);
                if node.leaf {
                    nodes.push(FlatNode {
                        threshold: f64::NAN,
                        value,
                        meta: LEAF,
                    });
                    continue;
                }
                for child in [node.left, node.right, node.missing] {
                    let c = depth.get_mut(child as usize)?;
                    *c = (*c).max(d + 1);
                }
                let (left, right, missing) = (
                    node.left as usize,
                    node.right as usize,
                    node.missing as usize,
                );
                let distance = u32::try_from(left.checked_sub(n)?).ok()?;
                let missing = match missing {
                    m if m == left => 0,
                    m if m == right => 1,
                    m if m == left + 2 => 2,
                    _ => return None,
                };
                if right != left + 1 || node.feature > 0xFFFF || distance >= 1 << 13 {
                    return None;
                }
                nodes.push(FlatNode {
                    threshold: node.threshold,
                    value,
                    meta: node.feature | (missing << 16) | (distance << 19),
                });
            }
            if t % GROUP == 0 {
                depths.push(deepest);
            } else if let Some(d) = depths.last_mut() {
                *d = (*d).max(deepest);
            }
        }
        Some(Flat {
            nodes,
            roots,
            depths,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tree {
    /// Node 0 is the root.
    pub nodes: Vec<Node>,
}

/// A tree node. An inner node sends a feature value below `threshold` to
/// `left`, the others to `right`, and a missing number to `missing`; a
/// leaf (`leaf = true`) ends the walk. `value` is the node's output (for a
/// leaf, what it adds to the log-odds; for an inner node, what the tree
/// would add if it stopped there).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub value: f64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub leaf: bool,
    /// Index into the model's `features`.
    #[serde(default)]
    pub feature: u32,
    #[serde(default)]
    pub threshold: f64,
    #[serde(default)]
    pub left: u32,
    #[serde(default)]
    pub right: u32,
    #[serde(default)]
    pub missing: u32,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Number,
    Level,
    Missing,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transform {
    #[default]
    None,
    Log1p,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Feature {
    /// The value it reads.
    pub name: String,
    pub kind: Kind,
    /// For `level`: the value it indicates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// For `other`: the values it does not indicate (the common ones).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub levels: Vec<String>,
    #[serde(default, skip_serializing_if = "is_none_transform")]
    pub transform: Transform,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lo: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hi: Option<f64>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub center: f64,
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub scale: f64,
    /// The feature's training average.
    #[serde(default)]
    pub mean: f64,
    pub weight: f64,
}

fn is_none_transform(t: &Transform) -> bool {
    *t == Transform::None
}
fn is_zero(x: &f64) -> bool {
    *x == 0.0
}
fn is_one(x: &f64) -> bool {
    *x == 1.0
}
fn one() -> f64 {
    1.0
}

/// A model that cannot be used, naming the feature.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    #[error(
        "model version {0} is not supported here (this scorer reads version {VERSION}, and {BOOSTED_VERSION} for a model with a `boost` section)"
    )]
    Version(u32),
    #[error("model feature {index} (`{name}`): {reason}")]
    Feature {
        index: usize,
        name: String,
        reason: String,
    },
    #[error("model intercept must be a finite number")]
    Intercept,
    #[error("model tree {tree}, node {node}: {reason}")]
    Tree {
        tree: usize,
        node: usize,
        reason: String,
    },
    #[error("model boost: {0}")]
    Boost(String),
}

impl Feature {
    /// The feature's value for a lead whose value is `v`.
    pub fn encode(&self, v: Option<&str>) -> f64 {
        match self.kind {
            Kind::Missing => f64::from(u8::from(v.is_none())),
            Kind::Level => match (v, &self.level) {
                (Some(v), Some(level)) => f64::from(u8::from(v.trim().eq_ignore_ascii_case(level))),
                _ => 0.0,
            },
            Kind::Other => match v {
                Some(v) => {
                    let v = v.trim();
                    f64::from(u8::from(
                        !self.levels.iter().any(|l| v.eq_ignore_ascii_case(l)),
                    ))
                }
                None => 0.0,
            },
            Kind::Number => match v.and_then(parse_number) {
                None => 0.0,
                Some(x) => (self.transformed(x) - self.center) / self.scale,
            },
        }
    }

    /// The feature's input to a tree: as [`Feature::encode`], except that
    /// a number that is missing stays missing (NaN), so a tree can send
    /// it its own way.
    pub fn tree_input(&self, v: Option<&str>) -> f64 {
        match self.kind {
            Kind::Number if v.and_then(parse_number).is_none() => f64::NAN,
            _ => self.encode(v),
        }
    }

    /// Clipping and the transform, before standardizing.
    pub fn transformed(&self, x: f64) -> f64 {
        let x = match (self.lo, self.hi) {
            (Some(lo), Some(hi)) if lo <= hi => x.clamp(lo, hi),
            (Some(lo), None) => x.max(lo),
            (None, Some(hi)) => x.min(hi),
            _ => x,
        };
        match self.transform {
            Transform::None => x,
            Transform::Log1p => x.max(0.0).ln_1p(),
        }
    }
}

/// A number as history exports write them: `12`, `3.5`, ` 1,200 `, `40%`.
pub fn parse_number(s: &str) -> Option<f64> {
    let t = s.trim().trim_end_matches('%');
    if t.is_empty() {
        return None;
    }
    let x: f64 =
        if t.contains(',') && !t.contains('.') && t.split(',').skip(1).all(|g| g.len() == 3) {
            t.replace(',', "").parse().ok()?
        } else {
            t.parse().ok()?
        };
    x.is_finite().then_some(x)
}

/// One value's share of a lead's log-odds, against the average lead.
#[derive(Debug, Clone, PartialEq)]
pub struct Contribution<'a> {
    pub name: &'a str,
    pub log_odds: f64,
}

impl Model {
    /// Refuses a model that could not score: wrong version, non-finite
    /// numbers, a level feature without its level, a zero scale.
    pub fn check(&self) -> Result<(), ModelError> {
        let expected = if self.boost.is_some() {
            BOOSTED_VERSION
        } else {
            VERSION
        };
        if self.version != expected {
            return Err(ModelError::Version(self.version));
        }
        if let Some(b) = &self.boost {
            b.check(self.features.len())?;
        }
        if !self.intercept.is_finite() {
            return Err(ModelError::Intercept);
        }
        for (index, f) in self.features.iter().enumerate() {
            let bad = |reason: &str| ModelError::Feature {
                index,
                name: f.name.clone(),
                reason: reason.to_string(),
            };
            if f.name.trim().is_empty() {
                return Err(bad("the name is empty"));
            }
            if ![f.weight, f.center, f.scale, f.mean]
                .iter()
                .all(|x| x.is_finite())
            {
                return Err(bad("weight, center, scale and mean must be finite numbers"));
            }
            if f.scale <= 0.0 {
                return Err(bad("scale must be positive"));
            }
            if f.kind == Kind::Level && f.level.is_none() {
                return Err(bad("a `level` feature needs `level`"));
            }
            if f.kind == Kind::Other && f.levels.is_empty() {
                return Err(bad("an `other` feature needs `levels`"));
            }
        }
        Ok(())
    }

    /// Whether `v` means "not answered".
    pub fn is_placeholder(&self, v: &str) -> bool {
        let v = v.trim();
        self.placeholders.iter().any(|p| v.eq_ignore_ascii_case(p))
    }

    /// The conversion probability and each value's contribution (features
    /// reading the same value summed), largest first. `value` answers a
    /// value by name.
    pub fn explain<'m, 'v>(
        &'m self,
        value: impl Fn(&str) -> Option<std::borrow::Cow<'v, str>>,
    ) -> (f64, Vec<Contribution<'m>>) {
        let value = |name: &str| value(name).filter(|v| !self.is_placeholder(v));
        if let Some(boost) = &self.boost {
            return self.explain_boosted(boost, value);
        }
        let mut z = self.intercept;
        let mut parts: Vec<Contribution<'m>> = Vec::new();
        let mut last: Option<(&str, Option<std::borrow::Cow<'v, str>>)> = None;
        for f in &self.features {
            // Features of one value are written together: look it up once.
            let v = match &last {
                Some((name, v)) if *name == f.name => v.clone(),
                _ => {
                    let v = value(&f.name);
                    last = Some((&f.name, v.clone()));
                    v
                }
            };
            let x = f.encode(v.as_deref());
            z += f.weight * x;
            let c = f.weight * (x - f.mean);
            match parts.last_mut() {
                Some(p) if p.name == f.name => p.log_odds += c,
                _ => parts.push(Contribution {
                    name: &f.name,
                    log_odds: c,
                }),
            }
        }
        parts.sort_by(|a, b| b.log_odds.abs().total_cmp(&a.log_odds.abs()));
        (sigmoid(z), parts)
    }

    /// Every feature's tree input for a lead.
    pub fn tree_inputs<'v>(
        &self,
        value: impl Fn(&str) -> Option<std::borrow::Cow<'v, str>>,
    ) -> Vec<f64> {
        let mut last: Option<(&str, Option<std::borrow::Cow<'v, str>>)> = None;
        self.features
            .iter()
            .map(|f| {
                let v = match &last {
                    Some((name, v)) if *name == f.name => v.clone(),
                    _ => {
                        let v = value(&f.name);
                        last = Some((&f.name, v.clone()));
                        v
                    }
                };
                f.tree_input(v.as_deref())
            })
            .collect()
    }

    fn explain_boosted<'m, 'v>(
        &'m self,
        boost: &Boost,
        value: impl Fn(&str) -> Option<std::borrow::Cow<'v, str>>,
    ) -> (f64, Vec<Contribution<'m>>) {
        let x = self.tree_inputs(value);
        let mut by_feature = vec![0.0; self.features.len()];
        let margin = boost.margin(&x, Some(&mut by_feature));
        let mut parts: Vec<Contribution<'m>> = Vec::new();
        // Features of one value are written together.
        for (f, c) in self.features.iter().zip(by_feature) {
            let c = boost.slope * c;
            match parts.last_mut() {
                Some(p) if p.name == f.name => p.log_odds += c,
                _ => parts.push(Contribution {
                    name: &f.name,
                    log_odds: c,
                }),
            }
        }
        parts.sort_by(|a, b| b.log_odds.abs().total_cmp(&a.log_odds.abs()));
        (boost.probability(margin), parts)
    }
}

impl Boost {
    /// The uncalibrated log-odds of inputs `x` (one per feature); with
    /// `contributions`, each feature's share of the change from the trees'
    /// root values is added to it.
    pub fn margin(&self, x: &[f64], contributions: Option<&mut [f64]>) -> f64 {
        match self.flat.get_or_init(|| Flat::of(&self.trees)) {
            Some(flat) => self.margin_flat(flat, x, contributions),
            None => self.margin_as_written(x, contributions),
        }
    }

    /// [`Boost::margin`] over the compact layout: [`GROUP`] trees at a
    /// time, each step moving every tree of the group one node down (a
    /// tree at its leaf stays there, and its step credits nothing). The
    /// leaves are added in tree order, as the trainer adds them.
    fn margin_flat(&self, flat: &Flat, x: &[f64], mut contributions: Option<&mut [f64]>) -> f64 {
        let nodes = flat.nodes.as_slice();
        let mut z = self.base;
        for (roots, &depth) in flat.roots.chunks(GROUP).zip(&flat.depths) {
            let mut at = [0usize; GROUP];
            let at = &mut at[..roots.len()];
            for (a, r) in at.iter_mut().zip(roots) {
                *a = *r as usize;
            }
            for _ in 0..depth {
                for a in at.iter_mut() {
                    // `Flat::of` and `check` keep every index in range; a
                    // node that is not stays where it is.
                    let Some(node) = nodes.get(*a) else { continue };
                    let feature = (node.meta & 0xFFFF) as usize;
                    let left = *a + (node.meta >> 19) as usize;
                    let v = x.get(feature).copied().unwrap_or(f64::NAN);
                    let go = if v.is_nan() {
                        (node.meta >> 16 & 3) as usize
                    } else {
                        usize::from(v >= node.threshold)
                    };
                    let next = left + go;
                    if let (Some(c), Some(n)) = (contributions.as_deref_mut(), nodes.get(next)) {
                        if let Some(c) = c.get_mut(feature) {
                            *c += f64::from(n.value) - f64::from(node.value);
                        }
                        *a = next;
                    } else if next < nodes.len() {
                        *a = next;
                    }
                }
            }
            for a in at.iter() {
                z += nodes.get(*a).map_or(0.0, |n| f64::from(n.value));
            }
        }
        z
    }

    /// [`Boost::margin`] over the trees as written (the compact layout's
    /// fallback, and its check), one node at a time.
    pub fn margin_as_written(&self, x: &[f64], contributions: Option<&mut [f64]>) -> f64 {
        self.walk(contributions, |t, at| {
            let nodes = &self.trees.get(t)?.nodes;
            let node = nodes.get(at as usize)?;
            if node.leaf {
                return Some(Step::Leaf(node.value));
            }
            let feature = node.feature as usize;
            let v = x.get(feature).copied().unwrap_or(f64::NAN);
            let next = if v.is_nan() {
                node.missing
            } else if v < node.threshold {
                node.left
            } else {
                node.right
            };
            let change = nodes
                .get(next as usize)
                .map_or(0.0, |c| c.value - node.value);
            Some(Step::Split {
                feature,
                next,
                change,
            })
        })
    }

    /// Walks every tree from its root, in the order of
    /// [`Boost::margin_flat`] (so contributions are summed in the same
    /// order): [`GROUP`] trees at a time, a level at a time. `step` answers
    /// tree `t`'s node `at`; `None` ends that tree with nothing (`check`
    /// guarantees it does not happen).
    fn walk(
        &self,
        mut contributions: Option<&mut [f64]>,
        step: impl Fn(usize, u32) -> Option<Step>,
    ) -> f64 {
        const DONE: u32 = u32::MAX;
        let mut leaves: Vec<f64> = vec![0.0; self.trees.len()];
        for (g, group) in leaves.chunks_mut(GROUP).enumerate() {
            let mut at = [0u32; GROUP];
            let at = &mut at[..group.len()];
            let mut active = at.len();
            while active > 0 {
                active = 0;
                for (i, (slot, leaf)) in at.iter_mut().zip(group.iter_mut()).enumerate() {
                    if *slot == DONE {
                        continue;
                    }
                    match step(g * GROUP + i, *slot) {
                        None => *slot = DONE,
                        Some(Step::Leaf(v)) => {
                            *leaf = v;
                            *slot = DONE;
                        }
                        Some(Step::Split {
                            feature,
                            next,
                            change,
                        }) => {
                            if let Some(c) = contributions
                                .as_deref_mut()
                                .and_then(|c| c.get_mut(feature))
                            {
                                *c += change;
                            }
                            *slot = next;
                            active += 1;
                        }
                    }
                }
            }
        }
        // Leaf values are added in tree order, as the trainer adds them.
        leaves.iter().fold(self.base, |z, l| z + l)
    }

    /// The calibrated probability of a margin.
    pub fn probability(&self, margin: f64) -> f64 {
        sigmoid(self.slope * margin + self.offset)
    }

    /// Refuses trees a walk could not finish: a child out of range or not
    /// after its parent (a loop), a feature out of range, a non-finite
    /// number.
    pub fn check(&self, features: usize) -> Result<(), ModelError> {
        if ![self.base, self.slope, self.offset]
            .iter()
            .all(|x| x.is_finite())
        {
            return Err(ModelError::Boost(
                "base, slope and offset must be finite numbers".into(),
            ));
        }
        for (t, tree) in self.trees.iter().enumerate() {
            if tree.nodes.is_empty() {
                return Err(ModelError::Tree {
                    tree: t,
                    node: 0,
                    reason: "the tree has no nodes".into(),
                });
            }
            for (n, node) in tree.nodes.iter().enumerate() {
                let bad = |reason: String| ModelError::Tree {
                    tree: t,
                    node: n,
                    reason,
                };
                if !node.value.is_finite() {
                    return Err(bad("value must be a finite number".into()));
                }
                if node.leaf {
                    continue;
                }
                if node.feature as usize >= features {
                    return Err(bad(format!(
                        "feature {} is out of range ({features} features)",
                        node.feature
                    )));
                }
                if node.threshold.is_nan() {
                    return Err(bad("threshold must be a number".into()));
                }
                for child in [node.left, node.right, node.missing] {
                    let c = child as usize;
                    if c <= n || c >= tree.nodes.len() {
                        return Err(bad(format!(
                            "child {child} must come after the node and within the tree's {} nodes",
                            tree.nodes.len()
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

/// The logistic function, stable for large |z|.
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}
