//! The transports: Slack (an incoming webhook, or the Web API's
//! `chat.postMessage`), a signed JSON webhook, and email over SMTP
//! (`lettre`). Each answer is sorted into sent, worth retrying (429 with its
//! `Retry-After`, 5xx, timeouts, refused connections, SMTP 4xx) or refused
//! (any other answer: retrying would not help). Secrets come from the
//! environment variables the destination names.

use crate::config::{AlertsConfig, Destination, DestinationKind, Security, Smtp};
use crate::render::Rendered;
use lettre::Transport as _;
use std::time::Duration;

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Sent,
    /// Try again later; `retry_after` is the server's header, unparsed.
    Retry {
        error: String,
        retry_after: Option<String>,
    },
    Refused {
        error: String,
    },
}

/// One notification to one destination.
pub struct Delivery<'a> {
    pub destination: &'a Destination,
    /// The Slack channel (a member id for `channel = "owner"`).
    pub channel: Option<&'a str>,
    pub rendered: &'a Rendered,
    /// Sent as `Idempotency-Key` and as the email's `Message-ID`.
    pub idempotency_key: &'a str,
    pub now_ms: i64,
}

/// What the engine needs of a transport (the real one, or a test's).
pub trait Deliver {
    fn deliver(&self, d: &Delivery<'_>) -> Outcome;
}

/// HTTP and SMTP, as configured.
pub struct Transport {
    agent: ureq::Agent,
    smtp: Option<Smtp>,
    env: fn(&str) -> Option<String>,
}

/// The error text kept, at most.
const MAX_ERROR: usize = 500;

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Transport {
    pub fn new(config: &AlertsConfig) -> Transport {
        Transport {
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .user_agent(concat!("leadgate/", env!("CARGO_PKG_VERSION")))
                .build()
                .into(),
            smtp: config.smtp.clone(),
            env: env_var,
        }
    }

    /// Reads secrets with `env` instead of the process environment.
    pub fn with_env(mut self, env: fn(&str) -> Option<String>) -> Transport {
        self.env = env;
        self
    }

    fn secret(&self, var: &Option<String>, what: &str) -> Result<Option<String>, Outcome> {
        match var {
            None => Ok(None),
            Some(name) => match (self.env)(name) {
                Some(v) => Ok(Some(v)),
                None => Err(Outcome::Refused {
                    error: format!("the environment variable {name} ({what}) is not set"),
                }),
            },
        }
    }

    fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: &str,
        timeout: Duration,
    ) -> Result<(u16, String), Outcome> {
        let mut req = self
            .agent
            .post(url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .header("Content-Type", "application/json; charset=utf-8");
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let mut resp = match req.send(body) {
            Ok(r) => r,
            Err(ureq::Error::Timeout(_)) => {
                return Err(Outcome::Retry {
                    error: format!("timeout after {} ms", timeout.as_millis()),
                    retry_after: None,
                });
            }
            Err(e) => {
                return Err(Outcome::Retry {
                    error: format!("connection: {e}"),
                    retry_after: None,
                });
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text: String = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_string()
            .unwrap_or_default()
            .chars()
            .take(MAX_ERROR)
            .collect();
        match status {
            200..=299 => Ok((status, text)),
            408 | 425 | 429 | 500..=599 => Err(Outcome::Retry {
                error: format!("HTTP {status}: {text}"),
                retry_after,
            }),
            _ => Err(Outcome::Refused {
                error: format!("HTTP {status}: {text}"),
            }),
        }
    }

    fn slack(&self, d: &Delivery<'_>) -> Result<(), Outcome> {
        let dest = d.destination;
        let timeout = Duration::from_millis(dest.timeout_ms);
        let mut body = serde_json::json!({
            "text": d.rendered.title,
            "blocks": d.rendered.blocks,
        });
        if let Some(token) = self.secret(&dest.token_env, "the Slack bot token")? {
            let channel = d.channel.unwrap_or_default();
            if channel.is_empty() {
                return Err(Outcome::Refused {
                    error: "no Slack channel to send to".into(),
                });
            }
            body["channel"] = serde_json::Value::String(channel.to_string());
            let base = dest.api_url.as_deref().unwrap_or("https://slack.com/api");
            let url = format!("{}/chat.postMessage", base.trim_end_matches('/'));
            let (_, text) = self.post(
                &url,
                &[("Authorization", format!("Bearer {token}"))],
                &body.to_string(),
                timeout,
            )?;
            // The Web API answers 200 with `ok: false` when it refuses.
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            if v["ok"].as_bool() == Some(true) {
                return Ok(());
            }
            let error = v["error"]
                .as_str()
                .unwrap_or("no `ok` in the answer")
                .to_string();
            return Err(match error.as_str() {
                "ratelimited"
                | "internal_error"
                | "fatal_error"
                | "service_unavailable"
                | "request_timeout" => Outcome::Retry {
                    error: format!("Slack: {error}"),
                    retry_after: None,
                },
                _ => Outcome::Refused {
                    error: format!("Slack: {error}"),
                },
            });
        }
        let url = self.url(dest)?;
        self.post(&url, &[], &body.to_string(), timeout)?;
        Ok(())
    }

    fn url(&self, dest: &Destination) -> Result<String, Outcome> {
        match (&dest.url, self.secret(&dest.url_env, "the URL")?) {
            (Some(u), _) => Ok(u.clone()),
            (None, Some(u)) => Ok(u),
            (None, None) => Err(Outcome::Refused {
                error: "the destination has no URL".into(),
            }),
        }
    }

    fn webhook(&self, d: &Delivery<'_>) -> Result<(), Outcome> {
        let dest = d.destination;
        let url = self.url(dest)?;
        let body = d.rendered.document.to_string();
        let mut headers = vec![("Idempotency-Key", d.idempotency_key.to_string())];
        if let Some(secret) = self.secret(&dest.secret_env, "the signing secret")? {
            headers.push((
                "X-Leadgate-Signature",
                leadgate_signature::leadgate_v1::sign(secret.as_bytes(), body.as_bytes(), d.now_ms),
            ));
        }
        self.post(
            &url,
            &headers,
            &body,
            Duration::from_millis(dest.timeout_ms),
        )?;
        Ok(())
    }

    fn email(&self, d: &Delivery<'_>) -> Result<(), Outcome> {
        let refused = |error: String| Outcome::Refused { error };
        let smtp = self
            .smtp
            .as_ref()
            .ok_or_else(|| refused("[alerts.smtp] is not set".into()))?;
        let from = smtp
            .from
            .parse::<lettre::message::Mailbox>()
            .map_err(|e| refused(format!("alerts.smtp.from: {e}")))?;
        let mut builder = lettre::Message::builder()
            .from(from)
            .subject(d.rendered.title.clone())
            .message_id(Some(format!(
                "<{}@leadgate>",
                d.idempotency_key
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                        c
                    } else {
                        '.'
                    })
                    .collect::<String>()
            )))
            .header(lettre::message::header::ContentType::TEXT_PLAIN);
        for to in &d.destination.to {
            builder = builder.to(to
                .parse::<lettre::message::Mailbox>()
                .map_err(|e| refused(format!("{to:?}: {e}")))?);
        }
        let message = builder
            .body(d.rendered.text.clone())
            .map_err(|e| refused(format!("the email: {e}")))?;
        let port = smtp.port.unwrap_or(match smtp.security {
            Security::Tls => 465,
            Security::Starttls => 587,
            Security::None => 25,
        });
        let mut transport = match smtp.security {
            Security::Tls => lettre::SmtpTransport::relay(&smtp.host),
            Security::Starttls => lettre::SmtpTransport::starttls_relay(&smtp.host),
            Security::None => Ok(lettre::SmtpTransport::builder_dangerous(&smtp.host)),
        }
        .map_err(|e| refused(format!("alerts.smtp: {e}")))?
        .port(port)
        .timeout(Some(Duration::from_millis(smtp.timeout_ms)));
        if let (Some(user), Some(pass)) = (
            self.secret(&smtp.username_env, "the SMTP user")?,
            self.secret(&smtp.password_env, "the SMTP password")?,
        ) {
            transport = transport.credentials(
                lettre::transport::smtp::authentication::Credentials::new(user, pass),
            );
        }
        match transport.build().send(&message) {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(refused(format!("SMTP: {e}"))),
            Err(e) => Err(Outcome::Retry {
                error: format!("SMTP: {e}"),
                retry_after: None,
            }),
        }
    }
}

impl Deliver for Transport {
    fn deliver(&self, d: &Delivery<'_>) -> Outcome {
        let r = match d.destination.kind {
            DestinationKind::Slack => self.slack(d),
            DestinationKind::Webhook => self.webhook(d),
            DestinationKind::Email => self.email(d),
        };
        match r {
            Ok(()) => Outcome::Sent,
            Err(o) => o,
        }
    }
}
