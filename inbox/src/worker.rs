//! The worker: claims due deliveries under a lease, runs the handler, records the outcome.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mapping_webhooks::Envelope;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::db::on_pool;
use crate::operate::DEFAULT_RETENTION;
use crate::{Attempt, AttemptResult, Delivery, Inbox, InboxError, State, WorkerObserver};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The transaction a [`transactional_worker`](Inbox::transactional_worker)'s handler
/// writes in; the delivery is marked done in it.
#[cfg(feature = "postgres")]
pub type PgTransaction = sqlx::Transaction<'static, sqlx::Postgres>;

type PlainHandler = Arc<dyn Fn(Delivery) -> BoxFuture<Result<(), String>> + Send + Sync>;
#[cfg(feature = "postgres")]
type TxHandler =
    Arc<dyn Fn(Delivery, PgTransaction) -> BoxFuture<Result<PgTransaction, String>> + Send + Sync>;

#[derive(Clone)]
enum Job {
    Plain(PlainHandler),
    #[cfg(feature = "postgres")]
    Transactional(TxHandler),
}

/// Default number of handlers running at once.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// Default lease: how long a claimed delivery is held before another worker may claim it.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(5 * 60);
/// Default time a handler may run before it is stopped and retried after its lease.
pub const DEFAULT_HANDLER_TIMEOUT: Duration = Duration::from_secs(2 * 60);
/// Default number of attempts before a delivery is dead.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;

/// The most finished deliveries one acknowledgement marks done (one statement on
/// Postgres, one transaction on SQLite).
const MAX_ACK_BATCH: usize = 256;
/// How many batches of "done" marks are written at once (on SQLite they take turns on
/// the write lock).
const ACK_WRITES: usize = 2;
/// How many deliveries may wait for their acknowledgement, per handler slot: a handler
/// that finished gives its slot back at once, and its "done" mark is written with the
/// next batch; past this many waiting, the worker claims nothing new until they land.
const ACKS_PER_SLOT: usize = 4;
/// The most claims one worker runs at once, each for at most half the slots.
const MAX_CLAIMS_IN_FLIGHT: usize = 2;
/// When the worker would claim fewer than half the slots while other handlers run, it
/// first waits this long (once) for more of them to return, so one claim fills many.
const CLAIM_GATHER: Duration = Duration::from_millis(1);

/// The longest `last_error` kept, in bytes.
const MAX_ERROR_LEN: usize = 2000;
/// How often the worker prunes done deliveries past the retention.
const PRUNE_EVERY: Duration = Duration::from_secs(60 * 60);
/// How often a running worker with a [`WorkerObserver`] counts the deliveries by state
/// (one `GROUP BY state` query over the namespace's rows) for
/// [`WorkerObserver::states`].
pub const STATES_EVERY: Duration = Duration::from_secs(15);

/// Processes an [`Inbox`]'s deliveries in the background; made by [`Inbox::worker`] or
/// `Inbox::transactional_worker` (feature `postgres`), configured, then [`run`](Self::run) (or
/// [`run_until`](Self::run_until) a shutdown signal).
///
/// Each due delivery is claimed under a lease (on Postgres with
/// `FOR UPDATE SKIP LOCKED`, so any number of workers on any number of replicas share
/// the work; on SQLite run workers in one process), and its handler runs with the
/// envelope and the attempt number:
/// - `Ok(())`: the delivery is done;
/// - `Err(e)`: it is retried after an exponential backoff with jitter, and dead after
///   [`max_attempts`](Self::max_attempts), with `e` kept as its last error;
/// - a panic, or running past [`handler_timeout`](Self::handler_timeout): the handler is
///   stopped and the delivery retried once its lease has run out;
/// - the worker dies (crash, kill, an aborted task): the delivery is claimed again when
///   its lease runs out.
///
/// Concurrency is bounded. On shutdown the worker stops claiming, lets running handlers
/// finish for up to [`shutdown_timeout`](Self::shutdown_timeout), then stops the rest and
/// releases their deliveries for the next worker.
#[must_use]
pub struct Worker {
    inbox: Inbox,
    job: Job,
    concurrency: usize,
    lease: Duration,
    handler_timeout: Duration,
    max_attempts: u32,
    backoff_initial: Duration,
    backoff_max: Duration,
    jitter: f64,
    poll_interval: Duration,
    shutdown_timeout: Duration,
    retention: Option<Duration>,
    observer: Option<Arc<dyn WorkerObserver>>,
}

impl Inbox {
    /// A worker running `handler` for each due delivery.
    ///
    /// ```no_run
    /// # async fn run(inbox: mapping_webhooks_inbox::Inbox) -> Result<(), mapping_webhooks_inbox::InboxError> {
    /// # let shutdown = std::future::ready(()); // for example `tokio::signal::ctrl_c()`
    /// inbox
    ///     .worker(|delivery: mapping_webhooks_inbox::Delivery| async move {
    ///         println!("{} (attempt {})", delivery.envelope.event_id, delivery.attempt);
    ///         Ok::<(), std::io::Error>(())
    ///     })
    ///     .concurrency(4)
    ///     .run_until(shutdown)
    ///     .await
    /// # }
    /// ```
    pub fn worker<H, Fut, E>(&self, handler: H) -> Worker
    where
        H: Fn(Delivery) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        let job = Job::Plain(Arc::new(move |delivery| {
            let fut = handler(delivery);
            Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
        }));
        Worker::new(self.clone(), job)
    }

    /// A worker whose handler writes in the transaction that marks the delivery done
    /// (Postgres only): the handler's writes and the record commit together or not at
    /// all, so its effect happens exactly once even when a worker dies mid-handler.
    ///
    /// The handler gets the transaction and hands it back; dropping it, or returning an
    /// error, rolls its writes back and the delivery is retried. While it runs, the
    /// delivery's row is locked, so no other worker claims it even past its lease. Each
    /// running handler holds a pooled connection for its whole run, and the running
    /// worker one more (its `LISTEN`): keep the [`concurrency`](Worker::concurrency)
    /// below the pool's size less one (10 by default).
    ///
    /// # Errors
    ///
    /// [`InboxError::Config`] when the inbox is on SQLite.
    #[cfg(feature = "postgres")]
    pub fn transactional_worker<H, Fut, E>(&self, handler: H) -> Result<Worker, InboxError>
    where
        H: Fn(Delivery, PgTransaction) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<PgTransaction, E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        #[cfg(feature = "sqlite")]
        if matches!(self.shared.db, crate::Db::Sqlite(_)) {
            return Err(InboxError::config(
                "the transactional worker needs Postgres; this inbox is on SQLite",
            ));
        }
        let job = Job::Transactional(Arc::new(move |delivery, tx| {
            let fut = handler(delivery, tx);
            Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
        }));
        Ok(Worker::new(self.clone(), job))
    }
}

impl Worker {
    fn new(inbox: Inbox, job: Job) -> Self {
        Self {
            inbox,
            job,
            concurrency: DEFAULT_CONCURRENCY,
            lease: DEFAULT_LEASE,
            handler_timeout: DEFAULT_HANDLER_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff_initial: Duration::from_secs(30),
            backoff_max: Duration::from_secs(60 * 60),
            jitter: 0.2,
            poll_interval: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(30),
            retention: Some(DEFAULT_RETENTION),
            observer: None,
        }
    }

    /// Reports each attempt's result and duration, each done delivery's lag since it
    /// was accepted, and (while [running](Self::run)) the deliveries by state every
    /// [`STATES_EVERY`], to `observer` (see [`WorkerObserver`]; with the `metrics`
    /// feature, `WorkerMetrics`). Without one, the worker reads
    /// no extra clock and counts nothing.
    pub fn observer(mut self, observer: impl WorkerObserver) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// How many handlers run at once (default 8). One claim takes at most half this
    /// many deliveries, and a second claim may run while the first one's come back. A
    /// handler's slot is given back when it returns; its "done" mark is written with
    /// others in one commit, and the worker claims no more while four times this many
    /// deliveries wait for theirs.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// How long a claim holds a delivery (default 5 min): after it, a delivery whose
    /// worker died is claimed again. Must exceed the handler timeout.
    ///
    /// A worker never claims a delivery that a worker of the same [`Inbox`] (or a clone
    /// of it) still runs, even when the clock steps forward past the lease. Across
    /// processes, leases are timed by the clock
    /// [`InboxBuilder::lease_clock`](crate::InboxBuilder::lease_clock) names: by
    /// default the database server's on Postgres, so a replica whose clock runs ahead
    /// cannot claim a delivery still running elsewhere. The transactional worker's row
    /// lock holds the delivery whatever the clocks say.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long a handler may run (default [`DEFAULT_HANDLER_TIMEOUT`], 2 min); then it
    /// is stopped and the delivery retried after its lease. It must be shorter than the
    /// [`lease`](Self::lease) (checked when the worker starts), so a hung handler is
    /// stopped before its lease ends and another worker may claim the delivery. It is
    /// measured on the monotonic clock; a hanging handler holds one of the
    /// [`concurrency`](Self::concurrency) slots for this long on each attempt, and its
    /// retries queue behind new deliveries (see [`run_until`](Self::run_until)).
    pub fn handler_timeout(mut self, timeout: Duration) -> Self {
        self.handler_timeout = timeout;
        self
    }

    /// Attempts before a delivery is dead (default 10).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// The wait before retry `n` is `initial · 2^(n-1)`, at most `max` (default 30 s
    /// and 1 h: 30 s, 1 min, 2 min, … then hourly), less the jitter.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max;
        self
    }

    /// Each wait is shortened by a random fraction of up to `jitter` (0 to 1, default
    /// 0.2), so retries of events that failed together spread out.
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// How often to look for due deliveries when nothing wakes the worker (default 1 s).
    /// A delivery accepted by this process wakes it at once; on Postgres, so does one
    /// accepted by any process (the worker `LISTEN`s for the inbox's `NOTIFY`, on one
    /// of the pool's connections while it runs). Polling is the fallback: for retries
    /// falling due, and for a notification lost while that connection was down.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How long running handlers may finish after the shutdown signal (default 30 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Done deliveries older than this are deleted hourly (default 30 days); `None`
    /// keeps them.
    pub fn retention(mut self, retention: Option<Duration>) -> Self {
        self.retention = retention;
        self
    }

    fn check(&self) -> Result<(), InboxError> {
        if self.concurrency == 0 {
            return Err(InboxError::config(
                "the worker's concurrency must be at least 1",
            ));
        }
        if self.max_attempts == 0 {
            return Err(InboxError::config("max_attempts must be at least 1"));
        }
        if self.lease <= self.handler_timeout {
            return Err(InboxError::config(format!(
                "the lease ({:?}) must be longer than the handler timeout ({:?}), or a slow handler's delivery would be claimed twice",
                self.lease, self.handler_timeout
            )));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(InboxError::config("the jitter must be between 0 and 1"));
        }
        Ok(())
    }

    /// Claims what is due now (up to the concurrency), runs it, and returns how many
    /// deliveries it ran; for tests and one-shot jobs.
    ///
    /// # Errors
    ///
    /// [`InboxError::Config`] for invalid settings, [`InboxError::Database`] when the
    /// claim failed.
    pub async fn run_once(&self) -> Result<usize, InboxError> {
        self.check()?;
        let (acks, acker) = Acker::start(&self.inbox);
        let settings = Arc::new(self.settings(acks));
        let batch = claim(&self.inbox, self.concurrency, self.lease).await?;
        let n = batch.len();
        let mut tasks = JoinSet::new();
        for claimed in batch {
            tasks.spawn(process(Arc::clone(&settings), claimed, None));
        }
        while tasks.join_next().await.is_some() {}
        // Every acknowledgement is written before this returns.
        drop(settings);
        acker.finish().await;
        Ok(n)
    }

    /// Runs until the task is dropped.
    ///
    /// # Errors
    ///
    /// [`InboxError::Config`] for invalid settings.
    pub async fn run(self) -> Result<(), InboxError> {
        self.run_until(std::future::pending()).await
    }

    /// Runs until `shutdown` completes, then shuts down gracefully: stops claiming,
    /// waits up to the shutdown timeout for running handlers, stops the rest and
    /// releases their deliveries.
    ///
    /// Each claim takes new deliveries (not attempted yet) first, then retries in the
    /// order they fell due: retries of hanging or failing handlers cannot keep new
    /// deliveries waiting for more than one handler timeout.
    ///
    /// Database errors while claiming are logged and retried at the poll interval.
    ///
    /// # Errors
    ///
    /// [`InboxError::Config`] for invalid settings.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<(), InboxError> {
        self.check()?;
        let mut shutdown = pin!(shutdown);
        let (acks, acker) = Acker::start(&self.inbox);
        let settings = Arc::new(self.settings(acks));
        // A handler slot is given back as soon as its handler returns; its
        // acknowledgement is written with the next batch, while the next claim runs.
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let most_tasks = self.concurrency.saturating_mul(ACKS_PER_SLOT);
        // Postgres: a notification per commit of a new delivery, from any process.
        let _listener = self.inbox.listen();
        let held: Held = Arc::default();
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut next_prune = Instant::now();
        let mut next_states = Instant::now();
        let mut gathered = false;
        // The claims running (at most MAX_CLAIMS_IN_FLIGHT), each holding the slots of
        // the rows it asked for; `claiming` lists each one's task and how many it asked.
        let mut claims: JoinSet<(Result<Vec<Claimed>, InboxError>, OwnedSemaphorePermit)> =
            JoinSet::new();
        let mut claiming: Vec<(tokio::task::Id, usize)> = Vec::new();
        // After a failed claim, the next waits until then.
        let mut retry_at: Option<Instant> = None;
        // The last claim found fewer due rows than it asked for.
        let mut drained = false;
        loop {
            while tasks.try_join_next().is_some() {}
            if let Some(observer) = &self.observer
                && Instant::now() >= next_states
            {
                next_states = Instant::now() + STATES_EVERY;
                match self.inbox.counts().await {
                    Ok(mut counts) => {
                        for state in State::ALL {
                            counts.entry(state).or_insert(0);
                        }
                        observer.states(&self.inbox.shared.namespace, &counts);
                    }
                    Err(error) => tracing::debug!(%error, "could not count deliveries by state"),
                }
            }
            if let Some(retention) = self.retention
                && Instant::now() >= next_prune
            {
                next_prune = Instant::now() + PRUNE_EVERY;
                match self.inbox.prune(retention).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(n, "pruned done deliveries past their retention"),
                    Err(error) => tracing::warn!(%error, "could not prune done deliveries"),
                }
            }
            // About to claim a few slots while other handlers still run: give them a
            // moment (at most CLAIM_GATHER, once per claim) to return too, so one claim
            // takes many.
            if !gathered
                && !drained
                && claims.is_empty()
                && (1..self.concurrency / 2).contains(&slots.available_permits())
                && slots.available_permits() + 1 < self.concurrency
            {
                tokio::time::sleep(CLAIM_GATHER).await;
                gathered = true;
            }
            // The slots free, less what the backlog of deliveries waiting for their
            // "done" marks (and the claims running) leaves room for. When that backlog
            // is what limits the claim, wait for room for at least half the free slots:
            // acknowledgements land a batch at a time, and claiming the first
            // delivery's room alone would spend a whole claim on one row.
            let available = slots.available_permits();
            let asked: usize = claiming.iter().map(|(_, n)| n).sum();
            let room = most_tasks.saturating_sub(tasks.len() + asked);
            let mut free = if room >= available || room >= available.div_ceil(2) {
                available.min(room)
            } else {
                0
            };
            // A claim takes at most half the slots, and a second one starts while the
            // first runs only for a batch that size: the database takes the next batch
            // while the first one's rows travel back and their handlers start.
            let half = self.concurrency.div_ceil(2);
            free = free.min(half);
            if !claims.is_empty() && (claims.len() >= MAX_CLAIMS_IN_FLIGHT || free < half) {
                free = 0;
            }
            if retry_at.is_some_and(|at| Instant::now() >= at) {
                retry_at = None;
            }
            if free > 0 && !drained && retry_at.is_none() {
                gathered = false;
                let Ok(permits) = Arc::clone(&slots).try_acquire_many_owned(
                    u32::try_from(free).expect("at most the concurrency's permits"),
                ) else {
                    unreachable!("only this loop takes slots");
                };
                let (inbox, lease) = (self.inbox.clone(), self.lease);
                let task = claims.spawn(async move { (claim(&inbox, free, lease).await, permits) });
                claiming.push((task.id(), free));
                continue;
            }
            let wait = retry_at.unwrap_or_else(|| Instant::now() + self.poll_interval);
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(claimed) = claims.join_next_with_id(), if !claims.is_empty() => {
                    let id = match &claimed {
                        Ok((id, _)) => *id,
                        Err(error) => error.id(),
                    };
                    claiming.retain(|(task, _)| *task != id);
                    // A claim's task that panicked gave its slots back as it unwound;
                    // whatever it claimed is claimed again after its lease.
                    let (result, mut permits) = match claimed {
                        Ok((_, claimed)) => claimed,
                        Err(error) => {
                            tracing::error!(%error, "an inbox claim stopped; trying again");
                            retry_at = Some(Instant::now() + self.poll_interval);
                            continue;
                        }
                    };
                    match result {
                        Ok(batch) => {
                            for claimed in batch {
                                let slot = permits.split(1).expect("a permit per row asked for");
                                held.lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .insert(claimed.id, claimed.lease);
                                let (settings, held) = (Arc::clone(&settings), Arc::clone(&held));
                                tasks.spawn(async move {
                                    let id = claimed.id;
                                    process(settings, claimed, Some(slot)).await;
                                    held.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                                });
                            }
                            // Fewer than asked: nothing more is due; claim again when
                            // woken. Otherwise claim again at once, if there is room.
                            drained = permits.num_permits() > 0;
                        }
                        Err(error) => {
                            tracing::warn!(%error, "inbox worker could not claim deliveries; trying again");
                            retry_at = Some(Instant::now() + self.poll_interval);
                        }
                    }
                }
                () = settings.freed.notified() => drained = false,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => drained = false,
                () = self.inbox.shared.accepted.notified() => drained = false,
                () = tokio::time::sleep_until(wait) => drained = false,
            }
        }
        tracing::info!(running = tasks.len(), "inbox worker shutting down");
        // A claim still running finishes, and what it took goes back at once, never run.
        while let Some(claimed) = claims.join_next().await {
            let Ok((Ok(batch), _permits)) = claimed else {
                continue;
            };
            for claimed in batch {
                if let Err(error) = release(&self.inbox, claimed.id, claimed.lease).await {
                    tracing::error!(
                        %error,
                        id = claimed.id,
                        "could not release a delivery claimed at shutdown; it is claimed again after its lease"
                    );
                }
            }
        }
        let deadline = tokio::time::sleep(self.shutdown_timeout);
        let mut deadline = pin!(deadline);
        loop {
            tokio::select! {
                next = tasks.join_next() => if next.is_none() { break },
                () = &mut deadline => break,
            }
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        // The acknowledgements already asked for are written before anything is
        // released: a handler that finished is never run again for want of its mark.
        drop(settings);
        acker.finish().await;
        let left: Vec<(i64, i64)> = held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        for (id, lease) in left {
            match release(&self.inbox, id, lease).await {
                Ok(()) => tracing::warn!(id, "handler stopped at shutdown; delivery released"),
                Err(error) => tracing::error!(
                    %error,
                    id,
                    "could not release a delivery at shutdown; it is claimed again after its lease"
                ),
            }
        }
        Ok(())
    }

    fn settings(&self, acks: mpsc::UnboundedSender<Ack>) -> Settings {
        Settings {
            inbox: self.inbox.clone(),
            acks,
            freed: Notify::new(),
            job: self.job.clone(),
            handler_timeout: self.handler_timeout,
            max_attempts: self.max_attempts,
            backoff_initial: self.backoff_initial,
            backoff_max: self.backoff_max,
            jitter: self.jitter,
            observer: self.observer.clone(),
        }
    }
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("inbox", &self.inbox)
            .field("handler", &format_args!("<fn>"))
            .field("concurrency", &self.concurrency)
            .field("lease", &self.lease)
            .field("handler_timeout", &self.handler_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("backoff_initial", &self.backoff_initial)
            .field("backoff_max", &self.backoff_max)
            .field("jitter", &self.jitter)
            .field("poll_interval", &self.poll_interval)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("retention", &self.retention)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

/// The deliveries this worker holds, by id, with their lease tokens.
type Held = Arc<Mutex<HashMap<i64, i64>>>;

struct Settings {
    inbox: Inbox,
    /// Where a finished delivery's "done" mark is asked for (see [`Acker`]).
    acks: mpsc::UnboundedSender<Ack>,
    /// Woken when a handler gives its slot back.
    freed: Notify,
    job: Job,
    handler_timeout: Duration,
    max_attempts: u32,
    backoff_initial: Duration,
    backoff_max: Duration,
    jitter: f64,
    observer: Option<Arc<dyn WorkerObserver>>,
}

impl Settings {
    /// The wait before the retry that follows attempt `attempt` (1-based).
    fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        let full = self
            .backoff_initial
            .saturating_mul(1 << doublings)
            .min(self.backoff_max);
        full.mul_f64(1.0 - self.jitter * unit_random())
    }
}

/// Keeps one claim's lease token listed as held by this process (see `Shared::held`)
/// while it lives: the claim holds one while its statement runs, and each delivery it
/// took holds one until its outcome is recorded (or its task is stopped).
struct HeldToken {
    inbox: Inbox,
    token: i64,
}

impl HeldToken {
    /// Lists a new claim's token, before its statement runs.
    fn list(inbox: &Inbox, token: i64) -> Self {
        *inbox
            .shared
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(token)
            .or_insert(0) += 1;
        Self {
            inbox: inbox.clone(),
            token,
        }
    }
}

impl Clone for HeldToken {
    fn clone(&self) -> Self {
        Self::list(&self.inbox, self.token)
    }
}

impl Drop for HeldToken {
    fn drop(&mut self) {
        let mut held = self
            .inbox
            .shared
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&self.token) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.token);
            }
        }
    }
}

/// A claimed delivery, as read back by the claim.
struct Claimed {
    /// Held until the attempt is recorded (or stopped).
    _held: HeldToken,
    id: i64,
    lease: i64,
    lease_until: i64,
    attempt: u32,
    event_id: String,
    scheme: mapping_webhooks::scheme::Scheme,
    event_type: String,
    delivery_id: String,
    secret: String,
    signed_at: u64,
    received_at_ms: i64,
    tenant: String,
    body: Vec<u8>,
}

/// The claim's order: new deliveries first (`false` sorts before `true`, 0 before 1),
/// then by due time. The claim index (migration 0003 / 0004) holds the due rows of a
/// namespace in this order, so a claim reads them in it and stops at its limit.
const CLAIM_ORDER: &str = "(attempts > 0), due_at, id";

const CLAIMED_COLUMNS: &str = "id, tenant, event_id, scheme, event_type, delivery_id, secret, signed_at, received_at, \
     attempts, due_at, body";

/// SQLite's claim. The tokens held here come as one JSON array (one statement text for
/// every claim); only a running row can carry one, so a pending row skips the test.
#[cfg(feature = "sqlite")]
static SQLITE_CLAIM: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "UPDATE mapping_webhooks_inbox \
         SET state = 'running', attempts = attempts + 1, due_at = $1, lease = $2 \
         WHERE id IN (SELECT id FROM mapping_webhooks_inbox \
           WHERE namespace = $3 AND state IN ('pending', 'running') AND due_at <= $4 \
           AND (state = 'pending' OR lease NOT IN (SELECT value FROM json_each($6))) \
           ORDER BY {CLAIM_ORDER} LIMIT $5) \
         RETURNING {CLAIMED_COLUMNS}"
    )
});

/// Postgres's claim. SKIP LOCKED: concurrent workers each take different rows, without
/// waiting. The lease's clock is read in the same statement (`now`, materialized once:
/// `clock_timestamp()` is volatile), not in a round trip of its own.
///
/// The claim commits without waiting for its WAL flush (`synchronous_commit` off for
/// this statement's transaction only): a claim is a lease, not data. If the server
/// crashes before the flush, the claim is undone (the row due as before, its attempt not
/// counted), and the handler that ran meanwhile finds its lease gone when it is marked
/// done: it runs again, as after any crash. The "done" marks and every other write keep
/// the server's durability.
///
/// The tokens held here come as one array; only a running row can carry one, so a
/// pending row skips the comparison (a backlog's claim otherwise spent more on it than
/// on its update).
#[cfg(feature = "postgres")]
static POSTGRES_CLAIM: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH now AS (SELECT COALESCE($4::BIGINT, \
           (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT) AS ms, \
           set_config('synchronous_commit', 'off', true) AS lazy), \
         due AS (SELECT id FROM mapping_webhooks_inbox \
           WHERE namespace = $3 AND state IN ('pending', 'running') \
           AND due_at <= (SELECT ms FROM now) \
           AND (state = 'pending' OR lease <> ALL($6::BIGINT[])) \
           ORDER BY {CLAIM_ORDER} LIMIT $5 FOR UPDATE SKIP LOCKED) \
         UPDATE mapping_webhooks_inbox AS t \
         SET state = 'running', attempts = t.attempts + 1, \
           due_at = (SELECT ms FROM now) + $1, lease = $2 \
         FROM due WHERE t.id = due.id \
         RETURNING {}",
        CLAIMED_COLUMNS
            .split(", ")
            .map(|c| format!("t.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
});

/// Claims up to `n` due deliveries: pending ones whose time has come, and running ones
/// whose lease ran out (their worker died or overran), but never one a worker of this
/// process still holds (a wall clock stepped forward past its lease does not start a
/// second run of it).
///
/// New deliveries (no attempt yet) come first, then retries by due time: a backlog of
/// retries (hanging or failing handlers) cannot keep new deliveries waiting.
async fn claim(inbox: &Inbox, n: usize, lease: Duration) -> Result<Vec<Claimed>, InboxError> {
    let token = random_i64();
    // Listed before the statement runs: a claim running meanwhile skips this one's rows
    // even if it reads them after this one committed.
    let listed = HeldToken::list(inbox, token);
    let held: Vec<i64> = inbox
        .shared
        .held
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .keys()
        .copied()
        .collect();
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let limit = i64::try_from(n).unwrap_or(i64::MAX);
    let ns = &inbox.shared.namespace;
    macro_rules! read {
        ($rows:expr) => {{
            use sqlx::Row as _;
            let mut out = Vec::with_capacity($rows.len());
            for row in &$rows {
                out.push(Claimed {
                    _held: listed.clone(),
                    id: row.try_get("id")?,
                    lease: token,
                    lease_until: row.try_get("due_at")?,
                    attempt: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
                    event_id: row.try_get("event_id")?,
                    scheme: crate::delivery::scheme_from_column(row.try_get("scheme")?)?,
                    event_type: row.try_get("event_type")?,
                    delivery_id: row.try_get("delivery_id")?,
                    secret: row.try_get("secret")?,
                    signed_at: u64::try_from(row.try_get::<i64, _>("signed_at")?).unwrap_or(0),
                    received_at_ms: row.try_get("received_at")?,
                    tenant: row.try_get("tenant")?,
                    body: row.try_get("body")?,
                });
            }
            out
        }};
    }
    let claimed = match &inbox.shared.db {
        #[cfg(feature = "sqlite")]
        crate::Db::Sqlite(pool) => {
            // SQLite runs one write at a time: the select and update are one step.
            let now = inbox.now_millis();
            let lease_until = now.saturating_add(lease_ms);
            let held = serde_json::to_string(&held).expect("a list of integers");
            let rows = sqlx::query(&SQLITE_CLAIM)
                .bind(lease_until)
                .bind(token)
                .bind(ns)
                .bind(now)
                .bind(limit)
                .bind(held)
                .fetch_all(pool)
                .await?;
            read!(rows)
        }
        #[cfg(feature = "postgres")]
        crate::Db::Postgres(pool) => {
            let now = match inbox.shared.lease_clock {
                crate::LeaseClock::Database => None,
                crate::LeaseClock::Inbox => Some(inbox.now_millis()),
            };
            let query = sqlx::query(&POSTGRES_CLAIM)
                .bind(lease_ms)
                .bind(token)
                .bind(ns)
                .bind(now)
                .bind(limit)
                .bind(&held);
            let rows = query.fetch_all(pool).await?;
            read!(rows)
        }
    };
    Ok(claimed)
}

/// How one attempt ended.
enum Outcome {
    Done,
    /// Retry after the backoff.
    Failed(String),
    /// Retry no earlier than the lease's end (a panic, a deadline).
    Stopped(AttemptResult, String),
    /// The stored bytes can never be processed.
    Unprocessable(String),
    /// Another worker holds the delivery now; record nothing.
    #[cfg(feature = "postgres")]
    LeaseLost,
    /// The outcome was recorded already (the transactional variant's commit).
    #[cfg(feature = "postgres")]
    Recorded,
}

/// A claimed delivery's envelope: Mapping.Travel's parsed from the stored body; for
/// another scheme, made from what was verified and stored (see [`Delivery::envelope`]).
fn envelope_of(claimed: &Claimed) -> Result<Envelope, serde_json::Error> {
    if claimed.scheme == mapping_webhooks::scheme::Scheme::Mapping {
        return serde_json::from_slice(&claimed.body);
    }
    let data = serde_json::from_slice(&claimed.body).unwrap_or(serde_json::Value::Null);
    Ok(Envelope::new(
        claimed.delivery_id.clone(),
        claimed.event_id.clone(),
        claimed.event_type.clone(),
        data,
    ))
}

/// Runs one claimed delivery and records how it went. The handler's `slot` is given
/// back as soon as the handler returns, before its outcome is recorded.
async fn process(settings: Arc<Settings>, claimed: Claimed, slot: Option<OwnedSemaphorePermit>) {
    let started = settings.observer.as_ref().map(|_| Instant::now());
    let (id, lease, attempt) = (claimed.id, claimed.lease, claimed.attempt);
    let received_at_ms = claimed.received_at_ms;
    let lease_until = claimed.lease_until;
    let outcome = if attempt > settings.max_attempts {
        Outcome::Unprocessable(format!(
            "attempt {} of {} ran out of its lease (the worker died or the handler overran)",
            attempt - 1,
            settings.max_attempts
        ))
    } else {
        match envelope_of(&claimed) {
            Err(e) => Outcome::Unprocessable(format!("the stored body is not an envelope: {e}")),
            Ok(envelope) => {
                let delivery = Delivery {
                    id,
                    attempt,
                    scheme: claimed.scheme,
                    envelope,
                    secret: claimed.secret,
                    signed_at: claimed.signed_at,
                    received_at_ms: claimed.received_at_ms,
                    tenant: crate::delivery::tenant_from_column(claimed.tenant),
                    body: claimed.body.into(),
                };
                run_handler(&settings, delivery, lease).await
            }
        }
    };
    if let Some(slot) = slot {
        drop(slot);
        settings.freed.notify_one();
    }
    let inbox = &settings.inbox;
    // What the attempt's result is, once recorded.
    let mut result = AttemptResult::Done;
    let recorded = match &outcome {
        #[cfg(feature = "postgres")]
        Outcome::Recorded => Ok(true),
        #[cfg(feature = "postgres")]
        Outcome::LeaseLost => {
            result = AttemptResult::Unrecorded;
            Ok(true)
        }
        // Only after the handler's success: marked done with the next batch.
        Outcome::Done => Acker::mark_done(&settings.acks, id, lease).await,
        Outcome::Failed(error) | Outcome::Stopped(_, error) | Outcome::Unprocessable(error) => {
            let now = inbox.now_millis();
            let dead =
                attempt >= settings.max_attempts || matches!(outcome, Outcome::Unprocessable(_));
            result = match &outcome {
                _ if dead => AttemptResult::Dead,
                Outcome::Stopped(how, _) => *how,
                _ => AttemptResult::Retry,
            };
            let due = match outcome {
                Outcome::Stopped(..) => lease_until.max(now),
                _ => now.saturating_add(
                    i64::try_from(settings.backoff(attempt).as_millis()).unwrap_or(i64::MAX),
                ),
            };
            if dead {
                tracing::error!(
                    id,
                    event_id = claimed.event_id,
                    attempt,
                    error,
                    "webhook delivery is dead"
                );
            } else {
                tracing::warn!(
                    id,
                    event_id = claimed.event_id,
                    attempt,
                    error,
                    "webhook handler failed; retrying later"
                );
            }
            mark_failed(inbox, id, lease, dead, due, error)
                .await
                .map_err(|e| e.to_string())
        }
    };
    if let (Some(observer), Some(started)) = (&settings.observer, started) {
        if !matches!(recorded, Ok(true)) {
            result = AttemptResult::Unrecorded;
        }
        observer.attempt(Attempt {
            result,
            duration: started.elapsed(),
            number: attempt,
        });
        if result == AttemptResult::Done {
            let lag = inbox.now_millis().saturating_sub(received_at_ms);
            observer.processed(Duration::from_millis(u64::try_from(lag).unwrap_or(0)));
        }
    }
    match recorded {
        Ok(true) => {}
        Ok(false) => tracing::warn!(
            id,
            event_id = claimed.event_id,
            "handler finished after its lease ran out; another worker may have run it again"
        ),
        Err(error) => tracing::error!(
            %error,
            id,
            event_id = claimed.event_id,
            "could not record the handler's outcome; the delivery is claimed again after its lease"
        ),
    }
}

/// Aborts a spawned handler when dropped: a worker stopped mid-handler stops it too.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
async fn run_handler(settings: &Settings, delivery: Delivery, lease: i64) -> Outcome {
    let timeout = settings.handler_timeout;
    let stopped = |e: tokio::task::JoinError| {
        let why = match e.try_into_panic() {
            Ok(panic) => panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string payload".into()),
            Err(_) => "it was cancelled".into(),
        };
        Outcome::Stopped(
            AttemptResult::Panicked,
            format!("the handler panicked: {why}"),
        )
    };
    let overran = || {
        Outcome::Stopped(
            AttemptResult::TimedOut,
            format!("the handler ran past its {timeout:?} deadline"),
        )
    };
    match &settings.job {
        Job::Plain(handler) => {
            let mut task = AbortOnDrop(tokio::spawn(handler(delivery)));
            match tokio::time::timeout(timeout, &mut task.0).await {
                Ok(Ok(Ok(()))) => Outcome::Done,
                Ok(Ok(Err(error))) => Outcome::Failed(error),
                Ok(Err(join)) => stopped(join),
                Err(_elapsed) => overran(),
            }
        }
        #[cfg(feature = "postgres")]
        Job::Transactional(handler) => {
            // Irrefutable in a Postgres-only build.
            #[allow(irrefutable_let_patterns)]
            let crate::Db::Postgres(pool) = &settings.inbox.shared.db else {
                return Outcome::Unprocessable("the transactional worker needs Postgres".into());
            };
            let id = delivery.id;
            let begun = async {
                let mut tx = pool.begin().await?;
                // Lock the row for the whole handler: no other worker claims it, even past
                // its lease, until this transaction ends.
                let ours: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM mapping_webhooks_inbox \
                     WHERE id = $1 AND lease = $2 AND state = 'running' FOR UPDATE",
                )
                .bind(id)
                .bind(lease)
                .fetch_optional(&mut *tx)
                .await?;
                Ok::<_, sqlx::Error>(ours.map(|_| tx))
            };
            let tx = match begun.await {
                Ok(Some(tx)) => tx,
                Ok(None) => return Outcome::LeaseLost,
                Err(e) => return Outcome::Failed(format!("could not begin the transaction: {e}")),
            };
            let mut task = AbortOnDrop(tokio::spawn(handler(delivery, tx)));
            let mut tx = match tokio::time::timeout(timeout, &mut task.0).await {
                Ok(Ok(Ok(tx))) => tx,
                Ok(Ok(Err(error))) => return Outcome::Failed(error),
                Ok(Err(join)) => return stopped(join),
                Err(_elapsed) => return overran(),
            };
            let finished = async {
                let done = sqlx::query(MARK_DONE)
                    .bind(settings.inbox.now_millis())
                    .bind(id)
                    .bind(lease)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                Ok::<_, sqlx::Error>(done)
            };
            match finished.await {
                Ok(1) => Outcome::Recorded,
                Ok(_) => Outcome::LeaseLost,
                Err(e) => {
                    Outcome::Failed(format!("could not commit the handler's transaction: {e}"))
                }
            }
        }
    }
}

const MARK_DONE: &str = "UPDATE mapping_webhooks_inbox \
     SET state = 'done', finished_at = $1, lease = NULL, last_error = NULL \
     WHERE id = $2 AND lease = $3 AND state = 'running'";

/// A finished delivery's "done" mark, asked of the [`Acker`]; the answer is whether
/// this claim still held it (`Ok(false)`: its lease ran out and another worker may run
/// it again), or why the batch could not be written.
struct Ack {
    id: i64,
    lease: i64,
    reply: oneshot::Sender<Result<bool, String>>,
}

/// Writes the "done" marks of finished deliveries in batches: whatever finished while
/// the batches in flight (at most [`ACK_WRITES`]) were being written goes into the next
/// one, up to [`MAX_ACK_BATCH`], so a lone delivery waits for no timer and a busy worker
/// writes one commit per batch instead of one per delivery.
///
/// A mark is asked for only after the handler succeeded, and a handler's task waits for
/// its batch's commit before it lets the delivery go. A crash between the two leaves the
/// row `running` under its lease: it is claimed and run again once the lease runs out
/// (a re-run, never a lost delivery). A batch that fails to commit marks none of its
/// deliveries; each is run again after its lease, as a single failed mark was before.
struct Acker {
    task: JoinHandle<()>,
}

impl Acker {
    /// Starts the acknowledging task of one worker run.
    fn start(inbox: &Inbox) -> (mpsc::UnboundedSender<Ack>, Self) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Ack>();
        let inbox = inbox.clone();
        let task = tokio::spawn(async move {
            // While ACK_WRITES batches are being written, the next one gathers.
            let writing = Arc::new(Semaphore::new(ACK_WRITES));
            let mut writes = JoinSet::new();
            loop {
                let Ok(permit) = Arc::clone(&writing).acquire_owned().await else {
                    break;
                };
                let mut batch = Vec::with_capacity(MAX_ACK_BATCH);
                if rx.recv_many(&mut batch, MAX_ACK_BATCH).await == 0 {
                    break;
                }
                let inbox = inbox.clone();
                writes.spawn(async move {
                    write_acks(&inbox, batch).await;
                    drop(permit);
                });
                while writes.try_join_next().is_some() {}
            }
            while writes.join_next().await.is_some() {}
        });
        (tx, Self { task })
    }

    /// Asks for the mark and waits for its batch's commit.
    async fn mark_done(
        acks: &mpsc::UnboundedSender<Ack>,
        id: i64,
        lease: i64,
    ) -> Result<bool, String> {
        let (reply, answer) = oneshot::channel();
        acks.send(Ack { id, lease, reply })
            .map_err(|_| "the worker stopped before the delivery was marked done".to_owned())?;
        answer
            .await
            .map_err(|_| "the worker stopped before the delivery was marked done".to_owned())?
    }

    /// Waits until every mark asked for is written (all senders dropped first).
    async fn finish(self) {
        let _ = self.task.await;
    }
}

/// Writes one batch of "done" marks and answers each.
async fn write_acks(inbox: &Inbox, batch: Vec<Ack>) {
    let keys: Vec<(i64, i64)> = batch.iter().map(|a| (a.id, a.lease)).collect();
    match mark_done_many(inbox, &keys).await {
        Ok(done) => {
            for ack in batch {
                let _ = ack.reply.send(Ok(done.contains(&ack.id)));
            }
        }
        Err(error) => {
            let error = error.to_string();
            for ack in batch {
                let _ = ack.reply.send(Err(error.clone()));
            }
        }
    }
}

/// Marks the deliveries done that their claims (`(id, lease)`) still hold, in one
/// commit; returns the ids marked.
async fn mark_done_many(inbox: &Inbox, keys: &[(i64, i64)]) -> Result<HashSet<i64>, InboxError> {
    let now = inbox.now_millis();
    let done: Vec<i64> = match &inbox.shared.db {
        #[cfg(feature = "sqlite")]
        crate::Db::Sqlite(pool) => {
            // One transaction, one WAL commit; each row found by its primary key. The
            // write lock is taken at once (waiting out other writers within the busy
            // timeout).
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            let mut done = Vec::with_capacity(keys.len());
            for &(id, lease) in keys {
                let n = sqlx::query(MARK_DONE)
                    .bind(now)
                    .bind(id)
                    .bind(lease)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n == 1 {
                    done.push(id);
                }
            }
            tx.commit().await?;
            done
        }
        #[cfg(feature = "postgres")]
        crate::Db::Postgres(pool) => {
            // One statement: each id with its own claim's lease token.
            let (ids, leases): (Vec<i64>, Vec<i64>) = keys.iter().copied().unzip();
            sqlx::query_scalar(
                "UPDATE mapping_webhooks_inbox AS t \
                 SET state = 'done', finished_at = $1, lease = NULL, last_error = NULL \
                 FROM UNNEST($2::BIGINT[], $3::BIGINT[]) AS a(id, lease) \
                 WHERE t.id = a.id AND t.lease = a.lease AND t.state = 'running' \
                 RETURNING t.id",
            )
            .bind(now)
            .bind(ids)
            .bind(leases)
            .fetch_all(pool)
            .await?
        }
    };
    Ok(done.into_iter().collect())
}

/// Schedules a retry at `due`, or marks the delivery dead.
async fn mark_failed(
    inbox: &Inbox,
    id: i64,
    lease: i64,
    dead: bool,
    due: i64,
    error: &str,
) -> Result<bool, InboxError> {
    let mut error = error.to_owned();
    if error.len() > MAX_ERROR_LEN {
        let mut end = MAX_ERROR_LEN;
        while !error.is_char_boundary(end) {
            end -= 1;
        }
        error.truncate(end);
    }
    let now = inbox.now_millis();
    let (state, finished) = if dead {
        ("dead", Some(now))
    } else {
        ("pending", None)
    };
    let sql = "UPDATE mapping_webhooks_inbox \
               SET state = $1, due_at = $2, last_error = $3, finished_at = $4, lease = NULL \
               WHERE id = $5 AND lease = $6 AND state = 'running'";
    let n = on_pool!(&inbox.shared.db, pool => {
        sqlx::query(sql)
            .bind(state)
            .bind(due)
            .bind(error)
            .bind(finished)
            .bind(id)
            .bind(lease)
            .execute(pool)
            .await?
            .rows_affected()
    });
    Ok(n == 1)
}

/// Hands a delivery whose handler was stopped at shutdown back, due now, without
/// counting the attempt.
async fn release(inbox: &Inbox, id: i64, lease: i64) -> Result<(), InboxError> {
    let now = inbox.now_millis();
    let sql = "UPDATE mapping_webhooks_inbox \
               SET state = 'pending', due_at = $1, attempts = attempts - 1, lease = NULL \
               WHERE id = $2 AND lease = $3 AND state = 'running'";
    on_pool!(&inbox.shared.db, pool => {
        sqlx::query(sql).bind(now).bind(id).bind(lease).execute(pool).await?;
    });
    Ok(())
}

/// 64 random bits: `RandomState` is seeded from the OS; hashing a counter through it
/// gives distinct, unpredictable values without another dependency.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

fn random_i64() -> i64 {
    i64::from_ne_bytes(random_u64().to_ne_bytes())
}

/// A random number in `[0, 1)`.
fn unit_random() -> f64 {
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_values_differ() {
        let values: std::collections::HashSet<u64> = (0..1000).map(|_| random_u64()).collect();
        assert_eq!(values.len(), 1000);
        for _ in 0..1000 {
            let r = unit_random();
            assert!((0.0..1.0).contains(&r));
        }
    }
}
