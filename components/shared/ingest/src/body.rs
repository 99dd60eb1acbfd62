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

/// Parses a JSON body, refusing what a plain parse would change without
/// saying so: a key given twice in one object (`body.duplicate_key`: which
/// value is meant cannot be told, and a plain parse keeps the last), and a
/// control character in a key or a string (`body.control_character`: the
/// pipeline's text cleaning would drop it). Tab, line feed and carriage
/// return are text, not control characters, here. Syntax errors are
/// `body.json` with the parser's position.
pub fn parse_json(body: &[u8]) -> Result<Value, BodyError> {
    let refusal = std::cell::RefCell::new(None);
    let seed = Strict { refusal: &refusal };
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = serde::de::DeserializeSeed::deserialize(seed, &mut de).and_then(|v| {
        de.end()?;
        Ok(v)
    });
    parsed.map_err(|e| match refusal.take() {
        Some(r) => r.into_error(),
        None => BodyError::new(400, "body.json", format!("the body is not valid JSON: {e}")),
    })
}

/// A form body (`application/x-www-form-urlencoded`) as fields, refusing
/// what decoding would change without saying so: a value or name that is
/// not UTF-8 once percent-decoded (`body.encoding`; a lossy decoding would
/// put U+FFFD in place of the bytes sent), a control character
/// (`body.control_character`), and a field sent twice with different values
/// (`body.duplicate_key`), and a value sent without a name (`=value`:
/// `body.form`). An empty pair (`&&`, `=`) carries nothing and is skipped.
pub fn form_fields(body: &[u8]) -> Result<serde_json::Map<String, Value>, BodyError> {
    let mut fields = serde_json::Map::new();
    for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        let name = form_decode(name, None)?;
        if name.trim().is_empty() {
            if value.is_empty() {
                continue;
            }
            return Err(BodyError::new(
                400,
                "body.form",
                "a value is sent without a field name ('=value'); name every field".into(),
            ));
        }
        let value = form_decode(value, Some(&name))?;
        match fields.get(&name) {
            Some(Value::String(before)) if *before != value => {
                return Err(BodyError::new(
                    400,
                    "body.duplicate_key",
                    format!(
                        "field '{name}' is sent twice with different values ('{before}', '{value}'); which one is meant cannot be told: send it once"
                    ),
                ));
            }
            _ => {
                fields.insert(name, Value::String(value));
            }
        }
    }
    Ok(fields)
}

/// One percent-encoded name or value of a form (`+` is a space); `field`
/// names the field a value belongs to, for the refusal.
fn form_decode(raw: &[u8], field: Option<&str>) -> Result<String, BodyError> {
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => bytes.push(b' '),
            b'%' => match (
                raw.get(i + 1).copied().and_then(hex),
                raw.get(i + 2).copied().and_then(hex),
            ) {
                (Some(hi), Some(lo)) => {
                    bytes.push(hi << 4 | lo);
                    i += 2;
                }
                // A `%` not followed by two hex digits stands for itself.
                _ => bytes.push(b'%'),
            },
            b => bytes.push(b),
        }
        i += 1;
    }
    let what = || match field {
        Some(f) => format!("the value of field '{f}'"),
        None => "a field name".to_string(),
    };
    let text = String::from_utf8(bytes).map_err(|e| {
        BodyError::new(
            400,
            "body.encoding",
            format!(
                "{} is not UTF-8 once percent-decoded (bad byte at offset {}); send the form as UTF-8 (accept-charset=\"UTF-8\")",
                what(),
                e.utf8_error().valid_up_to()
            ),
        )
    })?;
    if let Some(c) = first_control(&text) {
        return Err(control_refusal(&what(), c));
    }
    Ok(text)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The first control character of `s` (C0, DEL and C1, but tab, line
/// feed and carriage return are text), found on its bytes: C0 and DEL are
/// one byte, C1 is `C2 80`–`C2 9F`.
fn first_control(s: &str) -> Option<char> {
    let b = s.as_bytes();
    let at = b.iter().enumerate().position(|(i, &x)| {
        matches!(x, 0x00..=0x08 | 0x0b | 0x0c | 0x0e..=0x1f | 0x7f)
            || (x == 0xc2 && b.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)))
    })?;
    s[at..].chars().next()
}

fn control_refusal(what: &str, c: char) -> BodyError {
    BodyError::new(
        400,
        "body.control_character",
        format!(
            "{what} holds control character U+{:04X}, which would be dropped; remove it or send the text without it",
            c as u32
        ),
    )
}

/// Why the strict parse refused a body, and where: the path is filled in
/// on the way out, each object and array adding its key or index, so a
/// body that is taken costs no path at all.
struct Refusal {
    kind: RefusalKind,
    /// Keys (`.email`) and indexes (`[3]`), innermost first.
    path: Vec<String>,
}

enum RefusalKind {
    /// A key given twice in one object.
    Duplicate,
    /// A control character in a string value.
    Control(char),
    /// A control character in a key.
    ControlInKey(char),
}

impl Refusal {
    fn into_error(self) -> BodyError {
        let path: String = self.path.iter().rev().map(String::as_str).collect();
        let path = path.trim_start_matches('.');
        let here = if path.is_empty() {
            "the body".to_string()
        } else {
            format!("field '{path}'")
        };
        match self.kind {
            RefusalKind::Duplicate => BodyError::new(
                400,
                "body.duplicate_key",
                format!(
                    "{here} is given twice in one object; which value is meant cannot be told: send it once"
                ),
            ),
            RefusalKind::Control(c) => control_refusal(&here, c),
            RefusalKind::ControlInKey(c) => control_refusal(&format!("the key of {here}"), c),
        }
    }
}

/// Builds a [`Value`] as serde_json does, refusing duplicate keys and
/// control characters; `refusal` keeps why (the parser's error only
/// carries a message).
#[derive(Clone, Copy)]
struct Strict<'a> {
    refusal: &'a std::cell::RefCell<Option<Refusal>>,
}

impl Strict<'_> {
    fn refuse<E: serde::de::Error>(&self, kind: RefusalKind, at: Option<String>) -> E {
        *self.refusal.borrow_mut() = Some(Refusal {
            kind,
            path: at.into_iter().collect(),
        });
        E::custom("refused")
    }

    /// Adds `segment` to the path of a refusal made further in.
    fn within(&self, segment: impl FnOnce() -> String) {
        if let Some(r) = self.refusal.borrow_mut().as_mut() {
            r.path.push(segment());
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        match first_control(v) {
            Some(c) => Err(self.refuse(RefusalKind::Control(c), None)),
            None => Ok(Value::String(v.to_string())),
        }
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        loop {
            match seq.next_element_seed(self) {
                Ok(Some(v)) => out.push(v),
                Ok(None) => return Ok(Value::Array(out)),
                Err(e) => {
                    self.within(|| format!("[{}]", out.len()));
                    return Err(e);
                }
            }
        }
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if let Some(c) = first_control(&key) {
                return Err(self.refuse(RefusalKind::ControlInKey(c), Some(format!(".{key}"))));
            }
            let slot = match out.entry(key) {
                serde_json::map::Entry::Vacant(slot) => slot,
                serde_json::map::Entry::Occupied(given) => {
                    let at = format!(".{}", given.key());
                    return Err(self.refuse(RefusalKind::Duplicate, Some(at)));
                }
            };
            match map.next_value_seed(self) {
                Ok(value) => {
                    slot.insert(value);
                }
                Err(e) => {
                    self.within(|| format!(".{}", slot.key()));
                    return Err(e);
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// The keys a signed webhook's `{"leads": [...]}` body may carry beside
/// its leads: the sender's event id, which makes the delivery idempotent.
pub const WEBHOOK_ENVELOPE: &[&str] = &["event_id", "eventId"];

/// The leads of a parsed JSON body; at most `max`. A `{"leads": [...]}`
/// body has no other keys.
pub fn leads(value: Value, max: usize) -> Result<Vec<Value>, BodyError> {
    leads_in(value, max, &[])
}

/// [`leads`], where a `{"leads": [...]}` body may also carry the keys in
/// `envelope` (e.g. [`WEBHOOK_ENVELOPE`]), which the caller reads itself.
pub fn leads_in(value: Value, max: usize, envelope: &[&str]) -> Result<Vec<Value>, BodyError> {
    let leads = match value {
        Value::Array(a) => a,
        Value::Object(mut o) => match o.remove("leads") {
            Some(Value::Array(a)) => {
                if let Some(other) = o.keys().find(|k| !envelope.contains(&k.as_str())) {
                    return Err(BodyError::new(
                        400,
                        "body.shape",
                        format!(
                            "a {{\"leads\": [...]}} body has no other keys, but '{other}' is given: put it in each lead, or send the lead itself"
                        ),
                    ));
                }
                a
            }
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

/// How deep a value of a lead's or an event's field may nest containers:
/// `{"custom": {"tags": ["a", "b"]}}` is two deep, as deep as a record's
/// fields go (custom fields, consent, external ids).
pub const MAX_VALUE_DEPTH: usize = 2;

/// Refuses a record (a lead or an event) whose field values nest deeper
/// than [`MAX_VALUE_DEPTH`] (`body.too_deep`, naming the field): a lead is
/// a flat record, and nothing reads deeper. `at` says where the record is
/// (`"[3]"` in an array, `""` alone). A value that is not an object is not
/// a record (the pipeline rejects it with its own reason), but it is held
/// to the same depth, as if it were a field's value.
pub fn check_record(record: &Value, at: &str) -> Result<(), BodyError> {
    match record {
        Value::Object(fields) => check_fields(fields, at),
        other if depth(other) > MAX_VALUE_DEPTH => Err(too_deep(at)),
        _ => Ok(()),
    }
}

/// [`check_record`] for a record's fields.
pub fn check_fields(fields: &serde_json::Map<String, Value>, at: &str) -> Result<(), BodyError> {
    for (k, v) in fields {
        if depth(v) > MAX_VALUE_DEPTH {
            let field = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            return Err(too_deep(&field));
        }
    }
    Ok(())
}

/// How many containers deep `v` nests.
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn too_deep(field: &str) -> BodyError {
    let what = if field.is_empty() {
        "the body".to_string()
    } else {
        format!("field '{field}'")
    };
    BodyError::new(
        400,
        "body.too_deep",
        format!(
            "{what} nests objects or arrays more than {MAX_VALUE_DEPTH} deep; a lead's fields are flat records"
        ),
    )
}

/// `leads`, refused when empty or more than `max`, or when one nests too
/// deep ([`check_record`]).
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
    if leads.len() == 1 {
        check_record(&leads[0], "")?;
    } else {
        for (i, lead) in leads.iter().enumerate() {
            check_record(lead, &format!("[{i}]"))?;
        }
    }
    Ok(leads)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn a_duplicate_key_is_refused_and_named_not_taken_silently() {
        let e = parse_json(br#"{"email": "a@b.io", "email": "c@d.io"}"#).unwrap_err();
        assert_eq!((e.status, e.code), (400, "body.duplicate_key"));
        assert!(e.message.contains("field 'email'"), "{}", e.message);
        let e = parse_json(br#"{"leads": [{"a": 1}, {"x": {"y": 1, "y": 2}}]}"#).unwrap_err();
        assert_eq!(e.code, "body.duplicate_key");
        assert!(e.message.contains("field 'leads[1].x.y'"), "{}", e.message);
        // The same key in two objects is no duplicate.
        let v = parse_json(br#"[{"email": "a@b.io"}, {"email": "c@d.io"}]"#).unwrap();
        assert_eq!(v, json!([{"email": "a@b.io"}, {"email": "c@d.io"}]));
    }

    #[test]
    fn a_control_character_is_refused_and_named_but_tabs_and_newlines_are_text() {
        for body in [
            &br#"{"first_name": "Ann\u0000e"}"#[..],
            br#"{"first_name": "Ann\u0007"}"#,
            br#"{"first_name": "Ann\u007f"}"#,
            "{\"first_name\": \"Ann\u{85}\"}".as_bytes(),
        ] {
            let e = parse_json(body).unwrap_err();
            assert_eq!((e.status, e.code), (400, "body.control_character"));
            assert!(e.message.contains("field 'first_name'"), "{}", e.message);
        }
        let e = parse_json(br#"{"a\u0000": 1}"#).unwrap_err();
        assert_eq!(e.code, "body.control_character");
        let e = parse_json(br#"["ok", "x\u0001"]"#).unwrap_err();
        assert!(e.message.contains("field '[1]'"), "{}", e.message);
        let v = parse_json(br#"{"note": "line 1\nline 2\tend\r"}"#).unwrap();
        assert_eq!(v["note"], "line 1\nline 2\tend\r");
    }

    #[test]
    fn control_characters_are_found_on_the_bytes_as_on_the_chars() {
        for s in ["", "plain", "a¡b", "Ann Lée", "\t\n\r", "Âb", "東京", "😀"] {
            assert_eq!(first_control(s), None, "{s:?}");
        }
        for (s, c) in [
            ("a\u{0}", '\u{0}'),
            ("x\u{85}y", '\u{85}'),
            ("\u{7f}", '\u{7f}'),
            ("é\u{9f}", '\u{9f}'),
            ("\u{1b}[0m", '\u{1b}'),
        ] {
            assert_eq!(first_control(s), Some(c), "{s:?}");
        }
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            let s = format!("a{c}b");
            let control = c.is_control() && !matches!(c, '\t' | '\n' | '\r');
            assert_eq!(first_control(&s).is_some(), control, "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn strict_json_parses_what_serde_json_parses() {
        let body =
            br#"{"a": [1, -2, 3.5, 1e300, true, false, null, "x", {}, []], "b": {"c": "\u00e9"}}"#;
        let plain: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(parse_json(body).unwrap(), plain);
        for bad in [&b"{"[..], b"[1,]", b"{} {}", b"", b"nul"] {
            let e = parse_json(bad).unwrap_err();
            assert_eq!((e.status, e.code), (400, "body.json"), "{bad:?}");
        }
    }

    #[test]
    fn a_form_value_that_is_not_utf8_is_refused_and_named_not_replaced() {
        let e = form_fields(b"first_name=Ann&email=fu%FF%FE%40example.com").unwrap_err();
        assert_eq!((e.status, e.code), (400, "body.encoding"));
        assert!(e.message.contains("field 'email'"), "{}", e.message);
        let e = form_fields(b"%FF=1").unwrap_err();
        assert_eq!(e.code, "body.encoding");
        assert!(e.message.contains("a field name"), "{}", e.message);
    }

    #[test]
    fn form_fields_decode_as_a_browser_encodes() {
        let f =
            form_fields(b"email=a%40b.io&name=Ann+Lee&note=100%25+sure&odd=%zz%&&=&flag").unwrap();
        assert_eq!(f["email"], "a@b.io");
        assert_eq!(f["name"], "Ann Lee");
        assert_eq!(f["note"], "100% sure");
        assert_eq!(f["odd"], "%zz%");
        assert_eq!(f["flag"], "");
        assert!(!f.contains_key(""));
        assert_eq!(form_fields("n=%C3%A9".as_bytes()).unwrap()["n"], "é");
        // The same field twice: the same value is one field, two are refused.
        assert_eq!(form_fields(b"a=1&a=1").unwrap()["a"], "1");
        let e = form_fields(b"a=1&a=2").unwrap_err();
        assert_eq!((e.status, e.code), (400, "body.duplicate_key"));
        assert!(e.message.contains("field 'a'"), "{}", e.message);
        let e = form_fields(b"a=1&=orphan").unwrap_err();
        assert_eq!((e.status, e.code), (400, "body.form"));
        let e = form_fields(b"a=x%00y").unwrap_err();
        assert_eq!(e.code, "body.control_character");
        assert!(e.message.contains("field 'a'"), "{}", e.message);
    }

    #[test]
    fn a_record_nesting_deeper_than_its_fields_go_is_refused_and_named() {
        let ok = json!({"email": "a@b.io", "custom": {"tags": ["x", "y"]}, "external_ids": [{"system": "crm", "id": "1"}]});
        assert!(check_record(&ok, "").is_ok());
        let deep = json!({"email": "a@b.io", "custom": {"tags": [["x"]]}});
        let e = check_record(&deep, "").unwrap_err();
        assert_eq!((e.status, e.code), (400, "body.too_deep"));
        assert!(e.message.contains("field 'custom'"), "{}", e.message);
        let e = leads(json!([ok, deep]), 5).unwrap_err();
        assert!(e.message.contains("field '[1].custom'"), "{}", e.message);
        // Not a record: left to the pipeline, which rejects it with a reason,
        // but held to the same depth as a field's value.
        assert!(check_record(&json!([[1]]), "[2]").is_ok());
        let e = check_record(&json!([[[1]]]), "[2]").unwrap_err();
        assert!(e.message.contains("field '[2]'"), "{}", e.message);
    }

    #[test]
    fn shapes() {
        assert_eq!(leads(json!({"email": "a@b.io"}), 5).unwrap().len(), 1);
        assert_eq!(leads(json!([{}, {}]), 5).unwrap().len(), 2);
        assert_eq!(leads(json!({"leads": [{}, {}, {}]}), 5).unwrap().len(), 3);
        let e = leads(json!({"leads": [{}], "email": "a@b.io"}), 5).unwrap_err();
        assert_eq!((e.status, e.code), (400, "body.shape"));
        assert!(e.message.contains("'email'"), "{}", e.message);
        let with_id = json!({"leads": [{}], "event_id": "ev-1"});
        assert!(leads(with_id.clone(), 5).is_err());
        assert_eq!(leads_in(with_id, 5, WEBHOOK_ENVELOPE).unwrap().len(), 1);
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
