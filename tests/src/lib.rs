//! One conformance suite, run over real HTTP against every adapter.
//!
//! Every case lives once, in [`cases`]; each takes a function that serves an app built
//! from an [`AppSpec`] on `127.0.0.1:0` and returns its [`App`] (base URL and a guard that
//! stops it). [`conformance_suite!`] turns the cases into `#[tokio::test]`s for one
//! adapter.
//!
//! # Plugging in an adapter
//!
//! Write one `async fn spawn_<name>_app(spec: AppSpec) -> App` in
//! `tests/tests/<name>.rs`, then add one line: `conformance_suite!(spawn_<name>_app);`.
//! The app must be built the way the adapter's docs tell users to, and serve:
//!
//! | route | behind the adapter | the handler extracts | it calls |
//! |---|---|---|---|
//! | `POST /hooks` | yes | the raw body (`Bytes`) and the `Verified` from the request extensions | `probe.handle(ROUTE_HOOKS, Some(verified), body)` |
//! | `POST /json` | yes | the framework's JSON extractor of `Box<serde_json::value::RawValue>`, and the `Verified` | `probe.handle(ROUTE_JSON, Some(verified), raw.get() bytes)` |
//! | `POST /typed` | yes | the adapter's typed extractor of `MappingCompleted` | `probe.handle(ROUTE_TYPED, Some(meta), serde_json::to_vec(&envelope))` |
//! | `POST /t/{tenant}` | yes, built from `AppSpec::tenants_gate` (`TenantFrom::PathSegment(1)`), only when the spec has tenants | as `/hooks` | `probe.handle(ROUTE_TENANTS, Some(verified), body)` |
//! | `POST /k/{tenant}` | as `/t/{tenant}`, plus `.tenant_key(..)`: the framework's own way to read `{tenant}` | as `/hooks` | `probe.handle(ROUTE_TENANT_KEY, Some(verified), body)` |
//! | `POST /unlayered` | **no** | the typed extractor (must refuse: 500 naming `WebhookVerify`) | `probe.handle(ROUTE_UNLAYERED, None, ..)` |
//! | `POST /any` | yes | the typed extractor of the `Event` enum | `probe.handle(ROUTE_ANY, Some(meta), serde_json::to_vec(&envelope))` |
//! | `POST /events` | yes | the adapter's `EventRouter`: `on::<MappingCompleted>` and `on_type("mapping.error.resolved", …)` taking `VerifiedEvent` (`Value`), no fallback | `probe.handle(HANDLER_COMPLETED` or `HANDLER_RESOLVED, Some(meta), serde_json::to_vec(&envelope))` |
//!
//! Each handler answers with the status `probe.handle` returns and an empty body. The
//! adapter is built from the spec's gate ([`AppSpec::gate`], `WebhookVerify::from_gate`),
//! which applies the spec's settings: `secret` (or `secrets`, a shared handle), `previous_secret`, `tolerance`, `body_limit`, `read_timeout`,
//! `clock`, `on_store_error`, and `dedup`
//! ([`Dedup::Memory`]: the default store; [`Dedup::Off`]: no dedup;
//! [`Dedup::Failing`]: [`FailingStore`];
//! [`Dedup::User`]: the given [`CountingStore`]), and `observer` (the adapter's
//! `observer` builder method). A handler panic must become a 500
//! through the framework's usual catch-panic mechanism (tower-http's `CatchPanicLayer`
//! outside the layer for axum; actix-web catches panics itself, or not: then the
//! connection drops, which the panic case also accepts).

use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use mapping_webhooks::scheme::Scheme;
use mapping_webhooks::{
    Begin, Claim, DedupStore, Gate, ManualClock, MatchedSecret, MemoryStore, Observer,
    OnStoreError, Outcome, Secret, Secrets, Signer, StoreError, TenantFrom, Tenants, Verified,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub mod cases;
pub mod hostile;
pub mod inbox_cases;
pub mod rotation;
pub mod schemes;
pub mod tenants;

/// The secret every case signs with, unless it says otherwise.
pub const SECRET: &str = "whsec_conformance_current_0123456789abcdef";
/// The previous secret of the rotation cases.
pub const PREVIOUS_SECRET: &str = "whsec_conformance_previous_0123456789abcdef";

/// The route whose handler extracts raw bytes.
pub const ROUTE_HOOKS: &str = "/hooks";
/// The route whose handler uses the framework's JSON extractor.
pub const ROUTE_JSON: &str = "/json";
/// The route whose handler uses the adapter's typed extractor.
pub const ROUTE_TYPED: &str = "/typed";
/// A route with the typed extractor but without the adapter.
pub const ROUTE_UNLAYERED: &str = "/unlayered";
/// The route whose handler takes the typed extractor of the `Event` enum: every type.
pub const ROUTE_ANY: &str = "/any";
/// The route served by the adapter's `EventRouter`.
pub const ROUTE_EVENTS: &str = "/events";
/// What the `EventRouter`'s `mapping.completed` handler passes as its route.
pub const HANDLER_COMPLETED: &str = "/events on mapping.completed";
/// What the `EventRouter`'s `mapping.error.resolved` handler passes as its route.
pub const HANDLER_RESOLVED: &str = "/events on mapping.error.resolved";
/// The prefix of the tenant route, `POST /t/{tenant}`, served when the spec has
/// [`tenants`](AppSpec::tenants): the adapter is built from `Gate::builder().tenants(tenants,
/// TenantFrom::PathSegment(1))` and the handler extracts raw bytes, as on [`ROUTE_HOOKS`].
pub const ROUTE_TENANTS: &str = "/t";
/// The prefix of a second tenant route, `POST /k/{tenant}`, whose adapter takes the
/// tenant key with its own `tenant_key` function, in the framework's terms (axum: from
/// the request's `Parts`; actix-web: `match_info().get("tenant")`).
pub const ROUTE_TENANT_KEY: &str = "/k";

/// How an adapter's app is configured for one case.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AppSpec {
    /// The current secret.
    pub secret: String,
    /// A secrets handle the case keeps to change the secrets while the app runs; when
    /// set, the gate reads it (`GateBuilder::secrets`) instead of `secret`.
    pub secrets: Option<Secrets>,
    /// Tenants: the app also serves [`ROUTE_TENANTS`]`/{tenant}` for them.
    pub tenants: Option<Tenants>,
    /// A previous secret, accepted during rotation.
    pub previous_secret: Option<String>,
    /// The tolerance, if not the default.
    pub tolerance: Option<Duration>,
    /// The body limit, if not the default.
    pub body_limit: Option<usize>,
    /// The clock, if not the system's.
    pub clock: Option<ManualClock>,
    /// The body read timeout, if not the default.
    pub read_timeout: Option<Duration>,
    /// Which dedup store.
    pub dedup: Dedup,
    /// What to do when the store fails.
    pub on_store_error: OnStoreError,
    /// What the handlers do; shared with the test, which reads what they saw.
    pub probe: Probe,
    /// An observer for the adapter's `observer` builder method, if any.
    pub observer: Option<CountingObserver>,
    /// The signature scheme (default Mapping.Travel's).
    pub scheme: Scheme,
}

impl Default for AppSpec {
    fn default() -> Self {
        Self {
            secret: SECRET.into(),
            secrets: None,
            tenants: None,
            previous_secret: None,
            tolerance: None,
            body_limit: None,
            clock: None,
            read_timeout: None,
            dedup: Dedup::Memory,
            on_store_error: OnStoreError::default(),
            probe: Probe::new(Behaviour::default()),
            observer: None,
            scheme: Scheme::Mapping,
        }
    }
}

impl AppSpec {
    /// The defaults, with handlers that answer 200.
    pub fn new() -> Self {
        Self::default()
    }

    /// With the signature scheme `scheme`.
    #[must_use]
    pub fn scheme(mut self, scheme: Scheme) -> Self {
        self.scheme = scheme;
        self
    }

    /// With handlers that behave like `behaviour`.
    #[must_use]
    pub fn behaviour(mut self, behaviour: Behaviour) -> Self {
        self.probe = Probe::new(behaviour);
        self
    }

    /// Builds the adapter from this secrets handle.
    #[must_use]
    pub fn secrets(mut self, secrets: Secrets) -> Self {
        self.secrets = Some(secrets);
        self
    }

    /// Also serves [`ROUTE_TENANTS`]`/{tenant}` for these tenants.
    #[must_use]
    pub fn tenants(mut self, tenants: Tenants) -> Self {
        self.tenants = Some(tenants);
        self
    }

    /// Sets the previous secret.
    #[must_use]
    pub fn previous_secret(mut self, secret: &str) -> Self {
        self.previous_secret = Some(secret.into());
        self
    }

    /// Sets the tolerance.
    #[must_use]
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = Some(tolerance);
        self
    }

    /// Sets the body limit.
    #[must_use]
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = Some(bytes);
        self
    }

    /// Sets the clock.
    #[must_use]
    pub fn clock(mut self, clock: ManualClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Sets the body read timeout.
    #[must_use]
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = Some(timeout);
        self
    }

    /// Sets the dedup store.
    #[must_use]
    pub fn dedup(mut self, dedup: Dedup) -> Self {
        self.dedup = dedup;
        self
    }

    /// Sets the observer.
    #[must_use]
    pub fn observer(mut self, observer: CountingObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Sets the store-error policy.
    #[must_use]
    pub fn on_store_error(mut self, policy: OnStoreError) -> Self {
        self.on_store_error = policy;
        self
    }
}

impl AppSpec {
    /// The gate this spec describes, built as an app builds one: [`Gate::builder`] with
    /// each option the case set. Every adapter is given this gate (`from_gate`).
    ///
    /// # Panics
    ///
    /// When the spec's options are invalid (a case's mistake).
    pub fn gate(&self) -> Gate<SpecStore> {
        let mut builder = match &self.secrets {
            Some(secrets) => Gate::builder().secrets(secrets.clone()),
            None => Gate::builder().secret(&self.secret),
        }
        .on_store_error(self.on_store_error)
        .scheme(self.scheme);
        if let Some(previous) = &self.previous_secret {
            builder = builder.previous_secret(previous);
        }
        if let Some(tolerance) = self.tolerance {
            builder = builder.tolerance(tolerance);
        }
        if let Some(limit) = self.body_limit {
            builder = builder.body_limit(limit);
        }
        if let Some(clock) = self.clock.clone() {
            builder = builder.clock(clock);
        }
        if let Some(timeout) = self.read_timeout {
            builder = builder.read_timeout(timeout);
        }
        if let Some(observer) = self.observer.clone() {
            builder = builder.observer(observer);
        }
        let builder = match &self.dedup {
            Dedup::Memory => {
                let store = match &self.clock {
                    Some(clock) => MemoryStore::builder()
                        .clock(clock.clone())
                        .build()
                        .expect("a valid store"),
                    None => MemoryStore::new(),
                };
                builder.dedup(SpecStore::Memory(store))
            }
            Dedup::Off => builder
                .dedup(SpecStore::Failing(FailingStore))
                .without_dedup(),
            Dedup::Failing => builder.dedup(SpecStore::Failing(FailingStore)),
            Dedup::User(store) => builder.dedup(SpecStore::User(store.clone())),
        };
        builder.build().expect("the spec's gate options are valid")
    }

    /// The gate of the tenant routes ([`ROUTE_TENANTS`], [`ROUTE_TENANT_KEY`]), when the
    /// spec has tenants: the key is the path's second segment.
    pub fn tenants_gate(&self) -> Option<Gate> {
        let tenants = self.tenants.clone()?;
        Some(
            Gate::builder()
                .tenants(tenants, TenantFrom::PathSegment(1))
                .build()
                .expect("a valid gate"),
        )
    }
}

/// The store of an [`AppSpec`]'s gate: one type for every [`Dedup`] choice, so an
/// adapter's spawner is written once.
#[derive(Debug, Clone)]
pub enum SpecStore {
    /// A `MemoryStore` (on the spec's clock, when it has one).
    Memory(MemoryStore),
    /// [`FailingStore`].
    Failing(FailingStore),
    /// A user's own store.
    User(CountingStore),
}

impl DedupStore for SpecStore {
    async fn begin(&self, key: &str) -> Result<Begin, StoreError> {
        match self {
            Self::Memory(s) => s.begin(key).await,
            Self::Failing(s) => s.begin(key).await,
            Self::User(s) => s.begin(key).await,
        }
    }

    async fn complete(&self, key: &str, claim: Claim) -> Result<(), StoreError> {
        match self {
            Self::Memory(s) => s.complete(key, claim).await,
            Self::Failing(s) => s.complete(key, claim).await,
            Self::User(s) => s.complete(key, claim).await,
        }
    }

    async fn abandon(&self, key: &str, claim: Claim) -> Result<(), StoreError> {
        match self {
            Self::Memory(s) => s.abandon(key, claim).await,
            Self::Failing(s) => s.abandon(key, claim).await,
            Self::User(s) => s.abandon(key, claim).await,
        }
    }
}

/// Which dedup store the adapter is given.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Dedup {
    /// The adapter's default (a `MemoryStore`).
    Memory,
    /// No deduplication.
    Off,
    /// [`FailingStore`], which always errors.
    Failing,
    /// A user's own store.
    User(CountingStore),
}

/// A store whose every call fails, as a Redis server that is down.
#[derive(Debug, Clone, Copy, Default)]
pub struct FailingStore;

impl DedupStore for FailingStore {
    async fn begin(&self, _key: &str) -> Result<Begin, StoreError> {
        Err(StoreError::backend("conformance: the store is down"))
    }

    async fn complete(&self, _key: &str, _claim: Claim) -> Result<(), StoreError> {
        Err(StoreError::backend("conformance: the store is down"))
    }

    async fn abandon(&self, _key: &str, _claim: Claim) -> Result<(), StoreError> {
        Err(StoreError::backend("conformance: the store is down"))
    }
}

/// A user's own store: a `MemoryStore` that counts `begin` calls (clones share both).
#[derive(Debug, Clone, Default)]
pub struct CountingStore {
    inner: MemoryStore,
    begins: Arc<AtomicUsize>,
}

impl CountingStore {
    /// How many times `begin` was called.
    pub fn begins(&self) -> usize {
        self.begins.load(Ordering::SeqCst)
    }
}

impl DedupStore for CountingStore {
    async fn begin(&self, key: &str) -> Result<Begin, StoreError> {
        self.begins.fetch_add(1, Ordering::SeqCst);
        self.inner.begin(key).await
    }

    async fn complete(&self, key: &str, claim: Claim) -> Result<(), StoreError> {
        self.inner.complete(key, claim).await
    }

    async fn abandon(&self, key: &str, claim: Claim) -> Result<(), StoreError> {
        self.inner.abandon(key, claim).await
    }
}

/// An observer that keeps every outcome and counts the claims in flight (clones share
/// both).
#[derive(Debug, Clone, Default)]
pub struct CountingObserver {
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    claims: Arc<AtomicI64>,
}

impl CountingObserver {
    /// Every outcome reported so far, in order.
    pub fn outcomes(&self) -> Vec<Outcome> {
        self.outcomes.lock().unwrap().clone()
    }

    /// Claims started and not yet ended.
    pub fn claims_in_flight(&self) -> i64 {
        self.claims.load(Ordering::SeqCst)
    }
}

impl Observer for CountingObserver {
    fn outcome(&self, outcome: Outcome) {
        self.outcomes.lock().unwrap().push(outcome);
    }

    fn claim_started(&self) {
        self.claims.fetch_add(1, Ordering::SeqCst);
    }

    fn claim_ended(&self) {
        self.claims.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the handlers do: wait `delay`, then fail the first `fail_first` calls with
/// `failure`, then answer 200.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Behaviour {
    /// How many calls fail first.
    pub fail_first: usize,
    /// How they fail.
    pub failure: Failure,
    /// How long every call takes before answering.
    pub delay: Duration,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            fail_first: 0,
            failure: Failure::Status(500),
            delay: Duration::ZERO,
        }
    }
}

impl Behaviour {
    /// Fails the first `n` calls with `failure`.
    pub fn fail_first(n: usize, failure: Failure) -> Self {
        Self {
            fail_first: n,
            failure,
            ..Self::default()
        }
    }

    /// Takes `delay` before answering 200.
    pub fn slow(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }
}

/// How a failing call fails.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Failure {
    /// Answers this status.
    Status(u16),
    /// Panics.
    Panic,
    /// Never answers (until its future is dropped).
    Hang,
}

/// What one handler call saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The route.
    pub route: &'static str,
    /// The metadata the adapter gave the handler.
    pub verified: Option<Verified>,
    /// The body as the handler's extractor gave it.
    pub body: Bytes,
}

/// The handlers' shared state: what they do and what they saw. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Probe {
    behaviour: Behaviour,
    seen: Arc<Mutex<Vec<Seen>>>,
    succeeded: Arc<AtomicUsize>,
}

impl Probe {
    fn new(behaviour: Behaviour) -> Self {
        Self {
            behaviour,
            seen: Arc::default(),
            succeeded: Arc::default(),
        }
    }

    /// The handler body every adapter's app calls: records the call, then behaves as
    /// told. Returns the status to answer with.
    pub fn handle(
        &self,
        route: &'static str,
        verified: Option<Verified>,
        body: Bytes,
    ) -> impl Future<Output = u16> + Send + 'static {
        let this = self.clone();
        async move {
            let n = {
                let mut seen = this.seen.lock().unwrap();
                seen.push(Seen {
                    route,
                    verified,
                    body,
                });
                seen.len() - 1
            };
            let b = this.behaviour;
            if !b.delay.is_zero() {
                tokio::time::sleep(b.delay).await;
            }
            if n < b.fail_first {
                match b.failure {
                    Failure::Status(status) => return status,
                    Failure::Panic => panic!("conformance: the handler panics on purpose"),
                    Failure::Hang => std::future::pending::<()>().await,
                }
            }
            this.succeeded.fetch_add(1, Ordering::SeqCst);
            200
        }
    }

    /// How many times a handler was called (started).
    pub fn calls(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// How many calls answered 200.
    pub fn successes(&self) -> usize {
        self.succeeded.load(Ordering::SeqCst)
    }

    /// Every call so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A running app: its base URL, and whatever keeps it alive (dropped at the end of
/// the case, which should stop the server).
pub struct App {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Whether the HTTP server answers `Expect: 100-continue` with `100 Continue` itself,
    /// before the adapter sees the request (see
    /// [`server_sends_continue`](Self::server_sends_continue)).
    pub sends_continue_itself: bool,
    _guard: Box<dyn Send>,
}

impl App {
    /// An app served at `url`, kept alive by `guard`.
    pub fn new(url: String, guard: impl Send + 'static) -> Self {
        Self {
            url,
            sends_continue_itself: false,
            _guard: Box::new(guard),
        }
    }

    /// Says that the server answers `Expect: 100-continue` with `100 Continue` before
    /// the adapter can decide (actix-web's `HttpServer` does, from actix-http's default
    /// expect service). The cases then accept a `100` before a refusal; without this,
    /// a refusal must come with no `100` before it (hyper sends it only when the body
    /// is first read).
    #[must_use]
    pub fn server_sends_continue(mut self) -> Self {
        self.sends_continue_itself = true;
        self
    }

    /// The host and port, for raw TCP.
    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("url", &self.url)
            .field("sends_continue_itself", &self.sends_continue_itself)
            .finish()
    }
}

/// The current Unix time.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A delivery body for `event_id`, in the documented shape, formatted with uncommon
/// spacing and key order so any re-serialisation on the way would show.
pub fn envelope(event_id: &str, delivery_id: &str) -> Vec<u8> {
    format!(
        "{{ \"type\" : \"mapping.completed\", \"eventId\":\"{event_id}\",\n  \"id\":\"{delivery_id}\", \
         \"apiVersion\":\"2026-06-01\", \"createdAt\":\"2026-06-07T12:01:00Z\",\n  \"data\": {{\"rowCount\": 4821, \
         \"mappingJobId\":\"job_01HZ\",   \"status\":\"COMPLETED\", \"exportFileId\":\"ef_01HZ\", \"note\":\"caf\\u00e9\"}} }}"
    )
    .into_bytes()
}

/// A delivery body of `event_type` with `data` (JSON text) for `event_id`.
pub fn envelope_of(event_type: &str, event_id: &str, data: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"del_{event_id}","eventId":"{event_id}","type":"{event_type}","apiVersion":"2026-06-01","data":{data}}}"#
    )
    .into_bytes()
}

/// `X-Webhook-Signature` for `body` at `timestamp` with `secret`.
pub fn sign(secret: &str, body: &[u8], timestamp: u64) -> String {
    Signer::new(Secret::new(secret).expect("test secret")).sign(body, timestamp)
}

/// A unique event id for this process.
pub fn event_id(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "evt_{tag}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status.
    pub status: u16,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
    /// Whether it carried `X-Webhook-Duplicate: true` (an answer to a duplicate).
    pub duplicate: bool,
    /// The body, as text.
    pub body: String,
}

impl Answer {
    /// Whether this is the answer every receiver gives a duplicate: 200, the header
    /// `X-Webhook-Duplicate: true` and the body `event already received`.
    pub fn is_duplicate(&self) -> bool {
        self.status == 200 && self.duplicate && self.body == mapping_webhooks::DUPLICATE_REASON
    }
}

/// A real HTTP client posting deliveries.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// A client for `app`.
    pub fn new(app: &App) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: app.url.clone(),
        }
    }

    /// POSTs `body` to `route` with these extra headers.
    pub async fn post(&self, route: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
        self.try_post(route, headers, body)
            .await
            .expect("the request is answered")
    }

    /// Like [`post`](Self::post), `None` when the connection failed without an answer.
    pub async fn try_post(
        &self,
        route: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Option<Answer> {
        let mut request = self
            .http
            .post(format!("{}{route}", self.base))
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.ok()?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let duplicate = response
            .headers()
            .get(mapping_webhooks::DUPLICATE_HEADER)
            .is_some_and(|v| v == "true");
        let body = response.text().await.unwrap_or_default();
        Some(Answer {
            status,
            retry_after,
            duplicate,
            body,
        })
    }

    /// POSTs `body` signed with `secret` at `timestamp`, as the sender does.
    pub async fn deliver_signed(
        &self,
        route: &str,
        secret: &str,
        body: Vec<u8>,
        timestamp: u64,
    ) -> Answer {
        let signature = sign(secret, &body, timestamp);
        let headers = [
            ("x-webhook-signature", signature.as_str()),
            ("x-webhook-event", "mapping.completed"),
            ("x-webhook-delivery", "del_conformance"),
        ];
        self.post(route, &headers, body).await
    }

    /// POSTs `body` signed now with [`SECRET`].
    pub async fn deliver(&self, route: &str, body: Vec<u8>) -> Answer {
        self.deliver_signed(route, SECRET, body, now()).await
    }

    /// Delivers `body` until it is no longer answered 409 (the claim of an earlier copy
    /// is freed in the background), at most 200 times 25 ms apart.
    pub async fn deliver_until_not_in_flight(&self, route: &str, body: &[u8]) -> Answer {
        for _ in 0..200 {
            let answer = self.deliver(route, body.to_vec()).await;
            if answer.status != 409 {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the event stayed in flight: its claim was never freed");
    }
}

/// Delivers `copies` signed bodies at once, round-robin over `clients` (replicas), all
/// released together by a barrier; `body(i)` gives copy `i`'s body. Returns the statuses
/// in copy order.
pub async fn deliver_at_once(
    clients: &[Client],
    route: &'static str,
    copies: usize,
    body: impl Fn(usize) -> Vec<u8>,
) -> Vec<u16> {
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(copies));
    let tasks: Vec<_> = (0..copies)
        .map(|i| {
            let (client, body, start) =
                (clients[i % clients.len()].clone(), body(i), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                client.deliver(route, body).await.status
            })
        })
        .collect();
    let mut statuses = Vec::with_capacity(copies);
    for task in tasks {
        statuses.push(task.await.expect("the delivery task does not panic"));
    }
    statuses
}

/// Asserts what the sender sees when copies of one event hit replicas that share a store
/// and a handler answering 204: exactly one copy ran it (204); every other copy was
/// acknowledged (200) or asked to retry (409).
pub fn assert_processed_once(statuses: &[u16]) {
    assert!(
        statuses.iter().all(|s| [200, 204, 409].contains(s)),
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 204).count(),
        1,
        "{statuses:?}"
    );
}

/// Sends raw bytes on a fresh connection and reads the response head's status line
/// (or `None` if the server closed without answering).
///
/// The bytes are written while the answer is read: a server may answer and close before
/// taking them all (a 413 by `Content-Length`), and a client that insisted on writing
/// first would meet a reset connection instead of the answer.
pub async fn raw_exchange(app: &App, request: &[u8], then_send: Option<&[u8]>) -> Option<u16> {
    let stream = TcpStream::connect(app.addr()).await.expect("connect");
    let (mut stream, mut writer) = stream.into_split();
    let mut bytes = request.to_vec();
    bytes.extend_from_slice(then_send.unwrap_or_default());
    let writing = tokio::spawn(async move {
        // Errors are fine: the answer (or its absence) is what the case checks.
        let _ = writer.write_all(&bytes).await;
        // Keep the write side open until the answer is read.
        std::future::pending::<()>().await;
    });
    let _abort = AbortOnDrop(writing);
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    let line = String::from_utf8_lossy(&buf);
    line.strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Polls `condition` every 10 ms, at most 500 times; panics with `what` if it never held.
pub async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Whether `verified` says the current secret matched.
pub fn matched_current(verified: &Verified) -> bool {
    verified.secret == MatchedSecret::Current
}

/// Instantiates every case in [`cases`] as a `#[tokio::test]` for one adapter.
///
/// ```ignore
/// mapping_webhooks_conformance::conformance_suite!(spawn_axum_app);
/// ```
#[macro_export]
macro_rules! conformance_suite {
    ($spawn:path) => {
        $crate::hostile_suite!($spawn);
        $crate::rotation_suite!($spawn);
        $crate::tenant_suite!($spawn);
        $crate::scheme_suite!($spawn);
        $crate::conformance_suite!(@cases $spawn;
            valid_delivery_is_processed_once,
            duplicate_is_acknowledged_without_the_handler,
            tampered_body_is_refused,
            wrong_secret_is_refused,
            stale_timestamp_is_refused,
            future_timestamp_is_refused,
            missing_header_is_refused,
            malformed_header_is_refused,
            repeated_header_is_refused,
            previous_secret_is_accepted,
            two_v1_signatures_one_valid,
            two_mib_body_is_413,
            small_limit_is_enforced,
            chunked_body_over_the_limit_is_413,
            oversized_content_length_is_refused_before_reading,
            signed_non_envelope_is_400,
            handler_500_leaves_the_event_retryable,
            handler_panic_leaves_the_event_retryable,
            client_disconnect_leaves_the_event_retryable,
            concurrent_copies_run_the_handler_once,
            in_flight_copy_gets_409_with_retry_after,
            store_error_is_503_by_default,
            store_error_passes_through_when_configured,
            user_store_is_used,
            dedup_can_be_turned_off,
            json_extractor_gets_the_original_bytes,
            metadata_is_in_the_extensions,
            typed_extractor_gives_the_envelope,
            typed_extractor_mismatch_is_422_and_retryable,
            extractor_without_the_layer_is_500,
            typed_extractor_acknowledges_another_type,
            event_extractor_takes_every_type,
            dispatch_runs_exactly_the_registered_handler,
            dispatch_acknowledges_an_unregistered_type,
            dispatch_payload_mismatch_is_422_and_retryable,
            clock_drives_the_default_store_s_ttl,
            tolerance_edges_are_inclusive,
            custom_tolerance_is_applied,
            observer_hears_each_outcome_once,
        );
    };
    (@cases $spawn:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::cases::$case($spawn).await;
            }
        )*
    };
}
