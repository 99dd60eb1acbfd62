//! The store the CLI and service tests run on. By default a SQLite file in
//! the test's directory; with `LEADGATE_TEST_STORE=postgres`, a PostgreSQL
//! database for each test and store name, on the server
//! `LEADGATE_TEST_POSTGRES` names. `.ci/run` runs these tests both ways and
//! drops the databases (`leadgate_s_*`) after.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

/// Whether this run puts the tests' stores on PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var("LEADGATE_TEST_STORE").is_ok_and(|v| v == "postgres")
}

/// The location of the store the running test calls `name` (`s.db`): the
/// name itself (a file in the test's directory), or on PostgreSQL the URL
/// of a database of the test's own, created empty on first use. `:memory:`
/// stays in memory.
pub fn location(name: &str) -> String {
    if !on_postgres() || name == ":memory:" {
        return name.to_string();
    }
    static DATABASES: Mutex<Option<HashMap<(String, String), String>>> = Mutex::new(None);
    // Each test runs on a thread named after it.
    let test = std::thread::current().name().unwrap_or("main").to_string();
    let mut known = DATABASES.lock().unwrap_or_else(|e| e.into_inner());
    let known = known.get_or_insert_with(HashMap::new);
    if let Some(url) = known.get(&(test.clone(), name.to_string())) {
        return url.clone();
    }
    let Ok(admin) = std::env::var("LEADGATE_TEST_POSTGRES") else {
        panic!(
            "LEADGATE_TEST_STORE=postgres needs LEADGATE_TEST_POSTGRES, a server to create databases on"
        );
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&test, name).hash(&mut h);
    let db = format!("leadgate_s_{}_{:016x}", std::process::id(), h.finish());
    let url = super::pg::create_database(&admin, &db);
    known.insert((test, name.to_string()), url.clone());
    url
}

/// [`location`] for opening the store from the test itself: the file's
/// path in `dir`, or the database's URL.
pub fn location_in(dir: &std::path::Path, name: &str) -> String {
    if on_postgres() && name != ":memory:" {
        location(name)
    } else {
        dir.join(name).display().to_string()
    }
}

/// One number the store at `name` answers `query` with (SQL both
/// backends read alike).
pub fn count(dir: &std::path::Path, name: &str, query: &str) -> i64 {
    if on_postgres() && name != ":memory:" {
        let mut c = postgres::Client::connect(&location(name), postgres::NoTls).unwrap();
        return c.query_one(query, &[]).unwrap().get(0);
    }
    let c = rusqlite::Connection::open(dir.join(name)).unwrap();
    c.query_row(query, [], |r| r.get(0)).unwrap()
}
