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

    let (level, sim, detail) = names::compare(&a.name, &b.name, nick, explain);
    push(&mut out, "name", level.as_str(), sim, detail);

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

    match both(a.domain.as_deref(), b.domain.as_deref()) {
        None => push(&mut out, "domain", "missing", 0.0, String::new()),
        Some((x, y)) if x == y => push(&mut out, "domain", "exact", 1.0, say!("{x}")),
        Some((x, y)) => push(&mut out, "domain", "different", 0.0, say!("{x} ≠ {y}")),
    }

    match both(a.street.as_ref(), b.street.as_ref()) {
        None => push(&mut out, "street", "missing", 0.0, String::new()),
        Some(((nx, sx), (ny, sy))) => {
            let s = jw(sx, sy);
            let numbers_agree = nx == ny;
            let level = if numbers_agree && sx == sy {
                "exact"
            } else if numbers_agree && s >= 0.88 {
                "similar"
            } else {
                "different"
            };
            let show = |n: &Option<String>, st: &str| match n {
                Some(n) => format!("{n} {st}"),
                None => st.to_string(),
            };
            push(
                &mut out,
                "street",
                level,
                s,
                say!("{} ~ {}", show(nx, sx), show(ny, sy)),
            );
        }
    }

    match both(a.postcode.as_deref(), b.postcode.as_deref()) {
        None => push(&mut out, "postcode", "missing", 0.0, String::new()),
        Some((x, y)) if x == y => push(&mut out, "postcode", "exact", 1.0, say!("{x}")),
        Some((x, y)) => {
            let level = if x.len() >= 4 && y.len() >= 4 && strsim::levenshtein(x, y) == 1 {
                "similar"
            } else {
                "different"
            };
            push(&mut out, "postcode", level, jw(x, y), say!("{x} ~ {y}"));
        }
    }

    match both(a.city.as_deref(), b.city.as_deref()) {
        None => push(&mut out, "city", "missing", 0.0, String::new()),
        Some((x, y)) if x == y => push(&mut out, "city", "exact", 1.0, say!("{x}")),
        Some((x, y)) => {
            let s = jw(x, y);
            let level = if s >= 0.92 { "similar" } else { "different" };
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
