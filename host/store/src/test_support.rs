//! Helpers for the store's own tests.

use crate::{Record, SqliteStore, Status};
use leadgate_lead::Lead;

/// A store file of its own, removed at the end of the test.
pub(crate) struct TempStore(std::path::PathBuf);

impl TempStore {
    pub(crate) fn new(name: &str) -> TempStore {
        let dir =
            std::env::temp_dir().join(format!("leadgate-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempStore(dir)
    }

    /// The store file's path.
    pub(crate) fn path(&self) -> String {
        self.0.join("s.db").display().to_string()
    }

    pub(crate) fn open(&self) -> SqliteStore {
        SqliteStore::open(&self.path()).unwrap()
    }
}

impl Drop for TempStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A record of `raw` with `status` (as its validation verdict too), its
/// normalized JSON and its keys, and nothing else: no issues, link,
/// review or enrichment.
pub(crate) fn plain_record<'a>(
    raw: &'a Lead,
    status: Status,
    normalized: Option<&'a str>,
    keys: &'a [i64],
) -> Record<'a> {
    Record {
        line: 1,
        raw,
        status,
        validation: status,
        normalized,
        issues: &[],
        exception: None,
        keys,
        link: None,
        review: None,
        enrichment: None,
        qualification: None,
    }
}

/// Adds `rows` rows of `bytes` random bytes to table `t(id INTEGER
/// PRIMARY KEY, v BLOB)`, in one statement (one transaction).
pub(crate) fn fill(c: &rusqlite::Connection, rows: i64, bytes: i64) {
    c.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO t(v) SELECT randomblob(?2) FROM n",
        rusqlite::params![rows, bytes],
    )
    .unwrap();
}
