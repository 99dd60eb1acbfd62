//! One notification per group: a Slack Block Kit message, a JSON document
//! for webhooks, and an email's subject and text — each listing the group's
//! alerts with their lead (who, company, score, grade, reasons) and a link.

use crate::policy::Alert;
use serde::{Deserialize, Serialize};

/// What a message says about an alert's lead.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LeadView {
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub company: Option<String>,
    pub score: Option<f64>,
    pub grade: Option<String>,
    /// The score's strongest reasons, in words.
    pub reasons: Vec<String>,
    /// The rep who has it.
    pub owner: Option<String>,
}

/// A notification, ready for any transport.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rendered {
    /// One line: the email subject and the Slack notification text.
    pub title: String,
    /// Plain text (email body).
    pub text: String,
    /// Slack's `blocks`.
    pub blocks: serde_json::Value,
    /// The webhook document.
    pub document: serde_json::Value,
}

/// Slack allows 50 blocks a message; a digest lists this many alerts and
/// counts the rest.
const MAX_LISTED: usize = 20;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn who(l: &LeadView) -> String {
    let mut parts = Vec::new();
    if let Some(n) = &l.name {
        parts.push(n.clone());
    }
    if let Some(e) = &l.email {
        parts.push(format!("<{e}>"));
    }
    if let Some(c) = &l.company {
        parts.push(format!("at {c}"));
    }
    if parts.is_empty() {
        format!("lead {}", l.id)
    } else {
        parts.join(" ")
    }
}

fn score_line(l: &LeadView) -> Option<String> {
    let s = l.score?;
    let mut line = format!("score {s:.0}");
    if let Some(g) = &l.grade {
        line.push_str(&format!(" (grade {g})"));
    }
    if !l.reasons.is_empty() {
        line.push_str(": ");
        line.push_str(&l.reasons.join("; "));
    }
    Some(line)
}

/// Renders `alerts` (with their leads) as one notification of route
/// `route`'s group `group_key`. `digest` marks a message held through quiet
/// hours; `link` is the lead link template (`{lead}`).
pub fn render(
    tenant: &str,
    route: &str,
    group_key: &str,
    alerts: &[(Alert, Option<LeadView>)],
    link: Option<&str>,
    digest: bool,
) -> Rendered {
    let kinds: std::collections::BTreeSet<&str> =
        alerts.iter().map(|(a, _)| a.kind.as_str()).collect();
    let kind_text = kinds.iter().copied().collect::<Vec<_>>().join(", ");
    let title = match (alerts, digest) {
        ([(a, lead)], false) => {
            let subject = lead
                .as_ref()
                .map_or_else(|| a.labels.get("lead").cloned().unwrap_or_default(), who);
            clip(&format!("[{}] {}", a.kind, subject), 150)
        }
        (_, true) => clip(
            &format!(
                "Digest: {} alerts held through quiet hours ({kind_text})",
                alerts.len()
            ),
            150,
        ),
        _ => clip(&format!("{} alerts: {kind_text}", alerts.len()), 150),
    };
    let link_of = |lead: &str| link.map(|l| l.replace("{lead}", lead));
    let mut blocks = vec![serde_json::json!({
        "type": "header",
        "text": {"type": "plain_text", "text": title, "emoji": false},
    })];
    let mut text = format!("{title}\n\n");
    for (a, lead) in alerts.iter().take(MAX_LISTED) {
        let lead_id = a.labels.get("lead").cloned().unwrap_or_default();
        let mut md = format!("*{}* — {}", escape(&a.kind), escape(&a.message));
        let mut plain = format!("- [{}] {}", a.kind, a.message);
        if let Some(l) = lead {
            md.push_str(&format!("\n{}", escape(&who(l))));
            plain.push_str(&format!("\n  {}", who(l)));
            if let Some(s) = score_line(l) {
                md.push_str(&format!("\n{}", escape(&s)));
                plain.push_str(&format!("\n  {s}"));
            }
            if let Some(o) = &l.owner {
                md.push_str(&format!("\nowner: {}", escape(o)));
                plain.push_str(&format!("\n  owner: {o}"));
            }
        }
        let mut section = serde_json::json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": clip(&md, 3000)},
        });
        if let Some(url) = link_of(&lead_id).filter(|_| !lead_id.is_empty()) {
            plain.push_str(&format!("\n  {url}"));
            section["accessory"] = serde_json::json!({
                "type": "button",
                "text": {"type": "plain_text", "text": "Open lead"},
                "url": url,
            });
        }
        blocks.push(section);
        text.push_str(&plain);
        text.push('\n');
    }
    if alerts.len() > MAX_LISTED {
        let more = format!("… and {} more", alerts.len() - MAX_LISTED);
        blocks
            .push(serde_json::json!({"type": "section", "text": {"type": "mrkdwn", "text": more}}));
        text.push_str(&more);
        text.push('\n');
    }
    let context = format!("leadgate · tenant {tenant} · route {route} · group {group_key}");
    blocks.push(serde_json::json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": escape(&clip(&context, 2000))}],
    }));
    text.push_str(&format!("\n{context}\n"));
    let document = serde_json::json!({
        "event": "alerts",
        "tenant": tenant,
        "route": route,
        "group": group_key,
        "digest": digest,
        "alerts": alerts.iter().map(|(a, lead)| serde_json::json!({
            "id": a.id,
            "kind": a.kind,
            "labels": a.labels,
            "message": a.message,
            "created_at": a.created_at,
            "fingerprint": crate::policy::fingerprint(&a.labels),
            "lead": lead,
            "link": a.labels.get("lead").and_then(|l| link_of(l)),
        })).collect::<Vec<_>>(),
    });
    Rendered {
        title,
        text,
        blocks: serde_json::Value::Array(blocks),
        document,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn alert(id: i64, kind: &str, lead: &str) -> Alert {
        Alert {
            id,
            kind: kind.into(),
            labels: [("kind", kind), ("lead", lead)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            message: format!("lead {lead} <b>&"),
            created_at: 0,
            ends_at: 1,
        }
    }

    #[test]
    fn one_alert_names_its_lead_and_escapes_mrkdwn() {
        let lead = LeadView {
            id: "L1".into(),
            name: Some("Ada Lovelace".into()),
            email: Some("ada@example.com".into()),
            company: Some("Analytical".into()),
            score: Some(91.4),
            grade: Some("A".into()),
            reasons: vec!["visited pricing twice".into()],
            owner: Some("Grace".into()),
        };
        let r = render(
            "acme",
            "hot",
            "lead=L1",
            &[(alert(1, "lead.hot", "L1"), Some(lead))],
            Some("https://app.example.com/leads/{lead}"),
            false,
        );
        assert_eq!(
            r.title,
            "[lead.hot] Ada Lovelace <ada@example.com> at Analytical"
        );
        let section = r.blocks[1]["text"]["text"].as_str().unwrap();
        assert!(section.contains("&lt;b&gt;&amp;"), "{section}");
        assert!(section.contains("score 91 (grade A): visited pricing twice"));
        assert_eq!(
            r.blocks[1]["accessory"]["url"],
            "https://app.example.com/leads/L1"
        );
        assert_eq!(r.document["alerts"][0]["lead"]["grade"], "A");
    }

    #[test]
    fn a_digest_lists_twenty_and_counts_the_rest() {
        let alerts: Vec<_> = (0..25)
            .map(|i| (alert(i, "routing.queued", &format!("L{i}")), None))
            .collect();
        let r = render("acme", "ops", "kind=routing.queued", &alerts, None, true);
        assert!(r.title.starts_with("Digest: 25 alerts"));
        // header + 20 + "more" + context
        assert_eq!(r.blocks.as_array().unwrap().len(), 23);
        assert!(r.text.contains("… and 5 more"));
        assert_eq!(r.document["alerts"].as_array().unwrap().len(), 25);
    }
}
