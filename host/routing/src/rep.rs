//! Who can receive leads: a rep, with the teams they belong to, their time
//! zone and working hours, their capacity and weight, and whether they are
//! away. Kept in the store as JSON; seeded from `[[routing.reps]]`.

use crate::RoutingError;
use jiff::civil::Weekday;
use serde::{Deserialize, Serialize};

/// A person leads are assigned to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rep {
    /// Stable id, e.g. `ana`.
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The rep's user id in the CRM: the owner the CRM gets, and how a
    /// lead's existing owner is recognized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crm_owner_id: Option<String>,
    /// Slack member id, for direct messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack_id: Option<String>,
    /// Teams (`[routing.teams]`) the rep takes leads for.
    #[serde(default)]
    pub teams: Vec<String>,
    /// IANA time zone of the working hours, e.g. `Europe/Paris`.
    #[serde(default = "utc")]
    pub timezone: String,
    /// When the rep takes leads, in their time zone: `mon-fri 09:00-18:00`,
    /// several spans separated by commas (`mon-thu 09:00-18:00, fri
    /// 09:00-13:00`). Empty: any time.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hours: String,
    /// Most leads assigned per day (the rep's own day); none: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_per_day: Option<u32>,
    /// Most leads waiting for the rep's first touch; none: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_open: Option<u32>,
    /// Share of a weighted team's leads, relative to the other members.
    #[serde(default = "one")]
    pub weight: u32,
    /// Away (holiday, sick, left): gets no new leads.
    #[serde(default)]
    pub away: bool,
    /// Away until this time (ms since the epoch), then back on their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub away_until: Option<i64>,
}

fn utc() -> String {
    "UTC".into()
}

fn one() -> u32 {
    1
}

impl Rep {
    /// Checks what the store and the router rely on; names the field.
    pub fn check(&self) -> Result<(), RoutingError> {
        let bad = |field: &str, reason: String| RoutingError::Rep {
            rep: self.id.clone(),
            field: field.into(),
            reason,
        };
        if self.id.trim().is_empty() || self.id.len() > 128 || self.id.chars().any(char::is_control)
        {
            return Err(bad("id", "must be 1–128 printable characters".into()));
        }
        if self.weight == 0 || self.weight > 1_000 {
            return Err(bad(
                "weight",
                format!("{} is not within 1–1000", self.weight),
            ));
        }
        jiff::tz::TimeZone::get(&self.timezone).map_err(|_| {
            bad(
                "timezone",
                format!("{:?} is not an IANA time zone", self.timezone),
            )
        })?;
        Hours::parse(&self.hours).map_err(|e| bad("hours", e))?;
        Ok(())
    }
}

/// Working hours: spans of minutes per weekday.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hours {
    /// Per weekday (Monday first), the `[start, end)` minute spans.
    days: [Vec<(u16, u16)>; 7],
    any: bool,
}

impl Hours {
    /// Parses `mon-fri 09:00-18:00, sat 10:00-12:00`; empty is any time.
    pub fn parse(text: &str) -> Result<Hours, String> {
        let mut h = Hours::default();
        if text.trim().is_empty() {
            h.any = true;
            return Ok(h);
        }
        for span in text.split(',') {
            let span = span.trim();
            let (days, times) = span
                .split_once(char::is_whitespace)
                .ok_or_else(|| format!("{span:?}: expected `mon-fri 09:00-18:00`"))?;
            let (from, to) = match days.split_once('-') {
                Some((a, b)) => (day(a)?, day(b)?),
                None => (day(days)?, day(days)?),
            };
            let (start, end) = times
                .trim()
                .split_once('-')
                .ok_or_else(|| format!("{times:?}: expected `09:00-18:00`"))?;
            let (start, end) = (minute(start)?, minute(end)?);
            if end <= start {
                return Err(format!("{times:?}: the end must come after the start"));
            }
            let mut d = from;
            loop {
                h.days[d].push((start, end));
                if d == to {
                    break;
                }
                d = (d + 1) % 7;
            }
        }
        Ok(h)
    }

    /// Whether `weekday` at `minute` of the day is within the hours.
    pub fn contains(&self, weekday: Weekday, minute: u16) -> bool {
        self.any
            || self.days[usize::from(weekday.to_monday_zero_offset().unsigned_abs())]
                .iter()
                .any(|(s, e)| (*s..*e).contains(&minute))
    }

    pub fn any(&self) -> bool {
        self.any
    }
}

fn day(s: &str) -> Result<usize, String> {
    let d = match s.trim().to_ascii_lowercase().get(..3) {
        Some("mon") => 0,
        Some("tue") => 1,
        Some("wed") => 2,
        Some("thu") => 3,
        Some("fri") => 4,
        Some("sat") => 5,
        Some("sun") => 6,
        _ => return Err(format!("{s:?} is not a weekday (mon … sun)")),
    };
    Ok(d)
}

fn minute(s: &str) -> Result<u16, String> {
    let s = s.trim();
    let (h, m) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not a time (HH:MM)"))?;
    let h: u16 = h
        .parse()
        .map_err(|_| format!("{s:?} is not a time (HH:MM)"))?;
    let m: u16 = m
        .parse()
        .map_err(|_| format!("{s:?} is not a time (HH:MM)"))?;
    if h > 24 || m > 59 || (h == 24 && m > 0) {
        return Err(format!("{s:?} is not a time of day"));
    }
    Ok(h * 60 + m)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hours_parse_spans_and_wrap() {
        let h = Hours::parse("mon-thu 09:00-18:00, fri 09:00-13:00").unwrap();
        assert!(h.contains(Weekday::Monday, 9 * 60));
        assert!(!h.contains(Weekday::Monday, 18 * 60));
        assert!(h.contains(Weekday::Friday, 12 * 60 + 59));
        assert!(!h.contains(Weekday::Friday, 13 * 60));
        assert!(!h.contains(Weekday::Saturday, 10 * 60));
        let w = Hours::parse("sat-mon 10:00-12:00").unwrap();
        assert!(w.contains(Weekday::Sunday, 11 * 60));
        assert!(w.contains(Weekday::Monday, 11 * 60));
        assert!(!w.contains(Weekday::Tuesday, 11 * 60));
        assert!(Hours::parse("").unwrap().contains(Weekday::Sunday, 3));
        for bad in [
            "monday",
            "mon 9-5",
            "xyz 09:00-10:00",
            "mon 18:00-09:00",
            "mon 25:00-26:00",
        ] {
            assert!(Hours::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn check_names_the_field() {
        let mut r: Rep = serde_json::from_str(r#"{"id":"ana","timezone":"Mars/Base"}"#).unwrap();
        let e = r.check().unwrap_err().to_string();
        assert!(e.contains("timezone") && e.contains("ana"), "{e}");
        r.timezone = "Europe/Paris".into();
        r.weight = 0;
        assert!(r.check().unwrap_err().to_string().contains("weight"));
        r.weight = 2;
        r.check().unwrap();
    }
}
