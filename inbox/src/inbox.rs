//! The inbox: its settings, and accepting a delivery.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use mapping_webhooks::{
    Admission, CheckedHead, Clock, ConfigError, DEFAULT_BODY_LIMIT, DEFAULT_READ_TIMEOUT, Gate,
    Observer, Outcome, Reply, Secret, Secrets, SystemClock, UnsignedHeaders, VerifyError,
};
use tokio::sync::Notify;

use crate::InboxError;
use crate::db::{DEFAULT_ACQUIRE_TIMEOUT, Db, on_pool};

/// A durable inbox for one webhook endpoint: every verified delivery is stored in a
/// database before it is acknowledged, then processed by a [`Worker`](crate::Worker).
///
/// Cheap to clone: clones share the pool, the [`Secrets`], the observer and the
/// wake-up signal.
///
/// ```no_run
/// use mapping_webhooks_inbox::Inbox;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let inbox = Inbox::builder(std::env::var("MAPPING_WEBHOOK_SECRET")?)?
///     .connect("sqlite://webhooks.db")
///     .await?;
/// // In the HTTP handler: 202 once stored, 200 for a duplicate, 4xx or 503 otherwise.
/// # let (header, body) = ("", b"");
/// let answer = inbox.accept([header.as_bytes()], Default::default(), body).await;
/// println!("{} {}", answer.status(), answer.reason());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Inbox {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) db: Db,
    /// The core's gate, without a store: it checks the head, verifies the body against
    /// the [`Secrets`] as they are at each request, and reports to the observer.
    pub(crate) gate: Gate,
    pub(crate) namespace: String,
    pub(crate) clock: Arc<dyn Clock>,
    /// Whose clock times the workers' leases.
    pub(crate) lease_clock: LeaseClock,
    pub(crate) body_limit: usize,
    pub(crate) read_timeout: Duration,
    /// Woken after each accepted delivery, so a worker in this process starts at once.
    pub(crate) accepted: Notify,
    /// The deliveries the workers of this inbox hold (claimed, their outcome not yet
    /// recorded). A claim never takes one of them back, whatever the clock says: a
    /// wall clock stepped past a lease must not start a second run of a delivery whose
    /// first run is still going in this process.
    pub(crate) held: std::sync::Mutex<std::collections::HashSet<i64>>,
    /// One claim at a time in this process, so that no two claims both take an id
    /// before either has marked it held.
    pub(crate) claiming: tokio::sync::Mutex<()>,
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

/// Builds an [`Inbox`]: [`Inbox::builder`] (or [`Inbox::builder_from_secrets`]), the
/// settings, then [`connect`](Self::connect) or [`pool`](Self::pool).
#[must_use]
pub struct InboxBuilder {
    secrets: Secrets,
    /// Sets the observer on the gate (kept as the concrete type: one dispatch per call).
    observer: Option<Box<dyn FnOnce(Gate) -> Gate + Send + Sync>>,
    tolerance: Option<Duration>,
    namespace: String,
    clock: Option<Arc<dyn Clock>>,
    lease_clock: Option<LeaseClock>,
    body_limit: usize,
    read_timeout: Duration,
    max_connections: Option<u32>,
    acquire_timeout: Duration,
    existing_only: bool,
}

impl Inbox {
    /// Starts building an inbox for `secret` (the whole `whsec_…` string).
    ///
    /// # Errors
    ///
    /// [`ConfigError::EmptySecret`] when the secret is empty or blank.
    pub fn builder(secret: impl AsRef<[u8]>) -> Result<InboxBuilder, ConfigError> {
        Ok(Self::builder_from_secrets(Secrets::new(Secret::new(
            secret,
        )?)))
    }

    /// Starts building an inbox reading `secrets`, a handle the app keeps to change the
    /// secrets while the inbox runs, as the core's
    /// [`Gate::from_secrets`](mapping_webhooks::Gate::from_secrets) and the adapters'
    /// `from_secrets` do: every request, and every [`reverify`](Self::reverify), uses the
    /// secrets as they are at that moment. No restart, and the stored deliveries are
    /// untouched.
    ///
    /// ```no_run
    /// use mapping_webhooks_inbox::Inbox;
    /// use mapping_webhooks::{Secret, Secrets};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let secrets = Secrets::new(Secret::new(std::env::var("MAPPING_WEBHOOK_SECRET")?)?);
    /// let inbox = Inbox::builder_from_secrets(secrets.clone())
    ///     .connect("sqlite://webhooks.db")
    ///     .await?;
    /// // Later, while requests are accepted (a reloaded secrets file, an admin call):
    /// secrets.rotate(Secret::new(std::env::var("MAPPING_WEBHOOK_NEXT_SECRET")?)?);
    /// // The old secret stays accepted for ten minutes (`Secrets::previous_expiry`).
    /// # let _ = inbox;
    /// # Ok(()) }
    /// ```
    pub fn builder_from_secrets(secrets: Secrets) -> InboxBuilder {
        InboxBuilder {
            secrets,
            observer: None,
            tolerance: None,
            namespace: String::new(),
            clock: None,
            lease_clock: None,
            body_limit: DEFAULT_BODY_LIMIT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            max_connections: None,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            existing_only: false,
        }
    }

    /// The secrets handle this inbox reads on every request (and in
    /// [`reverify`](Self::reverify)): clone it to [`rotate`](Secrets::rotate),
    /// [`set`](Secrets::set) or [`remove_previous`](Secrets::remove_previous) while the
    /// inbox runs. Clones of the inbox share it.
    pub fn secrets(&self) -> &Secrets {
        self.shared.gate.secrets()
    }

    /// The largest body an adapter reads for this inbox.
    pub fn body_limit(&self) -> usize {
        self.shared.body_limit
    }

    /// The time an adapter allows for reading the body.
    pub fn read_timeout(&self) -> Duration {
        self.shared.read_timeout
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

    /// Closes the pool. Every later call fails as if the database were down; for tests
    /// and for shutting down.
    pub async fn close(&self) {
        self.shared.db.close().await;
    }

    pub(crate) fn now_millis(&self) -> i64 {
        i64::try_from(self.shared.clock.now_millis()).unwrap_or(i64::MAX)
    }

    /// The time leases are measured in, in milliseconds since the Unix epoch: the
    /// database server's clock on Postgres with [`LeaseClock::Database`], else the
    /// inbox's own.
    pub(crate) async fn lease_now(&self) -> Result<i64, InboxError> {
        match (&self.shared.db, self.shared.lease_clock) {
            #[cfg(feature = "postgres")]
            (Db::Postgres(pool), LeaseClock::Database) => Ok(sqlx::query_scalar::<_, i64>(
                "SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::bigint",
            )
            .fetch_one(pool)
            .await?),
            _ => Ok(self.now_millis()),
        }
    }

    /// Verifies a request and stores it: [`check_head`](Self::check_head) (with the
    /// body's length as the declared one), then [`accept_checked`](Self::accept_checked).
    ///
    /// `signatures` are the values of every `X-Webhook-Signature` header (none or more
    /// than one is refused); `body` is the raw body, read within
    /// [`body_limit`](Self::body_limit). The delivery is stored in one statement (one
    /// transaction): the answer is 2xx only once it is committed.
    pub async fn accept<'h>(
        &self,
        signatures: impl IntoIterator<Item = &'h [u8]>,
        unsigned: UnsignedHeaders<'_>,
        body: &[u8],
    ) -> Acceptance {
        let mut signatures = signatures.into_iter();
        let (first, second) = (signatures.next(), signatures.next());
        let length = u64::try_from(body.len()).unwrap_or(u64::MAX);
        match self.check_head(first.into_iter().chain(second), Some(length), unsigned) {
            // A head that passed has exactly one signature header: `first`.
            Ok(head) => match first {
                Some(header) => self.accept_checked(head, header, unsigned, body).await,
                None => self.refuse(VerifyError::MissingHeader, unsigned),
            },
            Err(refused) => refused,
        }
    }

    /// Verifies the body of a request whose head passed [`check_head`](Self::check_head)
    /// and stores it. `header` is that request's `X-Webhook-Signature` value, stored as
    /// received so the delivery can be [re-verified](Self::reverify) later. As in the
    /// inline adapters, the timestamp window is not checked again: it was checked with
    /// the head, and the body read that followed is bounded by the read timeout.
    pub async fn accept_checked(
        &self,
        head: CheckedHead,
        header: &[u8],
        unsigned: UnsignedHeaders<'_>,
        body: &[u8],
    ) -> Acceptance {
        // The gate has no store: it only verifies (and logs and reports a refusal). Its
        // ticket is handed over with what became of the row, the request's one outcome.
        let (verified, ticket) = match self.shared.gate.admit_checked(head, unsigned, body).await {
            Admission::Process { verified, ticket } => (verified, ticket),
            Admission::Reply(reply) => return Acceptance::from_reply(reply),
        };
        // A parsed header is ASCII: the lossy conversion never changes it.
        let header = String::from_utf8_lossy(header);
        let now = self.now_millis();
        // `fetch_all`, not `fetch_optional`: the statement must be stepped to its end. On
        // SQLite in autocommit the commit (the WAL write and its fsync) happens when the
        // statement completes; `fetch_optional` takes the first row and resets the
        // statement, and the reset's error (a full disk, `EFBIG`) was lost: 202 for a row
        // that was never committed. Stepped to the end, a failed commit is an error: 503.
        let stored: Result<Vec<i64>, sqlx::Error> = on_pool!(&self.shared.db, pool => {
            sqlx::query_scalar(INSERT)
                .bind(&self.shared.namespace)
                .bind(&verified.event_id)
                .bind(&verified.event_type)
                .bind(&verified.delivery_id)
                .bind(i64::try_from(verified.timestamp).unwrap_or(i64::MAX))
                .bind(verified.secret.to_string())
                .bind(header.as_ref())
                .bind(body)
                .bind(now)
                .fetch_all(pool)
                .await
        });
        match stored.map(|ids| ids.first().copied()) {
            Ok(Some(id)) => {
                tracing::debug!(
                    id,
                    event_id = verified.event_id,
                    delivery_id = verified.delivery_id,
                    "webhook stored in the inbox"
                );
                self.shared.accepted.notify_one();
                ticket.hand_over(Outcome::Queued);
                Acceptance::Stored { id }
            }
            Ok(None) => {
                tracing::debug!(
                    event_id = verified.event_id,
                    delivery_id = verified.delivery_id,
                    "webhook already in the inbox; acknowledged"
                );
                ticket.hand_over(Outcome::Duplicate);
                Acceptance::Duplicate
            }
            Err(error) => {
                tracing::error!(
                    %error,
                    event_id = verified.event_id,
                    delivery_id = verified.delivery_id,
                    "inbox database failed; answered 503 so the sender retries"
                );
                ticket.hand_over(Outcome::StoreUnavailable);
                Acceptance::Unavailable
            }
        }
    }

    /// Logs a refusal found by the adapter itself (the body was too large or could not
    /// be read) and turns it into an answer, as the core's [`Gate::refuse`] does.
    pub fn refuse(&self, error: VerifyError, unsigned: UnsignedHeaders<'_>) -> Acceptance {
        Acceptance::from_reply(self.shared.gate.refuse(error, unsigned))
    }

    /// Checks what a request's head says, before any byte of its body is read, with the
    /// core's [`Gate::check_head`]: the declared length (413), then exactly one
    /// well-formed signature header (400) whose timestamp is within the tolerance (401).
    /// An adapter calls this first and reads the body only when it passes.
    ///
    /// # Errors
    ///
    /// The [`Acceptance::Refused`] to answer with. The [`CheckedHead`] goes to
    /// [`accept_checked`](Self::accept_checked) with the body.
    pub fn check_head<'h>(
        &self,
        signatures: impl IntoIterator<Item = &'h [u8]>,
        content_length: Option<u64>,
        unsigned: UnsignedHeaders<'_>,
    ) -> Result<CheckedHead, Acceptance> {
        self.shared
            .gate
            .check_head(signatures, content_length, unsigned)
            .map_err(Acceptance::from_reply)
    }
}

const INSERT: &str = "INSERT INTO mapping_webhooks_inbox \
     (namespace, event_id, event_type, delivery_id, signed_at, secret, signature, body, \
      received_at, state, attempts, due_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', 0, $9) \
     ON CONFLICT (namespace, event_id) DO NOTHING RETURNING id";

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox")
            .field("db", &self.shared.db)
            .field("verifier", self.shared.gate.verifier())
            .field("namespace", &self.shared.namespace)
            .field("body_limit", &self.shared.body_limit)
            .field("read_timeout", &self.shared.read_timeout)
            .finish_non_exhaustive()
    }
}

impl InboxBuilder {
    /// Also accepts signatures made with a previous secret, during a rotation.
    ///
    /// # Errors
    ///
    /// [`ConfigError::EmptySecret`] when the secret is empty or blank.
    /// The secret is added to the inbox's [`Secrets`] (see
    /// [`Secrets::previous_secret`]: it does not expire; remove it with
    /// [`Secrets::remove_previous`] through [`Inbox::secrets`] once the rotation is over).
    pub fn previous_secret(mut self, secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        self.secrets = self.secrets.previous_secret(Secret::new(secret)?);
        Ok(self)
    }

    /// How far the signed timestamp may be from the clock, either way (default 5
    /// minutes).
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = Some(tolerance);
        self
    }

    /// Stores and processes only this namespace's deliveries, so one database can serve
    /// several endpoints (`eventId` is unique per namespace).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The largest body read (default 1 MiB).
    ///
    /// # Errors
    ///
    /// [`ConfigError::ZeroBodyLimit`] for zero.
    pub fn body_limit(mut self, bytes: usize) -> Result<Self, ConfigError> {
        if bytes == 0 {
            return Err(ConfigError::ZeroBodyLimit);
        }
        self.body_limit = bytes;
        Ok(self)
    }

    /// The time allowed for reading the body (default 10 s).
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// Reads the time from `clock`: the signature window, received-at, retry times and
    /// leases all follow it (a [`ManualClock`](mapping_webhooks::ManualClock) in tests),
    /// and so do the [`Secrets`]' expiry deadlines, as with the core's `Verifier::clock`.
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

    /// Reports each [`accept`](Inbox::accept)'s outcome, exactly once, and how long
    /// verification took, to `observer`: the core's [`Observer`], as the inline
    /// adapters' `observer` does (the core's `MetricsObserver`, feature `metrics`, fits).
    ///
    /// - a refusal: [`Outcome::Refused`] with the same [`Refusal`](mapping_webhooks::Refusal)
    ///   the inline gate reports (the head, then the body's signature and envelope);
    /// - stored: [`Outcome::Queued`] (202), once the row is committed;
    /// - an `eventId` stored before: [`Outcome::Duplicate`] (200);
    /// - the database failed: [`Outcome::StoreUnavailable`] (503).
    ///
    /// A request whose future is dropped while its row is being written (the client went
    /// away) is reported as a handler that was dropped. The worker's attempts are
    /// reported by a [`WorkerObserver`](crate::WorkerObserver) instead. Without an
    /// observer the accept path reads no clock.
    pub fn observer(mut self, observer: impl Observer) -> Self {
        self.observer = Some(Box::new(move |gate: Gate| gate.observer(observer)));
        self
    }

    /// The pool's size, for [`connect`](Self::connect) (default 4 for SQLite, 10 for
    /// Postgres).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = Some(n);
        self
    }

    /// How long a request waits for a connection before it is answered 503 (default
    /// 3 s; for [`connect`](Self::connect)).
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Opens only an inbox that exists: [`connect`](Self::connect) creates no SQLite
    /// file, and [`connect`](Self::connect) and [`pool`](Self::pool) create no schema
    /// (an existing one is still upgraded); without one they fail with
    /// [`InboxError::NoInbox`]. For operator tools, where a mistyped URL or working
    /// directory must not look like an empty inbox.
    pub fn existing_only(mut self) -> Self {
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
        let db = Db::connect(
            url,
            self.max_connections,
            self.acquire_timeout,
            !self.existing_only,
        )
        .await?;
        self.pool(db).await
    }

    /// Uses an existing pool, and creates or upgrades the schema in it.
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
        // The secrets handle as given (the app may keep a clone to rotate); the store is
        // dropped last (`clock` would rebuild the default one). A clock is set on the
        // handle only when one was given, so the app's own stays otherwise.
        let mut gate = Gate::from_secrets(self.secrets);
        if let Some(tolerance) = self.tolerance {
            gate = gate.tolerance(tolerance);
        }
        let lease_clock = self.lease_clock.unwrap_or(if self.clock.is_some() {
            LeaseClock::Inbox
        } else {
            LeaseClock::Database
        });
        let clock = match self.clock {
            Some(clock) => {
                gate = gate.clock(Arc::clone(&clock));
                clock
            }
            None => Arc::new(SystemClock),
        };
        if let Some(observe) = self.observer {
            gate = observe(gate);
        }
        let gate = gate
            .body_limit(self.body_limit)
            .map_err(|e| InboxError::config(e.to_string()))?
            .without_dedup();
        Ok(Inbox {
            shared: Arc::new(Shared {
                db,
                gate,
                namespace: self.namespace,
                clock,
                lease_clock,
                body_limit: self.body_limit,
                read_timeout: self.read_timeout,
                accepted: Notify::new(),
                held: std::sync::Mutex::default(),
                claiming: tokio::sync::Mutex::const_new(()),
            }),
        })
    }
}

impl fmt::Debug for InboxBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboxBuilder")
            .field("secrets", &self.secrets)
            .field("observer", &self.observer.is_some())
            .field("namespace", &self.namespace)
            .field("lease_clock", &self.lease_clock)
            .field("body_limit", &self.body_limit)
            .finish_non_exhaustive()
    }
}

/// What [`Inbox::accept`] decided, and what to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Acceptance {
    /// Stored and committed: 202. A worker processes it.
    Stored {
        /// The delivery's id in the inbox.
        id: i64,
    },
    /// This `eventId` was accepted before: 200, so the sender stops retrying. Answered
    /// as every receiver answers a duplicate: the body
    /// [`DUPLICATE_REASON`](mapping_webhooks::DUPLICATE_REASON) and the header
    /// [`DUPLICATE_HEADER`](mapping_webhooks::DUPLICATE_HEADER)`: true`.
    Duplicate,
    /// Refused (4xx): the signature, the window, the header or the body.
    Refused(VerifyError),
    /// The database could not store it: 503, so the sender retries later.
    Unavailable,
}

impl Acceptance {
    /// The answer for a reply of the inbox's store-less gate: a refusal, or (never seen
    /// without a store or tenants) unavailable.
    fn from_reply(reply: Reply) -> Self {
        match reply {
            Reply::Refused(error) => Self::Refused(error),
            _ => Self::Unavailable,
        }
    }

    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Stored { .. } => 202,
            Self::Duplicate => 200,
            Self::Refused(e) => e.status(),
            Self::Unavailable => 503,
        }
    }

    /// A short reason for the response body, safe to send to the client.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Stored { .. } => "accepted",
            Self::Duplicate => mapping_webhooks::DUPLICATE_REASON,
            Self::Refused(e) => e.reason(),
            Self::Unavailable => "inbox database unavailable; retry later",
        }
    }

    /// Whether this answers a copy of an event already accepted: the response then
    /// carries [`DUPLICATE_HEADER`](mapping_webhooks::DUPLICATE_HEADER)`: true`.
    pub fn is_duplicate(&self) -> bool {
        matches!(self, Self::Duplicate)
    }

    /// A short machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Stored { .. } => "accepted",
            Self::Duplicate => "duplicate",
            Self::Refused(e) => e.code(),
            Self::Unavailable => "inbox_unavailable",
        }
    }
}
