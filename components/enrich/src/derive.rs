//! Derivations that need no provider: the kind of email address, a company
//! name from a corporate domain, country from the phone's calling code,
//! timezone from country and region, seniority and department from the job
//! title. Each is a small table; each result says how sure it is.

/// `corporate` or `free` for an address's domain.
pub fn email_type(email: &str) -> Option<&'static str> {
    let domain = email.rsplit_once('@')?.1;
    Some(if leadgate_lead::mail::is_free_mail_domain(domain) {
        "free"
    } else {
        "corporate"
    })
}

/// A company name from a registrable domain: `blue-sky-labs.co.uk` →
/// `Blue Sky Labs`. A guess: the caller gives it a low confidence.
pub fn company_from_domain(domain: &str) -> Option<String> {
    let label = domain.split('.').next()?;
    if label.len() < 2 {
        return None;
    }
    let words: Vec<String> = label
        .split(['-', '_'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect(),
                None => String::new(),
            }
        })
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// E.164 calling codes and the region each belongs to (the main region
/// where several share a code; +1 is told apart by area code).
const CALLING_CODES: &[(&str, &str)] = &[
    ("1", "US"),
    ("7", "RU"),
    ("20", "EG"),
    ("27", "ZA"),
    ("30", "GR"),
    ("31", "NL"),
    ("32", "BE"),
    ("33", "FR"),
    ("34", "ES"),
    ("36", "HU"),
    ("39", "IT"),
    ("40", "RO"),
    ("41", "CH"),
    ("43", "AT"),
    ("44", "GB"),
    ("45", "DK"),
    ("46", "SE"),
    ("47", "NO"),
    ("48", "PL"),
    ("49", "DE"),
    ("51", "PE"),
    ("52", "MX"),
    ("53", "CU"),
    ("54", "AR"),
    ("55", "BR"),
    ("56", "CL"),
    ("57", "CO"),
    ("58", "VE"),
    ("60", "MY"),
    ("61", "AU"),
    ("62", "ID"),
    ("63", "PH"),
    ("64", "NZ"),
    ("65", "SG"),
    ("66", "TH"),
    ("81", "JP"),
    ("82", "KR"),
    ("84", "VN"),
    ("86", "CN"),
    ("90", "TR"),
    ("91", "IN"),
    ("92", "PK"),
    ("93", "AF"),
    ("94", "LK"),
    ("95", "MM"),
    ("98", "IR"),
    ("212", "MA"),
    ("213", "DZ"),
    ("216", "TN"),
    ("234", "NG"),
    ("233", "GH"),
    ("254", "KE"),
    ("351", "PT"),
    ("352", "LU"),
    ("353", "IE"),
    ("354", "IS"),
    ("356", "MT"),
    ("357", "CY"),
    ("358", "FI"),
    ("359", "BG"),
    ("370", "LT"),
    ("371", "LV"),
    ("372", "EE"),
    ("380", "UA"),
    ("381", "RS"),
    ("385", "HR"),
    ("386", "SI"),
    ("420", "CZ"),
    ("421", "SK"),
    ("852", "HK"),
    ("886", "TW"),
    ("880", "BD"),
    ("966", "SA"),
    ("971", "AE"),
    ("972", "IL"),
    ("974", "QA"),
];

/// Canadian area codes: +1 numbers with these are in Canada.
const CA_AREA_CODES: &[&str] = &[
    "204", "226", "236", "249", "250", "263", "289", "306", "343", "354", "365", "367", "368",
    "382", "403", "416", "418", "428", "431", "437", "438", "450", "468", "474", "506", "514",
    "519", "548", "579", "581", "584", "587", "604", "613", "639", "647", "672", "683", "705",
    "709", "742", "753", "778", "780", "782", "807", "819", "825", "867", "873", "879", "902",
    "905",
];

/// The region of an E.164 number (`+14155550100` → `US`).
pub fn country_from_phone(e164: &str) -> Option<&'static str> {
    let digits = e164.strip_prefix('+')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() < 7 {
        return None;
    }
    for len in [3, 2, 1] {
        let Some(code) = digits.get(..len) else {
            continue;
        };
        if let Some((_, region)) = CALLING_CODES.iter().find(|(c, _)| *c == code) {
            if *region == "US" && digits.get(1..4).is_some_and(|a| CA_AREA_CODES.contains(&a)) {
                return Some("CA");
            }
            return Some(region);
        }
    }
    None
}

/// One IANA timezone per country: where most of its people live.
const COUNTRY_TZ: &[(&str, &str)] = &[
    ("AE", "Asia/Dubai"),
    ("AR", "America/Argentina/Buenos_Aires"),
    ("AT", "Europe/Vienna"),
    ("AU", "Australia/Sydney"),
    ("BE", "Europe/Brussels"),
    ("BG", "Europe/Sofia"),
    ("BR", "America/Sao_Paulo"),
    ("CA", "America/Toronto"),
    ("CH", "Europe/Zurich"),
    ("CL", "America/Santiago"),
    ("CN", "Asia/Shanghai"),
    ("CO", "America/Bogota"),
    ("CZ", "Europe/Prague"),
    ("DE", "Europe/Berlin"),
    ("DK", "Europe/Copenhagen"),
    ("EE", "Europe/Tallinn"),
    ("EG", "Africa/Cairo"),
    ("ES", "Europe/Madrid"),
    ("FI", "Europe/Helsinki"),
    ("FR", "Europe/Paris"),
    ("GB", "Europe/London"),
    ("GR", "Europe/Athens"),
    ("HK", "Asia/Hong_Kong"),
    ("HR", "Europe/Zagreb"),
    ("HU", "Europe/Budapest"),
    ("ID", "Asia/Jakarta"),
    ("IE", "Europe/Dublin"),
    ("IL", "Asia/Jerusalem"),
    ("IN", "Asia/Kolkata"),
    ("IS", "Atlantic/Reykjavik"),
    ("IT", "Europe/Rome"),
    ("JP", "Asia/Tokyo"),
    ("KE", "Africa/Nairobi"),
    ("KR", "Asia/Seoul"),
    ("LT", "Europe/Vilnius"),
    ("LU", "Europe/Luxembourg"),
    ("LV", "Europe/Riga"),
    ("MX", "America/Mexico_City"),
    ("MY", "Asia/Kuala_Lumpur"),
    ("NG", "Africa/Lagos"),
    ("NL", "Europe/Amsterdam"),
    ("NO", "Europe/Oslo"),
    ("NZ", "Pacific/Auckland"),
    ("PE", "America/Lima"),
    ("PH", "Asia/Manila"),
    ("PK", "Asia/Karachi"),
    ("PL", "Europe/Warsaw"),
    ("PT", "Europe/Lisbon"),
    ("RO", "Europe/Bucharest"),
    ("RS", "Europe/Belgrade"),
    ("RU", "Europe/Moscow"),
    ("SA", "Asia/Riyadh"),
    ("SE", "Europe/Stockholm"),
    ("SG", "Asia/Singapore"),
    ("SI", "Europe/Ljubljana"),
    ("SK", "Europe/Bratislava"),
    ("TH", "Asia/Bangkok"),
    ("TR", "Europe/Istanbul"),
    ("TW", "Asia/Taipei"),
    ("UA", "Europe/Kyiv"),
    ("US", "America/New_York"),
    ("VN", "Asia/Ho_Chi_Minh"),
    ("ZA", "Africa/Johannesburg"),
];

/// Countries that span several timezones: the default is only a guess.
const MULTI_ZONE: &[&str] = &[
    "US", "CA", "AU", "BR", "RU", "MX", "ID", "AR", "CL", "KZ", "NZ", "PT", "ES",
];

/// Timezones of US states, Canadian provinces and Australian states, by
/// their usual abbreviations (what normalization leaves in `region`).
const REGION_TZ: &[(&str, &str, &str)] = &[
    ("US", "AK", "America/Anchorage"),
    ("US", "AL", "America/Chicago"),
    ("US", "AR", "America/Chicago"),
    ("US", "AZ", "America/Phoenix"),
    ("US", "CA", "America/Los_Angeles"),
    ("US", "CO", "America/Denver"),
    ("US", "CT", "America/New_York"),
    ("US", "DC", "America/New_York"),
    ("US", "DE", "America/New_York"),
    ("US", "FL", "America/New_York"),
    ("US", "GA", "America/New_York"),
    ("US", "HI", "Pacific/Honolulu"),
    ("US", "IA", "America/Chicago"),
    ("US", "ID", "America/Boise"),
    ("US", "IL", "America/Chicago"),
    ("US", "IN", "America/Indiana/Indianapolis"),
    ("US", "KS", "America/Chicago"),
    ("US", "KY", "America/New_York"),
    ("US", "LA", "America/Chicago"),
    ("US", "MA", "America/New_York"),
    ("US", "MD", "America/New_York"),
    ("US", "ME", "America/New_York"),
    ("US", "MI", "America/Detroit"),
    ("US", "MN", "America/Chicago"),
    ("US", "MO", "America/Chicago"),
    ("US", "MS", "America/Chicago"),
    ("US", "MT", "America/Denver"),
    ("US", "NC", "America/New_York"),
    ("US", "ND", "America/Chicago"),
    ("US", "NE", "America/Chicago"),
    ("US", "NH", "America/New_York"),
    ("US", "NJ", "America/New_York"),
    ("US", "NM", "America/Denver"),
    ("US", "NV", "America/Los_Angeles"),
    ("US", "NY", "America/New_York"),
    ("US", "OH", "America/New_York"),
    ("US", "OK", "America/Chicago"),
    ("US", "OR", "America/Los_Angeles"),
    ("US", "PA", "America/New_York"),
    ("US", "RI", "America/New_York"),
    ("US", "SC", "America/New_York"),
    ("US", "SD", "America/Chicago"),
    ("US", "TN", "America/Chicago"),
    ("US", "TX", "America/Chicago"),
    ("US", "UT", "America/Denver"),
    ("US", "VA", "America/New_York"),
    ("US", "VT", "America/New_York"),
    ("US", "WA", "America/Los_Angeles"),
    ("US", "WI", "America/Chicago"),
    ("US", "WV", "America/New_York"),
    ("US", "WY", "America/Denver"),
    ("CA", "AB", "America/Edmonton"),
    ("CA", "BC", "America/Vancouver"),
    ("CA", "MB", "America/Winnipeg"),
    ("CA", "NB", "America/Moncton"),
    ("CA", "NL", "America/St_Johns"),
    ("CA", "NS", "America/Halifax"),
    ("CA", "ON", "America/Toronto"),
    ("CA", "QC", "America/Toronto"),
    ("CA", "SK", "America/Regina"),
    ("AU", "NSW", "Australia/Sydney"),
    ("AU", "VIC", "Australia/Melbourne"),
    ("AU", "QLD", "Australia/Brisbane"),
    ("AU", "WA", "Australia/Perth"),
    ("AU", "SA", "Australia/Adelaide"),
    ("AU", "TAS", "Australia/Hobart"),
    ("AU", "ACT", "Australia/Sydney"),
    ("AU", "NT", "Australia/Darwin"),
];

/// US cities that tell the timezone when the state is missing.
const CITY_TZ: &[(&str, &str, &str)] = &[
    ("US", "san francisco", "America/Los_Angeles"),
    ("US", "los angeles", "America/Los_Angeles"),
    ("US", "seattle", "America/Los_Angeles"),
    ("US", "san diego", "America/Los_Angeles"),
    ("US", "chicago", "America/Chicago"),
    ("US", "austin", "America/Chicago"),
    ("US", "dallas", "America/Chicago"),
    ("US", "houston", "America/Chicago"),
    ("US", "denver", "America/Denver"),
    ("US", "new york", "America/New_York"),
    ("US", "boston", "America/New_York"),
    ("US", "atlanta", "America/New_York"),
    ("US", "miami", "America/New_York"),
    ("CA", "vancouver", "America/Vancouver"),
    ("CA", "calgary", "America/Edmonton"),
    ("AU", "perth", "Australia/Perth"),
    ("AU", "melbourne", "Australia/Melbourne"),
];

/// The timezone of a country (and region or city where the country spans
/// several), with a confidence: 0.9 when the country has one zone or the
/// region/city decides it, 0.5 for a multi-zone country's default.
pub fn timezone(
    country: &str,
    region: Option<&str>,
    city: Option<&str>,
) -> Option<(&'static str, f64)> {
    if let Some(region) = region {
        let r = region.trim();
        if let Some((_, _, tz)) = REGION_TZ
            .iter()
            .find(|(c, code, _)| *c == country && code.eq_ignore_ascii_case(r))
        {
            return Some((tz, 0.9));
        }
    }
    if let Some(city) = city {
        let c = city.trim();
        if let Some((_, _, tz)) = CITY_TZ
            .iter()
            .find(|(k, name, _)| *k == country && name.eq_ignore_ascii_case(c))
        {
            return Some((tz, 0.85));
        }
    }
    let (_, tz) = COUNTRY_TZ.iter().find(|(c, _)| *c == country)?;
    Some((
        tz,
        if MULTI_ZONE.contains(&country) {
            0.5
        } else {
            0.9
        },
    ))
}

/// Seniority levels, most senior first; the first whose words appear in a
/// title wins. Words are matched whole, on the lowercased title.
const SENIORITY: &[(&str, &[&str])] = &[
    (
        "c_level",
        &[
            "ceo",
            "cto",
            "cfo",
            "coo",
            "cmo",
            "cio",
            "ciso",
            "cro",
            "cpo",
            "chief",
            "founder",
            "co-founder",
            "cofounder",
            "owner",
            "president",
            "managing director",
            "geschäftsführer",
            "geschaftsfuhrer",
            "pdg",
            "directeur général",
            "directeur general",
            "partner",
        ],
    ),
    (
        "vp",
        &["vp", "svp", "evp", "vice president", "vice-president"],
    ),
    (
        "director",
        &[
            "director",
            "head",
            "directeur",
            "directora",
            "director",
            "leiter",
            "leiterin",
        ],
    ),
    (
        "manager",
        &[
            "manager",
            "lead",
            "supervisor",
            "team lead",
            "gerente",
            "responsable",
        ],
    ),
    (
        "senior",
        &["senior", "sr", "sr.", "principal", "staff", "architect"],
    ),
    (
        "entry",
        &[
            "intern",
            "junior",
            "jr",
            "jr.",
            "trainee",
            "assistant",
            "graduate",
            "werkstudent",
            "apprentice",
        ],
    ),
];

/// Departments and the words that place a title in them, in order of
/// precedence.
const DEPARTMENTS: &[(&str, &[&str])] = &[
    (
        "sales",
        &[
            "sales",
            "account executive",
            "account manager",
            "business development",
            "bdr",
            "sdr",
            "revenue",
            "vertrieb",
            "ventes",
            "ventas",
            "cro",
        ],
    ),
    (
        "marketing",
        &[
            "marketing",
            "growth",
            "demand generation",
            "brand",
            "content",
            "seo",
            "cmo",
            "communications",
            "pr",
        ],
    ),
    (
        "engineering",
        &[
            "engineer",
            "engineering",
            "developer",
            "software",
            "devops",
            "cto",
            "architect",
            "programmer",
            "sre",
            "qa",
        ],
    ),
    (
        "it",
        &[
            "it",
            "information technology",
            "cio",
            "ciso",
            "security",
            "systems administrator",
            "sysadmin",
            "infrastructure",
            "network",
        ],
    ),
    (
        "data",
        &[
            "data",
            "analyst",
            "analytics",
            "scientist",
            "bi",
            "business intelligence",
        ],
    ),
    ("product", &["product", "cpo", "ux", "design", "designer"]),
    (
        "finance",
        &[
            "finance",
            "financial",
            "cfo",
            "accountant",
            "accounting",
            "controller",
            "treasury",
            "buchhaltung",
        ],
    ),
    (
        "operations",
        &["operations", "coo", "ops", "logistics", "supply chain"],
    ),
    (
        "procurement",
        &["procurement", "purchasing", "buyer", "sourcing", "einkauf"],
    ),
    (
        "hr",
        &[
            "hr",
            "human resources",
            "people",
            "talent",
            "recruiter",
            "recruiting",
            "chro",
        ],
    ),
    (
        "legal",
        &["legal", "counsel", "lawyer", "attorney", "compliance"],
    ),
    (
        "customer_success",
        &[
            "customer success",
            "support",
            "customer service",
            "customer experience",
        ],
    ),
    (
        "executive",
        &[
            "ceo",
            "founder",
            "co-founder",
            "owner",
            "president",
            "managing director",
            "geschäftsführer",
            "general manager",
        ],
    ),
];

/// The title lowercased, punctuation other than `-` and `.` made a space.
fn lowered(title: &str) -> String {
    title
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                ' '
            }
        })
        .collect()
}

/// Whether `phrase` (words separated by single spaces) stands in `words`
/// as whole words, in order.
fn has_phrase(words: &[&str], phrase: &str) -> bool {
    let n = phrase.split(' ').count();
    if n == 1 {
        return words.contains(&phrase);
    }
    words
        .windows(n)
        .any(|w| w.iter().copied().eq(phrase.split(' ')))
}

fn first_match(words: &[&str], table: &[(&'static str, &[&str])]) -> Option<&'static str> {
    table
        .iter()
        .find(|(_, phrases)| phrases.iter().any(|p| has_phrase(words, p)))
        .map(|(name, _)| *name)
}

/// Seniority and department of a job title; `None` for what it does not
/// tell. "VP Sales" → (vp, sales); "Software Engineer" → (None, engineering).
pub fn title(title: &str) -> (Option<&'static str>, Option<&'static str>) {
    let lowered = lowered(title);
    let words: Vec<&str> = lowered.split_whitespace().collect();
    (
        first_match(&words, SENIORITY),
        first_match(&words, DEPARTMENTS),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_types() {
        assert_eq!(email_type("a@gmail.com"), Some("free"));
        assert_eq!(email_type("a@GMX.de"), Some("free"));
        assert_eq!(email_type("a@acme.com"), Some("corporate"));
        assert_eq!(email_type("no-at-sign"), None);
    }

    #[test]
    fn companies_from_domains() {
        assert_eq!(
            company_from_domain("blue-sky-labs.co.uk").as_deref(),
            Some("Blue Sky Labs")
        );
        assert_eq!(company_from_domain("acme.com").as_deref(), Some("Acme"));
        assert_eq!(company_from_domain("x.com"), None);
    }

    #[test]
    fn countries_from_phones() {
        assert_eq!(country_from_phone("+14155550100"), Some("US"));
        assert_eq!(country_from_phone("+14165550100"), Some("CA"));
        assert_eq!(country_from_phone("+442079460000"), Some("GB"));
        assert_eq!(country_from_phone("+35312345678"), Some("IE"));
        assert_eq!(country_from_phone("+4930123456"), Some("DE"));
        assert_eq!(country_from_phone("4930123456"), None);
        assert_eq!(country_from_phone("+49"), None);
        assert_eq!(country_from_phone("+99912345678"), None);
    }

    #[test]
    fn timezones() {
        assert_eq!(timezone("DE", None, None), Some(("Europe/Berlin", 0.9)));
        assert_eq!(
            timezone("US", Some("CA"), None),
            Some(("America/Los_Angeles", 0.9))
        );
        assert_eq!(
            timezone("US", None, Some("Chicago")),
            Some(("America/Chicago", 0.85))
        );
        assert_eq!(timezone("US", None, None), Some(("America/New_York", 0.5)));
        assert_eq!(timezone("ZZ", None, None), None);
    }

    #[test]
    fn titles() {
        assert_eq!(title("VP Sales"), (Some("vp"), Some("sales")));
        assert_eq!(
            title("Head of Marketing"),
            (Some("director"), Some("marketing"))
        );
        assert_eq!(title("CTO"), (Some("c_level"), Some("engineering")));
        assert_eq!(title("Software Engineer"), (None, Some("engineering")));
        assert_eq!(title("Sr. Data Analyst"), (Some("senior"), Some("data")));
        assert_eq!(
            title("Procurement Manager"),
            (Some("manager"), Some("procurement"))
        );
        assert_eq!(title("CEO"), (Some("c_level"), Some("executive")));
        assert_eq!(
            title("Operations Director"),
            (Some("director"), Some("operations"))
        );
        assert_eq!(
            title("Geschäftsführer"),
            (Some("c_level"), Some("executive"))
        );
        // Whole words only: "Sprinter" is not a PR title, "Itinerary" not IT.
        assert_eq!(title("Itinerary Planner"), (None, None));
        assert_eq!(title(""), (None, None));
    }
}
