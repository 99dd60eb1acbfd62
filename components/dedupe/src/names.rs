//! Person names: the nickname table and the comparison of two names into one
//! level (exact, swapped, nickname, typo, phonetic, initial, ...).

use std::collections::HashMap;

/// The bundled nickname groups (`data/nicknames.txt`).
const BUNDLED: &str = include_str!("../data/nicknames.txt");

/// Nickname groups by member: each name maps to the groups it belongs to.
#[derive(Debug, Clone, Default)]
pub struct Nicknames {
    groups: HashMap<String, Vec<u32>>,
    formal: Vec<String>,
}

impl Nicknames {
    /// The bundled table plus the tenant's extra groups.
    pub fn new(extra: &[Vec<String>]) -> Nicknames {
        let mut n = Nicknames::default();
        let lines = BUNDLED
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>());
        for group in lines.chain(extra.iter().cloned()) {
            n.add(&group);
        }
        n
    }

    fn add(&mut self, group: &[String]) {
        let members: Vec<String> = group
            .iter()
            .filter_map(|name| crate::fold::token(name))
            .collect();
        let Some(first) = members.first() else { return };
        let id = self.formal.len() as u32;
        self.formal.push(first.clone());
        for m in members {
            let ids = self.groups.entry(m).or_default();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }

    /// Whether two folded first names share a group.
    pub fn equivalent(&self, a: &str, b: &str) -> bool {
        match (self.groups.get(a), self.groups.get(b)) {
            (Some(x), Some(y)) => x.iter().any(|g| y.contains(g)),
            _ => false,
        }
    }

    /// A canonical form for blocking: the formal name of the first group the
    /// name belongs to (so "bill" and "william" share blocking keys), else
    /// the name itself.
    pub fn canonical<'a>(&'a self, name: &'a str) -> &'a str {
        match self.groups.get(name).and_then(|g| g.first()) {
            Some(&id) => self.formal.get(id as usize).map_or(name, String::as_str),
            None => name,
        }
    }
}

/// A person's name, folded for comparison.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Name {
    /// First given name, folded to one token.
    pub first: Option<String>,
    /// Family name, folded to one token ("vanderberg").
    pub last: Option<String>,
    /// Whether the original was written in a non-Latin script.
    pub transliterated: bool,
}

impl Name {
    /// From first/last fields, falling back to splitting a full name.
    pub fn new(first: Option<&str>, last: Option<&str>, full: Option<&str>) -> Name {
        let transliterated = [first, last, full]
            .iter()
            .flatten()
            .any(|s| crate::fold::non_latin(s));
        let (mut f, mut l) = (
            first.and_then(crate::fold::words),
            last.and_then(crate::fold::token),
        );
        if (f.is_none() || l.is_none())
            && let Some(words) = full.and_then(crate::fold::words)
        {
            let parts: Vec<&str> = words.split(' ').collect();
            if let [only] = parts.as_slice() {
                if l.is_none() && f.is_none() {
                    l = Some((*only).to_string());
                }
            } else if let Some((last_word, rest)) = parts.split_last() {
                if f.is_none() {
                    f = rest.first().map(|s| (*s).to_string());
                }
                if l.is_none() {
                    l = Some((*last_word).to_string());
                }
            }
        }
        // Only the first given name takes part ("Mary Ann" → "mary").
        let f = f.and_then(|w| w.split(' ').next().map(str::to_string));
        Name {
            first: f,
            last: l,
            transliterated,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.first.is_none() && self.last.is_none()
    }
}

/// How two names compare, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Exact,
    Swapped,
    Nickname,
    Typo,
    Phonetic,
    Initial,
    /// Same family name, different given name: often a relative.
    LastOnly,
    /// Same given name, different family name: common, or a name change.
    FirstOnly,
    Different,
    Missing,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Exact => "exact",
            Level::Swapped => "swapped",
            Level::Nickname => "nickname",
            Level::Typo => "typo",
            Level::Phonetic => "phonetic",
            Level::Initial => "initial",
            Level::LastOnly => "last_only",
            Level::FirstOnly => "first_only",
            Level::Different => "different",
            Level::Missing => "missing",
        }
    }
}

/// Jaro-Winkler similarity above which two name parts are one typo apart.
const TYPO_JW: f64 = 0.9;

fn close(a: &str, b: &str) -> bool {
    a == b
        || strsim::jaro_winkler(a, b) >= TYPO_JW
        || (a.len() >= 4 && strsim::levenshtein(a, b) <= 1)
}

fn same_sound(a: &str, b: &str) -> bool {
    let (pa, pb) = (crate::fold::phonetic(a), crate::fold::phonetic(b));
    !pa.is_empty() && pa == pb
}

/// Compares two names. Returns the level, a similarity and a detail line
/// (empty unless `explain`).
pub fn compare(a: &Name, b: &Name, nick: &Nicknames, explain: bool) -> (Level, f64, String) {
    let (Some(la), Some(lb)) = (a.last.as_deref(), b.last.as_deref()) else {
        return (Level::Missing, 0.0, String::new());
    };
    let translit = if a.transliterated != b.transliterated {
        " (transliterated)"
    } else {
        ""
    };
    let (fa, fb) = match (a.first.as_deref(), b.first.as_deref()) {
        (Some(x), Some(y)) => (x, y),
        _ => {
            // Only family names to go on.
            let sim = strsim::jaro_winkler(la, lb);
            let level = if la == lb {
                Level::Initial
            } else if close(la, lb) {
                Level::Phonetic
            } else {
                Level::Different
            };
            let detail = if explain {
                format!("{la} ~ {lb} (family name only)")
            } else {
                String::new()
            };
            return (level, sim, detail);
        }
    };
    let sim = (strsim::jaro_winkler(fa, fb) + strsim::jaro_winkler(la, lb)) / 2.0;
    let detail = |what: &str| {
        if explain {
            format!("{fa} {la} ~ {fb} {lb} ({what}){translit}")
        } else {
            String::new()
        }
    };
    if fa == fb && la == lb {
        return (Level::Exact, 1.0, detail("exact"));
    }
    if fa == lb && la == fb {
        return (Level::Swapped, 1.0, detail("first and last swapped"));
    }
    let last_close = close(la, lb);
    if last_close && nick.equivalent(fa, fb) {
        return (Level::Nickname, sim, detail("nickname"));
    }
    if last_close && close(fa, fb) {
        return (Level::Typo, sim, detail("spelling variant"));
    }
    if close(fa, lb) && close(la, fb) {
        return (Level::Swapped, sim, detail("first and last swapped"));
    }
    if same_sound(fa, fb) && same_sound(la, lb) {
        return (Level::Phonetic, sim, detail("sound alike"));
    }
    let initial = |x: &str, y: &str| x.len() == 1 && y.starts_with(x);
    if last_close && (initial(fa, fb) || initial(fb, fa)) {
        return (Level::Initial, sim, detail("initial"));
    }
    if last_close {
        return (Level::LastOnly, sim, detail("same family name only"));
    }
    if fa == fb || nick.equivalent(fa, fb) {
        return (Level::FirstOnly, sim, detail("same given name only"));
    }
    (Level::Different, sim, detail("different"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(f: &str, l: &str) -> Name {
        Name::new(Some(f), Some(l), None)
    }

    fn level(a: &Name, b: &Name) -> Level {
        compare(a, b, &Nicknames::new(&[]), false).0
    }

    #[test]
    fn the_nickname_table_is_real() {
        let n = Nicknames::new(&[]);
        for (a, b) in [
            ("bill", "william"),
            ("bob", "robert"),
            ("liz", "elizabeth"),
            ("peggy", "margaret"),
            ("hans", "johannes"),
        ] {
            assert!(n.equivalent(a, b), "{a} ~ {b}");
        }
        assert!(!n.equivalent("bill", "robert"));
        assert_eq!(n.canonical("billy"), "william");
        assert_eq!(n.canonical("zebedee"), "zebedee");
        let extra = Nicknames::new(&[vec!["Wilhelmina".into(), "Mina".into()]]);
        assert!(extra.equivalent("mina", "wilhelmina"));
    }

    #[test]
    fn name_levels() {
        assert_eq!(
            level(&name("John", "Smith"), &name("JOHN", "smith")),
            Level::Exact
        );
        assert_eq!(
            level(&name("Smith", "John"), &name("John", "Smith")),
            Level::Swapped
        );
        assert_eq!(
            level(&name("Bill", "Gates"), &name("William", "Gates")),
            Level::Nickname
        );
        assert_eq!(
            level(&name("Jonh", "Smith"), &name("John", "Smith")),
            Level::Typo
        );
        assert_eq!(
            level(&name("J", "Smith"), &name("John", "Smith")),
            Level::Initial
        );
        assert_eq!(
            level(&name("Mary", "Smith"), &name("John", "Smith")),
            Level::LastOnly
        );
        assert_eq!(
            level(&name("John", "Brown"), &name("John", "Smith")),
            Level::FirstOnly
        );
        assert_eq!(
            level(&name("Anna", "Kowalski"), &name("Liam", "Nguyen")),
            Level::Different
        );
        assert_eq!(
            level(&Name::default(), &name("John", "Smith")),
            Level::Missing
        );
    }

    #[test]
    fn non_latin_names_meet_their_transliteration() {
        let (l, _, detail) = compare(
            &name("Иван", "Петров"),
            &name("Ivan", "Petrov"),
            &Nicknames::new(&[]),
            true,
        );
        assert_eq!(l, Level::Exact);
        assert!(detail.contains("transliterated"), "{detail}");
        assert_eq!(
            level(
                &name("Γιώργος", "Παπαδόπουλος"),
                &name("Giorgos", "Papadopoulos")
            ),
            Level::Exact
        );
    }

    #[test]
    fn full_names_are_split_when_parts_are_missing() {
        let n = Name::new(None, None, Some("Mary Ann van der Berg"));
        assert_eq!(n.first.as_deref(), Some("mary"));
        assert_eq!(n.last.as_deref(), Some("berg"));
        let n = Name::new(Some("Mary Ann"), Some("van der Berg"), None);
        assert_eq!(n.last.as_deref(), Some("vanderberg"));
    }
}
