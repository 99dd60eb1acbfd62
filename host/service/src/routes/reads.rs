//! What a tenant reads and decides: requests, leads, the review queue and
//! its decisions, alerts, and the CRM outbox with its retries.

use super::*;

/// Runs a store read for a handler off the async threads.
pub(super) async fn with_store<T: Send + 'static>(
    s: &S,
    f: impl FnOnce(&leadgate_store::Store) -> anyhow::Result<T> + Send + 'static,
) -> Result<T, Response> {
    let s = s.clone();
    match tokio::task::spawn_blocking(move || {
        let store = s.reader.get()?;
        f(&store)
    })
    .await
    {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(error(500, "store", format!("{e:#}"))),
        Err(_) => Err(error(500, "internal", "the store task failed")),
    }
}

pub(super) async fn get_request(
    State(s): State<S>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let (tenant, _) = match authenticate(&s, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let id = match path_id(id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let tenant = tenant.to_string();
    let row = match with_store(&s, move |st| Ok(st.intake(&tenant, id)?)).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    match row {
        None => error(404, "request.not_found", format!("no request {id}")),
        Some(row) => {
            let result: serde_json::Value = row
                .result
                .as_deref()
                .and_then(|r| serde_json::from_str(r).ok())
                .unwrap_or(serde_json::Value::Null);
            json(
                200,
                serde_json::json!({
                    "request_id": row.id,
                    "kind": row.kind,
                    "state": row.state,
                    "received_at": row.received_at,
                    "done_at": row.done_at,
                    "status_code": row.status_code,
                    "result": result,
                })
                .to_string(),
            )
        }
    }
}

pub(super) async fn get_lead(
    State(s): State<S>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let (tenant, _) = match authenticate(&s, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Ok(Path(id)) = id else {
        return param_error("path", "id", "is not UTF-8 once percent-decoded");
    };
    let tenant = tenant.to_string();
    let lid = id.clone();
    let found = with_store(&s, move |st| {
        let Some(row) = st.lead_row(&lid)? else {
            return Ok(None);
        };
        if row.tenant != tenant {
            return Ok(None);
        }
        let parse = |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap_or_default();
        let e = st.enrichment(&lid)?.unwrap_or_default();
        let score = st.stored_score(&lid)?;
        Ok(Some(serde_json::json!({
            "id": row.id,
            "status": row.status,
            "master_id": row.master_id,
            "lead": row.normalized.as_deref().map(parse),
            "enrichment": e.enrichment.as_deref().map(parse),
            "qualification": e.qualification,
            "score": score.map(|s| parse(&s.detail)),
            "crm": st.handoffs_of(&tenant, &lid)?,
            "assignment": crate::routing::assignment_json(st, &tenant, &lid)?,
            "rules": leadgate_pipeline::rules::lead_json(st, &tenant, &lid)?,
        })))
    })
    .await;
    match found {
        Ok(Some(v)) => json(200, v.to_string()),
        Ok(None) => error(404, "lead.not_found", format!("no lead {id}")),
        Err(r) => r,
    }
}

/// A `GET` list route: the tenant's items from `read(store, tenant,
/// config, limit, state)`, as `{"items": [...]}`. `states` are the values
/// the route's `state` parameter takes (none: it has no such parameter).
pub(super) async fn list<T: serde::Serialize + Send + 'static>(
    s: &S,
    headers: &HeaderMap,
    query: Option<String>,
    default_limit: usize,
    states: &[&str],
    read: impl FnOnce(
        &leadgate_store::Store,
        &str,
        &crate::config::Config,
        usize,
        Option<String>,
    ) -> anyhow::Result<Vec<T>>
    + Send
    + 'static,
) -> Response {
    let (tenant, t) = match authenticate(s, headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let known: &[&str] = if states.is_empty() {
        &["limit"]
    } else {
        &["limit", "state"]
    };
    let q = match Params::of(query, known) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let limit = match q.limit(default_limit) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let state = if states.is_empty() {
        None
    } else {
        match q.one_of("state", states) {
            Ok(st) => st,
            Err(r) => return r,
        }
    };
    let tenant = tenant.to_string();
    let config = t.config.clone();
    match with_store(s, move |st| read(st, &tenant, &config, limit, state)).await {
        Ok(items) => json(200, serde_json::json!({"items": items}).to_string()),
        Err(r) => r,
    }
}

pub(super) async fn list_review(
    State(s): State<S>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    list(&s, &headers, q, 50, &[], |st, tenant, config, limit, _| {
        crate::review::prioritized(config, st, tenant, limit, crate::clock::now_ms())
    })
    .await
}

pub(super) async fn get_review(
    State(s): State<S>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let (tenant, t) = match authenticate(&s, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let id = match path_id(id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let tenant = tenant.to_string();
    let config = t.config.clone();
    match with_store(&s, move |st| {
        crate::review::detail(&config, st, &tenant, id)
    })
    .await
    {
        Ok(Some(v)) => json(200, v.to_string()),
        Ok(None) => error(404, "review.not_found", format!("no review item {id}")),
        Err(r) => r,
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DecisionBody {
    decision: String,
    reviewer: String,
    note: Option<String>,
}

pub(super) async fn decide_review(
    State(s): State<S>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (tenant, t) = match authenticate(&s, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let id = match path_id(id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let body = match read_body(&s, body, &headers, 64 * 1024).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let d: DecisionBody = match object_body(
        &body,
        "a decision is {\"decision\": \"merge|not_duplicate|accept|reject\", \"reviewer\": \"...\", \"note\": \"...\"}",
    ) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let tenant = tenant.to_string();
    let config = t.config.clone();
    let pool = s.reader.clone();
    let decided = tokio::task::spawn_blocking(move || {
        let mut store = pool.get()?;
        crate::review::decide(
            &config,
            &mut store,
            &tenant,
            id,
            &d.decision,
            &d.reviewer,
            d.note.as_deref(),
            crate::clock::now_ms(),
        )
    })
    .await;
    match decided {
        Ok(Ok(outcome)) => {
            s.metrics.count(
                &s.metrics.review_decisions,
                &t.config.tenant,
                &outcome.decision,
            );
            json(200, serde_json::to_string(&outcome).unwrap_or_default())
        }
        Ok(Err(e)) => match e.downcast_ref::<crate::review::DecideError>() {
            Some(de) => error(de.status(), de.code(), de.to_string()),
            None => error(500, "store", format!("{e:#}")),
        },
        Err(_) => error(500, "internal", "the decision task failed"),
    }
}

/// The states of a CRM handoff, as `GET /v1/outbox?state=` takes them.
pub(super) const OUTBOX_STATES: &[&str] = &["pending", "delivered", "failed", "dead"];

pub(super) async fn list_outbox(
    State(s): State<S>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    list(
        &s,
        &headers,
        q,
        100,
        OUTBOX_STATES,
        |st, tenant, _, limit, state| Ok(st.handoffs(tenant, state.as_deref(), limit)?),
    )
    .await
}

pub(super) async fn list_alerts(
    State(s): State<S>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    list(&s, &headers, q, 100, &[], |st, tenant, _, limit, _| {
        Ok(st.alerts(tenant, limit)?)
    })
    .await
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RetryBody {
    #[serde(default)]
    ids: Vec<i64>,
}

/// The ids of a retry request (`{"ids": [..]}`, or no body: none, which
/// means every failed one), each a whole number from 1 up.
pub(super) async fn retry_ids(
    s: &S,
    headers: &HeaderMap,
    body: Body,
    what: &str,
) -> Result<Vec<i64>, Response> {
    let body = read_body(s, body, headers, 64 * 1024).await?;
    let r: RetryBody = if body.is_empty() {
        RetryBody::default()
    } else {
        object_body(
            &body,
            "a retry is {\"ids\": [..]} (or no body: every failed one)",
        )?
    };
    if let Some(bad) = r.ids.iter().find(|id| **id < 1) {
        return Err(field_error(
            "body.invalid",
            "ids",
            format!("ids are {what} ids, whole numbers from 1 up, not {bad}"),
        ));
    }
    Ok(r.ids)
}

pub(super) async fn retry_outbox(State(s): State<S>, headers: HeaderMap, body: Body) -> Response {
    let (tenant, _) = match authenticate(&s, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let ids = match retry_ids(&s, &headers, body, "handoff").await {
        Ok(ids) => ids,
        Err(r) => return r,
    };
    let tenant = tenant.to_string();
    let pool = s.reader.clone();
    let n = tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
        let mut store = pool.get()?;
        Ok(store.retry_handoffs(&tenant, &ids, crate::clock::now_ms())?)
    })
    .await;
    match n {
        Ok(Ok(n)) => json(200, serde_json::json!({"requeued": n}).to_string()),
        Ok(Err(e)) => error(500, "store", format!("{e:#}")),
        Err(_) => error(500, "internal", "the retry task failed"),
    }
}
