//! The workflow rules' actions that call out of the store, delivered by
//! the service's background thread (`leadgate_pipeline::rules::Deliver`):
//!
//! - **`crm_update`**: the lead's CRM record gets the properties
//!   (HubSpot: `PATCH /crm/v3/objects/contacts/{id}`; the webhook target:
//!   a `rule.crm_update` document).
//! - **`crm_task`**: a task on the record (HubSpot: `POST
//!   /crm/v3/objects/tasks`, associated with the contact and owned by the
//!   lead's rep when the rep has a `crm_owner_id`; the webhook target: a
//!   `rule.crm_task` document).
//! - **`sequence`**: the lead started in (or stopped from) an outbound
//!   sequence: a HubSpot sequence (`POST
//!   /automation/v4/sequences/enrollments`), or a signed webhook
//!   (`[rules.sequences.NAME] url`, else `[rules] sequence_url`).
//!
//! Every webhook call carries `Idempotency-Key: leadgate:{tenant}:{action
//! key}` and, with a secret, the `X-Leadgate-Signature` leadgate's own
//! webhooks carry. A lead not in the CRM yet, 429s, 5xx and timeouts are
//! tried again later with the CRM's backoff, and given up after
//! `[crm] max_attempts`; any other refusal fails the action with the
//! receiver's answer.

use crate::config::Config;
use crate::handoff::{Answer, backoff, call};
use anyhow::Result;
use leadgate_pipeline::config::serve::Target;
use leadgate_pipeline::rules::{Deliver, Outcome};
use leadgate_rules::{Action, SequenceOp};
use leadgate_store::Store;
use leadgate_store::prelude::*;
use leadgate_store::rules::RuleActionRow;
use std::time::Duration;

/// HubSpot's association type of a task to a contact.
const TASK_TO_CONTACT: i64 = 204;

/// The service's delivery of rule actions.
pub struct Delivery<'a> {
    pub agent: &'a ureq::Agent,
    /// The CRM's token, or the CRM webhook's signing secret.
    pub crm_token: Option<&'a str>,
    /// The sequence webhook's signing secret.
    pub sequence_token: Option<&'a str>,
}

impl Deliver for Delivery<'_> {
    fn deliver(
        &mut self,
        config: &Config,
        store: &mut Store,
        row: &RuleActionRow,
        action: &Action,
        now: i64,
    ) -> Result<Outcome> {
        let answer = match action {
            Action::CrmUpdate { .. } | Action::CrmTask { .. } => {
                match self.crm(config, store, row, action, now)? {
                    Ok(answer) => answer,
                    Err(outcome) => return Ok(outcome),
                }
            }
            Action::Sequence { sequence, op } => {
                match self.sequence(config, store, row, sequence, *op, now)? {
                    Ok(answer) => answer,
                    Err(outcome) => return Ok(outcome),
                }
            }
            other => {
                return Ok(Outcome::Failed(format!(
                    "{} is carried out in the store, not delivered",
                    other.kind()
                )));
            }
        };
        Ok(settle(config, row, answer, now))
    }
}

/// What a call's answer makes of the action.
fn settle(config: &Config, row: &RuleActionRow, answer: Answer, now: i64) -> Outcome {
    match answer {
        Answer::Ok(_) => Outcome::Done("delivered".into()),
        Answer::Refused { error, .. } => Outcome::Failed(format!("refused: {error}")),
        Answer::Transient { error, retry_after } => retry(config, row, error, retry_after, now),
    }
}

/// Tried again later, or given up after `[crm] max_attempts`.
fn retry(
    config: &Config,
    row: &RuleActionRow,
    reason: String,
    retry_after: Option<Duration>,
    now: i64,
) -> Outcome {
    if row.attempts + 1 >= i64::from(config.crm.max_attempts) {
        return Outcome::Failed(format!(
            "given up after {} attempts: {reason}",
            row.attempts + 1
        ));
    }
    Outcome::Retry {
        reason,
        at: now.saturating_add(backoff(config, row.attempts, retry_after)),
    }
}

/// The document a webhook receiver gets for a rule action.
fn document(config: &Config, row: &RuleActionRow, action: &Action) -> serde_json::Value {
    serde_json::json!({
        "event": format!("rule.{}", action.kind()),
        "tenant": config.tenant,
        "lead_id": row.lead_id,
        "rule": row.key.split(':').next().unwrap_or_default(),
        "key": row.key,
        "action": action,
    })
}

/// The lead as a sequence receiver gets it: its id and normalized record.
fn lead_document(store: &Store, lead: &str) -> Result<serde_json::Value> {
    let normalized = store
        .lead_row(lead)?
        .and_then(|r| r.normalized)
        .and_then(|n| serde_json::from_str::<serde_json::Value>(&n).ok());
    Ok(serde_json::json!({"id": lead, "normalized": normalized}))
}

/// A signed `POST` of `body` to `url`, keyed by the action.
fn post_signed(
    agent: &ureq::Agent,
    config: &Config,
    url: &str,
    secret: Option<&str>,
    row: &RuleActionRow,
    body: &str,
    now: i64,
) -> Answer {
    let mut extra = vec![(
        "Idempotency-Key",
        format!("leadgate:{}:{}", config.tenant, row.key),
    )];
    if let Some(t) = secret {
        extra.push((
            "X-Leadgate-Signature",
            leadgate_signature::leadgate_v1::sign(t.as_bytes(), body.as_bytes(), now),
        ));
    }
    let timeout = Duration::from_millis(config.crm.timeout_ms);
    call(agent, "POST", url, None, &extra, body, timeout)
}

impl Delivery<'_> {
    /// A CRM update or task: the call's answer, or the outcome without one.
    fn crm(
        &self,
        config: &Config,
        store: &Store,
        row: &RuleActionRow,
        action: &Action,
        now: i64,
    ) -> Result<Result<Answer, Outcome>> {
        let timeout = Duration::from_millis(config.crm.timeout_ms);
        match config.crm.target {
            Target::None => Ok(Err(Outcome::Failed(
                "no CRM to write to ([crm] target = \"none\")".into(),
            ))),
            Target::Webhook => {
                let body = document(config, row, action).to_string();
                Ok(Ok(post_signed(
                    self.agent,
                    config,
                    &config.crm.url,
                    self.crm_token,
                    row,
                    &body,
                    now,
                )))
            }
            Target::Hubspot => {
                let Some(contact) = store.crm_record(&config.tenant, &row.lead_id, "hubspot")?
                else {
                    // Handed off later (qualified, or owned): wait for it.
                    return Ok(Err(retry(
                        config,
                        row,
                        "the lead is not in HubSpot yet".into(),
                        None,
                        now,
                    )));
                };
                let base = config.crm.url.trim_end_matches('/');
                match action {
                    Action::CrmUpdate { fields } => {
                        let url = format!("{base}/crm/v3/objects/contacts/{contact}");
                        let body = serde_json::json!({"properties": fields}).to_string();
                        Ok(Ok(call(
                            self.agent,
                            "PATCH",
                            &url,
                            self.crm_token,
                            &[],
                            &body,
                            timeout,
                        )))
                    }
                    Action::CrmTask { title, due } => {
                        let due_at = match due.as_deref().map(leadgate_rules::parse_duration_ms) {
                            None => now,
                            Some(Ok(ms)) => now.saturating_add(ms),
                            Some(Err(e)) => {
                                return Ok(Err(Outcome::Failed(format!("due: {e}"))));
                            }
                        };
                        let owner = self.owner(config, store, &row.lead_id)?;
                        let mut properties = serde_json::json!({
                            "hs_task_subject": title,
                            "hs_task_status": "NOT_STARTED",
                            "hs_timestamp": due_at,
                            "hs_task_body": format!("leadgate rule {}", row.key),
                        });
                        if let (Some(o), Some(p)) = (owner, properties.as_object_mut()) {
                            p.insert("hubspot_owner_id".into(), o.into());
                        }
                        let body = serde_json::json!({
                            "properties": properties,
                            "associations": [{
                                "to": {"id": contact},
                                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": TASK_TO_CONTACT}],
                            }],
                        })
                        .to_string();
                        let url = format!("{base}/crm/v3/objects/tasks");
                        Ok(Ok(call(
                            self.agent,
                            "POST",
                            &url,
                            self.crm_token,
                            &[],
                            &body,
                            timeout,
                        )))
                    }
                    _ => Ok(Err(Outcome::Failed("not a CRM action".into()))),
                }
            }
        }
    }

    /// The CRM owner id of the lead's rep, when routing gave it one.
    fn owner(&self, config: &Config, store: &Store, lead: &str) -> Result<Option<String>> {
        let Some(rep) = store
            .assignment(&config.tenant, lead)?
            .and_then(|a| a.rep_id)
        else {
            return Ok(None);
        };
        let reps = leadgate_pipeline::assign::reps_of(&store.reps(&config.tenant)?)?;
        Ok(reps
            .into_iter()
            .find(|r| r.id == rep)
            .and_then(|r| r.crm_owner_id))
    }

    /// A sequence started or stopped: the call's answer, or the outcome
    /// without one.
    fn sequence(
        &self,
        config: &Config,
        store: &Store,
        row: &RuleActionRow,
        name: &str,
        op: SequenceOp,
        now: i64,
    ) -> Result<Result<Answer, Outcome>> {
        let own = config.rules.sequences.get(name);
        if let Some(seq) = own.filter(|s| s.hubspot_sequence_id.is_some()) {
            if op == SequenceOp::Stop {
                return Ok(Err(Outcome::Failed(
                    "HubSpot's API does not unenrol from a sequence (a reply or a meeting does)"
                        .into(),
                )));
            }
            let (Some(id), Some(user), Some(sender)) = (
                seq.hubspot_sequence_id.as_deref(),
                seq.hubspot_user_id.as_deref(),
                seq.sender_email.as_deref(),
            ) else {
                return Ok(Err(Outcome::Failed(format!(
                    "[rules.sequences.{name}] needs hubspot_user_id and sender_email beside hubspot_sequence_id"
                ))));
            };
            let Some(contact) = store.crm_record(&config.tenant, &row.lead_id, "hubspot")? else {
                return Ok(Err(retry(
                    config,
                    row,
                    "the lead is not in HubSpot yet".into(),
                    None,
                    now,
                )));
            };
            let base = config.crm.url.trim_end_matches('/');
            let url = format!("{base}/automation/v4/sequences/enrollments?userId={user}");
            let body =
                serde_json::json!({"contactId": contact, "sequenceId": id, "senderEmail": sender})
                    .to_string();
            let timeout = Duration::from_millis(config.crm.timeout_ms);
            return Ok(Ok(call(
                self.agent,
                "POST",
                &url,
                self.crm_token,
                &[],
                &body,
                timeout,
            )));
        }
        let Some(url) = own
            .and_then(|s| s.url.as_deref())
            .or(config.rules.sequence_url.as_deref())
        else {
            return Ok(Err(Outcome::Failed(format!(
                "sequence {name:?} has no target: set [rules.sequences.{name}] (a HubSpot sequence or a url) or [rules] sequence_url"
            ))));
        };
        let lead = lead_document(store, &row.lead_id)?;
        let mut doc = document(
            config,
            row,
            &Action::Sequence {
                sequence: name.to_string(),
                op,
            },
        );
        if let Some(o) = doc.as_object_mut() {
            o.insert("lead".into(), lead);
        }
        let body = doc.to_string();
        Ok(Ok(post_signed(
            self.agent,
            config,
            url,
            self.sequence_token,
            row,
            &body,
            now,
        )))
    }
}
