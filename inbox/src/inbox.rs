//! The inbox: its settings, and storing a verified delivery (the core's [`Sink`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use mapping_webhooks::{Clock, Sink, SinkDelivery, Stored, SystemClock};
use tokio::sync::Notify;

use crate::InboxError;
use crate::db::{Db, DbOptions, on_pool};

/// A durable inbox for one webhook endpoint: every verified delivery is stored in a
/// database before it is acknowledged, then processed by a [`Worker`](crate::Worker).
///
/// The inbox stands behind a [`Gate`](mapping_webhooks::Gate), as a
/// [`Sink`]: the gate checks the request (its head, tenant, body, signature and
/// envelope), reports to its observer, and hands each verified delivery to the inbox,
/// which answers 202 only once the row is committed. The inbox holds no secret: the
/// gate's [`Secrets`](mapping_webhooks::Secrets) (or its tenants') verify, and
/// [`reverify`](Self::reverify) takes the secrets to check a stored delivery with.
///
/// Cheap to clone: clones share the pool and the wake-up signal.
///
/// ```no_run
/// use mapping_webhooks::{Gate, UnsignedHeaders};
/// use mapping_webhooks_inbox::Inbox;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let gate = Gate::builder()
///     .secret(std::env::var("MAPPING_WEBHOOK_SECRET")?)
///     .without_dedup()
///     .build()?;
/// let inbox = Inbox::builder().connect("sqlite://webhooks.db").await?;
/// // In the HTTP handler (or mount an adapter's inbox endpoint instead):
/// // 202 once stored, 200 for a duplicate, 4xx or 503 otherwise.
/// # let (header, body) = ("", b"");
/// let reply = gate
///     .admit_into(&inbox, [header.as_bytes()], UnsignedHeaders::default(), body)
///     .await;
/// println!("{} {}", reply.status(), reply.reason());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Inbox {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) db: Db,
    pub(crate) namespace: String,
    pub(crate) clock: Arc<dyn Clock>,
    /// Whose clock times the workers' leases.
    pub(crate) lease_clock: LeaseClock,
    /// Woken after each accepted delivery, so a worker in this process starts at once.
    pub(crate) accepted: Notify,
    /// The lease tokens of the claims whose deliveries the workers of this inbox still
    /// hold (claimed, their outcome not yet recorded), each with how many it holds. A
    /// claim never takes a row leased under one of them, whatever the clock says: a
    /// wall clock stepped past a lease must not start a second run of a delivery whose
    /// first run is still going in this process. A token is listed before its claim's
    /// statement runs, so claims may run at once.
    pub(crate) held: std::sync::Mutex<std::collections::HashMap<i64, usize>>,
    /// The accept path's batches (see [`InboxBuilder::group_commit`]).
    pub(crate) group: crate::group::GroupCommit,
}

/// Whose clock times the workers' leases (see [`InboxBuilder::lease_clock`]).
///
/// A worker claims a delivery for its lease; once the lease has run out, another worker
/// may take the delivery over (the first one is presumed dead). If the workers' clocks
/// disagree by more than what is left of a lease, a worker whose clock runs ahead takes
/// over a delivery that is still running elsewhere: the handler runs twice at once.
/// Within one process that cannot happen (a worker never claims what its own process
/// holds); across processes it is what this setting is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseClock {
    /// The database server's clock: on Postgres, `clock_timestamp()`, read once per
    /// claim, so every replica sharing the database agrees on when a lease ends, whatever
    /// its own clock says. On SQLite, which serves one host, the inbox's own clock.
    Database,
    /// The inbox's own [`Clock`]: every process must keep its clock within a small part
    /// of the lease of the others'.
    Inbox,
}

/// Builds an [`Inbox`]: [`Inbox::builder`], the database settings, then
/// [`connect`](Self::connect) or [`pool`](Self::pool). Every request setting (secrets,
/// tenants, tolerance, body limit, read timeout, observer) is the
/// [`Gate`](mapping_webhooks::Gate)'s.
#[must_use]
pub struct InboxBuilder {
    namespace: String,
    clock: Option<Arc<dyn Clock>>,
    lease_clock: Option<LeaseClock>,
    db: DbOptions,
    existing_only: bool,
    group_commit: Duration,
}

impl Inbox {
    /// Starts building an inbox: database settings only (the secrets are the gate's).
    pub fn builder() -> InboxBuilder {
        InboxBuilder {
            namespace: String::new(),
            clock: None,
            lease_clock: None,
            db: Db::options(),
            existing_only: false,
            group_commit: crate::group::DEFAULT_WINDOW,
        }
    }

    /// The namespace this inbox stores and processes (empty for none).
    pub fn namespace(&self) -> &str {
        &self.shared.namespace
    }

    /// The database pool, to share with your own code (and for the transactional
    /// handler's writes).
    pub fn db(&self) -> &Db {
        &self.shared.db
    }

    /// Checks that the inbox's database answers, for a readiness route: one cheap query
    /// (see [`Db::ping`]).
    ///
    /// # Errors
    ///
    /// [`InboxError::Database`] when the database is down or unreachable, or the pool
    /// was [closed](Self::close).
    pub async fn ping(&self) -> Result<(), InboxError> {
        self.shared.db.ping().await
    }

    /// Closes the pool. Every later call fails as if the database were down; for tests
    /// and for shutting down. A pool shared with other inboxes closes for them too.
    pub async fn close(&self) {
        self.shared.db.close().await;
    }

    pub(crate) fn now_millis(&self) -> i64 {
        i64::try_from(self.shared.clock.now_millis()).unwrap_or(i64::MAX)
    }
}

impl Sink for Inbox {
    /// Stores a verified delivery with its tenant, in a batch shared with the deliveries
    /// arriving within the [group commit](InboxBuilder::group_commit) window (one
    /// statement, one transaction), or alone when that is off:
    /// [`Stored::New`] only once the row is committed, [`Stored::AlreadyStored`] when
    /// this event (of this tenant, in this namespace) was stored before, an error when
    /// the database failed (the gate answers 503 and the sender retries).
    async fn store(
        &self,
        delivery: SinkDelivery<'_>,
    ) -> Result<Stored, Box<dyn std::error::Error + Send + Sync>> {
        let verified = delivery.verified;
        let now = self.now_millis();
        if !self.shared.group.window().is_zero() {
            let row = crate::group::Row {
                tenant: verified.tenant.as_deref().unwrap_or("").to_owned(),
                event_id: verified.event_id.clone(),
                event_type: verified.event_type.clone(),
                delivery_id: verified.delivery_id.clone(),
                signed_at: i64::try_from(verified.timestamp).unwrap_or(i64::MAX),
                secret: verified.secret.to_string(),
                signature: delivery.signed_headers.to_owned(),
                scheme: delivery.scheme.name(),
                body: delivery.body.to_vec(),
                received_at: now,
            };
            let stored = self
                .shared
                .group
                .store(&self.shared.db, &self.shared.namespace, row)
                .await?;
            if stored == Stored::New {
                tracing::debug!(
                    event_id = verified.event_id,
                    delivery_id = verified.delivery_id,
                    "webhook stored in the inbox"
                );
                // A worker of this process starts at once.
                self.wake();
            } else {
                tracing::debug!(
                    event_id = verified.event_id,
                    delivery_id = verified.delivery_id,
                    "webhook already in the inbox; acknowledged"
                );
            }
            return Ok(stored);
        }
        // `fetch_all`, not `fetch_optional`: the statement must be stepped to its end. On
        // SQLite in autocommit the commit (the WAL write and its fsync) happens when the
        // statement completes; `fetch_optional` takes the first row and resets the
        // statement, and the reset's error (a full disk, `EFBIG`) was lost: 202 for a row
        // that was never committed. Stepped to the end, a failed commit is an error: 503.
        let stored: Result<Vec<i64>, sqlx::Error> = on_pool!(&self.shared.db, pool => {
            sqlx::query_scalar(INSERT)
                .bind(&self.shared.namespace)
                .bind(verified.tenant.as_deref().unwrap_or(""))
                .bind(&verified.event_id)
                .bind(&verified.event_type)
                .bind(&verified.delivery_id)
                .bind(i64::try_from(verified.timestamp).unwrap_or(i64::MAX))
                .bind(verified.secret.to_string())
                .bind(delivery.signed_headers)
                .bind(delivery.scheme.name())
                .bind(delivery.body)
                .bind(now)
                .fetch_all(pool)
                .await
        });
        match stored?.first().copied() {
            Some(id) => {
                tracing::debug!(
                    id,
                    event_id = verified.event_id,
                    delivery_id = verified.delivery_id,
                    "webhook stored in the inbox"
                );
                // A worker of this process starts at once.
                self.shared.accepted.notify_one();
                Ok(Stored::New)
            }
            None => {
                tracing::debug!(
                    event_id = verified.event_id,
                    delivery_id = verified.delivery_id,
                    "webhook already in the inbox; acknowledged"
                );
                Ok(Stored::AlreadyStored)
            }
        }
    }
}

/// The tenant is stored as `''` for none: part of the uniqueness, which `NULL` could not be.
const INSERT: &str = "INSERT INTO mapping_webhooks_inbox \
     (namespace, tenant, event_id, event_type, delivery_id, signed_at, secret, signature, \
      scheme, body, received_at, state, attempts, due_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending', 0, $11) \
     ON CONFLICT (namespace, tenant, event_id) DO NOTHING RETURNING id";

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox")
            .field("db", &self.shared.db)
            .field("namespace", &self.shared.namespace)
            .field("lease_clock", &self.shared.lease_clock)
            .field("group_commit", &self.shared.group.window())
            .finish_non_exhaustive()
    }
}

impl InboxBuilder {
    /// Stores and processes only this namespace's deliveries, so one database can serve
    /// several endpoints (`eventId` is unique per namespace and tenant).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Reads the time from `clock`: received-at, retry times and leases follow it (a
    /// [`ManualClock`](mapping_webhooks::ManualClock) in tests). The signature window is
    /// the gate's: give the gate the same clock
    /// ([`GateBuilder::clock`](mapping_webhooks::GateBuilder::clock)).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Whose clock times the workers' leases: when a claimed delivery's lease ends and
    /// another worker may take it over. The default is [`LeaseClock::Database`], unless
    /// a [`clock`](Self::clock) was given (tests that expire leases by moving it), then
    /// [`LeaseClock::Inbox`].
    pub fn lease_clock(mut self, lease_clock: LeaseClock) -> Self {
        self.lease_clock = Some(lease_clock);
        self
    }

    /// The pool's size, for [`connect`](Self::connect) (default 4 for SQLite, 10 for
    /// Postgres).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.db = self.db.max_connections(n);
        self
    }

    /// How long a request waits for a connection before it is answered 503 (default
    /// 3 s; for [`connect`](Self::connect)).
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.db = self.db.acquire_timeout(timeout);
        self
    }

    /// Group commit on the accept path (default 2 ms): a delivery waits up to `window`
    /// for others, and all that arrived within it are stored in one multi-row `INSERT`
    /// and one commit, so under load the inbox pays one commit (one fsync) per batch
    /// instead of one per delivery. Each request is still answered only once its own
    /// row is committed (202), or found stored (200), and every request of a batch
    /// whose commit fails is answered 503. A lone delivery waits at most `window`.
    /// `Duration::ZERO` turns it off: each delivery is its own statement and commit.
    pub fn group_commit(mut self, window: Duration) -> Self {
        self.group_commit = window;
        self
    }

    /// Opens only an inbox that exists: [`connect`](Self::connect) creates no SQLite
    /// file, and [`connect`](Self::connect) and [`pool`](Self::pool) create no schema
    /// (an existing one is still upgraded); without one they fail with
    /// [`InboxError::NoInbox`]. For operator tools, where a mistyped URL or working
    /// directory must not look like an empty inbox.
    pub fn existing_only(mut self) -> Self {
        self.db = self.db.existing_only();
        self.existing_only = true;
        self
    }

    /// Connects to `sqlite://path` (created if missing, unless
    /// [`existing_only`](Self::existing_only); WAL, `synchronous=FULL`) or
    /// `postgres://…`, and creates or upgrades the schema.
    ///
    /// # Errors
    ///
    /// [`InboxError::NoInbox`] when [`existing_only`](Self::existing_only) and there is
    /// none, [`InboxError::Config`] for a URL this build does not support,
    /// [`InboxError::Database`] when the database cannot be reached or migrated.
    pub async fn connect(self, url: &str) -> Result<Inbox, InboxError> {
        let db = self.db.connect(url).await?;
        self.pool(db).await
    }

    /// Uses an existing pool (made with [`Db::options`] or [`Db::connect`], or another
    /// inbox's [`db`](Inbox::db): several inboxes, each a namespace, may share one),
    /// and creates or upgrades the schema in it. The pool's settings are its own
    /// ([`max_connections`](Self::max_connections) and
    /// [`acquire_timeout`](Self::acquire_timeout) are for [`connect`](Self::connect)).
    ///
    /// # Errors
    ///
    /// [`InboxError::NoInbox`] when [`existing_only`](Self::existing_only) and the
    /// schema is not there, [`InboxError::Database`] when the schema cannot be created.
    pub async fn pool(self, db: Db) -> Result<Inbox, InboxError> {
        if self.existing_only && !db.has_schema().await? {
            return Err(InboxError::NoInbox);
        }
        db.migrate().await?;
        let lease_clock = self.lease_clock.unwrap_or(if self.clock.is_some() {
            LeaseClock::Inbox
        } else {
            LeaseClock::Database
        });
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        Ok(Inbox {
            shared: Arc::new(Shared {
                db,
                namespace: self.namespace,
                clock,
                lease_clock,
                accepted: Notify::new(),
                held: std::sync::Mutex::default(),
                group: crate::group::GroupCommit::new(self.group_commit),
            }),
        })
    }
}

impl fmt::Debug for InboxBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboxBuilder")
            .field("namespace", &self.namespace)
            .field("lease_clock", &self.lease_clock)
            .field("db", &self.db)
            .field("existing_only", &self.existing_only)
            .field("group_commit", &self.group_commit)
            .finish_non_exhaustive()
    }
}
