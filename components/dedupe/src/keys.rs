//! Blocking keys: leads that share one are compared. Several keys per lead,
//! each from a different combination of fields (a *pass*), so that a
//! duplicate with one corrupted field still shares a key with its original.
//! A key's pass is the text before its first `:`; the host reports blocks
//! and pairs per pass and drops whole passes, least selective first, when a
//! file's comparisons would exceed its budget.
//!
//! | pass | fields |
//! |---|---|
//! | `e:` | email matching key (aliases folded) |
//! | `p:` | phone digits |
//! | `x:` | external id (system and id) |
//! | `i:` | each of the tenant's identity columns |
//! | `np:` | phonetic family name + given-name initial + postcode |
//! | `gp:` | given name (nickname-folded) + postcode |
//! | `pn:` | postcode + house number |
//! | `lc:` | phonetic family name + city |
//! | `nv:` | given name + family name, and every variant with one letter deleted |
//! | `gc:` | given name (nickname-folded) + city |
//! | `sc:` | each distinctive street word (up to three) + city |
//! | `ls:` | phonetic family name + each distinctive street word |
//! | `nc:` | phonetic names (order-free, nickname-folded) + company key |
//! | `nd:` | phonetic family name + first letter of the phonetic given name + corporate domain |
//! | `ns:` | phonetic names (order-free) + house number and street |
//! | `nt:` | spelled names (order-free, nickname-folded) + city — only with the `name_city_key` setting |
//!
//! Name parts are phonetic (Double Metaphone over transliterated text), so
//! typos that keep the sound, other scripts and "Smyth"/"Smith" still block
//! together; given names are folded through the nickname table first.
//!
//! `nv:` is the typo-tolerant pass: two names one edit apart (a letter
//! replaced, added, dropped, or two letters swapped) share a deletion
//! variant, so "Jonh Smith" meets "John Smith" and "Smiht" meets "Smith"
//! whatever else differs. A typo in the family name and one in the postcode
//! therefore no longer lose the pair: `gp:`, `pn:` and `nv:` each need
//! neither.
//!
//! The names + city key is off by default. A city holds many namesakes, so
//! its blocks grow with the store (`BENCHMARKS.md`, "Blocking on names and
//! city"). `lc:` pairs the city
//! with the family name's sound alone; a common name in a big city makes
//! a block over `dedupe.max_block`, which is then left out and reported.
//!
//! The family name + domain key carries the given name's first phonetic
//! letter for the same reason: without it every colleague whose family name
//! sounds alike shared it, and its blocks grew with the store. The letter is taken after nickname folding, so
//! "Bill"/"William" and "Catherine"/"Katherine" still share it; a lead
//! without a given name gets `_` (`BENCHMARKS.md`, "Colleagues on one
//! domain").

use crate::compare::Features;
use crate::fold;
use crate::names::Nicknames;

/// Blocking keys of a prepared lead, without duplicates; `name_city` adds
/// the spelled names + city key.
pub fn keys(f: &Features, nick: &Nicknames, name_city: bool) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(8);
    if let Some(e) = &f.email {
        out.push(format!("e:{e}"));
    }
    if let Some(p) = &f.phone {
        out.push(format!("p:{p}"));
    }
    for (system, id) in &f.external_ids {
        out.push(format!("x:{system}:{id}"));
    }
    let first = f.name.first.as_deref();
    let last_ph = f
        .name
        .last
        .as_deref()
        .map(fold::phonetic)
        .filter(|p| !p.is_empty());
    let first_ph = first
        .map(|n| fold::phonetic(nick.canonical(n)))
        .filter(|p| !p.is_empty());
    // Both name codes in a fixed order, so swapped names share the key.
    let pair = match (&first_ph, &last_ph) {
        (Some(a), Some(b)) if a <= b => Some(format!("{a}|{b}")),
        (Some(a), Some(b)) => Some(format!("{b}|{a}")),
        _ => None,
    };
    if let (Some(l), Some(pc)) = (&last_ph, &f.postcode) {
        let initial = first.and_then(|n| n.chars().next()).unwrap_or('_');
        out.push(format!("np:{l}|{initial}|{pc}"));
    }
    if let (Some(n), Some(c)) = (&pair, &f.company) {
        out.push(format!("nc:{n}|{c}"));
    }
    if let (Some(l), Some(d)) = (&last_ph, &f.domain) {
        let initial = first_ph
            .as_deref()
            .and_then(|p| p.chars().next())
            .unwrap_or('_');
        out.push(format!("nd:{l}|{initial}|{d}"));
    }
    if let (Some(n), Some((Some(number), street))) = (&pair, &f.street) {
        let word = street.split(' ').next().unwrap_or("");
        out.push(format!("ns:{n}|{number}|{word}"));
    }
    if let (Some(given), Some(pc)) = (first, &f.postcode) {
        out.push(format!("gp:{}|{pc}", nick.canonical(given)));
    }
    if let (Some(pc), Some((Some(number), _))) = (&f.postcode, &f.street) {
        out.push(format!("pn:{pc}|{number}"));
    }
    if let (Some(l), Some(city)) = (&last_ph, &f.city) {
        out.push(format!("lc:{l}|{city}"));
    }
    if let (Some(given), Some(last)) = (first, f.name.last.as_deref()) {
        deletion_variants(&format!("{given}{last}"), &mut out);
    }
    if let (Some(given), Some(city)) = (first, &f.city) {
        out.push(format!("gc:{}|{city}", nick.canonical(given)));
    }
    if let Some((_, street)) = &f.street {
        for word in street_words(street) {
            if let Some(city) = &f.city {
                out.push(format!("sc:{word}|{city}"));
            }
            if let Some(l) = &last_ph {
                out.push(format!("ls:{l}|{word}"));
            }
        }
    }
    // Spelled names (nickname-folded, order-free): city alone is too coarse
    // a place to pair with sounds.
    if let (true, Some(first), Some(last), Some(city)) =
        (name_city, first, f.name.last.as_deref(), &f.city)
    {
        let first = nick.canonical(first);
        let (a, b) = if first <= last {
            (first, last)
        } else {
            (last, first)
        };
        out.push(format!("nt:{a}|{b}|{city}"));
    }
    for (key, value) in &f.identity {
        out.push(format!("i:{key}:{value}"));
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Words that name a kind of street, not a street.
const STREET_TYPES: &[&str] = &[
    "street",
    "road",
    "avenue",
    "drive",
    "lane",
    "court",
    "place",
    "crescent",
    "circuit",
    "parade",
    "terrace",
    "close",
    "grove",
    "highway",
    "boulevard",
    "square",
    "parkway",
    "strasse",
    "way",
    "walk",
    "rise",
    "view",
];

/// The words of a street that tell it apart (up to three, four letters or
/// more, not a street type, not a number).
fn street_words(street: &str) -> impl Iterator<Item = &str> {
    street
        .split(' ')
        .filter(|w| w.len() >= 4 && !STREET_TYPES.contains(w))
        .filter(|w| !w.starts_with(|c: char| c.is_ascii_digit()))
        .take(3)
}

/// The shortest spelled name the typo-tolerant pass keys: shorter ones'
/// deletion variants are shared by too many unrelated names.
const MIN_VARIANT_LEN: usize = 5;

/// `nv:` keys: the name itself and every variant with one letter deleted.
/// Two names one edit apart share one of them (a replaced letter: the same
/// deletion on both sides; an added or dropped one: the shorter name is a
/// deletion of the longer; swapped neighbours: deleting either).
fn deletion_variants(name: &str, out: &mut Vec<String>) {
    let chars: Vec<char> = name.chars().collect();
    if chars.len() < MIN_VARIANT_LEN {
        return;
    }
    out.push(format!("nv:{name}"));
    for skip in 0..chars.len() {
        // Deleting either of two equal neighbours gives the same variant.
        if skip > 0 && chars[skip] == chars[skip - 1] {
            continue;
        }
        let mut key = String::with_capacity(name.len() + 3);
        key.push_str("nv:");
        key.extend(
            chars
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != skip)
                .map(|(_, c)| c),
        );
        out.push(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadgate_lead::Lead;

    fn keys_of(lead: &Lead) -> Vec<String> {
        keys(&Features::new(lead, None), &Nicknames::new(&[]), false)
    }

    fn shares_a_key(a: &Lead, b: &Lead) -> bool {
        let kb = keys_of(b);
        keys_of(a).iter().any(|k| kb.contains(k))
    }

    fn lead(first: &str, last: &str) -> Lead {
        Lead {
            first_name: Some(first.into()),
            last_name: Some(last.into()),
            company_key: Some("acme".into()),
            postcode: Some("SW1A 1AA".into()),
            ..Lead::default()
        }
    }

    #[test]
    fn corrupted_duplicates_still_share_a_key() {
        let base = lead("William", "Smith");
        for other in [
            lead("Bill", "Smith"),
            lead("Smith", "William"),
            lead("William", "Smyth"),
        ] {
            assert!(shares_a_key(&base, &other), "{other:?}");
        }
        let mut moved = base.clone();
        moved.postcode = Some("EC1A 1BB".into());
        moved.company_key = None;
        moved.email = Some("w.smith+x@acme.com".into());
        let mut with_mail = base.clone();
        with_mail.email = Some("W.Smith@acme.com".into());
        assert!(shares_a_key(&moved, &with_mail));
        assert!(!shares_a_key(&base, &lead("Anna", "Kowalski")));
    }

    #[test]
    fn no_usable_fields_no_keys() {
        assert!(keys_of(&Lead::default()).is_empty());
        let only_first = Lead {
            first_name: Some("Anna".into()),
            ..Lead::default()
        };
        assert!(keys_of(&only_first).is_empty());
    }

    #[test]
    fn names_and_city_block_together_only_when_asked() {
        let mut a = lead("William", "Smith");
        a.company_key = None;
        a.postcode = None;
        a.city = Some("London".into());
        // Moved within the city: another street, and the nickname.
        let mut b = lead("Bill", "Smith");
        b.company_key = None;
        b.postcode = None;
        b.city = Some("london".into());
        b.street = Some("12 Baker Street".into());
        let nick = Nicknames::new(&[]);
        let with = |l: &Lead, on: bool| keys(&Features::new(l, None), &nick, on);
        // Without the setting there is no such key (the family name's
        // sound and the city still meet, on `lc:`).
        assert!(!with(&a, false).iter().any(|k| k.starts_with("nt:")));
        assert!(shares_a_key(&a, &b));
        let (ka, kb) = (with(&a, true), with(&b, true));
        assert!(
            ka.iter().any(|k| k.starts_with("nt:") && kb.contains(k)),
            "{ka:?} {kb:?}"
        );
        // Without a city there is no such key.
        b.city = None;
        assert!(!with(&b, true).iter().any(|k| k.starts_with("nt:")));
    }

    #[test]
    fn colleagues_share_the_domain_key_only_with_the_same_given_initial() {
        // Only email (each a different address) and the domain to go by.
        let at_acme = |first: &str, last: &str, local: &str| Lead {
            first_name: Some(first.into()),
            last_name: Some(last.into()),
            email: Some(format!("{local}@acme.com")),
            domain: Some("acme.com".into()),
            ..Lead::default()
        };
        let nd = |l: &Lead| -> Vec<String> {
            keys_of(l)
                .into_iter()
                .filter(|k| k.starts_with("nd:"))
                .collect()
        };
        let william = at_acme("William", "Smith", "w.smith");
        assert_eq!(nd(&william).len(), 1, "{:?}", keys_of(&william));
        // The same person under a nickname, a misspelling, another spelling
        // of the family name or of the given name: the same key.
        for same in [
            at_acme("Bill", "Smith", "bill"),
            at_acme("Wiliam", "Smyth", "ws"),
        ] {
            assert_eq!(nd(&same), nd(&william), "{same:?}");
        }
        assert_eq!(
            nd(&at_acme("Catherine", "Jones", "cj")),
            nd(&at_acme("Katherine", "Jones", "kj"))
        );
        // A colleague with the same family name: not compared.
        assert!(!shares_a_key(
            &william,
            &at_acme("Thomas", "Smith", "t.smith")
        ));
        // Without a given name the key still exists, for such leads only.
        let mut nameless = william.clone();
        nameless.first_name = None;
        assert_eq!(nd(&nameless).len(), 1);
        assert_ne!(nd(&nameless), nd(&william));
    }

    /// A person as an old CRM export has them: names and a postal address.
    fn resident(first: &str, last: &str, street: &str, postcode: &str, city: &str) -> Lead {
        Lead {
            first_name: Some(first.into()),
            last_name: Some(last.into()),
            street: Some(street.into()),
            postcode: Some(postcode.into()),
            city: Some(city.into()),
            ..Lead::default()
        }
    }

    fn shared_passes(a: &Lead, b: &Lead) -> Vec<String> {
        let kb = keys_of(b);
        let mut passes: Vec<String> = keys_of(a)
            .into_iter()
            .filter(|k| kb.contains(k))
            .filter_map(|k| k.split(':').next().map(str::to_string))
            .collect();
        passes.dedup();
        passes
    }

    #[test]
    fn one_corrupted_field_of_a_postal_record_still_meets_its_original() {
        let original = resident("Jessica", "Wittenoom", "42 Banks Street", "2612", "Turner");
        let cases = [
            // One typo in the family name that changes its sound.
            resident("Jessica", "Wittemoom", "42 Banks Street", "2612", "Turner"),
            // One typo in the postcode.
            resident("Jessica", "Wittenoom", "42 Banks Street", "2621", "Turner"),
            // No house number.
            resident("Jessica", "Wittenoom", "Banks Street", "2612", "Turner"),
            // Typos in the family name and the postcode together.
            resident("Jessica", "Witenoom", "42 Banks Street", "2621", "Turner"),
            // A typo in the given name and another postcode.
            resident("Jesicca", "Wittenoom", "42 Banks Street", "2600", "Turner"),
        ];
        for other in cases {
            assert!(
                !shared_passes(&original, &other).is_empty(),
                "{other:?} shares no key with the original"
            );
        }
        // Each pass on its own.
        let typo_last = resident("Jessica", "Wittemoom", "", "2612", "");
        assert!(shared_passes(&original, &typo_last).contains(&"gp".to_string()));
        let typo_both_names = resident("Jessica", "Wittenomo", "7 Other Road", "3000", "Perth");
        assert_eq!(shared_passes(&original, &typo_both_names), ["nv"]);
        let moved_in = resident("Mark", "Brown", "42 Banks Street", "2612", "Turner");
        assert_eq!(shared_passes(&original, &moved_in), ["pn", "sc"]);
        let same_town = resident("Jess", "Wittenoom", "9 Kent Street", "2600", "Turner");
        assert!(shared_passes(&original, &same_town).contains(&"lc".to_string()));
    }

    #[test]
    fn deletion_variants_meet_within_one_edit() {
        let variants = |s: &str| {
            let mut v = Vec::new();
            deletion_variants(s, &mut v);
            v
        };
        let meet = |a: &str, b: &str| {
            let vb = variants(b);
            variants(a).iter().any(|k| vb.contains(k))
        };
        for (a, b) in [
            ("johnsmith", "jonsmith"),   // dropped
            ("johnsmith", "johnsmiith"), // added
            ("johnsmith", "johnsmyth"),  // replaced
            ("johnsmith", "jonhsmith"),  // swapped neighbours
        ] {
            assert!(meet(a, b), "{a} ~ {b}");
        }
        assert!(!meet("johnsmith", "janesmyth"));
        // Repeated letters give one variant, and short names none.
        assert_eq!(variants("annabel").len(), "annabel".len());
        assert!(variants("alex").is_empty());
    }
}
