//! CSV and NDJSON readers yielding one [`Record`] per input record.

use crate::mapping::{Group, Mapping, Target};
use crate::{IngestError, Malformed, Parsed, Record, values};
use leadgate_lead::{Consent, CustomField, ExternalId, Issue, Lead, Severity, Source};
use std::io::{BufRead, BufReader, Read};

/// Input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Ndjson,
}

impl Format {
    /// Guesses from a file name: `.ndjson`, `.jsonl`, `.json` are NDJSON.
    pub fn from_path(path: &str) -> Option<Format> {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".csv") || lower.ends_with(".tsv") || lower.ends_with(".txt") {
            Some(Format::Csv)
        } else if lower.ends_with(".ndjson")
            || lower.ends_with(".jsonl")
            || lower.ends_with(".json")
        {
            Some(Format::Ndjson)
        } else {
            None
        }
    }
}

/// Size limits for one record.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_field_bytes: usize,
    pub max_record_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_field_bytes: 64 * 1024,
            max_record_bytes: 1024 * 1024,
        }
    }
}

/// Counts bytes consumed, for progress reporting.
struct Counting<R> {
    inner: R,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

enum Inner {
    Csv {
        lines: Box<Lines>,
        delimiter: u8,
        headers: Vec<String>,
        targets: Vec<Target>,
        record: csv::ByteRecord,
    },
    Ndjson {
        reader: Box<dyn BufRead + Send>,
        mapping: Mapping,
        buf: Vec<u8>,
    },
}

/// A streaming reader over one input.
pub struct Reader {
    inner: Inner,
    limits: Limits,
    line: u64,
    bytes: std::sync::Arc<std::sync::atomic::AtomicU64>,
    done: bool,
}

impl Reader {
    /// Opens `input`. For CSV the header is read now and the delimiter
    /// (`,` `;` tab or `|`) sniffed from it.
    pub fn new(
        input: Box<dyn Read + Send>,
        format: Format,
        mapping: Mapping,
        limits: Limits,
    ) -> Result<Reader, IngestError> {
        let bytes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counting = Counting {
            inner: input,
            count: bytes.clone(),
        };
        let mut buffered = BufReader::with_capacity(256 * 1024, counting);
        let inner = match format {
            Format::Csv => {
                let head = buffered.fill_buf()?;
                let delimiter = sniff_delimiter(head);
                let mut lines = Lines {
                    reader: Box::new(buffered),
                    core: csv_core::ReaderBuilder::new().delimiter(delimiter).build(),
                    pending: std::collections::VecDeque::new(),
                    file_line: 0,
                };
                let mut header = csv::ByteRecord::new();
                let headers: Vec<String> =
                    match lines.next_record(delimiter, limits, &mut header)? {
                        None => Vec::new(),
                        Some(Err(m)) => return Err(IngestError::Header(m.message)),
                        Some(Ok(_)) => header
                            .iter()
                            .enumerate()
                            .map(|(i, h)| {
                                let h = String::from_utf8_lossy(h);
                                let h = h.trim_start_matches('\u{feff}').trim().to_string();
                                if h.is_empty() {
                                    format!("column_{}", i + 1)
                                } else {
                                    h
                                }
                            })
                            .collect(),
                    };
                let targets = mapping.resolve(&headers);
                Inner::Csv {
                    lines: Box::new(lines),
                    delimiter,
                    headers,
                    targets,
                    record: csv::ByteRecord::new(),
                }
            }
            Format::Ndjson => Inner::Ndjson {
                reader: Box::new(buffered),
                mapping,
                buf: Vec::new(),
            },
        };
        Ok(Reader {
            inner,
            limits,
            line: 0,
            bytes,
            done: false,
        })
    }

    /// For CSV: each header with where it goes.
    pub fn columns(&self) -> Vec<(String, String)> {
        match &self.inner {
            Inner::Csv {
                headers, targets, ..
            } => headers
                .iter()
                .zip(targets)
                .map(|(h, t)| (h.clone(), t.describe()))
                .collect(),
            Inner::Ndjson { .. } => Vec::new(),
        }
    }

    /// Bytes of input consumed so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The counter behind [`Reader::bytes_read`], for showing progress from
    /// another thread while this reader works in its own.
    pub fn progress(&self) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
        self.bytes.clone()
    }

    /// The next record; `None` at the end; `Err` only when the input itself
    /// cannot be read any more.
    pub fn next_record(&mut self) -> Option<Result<Record, IngestError>> {
        if self.done {
            return None;
        }
        let limits = self.limits;
        let result = match &mut self.inner {
            Inner::Csv {
                lines,
                delimiter,
                headers,
                targets,
                record,
            } => match lines.next_record(*delimiter, limits, record) {
                Err(e) => Some(Err(e)),
                Ok(None) => None,
                Ok(Some(Err(m))) => Some(Ok(Err(m))),
                Ok(Some(Ok(file_line))) => {
                    Some(Ok(csv_record(record, file_line, headers, targets, limits)))
                }
            },
            Inner::Ndjson {
                reader,
                mapping,
                buf,
            } => loop {
                buf.clear();
                match read_line_limited(reader, buf, limits.max_record_bytes) {
                    Err(e) => break Some(Err(IngestError::Io(e))),
                    Ok(None) => break None,
                    Ok(Some(too_long)) => {
                        if buf.iter().all(u8::is_ascii_whitespace) && !too_long {
                            continue; // blank lines are not records
                        }
                        break Some(Ok(ndjson_record(buf, too_long, mapping, limits)));
                    }
                }
            },
        };
        match result {
            None => {
                self.done = true;
                None
            }
            Some(Err(e)) => {
                self.done = true;
                Some(Err(e))
            }
            Some(Ok(outcome)) => {
                self.line += 1;
                Some(Ok(Record {
                    line: self.line,
                    outcome,
                }))
            }
        }
    }
}

impl Iterator for Reader {
    type Item = Result<Record, IngestError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_record()
    }
}

/// Reads one line into `buf`, keeping at most `max` bytes (the rest of an
/// over-long line is consumed and dropped). `Ok(Some(true))` when it was cut.
fn read_line_limited(
    reader: &mut dyn BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<bool>> {
    let mut cut = false;
    let mut any = false;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(if any { Some(cut) } else { None });
        }
        any = true;
        let (chunk, found) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        let room = max.saturating_sub(buf.len());
        if chunk.len() > room {
            cut = true;
        }
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let consumed = found.unwrap_or(available.len());
        reader.consume(consumed);
        if found.is_some() {
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(Some(cut));
        }
    }
}

/// Physical lines assembled into CSV records by quote balance, so that an
/// unterminated quote costs one rejected line instead of swallowing the rest
/// of the file.
struct Lines {
    reader: Box<dyn BufRead + Send>,
    core: csv_core::Reader,
    /// Lines read ahead and given back: (text, file line number).
    pending: std::collections::VecDeque<(Vec<u8>, u64)>,
    file_line: u64,
}

impl Lines {
    fn next_line(&mut self, max: usize) -> std::io::Result<Option<(Vec<u8>, u64, bool)>> {
        if let Some((line, n)) = self.pending.pop_front() {
            return Ok(Some((line, n, false)));
        }
        let mut buf = Vec::new();
        Ok(
            read_line_limited(self.reader.as_mut(), &mut buf, max)?.map(|cut| {
                self.file_line += 1;
                (buf, self.file_line, cut)
            }),
        )
    }

    /// The next non-blank record, parsed into `record`; returns the file line
    /// it starts on, or a [`Malformed`] for a line that cannot start one.
    fn next_record(
        &mut self,
        delimiter: u8,
        limits: Limits,
        record: &mut csv::ByteRecord,
    ) -> Result<Option<Result<u64, Malformed>>, IngestError> {
        let (first, start, cut) = loop {
            match self.next_line(limits.max_record_bytes)? {
                None => return Ok(None),
                Some((line, _, false)) if line.iter().all(u8::is_ascii_whitespace) => continue,
                Some(found) => break found,
            }
        };
        if cut {
            return Ok(Some(Err(Malformed {
                code: "record.too_large",
                message: format!(
                    "file line {start} is longer than {} bytes",
                    limits.max_record_bytes
                ),
                raw: String::from_utf8_lossy(&first[..first.len().min(2048)]).into_owned(),
            })));
        }
        let mut text = first.clone();
        let mut taken: Vec<(Vec<u8>, u64)> = Vec::new();
        let quotes = |b: &[u8]| b.iter().filter(|c| **c == b'"').count();
        let mut open = quotes(&text) % 2 == 1;
        while open {
            match self.next_line(limits.max_record_bytes)? {
                Some((line, n, false)) if text.len() + line.len() < limits.max_record_bytes => {
                    text.push(b'\n');
                    text.extend_from_slice(&line);
                    open ^= quotes(&line) % 2 == 1;
                    taken.push((line, n));
                }
                other => {
                    // The quote never closes: reject the first line alone and
                    // read on from the line after it.
                    if let Some((line, n, _)) = other {
                        taken.push((line, n));
                    }
                    for item in taken.into_iter().rev() {
                        self.pending.push_front(item);
                    }
                    return Ok(Some(Err(Malformed {
                        code: "record.unterminated_quote",
                        message: format!(
                            "file line {start} opens a quoted field that is never closed; the line is rejected and reading resumes on the next one"
                        ),
                        raw: String::from_utf8_lossy(&first).into_owned(),
                    })));
                }
            }
        }
        record.clear();
        if !text.contains(&b'"') {
            // No quoting: fields are what lies between delimiters.
            for field in text.split(|b| *b == delimiter) {
                record.push_field(field);
            }
            return Ok(Some(Ok(start)));
        }
        match parse_quoted(&mut self.core, &text, record) {
            Ok(()) => Ok(Some(Ok(start))),
            Err(why) => Ok(Some(Err(Malformed {
                code: "record.malformed",
                message: format!("file line {start} cannot be read as CSV: {why}"),
                raw: String::from_utf8_lossy(&text).into_owned(),
            }))),
        }
    }
}

/// Parses one complete record that contains quotes with a reused csv-core
/// reader (building one per record costs more than the parse).
fn parse_quoted(
    core: &mut csv_core::Reader,
    text: &[u8],
    record: &mut csv::ByteRecord,
) -> Result<(), String> {
    use csv_core::ReadFieldResult;
    core.reset();
    let mut input = text;
    let mut field = vec![0u8; text.len() + 1];
    let mut len = 0;
    loop {
        let (result, nin, nout) = core.read_field(input, &mut field[len..]);
        input = &input[nin..];
        len += nout;
        match result {
            ReadFieldResult::InputEmpty => {
                if input.is_empty() {
                    // Signal the end of input to flush the last field.
                    let (result, _, nout) = core.read_field(&[], &mut field[len..]);
                    len += nout;
                    if let ReadFieldResult::Field { .. } = result {
                        record.push_field(&field[..len]);
                    }
                    return Ok(());
                }
            }
            ReadFieldResult::OutputFull => return Err("a field is longer than its record".into()),
            ReadFieldResult::Field { record_end } => {
                record.push_field(&field[..len]);
                len = 0;
                if record_end {
                    return Ok(());
                }
            }
            ReadFieldResult::End => return Ok(()),
        }
    }
}

fn sniff_delimiter(head: &[u8]) -> u8 {
    let first_line = head.split(|b| *b == b'\n').next().unwrap_or(head);
    let mut best = (b',', 0usize);
    for d in [b',', b';', b'\t', b'|'] {
        let n = first_line.iter().filter(|b| **b == d).count();
        if n > best.1 {
            best = (d, n);
        }
    }
    best.0
}

fn lossy(record: &csv::ByteRecord, delimiter: &str) -> String {
    record
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect::<Vec<_>>()
        .join(delimiter)
}

fn csv_record(
    record: &csv::ByteRecord,
    file_line: u64,
    headers: &[String],
    targets: &[Target],
    limits: Limits,
) -> Result<Parsed, Malformed> {
    let position = format!(" (file line {file_line})");
    let total: usize = record.iter().map(<[u8]>::len).sum();
    if total > limits.max_record_bytes {
        return Err(Malformed {
            code: "record.too_large",
            message: format!(
                "the record is {total} bytes; the limit is {}{position}",
                limits.max_record_bytes
            ),
            raw: String::new(),
        });
    }
    if record.len() != headers.len() && !(record.len() == 1 && record.get(0) == Some(b"")) {
        return Err(Malformed {
            code: "record.field_count",
            message: format!(
                "the record has {} fields but the header has {}{position}: check the quoting and delimiters",
                record.len(),
                headers.len()
            ),
            raw: lossy(record, ","),
        });
    }
    let mut cells = Vec::with_capacity(record.len());
    for (i, field) in record.iter().enumerate() {
        let header = headers.get(i).map_or("?", String::as_str);
        if field.len() > limits.max_field_bytes {
            return Err(Malformed {
                code: "record.field_too_large",
                message: format!(
                    "field '{header}' is {} bytes; the limit is {}{position}",
                    field.len(),
                    limits.max_field_bytes
                ),
                raw: String::new(),
            });
        }
        match std::str::from_utf8(field) {
            Ok(s) => cells.push(s),
            Err(e) => {
                return Err(Malformed {
                    code: "record.encoding",
                    message: format!(
                        "field '{header}' is not valid UTF-8 (bad byte at offset {}){position}; re-export the file as UTF-8",
                        e.valid_up_to()
                    ),
                    raw: lossy(record, ","),
                });
            }
        }
    }
    let mut builder = Builder::default();
    for (target, value) in targets.iter().zip(cells) {
        builder.set(target, Value::Text(value));
    }
    Ok(builder.finish())
}

fn ndjson_record(
    buf: &[u8],
    too_long: bool,
    mapping: &Mapping,
    limits: Limits,
) -> Result<Parsed, Malformed> {
    let raw = || String::from_utf8_lossy(&buf[..buf.len().min(2048)]).into_owned();
    if too_long {
        return Err(Malformed {
            code: "record.too_large",
            message: format!("the line is longer than {} bytes", limits.max_record_bytes),
            raw: raw(),
        });
    }
    let text = std::str::from_utf8(buf).map_err(|e| Malformed {
        code: "record.encoding",
        message: format!(
            "the line is not valid UTF-8 (bad byte at offset {})",
            e.valid_up_to()
        ),
        raw: raw(),
    })?;
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| Malformed {
        code: "record.json",
        message: format!("the line is not valid JSON: {e}"),
        raw: raw(),
    })?;
    record_from_value(&value, &raw, mapping, limits)
}

/// Reads a lead from one JSON value, as an NDJSON line is read: the same
/// field aliases, `custom` and `consent` forms, and limits. For records that
/// arrive already parsed, such as the leads of an HTTP request.
pub fn parse_value(
    value: &serde_json::Value,
    mapping: &Mapping,
    limits: Limits,
) -> Result<Parsed, Malformed> {
    let raw = || {
        let mut s = value.to_string();
        if s.len() > 2048 {
            let mut cut = 2048;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
        }
        s
    };
    record_from_value(value, &raw, mapping, limits)
}

fn record_from_value(
    value: &serde_json::Value,
    raw: &dyn Fn() -> String,
    mapping: &Mapping,
    limits: Limits,
) -> Result<Parsed, Malformed> {
    let serde_json::Value::Object(map) = value else {
        return Err(Malformed {
            code: "record.json",
            message: format!("the record is a JSON {}, not an object", json_kind(value)),
            raw: raw(),
        });
    };
    let mut builder = Builder::default();
    for (key, value) in map {
        if let Some(s) = value.as_str().filter(|s| s.len() > limits.max_field_bytes) {
            return Err(Malformed {
                code: "record.field_too_large",
                message: format!(
                    "field '{key}' is {} bytes; the limit is {}",
                    s.len(),
                    limits.max_field_bytes
                ),
                raw: raw(),
            });
        }
        let of = mapping.json_key(key);
        match (of.group, value) {
            (Some(Group::Custom), serde_json::Value::Object(o)) => {
                for (k, v) in o {
                    builder.set(&Target::Custom(k.clone()), Value::Json(v));
                }
            }
            (Some(Group::Custom), serde_json::Value::Array(items)) => {
                for item in items {
                    let k = item.get("key").and_then(|k| k.as_str());
                    match (k, item.get("value")) {
                        (Some(k), Some(v)) => {
                            builder.set(&Target::Custom(k.to_string()), Value::Json(v))
                        }
                        _ => builder.problem(
                            "custom",
                            "custom.syntax",
                            "custom entries need \"key\" and \"value\"",
                        ),
                    }
                }
            }
            (Some(Group::Consent), serde_json::Value::Array(items)) => {
                for item in items {
                    let purpose = item.get("purpose").and_then(|p| p.as_str());
                    let granted = item.get("granted").and_then(|g| g.as_bool());
                    match (purpose, granted) {
                        (Some(p), Some(g)) => builder.lead.consent.push(Consent {
                            purpose: p.to_string(),
                            granted: g,
                            recorded_at: item
                                .get("recorded_at")
                                .and_then(|r| r.as_str())
                                .map(str::to_string),
                        }),
                        _ => builder.problem(
                            "consent",
                            "consent.syntax",
                            "consent entries need \"purpose\" and a boolean \"granted\"",
                        ),
                    }
                }
            }
            (Some(Group::Consent), serde_json::Value::Object(o)) => {
                for (p, v) in o {
                    builder.set(&Target::Consent(p.clone()), Value::Json(v));
                }
            }
            (Some(Group::ExternalIds), serde_json::Value::Array(items)) => {
                for item in items {
                    let system = item.get("system").and_then(|s| s.as_str());
                    match (system, item.get("id")) {
                        (Some(s), Some(id)) => {
                            builder.set(&Target::ExternalId(s.to_string()), Value::Json(id))
                        }
                        _ => builder.problem(
                            "external_ids",
                            "external_id.syntax",
                            "external_ids entries need \"system\" and \"id\"",
                        ),
                    }
                }
            }
            (Some(Group::ExternalIds), serde_json::Value::Object(o)) => {
                for (s, id) in o {
                    builder.set(&Target::ExternalId(s.clone()), Value::Json(id));
                }
            }
            _ => builder.set(&of.target, Value::Json(value)),
        }
    }
    Ok(builder.finish())
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

enum Value<'a> {
    Text(&'a str),
    Json(&'a serde_json::Value),
}

impl Value<'_> {
    /// The value as text; `None` for null/empty. Arrays and objects are kept
    /// as their JSON text.
    fn text(&self) -> Option<String> {
        let s = match self {
            Value::Text(s) => (*s).to_string(),
            Value::Json(serde_json::Value::Null) => return None,
            Value::Json(serde_json::Value::String(s)) => s.clone(),
            Value::Json(other) => other.to_string(),
        };
        if s.trim().is_empty() { None } else { Some(s) }
    }

    fn flag(&self) -> Option<bool> {
        match self {
            Value::Json(serde_json::Value::Bool(b)) => Some(*b),
            _ => self.text().as_deref().and_then(values::flag),
        }
    }
}

#[derive(Default)]
struct Builder {
    lead: Lead,
    problems: Vec<Issue>,
    has_received_at: bool,
    has_source: bool,
}

impl Builder {
    fn problem(&mut self, field: &str, code: &str, message: impl Into<String>) {
        self.problems
            .push(Issue::new(field, code, Severity::Warning, message));
    }

    fn set(&mut self, target: &Target, value: Value<'_>) {
        match target {
            Target::Ignore => {}
            Target::Field(name) => {
                if let (Some(slot), Some(text)) = (self.lead.field_mut(name), value.text()) {
                    // Several columns for one field (house number, address
                    // lines) are joined in column order.
                    match slot {
                        Some(earlier) => {
                            earlier.push(' ');
                            earlier.push_str(&text);
                        }
                        None => *slot = Some(text),
                    }
                }
            }
            Target::Id => {
                // leadgate assigns its own lead ids; the input's id is kept
                // as an external id of the system that sent it.
                if let Some(id) = value.text() {
                    self.lead.external_ids.push(ExternalId {
                        system: "input".into(),
                        id: id.trim().to_string(),
                    });
                }
            }
            Target::Source => {
                if let Some(text) = value.text() {
                    match Source::parse(&text) {
                        Some(s) => {
                            self.lead.source = s;
                            self.has_source = true;
                        }
                        None => self.problems.push(Issue::new(
                            "source",
                            "source.unknown",
                            Severity::Info,
                            format!("'{text}' is not a known source (form, ads, import, crm, api, other)"),
                        )),
                    }
                }
            }
            Target::ReceivedAt => {
                let Some(text) = value.text() else { return };
                match values::timestamp_ms(&text) {
                    Some(ms) => {
                        self.lead.received_at = ms;
                        self.has_received_at = true;
                    }
                    None => self.problem(
                        "received_at",
                        "received_at.syntax",
                        format!("'{text}' is not a timestamp (RFC 3339, a date, or Unix seconds/milliseconds); the time of processing is used"),
                    ),
                }
            }
            Target::Consent(purpose) => {
                if value.text().is_none()
                    && !matches!(value, Value::Json(serde_json::Value::Bool(_)))
                {
                    return;
                }
                match value.flag() {
                    Some(granted) => self.lead.consent.push(Consent {
                        purpose: purpose.clone(),
                        granted,
                        recorded_at: None,
                    }),
                    None => {
                        let shown = value.text().unwrap_or_default();
                        self.problem(
                            &format!("consent.{purpose}"),
                            "consent.syntax",
                            format!("'{shown}' is neither yes nor no; consent for {purpose} is not recorded"),
                        );
                    }
                }
            }
            Target::ExternalId(system) => {
                if let Some(id) = value.text() {
                    self.lead.external_ids.push(ExternalId {
                        system: system.clone(),
                        id: id.trim().to_string(),
                    });
                }
            }
            Target::Custom(key) => {
                if let Some(text) = value.text() {
                    self.lead.custom.push(CustomField {
                        key: key.clone(),
                        value: text,
                    });
                }
            }
        }
    }

    fn finish(self) -> Parsed {
        Parsed {
            lead: self.lead,
            problems: self.problems,
            has_received_at: self.has_received_at,
            has_source: self.has_source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(format: Format, input: &[u8], map: &[&str]) -> Vec<Record> {
        let reader = Reader::new(
            Box::new(std::io::Cursor::new(input.to_vec())),
            format,
            Mapping::parse(map).unwrap(),
            Limits {
                max_field_bytes: 64,
                max_record_bytes: 256,
            },
        )
        .unwrap();
        reader.map(|r| r.unwrap()).collect()
    }

    #[test]
    fn columns_for_one_field_are_joined_in_order() {
        let input = "given_name,surname,street_number,address_1,address_2,suburb\nanna,smith,12,miller place,flat 3,springvale\n";
        let records = read(Format::Csv, input.as_bytes(), &[]);
        let p = records[0].outcome.as_ref().unwrap();
        assert_eq!(p.lead.street.as_deref(), Some("12 miller place flat 3"));
        assert_eq!(p.lead.city.as_deref(), Some("springvale"));
        assert_eq!(p.lead.last_name.as_deref(), Some("smith"));
    }

    #[test]
    fn csv_with_aliases_custom_columns_and_semicolons() {
        let input = "\u{feff}E-mail;First Name;Zip;utm_campaign;Marketing Opt-In\njane@x.com;Jane;12345;spring;yes\n";
        let records = read(Format::Csv, input.as_bytes(), &[]);
        assert_eq!(records.len(), 1);
        let p = records[0].outcome.as_ref().unwrap();
        assert_eq!(records[0].line, 1);
        assert_eq!(p.lead.email.as_deref(), Some("jane@x.com"));
        assert_eq!(p.lead.first_name.as_deref(), Some("Jane"));
        assert_eq!(p.lead.postcode.as_deref(), Some("12345"));
        assert_eq!(
            p.lead.custom[0],
            CustomField {
                key: "utm_campaign".into(),
                value: "spring".into()
            }
        );
        assert_eq!(
            (
                p.lead.consent[0].purpose.as_str(),
                p.lead.consent[0].granted
            ),
            ("marketing", true)
        );
    }

    #[test]
    fn malformed_csv_rows_are_kept_with_a_reason() {
        let mut input =
            b"email,company\nok@x.com,Acme\n\"broken@x.com,Acme\nnext@x.com,Beta\n".to_vec();
        input.extend_from_slice(b"bad@x.com,Caf\xe9\n");
        let mut long = b"long@x.com,".to_vec();
        long.extend(std::iter::repeat_n(b'a', 100));
        long.push(b'\n');
        input.extend_from_slice(&long);
        input.extend_from_slice(b"last@x.com,Zed\n");
        let records = read(Format::Csv, &input, &[]);
        let outcomes: Vec<Result<(), &str>> = records
            .iter()
            .map(|r| r.outcome.as_ref().map(|_| ()).map_err(|m| m.code))
            .collect();
        // The unterminated quote costs its own line only.
        assert_eq!(
            outcomes,
            vec![
                Ok(()),
                Err("record.unterminated_quote"),
                Ok(()),
                Err("record.encoding"),
                Err("record.field_too_large"),
                Ok(())
            ]
        );
        assert_eq!(
            records.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5, 6]
        );
        let encoding = records[3].outcome.as_ref().unwrap_err();
        assert!(
            encoding.message.contains("'company'"),
            "{}",
            encoding.message
        );
    }

    #[test]
    fn quoted_fields_may_span_lines_and_wrong_field_counts_are_named() {
        let input = "email,street\na@x.com,\"1 Main St\nSuite 2\"\nb@x.com,Elm,extra\n";
        let records = read(Format::Csv, input.as_bytes(), &[]);
        let first = records[0].outcome.as_ref().unwrap();
        assert_eq!(first.lead.street.as_deref(), Some("1 Main St\nSuite 2"));
        let second = records[1].outcome.as_ref().unwrap_err();
        assert_eq!(second.code, "record.field_count");
        assert!(second.message.contains("file line 4"), "{}", second.message);
    }

    #[test]
    fn ndjson_with_canonical_names_aliases_and_bad_lines() {
        let input = br#"{"email": "a@x.com", "First Name": "Ann", "custom": {"plan": "pro"}, "consent": {"email-marketing": true}}

{"email": 
[1, 2]
{"phone": 4155552671, "received_at": "2023-11-14T22:13:20Z", "external_ids": {"hubspot": 42}}
"#;
        let records = read(Format::Ndjson, input, &[]);
        assert_eq!(records.len(), 4, "the blank line is not a record");
        let first = records[0].outcome.as_ref().unwrap();
        assert_eq!(first.lead.first_name.as_deref(), Some("Ann"));
        assert_eq!(first.lead.custom[0].value, "pro");
        assert!(first.lead.consent[0].granted);
        assert_eq!(records[1].outcome.as_ref().unwrap_err().code, "record.json");
        assert!(
            records[2]
                .outcome
                .as_ref()
                .unwrap_err()
                .message
                .contains("array")
        );
        let last = records[3].outcome.as_ref().unwrap();
        assert_eq!(last.lead.phone.as_deref(), Some("4155552671"));
        assert_eq!(last.lead.received_at, 1_700_000_000_000);
        assert_eq!(last.lead.external_ids[0].id, "42");
    }

    #[test]
    fn bad_values_become_problems_not_failures() {
        let input = "email,created_at,gdpr consent\na@x.com,someday,perhaps\n";
        let records = read(Format::Csv, input.as_bytes(), &[]);
        let p = records[0].outcome.as_ref().unwrap();
        let codes: Vec<&str> = p.problems.iter().map(|i| i.code.as_str()).collect();
        assert_eq!(codes, ["received_at.syntax", "consent.syntax"]);
        assert!(!p.has_received_at);
    }

    #[test]
    fn over_long_ndjson_lines_are_cut_and_rejected() {
        let mut input = format!("{{\"email\": \"{}\"}}\n", "a".repeat(400)).into_bytes();
        input.extend_from_slice(b"{\"email\": \"b@x.com\"}\n");
        let records = read(Format::Ndjson, &input, &[]);
        assert_eq!(
            records[0].outcome.as_ref().unwrap_err().code,
            "record.too_large"
        );
        assert!(records[1].outcome.is_ok());
    }
}
