//! The decisions every adapter shares: what to answer for each outcome, and when to
//! complete or abandon a dedup claim. Adapters only move bytes and build responses.
//!
//! One idea a file: the gate and its settings here, [`builder`] (every option, checked at
//! `build`), [`head`] (the head's checks and the tenant, before the body), [`intake`] (a
//! request's whole life), [`admission`] (verification and the dedup claim), [`key`] (the
//! dedup key scheme), [`reply`] (the answers) and [`ticket`] (how a claim ends).

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::dedup::{Claim, DedupStore, MemoryStore};
use crate::observe::Observer;
use crate::scheme::Scheme;
use crate::{Clock, Secret, Secrets, TenantFrom, Tenants, Verifier};

mod admission;
mod builder;
mod head;
mod intake;
mod key;
mod reply;
mod ticket;

pub use admission::Admission;
pub use builder::GateBuilder;
use head::{CheckedHead, Signed};
pub use intake::{Admitted, Intake, RequestHead, Sink, SinkDelivery, Stored};
use key::escape_namespace;
pub use reply::Reply;
pub use ticket::Ticket;

/// The default largest body read, in bytes (1 MiB). Real deliveries are a few hundred
/// bytes; the limit exists so a hostile client cannot make the receiver buffer gigabytes.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The default time allowed for reading the whole body. The sender posts a small body
/// at once, so a client still trickling bytes after this is refused (408) instead of
/// holding a task.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The `Retry-After` sent with a 409 while another copy of the event is being processed.
pub const RETRY_AFTER_SECS: u64 = 60;

/// The `Retry-After` of a 503 for a tenant lookup that failed, timed out or was over the
/// limit, in seconds: soon, as the next try may well find the resolver free.
const TENANT_RETRY_AFTER_SECS: u64 = 10;

/// What to do when the dedup store cannot answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnStoreError {
    /// Answer 503: the sender retries later, so nothing is lost (the default).
    #[default]
    Reject,
    /// Run the handler without deduplication. Choose this only when the handler is
    /// idempotent on its own: a duplicate may then be processed twice.
    PassThrough,
}

/// The headers the sender adds that are **not** covered by the signature. They are only
/// used in logs; every decision is taken from the signed body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnsignedHeaders<'a> {
    /// `X-Webhook-Delivery`.
    pub delivery_id: Option<&'a str>,
    /// `X-Webhook-Event`.
    pub event_type: Option<&'a str>,
}

/// A webhook endpoint's rules: the verifier, the dedup store and the body limits.
///
/// The adapter crates wrap a gate; use it directly to receive webhooks in a framework
/// they do not cover:
///
/// ```
/// use mapping_webhooks::{Admission, Gate, Secret, Signer, UnsignedHeaders};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let secret = Secret::new("whsec_test")?;
/// let gate = Gate::new(secret.clone());
/// let body = br#"{"id":"del_1","eventId":"evt_1","type":"mapping.completed","data":{}}"#;
/// let header = Signer::new(secret).sign_now(body);
///
/// match gate.admit([header.as_bytes()], UnsignedHeaders::default(), body).await {
///     Admission::Process { verified, ticket } => {
///         // ... handle `verified.event_id` here, then report how it went:
///         ticket.finish(200).await;
///     }
///     Admission::Reply(reply) => panic!("refused: {} {}", reply.status(), reply.reason()),
/// }
/// // A second copy of the same event is answered without running the handler.
/// let header = Signer::new(Secret::new("whsec_test")?).sign_now(body);
/// let Admission::Reply(reply) = gate.admit([header.as_bytes()], UnsignedHeaders::default(), body).await
/// else { panic!("processed twice") };
/// assert_eq!(reply.status(), 200);
/// # Ok::<(), mapping_webhooks::ConfigError>(())
/// # }).unwrap();
/// ```
pub struct Gate<D = MemoryStore> {
    verifier: Verifier,
    scheme: Scheme,
    tenants: Option<(Tenants, TenantFrom)>,
    store: Option<Arc<D>>,
    namespace: Option<Box<str>>,
    on_store_error: OnStoreError,
    body_limit: usize,
    read_timeout: Duration,
    /// The store is the one [`Gate::new`] made, so [`Gate::clock`] rebuilds it.
    default_store: bool,
    observer: Option<Arc<dyn Observer>>,
}

impl<D> Clone for Gate<D> {
    fn clone(&self) -> Self {
        Self {
            verifier: self.verifier.clone(),
            scheme: self.scheme,
            tenants: self.tenants.clone(),
            store: self.store.clone(),
            namespace: self.namespace.clone(),
            on_store_error: self.on_store_error,
            body_limit: self.body_limit,
            read_timeout: self.read_timeout,
            default_store: self.default_store,
            observer: self.observer.clone(),
        }
    }
}

impl Gate {
    /// A gate for `secret`, with the default tolerance, limits and a [`MemoryStore`].
    pub fn new(secret: Secret) -> Self {
        Self::from_secrets(Secrets::new(secret))
    }

    /// A gate reading `secrets`, a handle the app keeps to change the secrets while the
    /// server runs (see [`Secrets`]), with the default tolerance, limits and a
    /// [`MemoryStore`].
    pub fn from_secrets(secrets: Secrets) -> Self {
        Self {
            verifier: Verifier::from_secrets(secrets),
            scheme: Scheme::Mapping,
            tenants: None,
            store: Some(Arc::new(MemoryStore::new())),
            namespace: None,
            on_store_error: OnStoreError::default(),
            body_limit: DEFAULT_BODY_LIMIT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            default_store: true,
            observer: None,
        }
    }

    /// A gate for many tenants on one endpoint: each request's tenant key is taken as
    /// `from` says, and its secrets from `tenants` (see [`intake`](Self::intake)).
    /// Dedup keys are per tenant. The other options are the defaults.
    pub fn for_tenants(tenants: Tenants, from: TenantFrom) -> Self {
        Self {
            tenants: Some((tenants, from)),
            ..Self::new(Self::unused_secret())
        }
    }
}

impl Gate {
    /// Starts building a gate: every option, checked together at
    /// [`build`](GateBuilder::build).
    pub fn builder() -> GateBuilder {
        GateBuilder::new()
    }

    /// The secret of a gate for tenants, which is never used (a request without a
    /// tenant is refused before any signature is checked): an unguessable one all the same.
    fn unused_secret() -> Secret {
        Secret::new(format!("unused-{}", Claim::random())).expect("a non-empty secret")
    }
}

impl<D: DedupStore> Gate<D> {
    /// Reads the time from `clock`; the default store is rebuilt (empty) on it. The
    /// store then follows `clock` instead of its monotonic one: a store's clock must be
    /// monotonic, and a wall clock such as [`SystemClock`](crate::SystemClock) is not,
    /// so the store never lets its time go back (see [`MemoryStore`'s time](MemoryStore#time)).
    fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        if self.default_store {
            let store: Arc<dyn Any + Send + Sync> = Arc::new(
                MemoryStore::builder()
                    .clock(Arc::clone(&clock))
                    .build()
                    .expect("the default store's settings are valid"),
            );
            // `default_store` is only set by `Gate::from_secrets`, whose `D` is `MemoryStore`.
            if let Ok(store) = store.downcast::<D>() {
                self.store = Some(store);
            }
        }
        self.verifier = self.verifier.clock(clock);
        self
    }

    /// The same gate with another store (`None`: no dedup).
    fn with_store<S: DedupStore>(self, store: Option<Arc<S>>) -> Gate<S> {
        Gate {
            verifier: self.verifier,
            scheme: self.scheme,
            tenants: self.tenants,
            store,
            namespace: self.namespace,
            on_store_error: self.on_store_error,
            body_limit: self.body_limit,
            read_timeout: self.read_timeout,
            default_store: false,
            observer: self.observer,
        }
    }

    /// Any string works: distinct (namespace, `eventId`) pairs always make distinct keys
    /// (see [`key_for`](Self::key_for)). An empty namespace is the same as none.
    fn set_namespace(&mut self, namespace: String) {
        self.namespace = (!namespace.is_empty()).then(|| escape_namespace(&namespace));
    }

    /// The verifier.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// The secrets handle this gate reads on every request: clone it to
    /// [`rotate`](Secrets::rotate) or [`set`](Secrets::set) the secrets while the
    /// server runs. The dedup store is not touched by such a change.
    pub fn secrets(&self) -> &Secrets {
        self.verifier.secrets()
    }

    /// Where the tenant key is, when this gate serves many tenants
    /// ([`for_tenants`](Gate::for_tenants)).
    pub fn tenant_from(&self) -> Option<TenantFrom> {
        self.tenants.as_ref().map(|(_, from)| *from)
    }

    /// The tenants, when this gate serves many ([`for_tenants`](Gate::for_tenants)).
    pub fn tenants(&self) -> Option<&Tenants> {
        self.tenants.as_ref().map(|(tenants, _)| tenants)
    }

    /// The signature scheme this gate verifies (see [`scheme`](crate::scheme)).
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The largest body read.
    pub fn body_limit(&self) -> usize {
        self.body_limit
    }

    /// The time allowed for reading the body.
    pub fn read_timeout(&self) -> Duration {
        self.read_timeout
    }
}

impl<D> fmt::Debug for Gate<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("verifier", &self.verifier)
            .field("scheme", &self.scheme)
            .field("tenants", &self.tenants)
            .field("dedup", &self.store.is_some())
            .field("namespace", &self.namespace)
            .field("on_store_error", &self.on_store_error)
            .field("body_limit", &self.body_limit)
            .field("read_timeout", &self.read_timeout)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::dedup::Begin;
    use crate::{ManualClock, MatchedSecret, Signer, StoreError, Verified, VerifyError};

    const SECRET: &str = "whsec_gate_test_0123456789abcdef";
    const NOW: u64 = 1_717_250_400;

    fn body(event_id: &str) -> Vec<u8> {
        format!(r#"{{"id":"del_1","eventId":"{event_id}","type":"mapping.completed","data":{{}}}}"#)
            .into_bytes()
    }

    fn sign(body: &[u8]) -> String {
        Signer::new(Secret::new(SECRET).unwrap()).sign(body, NOW)
    }

    fn builder() -> GateBuilder {
        Gate::builder()
            .secret(SECRET)
            .clock(ManualClock::at_secs(NOW))
    }

    fn gate() -> Gate {
        builder().build().unwrap()
    }

    async fn admit<D: DedupStore>(gate: &Gate<D>, body: &[u8]) -> Admission<D> {
        let header = sign(body);
        gate.admit([header.as_bytes()], UnsignedHeaders::default(), body)
            .await
    }

    fn reply<D: DedupStore>(a: Admission<D>) -> Reply {
        match a {
            Admission::Reply(r) => r,
            Admission::Process { verified, .. } => panic!("processed {}", verified.event_id),
        }
    }

    fn process<D: DedupStore>(a: Admission<D>) -> (Verified, Ticket<D>) {
        match a {
            Admission::Process { verified, ticket } => (verified, ticket),
            Admission::Reply(r) => panic!("replied {} {}", r.status(), r.reason()),
        }
    }

    /// Counts calls and can be told to fail; wraps a real `MemoryStore`.
    #[derive(Default)]
    struct Probe {
        inner: MemoryStore,
        calls: AtomicUsize,
        fail: bool,
    }

    impl DedupStore for Probe {
        async fn begin(&self, key: &str) -> Result<Begin, StoreError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail {
                return Err(StoreError::backend("store is down"));
            }
            self.inner.begin(key).await
        }
        async fn complete(&self, key: &str, claim: Claim) -> Result<(), StoreError> {
            self.inner.complete(key, claim).await
        }
        async fn abandon(&self, key: &str, claim: Claim) -> Result<(), StoreError> {
            self.inner.abandon(key, claim).await
        }
    }

    #[tokio::test]
    async fn processes_once_then_acknowledges_duplicates() {
        let gate = gate();
        let b = body("evt_1");
        let (verified, ticket) = process(admit(&gate, &b).await);
        assert_eq!(verified.event_id, "evt_1");
        assert!(ticket.is_claimed());
        assert_eq!(reply(admit(&gate, &b).await), Reply::InFlight);
        ticket.finish(204).await;
        let r = reply(admit(&gate, &b).await);
        assert_eq!((r.status(), r.code()), (200, "duplicate"));
    }

    #[tokio::test]
    async fn a_failed_or_dropped_handler_leaves_the_event_retryable() {
        let gate = gate();
        let b = body("evt_2");
        for status in [500, 404, 302, 199] {
            let (_, ticket) = process(admit(&gate, &b).await);
            ticket.finish(status).await;
        }
        let (_, ticket) = process(admit(&gate, &b).await);
        drop(ticket); // a panic or a dropped future
        let (_, ticket) = process(admit(&gate, &b).await);
        ticket.finish(200).await;
        assert_eq!(reply(admit(&gate, &b).await), Reply::AlreadyProcessed);
    }

    #[tokio::test]
    async fn a_forged_request_never_touches_the_store() {
        let probe = Probe::default();
        let gate = builder().dedup(probe).build().unwrap();
        let b = body("evt_real");
        let forged = Signer::new(Secret::new("whsec_attacker").unwrap()).sign(&b, NOW);
        let r = reply(
            gate.admit([forged.as_bytes()], UnsignedHeaders::default(), &b)
                .await,
        );
        assert_eq!(r.status(), 401);
        let store = gate.store.as_ref().unwrap();
        assert_eq!(store.calls.load(Ordering::SeqCst), 0);
        // The real event is still processed.
        let (_, ticket) = process(admit(&gate, &b).await);
        ticket.finish(200).await;
        assert_eq!(store.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn missing_and_repeated_headers_are_400() {
        let gate = gate();
        let b = body("evt_3");
        let none: [&[u8]; 0] = [];
        let r = reply(gate.admit(none, UnsignedHeaders::default(), &b).await);
        assert_eq!(
            (r.status(), r.error()),
            (400, Some(&VerifyError::MissingHeader))
        );
        let h = sign(&b);
        let r = reply(
            gate.admit([h.as_bytes(), h.as_bytes()], UnsignedHeaders::default(), &b)
                .await,
        );
        assert_eq!(
            (r.status(), r.error()),
            (400, Some(&VerifyError::RepeatedHeader))
        );
    }

    fn refusal(result: Result<CheckedHead, Reply>) -> VerifyError {
        match result {
            Err(Reply::Refused(error)) => error,
            Err(other) => panic!("not a refusal: {other:?}"),
            Ok(head) => panic!("head accepted: {head:?}"),
        }
    }

    #[test]
    fn the_head_is_checked_without_a_body_in_order() {
        let gate = builder().body_limit(1000).build().unwrap();
        let u = UnsignedHeaders::default();
        let b = body("evt_head");
        let good = sign(&b);
        let none: [&[u8]; 0] = [];
        // The declared length first, whatever the signature header says.
        assert_eq!(
            refusal(gate.check_head(none, Some(1001), u)),
            VerifyError::BodyTooLarge { limit: 1000 }
        );
        assert_eq!(
            refusal(gate.check_head([good.as_bytes()], Some(1001), u)).status(),
            413
        );
        // Then the header: present once, well formed, within the window.
        assert_eq!(
            refusal(gate.check_head(none, Some(1000), u)),
            VerifyError::MissingHeader
        );
        assert_eq!(
            refusal(gate.check_head([b"t=1".as_slice(), b"t=1"], None, u)),
            VerifyError::RepeatedHeader
        );
        assert!(matches!(
            refusal(gate.check_head([b"t=soon,v1=00".as_slice()], None, u)),
            VerifyError::MalformedHeader(_)
        ));
        let tol = crate::DEFAULT_TOLERANCE.as_secs();
        let stale = Signer::new(Secret::new(SECRET).unwrap()).sign(&b, NOW - tol - 1);
        let early = Signer::new(Secret::new(SECRET).unwrap()).sign(&b, NOW + tol + 1);
        let r = refusal(gate.check_head([stale.as_bytes()], None, u));
        assert_eq!((r.code(), r.status()), ("timestamp_too_old", 401));
        let r = refusal(gate.check_head([early.as_bytes()], None, u));
        assert_eq!((r.code(), r.status()), ("timestamp_in_future", 401));
        // Any body, even a wrong one, is for the second step.
        let forged = format!("t={NOW},v1={}", "0".repeat(64));
        for header in [&good, &forged] {
            let head = gate.check_head([header.as_bytes()], Some(1000), u).unwrap();
            assert_eq!(head.timestamp(), Some(NOW));
        }
        let head = gate.check_head([good.as_bytes()], None, u).unwrap();
        assert!(!format!("{head:?}").contains(good.split("v1=").nth(1).unwrap()));
    }

    #[tokio::test]
    async fn admit_checked_verifies_the_body_then_claims() {
        let probe = Probe::default();
        let clock = ManualClock::at_secs(NOW);
        let gate = Gate::builder()
            .secret(SECRET)
            .clock(clock.clone())
            .dedup(probe)
            .build()
            .unwrap();
        let u = UnsignedHeaders::default();
        let b = body("evt_checked");
        let header = sign(&b);
        let calls = || gate.store.as_ref().unwrap().calls.load(Ordering::SeqCst);

        // A head whose signature is for another body: 401 at the second step, store untouched.
        let head = gate.check_head([header.as_bytes()], None, u).unwrap();
        let r = reply(gate.admit_checked(&head, u, &body("evt_other")).await);
        assert_eq!(r.error(), Some(&VerifyError::SignatureMismatch));
        assert_eq!(calls(), 0);

        // The window was checked with the head: a slow body read does not undo it.
        let head = gate.check_head([header.as_bytes()], None, u).unwrap();
        clock.advance(Duration::from_secs(3600));
        let (verified, ticket) = process(gate.admit_checked(&head, u, &b).await);
        assert_eq!(verified.event_id, "evt_checked");
        ticket.finish(200).await;
        assert_eq!(calls(), 1);
        // ... but a new head then is out of the window.
        assert_eq!(
            refusal(gate.check_head([header.as_bytes()], None, u)).status(),
            401
        );
    }

    #[tokio::test]
    async fn store_errors_answer_503_or_pass_through() {
        let failing = || Probe {
            fail: true,
            ..Probe::default()
        };
        let rejecting = builder().dedup(failing()).build().unwrap();
        let r = reply(admit(&rejecting, &body("evt_4")).await);
        assert_eq!((r.status(), r.code()), (503, "store_unavailable"));

        let gate = builder()
            .dedup(failing())
            .on_store_error(OnStoreError::PassThrough)
            .build()
            .unwrap();
        let (verified, ticket) = process(admit(&gate, &body("evt_4")).await);
        assert_eq!(verified.event_id, "evt_4");
        assert!(!ticket.is_claimed());
        ticket.finish(200).await;
    }

    #[tokio::test]
    async fn without_dedup_every_copy_runs() {
        let gate = builder().without_dedup().build().unwrap();
        for _ in 0..3 {
            let (_, ticket) = process(admit(&gate, &body("evt_5")).await);
            assert!(!ticket.is_claimed());
            ticket.finish(200).await;
        }
    }

    #[tokio::test]
    async fn concurrent_copies_are_processed_once() {
        let gate = Arc::new(gate());
        let b = Arc::new(body("evt_6"));
        let processed = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (gate, b, processed) = (gate.clone(), b.clone(), processed.clone());
                tokio::spawn(async move {
                    match admit(&gate, &b).await {
                        Admission::Process { ticket, .. } => {
                            processed.fetch_add(1, Ordering::SeqCst);
                            tokio::task::yield_now().await;
                            ticket.finish(200).await;
                            200
                        }
                        Admission::Reply(r) => r.status(),
                    }
                })
            })
            .collect();
        for t in tasks {
            assert!(matches!(t.await.unwrap(), 200 | 409));
        }
        assert_eq!(processed.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn namespaces_separate_endpoints_sharing_a_store() {
        let store = MemoryStore::new();
        let a = builder()
            .dedup(store.clone())
            .namespace("orders")
            .build()
            .unwrap();
        let b = builder()
            .dedup(store)
            .namespace("invoices")
            .build()
            .unwrap();
        let body = body("evt_7");
        let (_, t) = process(admit(&a, &body).await);
        t.finish(200).await;
        let (_, t) = process(admit(&b, &body).await);
        t.finish(200).await;
        assert_eq!(reply(admit(&a, &body).await), Reply::AlreadyProcessed);
    }

    #[test]
    fn long_event_ids_become_bounded_keys() {
        let gate = builder().namespace("ns").build().unwrap();
        assert_eq!(gate.key_for("evt_1"), "ns:id:evt_1");
        let long = "e".repeat(10_000);
        let key = gate.key_for(&long);
        assert_eq!(key.len(), "ns:sha256:".len() + 64);
        assert_ne!(key, gate.key_for(&"e".repeat(10_001)));
        assert_eq!(gate.key_for(&"e".repeat(128)).len(), "ns:id:".len() + 128);
    }

    #[test]
    fn the_review_s_colliding_pairs_get_distinct_keys() {
        // A namespace that ends where an event id's own colon begins.
        assert_ne!(
            builder()
                .namespace("orders")
                .build()
                .unwrap()
                .key_for("eu:evt_1"),
            builder()
                .namespace("orders:eu")
                .build()
                .unwrap()
                .key_for("evt_1")
        );
        // An event id that spells a digest, against the digest of a long id.
        let long = "x".repeat(200);
        let digest = gate().key_for(&long);
        let spelled = digest.strip_prefix(':').unwrap();
        assert_ne!(gate().key_for(spelled), digest);
        // No namespace against a namespace that looks like a key's start.
        assert_ne!(
            gate().key_for("id:evt"),
            builder().namespace("id").build().unwrap().key_for("evt")
        );
    }

    /// Every (namespace, event id) pair over an alphabet of the characters that matter
    /// (separators, escapes, tags), up to three characters each, plus long ids: no two
    /// pairs share a key.
    #[test]
    fn distinct_namespace_and_event_id_pairs_never_share_a_key() {
        let alphabet = [':', '%', '3', 'A', 'i', 'd'];
        let mut words = vec![String::new()];
        for len in 1..=3 {
            let mut next = Vec::new();
            for w in words.iter().filter(|w| w.chars().count() == len - 1) {
                for c in alphabet {
                    next.push(format!("{w}{c}"));
                }
            }
            words.extend(next);
        }
        let long_ids: Vec<String> = (0..3).map(|i| format!("{i}").repeat(129)).collect();
        let mut seen = std::collections::HashMap::new();
        for ns in &words {
            let gate = builder().namespace(ns.as_str()).build().unwrap();
            for id in words.iter().chain(&long_ids) {
                // An empty namespace is no namespace: those pairs are the same pair.
                if let Some((ns2, id2)) = seen.insert(gate.key_for(id), (ns.clone(), id.clone())) {
                    panic!("({ns:?}, {id:?}) and ({ns2:?}, {id2:?}) share a key");
                }
            }
        }
        assert_eq!(seen.len(), words.len() * (words.len() + long_ids.len()));
    }

    #[tokio::test]
    async fn colliding_namespaces_sharing_a_store_both_process() {
        let store = MemoryStore::new();
        let a = builder()
            .dedup(store.clone())
            .namespace("orders")
            .build()
            .unwrap();
        let b = builder()
            .dedup(store)
            .namespace("orders:eu")
            .build()
            .unwrap();
        let (_, t) = process(admit(&a, &body("eu:evt_1")).await);
        t.finish(200).await;
        let (_, t) = process(admit(&b, &body("evt_1")).await);
        t.finish(200).await;
    }

    #[test]
    fn content_length_over_the_limit_is_413() {
        let gate = builder().body_limit(100).build().unwrap();
        let u = UnsignedHeaders::default();
        assert!(gate.check_content_length(Some(100), u).is_ok());
        assert!(gate.check_content_length(None, u).is_ok());
        let r = gate.check_content_length(Some(101), u).unwrap_err();
        assert_eq!(r.status(), 413);
        assert_eq!(
            builder().body_limit(0).build().unwrap_err(),
            crate::ConfigError::ZeroBodyLimit
        );
        assert_eq!(
            builder().read_timeout(Duration::ZERO).build().unwrap_err(),
            crate::ConfigError::ZeroReadTimeout
        );
        assert_eq!(
            Gate::builder().build().unwrap_err(),
            crate::ConfigError::MissingSecret
        );
        assert_eq!(
            builder().previous_secret(" ").build().unwrap_err(),
            crate::ConfigError::EmptySecret
        );
    }

    #[test]
    fn replies_have_statuses_reasons_and_json() {
        assert_eq!(Reply::InFlight.retry_after(), Some(RETRY_AFTER_SECS));
        assert_eq!(Reply::AlreadyProcessed.retry_after(), None);
        let json: serde_json::Value =
            serde_json::from_str(&Reply::Refused(VerifyError::SignatureMismatch).to_json())
                .unwrap();
        assert_eq!(json["status"], 401);
        assert_eq!(json["code"], "signature_mismatch");
        assert_eq!(json["reason"], "signature does not match");
    }

    #[tokio::test]
    async fn changing_the_secrets_keeps_processed_events_processed() {
        let gate = gate();
        let b = body("evt_rotated");
        let (_, ticket) = process(admit(&gate, &b).await);
        ticket.finish(204).await;
        // Rotate to a new secret; the sender's retry, signed with the new one, is still a
        // duplicate: the dedup store was not touched.
        let new = Secret::new("whsec_gate_test_new_fedcba9876543210").unwrap();
        gate.secrets().rotate(new.clone());
        let header = Signer::new(new).sign(&b, NOW);
        let again = gate
            .admit([header.as_bytes()], UnsignedHeaders::default(), &b)
            .await;
        assert_eq!(reply(again), Reply::AlreadyProcessed);
        // A clone of the gate (what each worker holds) reads the same secrets.
        let (verified, ticket) = process(admit(&gate.clone(), &body("evt_old_secret")).await);
        assert_eq!(verified.secret, MatchedSecret::Previous(0));
        ticket.finish(204).await;
    }

    fn tenant_gate() -> Gate {
        let tenants = crate::Tenants::new(|tenant: String| async move {
            match tenant.as_str() {
                "acme" | "globex" => Ok(Some(crate::Tenant::new(
                    tenant.as_str(),
                    Secrets::new(Secret::new(format!("{SECRET}_{tenant}")).unwrap()),
                ))),
                "down" => Err(crate::ResolveError::new("database unreachable")),
                _ => Ok(None),
            }
        });
        Gate::builder()
            .tenants(tenants, TenantFrom::PathSegment(2))
            .clock(ManualClock::at_secs(NOW))
            .build()
            .unwrap()
    }

    async fn admit_tenant(
        gate: &Gate,
        path: &str,
        secret: &str,
        b: &[u8],
    ) -> Admission<MemoryStore> {
        let header = Signer::new(Secret::new(secret).unwrap()).sign(b, NOW);
        let unsigned = UnsignedHeaders::default();
        let head = match gate.check_head([header.as_bytes()], None, unsigned) {
            Ok(head) => head,
            Err(reply) => return Admission::Reply(reply),
        };
        let key = gate.tenant_from().unwrap().key(path, None);
        match gate.check_tenant(head, key.as_deref(), unsigned).await {
            Ok(head) => gate.admit_checked(&head, unsigned, b).await,
            Err(reply) => Admission::Reply(reply),
        }
    }

    #[tokio::test]
    async fn tenants_use_their_own_secrets_and_dedup_keys() {
        let gate = tenant_gate();
        let b = body("evt_shared");
        let acme = format!("{SECRET}_acme");
        let globex = format!("{SECRET}_globex");
        let (verified, ticket) =
            process(admit_tenant(&gate, "/hooks/mapping/acme", &acme, &b).await);
        assert_eq!(verified.tenant.as_deref(), Some("acme"));
        ticket.finish(204).await;
        // The same eventId for another tenant is another event.
        let (verified, ticket) =
            process(admit_tenant(&gate, "/hooks/mapping/globex", &globex, &b).await);
        assert_eq!(verified.tenant.as_deref(), Some("globex"));
        ticket.finish(204).await;
        assert_eq!(
            reply(admit_tenant(&gate, "/hooks/mapping/acme", &acme, &b).await),
            Reply::AlreadyProcessed
        );
        // One tenant's secret does not sign for another.
        let other = reply(admit_tenant(&gate, "/hooks/mapping/globex", &acme, &body("e2")).await);
        assert_eq!(other.status(), 401);
        // The gate's own (unused) secret signs for nobody.
        assert_eq!(
            gate.key_for_tenant("acme", "evt_1"),
            ":tenant:acme:id:evt_1"
        );
    }

    #[tokio::test]
    async fn unknown_tenants_are_404_and_lookup_failures_503() {
        let gate = tenant_gate();
        let acme = format!("{SECRET}_acme");
        for path in ["/hooks/mapping/nobody", "/hooks/mapping", "/hooks/mapping/"] {
            let r = reply(admit_tenant(&gate, path, &acme, &body("e")).await);
            assert_eq!((r.status(), r.reason()), (404, "not found"), "{path}");
        }
        let r = reply(admit_tenant(&gate, "/hooks/mapping/down", &acme, &body("e")).await);
        assert_eq!(r.status(), 503);
        // Without the tenant step, a tenant gate refuses rather than guess.
        let r = reply(admit(&gate, &body("e")).await);
        assert_eq!(r.status(), 404);
    }

    #[test]
    fn debug_masks_the_secret() {
        let shown = format!("{:?}", gate());
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
    }
}
