//! Where and who: country names to ISO 3166 alpha-2, websites to registrable
//! domains, company names to a matching key.

use crate::email::{check_hostname, registrable_domain};
use celes::Country;
use std::str::FromStr;

/// Common spellings `celes` does not know.
const EXTRA_COUNTRIES: &[(&str, &str)] = &[
    ("usa", "US"),
    ("us", "US"),
    ("america", "US"),
    ("unitedstates", "US"),
    ("unitedstatesofamerica", "US"),
    ("uk", "GB"),
    ("unitedkingdom", "GB"),
    ("greatbritain", "GB"),
    ("britain", "GB"),
    ("england", "GB"),
    ("scotland", "GB"),
    ("wales", "GB"),
    ("northernireland", "GB"),
    ("deutschland", "DE"),
    ("holland", "NL"),
    ("thenetherlands", "NL"),
    ("netherlands", "NL"),
    ("southkorea", "KR"),
    ("korea", "KR"),
    ("russia", "RU"),
    ("czechia", "CZ"),
    ("czechrepublic", "CZ"),
    ("vietnam", "VN"),
    ("taiwan", "TW"),
    ("bolivia", "BO"),
    ("tanzania", "TZ"),
    ("syria", "SY"),
    ("laos", "LA"),
    ("moldova", "MD"),
    ("españa", "ES"),
    ("espana", "ES"),
    ("france", "FR"),
    ("italia", "IT"),
    ("schweiz", "CH"),
    ("suisse", "CH"),
    ("österreich", "AT"),
    ("osterreich", "AT"),
    ("brasil", "BR"),
    ("méxico", "MX"),
    ("mexico", "MX"),
    ("uae", "AE"),
    ("ivorycoast", "CI"),
    ("turkey", "TR"),
    ("türkiye", "TR"),
    ("turkiye", "TR"),
];

/// ISO 3166-1 alpha-2 for a country name, alpha-2/alpha-3 code or numeric code.
pub fn country_code(raw: &str) -> Option<String> {
    let key: String = raw
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect();
    if key.is_empty() {
        return None;
    }
    if let Some((_, code)) = EXTRA_COUNTRIES.iter().find(|(k, _)| *k == key) {
        return Some((*code).to_string());
    }
    Country::from_str(&key)
        .or_else(|_| Country::from_alias(&key))
        .ok()
        .map(|c| c.alpha2.to_string())
}

/// A website or bare host reduced to its lowercase ASCII registrable domain.
pub fn website_domain(raw: &str) -> Result<String, (&'static str, String)> {
    let mut s = raw.trim();
    if let Some(pos) = s.find("://") {
        s = &s[pos + 3..];
    }
    let s = s.split(['/', '?', '#']).next().unwrap_or("");
    let s = s.rsplit('@').next().unwrap_or(s); // userinfo
    let host = match s.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => s,
    };
    if host.is_empty() {
        return Err(("website.syntax", format!("'{raw}' has no host name")));
    }
    let ascii = idna::domain_to_ascii_strict(host).map_err(|_| {
        (
            "website.syntax",
            format!("'{raw}' is not a valid host name"),
        )
    })?;
    let ascii =
        check_hostname(&ascii).map_err(|(_, why)| ("website.syntax", format!("'{raw}' {why}")))?;
    if !ascii.contains('.') {
        return Err(("website.syntax", format!("'{raw}' has no top-level domain")));
    }
    registrable_domain(&ascii).map_err(|(code, why)| {
        let code = if code == "domain.unknown_suffix" {
            "website.unknown_tld"
        } else {
            "website.syntax"
        };
        (code, format!("'{raw}' {why}"))
    })
}

/// Legal-form words dropped from a company's matching key, lowercase and
/// without dots ("S.A." is compared as "sa").
const LEGAL_SUFFIXES: &[&str] = &[
    "inc",
    "incorporated",
    "llc",
    "llp",
    "lp",
    "ltd",
    "limited",
    "corp",
    "corporation",
    "co",
    "company",
    "plc",
    "gmbh",
    "ag",
    "kg",
    "ohg",
    "ug",
    "ev",
    "se",
    "sa",
    "sas",
    "sarl",
    "srl",
    "spa",
    "sl",
    "bv",
    "nv",
    "ab",
    "as",
    "asa",
    "oy",
    "oyj",
    "aps",
    "pty",
    "pte",
    "kk",
    "bhd",
    "sdn",
    "pvt",
    "ltda",
    "cv",
    "kft",
    "zrt",
    "sro",
    "spzoo",
    "doo",
    "ooo",
    "group",
    "holding",
    "holdings",
];

/// A company's matching key: lowercase words without punctuation, legal-form
/// words and a leading "the" removed. "ACME, Inc." and "Acme Incorporated"
/// share the key "acme". Never empty when the name has letters: a name that is
/// only legal words keeps them.
pub fn company_key(name: &str) -> Option<String> {
    let lower = name.to_lowercase().replace('&', " and ");
    let words: Vec<String> = lower
        .split(|c: char| c.is_whitespace() || c == ',' || c == '/' || c == '(' || c == ')')
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric())
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .collect();
    // "s.p.a." or "sp. z o.o." split into pieces: join consecutive short pieces
    // only when they spell a legal form.
    let mut kept: Vec<&str> = words.iter().map(String::as_str).collect();
    let mut stripped = false;
    while kept.len() > 1 {
        let last = kept[kept.len() - 1];
        let two = kept.len() >= 3 && {
            let joined = format!("{}{}", kept[kept.len() - 2], last);
            LEGAL_SUFFIXES.contains(&joined.as_str())
        };
        if two {
            kept.truncate(kept.len() - 2);
            stripped = true;
        } else if LEGAL_SUFFIXES.contains(&last) || (stripped && last == "and") {
            // "GmbH & Co. KG": the "&" joined two legal forms.
            kept.pop();
            stripped = true;
        } else {
            break;
        }
    }
    if kept.len() > 1 && kept[0] == "the" {
        kept.remove(0);
    }
    let key = kept.join(" ");
    if key.is_empty() { None } else { Some(key) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countries_from_names_and_codes() {
        for (raw, want) in [
            ("United States", "US"),
            ("usa", "US"),
            ("U.S.A.", "US"),
            ("DEU", "DE"),
            ("Germany", "DE"),
            ("Deutschland", "DE"),
            ("gb", "GB"),
            ("United Kingdom", "GB"),
            ("France", "FR"),
            ("Japan", "JP"),
            ("276", "DE"),
            ("Brasil", "BR"),
        ] {
            assert_eq!(country_code(raw).as_deref(), Some(want), "{raw}");
        }
        assert_eq!(country_code("Atlantis"), None);
        assert_eq!(country_code("  "), None);
    }

    #[test]
    fn websites_reduce_to_registrable_domains() {
        assert_eq!(
            website_domain("https://www.Acme.co.uk/about?x=1").unwrap(),
            "acme.co.uk"
        );
        assert_eq!(website_domain("shop.acme.com:8080").unwrap(), "acme.com");
        assert_eq!(
            website_domain("http://bücher.de").unwrap(),
            "xn--bcher-kva.de"
        );
        assert_eq!(
            website_domain("acme.notatld").unwrap_err().0,
            "website.unknown_tld"
        );
        assert_eq!(website_domain("not a url").unwrap_err().0, "website.syntax");
        assert_eq!(website_domain("https://").unwrap_err().0, "website.syntax");
    }

    #[test]
    fn company_keys_drop_legal_forms() {
        assert_eq!(company_key("ACME, Inc.").as_deref(), Some("acme"));
        assert_eq!(company_key("Acme Incorporated").as_deref(), Some("acme"));
        assert_eq!(
            company_key("Müller GmbH & Co. KG").as_deref(),
            Some("müller")
        );
        assert_eq!(
            company_key("Banco Exemplo S.A.").as_deref(),
            Some("banco exemplo")
        );
        assert_eq!(company_key("Fiat S.p.A.").as_deref(), Some("fiat"));
        assert_eq!(
            company_key("The Widget Company Ltd").as_deref(),
            Some("widget")
        );
        assert_eq!(
            company_key("Johnson & Johnson").as_deref(),
            Some("johnson and johnson")
        );
        assert_eq!(company_key("Holdings Ltd").as_deref(), Some("holdings"));
        assert_eq!(company_key("..."), None);
    }
}
