//! What a request is answered, how a batch of events is taken in, and a
//! logged request read back to be processed again.

use super::*;

/// The answer to one request.
pub(super) fn reply(
    tenant: &str,
    store: &Store,
    p: &Pending,
    results: Vec<Option<Processed>>,
    scores: &std::collections::HashMap<String, String>,
) -> Result<Reply> {
    let mut lines: Vec<String> = Vec::with_capacity(results.len());
    let mut first: Option<(Status, String)> = None;
    for (id, r) in p.ids.iter().zip(results) {
        let line = match r {
            Some(r) => {
                let text = r.line.get();
                if first.is_none() {
                    first = Some((r.status, text.to_string()));
                }
                match (scores.get(id), text.strip_suffix('}')) {
                    (Some(score), Some(head)) => format!("{head},\"score\":{score}}}"),
                    _ => text.to_string(),
                }
            }
            None => {
                // Recorded before a restart: its stored state.
                let (status, q) = store
                    .lead_state(tenant, id)?
                    .unwrap_or_else(|| ("exception".into(), None));
                serde_json::json!({"lead_id": id, "status": status, "qualification": {"state": q}, "recovered": true})
                    .to_string()
            }
        };
        lines.push(line);
    }
    let request_id = p.intake;
    if p.kind == "form"
        && let Some((status, text)) = first
    {
        let result: serde_json::Value = serde_json::from_str(&text)?;
        if status == Status::Rejected {
            let of = |severity: &str| -> Vec<serde_json::Value> {
                result["issues"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter(|i| i["severity"] == severity)
                                .map(|i| serde_json::json!({"field": i["field"], "code": i["code"], "message": i["message"]}))
                                .collect()
                        })
                        .unwrap_or_default()
            };
            return Ok(Reply {
                status: 422,
                body: serde_json::json!({
                    "request_id": request_id,
                    "lead_id": result["lead_id"],
                    "status": "rejected",
                    "errors": of("error"),
                    "warnings": of("warning"),
                })
                .to_string(),
            });
        }
        return Ok(Reply {
            status: 201,
            body: format!(
                "{{\"request_id\":{request_id},\"lead_id\":{},\"status\":{},\"result\":{}}}",
                result["lead_id"], result["status"], lines[0]
            ),
        });
    }
    Ok(Reply {
        status: 200,
        body: format!(
            "{{\"request_id\":{request_id},\"state\":\"done\",\"results\":[{}]}}",
            lines.join(",")
        ),
    })
}

/// Stores events, attaches them and re-scores the leads they touch.
#[allow(clippy::too_many_arguments)]
pub(super) fn events_into(
    config: &Config,
    tenant: &str,
    scoring: &mut Option<crate::score::Scoring<'_>>,
    pipeline: &mut crate::score::Pipeline,
    store: &mut Store,
    intake: i64,
    events: &[String],
) -> Result<Reply> {
    let now = crate::clock::now_ms();
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for (i, raw) in events.iter().enumerate() {
        match crate::events::parse(i as u64 + 1, raw, &config.score.pages, now) {
            Ok(e) => good.push(e),
            Err(r) => bad.push(r),
        }
    }
    // A reply is the first touch of the lead's assignment, when routing
    // is on: stored on their own to know whose leads they reached.
    let (replies, good): (Vec<_>, Vec<_>) = good
        .into_iter()
        .partition(|e| config.routing.enabled && e.kind == "reply");
    let mut inserted = store.insert_events(tenant, &good, now)?;
    // One at a time (replies are few), each touching at its own time.
    for reply in &replies {
        let r = store.insert_events(tenant, std::slice::from_ref(reply), now)?;
        let at = reply.at.min(now);
        for lead in &r.leads {
            if store.touch(tenant, lead, at)?.is_some() {
                crate::notifier::resolve_on_touch(config, store, lead, at)?;
            }
        }
        inserted.stored += r.stored;
        inserted.duplicates += r.duplicates;
        inserted.attached += r.attached;
        inserted.leads.extend(r.leads);
    }
    let good: Vec<_> = good.into_iter().chain(replies).collect();
    store.reject_events(tenant, &format!("request {intake}"), &bad, now)?;
    let mut touched = inserted.leads.clone();
    touched.extend(store.attach_pending(tenant)?);
    if let Some(scoring) = scoring.as_mut()
        && !touched.is_empty()
    {
        crate::score::rescore(
            config,
            store,
            scoring,
            crate::score::Scope::WithAccounts(&touched),
            "events",
            pipeline,
            now,
        )?;
    }
    // The workflow rules look at what these events changed (the
    // background thread runs them).
    leadgate_pipeline::rules::queue(
        config,
        store,
        &touched,
        leadgate_pipeline::rules::cause::EVENTS,
        now,
    )?;
    let rejected: Vec<serde_json::Value> = bad
        .iter()
        .map(|b| serde_json::json!({"line": b.line, "field": b.field, "code": b.code, "message": b.message}))
        .collect();
    let status = if good.is_empty() && !bad.is_empty() {
        422
    } else {
        200
    };
    let reply = Reply {
        status,
        body: serde_json::json!({
            "request_id": intake,
            "state": "done",
            "stored": inserted.stored,
            "duplicates": inserted.duplicates,
            "attached": inserted.attached,
            "rejected": rejected,
        })
        .to_string(),
    };
    store.finish_intake(&[(intake, reply.status, &reply.body)], now)?;
    Ok(reply)
}

pub(super) fn unpack(row: &IntakeRow) -> Result<Pending> {
    let request: LeadsRequest =
        serde_json::from_str(&row.body).context("the logged request is not readable")?;
    let ids: Vec<String> =
        serde_json::from_str(&row.lead_ids).context("the logged lead ids are not readable")?;
    Ok(Pending {
        intake: row.id,
        key: None,
        ids,
        request,
        kind: row.kind.clone(),
        received: None,
        done: None,
        recorded: BTreeSet::new(),
    })
}
