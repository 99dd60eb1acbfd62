//! Messy sample leads with known ground truth.
//!
//! Each row is a person (some people appear more than once, with variations:
//! the duplicates the dedupe capability will have to find) with one kind of
//! mess applied. The truth file records, per row, the status and issue codes
//! a correct validator must produce and which person the row is, so
//! `leadgate eval` can measure agreement.

use anyhow::{Context, Result};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::Write;
use std::path::Path;

const FIRST: &[&str] = &[
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "William",
    "Elizabeth",
    "David",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Anna",
    "Lukas",
    "Sophie",
    "Jean",
    "Marie",
    "José",
    "Zoë",
    "Søren",
    "Björn",
    "François",
    "Chloé",
    "Liam",
    "Emma",
    "Noah",
    "Olivia",
    "Aoife",
    "Mateo",
];
const LAST: &[&str] = &[
    "Smith",
    "Johnson",
    "McDonald",
    "O'Neil",
    "van der Berg",
    "Müller",
    "Schmidt",
    "García",
    "Dubois",
    "Rossi",
    "Jansen",
    "de Vries",
    "MacLeod",
    "Nguyen",
    "Kowalski",
    "Andersson",
    "O'Brien",
    "Fitzgerald",
    "Brown",
    "Taylor",
    "Smith-Jones",
    "Lefèvre",
];
const COMPANIES: &[&str] = &[
    "Acmetrix",
    "Globexa",
    "Initrode",
    "Umbrellix",
    "Starkwell",
    "Wayneworks",
    "Hoolify",
    "Vandelay",
    "Soylentia",
    "Cyberdyno",
    "Tyrellcorp",
    "Wonkavator",
    "Oscorpia",
    "Piedpiperly",
    "Massivedyn",
    "Aperturio",
    "Nakatomix",
    "Monarchly",
    "Bluthco",
    "Dundermiff",
];
const SUFFIXES: &[&str] = &[
    "Inc.", "LLC", "Ltd", "GmbH", "S.A.", "B.V.", "SAS", "Corp.", "",
];
const TITLES: &[&str] = &[
    "VP Sales",
    "Head of Marketing",
    "CTO",
    "Software Engineer",
    "Procurement Manager",
    "CEO",
    "Operations Director",
    "Data Analyst",
];
const FREE: &[&str] = &[
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "hotmail.co.uk",
    "gmx.de",
    "icloud.com",
];
const DISPOSABLE: &[&str] = &[
    "mailinator.com",
    "guerrillamail.com",
    "10minutemail.com",
    "yopmail.com",
];

/// A country: ISO code, ways people write it, a website TLD, cities, and a
/// generator of valid national phone numbers with their E.164 prefix.
struct Country {
    code: &'static str,
    names: &'static [&'static str],
    tld: &'static str,
    cities: &'static [&'static str],
    /// (national number, international form)
    phone: fn(&mut ChaCha8Rng) -> (String, String),
    postcode: fn(&mut ChaCha8Rng) -> String,
}

fn digits(rng: &mut ChaCha8Rng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

const COUNTRIES: &[Country] = &[
    Country {
        code: "US",
        names: &[
            "United States",
            "USA",
            "US",
            "us",
            "United States of America",
        ],
        tld: "com",
        cities: &["New York", "San Francisco", "Chicago", "Austin"],
        phone: |r| {
            let area = ["212", "415", "312", "512", "617"][r.random_range(0..5)];
            let exchange = format!("{}{}", r.random_range(2..10), digits(r, 2));
            let line = digits(r, 4);
            (
                format!("({area}) {exchange}-{line}"),
                format!("+1 {area} {exchange} {line}"),
            )
        },
        postcode: |r| format!("{}", r.random_range(10000..99999)),
    },
    Country {
        code: "GB",
        names: &["United Kingdom", "UK", "GB", "Great Britain", "England"],
        tld: "co.uk",
        cities: &["London", "Manchester", "Edinburgh"],
        phone: |r| {
            let line = digits(r, 3);
            (format!("020 7946 0{line}"), format!("+44 20 7946 0{line}"))
        },
        postcode: |r| format!("SW1A {}AA", r.random_range(1..10)),
    },
    Country {
        code: "DE",
        names: &["Germany", "Deutschland", "DE", "DEU"],
        tld: "de",
        cities: &["Berlin", "München", "Hamburg"],
        phone: |r| {
            let n = format!("{}{}", r.random_range(2..10), digits(r, 7));
            (format!("030 {n}"), format!("+49 30 {n}"))
        },
        postcode: |r| format!("{:05}", r.random_range(10000..99999)),
    },
    Country {
        code: "FR",
        names: &["France", "FR", "FRA"],
        tld: "fr",
        cities: &["Paris", "Lyon", "Marseille"],
        phone: |r| {
            let n = format!(
                "{} {} {} {}",
                digits(r, 2),
                digits(r, 2),
                digits(r, 2),
                digits(r, 2)
            );
            (format!("01 {n}"), format!("+33 1 {n}"))
        },
        postcode: |r| format!("750{:02}", r.random_range(1..21)),
    },
    Country {
        code: "NL",
        names: &["Netherlands", "The Netherlands", "NL", "Holland"],
        tld: "nl",
        cities: &["Amsterdam", "Rotterdam", "Utrecht"],
        phone: |r| {
            let n = format!("{}{}", r.random_range(2..10), digits(r, 6));
            (format!("020 {n}"), format!("+31 20 {n}"))
        },
        postcode: |r| format!("{} AB", r.random_range(1000..9999)),
    },
    Country {
        code: "AU",
        names: &["Australia", "AU", "AUS"],
        tld: "com.au",
        cities: &["Sydney", "Melbourne"],
        phone: |r| {
            let n = format!("9{} {}", digits(r, 3), digits(r, 4));
            (format!("(02) {n}"), format!("+61 2 {n}"))
        },
        postcode: |r| format!("{}", r.random_range(2000..2999)),
    },
];

/// One person the sample is about.
#[derive(Clone)]
struct Person {
    id: usize,
    first: String,
    last: String,
    company: String,
    domain: String,
    title: String,
    country: usize,
    city: String,
    postcode: String,
    phone_national: String,
    phone_intl: String,
}

fn slug(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

fn ascii_local(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'é' | 'è' | 'ë' => 'e',
            'ö' | 'ø' => 'o',
            'ü' => 'u',
            'ç' => 'c',
            'á' => 'a',
            _ => c,
        })
        .filter(|c| c.is_ascii_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

fn person(rng: &mut ChaCha8Rng, id: usize) -> Person {
    let country = rng.random_range(0..COUNTRIES.len());
    let c = &COUNTRIES[country];
    let base = COMPANIES.choose(rng).copied().unwrap_or("Acmetrix");
    let suffix = SUFFIXES.choose(rng).copied().unwrap_or("");
    let (phone_national, phone_intl) = (c.phone)(rng);
    Person {
        id,
        first: FIRST.choose(rng).copied().unwrap_or("Anna").to_string(),
        last: LAST.choose(rng).copied().unwrap_or("Smith").to_string(),
        company: format!("{base} {suffix}").trim().to_string(),
        domain: format!("{}.{}", slug(base), c.tld),
        title: TITLES.choose(rng).copied().unwrap_or("CEO").to_string(),
        country,
        city: c.cities.choose(rng).copied().unwrap_or("").to_string(),
        postcode: (c.postcode)(rng),
        phone_national,
        phone_intl,
    }
}

/// A sample row and what a correct validator says about it.
pub struct Row {
    pub fields: [String; 12],
    pub raw_line: Option<String>,
    pub status: &'static str,
    pub codes: Vec<&'static str>,
    pub person: usize,
    pub kind: &'static str,
}

pub const HEADER: [&str; 12] = [
    "E-mail",
    "First Name",
    "Last Name",
    "Phone",
    "Company",
    "Job Title",
    "Website",
    "City",
    "Zip",
    "Country",
    "Marketing Opt-In",
    "utm_campaign",
];

fn shout_or_whisper(rng: &mut ChaCha8Rng, s: &str) -> String {
    if rng.random_bool(0.5) {
        s.to_uppercase()
    } else {
        s.to_lowercase()
    }
}

fn full_width(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '0'..='9' => char::from_u32(c as u32 - '0' as u32 + 0xFF10).unwrap_or(c),
            ' ' => '\u{00A0}',
            _ => c,
        })
        .collect()
}

fn row(rng: &mut ChaCha8Rng, p: &Person, kind: &'static str) -> Row {
    let c = &COUNTRIES[p.country];
    let local = format!("{}.{}", ascii_local(&p.first), ascii_local(&p.last));
    let mut email = format!("{local}@{}", p.domain);
    let mut first = p.first.clone();
    let mut last = p.last.clone();
    let mut phone = p.phone_national.clone();
    let mut company = p.company.clone();
    let mut title = p.title.clone();
    let mut website = format!("https://www.{}/", p.domain);
    let mut country = c.names[0].to_string();
    let mut status = "accepted";
    let mut codes: Vec<&'static str> = Vec::new();
    let mut raw_line = None;
    match kind {
        "clean" => {}
        "messy" => {
            first = shout_or_whisper(rng, &first);
            last = shout_or_whisper(rng, &last);
            email = format!("  {}@{}  ", local.to_uppercase(), p.domain.to_uppercase());
            phone = if rng.random_bool(0.5) {
                full_width(&phone)
            } else {
                format!(" {} ", p.phone_intl)
            };
            website = p.domain.clone();
            country = c.names.choose(rng).copied().unwrap_or(c.code).to_string();
            company = format!("  {company}\u{00A0} ");
        }
        "free_mail" => {
            email = format!(
                "{local}@{}",
                FREE.choose(rng).copied().unwrap_or("gmail.com")
            );
            codes.push("email.free_provider");
        }
        "role_account" => {
            email = format!(
                "{}@{}",
                ["info", "sales", "support"]
                    .choose(rng)
                    .copied()
                    .unwrap_or("info"),
                p.domain
            );
            codes.push("email.role_account");
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
            email = bad;
            codes.push(code);
            if kind == "bad_email" {
                status = "review";
            } else {
                phone = String::new();
                status = "rejected";
                codes.push("contact.missing");
            }
        }
        "disposable" => {
            email = format!(
                "{local}@{}",
                DISPOSABLE.choose(rng).copied().unwrap_or("mailinator.com")
            );
            status = "review";
            codes.push("email.disposable");
        }
        "bad_phone" => {
            phone = "555-0100".into();
            country = "United States".into();
            status = "review";
            codes.push("phone.invalid_for_region");
        }
        "no_country" => {
            // National number, no country: the tenant's default region (US).
            let us = &COUNTRIES[0];
            (phone, _) = (us.phone)(rng);
            country = String::new();
        }
        "no_contact" => {
            email = String::new();
            phone = String::new();
            status = "rejected";
            codes.push("contact.missing");
        }
        "markup" => {
            company = format!("{company}<script>alert(1)</script>");
            status = "review";
            codes.push("text.markup");
        }
        "formula" => {
            title = "=HYPERLINK(\"http://evil.example\",\"click\")".into();
            status = "review";
            codes.push("text.formula");
        }
        "unknown_country" => {
            country = ["Atlantis", "Narnia", "Wakanda"]
                .choose(rng)
                .copied()
                .unwrap_or("Atlantis")
                .into();
            phone = p.phone_intl.clone();
            status = "review";
            codes.push("country.unknown");
        }
        "too_long" => {
            title = "Senior ".repeat(50);
            status = "rejected";
            codes.push("job_title.too_long");
        }
        "broken_row" => {
            raw_line = Some(format!(
                "{email},{first},{last},{phone},{company},extra,extra,extra,extra,extra,extra,extra,extra"
            ));
            status = "rejected";
            codes.push("record.field_count");
        }
        _ => {}
    }
    let consent = ["yes", "no", ""].choose(rng).copied().unwrap_or("");
    let campaign = ["spring-launch", "webinar-q3", "", "partner"]
        .choose(rng)
        .copied()
        .unwrap_or("");
    Row {
        fields: [
            email,
            first,
            last,
            phone,
            company,
            title,
            website,
            p.city.clone(),
            p.postcode.clone(),
            country,
            consent.to_string(),
            campaign.to_string(),
        ],
        raw_line,
        status,
        codes,
        person: p.id,
        kind,
    }
}

const KINDS: &[(&str, u32)] = &[
    ("clean", 30),
    ("messy", 22),
    ("free_mail", 8),
    ("role_account", 3),
    ("bad_email", 7),
    ("bad_email_no_phone", 4),
    ("disposable", 4),
    ("bad_phone", 5),
    ("no_country", 5),
    ("no_contact", 3),
    ("markup", 2),
    ("formula", 2),
    ("unknown_country", 2),
    ("too_long", 1),
    ("broken_row", 2),
];

/// Generates `count` rows from `seed` (same seed, same rows).
pub fn generate(count: usize, seed: u64) -> Vec<Row> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let total: u32 = KINDS.iter().map(|(_, w)| w).sum();
    let mut people: Vec<Person> = Vec::new();
    let mut rows = Vec::with_capacity(count);
    for _ in 0..count {
        // One row in eight is someone already seen: a duplicate.
        let p = if !people.is_empty() && rng.random_bool(0.125) {
            let i = rng.random_range(0..people.len());
            people[i].clone()
        } else {
            let p = person(&mut rng, people.len() + 1);
            people.push(p.clone());
            p
        };
        let mut pick = rng.random_range(0..total);
        let kind = KINDS
            .iter()
            .find(|(_, w)| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .map_or("clean", |(k, _)| k);
        rows.push(row(&mut rng, &p, kind));
    }
    rows
}

/// Writes the sample CSV and, if asked, its truth.
pub fn write(count: usize, seed: u64, output: &Path, truth: Option<&Path>) -> Result<()> {
    let rows = generate(count, seed);
    let file = std::fs::File::create(output)
        .with_context(|| format!("cannot create {}", output.display()))?;
    let mut out = std::io::BufWriter::new(file);
    {
        let mut w = csv::Writer::from_writer(&mut out);
        w.write_record(HEADER)?;
        w.flush()?;
    }
    for r in &rows {
        match &r.raw_line {
            Some(line) => writeln!(out, "{line}")?,
            None => {
                let mut w = csv::WriterBuilder::new()
                    .has_headers(false)
                    .from_writer(&mut out);
                w.write_record(&r.fields)?;
                w.flush()?;
            }
        }
    }
    out.flush()?;
    if let Some(truth) = truth {
        let mut w = csv::Writer::from_path(truth)
            .with_context(|| format!("cannot create {}", truth.display()))?;
        w.write_record(["line", "status", "codes", "person", "kind"])?;
        for (i, r) in rows.iter().enumerate() {
            w.write_record([
                (i + 1).to_string(),
                r.status.to_string(),
                r.codes.join(";"),
                r.person.to_string(),
                r.kind.to_string(),
            ])?;
        }
        w.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_rows() {
        let a: Vec<[String; 12]> = generate(50, 3).into_iter().map(|r| r.fields).collect();
        let b: Vec<[String; 12]> = generate(50, 3).into_iter().map(|r| r.fields).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn generated_phone_numbers_are_valid_for_their_country() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for c in COUNTRIES {
            for _ in 0..50 {
                let (national, intl) = (c.phone)(&mut rng);
                let p = leadgate_validate::phone::parse(&national, Some(c.code))
                    .unwrap_or_else(|e| panic!("{} {national}: {e:?}", c.code));
                let q = leadgate_validate::phone::parse(&intl, None).unwrap();
                assert_eq!(p.e164, q.e164);
            }
        }
    }

    #[test]
    fn every_kind_appears_in_a_thousand_rows() {
        let rows = generate(1000, 7);
        for (kind, _) in KINDS {
            assert!(rows.iter().any(|r| r.kind == *kind), "{kind}");
        }
        let people: std::collections::HashSet<usize> = rows.iter().map(|r| r.person).collect();
        assert!(people.len() < rows.len(), "some people appear twice");
    }
}
