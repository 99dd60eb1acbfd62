//! A PostgreSQL database of its own for one test, on the server
//! `LEADGATE_TEST_POSTGRES` names (`.ci/run` sets it to the machine's local
//! server); dropped when done. Without the variable a test says so and
//! skips its PostgreSQL part.

/// Creates the database `name` on the server `admin` names (a URL with
/// the right to create databases); its URL.
pub fn create_database(admin: &str, name: &str) -> String {
    let mut c = postgres::Client::connect(admin, postgres::NoTls)
        .unwrap_or_else(|e| panic!("LEADGATE_TEST_POSTGRES={admin}: {e}"));
    c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let (scheme, rest) = admin.split_once("://").unwrap();
    let server = rest.split(['/', '?']).next().unwrap();
    format!("{scheme}://{server}/{name}")
}

pub struct TestDb {
    admin: String,
    name: String,
    pub url: String,
}

impl TestDb {
    pub fn create(test: &str) -> Option<TestDb> {
        let Ok(admin) = std::env::var("LEADGATE_TEST_POSTGRES") else {
            eprintln!("{test}: skipped (set LEADGATE_TEST_POSTGRES to a PostgreSQL server)");
            return None;
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("leadgate_i_{}_{nanos}", std::process::id());
        let url = create_database(&admin, &name);
        Some(TestDb { admin, name, url })
    }

    /// A connection of the test's own, to look at what the service wrote.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).unwrap()
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
