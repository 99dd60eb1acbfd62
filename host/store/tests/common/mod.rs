//! What the store's contract tests share: a PostgreSQL database of a
//! test's own on the server `LEADGATE_TEST_POSTGRES` names, dropped when
//! done; without the variable a test checks SQLite alone.

#![allow(clippy::unwrap_used, dead_code)]

/// A database of its own for one test, dropped when done.
pub struct TestDb {
    admin: String,
    name: String,
    pub url: String,
}

impl TestDb {
    pub fn create(test: &str) -> Option<TestDb> {
        let Ok(admin) = std::env::var("LEADGATE_TEST_POSTGRES") else {
            eprintln!("{test}: PostgreSQL part skipped (set LEADGATE_TEST_POSTGRES)");
            return None;
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("leadgate_t_{}_{nanos}", std::process::id());
        let mut c = postgres::Client::connect(&admin, postgres::NoTls)
            .unwrap_or_else(|e| panic!("LEADGATE_TEST_POSTGRES={admin}: {e}"));
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let (scheme, rest) = admin.split_once("://").unwrap();
        let server = rest.split(['/', '?']).next().unwrap();
        let url = format!("{scheme}://{server}/{name}");
        Some(TestDb { admin, name, url })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}
