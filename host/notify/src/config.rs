//! `[alerts]`: destinations, routes and inhibition rules. Every key has a
//! default; with no routes, alerts stay in the store (`leadgate alerts`,
//! `GET /v1/alerts`) and reach no one.

use crate::NotifyError;
use crate::policy::Matchers;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// A lead assigned with one of these score grades raises `lead.hot`.
    pub hot_grades: Vec<String>,
    /// How long an alert stays active (for inhibition) unless resolved
    /// earlier — a first touch resolves the lead's routing alerts.
    pub active_minutes: u32,
    /// A link to the lead in messages: `{lead}` is replaced by its id.
    pub link: Option<String>,
    pub smtp: Option<Smtp>,
    pub destinations: BTreeMap<String, Destination>,
    pub routes: Vec<Route>,
    pub inhibit: Vec<Inhibit>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            hot_grades: vec!["A".into()],
            active_minutes: 240,
            link: None,
            smtp: None,
            destinations: BTreeMap::new(),
            routes: Vec::new(),
            inhibit: Vec::new(),
        }
    }
}

/// The SMTP server email destinations send through.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smtp {
    pub host: String,
    /// Defaults by `security`: 465 (`tls`), 587 (`starttls`), 25 (`none`).
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub security: Security,
    /// The environment variables holding the login (none: no login).
    #[serde(default)]
    pub username_env: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
    /// `leadgate <alerts@example.com>`.
    pub from: String,
    #[serde(default = "smtp_timeout")]
    pub timeout_ms: u64,
}

fn smtp_timeout() -> u64 {
    10_000
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// TLS from the first byte (SMTPS).
    Tls,
    /// Plain, upgraded by STARTTLS; refused if the server cannot.
    #[default]
    Starttls,
    /// No encryption: a relay on the same host or network only.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DestinationKind {
    /// A Slack incoming webhook (`url`), or the Web API's
    /// `chat.postMessage` (`token_env` and `channel`; `channel = "owner"`
    /// sends to the lead's rep by their Slack member id).
    Slack,
    /// A JSON `POST`, signed with `X-Leadgate-Signature` when `secret_env`
    /// is set, with `Idempotency-Key`.
    Webhook,
    /// Email through `[alerts.smtp]` to `to`.
    Email,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    pub kind: DestinationKind,
    /// The URL (a Slack incoming webhook, or the webhook receiver).
    #[serde(default)]
    pub url: Option<String>,
    /// The environment variable holding the URL instead (a Slack webhook
    /// URL is a secret).
    #[serde(default)]
    pub url_env: Option<String>,
    /// Slack Web API: the environment variable with the bot token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Slack Web API: a channel id, or `owner` (the lead's rep).
    #[serde(default)]
    pub channel: Option<String>,
    /// Slack Web API: its base URL (`https://slack.com/api`).
    #[serde(default)]
    pub api_url: Option<String>,
    /// Webhook: the environment variable with the signing secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Email: recipients.
    #[serde(default)]
    pub to: Vec<String>,
    /// The least time between two messages to one channel (Slack takes
    /// about one a second); 1000 for Slack, 0 otherwise.
    #[serde(default)]
    pub min_interval_ms: Option<u64>,
    /// Where an alert goes when `channel = "owner"` and its rep has no
    /// Slack id (another destination's name).
    #[serde(default)]
    pub fallback: Option<String>,
    #[serde(default = "max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "backoff_ms")]
    pub backoff_ms: u64,
    #[serde(default = "max_backoff_ms")]
    pub max_backoff_ms: u64,
    #[serde(default = "timeout_ms")]
    pub timeout_ms: u64,
}

fn max_attempts() -> u32 {
    8
}
fn backoff_ms() -> u64 {
    2_000
}
fn max_backoff_ms() -> u64 {
    600_000
}
fn timeout_ms() -> u64 {
    10_000
}

impl Destination {
    pub fn min_interval_ms(&self) -> u64 {
        self.min_interval_ms.unwrap_or(match self.kind {
            DestinationKind::Slack => 1_000,
            _ => 0,
        })
    }

    /// Whether this destination sends to the lead's rep.
    pub fn to_owner(&self) -> bool {
        self.kind == DestinationKind::Slack && self.channel.as_deref() == Some("owner")
    }
}

/// Which alerts go where, and how they are batched.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Names the route in groups and idempotency keys (`route-N`, its
    /// place from 1, when not set).
    #[serde(default)]
    pub name: Option<String>,
    /// Label matchers, all of which must hold (`kind = "routing.*"`,
    /// `team = "!emea"`); none matches every alert.
    #[serde(default, rename = "match")]
    pub matchers: Matchers,
    /// Destinations by name.
    pub to: Vec<String>,
    /// The labels that make a group; `["kind"]` when not set, `["..."]`
    /// for one group per alert.
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    /// A new group waits this long for more alerts before its first
    /// notification.
    #[serde(default = "group_wait")]
    pub group_wait_seconds: u64,
    /// A group that has notified waits this long before notifying of new
    /// alerts.
    #[serde(default = "group_interval")]
    pub group_interval_seconds: u64,
    /// The same alert (same labels) is notified again at most this often.
    #[serde(default = "repeat_interval")]
    pub repeat_interval_seconds: u64,
    /// Hours when nothing is sent (`mon-fri 00:00-08:00, sat-sun
    /// 00:00-24:00`); what arrives is held and sent as one digest when
    /// they end.
    #[serde(default)]
    pub quiet_hours: Option<String>,
    /// The time zone of `quiet_hours` (an IANA name; UTC when not set).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Go on matching the routes after this one.
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
}

fn group_wait() -> u64 {
    30
}
fn group_interval() -> u64 {
    300
}
fn repeat_interval() -> u64 {
    4 * 3600
}

impl Route {
    pub fn group_by(&self) -> Vec<String> {
        self.group_by.clone().unwrap_or_else(|| vec!["kind".into()])
    }
}

/// While an alert matching `source` is active, alerts matching `target`
/// with the same `equal` labels are not sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inhibit {
    pub source: Matchers,
    pub target: Matchers,
    #[serde(default)]
    pub equal: Vec<String>,
}

impl AlertsConfig {
    /// Refuses what cannot work, naming the key.
    pub fn check(&self) -> Result<(), NotifyError> {
        if self.active_minutes == 0 {
            return Err(NotifyError::new(
                "alerts.active_minutes",
                "must be at least 1",
            ));
        }
        for (name, d) in &self.destinations {
            let key = |k: &str| format!("alerts.destinations.{name}.{k}");
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(NotifyError::new(
                    format!("alerts.destinations.{name:?}"),
                    "a destination's name is letters, digits, '-' and '_'",
                ));
            }
            if d.url.is_some() && d.url_env.is_some() {
                return Err(NotifyError::new(key("url"), "set url or url_env, not both"));
            }
            if d.max_attempts == 0 {
                return Err(NotifyError::new(key("max_attempts"), "must be at least 1"));
            }
            match d.kind {
                DestinationKind::Slack => {
                    let web_api = d.token_env.is_some() || d.channel.is_some();
                    let hook = d.url.is_some() || d.url_env.is_some();
                    if web_api == hook {
                        return Err(NotifyError::new(
                            key("kind"),
                            "a Slack destination is either an incoming webhook (url or url_env) or the Web API (token_env and channel)",
                        ));
                    }
                    if web_api && (d.token_env.is_none() || d.channel.is_none()) {
                        return Err(NotifyError::new(
                            key("channel"),
                            "the Slack Web API needs both token_env and channel",
                        ));
                    }
                }
                DestinationKind::Webhook => {
                    if d.url.is_none() && d.url_env.is_none() {
                        return Err(NotifyError::new(
                            key("url"),
                            "a webhook needs url or url_env",
                        ));
                    }
                }
                DestinationKind::Email => {
                    if d.to.is_empty() {
                        return Err(NotifyError::new(
                            key("to"),
                            "an email destination needs recipients",
                        ));
                    }
                    for to in &d.to {
                        if to.parse::<lettre::message::Mailbox>().is_err() {
                            return Err(NotifyError::new(
                                key("to"),
                                format!("{to:?} is not an email address"),
                            ));
                        }
                    }
                    if self.smtp.is_none() {
                        return Err(NotifyError::new(
                            "alerts.smtp",
                            format!("destination {name:?} sends email, so [alerts.smtp] is needed"),
                        ));
                    }
                }
            }
            if let Some(url) = &d.url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(NotifyError::new(
                    key("url"),
                    format!("{url:?} is not an http(s) URL"),
                ));
            }
            if let Some(f) = &d.fallback {
                if !d.to_owner() {
                    return Err(NotifyError::new(
                        key("fallback"),
                        "only a destination with channel = \"owner\" has a fallback",
                    ));
                }
                match self.destinations.get(f) {
                    None => {
                        return Err(NotifyError::new(
                            key("fallback"),
                            format!("no destination is named {f:?}"),
                        ));
                    }
                    Some(fd) if fd.to_owner() => {
                        return Err(NotifyError::new(
                            key("fallback"),
                            "the fallback cannot itself send to the owner",
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        if let Some(s) = &self.smtp {
            if s.host.trim().is_empty() {
                return Err(NotifyError::new("alerts.smtp.host", "is empty"));
            }
            if s.from.parse::<lettre::message::Mailbox>().is_err() {
                return Err(NotifyError::new(
                    "alerts.smtp.from",
                    format!(
                        "{:?} is not a mailbox (`name <address>` or an address)",
                        s.from
                    ),
                ));
            }
            if s.username_env.is_some() != s.password_env.is_some() {
                return Err(NotifyError::new(
                    "alerts.smtp.username_env",
                    "a login needs both username_env and password_env",
                ));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, r) in self.routes.iter().enumerate() {
            let key = |k: &str| format!("alerts.routes[{i}].{k}");
            let name = crate::policy::route_name(r, i);
            if !names.insert(name.clone()) {
                return Err(NotifyError::new(
                    key("name"),
                    format!("{name:?} names two routes"),
                ));
            }
            if r.to.is_empty() {
                return Err(NotifyError::new(
                    key("to"),
                    "a route needs at least one destination",
                ));
            }
            for to in &r.to {
                if !self.destinations.contains_key(to) {
                    return Err(NotifyError::new(
                        key("to"),
                        format!("no destination is named {to:?}"),
                    ));
                }
            }
            crate::policy::check_matchers(&r.matchers)
                .map_err(|e| NotifyError::new(key("match"), e))?;
            if r.group_by().is_empty() {
                return Err(NotifyError::new(
                    key("group_by"),
                    "group by at least one label, or [\"...\"]",
                ));
            }
            if r.group_interval_seconds == 0 || r.repeat_interval_seconds == 0 {
                return Err(NotifyError::new(
                    key("group_interval_seconds"),
                    "group_interval_seconds and repeat_interval_seconds must be at least 1",
                ));
            }
            if let Some(tz) = &r.timezone
                && jiff::tz::TimeZone::get(tz).is_err()
            {
                return Err(NotifyError::new(
                    key("timezone"),
                    format!("{tz:?} is not a time zone"),
                ));
            }
            if let Some(q) = &r.quiet_hours {
                let h = leadgate_routing::Hours::parse(q)
                    .map_err(|e| NotifyError::new(key("quiet_hours"), e))?;
                if h.any() {
                    return Err(NotifyError::new(
                        key("quiet_hours"),
                        "is empty; leave it out for none",
                    ));
                }
            }
        }
        for (i, inh) in self.inhibit.iter().enumerate() {
            let key = |k: &str| format!("alerts.inhibit[{i}].{k}");
            if inh.source.is_empty() || inh.target.is_empty() {
                return Err(NotifyError::new(
                    key("source"),
                    "an inhibition needs source and target matchers",
                ));
            }
            crate::policy::check_matchers(&inh.source)
                .map_err(|e| NotifyError::new(key("source"), e))?;
            crate::policy::check_matchers(&inh.target)
                .map_err(|e| NotifyError::new(key("target"), e))?;
        }
        Ok(())
    }

    /// Whether any alert can reach anyone.
    pub fn enabled(&self) -> bool {
        !self.routes.is_empty()
    }
}
