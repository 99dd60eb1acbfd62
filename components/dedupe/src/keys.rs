//! Blocking keys: leads that share one are compared. Several keys per lead,
//! each from a different combination of fields, so that a duplicate with
//! one corrupted field still shares a key with its original:
//!
//! | key | fields |
//! |---|---|
//! | `e:` | email matching key (aliases folded) |
//! | `p:` | phone digits |
//! | `x:` | external id (system and id) |
//! | `np:` | phonetic family name + given-name initial + postcode |
//! | `nc:` | phonetic names (order-free, nickname-folded) + company key |
//! | `nd:` | phonetic family name + first letter of the phonetic given name + corporate domain |
//! | `ns:` | phonetic names (order-free) + house number and street |
//! | `nt:` | spelled names (order-free, nickname-folded) + city — only with the `name_city_key` setting |
//! | `i:` | each of the tenant's identity columns |
//!
//! Name parts are phonetic (Double Metaphone over transliterated text), so
//! typos that keep the sound, other scripts and "Smyth"/"Smith" still block
//! together; given names are folded through the nickname table first.
//!
//! The names + city key is off by default. A city holds many namesakes, so
//! its blocks grow with the store: in a million generated leads it was
//! half of the pairs compared, and on the labelled sample it found one
//! duplicate more, only when email, phone and company were all left out
//! (`BENCHMARKS.md`, "Blocking on names and city").
//!
//! The family name + domain key carries the given name's first phonetic
//! letter for the same reason: without it every colleague whose family name
//! sounds alike shared it, and its blocks grew with the store (1.28 stored
//! leads a key at 1.5 million generated leads, against 0.1–0.2 for the
//! narrow keys). The letter is taken after nickname folding, so
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
        assert!(!shares_a_key(&a, &b));
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
}
