//! The PostgreSQL backend: the store's traits on a server that several
//! `leadgate` hosts share. A [`PgStore`] is one connection, as a SQLite
//! [`Store`](crate::Store) is one; each thread opens its own.
//!
//! Its schema is versioned apart from SQLite's (`migrations-pg/`, in the
//! table `leadgate_schema`) and applied when a store connects, under a
//! PostgreSQL advisory lock, so hosts starting together do not race; a
//! database migrated by a newer leadgate is refused. The aggregates it
//! implements so far: API keys ([`ApiKeys`](crate::service::ApiKeys)), the
//! intake log ([`IntakeLog`](crate::service::IntakeLog)) and the CRM outbox
//! ([`CrmOutbox`](crate::service::CrmOutbox)), whose due handoffs hosts
//! claim with `FOR UPDATE SKIP LOCKED`; the tables of runs, leads and their
//! audit trail exist for the outbox to refer to.

mod outbox;
mod service;

use crate::StoreError;
use std::cell::RefCell;

/// The PostgreSQL migrations, in order: the schema version is their count.
pub const PG_MIGRATIONS: &[&str] = &[
    include_str!("../../migrations-pg/0001_service_intake.sql"),
    include_str!("../../migrations-pg/0002_runs_and_outbox.sql"),
];

/// The advisory lock migrations are applied under (any constant shared by
/// every leadgate host: "leadgate" in ASCII, truncated).
const MIGRATION_LOCK: i64 = 0x6c65_6164_6761_7465;

/// A store on PostgreSQL.
pub struct PgStore {
    client: RefCell<postgres::Client>,
    /// The server and database, for messages (never the password).
    target: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// Whether `location` names a PostgreSQL store (`postgres://…` or
/// `postgresql://…`) rather than a SQLite file.
pub fn is_postgres(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

impl PgStore {
    /// Connects to the database `url` names (`postgres://user@host/db`),
    /// with the password from the URL or else `PGPASSWORD`, and brings its
    /// schema up to date. TLS is not offered yet: use a local socket, a
    /// private network or a TLS-terminating proxy.
    pub fn connect(url: &str) -> Result<PgStore, StoreError> {
        let mut config: postgres::Config = url.parse().map_err(|source| StoreError::Postgres {
            op: "read the PostgreSQL URL",
            source,
        })?;
        if config.get_password().is_none()
            && let Ok(password) = std::env::var("PGPASSWORD")
        {
            config.password(password);
        }
        let target = describe(&config);
        let client = config
            .connect(postgres::NoTls)
            .map_err(|source| StoreError::PgConnect {
                target: target.clone(),
                source,
            })?;
        let store = PgStore {
            client: RefCell::new(client),
            target,
        };
        store.migrate()?;
        Ok(store)
    }

    /// The server and database this store is on (never the password).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The schema version of the database.
    pub fn schema_version(&self) -> Result<usize, StoreError> {
        let row = self
            .client
            .borrow_mut()
            .query_one("SELECT coalesce(max(version), 0) FROM leadgate_schema", &[])
            .map_err(pg("read the schema version"))?;
        Ok(usize::try_from(row.get::<_, i32>(0)).unwrap_or(0))
    }

    /// Applies the migrations this database lacks, one transaction each,
    /// holding the advisory lock so that only one host migrates; refuses a
    /// database a newer leadgate migrated.
    fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client.borrow_mut();
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .map_err(pg("take the migration lock"))?;
        let result = apply(&mut client, &self.target);
        let unlocked = client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .map_err(pg("release the migration lock"));
        result.and(unlocked.map(|_| ()))
    }

    pub(crate) fn client(&self) -> std::cell::RefMut<'_, postgres::Client> {
        self.client.borrow_mut()
    }
}

fn apply(client: &mut postgres::Client, target: &str) -> Result<(), StoreError> {
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS leadgate_schema (version INTEGER NOT NULL)")
        .map_err(pg("create the schema table"))?;
    let found: i32 = client
        .query_one("SELECT coalesce(max(version), 0) FROM leadgate_schema", &[])
        .map_err(pg("read the schema version"))?
        .get(0);
    let found = usize::try_from(found).unwrap_or(0);
    if found > PG_MIGRATIONS.len() {
        return Err(StoreError::TooNew {
            path: target.to_string(),
            found,
            known: PG_MIGRATIONS.len(),
        });
    }
    for (i, sql) in PG_MIGRATIONS.iter().enumerate().skip(found) {
        let version = i + 1;
        let failed = |source| StoreError::PgMigrate { version, source };
        let mut tx = client.transaction().map_err(failed)?;
        tx.batch_execute(sql).map_err(failed)?;
        tx.execute(
            "INSERT INTO leadgate_schema (version) VALUES ($1)",
            &[&(version as i32)],
        )
        .map_err(failed)?;
        tx.commit().map_err(failed)?;
    }
    Ok(())
}

/// `host:port/db` (or the socket directory), for messages.
fn describe(config: &postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("(default database)");
    format!("postgres://{host}:{port}/{db}")
}

/// Maps a PostgreSQL error to the store's, naming the operation.
pub(crate) fn pg(op: &'static str) -> impl FnOnce(postgres::Error) -> StoreError {
    move |source| StoreError::Postgres { op, source }
}
