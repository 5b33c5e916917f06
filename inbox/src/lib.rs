//! A durable inbox for [Mapping.Travel](https://mapping.travel) webhooks: store each
//! verified delivery, answer at once, process it in the background, replay it.
//!
//! The inline adapters (`mapping-webhooks-tower`, `mapping-webhooks-actix`) run your
//! handler inside the request and acknowledge the event when it answers 2xx. That is
//! right for quick handlers. The inbox is for the others: it stands behind the same
//! core [`Gate`] as a durable [`Sink`]. The gate checks the request (head, tenant, body,
//! signature, envelope) and reports to its observer; the inbox stores the raw bytes, the
//! header and what was verified (its tenant included) in one transaction, the gate
//! answers 202 once that committed, and a [`Worker`] runs your handler afterwards, with
//! retries, a dead state and replay.
//!
//! - **Accept** (group commit: deliveries arriving within
//!   [`InboxBuilder::group_commit`]'s window, 2 ms by default, share one `INSERT` and
//!   one commit; each is answered once its own row is committed): mount an adapter's
//!   inbox endpoint (`WebhookVerify::inbox(..)` in both
//!   adapters, built from the configured middleware, so tenants, refusal formats and
//!   observers apply), or call [`Gate::admit_into`] with the inbox: [`Reply::Queued`]
//!   (202) once stored; 200 for an `eventId` accepted before (unique per namespace and
//!   tenant); 4xx for a bad signature, window, header or body; 503 when the database
//!   fails (the sender retries).
//! - **Process** ([`Inbox::worker`]): claims due deliveries under a lease, runs the
//!   handler with the envelope and the attempt number, marks it done, retries it with
//!   exponential backoff and jitter, or marks it dead after the last attempt. Claims
//!   take up to the free handler slots in one statement, and "done" marks are written
//!   in batches, each only after its handler succeeded (a crash before a batch commits
//!   runs its deliveries again after their lease; none is lost). An idle worker starts
//!   at once when this process stores a delivery, and on Postgres when any process
//!   does (`LISTEN`/`NOTIFY`); polling remains the fallback. A panic,
//!   a handler past its deadline, or a dead worker: retried after the lease. A
//!   [`Delivery`] carries the raw body and [`Delivery::verified`], what an inline
//!   handler gets, so one handler runs inline or in the worker.
//! - **Exactly once on Postgres** (`Inbox::transactional_worker`, feature `postgres`): the handler writes
//!   in the transaction that marks the delivery done.
//! - **Operate**: [`list`](Inbox::list), [`show`](Inbox::show),
//!   [`replay`](Inbox::replay), [`replay_dead`](Inbox::replay_dead),
//!   [`purge`](Inbox::purge), [`prune`](Inbox::prune), and
//!   [`reverify`](Inbox::reverify) a stored delivery against its stored header.
//! - **Rotate**: the secrets are the gate's ([`GateBuilder::secrets`] takes a
//!   [`Secrets`] handle the app keeps to rotate without a restart).
//! - **Observe**: the gate's [`Observer`] (set with [`GateBuilder::observer`]) hears one
//!   [`Outcome`] per request: [`Outcome::Queued`] once stored, `Duplicate`,
//!   `StoreUnavailable`, or the gate's `Refused` reason, and the verification time;
//!   [`Worker::observer`] takes a [`WorkerObserver`] (each [`Attempt`]'s
//!   [`AttemptResult`] and duration, each done delivery's lag, the deliveries by state).
//!   The `metrics` feature records both through the `metrics` facade: `MetricsObserver`
//!   (re-exported from the core) and `WorkerMetrics`, whose series are
//!   `mapping_webhooks_inbox_attempts_total{result}`,
//!   `mapping_webhooks_inbox_attempt_duration_seconds`,
//!   `mapping_webhooks_inbox_processing_lag_seconds` and
//!   `mapping_webhooks_inbox_deliveries{namespace, state}`. Alert on dead deliveries above zero
//!   and on a growing lag (or a growing `pending` count).
//!
//! # Databases
//!
//! - `sqlite://path` (feature `sqlite`, the default): a file, nothing to install. The
//!   file is opened in WAL mode with `synchronous=FULL`: each accepted delivery's commit
//!   waits for an fsync of the write-ahead log, so it survives a process crash and a
//!   power cut. That fsync is the cost: one per accepted delivery. Run the workers in
//!   the process that accepts (SQLite has no `SKIP LOCKED`; one writer at a time).
//! - `postgres://…` (feature `postgres`): for receivers on several replicas; any number
//!   of workers anywhere share the work through `FOR UPDATE SKIP LOCKED`. No TLS is
//!   built in (sqlx without a TLS backend, to keep the build small): reach Postgres on a
//!   private network or through a TLS sidecar.
//!
//! The schema (one table, `mapping_webhooks_inbox`) is created and upgraded by the
//! crate's own migrations when the inbox connects. A clock stepped forward never makes a
//! worker claim a delivery that a worker of the same process still runs; across
//! processes (Postgres replicas), leases are timed by the database server's clock
//! ([`LeaseClock::Database`], the default), so replicas agree on when a lease ends
//! whatever their own clocks say (see [`Worker::lease`]).
//!
//! # Example
//!
//! ```no_run
//! use mapping_webhooks::{Gate, UnsignedHeaders};
//! use mapping_webhooks_inbox::{Delivery, Inbox};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let gate = Gate::builder()
//!     .secret(std::env::var("MAPPING_WEBHOOK_SECRET")?)
//!     .without_dedup() // the inbox's table is the dedup
//!     .build()?;
//! let inbox = Inbox::builder().connect("sqlite://webhooks.db").await?;
//! let worker = inbox.worker(|delivery: Delivery| async move {
//!     let verified = delivery.verified();
//!     println!("{} {}", verified.event_type, verified.event_id);
//!     Ok::<(), std::io::Error>(())
//! });
//! tokio::spawn(worker.run());
//! // In the webhook route, with the raw body and the X-Webhook-Signature values:
//! # let (header, body) = ("", &b""[..]);
//! let reply = gate
//!     .admit_into(&inbox, [header.as_bytes()], UnsignedHeaders::default(), body)
//!     .await;
//! assert!([200, 202].contains(&reply.status()));
//! # Ok(()) }
//! ```

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!(
    "mapping-webhooks-inbox needs the `sqlite` feature, the `postgres` feature, or both"
);

mod db;
mod delivery;
mod error;
mod group;
mod inbox;
#[cfg(feature = "metrics")]
mod metrics;
mod observe;
mod operate;
mod wake;
mod worker;

pub use db::{Db, DbOptions};
pub use delivery::{Delivery, DeliveryInfo, State, StoredDelivery, UnknownState};
pub use error::InboxError;
pub use inbox::{Inbox, InboxBuilder, LeaseClock};
#[cfg(feature = "metrics")]
pub use metrics::WorkerMetrics;
pub use observe::{Attempt, AttemptResult, WorkerObserver};
pub use operate::DEFAULT_RETENTION;
#[cfg(feature = "postgres")]
pub use worker::PgTransaction;
pub use worker::{
    DEFAULT_CONCURRENCY, DEFAULT_HANDLER_TIMEOUT, DEFAULT_LEASE, DEFAULT_MAX_ATTEMPTS,
    STATES_EVERY, Worker,
};

/// The core's observer for the accept path, re-exported (feature `metrics`).
#[cfg(feature = "metrics")]
pub use mapping_webhooks::MetricsObserver;
pub use mapping_webhooks::{
    Envelope, Event, Gate, GateBuilder, MatchedSecret, Observer, Outcome, Reply, Secret, Secrets,
    Sink, UnsignedHeaders, Verified, VerifyError,
};
