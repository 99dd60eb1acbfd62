//! What becomes of an alert: the routes it takes and the group it joins
//! there, its fingerprint (the dedup key), whether an active alert inhibits
//! it or a silence mutes it, and when quiet hours end.

use crate::config::{AlertsConfig, Route};
use jiff::Timestamp;
use leadgate_routing::Hours;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// An alert as the notifier sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: i64,
    pub kind: String,
    /// `kind` and `lead` always; `rep`, `team`, `grade` … where known.
    pub labels: BTreeMap<String, String>,
    pub message: String,
    pub created_at: i64,
    /// Active until (inhibition); resolved alerts end early.
    pub ends_at: i64,
}

/// One label's condition: `value` (equal), `!value` (not equal),
/// `prefix*` / `*suffix` / `*part*` (a wildcard), `!` before a wildcard
/// to negate it. A label the alert lacks is the empty string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    text: String,
    negate: bool,
    pattern: String,
}

impl Matcher {
    pub fn parse(text: &str) -> Result<Matcher, String> {
        let (negate, pattern) = match text.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let inner = pattern.trim_start_matches('*').trim_end_matches('*');
        if inner.contains('*') {
            return Err(format!(
                "{text:?}: a wildcard goes at the start or the end of a value"
            ));
        }
        Ok(Matcher {
            text: text.to_string(),
            negate,
            pattern: pattern.to_string(),
        })
    }

    pub fn matches(&self, value: &str) -> bool {
        let p = self.pattern.as_str();
        let hit = match (p.strip_prefix('*'), p.strip_suffix('*')) {
            _ if p == "*" => true,
            (Some(rest), _) if rest.ends_with('*') => value.contains(&rest[..rest.len() - 1]),
            (Some(suffix), _) => value.ends_with(suffix),
            (None, Some(prefix)) => value.starts_with(prefix),
            (None, None) => value == p,
        };
        hit != self.negate
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl Serialize for Matcher {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Matcher::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Label name → matcher; all must hold.
pub type Matchers = BTreeMap<String, Matcher>;

pub fn matches(m: &Matchers, labels: &BTreeMap<String, String>) -> bool {
    m.iter()
        .all(|(k, v)| v.matches(labels.get(k).map_or("", String::as_str)))
}

/// Refuses label names that are not names.
pub fn check_matchers(m: &Matchers) -> Result<(), String> {
    for k in m.keys() {
        if k.is_empty()
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return Err(format!(
                "{k:?} is not a label name (letters, digits, '_', '.')"
            ));
        }
    }
    Ok(())
}

/// An alert's identity: a hash of its sorted labels (not its message or
/// time), so the same condition raised twice is one alert to the notifier.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (k, v) in labels {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A muting of every alert its matchers match, from `starts_at` to
/// `ends_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: i64,
    pub matchers: Matchers,
    pub starts_at: i64,
    pub ends_at: i64,
    pub comment: String,
    pub created_by: String,
}

impl Silence {
    pub fn mutes(&self, alert: &Alert, now: i64) -> bool {
        (self.starts_at..self.ends_at).contains(&now) && matches(&self.matchers, &alert.labels)
    }
}

/// One route an alert takes to one destination, and its group there.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteMatch {
    pub route: usize,
    pub route_name: String,
    pub destination: String,
    /// The values of the route's `group_by` labels, as `k=v,k=v`.
    pub group_key: String,
}

pub(crate) fn route_name(r: &Route, i: usize) -> String {
    r.name.clone().unwrap_or_else(|| format!("route-{}", i + 1))
}

/// `[alerts]` compiled: the routes' quiet hours parsed.
#[derive(Debug, Clone)]
pub struct Policy {
    pub config: AlertsConfig,
    quiet: Vec<Option<(Hours, jiff::tz::TimeZone)>>,
}

impl Policy {
    pub fn new(config: &AlertsConfig) -> Result<Policy, crate::NotifyError> {
        config.check()?;
        let mut quiet = Vec::new();
        for (i, r) in config.routes.iter().enumerate() {
            quiet.push(match &r.quiet_hours {
                None => None,
                Some(q) => {
                    let hours = Hours::parse(q).map_err(|e| {
                        crate::NotifyError::new(format!("alerts.routes[{i}].quiet_hours"), e)
                    })?;
                    let tz = match &r.timezone {
                        Some(name) => jiff::tz::TimeZone::get(name).map_err(|e| {
                            crate::NotifyError::new(
                                format!("alerts.routes[{i}].timezone"),
                                e.to_string(),
                            )
                        })?,
                        None => jiff::tz::TimeZone::UTC,
                    };
                    Some((hours, tz))
                }
            });
        }
        Ok(Policy {
            config: config.clone(),
            quiet,
        })
    }

    pub fn route(&self, i: usize) -> Option<&Route> {
        self.config.routes.get(i)
    }

    /// The route index named `name`.
    pub fn route_index(&self, name: &str) -> Option<usize> {
        self.config
            .routes
            .iter()
            .enumerate()
            .position(|(i, r)| route_name(r, i) == name)
    }

    /// The routes `alert` takes, in order (the first match, and after it
    /// further matches while a matched route says `continue`), one entry
    /// per destination.
    pub fn routes_for(&self, alert: &Alert) -> Vec<RouteMatch> {
        let mut out = Vec::new();
        for (i, r) in self.config.routes.iter().enumerate() {
            if !matches(&r.matchers, &alert.labels) {
                continue;
            }
            let by = r.group_by();
            let group_key = if by.iter().any(|b| b == "...") {
                let mut all: Vec<String> = alert
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                all.sort();
                all.join(",")
            } else {
                by.iter()
                    .map(|k| format!("{k}={}", alert.labels.get(k).map_or("", String::as_str)))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            for d in &r.to {
                out.push(RouteMatch {
                    route: i,
                    route_name: route_name(r, i),
                    destination: d.clone(),
                    group_key: group_key.clone(),
                });
            }
            if !r.continue_matching {
                break;
            }
        }
        out
    }

    /// The first of `active` that inhibits `target` (a different alert,
    /// active at `now`, matching an inhibition's source where `target`
    /// matches its target, with the same `equal` labels).
    pub fn inhibitor<'a>(
        &self,
        target: &Alert,
        active: &'a [Alert],
        now: i64,
    ) -> Option<&'a Alert> {
        self.config.inhibit.iter().find_map(|rule| {
            if !matches(&rule.target, &target.labels) {
                return None;
            }
            active.iter().find(|src| {
                src.id != target.id
                    && src.ends_at > now
                    && src.created_at <= now
                    && matches(&rule.source, &src.labels)
                    && rule
                        .equal
                        .iter()
                        .all(|k| src.labels.get(k) == target.labels.get(k))
            })
        })
    }

    /// Whether any inhibition rule's target matches `alert` (so that the
    /// active alerts are worth reading).
    pub fn may_be_inhibited(&self, alert: &Alert) -> bool {
        self.config
            .inhibit
            .iter()
            .any(|r| matches(&r.target, &alert.labels))
    }

    /// Whether every inhibition rule compares the `lead` label, so that
    /// only the alert's own lead's alerts can inhibit it.
    pub fn inhibition_by_lead(&self) -> bool {
        self.config
            .inhibit
            .iter()
            .all(|r| r.equal.iter().any(|e| e == "lead"))
    }

    /// When route `i`'s quiet hours end, if `now` is within them.
    pub fn quiet_until(&self, i: usize, now: i64) -> Option<i64> {
        let (hours, tz) = self.quiet.get(i)?.as_ref()?;
        let quiet = |ms: i64| -> bool {
            Timestamp::from_millisecond(ms)
                .map(|t| {
                    let z = t.to_zoned(tz.clone());
                    let minute = u16::try_from(i32::from(z.hour()) * 60 + i32::from(z.minute()))
                        .unwrap_or(0);
                    hours.contains(z.weekday(), minute)
                })
                .unwrap_or(false)
        };
        if !quiet(now) {
            return None;
        }
        // The next whole minute outside, within eight days.
        let mut t = now - now.rem_euclid(60_000) + 60_000;
        for _ in 0..(8 * 24 * 60) {
            if !quiet(t) {
                return Some(t);
            }
            t += 60_000;
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn matchers() {
        let m = |t: &str, v: &str| Matcher::parse(t).unwrap().matches(v);
        assert!(m("routing.*", "routing.queued"));
        assert!(!m("routing.*", "review.escalated"));
        assert!(m("*.dead", "handoff.dead"));
        assert!(m("*sla*", "routing.sla_breach"));
        assert!(m("!emea", "na"));
        assert!(!m("!emea", "emea"));
        assert!(m("!routing.*", "lead.hot"));
        assert!(m("", ""));
        assert!(!m("x", ""));
        assert!(Matcher::parse("a*b").is_err());
    }

    #[test]
    fn fingerprints_ignore_order_and_see_values() {
        let a: BTreeMap<String, String> = [("kind", "x"), ("lead", "1")]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let mut b = a.clone();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        b.insert("lead".into(), "2".into());
        assert_ne!(fingerprint(&a), fingerprint(&b));
        // A label and value cannot be shifted into each other.
        let c: BTreeMap<String, String> = [("ab".to_string(), "c".to_string())].into();
        let d: BTreeMap<String, String> = [("a".to_string(), "bc".to_string())].into();
        assert_ne!(fingerprint(&c), fingerprint(&d));
    }
}
