//! Person names: the nickname table and the comparison of two names, given
//! name and family name each into a level (exact, swapped, nickname, one
//! edit, sounds alike, similar, initial, different).

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
    /// All given-name words as one token, when there are several: "soph
    /// ie" (a space typed into "sophie") is compared as "sophie" too.
    pub first_joined: Option<String>,
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
        // The first given name takes part ("Mary Ann" → "mary"), and all of
        // them run together.
        let first_joined = f
            .as_deref()
            .filter(|w| w.contains(' '))
            .map(|w| w.replace(' ', ""));
        let f = f.and_then(|w| w.split(' ').next().map(str::to_string));
        Name {
            first: f,
            first_joined,
            last: l,
            transliterated,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.first.is_none() && self.last.is_none()
    }
}

/// How one part of two names (the given names, or the family names)
/// compares, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Exact,
    /// Given name and family name written the other way round.
    Swapped,
    /// Given names of one nickname group ("Bill" and "William").
    Nickname,
    /// One edit apart: a letter replaced, added, dropped, or two swapped.
    OneEdit,
    /// The same Double Metaphone code ("Smyth", "Smith").
    SoundsAlike,
    /// Jaro–Winkler similarity at or above [`SIMILAR_JW`].
    Similar,
    /// One given name is the other's initial.
    Initial,
    Different,
    Missing,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Exact => "exact",
            Level::Swapped => "swapped",
            Level::Nickname => "nickname",
            Level::OneEdit => "one_edit",
            Level::SoundsAlike => "sounds_alike",
            Level::Similar => "similar",
            Level::Initial => "initial",
            Level::Different => "different",
            Level::Missing => "missing",
        }
    }
}

/// Jaro–Winkler similarity from which two name parts are `similar`.
pub const SIMILAR_JW: f64 = 0.88;

/// Damerau–Levenshtein distance of at most one (optimal string alignment:
/// adjacent transposition counts once), for names long enough that one
/// edit still says little about a different name.
pub fn one_edit(a: &str, b: &str) -> bool {
    a.len() >= 3 && b.len() >= 3 && strsim::osa_distance(a, b) <= 1
}

fn close(a: &str, b: &str) -> bool {
    a == b || one_edit(a, b) || strsim::jaro_winkler(a, b) >= SIMILAR_JW
}

fn same_sound(a: &str, b: &str) -> bool {
    let (pa, pb) = (crate::fold::phonetic(a), crate::fold::phonetic(b));
    !pa.is_empty() && pa == pb
}

/// One name part compared; `nick` for given names.
fn part(a: &str, b: &str, nick: Option<&Nicknames>) -> Level {
    let initial = |x: &str, y: &str| x.len() == 1 && y.starts_with(x);
    if a == b {
        Level::Exact
    } else if nick.is_some_and(|n| n.equivalent(a, b)) {
        Level::Nickname
    } else if one_edit(a, b) {
        Level::OneEdit
    } else if same_sound(a, b) {
        Level::SoundsAlike
    } else if strsim::jaro_winkler(a, b) >= SIMILAR_JW {
        Level::Similar
    } else if nick.is_some() && (initial(a, b) || initial(b, a)) {
        Level::Initial
    } else {
        Level::Different
    }
}

/// How two names compared: one level for the given names, one for the
/// family names, each with its Jaro–Winkler similarity.
#[derive(Debug, Clone, PartialEq)]
pub struct Compared {
    pub first: (Level, f64),
    pub last: (Level, f64),
    /// `a ~ b (level)`; empty unless asked for.
    pub first_detail: String,
    pub last_detail: String,
}

/// Compares two names part by part. Written the other way round ("Smith
/// John"), both parts are `swapped`; a part either side lacks is `missing`.
pub fn compare(a: &Name, b: &Name, nick: &Nicknames, explain: bool) -> Compared {
    let translit = if a.transliterated != b.transliterated {
        ", transliterated"
    } else {
        ""
    };
    let say = |x: &str, y: &str, level: Level| {
        if explain {
            format!("{x} ~ {y} ({}{translit})", level.as_str().replace('_', " "))
        } else {
            String::new()
        }
    };
    let (fa, fb, la, lb) = (
        a.first.as_deref(),
        b.first.as_deref(),
        a.last.as_deref(),
        b.last.as_deref(),
    );
    // A family name of several words written as the given name ("van
    // groesen" / "chelsea") is compared whole.
    let (wa, wb) = (
        a.first_joined.as_deref().or(fa),
        b.first_joined.as_deref().or(fb),
    );
    if let (Some(fa), Some(fb), Some(la), Some(lb), Some(wa), Some(wb)) = (fa, fb, la, lb, wa, wb)
        && (close(fa, lb) || close(wa, lb))
        && (close(la, fb) || close(la, wb))
        && !(close(fa, fb) && close(la, lb))
    {
        return Compared {
            first: (Level::Swapped, strsim::jaro_winkler(fa, lb)),
            last: (Level::Swapped, strsim::jaro_winkler(la, fb)),
            first_detail: say(fa, fb, Level::Swapped),
            last_detail: say(la, lb, Level::Swapped),
        };
    }
    let one = |x: Option<&str>, y: Option<&str>, nick: Option<&Nicknames>| match (x, y) {
        (Some(x), Some(y)) => {
            let level = part(x, y, nick);
            ((level, strsim::jaro_winkler(x, y)), say(x, y, level))
        }
        _ => ((Level::Missing, 0.0), String::new()),
    };
    let (mut first, mut first_detail) = one(fa, fb, Some(nick));
    // Given names typed with a space in them: the joined forms may be closer.
    if a.first_joined.is_some() || b.first_joined.is_some() {
        let (ja, jb) = (
            a.first_joined.as_deref().or(fa),
            b.first_joined.as_deref().or(fb),
        );
        let (joined, detail) = one(ja, jb, Some(nick));
        if joined.0 < first.0 {
            (first, first_detail) = (joined, detail);
        }
    }
    let (last, last_detail) = one(la, lb, None);
    Compared {
        first,
        last,
        first_detail,
        last_detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(f: &str, l: &str) -> Name {
        Name::new(Some(f), Some(l), None)
    }

    fn levels(a: &Name, b: &Name) -> (Level, Level) {
        let c = compare(a, b, &Nicknames::new(&[]), false);
        (c.first.0, c.last.0)
    }

    #[test]
    fn name_levels() {
        use Level::*;
        let cases = [
            (("John", "Smith"), ("JOHN", "smith"), (Exact, Exact)),
            (("Smith", "John"), ("John", "Smith"), (Swapped, Swapped)),
            (("Smiht", "Jon"), ("John", "Smith"), (Swapped, Swapped)),
            (("Bill", "Gates"), ("William", "Gates"), (Nickname, Exact)),
            (("Jonh", "Smith"), ("John", "Smith"), (OneEdit, Exact)),
            (("John", "Smiht"), ("John", "Smith"), (Exact, OneEdit)),
            (("John", "Smithe"), ("John", "Smith"), (Exact, OneEdit)),
            (("John", "Smyth"), ("John", "Smithe"), (Exact, SoundsAlike)),
            (
                ("John", "Wittenoom"),
                ("John", "Whittenum"),
                (Exact, SoundsAlike),
            ),
            (("J", "Smith"), ("John", "Smith"), (Initial, Exact)),
            (("Mary", "Smith"), ("John", "Smith"), (Different, Exact)),
            (
                ("Anna", "Kowalski"),
                ("Liam", "Nguyen"),
                (Different, Different),
            ),
        ];
        for ((fa, la), (fb, lb), want) in cases {
            assert_eq!(
                levels(&name(fa, la), &name(fb, lb)),
                want,
                "{fa} {la} ~ {fb} {lb}"
            );
        }
        assert_eq!(
            levels(&Name::default(), &name("John", "Smith")),
            (Missing, Missing)
        );
        // A missing given name leaves the family name to be compared.
        let only_last = Name::new(None, Some("Smith"), None);
        assert_eq!(levels(&only_last, &name("John", "Smith")), (Missing, Exact));
    }

    #[test]
    fn non_latin_names_meet_their_transliteration() {
        let c = compare(
            &name("Иван", "Петров"),
            &name("Ivan", "Petrov"),
            &Nicknames::new(&[]),
            true,
        );
        assert_eq!((c.first.0, c.last.0), (Level::Exact, Level::Exact));
        assert!(c.last_detail.contains("transliterated"), "{c:?}");
        assert_eq!(
            levels(
                &name("Γιώργος", "Παπαδόπουλος"),
                &name("Giorgos", "Papadopoulos")
            ),
            (Level::Exact, Level::Exact)
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
