//! The PostgreSQL backend: the store's traits on a server that several
//! `leadgate` hosts share. A [`PgStore`] is one connection, as a
//! [`SqliteStore`](crate::SqliteStore) is one; each thread opens its own.
//!
//! Its schema is versioned apart from SQLite's (`migrations-pg/`, in the
//! table `leadgate_schema`) and applied when a store connects, under a
//! PostgreSQL advisory lock, so hosts starting together do not race; a
//! database migrated by a newer leadgate is refused. Every aggregate trait
//! of [`crate::prelude`] is implemented, one module each, with the same
//! semantics as SQLite's; due handoffs are claimed with `FOR UPDATE SKIP
//! LOCKED`, so each runs once across hosts.

mod enrich;
mod matching;
mod notify;
mod outbox;
mod passes;
mod reads;
mod rekey;
mod review;
mod routing;
mod rules;
mod runs;
mod score;
mod service;
mod tls;

pub use tls::SslMode;

use crate::StoreError;
use std::cell::{Cell, RefCell, RefMut};

/// The PostgreSQL migrations, in order: the schema version is their count.
pub const PG_MIGRATIONS: &[&str] = &[
    include_str!("../../migrations-pg/0001_service_intake.sql"),
    include_str!("../../migrations-pg/0002_runs_and_outbox.sql"),
    include_str!("../../migrations-pg/0003_matching_enrichment_scores_review.sql"),
    include_str!("../../migrations-pg/0004_passes.sql"),
    include_str!("../../migrations-pg/0005_routing.sql"),
    include_str!("../../migrations-pg/0006_notifications.sql"),
    include_str!("../../migrations-pg/0007_crm_ids_and_account_owners.sql"),
    include_str!("../../migrations-pg/0008_rules.sql"),
];

/// The advisory lock migrations are applied under (any constant shared by
/// every leadgate host: "leadgate" in ASCII, truncated).
const MIGRATION_LOCK: i64 = 0x6c65_6164_6761_7465;

/// A store on PostgreSQL.
pub struct PgStore {
    client: RefCell<postgres::Client>,
    /// How to connect again when the server closed the connection.
    config: Box<postgres::Config>,
    /// Plain or TLS, as the URL's `sslmode` says.
    connector: tls::Connector,
    /// The server and database, for messages (never the password).
    target: String,
    /// A [`Batch`](crate::Batch)'s transaction is open: store functions
    /// write in it instead of in their own.
    in_batch: Cell<bool>,
    /// Statements prepared on this connection, by their text: the ones
    /// run once per lead are parsed and planned once.
    statements: Statements,
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

/// `location` for a message: a PostgreSQL URL's password replaced by
/// `***`; anything else as it is.
pub fn redact(location: &str) -> String {
    if !is_postgres(location) {
        return location.to_string();
    }
    let Some((scheme, rest)) = location.split_once("://") else {
        return location.to_string();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((user, hosts)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{name}:***@{hosts}{tail}")
        }
        _ => location.to_string(),
    }
}

impl PgStore {
    /// Connects to the database `url` names (`postgres://user@host/db`),
    /// with the password from the URL or else `PGPASSWORD`, over TLS when
    /// the URL's `sslmode` (or `PGSSLMODE`) asks for it ([`SslMode`]), and
    /// brings its schema up to date.
    pub fn connect(url: &str) -> Result<PgStore, StoreError> {
        let (url, tls) = tls::split_url(url, |k| std::env::var(k).ok())?;
        let mut config: postgres::Config = url.parse().map_err(|source| StoreError::Postgres {
            op: "read the PostgreSQL URL",
            source,
        })?;
        if config.get_password().is_none()
            && let Ok(password) = std::env::var("PGPASSWORD")
        {
            config.password(password);
        }
        let connector = tls::Connector::new(&tls)?;
        config.ssl_mode(connector.driver_mode());
        let target = describe(&config);
        let client = connector
            .connect(&config)
            .map_err(|source| StoreError::PgConnect {
                target: target.clone(),
                source,
            })?;
        let store = PgStore {
            client: RefCell::new(client),
            config: Box::new(config),
            connector,
            target,
            in_batch: Cell::new(false),
            statements: RefCell::default(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// The server and database this store is on (never the password).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Whether the server answers a trivial query on this connection (false
    /// after the server restarted: the connection is not re-established).
    pub fn ping(&self) -> Result<(), StoreError> {
        self.client()
            .simple_query("SELECT 1")
            .map(|_| ())
            .map_err(pg("ping"))
    }

    /// Whether this connection is encrypted (TLS), as the server sees it.
    pub fn encrypted(&self) -> Result<bool, StoreError> {
        let row = self
            .client()
            .query_one(
                "SELECT coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)",
                &[],
            )
            .map_err(pg("read the connection's TLS state"))?;
        Ok(row.get(0))
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

    /// The connection. One the server closed (it restarted, or ended the
    /// session) is opened again here, outside a batch, once the client has
    /// noticed: the calls before that fail, the ones after work again.
    pub(crate) fn client(&self) -> RefMut<'_, postgres::Client> {
        let mut client = self.client.borrow_mut();
        if client.is_closed()
            && !self.in_batch.get()
            && let Ok(fresh) = self.connector.connect(&self.config)
        {
            *client = fresh;
            self.statements.borrow_mut().clear();
        }
        client
    }

    /// `sql` prepared on `client` (this store's), once per connection.
    pub(crate) fn prepared(
        &self,
        client: &mut postgres::Client,
        sql: &'static str,
    ) -> Result<postgres::Statement, postgres::Error> {
        cached(&self.statements, client, sql)
    }

    /// A transaction for one store function: its own, or the open
    /// batch's (then committing it commits nothing yet).
    pub(crate) fn tx(&self, op: &'static str) -> Result<Tx<'_>, StoreError> {
        let mut client = self.client();
        let own = !self.in_batch.get();
        if own {
            client.batch_execute("BEGIN").map_err(pg(op))?;
        }
        Ok(Tx {
            client,
            own,
            open: true,
            statements: &self.statements,
        })
    }

    /// Opens a batch's transaction.
    pub(crate) fn begin_batch(&mut self) -> Result<(), StoreError> {
        if self.in_batch.get() {
            return Err(StoreError::BatchOpen);
        }
        self.client()
            .batch_execute("BEGIN")
            .map_err(pg("begin batch"))?;
        self.in_batch.set(true);
        Ok(())
    }

    /// Commits a batch's transaction.
    pub(crate) fn commit_batch(&mut self) -> Result<(), StoreError> {
        self.in_batch.set(false);
        self.client()
            .batch_execute("COMMIT")
            .map_err(pg("commit batch"))
    }

    /// Rolls back a batch that was not committed.
    pub(crate) fn abandon_batch(&mut self) {
        self.in_batch.set(false);
        let _ = self.client().batch_execute("ROLLBACK");
    }
}

/// A store function's transaction on the connection (it dereferences to
/// the client): rolled back when dropped uncommitted. Inside a batch it is
/// the batch's, and neither commits nor rolls back.
pub(crate) struct Tx<'s> {
    client: RefMut<'s, postgres::Client>,
    own: bool,
    open: bool,
    statements: &'s Statements,
}

type Params<'p> = [&'p (dyn postgres::types::ToSql + Sync)];

impl Tx<'_> {
    fn statement(&mut self, sql: &'static str) -> Result<postgres::Statement, postgres::Error> {
        cached(self.statements, &mut self.client, sql)
    }

    /// `query` with the statement prepared once per connection.
    pub(crate) fn query_cached(
        &mut self,
        sql: &'static str,
        params: &Params<'_>,
    ) -> Result<Vec<postgres::Row>, postgres::Error> {
        let st = self.statement(sql)?;
        self.client.query(&st, params)
    }

    /// `execute` with the statement prepared once per connection.
    pub(crate) fn execute_cached(
        &mut self,
        sql: &'static str,
        params: &Params<'_>,
    ) -> Result<u64, postgres::Error> {
        let st = self.statement(sql)?;
        self.client.execute(&st, params)
    }

    pub(crate) fn commit(mut self) -> Result<(), postgres::Error> {
        self.open = false;
        if self.own {
            self.client.batch_execute("COMMIT")
        } else {
            Ok(())
        }
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = postgres::Client;
    fn deref(&self) -> &postgres::Client {
        &self.client
    }
}

impl std::ops::DerefMut for Tx<'_> {
    fn deref_mut(&mut self) -> &mut postgres::Client {
        &mut self.client
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.open && self.own {
            let _ = self.client.batch_execute("ROLLBACK");
        }
    }
}

fn apply(client: &mut postgres::Client, target: &str) -> Result<(), StoreError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('leadgate_schema') IS NOT NULL", &[])
        .map_err(pg("look for the schema table"))?
        .get(0);
    if !exists {
        client
            .batch_execute("CREATE TABLE leadgate_schema (version INTEGER NOT NULL)")
            .map_err(pg("create the schema table"))?;
    }
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

/// Statements prepared on a connection, by their text.
type Statements = RefCell<std::collections::HashMap<&'static str, postgres::Statement>>;

/// `sql` from `statements`, prepared on `client` the first time.
fn cached(
    statements: &Statements,
    client: &mut postgres::Client,
    sql: &'static str,
) -> Result<postgres::Statement, postgres::Error> {
    if let Some(s) = statements.borrow().get(sql) {
        return Ok(s.clone());
    }
    let s = client.prepare(sql)?;
    statements.borrow_mut().insert(sql, s.clone());
    Ok(s)
}

/// A binary `COPY … FROM STDIN` on `client` (a transaction's): rows go in
/// with `write`, and `finish` ends it.
pub(crate) fn copy_in<'c>(
    client: &'c mut postgres::Client,
    sql: &str,
    types: &[postgres::types::Type],
    op: &'static str,
) -> Result<postgres::binary_copy::BinaryCopyInWriter<'c>, StoreError> {
    let sink = client.copy_in(sql).map_err(pg(op))?;
    Ok(postgres::binary_copy::BinaryCopyInWriter::new(sink, types))
}

/// A row count as a `LIMIT` parameter.
pub(crate) fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Maps a PostgreSQL error to the store's, naming the operation.
pub(crate) fn pg(op: &'static str) -> impl FnOnce(postgres::Error) -> StoreError {
    move |source| StoreError::Postgres { op, source }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_password_never_reaches_a_message() {
        assert_eq!(
            super::redact("postgres://app:s3cr:et@db.internal:5432/leads?sslmode=require"),
            "postgres://app:***@db.internal:5432/leads?sslmode=require"
        );
        assert_eq!(
            super::redact("postgres://app@db/leads"),
            "postgres://app@db/leads"
        );
        assert_eq!(super::redact("leadgate.db"), "leadgate.db");
    }
}
