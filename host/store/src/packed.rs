//! Request bodies and answers in the intake log, stored compressed.
//!
//! A request's answer holds every lead's result in full (about 1.8 KB a
//! lead), and its body every lead as sent: together they were a tenth of
//! what the service's writer put in the write-ahead log per batch. Both are
//! JSON and shrink about fivefold with zstd at its fastest level (a few
//! microseconds per request). Short texts stay text, and so do rows stored
//! before: reading takes either.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, Value, ValueRef};

/// Texts shorter than this stay text: compressing them saves no page.
const MIN_PACKED: usize = 512;

/// zstd's fastest level: the service's writer compresses every answer.
const LEVEL: i32 = 1;

/// Text to store, compressed when that pays.
pub(crate) struct Pack<'a>(pub &'a str);

impl ToSql for Pack<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        if self.0.len() < MIN_PACKED {
            return Ok(ToSqlOutput::Borrowed(ValueRef::Text(self.0.as_bytes())));
        }
        let packed = COMPRESSOR
            .with(|c| {
                let mut c = c.borrow_mut();
                if c.is_none() {
                    *c = Some(zstd::bulk::Compressor::new(LEVEL)?);
                }
                match c.as_mut() {
                    Some(c) => c.compress(self.0.as_bytes()),
                    None => Err(std::io::Error::other("no compression context")),
                }
            })
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(ToSqlOutput::Owned(Value::Blob(packed)))
    }
}

thread_local! {
    /// Each thread's compression context, kept: making one per text (its
    /// tables allocated and zeroed) costs as much as the compression.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Text as stored: compressed (a BLOB) or plain.
pub(crate) struct Unpacked(pub String);

impl FromSql for Unpacked {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let bytes = match value {
            ValueRef::Text(t) => t.to_vec(),
            ValueRef::Blob(b) => {
                zstd::stream::decode_all(b).map_err(|e| FromSqlError::Other(Box::new(e)))?
            }
            _ => return Err(FromSqlError::InvalidType),
        };
        String::from_utf8(bytes)
            .map(Unpacked)
            .map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    fn round_trip(text: &str) -> (String, String) {
        let c = Connection::open_in_memory().unwrap();
        c.execute("CREATE TABLE t (v)", []).unwrap();
        c.execute("INSERT INTO t VALUES (?1)", [Pack(text)])
            .unwrap();
        c.query_row("SELECT v, typeof(v) FROM t", [], |r| {
            Ok((r.get::<_, Unpacked>(0)?.0, r.get(1)?))
        })
        .unwrap()
    }

    #[test]
    fn long_texts_are_compressed_and_read_back_whole() {
        let answer = format!(
            "[{}]",
            (0..20)
                .map(|i| format!(
                    r#"{{"lead_id":"l{i}","status":"accepted","email":"ana{i}@acme.com"}}"#
                ))
                .collect::<Vec<_>>()
                .join(",")
        );
        let (back, kind) = round_trip(&answer);
        assert_eq!(back, answer);
        assert_eq!(kind, "blob");
    }

    #[test]
    fn one_thread_s_context_packs_text_after_text_each_whole() {
        let texts: Vec<String> = (0..5)
            .map(|i| {
                format!(
                    "[{}]",
                    format!("{{\"lead\":{i},\"v\":\"{}\"}},", "x".repeat(i * 97)).repeat(40)
                )
            })
            .collect();
        for t in &texts {
            let (back, kind) = round_trip(t);
            assert_eq!(&back, t);
            assert_eq!(kind, "blob");
        }
    }

    #[test]
    fn short_texts_and_rows_stored_as_text_read_as_they_are() {
        assert_eq!(
            round_trip(r#"{"ok":true}"#),
            (r#"{"ok":true}"#.into(), "text".into())
        );
        let c = Connection::open_in_memory().unwrap();
        let old = "x".repeat(MIN_PACKED * 4);
        let v: Unpacked = c.query_row("SELECT ?1", [&old], |r| r.get(0)).unwrap();
        assert_eq!(v.0, old);
    }

    #[test]
    fn a_damaged_blob_is_an_error_not_a_wrong_text() {
        let c = Connection::open_in_memory().unwrap();
        let r: rusqlite::Result<Unpacked> = c.query_row("SELECT x'0102030405'", [], |r| r.get(0));
        assert!(r.is_err());
    }
}
