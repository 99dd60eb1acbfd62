//! The notifier over HTTP: silences (`GET`/`POST /v1/silences`,
//! `DELETE /v1/silences/{id}`) and the notification outbox
//! (`GET /v1/notifications`, `POST /v1/notifications/retry`).

use super::*;
use crate::config::Config;
use crate::notifier::{NewSilence, SilenceRefused};

/// Runs a notifier verb off the async threads; a refused silence is 422
/// naming the field, or 404.
async fn with_store<T: serde::Serialize + Send + 'static>(
    s: &S,
    config: Arc<Config>,
    ok: u16,
    f: impl FnOnce(&Config, &mut leadgate_store::Store, i64) -> anyhow::Result<T> + Send + 'static,
) -> Response {
    blocking_verb(s, config, ok, refused, f).await
}

fn refused(e: &anyhow::Error) -> Option<Response> {
    match e.downcast_ref::<SilenceRefused>()? {
        SilenceRefused::Invalid { field, reason } => Some(invalid_field(field, reason)),
        r @ SilenceRefused::NotFound(_) => Some(error(404, "not_found", r.to_string())),
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
    let ids = match retry_ids(&s, &headers, body, "notification").await {
        Ok(ids) => ids,
        Err(r) => return r,
    };
    with_store(&s, t.config.clone(), 200, move |c, st, now| {
        let n = st.retry_notifications(&c.tenant, &ids, now)?;
        Ok(serde_json::json!({"requeued": n}))
    })
    .await
}
