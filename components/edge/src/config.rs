//! The edge's configuration, read from environment variables.
//!
//! | variable | required | meaning |
//! |---|---|---|
//! | `LEADGATE_UPSTREAM` | yes | base URL of `leadgate serve`, e.g. `https://leads.example.com` |
//! | `LEADGATE_API_KEY` | yes | the tenant's API key (`leadgate keys create`) |
//! | `LEADGATE_TENANT` | no | the tenant; read from the key (`lg_<tenant>_…`) when absent |
//! | `LEADGATE_HUBSPOT_SECRET` | for `/webhooks/hubspot` | the HubSpot app's client secret |
//! | `LEADGATE_WEBHOOK_SECRET` | for `/webhooks/leads` | the secret of leadgate's own signed webhook |
//! | `LEADGATE_VALIDATE_SETTINGS` | no | the tenant's `[validate]` settings as JSON (default `{}`) |
//! | `LEADGATE_PUBLIC_URL` | no | the URL senders sign (default: the request's scheme and host) |
//! | `LEADGATE_BUDGET_MS` | no | time to get the core's answer, retries included (default 4000) |
//! | `LEADGATE_MAX_BODY_BYTES` | no | largest body accepted (default 65536) |
//! | `LEADGATE_SIGNATURE_WINDOW_MS` | no | how old or early a signature may be (default 300000) |
//!
//! Nothing is hard-coded: a missing or malformed value makes every request
//! answer 503 naming the variable (with `Retry-After`, so no submission is
//! lost while an operator fixes it).

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{name} is '{value}': {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: &'static str,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Without a trailing slash.
    pub upstream: String,
    pub api_key: String,
    pub tenant: String,
    pub hubspot_secret: Option<String>,
    pub webhook_secret: Option<String>,
    pub validate_settings: String,
    /// Without a trailing slash.
    pub public_url: Option<String>,
    pub budget_ms: u64,
    pub max_body_bytes: usize,
    pub signature_window_ms: i64,
}

impl Config {
    /// Reads the configuration through `get` (the environment, or a map in
    /// tests); an error names the variable.
    pub fn read(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let var = |name: &'static str| {
            get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let upstream = var("LEADGATE_UPSTREAM").ok_or(ConfigError::Missing("LEADGATE_UPSTREAM"))?;
        if !(upstream.starts_with("http://") || upstream.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                name: "LEADGATE_UPSTREAM",
                value: upstream,
                reason: "an http:// or https:// URL is expected",
            });
        }
        let api_key = var("LEADGATE_API_KEY").ok_or(ConfigError::Missing("LEADGATE_API_KEY"))?;
        let tenant = match var("LEADGATE_TENANT") {
            Some(t) => t,
            None => tenant_of_key(&api_key).ok_or(ConfigError::Missing("LEADGATE_TENANT"))?,
        };
        let validate_settings = var("LEADGATE_VALIDATE_SETTINGS").unwrap_or_else(|| "{}".into());
        if !matches!(
            serde_json::from_str::<serde_json::Value>(&validate_settings),
            Ok(serde_json::Value::Object(_))
        ) {
            return Err(ConfigError::Invalid {
                name: "LEADGATE_VALIDATE_SETTINGS",
                value: validate_settings,
                reason: "a JSON object is expected",
            });
        }
        let number = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            match var(name) {
                None => Ok(default),
                Some(v) => v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(ConfigError::Invalid {
                        name,
                        value: v,
                        reason: "a whole number above 0 is expected",
                    }),
            }
        };
        Ok(Config {
            upstream: upstream.trim_end_matches('/').to_string(),
            api_key,
            tenant,
            hubspot_secret: var("LEADGATE_HUBSPOT_SECRET"),
            webhook_secret: var("LEADGATE_WEBHOOK_SECRET"),
            validate_settings,
            public_url: var("LEADGATE_PUBLIC_URL").map(|u| u.trim_end_matches('/').to_string()),
            budget_ms: number("LEADGATE_BUDGET_MS", 4_000)?,
            max_body_bytes: number("LEADGATE_MAX_BODY_BYTES", 64 * 1024)? as usize,
            signature_window_ms: number(
                "LEADGATE_SIGNATURE_WINDOW_MS",
                leadgate_signature::DEFAULT_WINDOW_MS as u64,
            )? as i64,
        })
    }
}

/// The tenant in a key made by `leadgate keys create`: `lg_<tenant>_<hex>`.
fn tenant_of_key(key: &str) -> Option<String> {
    let rest = key.strip_prefix("lg_")?;
    let (tenant, secret) = rest.rsplit_once('_')?;
    (!tenant.is_empty() && !secret.is_empty()).then(|| tenant.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::read(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults_and_tenant_from_key() {
        let c = read(&[
            ("LEADGATE_UPSTREAM", "http://core:8080/"),
            ("LEADGATE_API_KEY", "lg_acme_eu_00ff"),
        ]);
        let c = c.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.upstream, "http://core:8080");
        assert_eq!(c.tenant, "acme_eu");
        assert_eq!(c.budget_ms, 4_000);
        assert_eq!(c.max_body_bytes, 65_536);
        assert_eq!(c.validate_settings, "{}");
        assert_eq!(c.hubspot_secret, None);
    }

    #[test]
    fn every_error_names_the_variable() {
        assert_eq!(read(&[]), Err(ConfigError::Missing("LEADGATE_UPSTREAM")));
        let e = read(&[
            ("LEADGATE_UPSTREAM", "core:8080"),
            ("LEADGATE_API_KEY", "k"),
        ]);
        assert!(matches!(
            e,
            Err(ConfigError::Invalid {
                name: "LEADGATE_UPSTREAM",
                ..
            })
        ));
        let e = read(&[
            ("LEADGATE_UPSTREAM", "http://c"),
            ("LEADGATE_API_KEY", "opaque"),
        ]);
        assert_eq!(e, Err(ConfigError::Missing("LEADGATE_TENANT")));
        let e = read(&[
            ("LEADGATE_UPSTREAM", "http://c"),
            ("LEADGATE_API_KEY", "lg_t_1"),
            ("LEADGATE_BUDGET_MS", "soon"),
        ]);
        let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains("LEADGATE_BUDGET_MS") && msg.contains("soon"),
            "{msg}"
        );
        let e = read(&[
            ("LEADGATE_UPSTREAM", "http://c"),
            ("LEADGATE_API_KEY", "lg_t_1"),
            ("LEADGATE_VALIDATE_SETTINGS", "[1]"),
        ]);
        assert!(matches!(
            e,
            Err(ConfigError::Invalid {
                name: "LEADGATE_VALIDATE_SETTINGS",
                ..
            })
        ));
    }
}
