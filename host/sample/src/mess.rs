//! One row of a person with one kind of mess applied, and the ways a
//! person's later record differs from the first.

use crate::Row;
use crate::names::*;
use crate::people::*;
use rand::Rng;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;

pub(crate) fn shout_or_whisper(rng: &mut ChaCha8Rng, s: &str) -> String {
    if rng.random_bool(0.5) {
        s.to_uppercase()
    } else {
        s.to_lowercase()
    }
}

pub(crate) fn full_width(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '0'..='9' => char::from_u32(c as u32 - '0' as u32 + 0xFF10).unwrap_or(c),
            ' ' => '\u{00A0}',
            _ => c,
        })
        .collect()
}

/// The fields of a row as its kind of mess and its variations change them.
struct Draft {
    email: String,
    first: String,
    last: String,
    phone: String,
    company: String,
    title: String,
    website: String,
    country: String,
    street: String,
    city: String,
    postcode: String,
    status: &'static str,
    codes: Vec<&'static str>,
    raw_line: Option<String>,
}

pub(crate) fn row(rng: &mut ChaCha8Rng, p: &Person, kind: &'static str, seen_before: bool) -> Row {
    let c = &COUNTRIES[p.country];
    let local = format!("{}.{}", ascii_local(&p.first), ascii_local(&p.last));
    let email = format!("{local}@{}", p.domain);
    let (first, last) = match &p.native {
        Some((f, l)) if !seen_before && rng.random_bool(0.5) => (f.clone(), l.clone()),
        _ => (p.first.clone(), p.last.clone()),
    };
    let mut d = Draft {
        email,
        first,
        last,
        phone: p.phone_national.clone(),
        company: p.company.clone(),
        title: p.title.clone(),
        website: format!("https://www.{}/", p.domain),
        country: c.names[0].to_string(),
        street: p.street.clone(),
        city: p.city.clone(),
        postcode: p.postcode.clone(),
        status: "accepted",
        codes: Vec::new(),
        raw_line: None,
    };
    mess(rng, p, c, &local, kind, &mut d);
    let mut variation = Vec::new();
    if seen_before {
        // One or two of the ways a person's second record differs, as far
        // as the validation case of this row allows.
        let tries = if rng.random_bool(0.4) { 2 } else { 1 };
        for _ in 0..tries {
            let pick = VARIATIONS.choose(rng).copied().unwrap_or("typo");
            let applied = vary(rng, p, c, kind, pick, &mut d);
            if applied && !variation.contains(&pick) {
                variation.push(pick);
            }
        }
    }
    let consent = ["yes", "no", ""].choose(rng).copied().unwrap_or("");
    let campaign = ["spring-launch", "webinar-q3", "", "partner"]
        .choose(rng)
        .copied()
        .unwrap_or("");
    Row {
        fields: [
            d.email,
            d.first,
            d.last,
            d.phone,
            d.company,
            d.title,
            d.website,
            d.street,
            d.city,
            d.postcode,
            d.country,
            consent.to_string(),
            campaign.to_string(),
        ],
        raw_line: d.raw_line,
        status: d.status,
        codes: d.codes,
        person: p.id,
        kind,
        variation,
    }
}

/// Applies one kind of mess to a row, with the status and issue codes a
/// correct validator gives it.
fn mess(
    rng: &mut ChaCha8Rng,
    p: &Person,
    c: &Country,
    local: &str,
    kind: &'static str,
    d: &mut Draft,
) {
    match kind {
        "clean" => {}
        "messy" => {
            d.first = shout_or_whisper(rng, &d.first);
            d.last = shout_or_whisper(rng, &d.last);
            d.email = format!("  {}@{}  ", local.to_uppercase(), p.domain.to_uppercase());
            d.phone = if rng.random_bool(0.5) {
                full_width(&d.phone)
            } else {
                format!(" {} ", p.phone_intl)
            };
            d.website = p.domain.clone();
            d.country = c.names.choose(rng).copied().unwrap_or(c.code).to_string();
            d.company = format!("  {}\u{00A0} ", d.company);
        }
        "free_mail" => {
            d.email = format!("{}@{}", p.personal_local, p.personal_domain);
            d.codes.push("email.free_provider");
        }
        "role_account" => {
            d.email = format!(
                "{}@{}",
                ["info", "sales", "support"]
                    .choose(rng)
                    .copied()
                    .unwrap_or("info"),
                p.domain
            );
            d.codes.push("email.role_account");
        }
        "bad_email" | "bad_email_no_phone" => {
            let (bad, code) = [
                (format!("{local}@@{}", p.domain), "email.syntax"),
                (
                    format!(
                        "{}..{}@{}",
                        ascii_local(&p.first),
                        ascii_local(&p.last),
                        p.domain
                    ),
                    "email.dots",
                ),
                (
                    format!("{local}@{}", slug(&p.company)),
                    "email.dotless_domain",
                ),
                (
                    format!(
                        "{} {}@{}",
                        ascii_local(&p.first),
                        ascii_local(&p.last),
                        p.domain
                    ),
                    "email.syntax",
                ),
                (
                    format!("{local}@{}.notatld", slug(&p.company)),
                    "email.unknown_tld",
                ),
                (format!("{local}.{}", p.domain), "email.syntax"),
            ]
            .choose(rng)
            .cloned()
            .unwrap_or((String::new(), "email.syntax"));
            d.email = bad;
            d.codes.push(code);
            if kind == "bad_email" {
                d.status = "review";
            } else {
                d.phone = String::new();
                d.status = "rejected";
                d.codes.push("contact.missing");
            }
        }
        "disposable" => {
            d.email = format!(
                "{local}@{}",
                DISPOSABLE.choose(rng).copied().unwrap_or("mailinator.com")
            );
            d.status = "review";
            d.codes.push("email.disposable");
        }
        "bad_phone" => {
            d.phone = "555-0100".into();
            d.country = "United States".into();
            d.status = "review";
            d.codes.push("phone.invalid_for_region");
        }
        "no_country" => {
            // National number, no d.country: the tenant's default region (US).
            let us = &COUNTRIES[0];
            (d.phone, _) = (us.phone)(rng);
            d.country = String::new();
        }
        "no_contact" => {
            d.email = String::new();
            d.phone = String::new();
            d.status = "rejected";
            d.codes.push("contact.missing");
        }
        "markup" => {
            d.company = format!("{}<script>alert(1)</script>", d.company);
            d.status = "review";
            d.codes.push("text.markup");
        }
        "formula" => {
            d.title = "=HYPERLINK(\"http://evil.example\",\"click\")".into();
            d.status = "review";
            d.codes.push("text.formula");
        }
        "unknown_country" => {
            d.country = ["Atlantis", "Narnia", "Wakanda"]
                .choose(rng)
                .copied()
                .unwrap_or("Atlantis")
                .into();
            d.phone = p.phone_intl.clone();
            d.status = "review";
            d.codes.push("country.unknown");
        }
        "too_long" => {
            d.title = "Senior ".repeat(50);
            d.status = "rejected";
            d.codes.push("job_title.too_long");
        }
        "broken_row" => {
            d.raw_line = Some(format!(
                "{},{},{},{},{},extra,extra,extra,extra,extra,extra,extra,extra,extra,extra",
                d.email, d.first, d.last, d.phone, d.company
            ));
            d.status = "rejected";
            d.codes.push("record.field_count");
        }
        _ => {}
    }
}

/// Applies one way a person's later record differs from the first, as far
/// as the row's kind of mess allows; whether it did.
fn vary(
    rng: &mut ChaCha8Rng,
    p: &Person,
    c: &Country,
    kind: &'static str,
    pick: &'static str,
    d: &mut Draft,
) -> bool {
    match pick {
        "typo" => {
            let target = if rng.random_bool(0.5) {
                &mut d.first
            } else {
                &mut d.last
            };
            match typo(rng, target) {
                Some(t) => {
                    *target = t;
                    true
                }
                None => false,
            }
        }
        "nickname" => match NICKS.iter().find(|(f, _)| *f == p.first) {
            Some((_, short)) => {
                d.first = short.choose(rng).copied().unwrap_or(short[0]).to_string();
                true
            }
            None => false,
        },
        "swapped" => {
            std::mem::swap(&mut d.first, &mut d.last);
            true
        }
        "no_email"
            if !d.phone.is_empty()
                && matches!(kind, "clean" | "messy" | "markup" | "formula" | "too_long") =>
        {
            d.email = String::new();
            true
        }
        "no_phone"
            if !d.email.is_empty()
                && matches!(
                    kind,
                    "clean"
                        | "messy"
                        | "free_mail"
                        | "role_account"
                        | "disposable"
                        | "markup"
                        | "formula"
                        | "too_long"
                ) =>
        {
            d.phone = String::new();
            true
        }
        "no_company" if kind != "markup" => {
            d.company = String::new();
            true
        }
        "gmail_alias" if kind == "free_mail" && p.personal_domain == "gmail.com" => {
            let (l, domain) = match rng.random_range(0..3) {
                0 => (p.personal_local.replace('.', ""), "gmail.com"),
                1 => (
                    format!(
                        "{}+{}",
                        p.personal_local,
                        ["crm", "news", "work"]
                            .choose(rng)
                            .copied()
                            .unwrap_or("crm")
                    ),
                    "gmail.com",
                ),
                _ => (p.personal_local.clone(), "googlemail.com"),
            };
            d.email = format!("{l}@{domain}");
            true
        }
        "phone_format" if kind == "clean" => {
            d.phone.clone_from(&p.phone_intl);
            true
        }
        "company_suffix" if kind != "markup" && !d.company.is_empty() => {
            d.company = format!(
                "{} {}",
                p.company_base,
                ["Incorporated", "Inc", "Limited", "Corporation", "Group", ""]
                    .choose(rng)
                    .copied()
                    .unwrap_or("")
            )
            .trim()
            .to_string();
            true
        }
        "address_typo" => {
            let target = match rng.random_range(0..3) {
                0 => &mut d.street,
                1 => &mut d.city,
                _ => &mut d.postcode,
            };
            let mut chars: Vec<char> = target.chars().collect();
            if chars.len() >= 4 {
                let i = rng.random_range(1..chars.len() - 1);
                chars.swap(i, i + 1);
                *target = chars.into_iter().collect();
            }
            *target != p.street && *target != p.city && *target != p.postcode
        }
        "moved" => {
            d.street = random_street(rng);
            d.city = c.cities.choose(rng).copied().unwrap_or("").to_string();
            d.postcode = (c.postcode)(rng);
            true
        }
        "script" => match &p.native {
            Some((f, l)) => {
                d.first.clone_from(f);
                d.last.clone_from(l);
                true
            }
            None => false,
        },
        _ => false,
    }
}

/// Ways a person's later record differs from the first.
pub(crate) const VARIATIONS: &[&str] = &[
    "typo",
    "nickname",
    "swapped",
    "no_email",
    "no_phone",
    "no_company",
    "gmail_alias",
    "phone_format",
    "company_suffix",
    "moved",
    "script",
    "address_typo",
];

/// One keyboard slip in a name: a doubled, dropped, swapped or replaced
/// letter. `None` for names too short to survive it.
pub(crate) fn typo(rng: &mut ChaCha8Rng, name: &str) -> Option<String> {
    let chars: Vec<char> = name.chars().collect();
    if chars.len() < 4 || !chars.iter().all(|c| c.is_alphabetic()) {
        return None;
    }
    let i = rng.random_range(1..chars.len() - 1);
    let mut out = chars.clone();
    match rng.random_range(0..4) {
        0 => out.insert(i, chars[i]),
        1 => {
            out.remove(i);
        }
        2 => out.swap(i, i + 1),
        _ => out[i] = char::from(b'a' + rng.random_range(0..26u8)),
    }
    let t: String = out.into_iter().collect();
    (t != name).then_some(t)
}
