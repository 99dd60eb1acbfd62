//! The people a sample is about: companies, titles, mail domains, the
//! countries they live in (with valid phone numbers and postcodes), their
//! addresses, and relatives who share a household.

use crate::names::*;
use rand::Rng;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;

pub(crate) const COMPANY_HEADS: &[&str] = &[
    "Acme", "Globe", "Init", "Umbr", "Stark", "Wayne", "Hool", "Vandel", "Soyl", "Cyber", "Tyrel",
    "Wonk", "Oscor", "Pied", "Massi", "Apert", "Nakat", "Monar", "Bluth", "Dunder", "Vertex",
    "Quant", "Nimbus", "Orbit", "Pixel", "Zephyr", "Cobalt", "Lumen", "Helix", "Vector", "Kinet",
    "Axiom", "Nova", "Prism",
];
pub(crate) const COMPANY_TAILS: &[&str] = &[
    "trix", "xa", "rode", "ix", "well", "works", "ify", "ay", "ia", "dyne", "corp", "avator", "ly",
    "tech", "soft", "labs", "io", "net", "sys", "ware", "data", "logic", "point", "scale", "mind",
    "flow",
];
pub(crate) const SUFFIXES: &[&str] = &[
    "Inc.", "LLC", "Ltd", "GmbH", "S.A.", "B.V.", "SAS", "Corp.", "",
];
pub(crate) const TITLES: &[&str] = &[
    "VP Sales",
    "Head of Marketing",
    "CTO",
    "Software Engineer",
    "Procurement Manager",
    "CEO",
    "Operations Director",
    "Data Analyst",
];
pub(crate) const FREE: &[&str] = &[
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "hotmail.co.uk",
    "gmx.de",
    "icloud.com",
];
pub(crate) const DISPOSABLE: &[&str] = &[
    "mailinator.com",
    "guerrillamail.com",
    "10minutemail.com",
    "yopmail.com",
];

/// A country: ISO code, ways people write it, a website TLD, cities, and a
/// generator of valid national phone numbers with their E.164 prefix.
pub(crate) struct Country {
    pub(crate) code: &'static str,
    pub(crate) names: &'static [&'static str],
    pub(crate) tld: &'static str,
    pub(crate) cities: &'static [&'static str],
    /// (national number, international form)
    pub(crate) phone: fn(&mut ChaCha8Rng) -> (String, String),
    pub(crate) postcode: fn(&mut ChaCha8Rng) -> String,
}

pub(crate) fn digits(rng: &mut ChaCha8Rng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

pub(crate) const COUNTRIES: &[Country] = &[
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
            let (n, line) = (digits(r, 3), digits(r, 4));
            (format!("020 7{n} {line}"), format!("+44 20 7{n} {line}"))
        },
        postcode: |r| {
            let l = |r: &mut ChaCha8Rng| char::from(b'A' + r.random_range(0..26u8));
            format!(
                "{}{}{} {}{}{}",
                l(r),
                l(r),
                r.random_range(1..20),
                r.random_range(1..10),
                l(r),
                l(r)
            )
        },
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
        postcode: |r| format!("{:05}", r.random_range(1000..96000)),
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
        postcode: |r| {
            let l = |r: &mut ChaCha8Rng| char::from(b'A' + r.random_range(0..26u8));
            format!("{} {}{}", r.random_range(1000..9999), l(r), l(r))
        },
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
pub(crate) struct Person {
    pub(crate) id: usize,
    pub(crate) first: String,
    pub(crate) last: String,
    /// The name in its own script, for some people.
    pub(crate) native: Option<(String, String)>,
    pub(crate) company: String,
    pub(crate) company_base: String,
    pub(crate) domain: String,
    pub(crate) title: String,
    pub(crate) country: usize,
    pub(crate) street: String,
    pub(crate) city: String,
    pub(crate) postcode: String,
    pub(crate) phone_national: String,
    pub(crate) phone_intl: String,
    /// A private address, used when they sign up with free mail.
    pub(crate) personal_local: String,
    pub(crate) personal_domain: &'static str,
}

pub(crate) fn slug(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

pub(crate) fn ascii_local(s: &str) -> String {
    deunicode::deunicode(s)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .flat_map(|c| c.to_lowercase())
        .collect()
}

pub(crate) const STREETS: &[&str] = &[
    "Main", "Oak", "Maple", "Cedar", "Park", "Church", "Mill", "High", "Station", "Victoria",
    "King", "Queen", "Bridge", "Elm", "Market", "Green", "Chestnut", "Lake", "Hill", "River",
];
pub(crate) const STREET_TYPES: &[&str] = &["Street", "Road", "Avenue", "Lane", "Drive", "Way"];

pub(crate) fn random_street(rng: &mut ChaCha8Rng) -> String {
    format!(
        "{} {} {}",
        rng.random_range(1..300),
        STREETS.choose(rng).copied().unwrap_or("Main"),
        STREET_TYPES.choose(rng).copied().unwrap_or("Street")
    )
}

pub(crate) fn person(rng: &mut ChaCha8Rng, id: usize) -> Person {
    let country = rng.random_range(0..COUNTRIES.len());
    let c = &COUNTRIES[country];
    let base = format!(
        "{}{}",
        COMPANY_HEADS.choose(rng).copied().unwrap_or("Acme"),
        COMPANY_TAILS.choose(rng).copied().unwrap_or("trix")
    );
    let suffix = SUFFIXES.choose(rng).copied().unwrap_or("");
    let (phone_national, phone_intl) = (c.phone)(rng);
    let (first, last, native) = if rng.random_bool(0.03) {
        let (nf, nl, lf, ll) = native_name(rng);
        (lf, ll, Some((nf, nl)))
    } else {
        (
            FIRST.choose(rng).copied().unwrap_or("Anna").to_string(),
            LAST.choose(rng).copied().unwrap_or("Smith").to_string(),
            None,
        )
    };
    let personal_local = match rng.random_range(0..3) {
        0 => format!("{}.{}", ascii_local(&first), ascii_local(&last)),
        1 => format!(
            "{}{}{}",
            ascii_local(&first),
            ascii_local(&last),
            rng.random_range(1..99)
        ),
        _ => format!(
            "{}{}",
            &ascii_local(&first)[..1.min(first.len())],
            ascii_local(&last)
        ),
    };
    Person {
        id,
        first,
        last,
        native,
        company: format!("{base} {suffix}").trim().to_string(),
        domain: format!("{}.{}", slug(&base), c.tld),
        company_base: base,
        title: TITLES.choose(rng).copied().unwrap_or("CEO").to_string(),
        country,
        street: random_street(rng),
        city: c.cities.choose(rng).copied().unwrap_or("").to_string(),
        postcode: (c.postcode)(rng),
        phone_national,
        phone_intl,
        personal_local,
        personal_domain: FREE.choose(rng).copied().unwrap_or("gmail.com"),
    }
}

/// Someone who lives with `p`: same family name and address, sometimes the
/// same landline. A hard case: the two are different people.
pub(crate) fn relative(rng: &mut ChaCha8Rng, id: usize, p: &Person) -> Person {
    let mut r = person(rng, id);
    r.last.clone_from(&p.last);
    r.native = None;
    r.country = p.country;
    r.street.clone_from(&p.street);
    r.city.clone_from(&p.city);
    r.postcode.clone_from(&p.postcode);
    if rng.random_bool(0.25) {
        r.phone_national.clone_from(&p.phone_national);
        r.phone_intl.clone_from(&p.phone_intl);
    } else {
        (r.phone_national, r.phone_intl) = (COUNTRIES[p.country].phone)(rng);
    }
    r.personal_local = format!("{}.{}", ascii_local(&r.first), ascii_local(&r.last));
    r
}
