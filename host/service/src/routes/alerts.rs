//! The notifier over HTTP: silences (`GET`/`POST /v1/silences`,
//! `DELETE /v1/silences/{id}`) and the notification outbox
//! (`GET /v1/notifications`, `POST /v1/notifications/retry`).

use super::*;
use crate::config::Config;
use crate::notifier::{NewSilence, SilenceRefused};

/// Runs a notifier verb with a store connection of the pool, off the async
/// threads; a refusal becomes its status, code and message.
async fn with_store<T: serde::Serialize + Send + 'static>(
    s: &S,
    config: Arc<Config>,
    ok: u16,
    f: impl FnOnce(&Config, &mut leadgate_store::Store, i64) -> anyhow::Result<T> + Send + 'static,
) -> Response {
    let pool = s.reader.clone();
    let done = tokio::task::spawn_blocking(move || {
        let mut store = pool.get()?;
        f(&config, &mut store, crate::clock::now_ms())
    })
    .await;
    match done {
        Ok(Ok(v)) => json(ok, serde_json::to_string(&v).unwrap_or_default()),
        Ok(Err(e)) => match e.downcast_ref::<SilenceRefused>() {
            Some(SilenceRefused::Invalid { field, reason }) => json(
                422,
                serde_json::json!({"error": {"code": "body.invalid", "field": field, "message": format!("{field}: {reason}")}})
                    .to_string(),
            ),
            Some(r @ SilenceRefused::NotFound(_)) => error(404, "not_found", r.to_string()),
            None => error(500, "store", format!("{e:#}")),
        },
        Err(_) => error(500, "internal", "the notifier task failed"),
    }
}

/// The states of a silence, as `GET /v1/silences?state=` takes them.
const SILENCE_STATES: &[&str] = &["active", "pending", "expired"];

pub(super) async fn list_silences(
    State(s): State<S>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    list(
        &s,
        &headers,
        q,
        100,
        SILENCE_STATES,
        |st, _, c, limit, state| {
            let now = crate::clock::now_ms();
            let all = state.as_deref() == Some("expired");
            Ok(crate::notifier::list_silences(c, st, all, now)?
                .into_iter()
                .filter(|v| match state.as_deref() {
                    Some(want) => v.state == want,
                    None => v.state != "expired",
                })
                .take(limit)
                .collect())
        },
    )
    .await
}

pub(super) async fn post_silence(State(s): State<S>, headers: HeaderMap, body: Body) -> Response {
    let (_, t) = match authenticate(&s, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let body = match read_body(&s, body, &headers, 64 * 1024).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let new: NewSilence = match object_body(
        &body,
        "a silence is {\"matchers\": {\"kind\": \"routing.*\"}, \"duration\": \"2h\", \"comment\": \"...\", \"created_by\": \"...\"}",
    ) {
        Ok(v) => v,
        Err(r) => return r,
    };
    with_store(&s, t.config.clone(), 201, move |c, st, now| {
        crate::notifier::add_silence(c, st, &new, now)
    })
    .await
}

pub(super) async fn delete_silence(
    State(s): State<S>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let (_, t) = match authenticate(&s, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let id = match path_id(id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    with_store(&s, t.config.clone(), 200, move |c, st, now| {
        crate::notifier::expire_silence(c, st, id, now)?;
        Ok(serde_json::json!({"id": id, "state": "expired", "ends_at": now}))
    })
    .await
}

/// The states of a notification, as `GET /v1/notifications?state=` takes
/// them.
const NOTIFICATION_STATES: &[&str] = &["pending", "sent", "failed", "dead"];

pub(super) async fn list_notifications(
    State(s): State<S>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    list(
        &s,
        &headers,
        q,
        100,
        NOTIFICATION_STATES,
        |st, tenant, _, limit, state| Ok(st.notifications(tenant, state.as_deref(), limit)?),
    )
    .await
}

pub(super) async fn retry_notifications(
    State(s): State<S>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (_, t) = match authenticate(&s, &headers) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let body = match read_body(&s, body, &headers, 64 * 1024).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let r: RetryBody = if body.is_empty() {
        RetryBody::default()
    } else {
        match object_body(
            &body,
            "a retry is {\"ids\": [..]} (or no body: every failed and dead one)",
        ) {
            Ok(r) => r,
            Err(r) => return r,
        }
    };
    if let Some(bad) = r.ids.iter().find(|id| **id < 1) {
        return field_error(
            "body.invalid",
            "ids",
            format!("ids are notification ids, whole numbers from 1 up, not {bad}"),
        );
    }
    with_store(&s, t.config.clone(), 200, move |c, st, now| {
        let n = st.retry_notifications(&c.tenant, &r.ids, now)?;
        Ok(serde_json::json!({"requeued": n}))
    })
    .await
}
