//! The HTTP JSON provider: any enrichment API, configured in
//! `leadgate.toml` with no code — a URL template (`{domain}` or `{email}`),
//! a credential header read from an environment variable, a pointer to the
//! record in the response and a pointer per field.
//!
//! One call here is one attempt; rate limits, retries, the breaker and the
//! cache are the [`Guarded`](crate::Guarded) wrapper's.

use crate::config::ProviderConfig;
use crate::{FetchError, Fetched, Kind, Provider, SetupError};
use leadgate_lead::enrich::{Company, Person};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// Fields a company mapping may name.
pub const COMPANY_FIELDS: &[&str] = &[
    "name",
    "industry",
    "employee_range",
    "revenue_range",
    "country",
    "city",
    "technologies",
];
/// Fields a person mapping may name.
pub const PERSON_FIELDS: &[&str] = &[
    "first_name",
    "last_name",
    "job_title",
    "seniority",
    "department",
    "company_domain",
    "country",
    "city",
    "linkedin",
];

/// What is percent-encoded in a key put into a URL: all but RFC 3986's
/// unreserved characters.
const KEY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The largest response body read.
const MAX_BODY: u64 = 1 << 20;

pub struct HttpProvider {
    kind: Kind,
    url: String,
    headers: Vec<(String, String)>,
    record: String,
    fields: BTreeMap<String, String>,
    not_found: Vec<u16>,
    timeout: Duration,
    agent: ureq::Agent,
}

impl HttpProvider {
    pub fn new(c: &ProviderConfig, timeout: Duration) -> Result<HttpProvider, SetupError> {
        let kind = c.lookup.ok_or_else(|| {
            c.config_error("an http provider needs `lookup = \"company\"` or `lookup = \"person\"`")
        })?;
        let url = c
            .url
            .clone()
            .ok_or_else(|| c.config_error("an http provider needs `url`"))?;
        let placeholder = match kind {
            Kind::Company => "{domain}",
            Kind::Person => "{email}",
        };
        if !url.contains(placeholder) {
            return Err(c.config_error(format!(
                "url must contain {placeholder} for `lookup = \"{}\"`",
                kind.as_str()
            )));
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(c.config_error(format!(
                "url must start with http:// or https://, not {url}"
            )));
        }
        let allowed = match kind {
            Kind::Company => COMPANY_FIELDS,
            Kind::Person => PERSON_FIELDS,
        };
        if c.fields.is_empty() {
            return Err(c.config_error(format!(
                "`fields` maps nothing: name at least one of {} with a JSON pointer",
                allowed.join(", ")
            )));
        }
        for (field, pointer) in &c.fields {
            if !allowed.contains(&field.as_str()) {
                return Err(c.config_error(format!(
                    "fields.{field}: not a {} field (known: {})",
                    kind.as_str(),
                    allowed.join(", ")
                )));
            }
            if !pointer.is_empty() && !pointer.starts_with('/') {
                return Err(c.config_error(format!(
                    "fields.{field}: `{pointer}` is not a JSON pointer (it starts with /)"
                )));
            }
        }
        let mut headers: Vec<(String, String)> = c
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(var) = &c.auth_env {
            let secret = std::env::var(var).map_err(|_| {
                c.config_error(format!(
                    "auth_env: the environment variable {var} is not set"
                ))
            })?;
            headers.push((
                c.auth_header
                    .clone()
                    .unwrap_or_else(|| "Authorization".into()),
                format!("{}{secret}", c.auth_prefix),
            ));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .user_agent(concat!("leadgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(HttpProvider {
            kind,
            url,
            headers,
            record: c.record.clone(),
            fields: c.fields.clone(),
            not_found: c.not_found_status.clone().unwrap_or_else(|| vec![404]),
            timeout,
            agent,
        })
    }

    fn url_for(&self, key: &str) -> String {
        let encoded = utf8_percent_encode(key, KEY).to_string();
        self.url
            .replace("{domain}", &encoded)
            .replace("{email}", &encoded)
    }

    /// Maps a response body onto a record.
    pub fn parse(&self, key: &str, body: &str) -> Result<Fetched, FetchError> {
        let json: Value = serde_json::from_str(body)
            .map_err(|e| FetchError::Malformed(format!("not JSON: {e}")))?;
        let record = if self.record.is_empty() {
            Some(&json)
        } else {
            json.pointer(&self.record)
        };
        let Some(record) = record.filter(|r| !r.is_null()) else {
            return Ok(Fetched::NotFound);
        };
        if !record.is_object() {
            return Err(FetchError::Malformed(format!(
                "the record at `{}` is not an object",
                if self.record.is_empty() {
                    "/"
                } else {
                    &self.record
                }
            )));
        }
        let get = |field: &str| -> Option<&Value> {
            let pointer = self.fields.get(field)?;
            record.pointer(pointer).filter(|v| !v.is_null())
        };
        let text = |field: &str| -> Option<String> {
            match get(field)? {
                Value::String(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                Value::Array(items) => {
                    let joined: Vec<String> = items
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect();
                    (!joined.is_empty()).then(|| joined.join(", "))
                }
                _ => None,
            }
        };
        Ok(match self.kind {
            Kind::Company => Fetched::Company(Company {
                domain: key.to_string(),
                name: text("name"),
                industry: text("industry"),
                employee_range: text("employee_range"),
                revenue_range: text("revenue_range"),
                country: text("country").map(|c| c.to_ascii_uppercase()),
                city: text("city"),
                technologies: match get("technologies") {
                    Some(Value::Array(items)) => items
                        .iter()
                        .filter_map(|v| v.as_str().map(|s| s.trim().to_string()))
                        .filter(|s| !s.is_empty())
                        .collect(),
                    Some(Value::String(s)) => s
                        .split([',', ';', '|'])
                        .map(|t| t.trim().to_string())
                        .filter(|t| !t.is_empty())
                        .collect(),
                    _ => Vec::new(),
                },
            }),
            Kind::Person => Fetched::Person(Person {
                email: key.to_string(),
                first_name: text("first_name"),
                last_name: text("last_name"),
                job_title: text("job_title"),
                seniority: text("seniority"),
                department: text("department"),
                company_domain: text("company_domain").map(|d| Kind::Company.normalize(&d)),
                country: text("country").map(|c| c.to_ascii_uppercase()),
                city: text("city"),
                linkedin: text("linkedin"),
            }),
        })
    }
}

impl Provider for HttpProvider {
    fn serves(&self, kind: Kind) -> bool {
        kind == self.kind
    }

    fn is_local(&self) -> bool {
        false
    }

    fn fetch(&self, kind: Kind, key: &str) -> Result<Fetched, FetchError> {
        if kind != self.kind {
            return Ok(Fetched::NotFound);
        }
        let mut request = self.agent.get(self.url_for(key));
        for (name, value) in &self.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let mut response = request.call().map_err(|e| match e {
            ureq::Error::Timeout(_) => FetchError::Timeout(self.timeout),
            other => FetchError::Connection(other.to_string()),
        })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::retry::parse_retry_after);
        if self.not_found.contains(&status) {
            return Ok(Fetched::NotFound);
        }
        if status == 429 {
            return Err(FetchError::RateLimited { retry_after });
        }
        if !(200..300).contains(&status) {
            return Err(FetchError::Status {
                status,
                retry_after,
            });
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_string()
            .map_err(|e| match e {
                ureq::Error::Timeout(_) => FetchError::Timeout(self.timeout),
                ureq::Error::Io(io) => FetchError::Connection(io.to_string()),
                other => FetchError::Malformed(other.to_string()),
            })?;
        self.parse(key, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_fields: &[(&str, &str)]) -> ProviderConfig {
        let mut c: ProviderConfig = serde_json::from_value(serde_json::json!({
            "name": "api",
            "kind": "http",
            "lookup": "company",
            "url": "http://127.0.0.1:9/v1/companies?domain={domain}",
            "record": "/data",
        }))
        .unwrap();
        for (k, v) in toml_fields {
            c.fields.insert((*k).into(), (*v).into());
        }
        c
    }

    #[test]
    fn maps_the_response_by_pointer() {
        let p = HttpProvider::new(
            &config(&[
                ("name", "/legalName"),
                ("industry", "/category/industry"),
                ("employee_range", "/metrics/employeesRange"),
                ("technologies", "/tech"),
                ("country", "/geo/country"),
            ]),
            Duration::from_secs(1),
        )
        .unwrap();
        let body = r#"{"data": {"legalName": "Acme Inc.", "category": {"industry": "Software"},
            "metrics": {"employeesRange": "51-200"}, "tech": ["aws", " salesforce "], "geo": {"country": "us"}}}"#;
        let Fetched::Company(c) = p.parse("acme.com", body).unwrap() else {
            panic!()
        };
        assert_eq!(c.name.as_deref(), Some("Acme Inc."));
        assert_eq!(c.industry.as_deref(), Some("Software"));
        assert_eq!(c.employee_range.as_deref(), Some("51-200"));
        assert_eq!(c.technologies, ["aws", "salesforce"]);
        assert_eq!(c.country.as_deref(), Some("US"));
        assert_eq!(
            p.parse("x.com", r#"{"data": null}"#).unwrap(),
            Fetched::NotFound
        );
        assert!(matches!(
            p.parse("x.com", "{oops"),
            Err(FetchError::Malformed(_))
        ));
        assert!(matches!(
            p.parse("x.com", r#"{"data": [1]}"#),
            Err(FetchError::Malformed(_))
        ));
        assert_eq!(
            p.url_for("a b.com"),
            "http://127.0.0.1:9/v1/companies?domain=a%20b.com"
        );
    }

    #[test]
    fn configuration_mistakes_are_named() {
        let e = HttpProvider::new(&config(&[("industy", "/x")]), Duration::from_secs(1))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("fields.industy"), "{e}");
        let e = HttpProvider::new(&config(&[]), Duration::from_secs(1))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("maps nothing"), "{e}");
        let mut c = config(&[("name", "/n")]);
        c.url = Some("http://x/{email}".into());
        let e = HttpProvider::new(&c, Duration::from_secs(1))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("{domain}"), "{e}");
        let mut c = config(&[("name", "/n")]);
        c.auth_env = Some("LEADGATE_TEST_SURELY_UNSET".into());
        let e = HttpProvider::new(&c, Duration::from_secs(1))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("LEADGATE_TEST_SURELY_UNSET"), "{e}");
    }
}
