//! What the store's contract tests share: a PostgreSQL database of a
//! test's own on the server `LEADGATE_TEST_POSTGRES` names, dropped when
//! done; without the variable a test checks SQLite alone. The helper is the
//! integration tests' own (`tests/common/pg.rs`), compiled in here too.

#![allow(clippy::unwrap_used, dead_code)]

#[path = "../../../../tests/common/pg.rs"]
mod pg;

pub use pg::TestDb;
