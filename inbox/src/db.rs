//! The two databases behind one enum, and the crate's own migrations.
//!
//! Every query is plain SQL bound at run time (no `DATABASE_URL` at build time). Both
//! databases read the same `$1`-style placeholders, so most statements are written once
//! and run through [`on_pool!`] for whichever pool this is.

use std::fmt;
use std::time::Duration;

use crate::InboxError;

/// A connection pool to SQLite or Postgres.
#[derive(Clone)]
#[non_exhaustive]
pub enum Db {
    /// SQLite.
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
    /// Postgres.
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
}

/// Runs `$body` with `$pool` bound to whichever pool `$db` holds.
macro_rules! on_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            #[cfg(feature = "sqlite")]
            $crate::db::Db::Sqlite($pool) => $body,
            #[cfg(feature = "postgres")]
            $crate::db::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the connect options: they hold the password.
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(pool) => f
                .debug_struct("Db::Sqlite")
                .field("connections", &pool.size())
                .finish(),
            #[cfg(feature = "postgres")]
            Self::Postgres(pool) => f
                .debug_struct("Db::Postgres")
                .field("connections", &pool.size())
                .finish(),
        }
    }
}

/// How long a request waits for a connection before the inbox answers 503.
pub(crate) const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// How to open a [`Db`]: [`Db::options`], the pool's settings, then
/// [`connect`](Self::connect). One pool can serve several inboxes (each a namespace),
/// given to each with [`InboxBuilder::pool`](crate::InboxBuilder::pool).
///
/// ```no_run
/// use std::time::Duration;
/// use mapping_webhooks_inbox::{Db, Inbox};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let db = Db::options()
///     .max_connections(16)
///     .acquire_timeout(Duration::from_secs(2))
///     .connect("postgres://app@db.internal/webhooks")
///     .await?;
/// let orders = Inbox::builder().namespace("orders").pool(db.clone()).await?;
/// let billing = Inbox::builder().namespace("billing").pool(db).await?;
/// // A readiness route: one cheap query.
/// orders.ping().await?;
/// # let _ = billing;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "call connect(url) to open the pool"]
pub struct DbOptions {
    max_connections: Option<u32>,
    acquire_timeout: Duration,
    create: bool,
}

impl DbOptions {
    /// The pool's size (default 4 for SQLite, 10 for Postgres).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = Some(n);
        self
    }

    /// How long a query waits for a connection before it fails, and a request is
    /// answered 503 (default 3 s). On SQLite, also how long a write waits for the lock.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Creates no SQLite file: a missing one is [`InboxError::NoInbox`] (see
    /// [`InboxBuilder::existing_only`](crate::InboxBuilder::existing_only)).
    pub fn existing_only(mut self) -> Self {
        self.create = false;
        self
    }

    /// Opens a pool to `sqlite://path` (created if missing, unless
    /// [`existing_only`](Self::existing_only); WAL, `synchronous=FULL`) or
    /// `postgres://…`. The inbox's schema is made by the inbox
    /// ([`InboxBuilder::pool`](crate::InboxBuilder::pool)), not here.
    ///
    /// # Errors
    ///
    /// [`InboxError::NoInbox`] for a missing SQLite file with
    /// [`existing_only`](Self::existing_only), [`InboxError::Config`] for a URL this
    /// build does not support, [`InboxError::Database`] when the database cannot be
    /// reached. No error shows the URL's password.
    pub async fn connect(&self, url: &str) -> Result<Db, InboxError> {
        Db::connect_with(url, self.max_connections, self.acquire_timeout, self.create).await
    }
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            max_connections: None,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            create: true,
        }
    }
}

impl Db {
    /// The pool's settings, to [`connect`](DbOptions::connect) with.
    pub fn options() -> DbOptions {
        DbOptions::default()
    }

    /// Opens a pool to `url` with the default settings (see [`DbOptions::connect`]).
    ///
    /// # Errors
    ///
    /// As [`DbOptions::connect`].
    pub async fn connect(url: &str) -> Result<Self, InboxError> {
        Self::options().connect(url).await
    }

    /// Checks that the database answers: one cheap query (`SELECT 1`) on a pooled
    /// connection, for a readiness check.
    ///
    /// # Errors
    ///
    /// [`InboxError::Database`] when the database is down or unreachable (within the
    /// pool's acquire timeout), or the pool was [closed](crate::Inbox::close).
    pub async fn ping(&self) -> Result<(), InboxError> {
        let one: i32 =
            on_pool!(self, pool => sqlx::query_scalar("SELECT 1").fetch_one(pool).await?);
        debug_assert_eq!(one, 1);
        Ok(())
    }

    /// Connects to `url`: `sqlite://path` (created if missing, when `create`) or
    /// `postgres://…`.
    async fn connect_with(
        url: &str,
        max_connections: Option<u32>,
        acquire_timeout: Duration,
        create: bool,
    ) -> Result<Self, InboxError> {
        if url.starts_with("sqlite:") {
            #[cfg(feature = "sqlite")]
            return Self::connect_sqlite(url, max_connections, acquire_timeout, create).await;
            #[cfg(not(feature = "sqlite"))]
            return Err(InboxError::config(
                "a sqlite:// URL needs the `sqlite` feature of mapping-webhooks-inbox",
            ));
        }
        if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            // The database itself is never created; `create` is about the schema (see
            // `Db::has_schema`).
            #[cfg(feature = "postgres")]
            return Self::connect_postgres(url, max_connections, acquire_timeout).await;
            #[cfg(not(feature = "postgres"))]
            return Err(InboxError::config(
                "a postgres:// URL needs the `postgres` feature of mapping-webhooks-inbox",
            ));
        }
        let _ = (max_connections, acquire_timeout, create);
        Err(InboxError::config(
            "the database URL must start with sqlite: or postgres: (the URL is not shown: it may hold a password)",
        ))
    }

    #[cfg(feature = "sqlite")]
    async fn connect_sqlite(
        url: &str,
        max_connections: Option<u32>,
        acquire_timeout: Duration,
        create: bool,
    ) -> Result<Self, InboxError> {
        use std::str::FromStr;

        use sqlx::sqlite::{
            SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
        };
        // WAL with synchronous=FULL: a commit returns only after the WAL is fsynced, so an
        // accepted delivery survives a process crash and a power cut.
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(acquire_timeout);
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.unwrap_or(4))
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|e| match e {
                // SQLITE_CANTOPEN: no such file, and it may not be created.
                sqlx::Error::Database(_) if !create => InboxError::NoInbox,
                e => InboxError::Database(e),
            })?;
        Ok(Self::Sqlite(pool))
    }

    #[cfg(feature = "postgres")]
    async fn connect_postgres(
        url: &str,
        max_connections: Option<u32>,
        acquire_timeout: Duration,
    ) -> Result<Self, InboxError> {
        use std::str::FromStr;

        use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
        let options = PgConnectOptions::from_str(url)?.application_name("mapping-webhooks-inbox");
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.unwrap_or(10))
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await?;
        Ok(Self::Postgres(pool))
    }

    /// Creates or upgrades the schema. Safe to run from several replicas at once
    /// (Postgres: under an advisory lock; SQLite: in an immediate transaction).
    ///
    /// The steps are boxed futures (see [`MigrationFuture`]), so this future is `Send`.
    pub(crate) async fn migrate(&self) -> Result<(), InboxError> {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(pool) => {
                let mut conn = pool.acquire().await?;
                sqlx::Executor::execute(&mut *conn, "BEGIN IMMEDIATE").await?;
                let result = migrate_sqlite(&mut conn).await;
                let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
                sqlx::Executor::execute(&mut *conn, end).await?;
                result?;
            }
            #[cfg(feature = "postgres")]
            Self::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                // One migrating replica at a time; the lock ends with the transaction.
                sqlx::query("SELECT pg_advisory_xact_lock(7163206135628742513)")
                    .execute(&mut *tx)
                    .await?;
                migrate_postgres(&mut tx).await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Whether the inbox's schema is there (its migrations table); a database error
    /// other than a missing table is an error.
    pub(crate) async fn has_schema(&self) -> Result<bool, InboxError> {
        let sql = "SELECT COUNT(*) FROM mapping_webhooks_inbox_migrations";
        let counted: Result<i64, sqlx::Error> =
            on_pool!(self, pool => sqlx::query_scalar(sql).fetch_one(pool).await);
        match counted {
            Ok(n) => Ok(n > 0),
            // "no such table" (SQLite), "relation does not exist" (Postgres).
            Err(sqlx::Error::Database(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Closes the pool: further calls fail (as when the database is down).
    pub(crate) async fn close(&self) {
        on_pool!(self, pool => pool.close().await);
    }
}

/// A migration step's future, boxed and `Send` (checked here, not by the callers).
///
/// The SQL without arguments runs through `Executor::execute` (a `Send` boxed
/// future), not `sqlx::raw_sql(..).execute(..)`: that one is an `async fn` generic over
/// the executor's lifetime, whose future the compiler cannot prove `Send` ("`Executor`
/// is not general enough"), which made `InboxBuilder::connect` and `pool` not `Send`.
type MigrationFuture<'c> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), sqlx::Error>> + Send + 'c>>;

/// The SQLite migrations not applied yet, in the caller's transaction.
#[cfg(feature = "sqlite")]
fn migrate_sqlite(conn: &mut sqlx::SqliteConnection) -> MigrationFuture<'_> {
    Box::pin(async move {
        sqlx::Executor::execute(&mut *conn, MIGRATIONS_TABLE).await?;
        for (version, sql) in SQLITE_MIGRATIONS {
            let done: Option<i64> = sqlx::query_scalar(APPLIED)
                .bind(version)
                .fetch_optional(&mut *conn)
                .await?;
            if done.is_none() {
                sqlx::Executor::execute(&mut *conn, *sql).await?;
                sqlx::query(RECORD)
                    .bind(version)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Ok(())
    })
}

/// The Postgres migrations not applied yet, in the caller's transaction.
#[cfg(feature = "postgres")]
fn migrate_postgres(conn: &mut sqlx::PgConnection) -> MigrationFuture<'_> {
    Box::pin(async move {
        sqlx::Executor::execute(&mut *conn, MIGRATIONS_TABLE).await?;
        for (version, sql) in POSTGRES_MIGRATIONS {
            let done: Option<i64> = sqlx::query_scalar(APPLIED)
                .bind(version)
                .fetch_optional(&mut *conn)
                .await?;
            if done.is_none() {
                sqlx::Executor::execute(&mut *conn, *sql).await?;
                sqlx::query(RECORD)
                    .bind(version)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Ok(())
    })
}

const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS mapping_webhooks_inbox_migrations \
     (version BIGINT PRIMARY KEY)";
const APPLIED: &str = "SELECT version FROM mapping_webhooks_inbox_migrations WHERE version = $1";
const RECORD: &str = "INSERT INTO mapping_webhooks_inbox_migrations (version) VALUES ($1)";

#[cfg(feature = "sqlite")]
const SQLITE_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_inbox.sql")),
    (2, include_str!("../migrations/sqlite/0002_tenant.sql")),
    (3, include_str!("../migrations/sqlite/0003_claim_order.sql")),
    (4, include_str!("../migrations/sqlite/0004_scheme.sql")),
    (
        5,
        include_str!("../migrations/sqlite/0005_drop_due_index.sql"),
    ),
];

#[cfg(feature = "postgres")]
const POSTGRES_MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_inbox.sql")),
    (2, include_str!("../migrations/postgres/0002_tenant.sql")),
    (3, include_str!("../migrations/postgres/0003_notify.sql")),
    (
        4,
        include_str!("../migrations/postgres/0004_claim_order.sql"),
    ),
    (5, include_str!("../migrations/postgres/0005_scheme.sql")),
    (
        6,
        include_str!("../migrations/postgres/0006_drop_due_index.sql"),
    ),
];
