//! Which input column feeds which canonical field.
//!
//! Headers are compared by their letters and digits only, lowercased
//! (`E-mail`, `e_mail` and `EMail` are all `email`). Explicit `--map
//! column=field` entries win over aliases; columns that match nothing are
//! kept as custom fields under their original header.

use crate::IngestError;
use leadgate_lead::TEXT_FIELDS;

/// Where a column's value goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A canonical text field (one of `TEXT_FIELDS`).
    Field(&'static str),
    /// The sender's own id for the record (kept as external id `input`).
    Id,
    Source,
    ReceivedAt,
    /// A consent flag for this purpose.
    Consent(String),
    /// An identifier in this external system.
    ExternalId(String),
    /// A custom field under this key.
    Custom(String),
    /// Dropped on purpose.
    Ignore,
}

impl Target {
    /// A short description for the column report.
    pub fn describe(&self) -> String {
        match self {
            Target::Field(f) => (*f).to_string(),
            Target::Id => "id".into(),
            Target::Source => "source".into(),
            Target::ReceivedAt => "received_at".into(),
            Target::Consent(p) => format!("consent.{p}"),
            Target::ExternalId(s) => format!("external_id.{s}"),
            Target::Custom(k) => format!("custom.{k}"),
            Target::Ignore => "ignored".into(),
        }
    }
}

/// Header aliases, by normalized header.
const ALIASES: &[(&str, &[&str])] = &[
    (
        "email",
        &[
            "email",
            "emailaddress",
            "mail",
            "workemail",
            "businessemail",
            "emailaddr",
            "contactemail",
        ],
    ),
    (
        "phone",
        &[
            "phone",
            "phonenumber",
            "telephone",
            "tel",
            "telephonenumber",
            "mobile",
            "mobilephone",
            "mobilenumber",
            "cell",
            "cellphone",
            "workphone",
            "businessphone",
            "contactnumber",
        ],
    ),
    (
        "phone_extension",
        &["phoneextension", "extension", "ext", "phoneext"],
    ),
    (
        "first_name",
        &[
            "firstname",
            "givenname",
            "first",
            "fname",
            "forename",
            "prenom",
            "vorname",
        ],
    ),
    (
        "last_name",
        &[
            "lastname",
            "surname",
            "familyname",
            "last",
            "lname",
            "nachname",
            "nom",
        ],
    ),
    (
        "full_name",
        &["name", "fullname", "contactname", "leadname", "personname"],
    ),
    (
        "job_title",
        &["jobtitle", "title", "position", "role", "designation"],
    ),
    (
        "company",
        &[
            "company",
            "companyname",
            "organization",
            "organisation",
            "org",
            "account",
            "accountname",
            "employer",
            "business",
            "firma",
        ],
    ),
    (
        "website",
        &[
            "website",
            "url",
            "web",
            "companywebsite",
            "homepage",
            "site",
            "websiteurl",
        ],
    ),
    ("domain", &["domain", "companydomain", "emaildomain"]),
    (
        "street",
        &[
            "street",
            "address",
            "streetaddress",
            "address1",
            "addressline1",
            "addr",
            "strasse",
            "streetnumber",
            "housenumber",
            "houseno",
            "streetno",
            "address2",
            "addressline2",
        ],
    ),
    (
        "city",
        &["city", "town", "locality", "suburb", "ort", "ville"],
    ),
    (
        "postcode",
        &["postcode", "zip", "zipcode", "postalcode", "plz", "postal"],
    ),
    (
        "region",
        &[
            "region",
            "state",
            "province",
            "county",
            "stateprovince",
            "stateorprovince",
            "stateregion",
        ],
    ),
    (
        "country",
        &[
            "country",
            "countrycode",
            "nation",
            "countryname",
            "land",
            "pays",
        ],
    ),
];

/// Fields several columns may feed, joined with a space in column order.
pub const JOINED: &[&str] = &["street"];

/// Builds the target of a metadata column.
type MakeTarget = fn() -> Target;

const META: &[(&str, MakeTarget)] = &[
    ("id", || Target::Id),
    ("leadid", || Target::Id),
    ("source", || Target::Source),
    ("leadsource", || Target::Source),
    ("channel", || Target::Source),
    ("receivedat", || Target::ReceivedAt),
    ("createdat", || Target::ReceivedAt),
    ("created", || Target::ReceivedAt),
    ("createddate", || Target::ReceivedAt),
    ("submittedat", || Target::ReceivedAt),
    ("timestamp", || Target::ReceivedAt),
    ("date", || Target::ReceivedAt),
    ("crmid", || Target::ExternalId("crm".into())),
    ("externalid", || Target::ExternalId("external".into())),
    ("hubspotid", || Target::ExternalId("hubspot".into())),
    ("salesforceid", || Target::ExternalId("salesforce".into())),
    ("sfdcid", || Target::ExternalId("salesforce".into())),
    ("consent", || Target::Consent("processing".into())),
    ("gdprconsent", || Target::Consent("processing".into())),
    ("emailconsent", || Target::Consent("email-marketing".into())),
    ("emailoptin", || Target::Consent("email-marketing".into())),
    ("marketingconsent", || Target::Consent("marketing".into())),
    ("marketingoptin", || Target::Consent("marketing".into())),
    ("optin", || Target::Consent("marketing".into())),
    ("phoneconsent", || Target::Consent("phone-marketing".into())),
];

/// The comparison form of a header: lowercase letters and digits.
pub fn normalize_header(h: &str) -> String {
    h.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// The alias target of a header, if any.
pub fn alias(header: &str) -> Option<Target> {
    let key = normalize_header(header);
    if key.is_empty() {
        return None;
    }
    for (field, names) in ALIASES {
        if names.iter().any(|n| n.eq_ignore_ascii_case(&key)) {
            return Some(Target::Field(field));
        }
    }
    META.iter().find(|(n, _)| *n == key).map(|(_, t)| t())
}

/// Parses the field side of `--map`: a canonical field, `id`, `source`,
/// `received_at`, `consent.PURPOSE`, `external_id.SYSTEM`, `custom.KEY` or
/// `ignore`.
pub fn parse_target(field: &str) -> Option<Target> {
    let f = field.trim();
    if let Some(name) = TEXT_FIELDS.iter().find(|n| **n == f) {
        return Some(Target::Field(name));
    }
    let rest = |prefix: &str| {
        f.strip_prefix(prefix)
            .filter(|r| !r.is_empty())
            .map(str::to_string)
    };
    Some(match f {
        "id" => Target::Id,
        "source" => Target::Source,
        "received_at" => Target::ReceivedAt,
        "ignore" => Target::Ignore,
        _ => {
            if let Some(p) = rest("consent.") {
                Target::Consent(p)
            } else if let Some(s) = rest("external_id.") {
                Target::ExternalId(s)
            } else if let Some(k) = rest("custom.") {
                Target::Custom(k)
            } else {
                return None;
            }
        }
    })
}

/// Explicit `column=field` mappings.
#[derive(Debug, Default)]
pub struct Mapping {
    explicit: Vec<(String, Target)>,
    /// The keys of JSON records seen so far and what they map to: the
    /// records of a request or a file share their keys, and working one
    /// out (normalized, then the explicit mappings and the aliases) costs
    /// more than reading its value.
    keys: std::sync::Mutex<std::collections::HashMap<String, KeyOf>>,
}

impl Clone for Mapping {
    fn clone(&self) -> Mapping {
        Mapping {
            explicit: self.explicit.clone(),
            keys: Default::default(),
        }
    }
}

/// At most this many JSON keys are remembered (a client can send any):
/// past it, the memory starts over.
const KEYS_KEPT: usize = 1024;
/// Longer keys are worked out each time, not remembered: a thousand keys
/// of a megabyte each would otherwise stay in memory.
const KEY_KEPT_BYTES: usize = 128;

/// What a JSON record's key maps to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KeyOf {
    /// `custom`, `consent` or `external_ids` (however spelled), whose
    /// object or list values hold several fields.
    pub(crate) group: Option<Group>,
    /// Where a plain value goes.
    pub(crate) target: Target,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    Custom,
    Consent,
    ExternalIds,
}

impl Mapping {
    /// Parses `--map` arguments; an error names the bad one.
    pub fn parse<S: AsRef<str>>(specs: &[S]) -> Result<Mapping, IngestError> {
        let mut explicit = Vec::new();
        for spec in specs {
            let spec = spec.as_ref();
            let err = |reason: String| IngestError::Map {
                spec: spec.to_string(),
                reason,
            };
            let (column, field) = spec
                .split_once('=')
                .ok_or_else(|| err("expected COLUMN=FIELD, e.g. 'Work Email=email'".into()))?;
            if column.trim().is_empty() {
                return Err(err("the column name is empty".into()));
            }
            let target = parse_target(field).ok_or_else(|| {
                err(format!(
                    "'{field}' is not a field; use one of {}, id, source, received_at, consent.PURPOSE, external_id.SYSTEM, custom.KEY or ignore",
                    TEXT_FIELDS.join(", ")
                ))
            })?;
            explicit.push((column.trim().to_string(), target));
        }
        Ok(Mapping {
            explicit,
            keys: Default::default(),
        })
    }

    /// What a JSON record's `key` maps to: a group, and the target of a
    /// plain value (a canonical snake_case name as it is, else as a
    /// column header would map).
    pub(crate) fn json_key(&self, key: &str) -> KeyOf {
        // A poisoned lock only means another thread panicked while it
        // held it; the map is still whole.
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = keys.get(key) {
            return k.clone();
        }
        let group = match normalize_header(key).as_str() {
            "custom" => Some(Group::Custom),
            "consent" => Some(Group::Consent),
            "externalids" => Some(Group::ExternalIds),
            _ => None,
        };
        let target = parse_target(key)
            .filter(|t| !matches!(t, Target::Custom(_) | Target::Ignore))
            .unwrap_or_else(|| self.target(key));
        let k = KeyOf { group, target };
        if key.len() <= KEY_KEPT_BYTES {
            if keys.len() >= KEYS_KEPT {
                keys.clear();
            }
            keys.insert(key.to_string(), k.clone());
        }
        k
    }

    /// The target of a column: explicit mapping (exact header, then
    /// normalized), then alias, then a custom field under the header.
    pub fn target(&self, header: &str) -> Target {
        let header = header.trim();
        let norm = normalize_header(header);
        if let Some((_, t)) = self.explicit.iter().find(|(c, _)| c == header) {
            return t.clone();
        }
        if let Some((_, t)) = self
            .explicit
            .iter()
            .find(|(c, _)| normalize_header(c) == norm)
        {
            return t.clone();
        }
        alias(header).unwrap_or_else(|| Target::Custom(header.to_string()))
    }

    /// Targets for a header row. A canonical target claimed by an earlier
    /// column makes later columns with the same target custom fields, so no
    /// value is silently overwritten — except the street, whose parts
    /// (house number, address lines) are joined in column order.
    pub fn resolve(&self, headers: &[String]) -> Vec<Target> {
        let mut taken: Vec<Target> = Vec::new();
        headers
            .iter()
            .map(|h| {
                let t = self.target(h);
                let unique = matches!(
                    t,
                    Target::Field(f) if !JOINED.contains(&f)
                ) || matches!(t, Target::Id | Target::Source | Target::ReceivedAt);
                if unique && taken.contains(&t) {
                    Target::Custom(h.trim().to_string())
                } else {
                    taken.push(t.clone());
                    t
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keys_are_remembered_within_a_bound() {
        let m = Mapping::parse(&["Work Email=email"]).unwrap();
        let email = Target::Field("email");
        for _ in 0..2 {
            assert_eq!(m.json_key("Work Email").target, email);
            assert_eq!(m.json_key("email").target, email);
            assert_eq!(m.json_key("E-mail").target, email);
            assert_eq!(m.json_key("External IDs").group, Some(Group::ExternalIds));
            assert_eq!(m.json_key("custom").group, Some(Group::Custom));
            assert_eq!(m.json_key("email").group, None);
            assert_eq!(
                m.json_key("utm_campaign").target,
                Target::Custom("utm_campaign".into())
            );
        }
        // Any number of keys: the memory stays bounded, answers unchanged.
        for i in 0..3 * KEYS_KEPT {
            m.json_key(&format!("k{i}"));
        }
        assert!(m.keys.lock().unwrap().len() <= KEYS_KEPT);
        assert_eq!(m.json_key("Work Email").target, email);
        // A long key is mapped, not kept.
        let long = "x".repeat(KEY_KEPT_BYTES + 1);
        assert_eq!(m.json_key(&long).target, Target::Custom(long.clone()));
        assert!(!m.keys.lock().unwrap().contains_key(&long));
        // A copy has the same mappings and remembers nothing yet.
        let c = m.clone();
        assert!(c.keys.lock().unwrap().is_empty());
        assert_eq!(c.json_key("Work Email").target, email);
    }

    #[test]
    fn aliases_cover_common_headers() {
        for (header, field) in [
            ("E-mail", "email"),
            ("Email Address", "email"),
            ("given_name", "first_name"),
            ("First Name", "first_name"),
            ("Zip", "postcode"),
            ("Postal Code", "postcode"),
            ("Company Name", "company"),
            ("State/Province", "region"),
            ("Mobile Phone", "phone"),
        ] {
            assert_eq!(alias(header), Some(Target::Field(field)), "{header}");
        }
        assert_eq!(
            alias("HubSpot ID"),
            Some(Target::ExternalId("hubspot".into()))
        );
        assert_eq!(
            alias("Marketing Opt-In"),
            Some(Target::Consent("marketing".into()))
        );
        assert_eq!(alias("utm_campaign"), None);
    }

    #[test]
    fn explicit_mapping_wins_and_unknown_columns_are_custom() {
        let m = Mapping::parse(&["Work Mail=email", "Zip=custom.zip_raw", "Notes=ignore"]).unwrap();
        assert_eq!(m.target("work mail"), Target::Field("email"));
        assert_eq!(m.target("Zip"), Target::Custom("zip_raw".into()));
        assert_eq!(m.target("Notes"), Target::Ignore);
        assert_eq!(
            m.target("utm_campaign"),
            Target::Custom("utm_campaign".into())
        );
    }

    #[test]
    fn a_second_column_for_the_same_field_is_kept_as_custom() {
        let m = Mapping::default();
        let headers = vec!["Email".to_string(), "E-mail".to_string()];
        assert_eq!(
            m.resolve(&headers),
            vec![Target::Field("email"), Target::Custom("E-mail".into())]
        );
    }

    #[test]
    fn bad_mappings_are_refused_with_the_reason() {
        let e = Mapping::parse(&["Email"]).unwrap_err().to_string();
        assert!(e.contains("COLUMN=FIELD"), "{e}");
        let e = Mapping::parse(&["Email=e_mail"]).unwrap_err().to_string();
        assert!(e.contains("'e_mail' is not a field"), "{e}");
        let e = Mapping::parse(&["=email"]).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
    }
}
