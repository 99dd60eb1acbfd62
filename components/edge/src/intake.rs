//! Reading a submission: the body into fields, the fields into a lead (the
//! host's own mapping, `leadgate-ingest`), and the answers a form shows.

use crate::Refusal;
use leadgate_lead::{Issue, Lead, Severity, Source};
use serde_json::{Map, Value};

/// The content type without parameters, lowercased (`""` when absent).
pub fn media_type(content_type: Option<&str>) -> String {
    content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// A form submission's fields: `application/x-www-form-urlencoded` or one
/// JSON object. `form` is recorded as `form_id` unless the form sends its
/// own.
pub fn form_fields(
    body: &[u8],
    media_type: &str,
    form: &str,
) -> Result<Map<String, Value>, Refusal> {
    let refused = |e: leadgate_ingest::body::BodyError| Refusal::new(e.status, e.code, e.message);
    let mut fields = match media_type {
        "application/x-www-form-urlencoded" => {
            leadgate_ingest::body::form_fields(body).map_err(refused)?
        }
        "application/json" | "" => {
            match leadgate_ingest::body::parse_json(body).map_err(refused)? {
                Value::Object(o) => {
                    leadgate_ingest::body::check_fields(&o, "").map_err(refused)?;
                    o
                }
                other => {
                    return Err(Refusal::new(
                        400,
                        "body.shape",
                        format!(
                            "a form submission is one JSON object, not {}",
                            leadgate_ingest::body::kind(&other)
                        ),
                    ));
                }
            }
        }
        other => {
            return Err(Refusal::new(
                415,
                "body.content_type",
                format!(
                    "content type '{other}' is not accepted: send application/x-www-form-urlencoded or application/json"
                ),
            ));
        }
    };
    if fields.is_empty() {
        return Err(Refusal::new(
            400,
            "body.empty",
            "the form submission has no fields",
        ));
    }
    fields
        .entry("form_id")
        .or_insert_with(|| Value::String(form.to_string()));
    Ok(fields)
}

/// Leads carried by a webhook: one JSON object, an array of them, or
/// `{"leads": [...]}` — as the core reads them.
pub fn webhook_leads(body: &[u8], max: usize) -> Result<Vec<Value>, Refusal> {
    let refused = |e: leadgate_ingest::body::BodyError| Refusal::new(e.status, e.code, e.message);
    let value = leadgate_ingest::body::parse_json(body).map_err(refused)?;
    leadgate_ingest::body::leads_in(value, max, leadgate_ingest::body::WEBHOOK_ENVELOPE)
        .map_err(refused)
}

/// The lead a submission describes, read with the host's mapping (the same
/// header aliases as `leadgate run`), and the problems its values had.
pub fn lead_of(
    fields: &Value,
    tenant: &str,
    source: Source,
    now_ms: i64,
) -> Result<(Lead, Vec<Issue>), Refusal> {
    let mapping = leadgate_ingest::Mapping::parse::<&str>(&[])
        .map_err(|e| Refusal::new(500, "internal", e.to_string()))?;
    match leadgate_ingest::parse_value(fields, &mapping, leadgate_ingest::Limits::default()) {
        Ok(parsed) => {
            let mut lead = parsed.lead;
            lead.tenant = tenant.to_string();
            if !parsed.has_source {
                lead.source = source;
            }
            if !parsed.has_received_at {
                lead.received_at = now_ms;
            }
            Ok((lead, parsed.problems))
        }
        Err(m) => Err(Refusal::new(400, m.code, m.message)),
    }
}

/// One finding as a form shows it.
fn finding(i: &Issue) -> Value {
    serde_json::json!({"field": i.field, "code": i.code, "message": i.message})
}

/// Findings of one severity.
pub fn of(issues: &[Issue], severity: Severity) -> Vec<Value> {
    issues
        .iter()
        .filter(|i| i.severity == severity)
        .map(finding)
        .collect()
}

/// Whether the findings reject the submission.
pub fn has_errors(issues: &[Issue]) -> bool {
    issues.iter().any(|i| i.severity == Severity::Error)
}

/// The errors and the warnings, each naming its field.
pub fn findings(issues: &[Issue]) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("errors".into(), Value::Array(of(issues, Severity::Error)));
    m.insert(
        "warnings".into(),
        Value::Array(of(issues, Severity::Warning)),
    );
    m
}

/// The 422 answer for a rejected form: the errors that rejected it and the
/// warnings — the shape `leadgate serve` answers.
pub fn rejection(issues: &[Issue]) -> String {
    let mut m = findings(issues);
    m.insert("status".into(), Value::String("rejected".into()));
    Value::Object(m).to_string()
}

/// What a form is told when the core took its submission: accepted (or
/// queued, when the core answered 202), the lead's id when the core gave
/// it, and the edge's warnings. Not the core's whole result: scores,
/// enrichment and qualification are not for the submitter's browser.
pub fn accepted(core_status: u16, core_body: &str, issues: &[Issue]) -> String {
    let core: Value = serde_json::from_str(core_body).unwrap_or(Value::Null);
    let mut answer = serde_json::json!({
        "status": if core_status == 202 { "queued" } else { "accepted" },
        "warnings": of(issues, Severity::Warning),
    });
    if let Some(id) = core.pointer("/results/0/lead_id").filter(|v| v.is_string()) {
        answer["lead_id"] = id.clone();
    }
    answer.to_string()
}

/// The key the core deduplicates the forwarded request by: the sender's
/// `Idempotency-Key` when it gave one, else a digest of what was
/// submitted, so a redelivery (or the edge's own retry) creates nothing
/// twice.
pub fn idempotency_key(given: Option<&str>, route: &str, body: &[u8]) -> Result<String, Refusal> {
    match given.map(str::trim) {
        Some(k) if !k.is_empty() && k.len() <= 200 && k.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(k.to_string())
        }
        Some(_) => Err(Refusal::new(
            400,
            "idempotency_key.invalid",
            "Idempotency-Key must be 1 to 200 visible ASCII characters",
        )),
        None => {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            h.update(route.as_bytes());
            h.update([0]);
            h.update(body);
            let d = h.finalize();
            let hex: String = d.iter().take(16).map(|b| format!("{b:02x}")).collect();
            Ok(format!("edge-{hex}"))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urlencoded_and_json_forms() {
        let f = form_fields(
            b"email=ann%40acme.io&first_name=Ann&&",
            "application/x-www-form-urlencoded",
            "demo",
        )
        .unwrap();
        assert_eq!(f["email"], "ann@acme.io");
        assert_eq!(f["form_id"], "demo");
        assert_eq!(f.len(), 3);
        // A value without a name is refused, not dropped.
        let e = form_fields(
            b"email=ann%40acme.io&=x",
            "application/x-www-form-urlencoded",
            "demo",
        )
        .unwrap_err();
        assert_eq!((e.status, e.code), (400, "body.form"));
        // As are bytes a lossy decoding would replace.
        let e = form_fields(
            b"email=fu%FF%FE%40example.com",
            "application/x-www-form-urlencoded",
            "demo",
        )
        .unwrap_err();
        assert_eq!(
            (e.code, e.message.contains("'email'")),
            ("body.encoding", true)
        );
        let f = form_fields(
            br#"{"email":"a@b.io","form_id":"own"}"#,
            "application/json",
            "demo",
        )
        .unwrap();
        assert_eq!(f["form_id"], "own");
    }

    #[test]
    fn bad_bodies_are_refused_with_a_reason() {
        let e = form_fields(b"{", "application/json", "f").unwrap_err();
        assert_eq!((e.status, e.code), (400, "body.json"));
        let e = form_fields(b"[1]", "application/json", "f").unwrap_err();
        assert_eq!((e.status, e.code), (400, "body.shape"));
        assert!(e.message.contains("an array"), "{}", e.message);
        let e = form_fields(b"<x/>", "text/xml", "f").unwrap_err();
        assert_eq!((e.status, e.code), (415, "body.content_type"));
        let e = form_fields(b"", "application/x-www-form-urlencoded", "f").unwrap_err();
        assert_eq!(e.code, "body.empty");
        let e = form_fields(&[0xff, 0xfe], "application/x-www-form-urlencoded", "f").unwrap_err();
        assert_eq!(e.code, "body.encoding");
        let e = webhook_leads(b"[]", 10).unwrap_err();
        assert_eq!(e.code, "body.empty");
        let e = webhook_leads(b"[{},{},{}]", 2).unwrap_err();
        assert_eq!((e.status, e.code), (413, "body.too_many_leads"));
    }

    #[test]
    fn fields_map_onto_the_lead_like_the_host() {
        let f = Value::Object(
            form_fields(
                b"Email+Address=ann%40acme.io&Company=Acme",
                "application/x-www-form-urlencoded",
                "f",
            )
            .unwrap(),
        );
        let (lead, problems) = lead_of(&f, "demo", Source::Form, 42).unwrap();
        assert_eq!(lead.email.as_deref(), Some("ann@acme.io"));
        assert_eq!(lead.company.as_deref(), Some("Acme"));
        assert_eq!(
            (lead.tenant.as_str(), lead.source, lead.received_at),
            ("demo", Source::Form, 42)
        );
        assert!(problems.is_empty());
    }

    #[test]
    fn rejection_lists_errors_and_warnings_by_field() {
        let issue = |field: &str, severity| Issue {
            field: field.into(),
            code: format!("{field}.x"),
            severity,
            message: format!("bad {field}"),
        };
        let body: Value = serde_json::from_str(&rejection(&[
            issue("email", Severity::Error),
            issue("phone", Severity::Warning),
            issue("country", Severity::Info),
        ]))
        .unwrap();
        assert_eq!(body["status"], "rejected");
        assert_eq!(body["errors"][0]["field"], "email");
        assert_eq!(body["warnings"][0]["field"], "phone");
        assert_eq!(body["warnings"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn a_form_is_told_little() {
        let core = r#"{"results":[{"lead_id":"L-9","score":{"total":88},"enrichment":{}}]}"#;
        let warn = Issue::new("phone", "phone.x", Severity::Warning, "odd phone");
        let a: Value =
            serde_json::from_str(&accepted(200, core, std::slice::from_ref(&warn))).unwrap();
        assert_eq!(a["status"], "accepted");
        assert_eq!(a["lead_id"], "L-9");
        assert_eq!(a["warnings"][0]["field"], "phone");
        assert!(
            a.get("score").is_none() && !a.to_string().contains("88"),
            "{a}"
        );
        let q: Value = serde_json::from_str(&accepted(202, r#"{"request_id":4}"#, &[])).unwrap();
        assert_eq!(q["status"], "queued");
        assert!(q.get("lead_id").is_none());
    }

    #[test]
    fn idempotency_keys() {
        assert_eq!(idempotency_key(Some(" k1 "), "f", b"x").unwrap(), "k1");
        assert!(idempotency_key(Some("a b"), "f", b"x").is_err());
        let a = idempotency_key(None, "forms/a", b"x").unwrap();
        assert_eq!(a, idempotency_key(None, "forms/a", b"x").unwrap());
        assert_ne!(a, idempotency_key(None, "forms/b", b"x").unwrap());
        assert_ne!(a, idempotency_key(None, "forms/a", b"y").unwrap());
    }
}
