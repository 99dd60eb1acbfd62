//! Leads in a request body, as the service (`leadgate serve`) and the edge
//! component both read them: one JSON object, an array of them, or
//! `{"leads": [...]}`. A body that is none of these is refused with a
//! status, a code and a reason the sender can act on.

use serde_json::Value;

/// Why a body carries no leads that can be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BodyError {
    /// The HTTP status to answer with (400 or 413).
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl BodyError {
    fn new(status: u16, code: &'static str, message: String) -> BodyError {
        BodyError {
            status,
            code,
            message,
        }
    }
}

/// "an object", "an array", … for messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The leads of a parsed JSON body; at most `max`.
pub fn leads(value: Value, max: usize) -> Result<Vec<Value>, BodyError> {
    let leads = match value {
        Value::Array(a) => a,
        Value::Object(mut o) => match o.remove("leads") {
            Some(Value::Array(a)) => a,
            Some(_) => {
                return Err(BodyError::new(
                    400,
                    "body.leads",
                    "\"leads\" must be an array of lead objects".into(),
                ));
            }
            None => vec![Value::Object(o)],
        },
        other => {
            return Err(BodyError::new(
                400,
                "body.shape",
                format!(
                    "the body must be a lead object, an array of them or {{\"leads\": [...]}}, not {}",
                    kind(&other)
                ),
            ));
        }
    };
    checked(leads, max)
}

/// `leads`, refused when empty or more than `max`.
pub fn checked(leads: Vec<Value>, max: usize) -> Result<Vec<Value>, BodyError> {
    if leads.is_empty() {
        return Err(BodyError::new(
            400,
            "body.empty",
            "the request carries no leads".into(),
        ));
    }
    if leads.len() > max {
        return Err(BodyError::new(
            413,
            "body.too_many_leads",
            format!(
                "{} leads in one request; at most {max} are accepted",
                leads.len()
            ),
        ));
    }
    Ok(leads)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn shapes() {
        assert_eq!(leads(json!({"email": "a@b.io"}), 5).unwrap().len(), 1);
        assert_eq!(leads(json!([{}, {}]), 5).unwrap().len(), 2);
        assert_eq!(leads(json!({"leads": [{}, {}, {}]}), 5).unwrap().len(), 3);
        let e = leads(json!({"leads": 1}), 5).unwrap_err();
        assert_eq!((e.status, e.code), (400, "body.leads"));
        let e = leads(json!("x"), 5).unwrap_err();
        assert_eq!((e.status, e.code), (400, "body.shape"));
        assert!(e.message.ends_with("not a string"), "{}", e.message);
        let e = leads(json!([]), 5).unwrap_err();
        assert_eq!(e.code, "body.empty");
        let e = leads(json!([{}, {}, {}]), 2).unwrap_err();
        assert_eq!((e.status, e.code), (413, "body.too_many_leads"));
    }
}
