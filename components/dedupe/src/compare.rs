//! One lead prepared for matching ([`Features`]: folded once, compared many
//! times) and the comparison of two prepared leads into per-field evidence.

use crate::fold;
use crate::names::{self, Name, Nicknames};
use leadgate_lead::Lead;
use std::borrow::Cow;

/// Custom columns that identify a person, by their name's letters and
/// digits (lowercase): used unless the tenant lists its own.
pub const DEFAULT_IDENTITY: &[&str] = &[
    "dateofbirth",
    "dob",
    "birthdate",
    "birthday",
    "ssn",
    "socsecid",
    "socialsecuritynumber",
    "nationalid",
    "nationalidnumber",
    "taxid",
    "passportnumber",
    "customerid",
    "customernumber",
    "customerno",
    "memberid",
    "membershipnumber",
];

fn is_identity_name(key: &str) -> bool {
    let norm: String = key
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    DEFAULT_IDENTITY.contains(&norm.as_str())
}

/// A lead folded for comparison.
#[derive(Debug, Clone, Default)]
pub struct Features {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub external_ids: Vec<(String, String)>,
    pub name: Name,
    pub company: Option<String>,
    pub domain: Option<String>,
    pub street: Option<(Option<String>, String)>,
    pub city: Option<String>,
    pub postcode: Option<String>,
    pub country: Option<String>,
    /// The tenant's identity columns (custom fields), folded.
    pub identity: Vec<(String, String)>,
}

impl Features {
    /// `identity_fields`: the tenant's identity columns, or `None` for the
    /// custom columns named like one ([`DEFAULT_IDENTITY`]).
    pub fn new(lead: &Lead, identity_fields: Option<&[String]>) -> Features {
        let company = lead
            .company_key
            .as_deref()
            .or(lead.company.as_deref())
            .and_then(fold::token);
        Features {
            email: lead.email.as_deref().and_then(fold::email_key),
            phone: lead.phone.as_deref().and_then(fold::phone),
            external_ids: lead
                .external_ids
                .iter()
                .map(|e| (e.system.to_lowercase(), e.id.trim().to_string()))
                .filter(|(_, id)| !id.is_empty())
                .collect(),
            name: Name::new(
                lead.first_name.as_deref(),
                lead.last_name.as_deref(),
                lead.full_name.as_deref(),
            ),
            company,
            domain: lead.domain.as_deref().map(str::to_ascii_lowercase),
            street: lead.street.as_deref().and_then(fold::street),
            city: lead.city.as_deref().and_then(fold::token),
            postcode: lead.postcode.as_deref().and_then(fold::postcode),
            country: lead.country.as_deref().map(str::to_ascii_uppercase),
            identity: lead
                .custom
                .iter()
                .filter(|c| match identity_fields {
                    Some(list) => list.contains(&c.key),
                    None => is_identity_name(&c.key),
                })
                .filter_map(|c| Some((c.key.clone(), fold::words(&c.value)?)))
                .collect(),
        }
    }
}

/// The folded value of a field whose values have term frequencies
/// (`first_name`, `last_name`, `city`).
pub fn value_of<'a>(f: &'a Features, field: &str) -> Option<&'a str> {
    match field {
        "first_name" => f.name.first.as_deref(),
        "last_name" => f.name.last.as_deref(),
        "city" => f.city.as_deref(),
        _ => None,
    }
}

/// Whether two given names that compared `different` are far apart in
/// spelling too (three edits or more, Jaro–Winkler below 0.75, also run
/// together): "Mary" and "John", not "Dante" and "Dzne" (two typos).
pub fn given_names_far_apart(a: &Name, b: &Name) -> bool {
    let far = |x: &str, y: &str| strsim::osa_distance(x, y) >= 3 && jw(x, y) < 0.75;
    match (a.first.as_deref(), b.first.as_deref()) {
        (Some(x), Some(y)) => {
            far(x, y)
                && far(
                    a.first_joined.as_deref().unwrap_or(x),
                    b.first_joined.as_deref().unwrap_or(y),
                )
        }
        _ => false,
    }
}

/// The fields term frequencies are kept for.
pub const TF_FIELDS: &[&str] = &["first_name", "last_name", "city"];

/// One field's comparison, before the model weighs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Compared {
    /// The field's name: most are fixed, a tenant's identity column is
    /// `custom:KEY`.
    pub field: Cow<'static, str>,
    pub level: &'static str,
    pub similarity: f64,
    pub detail: String,
}

fn push(
    out: &mut Vec<Compared>,
    field: impl Into<Cow<'static, str>>,
    level: &'static str,
    similarity: f64,
    detail: String,
) {
    out.push(Compared {
        field: field.into(),
        level,
        similarity,
        detail,
    });
}

/// Two optional values: both present → `f(a, b)`, else `missing`.
fn both<'a, T: ?Sized>(a: Option<&'a T>, b: Option<&'a T>) -> Option<(&'a T, &'a T)> {
    Some((a?, b?))
}

fn jw(a: &str, b: &str) -> f64 {
    strsim::jaro_winkler(a, b)
}

/// Compares two prepared leads field by field. `explain` adds the detail
/// text (skipped in bulk work).
pub fn compare(a: &Features, b: &Features, nick: &Nicknames, explain: bool) -> Vec<Compared> {
    let mut out = Vec::with_capacity(11);
    // The detail text, formatted only when it is asked for: a bulk
    // comparison would otherwise format (and drop) a dozen strings a pair.
    macro_rules! say {
        ($($arg:tt)*) => {
            if explain { format!($($arg)*) } else { String::new() }
        };
    }

    // Email: the folded matching key; the same local part at another domain
    // (private vs work address) is weaker evidence.
    match both(a.email.as_deref(), b.email.as_deref()) {
        None => push(&mut out, "email", "missing", 0.0, String::new()),
        Some((x, y)) if x == y => push(&mut out, "email", "exact", 1.0, say!("{x}")),
        Some((x, y)) => {
            let (lx, ly) = (fold::local_part(x), fold::local_part(y));
            let strip = |s: &str| s.replace(['.', '_', '-'], "");
            if lx.len() >= 4 && strip(lx) == strip(ly) {
                push(&mut out, "email", "same_local", 0.8, say!("{x} ~ {y}"));
            } else {
                push(&mut out, "email", "different", jw(x, y), say!("{x} ≠ {y}"));
            }
        }
    }

    // Phone: E.164 digits; the same trailing seven digits catch a number
    // read in the wrong country.
    match both(a.phone.as_deref(), b.phone.as_deref()) {
        None => push(&mut out, "phone", "missing", 0.0, String::new()),
        Some((x, y)) if x == y => push(&mut out, "phone", "exact", 1.0, say!("+{x}")),
        Some((x, y)) if x.len() >= 7 && y.len() >= 7 && x[x.len() - 7..] == y[y.len() - 7..] => {
            push(
                &mut out,
                "phone",
                "suffix",
                0.7,
                say!("+{x} ~ +{y} (same last 7 digits)"),
            )
        }
        Some((x, y)) => push(&mut out, "phone", "different", 0.0, say!("+{x} ≠ +{y}")),
    }

    // External CRM ids: the same id in the same system is the same record;
    // two ids in one system are two records.
    if !a.external_ids.is_empty() && !b.external_ids.is_empty() {
        let same = a.external_ids.iter().find(|x| b.external_ids.contains(x));
        let clash = a
            .external_ids
            .iter()
            .find(|(s, _)| b.external_ids.iter().any(|(t, _)| t == s));
        match (same, clash) {
            (Some((s, id)), _) => push(&mut out, "external_id", "exact", 1.0, say!("{s}:{id}")),
            (None, Some((s, _))) => push(
                &mut out,
                "external_id",
                "conflict",
                0.0,
                say!("two different {s} ids"),
            ),
            (None, None) => push(&mut out, "external_id", "missing", 0.0, String::new()),
        }
    } else {
        push(&mut out, "external_id", "missing", 0.0, String::new());
    }

    let n = names::compare(&a.name, &b.name, nick, explain);
    push(
        &mut out,
        "first_name",
        n.first.0.as_str(),
        n.first.1,
        n.first_detail,
    );
    push(
        &mut out,
        "last_name",
        n.last.0.as_str(),
        n.last.1,
        n.last_detail,
    );

    match both(a.company.as_deref(), b.company.as_deref()) {
        None => push(&mut out, "company", "missing", 0.0, String::new()),
        Some((x, y)) if x == y => push(&mut out, "company", "exact", 1.0, say!("{x}")),
        Some((x, y)) => {
            let s = jw(x, y);
            let level = if s >= 0.92 || (x.len() >= 4 && (x.starts_with(y) || y.starts_with(x))) {
                "similar"
            } else {
                "different"
            };
            push(&mut out, "company", level, s, say!("{x} ~ {y}"));
        }
    }

    // The same company's domain says nothing more: both name one employer.
    let same_company = a.company.is_some() && a.company == b.company;
    match both(a.domain.as_deref(), b.domain.as_deref()) {
        None => push(&mut out, "domain", "missing", 0.0, String::new()),
        Some((x, y)) if x == y && same_company => push(
            &mut out,
            "domain",
            "missing",
            1.0,
            say!("{x} (follows from the company)"),
        ),
        Some((x, y)) if x == y => push(&mut out, "domain", "exact", 1.0, say!("{x}")),
        Some((x, y)) => push(&mut out, "domain", "different", 0.0, say!("{x} ≠ {y}")),
    }

    // The house number and the street's words are two fields: a duplicate
    // typed in another building of the same street, or the same number with
    // the street misspelt, keeps the evidence of the part that agrees.
    let number = |s: &Option<(Option<String>, String)>| s.as_ref().and_then(|(n, _)| n.clone());
    match both(number(&a.street).as_deref(), number(&b.street).as_deref()) {
        None => push(&mut out, "street_number", "missing", 0.0, String::new()),
        Some((x, y)) => {
            let level = code_level(x, y);
            push(
                &mut out,
                "street_number",
                level,
                jw(x, y),
                say!("{x} ~ {y}"),
            );
        }
    }
    fn street(s: &Option<(Option<String>, String)>) -> Option<&str> {
        s.as_ref()
            .map(|(_, w)| w.as_str())
            .filter(|w| !w.is_empty())
    }
    match both(street(&a.street), street(&b.street)) {
        None => push(&mut out, "street", "missing", 0.0, String::new()),
        Some((x, y)) => {
            let s = token_similarity(x, y);
            let level = if x == y {
                "exact"
            } else if s >= 0.999 {
                "same_words"
            } else if s >= 0.85 {
                "similar"
            } else if s >= 0.5 {
                "partial"
            } else {
                "different"
            };
            push(&mut out, "street", level, s, say!("{x} ~ {y}"));
        }
    }

    match both(a.postcode.as_deref(), b.postcode.as_deref()) {
        None => push(&mut out, "postcode", "missing", 0.0, String::new()),
        Some((x, y)) => {
            let level = code_level(x, y);
            push(&mut out, "postcode", level, jw(x, y), say!("{x} ~ {y}"));
        }
    }

    // With the same postcode the same city says nothing more (it follows
    // from the postcode); counting both would count one fact twice.
    let same_postcode = a.postcode.is_some() && a.postcode == b.postcode;
    match both(a.city.as_deref(), b.city.as_deref()) {
        None => push(&mut out, "city", "missing", 0.0, String::new()),
        Some((x, y)) if x == y && same_postcode => push(
            &mut out,
            "city",
            "missing",
            1.0,
            say!("{x} (follows from the postcode)"),
        ),
        Some((x, y)) if x == y => push(&mut out, "city", "exact", 1.0, say!("{x}")),
        Some((x, y)) => {
            let s = jw(x, y);
            let typo = strsim::osa_distance(x, y) <= if x.len().min(y.len()) >= 8 { 2 } else { 1 };
            let level = if typo || s >= 0.92 {
                "typo"
            } else {
                "different"
            };
            push(&mut out, "city", level, s, say!("{x} ~ {y}"));
        }
    }

    match both(a.country.as_deref(), b.country.as_deref()) {
        None => push(&mut out, "country", "missing", 0.0, String::new()),
        Some((x, y)) if x == y => push(&mut out, "country", "exact", 1.0, say!("{x}")),
        Some((x, y)) => push(&mut out, "country", "different", 0.0, say!("{x} ≠ {y}")),
    }

    for (key, x) in &a.identity {
        let field: Cow<'static, str> = format!("custom:{key}").into();
        match b.identity.iter().find(|(k, _)| k == key) {
            None => push(&mut out, field.clone(), "missing", 0.0, String::new()),
            Some((_, y)) if x == y => push(&mut out, field.clone(), "exact", 1.0, say!("{x}")),
            Some((_, y)) => {
                let s = jw(x, y);
                let level = if s >= 0.92 { "similar" } else { "different" };
                push(&mut out, field.clone(), level, s, say!("{x} ~ {y}"));
            }
        }
    }
    out
}

/// A code (postcode, house number) compared: `exact`, `transposed` (two
/// neighbouring characters swapped), `one_edit` (one replaced, added or
/// dropped), else `different`.
pub fn code_level(x: &str, y: &str) -> &'static str {
    if x == y {
        return "exact";
    }
    let (a, b): (Vec<char>, Vec<char>) = (x.chars().collect(), y.chars().collect());
    if a.len() == b.len() {
        let diff: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
        match diff.as_slice() {
            [i, j] if *j == i + 1 && a[*i] == b[*j] && a[*j] == b[*i] => return "transposed",
            [_] => return "one_edit",
            _ => return "different",
        }
    }
    if a.len().abs_diff(b.len()) == 1 && a.len().min(b.len()) >= 2 && strsim::levenshtein(x, y) == 1
    {
        "one_edit"
    } else {
        "different"
    }
}

/// Similarity of two streets' word sets, order-free: every word of the
/// shorter street is matched to its closest word of the other (Jaro–Winkler,
/// counted when at least 0.85), and the matched share of the shorter one is
/// the similarity. A street given with and without its second line ("kent
/// street" and "kent street stanton lodge") has similarity 1.
pub fn token_similarity(x: &str, y: &str) -> f64 {
    let (short, long) = if x.split(' ').count() <= y.split(' ').count() {
        (x, y)
    } else {
        (y, x)
    };
    let words: Vec<&str> = short.split(' ').filter(|w| !w.is_empty()).collect();
    if words.is_empty() {
        return 0.0;
    }
    let other: Vec<&str> = long.split(' ').filter(|w| !w.is_empty()).collect();
    let matched: f64 = words
        .iter()
        .map(|w| {
            let best = other.iter().map(|o| jw(w, o)).fold(0.0, f64::max);
            if best >= 0.85 { best } else { 0.0 }
        })
        .sum();
    let by_words = matched / words.len() as f64;
    // Spaces typed in or left out ("kent st reet", "kentstreet"): the
    // streets run together, by edit distance.
    let (jx, jy) = (x.replace(' ', ""), y.replace(' ', ""));
    let longest = jx.chars().count().max(jy.chars().count()).max(1);
    let by_letters = 1.0 - strsim::osa_distance(&jx, &jy) as f64 / longest as f64;
    by_words.max(by_letters)
}
