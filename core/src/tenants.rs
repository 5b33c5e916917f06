//! One endpoint, many tenants: each tenant's secrets, looked up by a key taken from the
//! request and cached.

use std::borrow::Cow;
use std::collections::HashMap;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{OnceCell, Semaphore};

use crate::{ConfigError, Secrets};

/// How many tenants' secrets [`Tenants`] keeps by default (and, apart, how many
/// "no such tenant" answers).
pub const DEFAULT_TENANT_CAPACITY: u64 = 10_000;

/// How long [`Tenants`] keeps a tenant's secrets by default: a change made without
/// [`Tenants::invalidate`] is seen within this time.
pub const DEFAULT_TENANT_TTL: Duration = Duration::from_secs(60);

/// How long [`Tenants`] remembers by default that a tenant does not exist: a tenant
/// added without [`Tenants::invalidate`] is served within this time.
pub const DEFAULT_UNKNOWN_TENANT_TTL: Duration = Duration::from_secs(5);

/// How long a lookup may take by default before its requests are answered 503 (well
/// within the 30 s the sender waits for an answer).
pub const DEFAULT_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// How many lookups may run at once by default; a request that would start one more is
/// answered 503 at once.
pub const DEFAULT_MAX_LOOKUPS: usize = 64;

/// A tenant as the resolver found it: its canonical id and its secrets.
///
/// The id, not the key taken from the request, names the tenant in
/// [`Verified::tenant`](crate::Verified::tenant) and in dedup keys: a resolver that
/// accepts several spellings of one tenant (`ACME` and `acme`, `acme.example.com.` and
/// `acme.example.com`) answers them all with the same id, so a delivery sent again under
/// another spelling is still a duplicate.
///
/// Cheap to clone (two reference counts).
#[derive(Clone)]
pub struct Tenant {
    id: Arc<str>,
    secrets: Secrets,
}

impl Tenant {
    /// The tenant `id` (canonical: the same for every key that names this tenant),
    /// verified with `secrets`.
    pub fn new(id: impl Into<Arc<str>>, secrets: Secrets) -> Self {
        Self {
            id: id.into(),
            secrets,
        }
    }

    /// The tenant's canonical id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The tenant's secrets.
    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }
}

impl fmt::Debug for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tenant")
            .field("id", &self.id)
            .field("secrets", &self.secrets)
            .finish()
    }
}

/// Looks up a tenant by the key taken from a request, usually in a database or a
/// secret manager. The app implements it; [`Tenants`] caches its answers.
///
/// Answer `Ok(None)` for a tenant that does not exist (the request is answered 404
/// before its body is read), and an error when the lookup itself failed (503: the sender
/// retries). The key is untrusted input (at most [`MAX_TENANT_KEY_LEN`] bytes; a host
/// arrives lowercased, without a trailing dot or a port): answer every spelling of a
/// tenant with the same [`Tenant::id`]. A closure `Fn(String) -> impl Future<Output =
/// Result<Option<Tenant>, ResolveError>>` is a resolver too.
///
/// A lookup that takes longer than the [timeout](Tenants::lookup_timeout) is dropped,
/// and one that panics is answered 503; neither is cached.
pub trait SecretsResolver: Send + Sync + 'static {
    /// The tenant named by `key`, `None` if there is no such tenant.
    fn resolve(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<Tenant>, ResolveError>> + Send;
}

impl<F, Fut> SecretsResolver for F
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<Tenant>, ResolveError>> + Send,
{
    fn resolve(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<Tenant>, ResolveError>> + Send {
        self(key.to_owned())
    }
}

/// A resolver could not answer: the request is answered 503 and the sender retries.
///
/// Cheap to clone: the requests that waited for one lookup all get its error.
#[derive(Debug, Clone)]
pub struct ResolveError(Arc<dyn Error + Send + Sync>);

impl ResolveError {
    /// Wraps the lookup's error. Make sure its message carries no secret or credential:
    /// it is logged.
    pub fn new(error: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self(Arc::from(error.into()))
    }
}

impl From<ConfigError> for ResolveError {
    /// A stored secret that is empty or blank.
    fn from(error: ConfigError) -> Self {
        Self::new(error)
    }
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tenant secrets lookup failed: {}", self.0)
    }
}

impl Error for ResolveError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.0)
    }
}

/// Why [`Tenants::lookup`] has no answer. Every kind is answered 503 (the sender
/// retries); none is cached.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum LookupError {
    /// The resolver returned this error.
    Failed(ResolveError),
    /// The resolver panicked.
    Panicked,
    /// The resolver did not answer within the [lookup timeout](Tenants::lookup_timeout).
    TimedOut(Duration),
    /// As many lookups as [allowed](Tenants::max_concurrent_lookups) were running.
    Busy(usize),
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed(error) => error.fmt(f),
            Self::Panicked => f.write_str("the tenant secrets resolver panicked"),
            Self::TimedOut(after) => write!(
                f,
                "tenant secrets lookup timed out after {} ms",
                after.as_millis()
            ),
            Self::Busy(max) => write!(
                f,
                "{max} tenant secrets lookups already running; raise max_concurrent_lookups if \
                 the resolver can take more"
            ),
        }
    }
}

impl Error for LookupError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Failed(error) => Some(error),
            _ => None,
        }
    }
}

type Lookup<'a> = Pin<Box<dyn Future<Output = Result<Option<Tenant>, ResolveError>> + Send + 'a>>;

trait DynResolver: Send + Sync {
    fn lookup<'a>(&'a self, key: &'a str) -> Lookup<'a>;
}

impl<R: SecretsResolver> DynResolver for R {
    fn lookup<'a>(&'a self, key: &'a str) -> Lookup<'a> {
        Box::pin(self.resolve(key))
    }
}

/// A [`SecretsResolver`] with bounded caches in front of it, so a request for a known
/// tenant costs no lookup, and bounds on the lookups themselves. Cheap to clone; clones
/// share the caches (set the options before cloning).
///
/// - A tenant found is cached for its TTL ([`DEFAULT_TENANT_TTL`]); "no such tenant" is
///   cached apart, for a shorter TTL ([`unknown_ttl`](Self::unknown_ttl)), so requests
///   for made-up tenants cannot turn into a lookup each, yet a tenant just added is not
///   refused for long. Each cache holds at most its capacity, whatever clients send.
/// - The cache holds each tenant's [`Secrets`] handle, so [`Secrets::rotate`] on a
///   handle the resolver returned takes effect at once; when the resolver would now
///   answer differently (a tenant added or removed, its secrets replaced in the
///   database), call [`invalidate`](Self::invalidate). A lookup that was running when
///   `invalidate` was called still answers the requests that waited for it, but its
///   answer is not cached.
/// - Concurrent requests for a tenant that is not cached share one lookup: when a
///   tenant's entry expires under load, the resolver is asked once, not once per
///   request (and a failed lookup's error goes to every request that waited for it).
///   A request dropped while it waits (its client hung up, a timeout layer) leaves
///   nothing behind: the last one to leave a lookup ends it.
/// - A lookup is given [`lookup_timeout`](Self::lookup_timeout)
///   ([`DEFAULT_LOOKUP_TIMEOUT`]); at most
///   [`max_concurrent_lookups`](Self::max_concurrent_lookups) ([`DEFAULT_MAX_LOOKUPS`])
///   run at once, and a request that would start one more is answered 503 at once. A
///   resolver that panics is a 503 too. Lookups need a Tokio runtime with its timer
///   enabled (as axum's and actix-web's are).
///
/// A tenant's previous secrets expire on the clock of the [`Secrets`] the resolver
/// returned ([`Secrets::clock`]; the system clock by default): the gate's own
/// [`clock`](crate::GateBuilder::clock) does not reach a handle the app owns, so a test with a
/// manual clock gives it to the tenants' handles too.
///
/// ```
/// use mapping_webhooks::{Gate, ResolveError, Secret, Secrets, Tenant, TenantFrom, Tenants};
///
/// let tenants = Tenants::new(|key: String| async move {
///     // Usually a database or secret-manager lookup, which also decides which
///     // spellings name a tenant (here: any case).
///     let id = key.to_ascii_lowercase();
///     Ok::<_, ResolveError>(match id.as_str() {
///         "acme" => Some(Tenant::new(
///             id,
///             Secrets::new(Secret::new("whsec_acme_0123456789abcdef01")?),
///         )),
///         _ => None,
///     })
/// });
/// // Requests to /hooks/mapping/{tenant}: the tenant is the third path segment.
/// let gate = Gate::for_tenants(tenants.clone(), TenantFrom::PathSegment(2));
/// // After changing a tenant's secrets in the database:
/// tenants.invalidate("acme");
/// # let _ = gate;
/// ```
#[derive(Clone)]
pub struct Tenants {
    resolver: Arc<dyn DynResolver>,
    capacity: u64,
    /// The tenants found, by the key they were asked for.
    found: moka::sync::Cache<Box<str>, Tenant>,
    /// The keys the resolver said no tenant has.
    unknown: moka::sync::Cache<Box<str>, ()>,
    /// The lookups running now, one per key, which concurrent misses wait for.
    flights: Arc<Mutex<HashMap<Box<str>, Arc<Flight>>>>,
    lookups: Arc<Semaphore>,
    max_lookups: usize,
    lookup_timeout: Duration,
}

/// One lookup, awaited by every request that missed the cache while it ran.
#[derive(Default)]
struct Flight {
    answer: OnceCell<Result<Option<Tenant>, LookupError>>,
    /// The requests waiting for it (changed only with the flights' lock held).
    waiting: AtomicUsize,
    /// Invalidated while it ran: its answer is not cached (changed and read only with
    /// the flights' lock held, as is the cache insert it guards).
    stale: AtomicBool,
}

impl Tenants {
    /// Tenants looked up by `resolver`, cached for [`DEFAULT_TENANT_TTL`], at most
    /// [`DEFAULT_TENANT_CAPACITY`] of them.
    pub fn new(resolver: impl SecretsResolver) -> Self {
        Self::with_cache(resolver, DEFAULT_TENANT_CAPACITY, DEFAULT_TENANT_TTL)
    }

    /// Tenants looked up by `resolver`, at most `capacity` of them cached, each for
    /// `ttl` (and at most `capacity` unknown ones, each for
    /// [`DEFAULT_UNKNOWN_TENANT_TTL`] or `ttl` if shorter).
    pub fn with_cache(resolver: impl SecretsResolver, capacity: u64, ttl: Duration) -> Self {
        Self {
            resolver: Arc::new(resolver),
            capacity,
            found: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
            unknown: unknown_cache(capacity, DEFAULT_UNKNOWN_TENANT_TTL.min(ttl)),
            flights: Arc::default(),
            lookups: Arc::new(Semaphore::new(DEFAULT_MAX_LOOKUPS)),
            max_lookups: DEFAULT_MAX_LOOKUPS,
            lookup_timeout: DEFAULT_LOOKUP_TIMEOUT,
        }
    }

    /// How long "no such tenant" is remembered ([`DEFAULT_UNKNOWN_TENANT_TTL`] by
    /// default): a tenant added to the database is refused 404 for at most this long
    /// (call [`invalidate`](Self::invalidate) to serve it at once). Forgets the unknown
    /// tenants cached so far.
    #[must_use]
    pub fn unknown_ttl(mut self, ttl: Duration) -> Self {
        self.unknown = unknown_cache(self.capacity, ttl);
        self
    }

    /// The longest a lookup may take ([`DEFAULT_LOOKUP_TIMEOUT`] by default): after it,
    /// the lookup is dropped and its requests are answered 503 with `Retry-After`.
    #[must_use]
    pub fn lookup_timeout(mut self, timeout: Duration) -> Self {
        self.lookup_timeout = timeout;
        self
    }

    /// How many lookups may run at once ([`DEFAULT_MAX_LOOKUPS`] by default; at least
    /// 1): a request for a tenant that is neither cached nor being looked up, arriving
    /// while this many lookups run, is answered 503 with `Retry-After` at once.
    #[must_use]
    pub fn max_concurrent_lookups(mut self, max: usize) -> Self {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        self.lookups = Arc::new(Semaphore::new(max));
        self.max_lookups = max;
        self
    }

    /// Forgets what the caches hold for `tenant` (a key, or a tenant's id: every key
    /// cached with that id is forgotten too): the next request looks it up again.
    ///
    /// A lookup already running for that key when this is called is not cached, and
    /// later requests do not wait for it: they start their own.
    pub fn invalidate(&self, tenant: &str) {
        let mut flights = self.flights();
        if let Some(flight) = flights.remove(tenant) {
            flight.stale.store(true, Ordering::Relaxed);
        }
        self.found.invalidate(tenant);
        self.unknown.invalidate(tenant);
        // Other spellings of the same tenant. Rare (an admin's change): a scan is fine.
        for (key, found) in &self.found {
            if &*found.id == tenant {
                self.found.invalidate(&*key);
            }
        }
        drop(flights);
    }

    /// Forgets every cached tenant; no lookup running now is cached.
    pub fn invalidate_all(&self) {
        let mut flights = self.flights();
        for (_, flight) in flights.drain() {
            flight.stale.store(true, Ordering::Relaxed);
        }
        self.found.invalidate_all();
        self.unknown.invalidate_all();
        drop(flights);
    }

    /// The tenant named by `key`: from the caches, else from the resolver (and then
    /// cached).
    ///
    /// # Errors
    ///
    /// The lookup failed, panicked, timed out, or too many were running (see
    /// [`LookupError`]). Not cached: the next request asks again.
    pub async fn lookup(&self, key: &str) -> Result<Option<Tenant>, LookupError> {
        if let Some(cached) = self.cached(key) {
            return Ok(cached);
        }
        let joined = self.join(key);
        // Runs the lookup once; the others wait for its answer. If the request running
        // it is dropped, a waiting one runs it instead.
        let answer = joined
            .flight
            .answer
            .get_or_init(|| self.run(key, &joined.flight));
        // Each request waits at most the timeout, even one that took a lookup over.
        match tokio::time::timeout(self.lookup_timeout, answer).await {
            Ok(answer) => answer.clone(),
            Err(_elapsed) => Err(LookupError::TimedOut(self.lookup_timeout)),
        }
        // `joined` leaves the flight here, or wherever this future is dropped.
    }

    /// Joins the flight for `key`, starting one if none is running.
    fn join<'a>(&'a self, key: &'a str) -> Joined<'a> {
        let mut flights = self.flights();
        let flight = flights.entry(key.into()).or_default().clone();
        flight.waiting.fetch_add(1, Ordering::Relaxed);
        drop(flights);
        Joined {
            tenants: self,
            key,
            flight,
        }
    }

    /// One lookup: the resolver's answer within the timeout, cached unless invalidated
    /// meanwhile.
    async fn run(&self, key: &str, flight: &Flight) -> Result<Option<Tenant>, LookupError> {
        // A lookup that ended just before this flight began cached its answer.
        if let Some(cached) = self.cached(key) {
            return Ok(cached);
        }
        // Held until the lookup ends or is dropped.
        let Ok(_permit) = self.lookups.try_acquire() else {
            return Err(LookupError::Busy(self.max_lookups));
        };
        // A resolver may panic making its future, or polling it.
        let Ok(lookup) = std::panic::catch_unwind(AssertUnwindSafe(|| self.resolver.lookup(key)))
        else {
            return Err(LookupError::Panicked);
        };
        let found = match tokio::time::timeout(self.lookup_timeout, CatchUnwind(lookup)).await {
            Ok(Ok(Ok(found))) => found,
            Ok(Ok(Err(error))) => return Err(LookupError::Failed(error)),
            Ok(Err(Panicked)) => return Err(LookupError::Panicked),
            Err(_elapsed) => return Err(LookupError::TimedOut(self.lookup_timeout)),
        };
        let flights = self.flights();
        if !flight.stale.load(Ordering::Relaxed) {
            match &found {
                Some(tenant) => {
                    self.unknown.invalidate(key);
                    self.found.insert(key.into(), tenant.clone());
                }
                None => self.unknown.insert(key.into(), ()),
            }
        }
        drop(flights);
        Ok(found)
    }

    fn flights(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Arc<Flight>>> {
        // Nothing panics while holding the lock; a poisoned map is still consistent.
        self.flights.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached answer for `key`, without asking the resolver.
    pub(crate) fn cached(&self, key: &str) -> Option<Option<Tenant>> {
        if let Some(found) = self.found.get(key) {
            return Some(Some(found));
        }
        self.unknown.get(key).map(|()| None)
    }

    /// How many lookups are running or awaited now (for tests: it must come back to
    /// zero however the requests that started them ended).
    #[doc(hidden)]
    pub fn lookups_in_flight(&self) -> usize {
        self.flights().len()
    }
}

fn unknown_cache(capacity: u64, ttl: Duration) -> moka::sync::Cache<Box<str>, ()> {
    moka::sync::Cache::builder()
        .max_capacity(capacity)
        .time_to_live(ttl)
        .build()
}

/// A request's place in a flight. Leaving it (the request got its answer, or was
/// dropped) removes the flight once it has an answer or nobody waits for it any more,
/// so a lookup whose clients all hung up leaves no entry behind.
struct Joined<'a> {
    tenants: &'a Tenants,
    key: &'a str,
    flight: Arc<Flight>,
}

impl Drop for Joined<'_> {
    fn drop(&mut self) {
        let mut flights = self.tenants.flights();
        let left = self.flight.waiting.fetch_sub(1, Ordering::Relaxed) - 1;
        let current = flights
            .get(self.key)
            .is_some_and(|current| Arc::ptr_eq(current, &self.flight));
        if current && (left == 0 || self.flight.answer.initialized()) {
            flights.remove(self.key);
        }
    }
}

/// The resolver panicked.
struct Panicked;

/// Turns a panic while polling the lookup into [`Panicked`], so a resolver's bug is a
/// 503 for its requests rather than a dropped connection.
struct CatchUnwind<'a>(Lookup<'a>);

impl Future for CatchUnwind<'_> {
    type Output = Result<Result<Option<Tenant>, ResolveError>, Panicked>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // The lookup is never polled again after a panic: nothing sees a broken state.
        let lookup = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| lookup.as_mut().poll(cx))) {
            Ok(Poll::Ready(answer)) => Poll::Ready(Ok(answer)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_panic) => Poll::Ready(Err(Panicked)),
        }
    }
}

impl fmt::Debug for Tenants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tenants")
            .field("cached", &self.found.entry_count())
            .field("cached_unknown", &self.unknown.entry_count())
            .field("lookup_timeout", &self.lookup_timeout)
            .field("max_concurrent_lookups", &self.max_lookups)
            .field("resolver", &format_args!("<fn>"))
            .finish()
    }
}

/// Where a request's tenant key is: framework-free descriptions the adapters apply to
/// their requests. Each adapter's `tenant_key(f)` takes a function of its own request
/// type instead (a path parameter, a header, a subdomain rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TenantFrom {
    /// The path's segment at this index, counting from 0 and skipping empty segments:
    /// `PathSegment(2)` of `/hooks/mapping/acme` is `acme`, as sent (not decoded; the
    /// resolver decides which spellings name a tenant). (With axum's `nest`, the layer
    /// sees the path without the nest's prefix.)
    PathSegment(usize),
    /// The request's host, normalized as hostnames compare: lowercase, without a
    /// trailing dot and without the port (`ACME.hooks.example.com.:443` is
    /// `acme.hooks.example.com`).
    Host,
}

impl TenantFrom {
    /// Applies this rule to a request's path and host. Borrowed unless a host had to
    /// be lowercased.
    pub fn key<'a>(&self, path: &'a str, host: Option<&'a str>) -> Option<Cow<'a, str>> {
        let key = match *self {
            Self::PathSegment(index) => path
                .split('/')
                .filter(|s| !s.is_empty())
                .nth(index)
                .map(Cow::Borrowed),
            Self::Host => host.map(normalize_host),
        };
        key.filter(|k| !k.is_empty() && k.len() <= MAX_TENANT_KEY_LEN)
    }
}

/// A host as hostnames compare: without the port, without one trailing dot, lowercase.
fn normalize_host(host: &str) -> Cow<'_, str> {
    let name = match host.rsplit_once(':') {
        // Keep an IPv6 literal's colons; drop a port.
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// The longest tenant key looked up; a longer one is an unknown tenant (so no request
/// makes the cache or the resolver handle a large key).
pub const MAX_TENANT_KEY_LEN: usize = 128;

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::Secret;

    fn acme() -> Tenant {
        Tenant::new("acme", Secrets::new(Secret::new("whsec_acme").unwrap()))
    }

    fn counting() -> (Tenants, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let tenants = Tenants::new(move |tenant: String| {
            let seen = seen.clone();
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                match tenant.as_str() {
                    "acme" => Ok(Some(acme())),
                    "down" => Err(ResolveError::new("database unreachable")),
                    _ => Ok(None),
                }
            }
        });
        (tenants, calls)
    }

    #[tokio::test]
    async fn answers_are_cached_until_invalidated() {
        let (tenants, calls) = counting();
        for _ in 0..3 {
            assert!(tenants.lookup("acme").await.unwrap().is_some());
            assert!(tenants.lookup("nobody").await.unwrap().is_none());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one lookup each");
        tenants.invalidate("acme");
        assert!(tenants.lookup("acme").await.unwrap().is_some());
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // Errors are not cached.
        assert!(tenants.lookup("down").await.is_err());
        assert!(tenants.lookup("down").await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 5);
    }

    /// A resolver that counts its calls and answers only when `release` is notified.
    fn held() -> (Tenants, Arc<AtomicUsize>, Arc<tokio::sync::Notify>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(tokio::sync::Notify::new());
        let (seen, gate) = (calls.clone(), release.clone());
        let tenants = Tenants::new(move |tenant: String| {
            let (seen, gate) = (seen.clone(), gate.clone());
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                gate.notified().await;
                match tenant.as_str() {
                    "acme" => Ok(Some(acme())),
                    _ => Err(ResolveError::new("database unreachable")),
                }
            }
        });
        (tenants, calls, release)
    }

    /// Lets every spawned task run until it waits (the runtime has one thread).
    async fn settle() {
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn concurrent_misses_share_one_lookup_and_its_error() {
        let (tenants, calls, release) = held();
        for tenant in ["acme", "down"] {
            let before = calls.load(Ordering::SeqCst);
            let waiting: Vec<_> = (0..50)
                .map(|_| {
                    let tenants = tenants.clone();
                    tokio::spawn(async move { tenants.lookup(tenant).await })
                })
                .collect();
            settle().await;
            assert_eq!(
                calls.load(Ordering::SeqCst),
                before + 1,
                "{tenant}: one lookup"
            );
            release.notify_waiters();
            for task in waiting {
                let answer = task.await.unwrap();
                assert_eq!(answer.is_ok(), tenant == "acme", "{tenant}");
            }
            assert_eq!(calls.load(Ordering::SeqCst), before + 1, "{tenant}");
        }
        // The answer is cached; the error is not, and its flight is over.
        assert!(tenants.lookup("acme").await.unwrap().is_some());
        let retry = tokio::spawn({
            let tenants = tenants.clone();
            async move { tenants.lookup("down").await }
        });
        settle().await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "a new lookup after an error"
        );
        release.notify_waiters();
        assert!(retry.await.unwrap().is_err());
        assert_eq!(tenants.lookups_in_flight(), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_dropped_lookup_is_taken_over_by_a_waiting_request() {
        let (tenants, calls, release) = held();
        let first = tokio::spawn({
            let tenants = tenants.clone();
            async move { tenants.lookup("acme").await }
        });
        settle().await;
        let second = tokio::spawn({
            let tenants = tenants.clone();
            async move { tenants.lookup("acme").await }
        });
        settle().await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // The request running the lookup goes away (its client disconnected).
        first.abort();
        settle().await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "the waiting one looks up");
        release.notify_waiters();
        assert!(second.await.unwrap().unwrap().is_some());
        assert_eq!(tenants.lookups_in_flight(), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn after_invalidate_requests_do_not_wait_for_the_old_lookup() {
        let (tenants, calls, release) = held();
        let old = tokio::spawn({
            let tenants = tenants.clone();
            async move { tenants.lookup("acme").await }
        });
        settle().await;
        tenants.invalidate("acme");
        let new = tokio::spawn({
            let tenants = tenants.clone();
            async move { tenants.lookup("acme").await }
        });
        settle().await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "a lookup of its own");
        release.notify_waiters();
        assert!(old.await.unwrap().unwrap().is_some());
        assert!(new.await.unwrap().unwrap().is_some());
    }

    /// A resolver whose every lookup waits forever, counting its calls.
    fn hanging() -> (Tenants, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let tenants = Tenants::new(move |_key: String| {
            let seen = seen.clone();
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                std::future::pending().await
            }
        });
        (tenants, calls)
    }

    /// Requests dropped while their lookup runs (a client hung up, a timeout layer)
    /// leave no flight behind, and free their lookup's slot.
    #[tokio::test(flavor = "current_thread")]
    async fn lookups_dropped_mid_flight_leave_nothing_behind() {
        const DROPPED: usize = 100_000;
        let (tenants, calls) = hanging();
        let tenants = tenants.max_concurrent_lookups(4);
        for i in 0..DROPPED {
            // Polled once (the lookup starts and waits), then dropped, as a timeout
            // around it would (without waiting for a timer tick each time).
            let key = format!("made_up_{i}");
            let lookup = std::pin::pin!(tenants.lookup(&key));
            assert!(futures_poll_once(lookup).await, "{i}: answered at once");
            // A new task turn: Tokio's cooperative budget would stop the next polls.
            tokio::task::yield_now().await;
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            DROPPED,
            "every lookup started"
        );
        assert_eq!(
            tenants.lookups_in_flight(),
            0,
            "flights left after {DROPPED} dropped lookups"
        );
        assert_eq!(tenants.lookups.available_permits(), 4, "every slot is free");
        // Waiters of one lookup: the flight lasts while one of them is left.
        let first = tenants.lookup("acme");
        let second = tenants.lookup("acme");
        let (mut first, mut second) = (Box::pin(first), Box::pin(second));
        assert!(futures_poll_once(first.as_mut()).await);
        assert!(futures_poll_once(second.as_mut()).await);
        assert_eq!(tenants.lookups_in_flight(), 1);
        drop(first);
        assert_eq!(tenants.lookups_in_flight(), 1, "the second still waits");
        drop(second);
        assert_eq!(tenants.lookups_in_flight(), 0);
    }

    /// Polls `future` once; true if it is still pending.
    async fn futures_poll_once<F: Future>(future: Pin<&mut F>) -> bool {
        let mut future = Some(future);
        std::future::poll_fn(|cx| {
            let pending = future.take().unwrap().poll(cx).is_pending();
            Poll::Ready(pending)
        })
        .await
    }

    /// A lookup that was running when its tenant was invalidated answers its requests,
    /// but its (stale) answer is not cached: the next request asks again.
    #[tokio::test(flavor = "current_thread")]
    async fn a_lookup_running_across_invalidate_is_not_cached() {
        // The database: acme is unknown at first, added while the first lookup runs.
        let added = Arc::new(AtomicBool::new(false));
        let release = Arc::new(tokio::sync::Notify::new());
        let calls = Arc::new(AtomicUsize::new(0));
        let (db, gate, seen) = (added.clone(), release.clone(), calls.clone());
        let tenants = Tenants::new(move |_key: String| {
            let (db, gate, seen) = (db.clone(), gate.clone(), seen.clone());
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                let exists = db.load(Ordering::SeqCst);
                gate.notified().await;
                Ok(exists.then(acme))
            }
        });
        let old = tokio::spawn({
            let tenants = tenants.clone();
            async move { tenants.lookup("acme").await }
        });
        settle().await;
        added.store(true, Ordering::SeqCst);
        tenants.invalidate("acme");
        release.notify_waiters();
        assert!(
            old.await.unwrap().unwrap().is_none(),
            "read before the change"
        );
        assert!(
            tenants.cached("acme").is_none(),
            "the stale answer was cached: {:?}",
            tenants.cached("acme").map(|a| a.is_some())
        );
        let new = tokio::spawn({
            let tenants = tenants.clone();
            async move { tenants.lookup("acme").await }
        });
        settle().await;
        release.notify_waiters();
        assert!(new.await.unwrap().unwrap().is_some());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(tenants.cached("acme").unwrap().is_some());
        // invalidate_all too.
        added.store(false, Ordering::SeqCst);
        tenants.invalidate("acme");
        let old = tokio::spawn({
            let tenants = tenants.clone();
            async move { tenants.lookup("acme").await }
        });
        settle().await;
        tenants.invalidate_all();
        release.notify_waiters();
        assert!(old.await.unwrap().unwrap().is_none());
        assert!(tenants.cached("acme").is_none());
    }

    /// "No such tenant" is remembered for its own, shorter TTL: a tenant added to the
    /// database is served soon, while a found one stays cached.
    #[tokio::test]
    async fn unknown_tenants_are_forgotten_sooner_than_known_ones() {
        let added = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicUsize::new(0));
        let (db, seen) = (added.clone(), calls.clone());
        let tenants = Tenants::with_cache(
            move |key: String| {
                let (db, seen) = (db.clone(), seen.clone());
                async move {
                    seen.fetch_add(1, Ordering::SeqCst);
                    Ok((key == "known" || db.load(Ordering::SeqCst)).then(acme))
                }
            },
            100,
            Duration::from_secs(60),
        )
        .unknown_ttl(Duration::from_millis(200));
        assert!(tenants.lookup("known").await.unwrap().is_some());
        assert!(tenants.lookup("acme").await.unwrap().is_none());
        assert!(tenants.lookup("acme").await.unwrap().is_none(), "cached");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        added.store(true, Ordering::SeqCst);
        // Bounded: 100 tries 50 ms apart (the found answer lives 60 s).
        let mut tries = 0;
        while tenants.lookup("acme").await.unwrap().is_none() {
            tries += 1;
            assert!(tries < 100, "still unknown after {tries} tries");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(tenants.lookup("known").await.unwrap().is_some());
        assert_eq!(calls.load(Ordering::SeqCst), 3, "known stayed cached");
    }

    /// A hanging resolver times out, a panicking one is an error (not an unwind), too
    /// many lookups at once are refused at once; none of them is cached or left behind.
    #[tokio::test(flavor = "current_thread")]
    async fn slow_panicking_and_excess_lookups_are_errors() {
        let release = Arc::new(tokio::sync::Notify::new());
        let gate = release.clone();
        let tenants = Tenants::new(move |key: String| {
            let gate = gate.clone();
            assert_ne!(key, "early", "a resolver bug before its future");
            async move {
                match key.as_str() {
                    "boom" => panic!("a resolver bug"),
                    "acme" => Ok(Some(acme())),
                    _ => {
                        gate.notified().await;
                        Ok(None)
                    }
                }
            }
        })
        .lookup_timeout(Duration::from_millis(50))
        .max_concurrent_lookups(2);
        for key in ["boom", "boom", "early"] {
            let panicked = tenants.lookup(key).await;
            assert!(
                matches!(panicked, Err(LookupError::Panicked)),
                "{key}: {panicked:?}"
            );
        }
        let slow = tenants.lookup("slow").await;
        assert!(matches!(slow, Err(LookupError::TimedOut(_))), "{slow:?}");
        assert_eq!(tenants.lookups_in_flight(), 0);
        // Two lookups hold both slots; a third key is refused without waiting.
        let tenants = tenants.lookup_timeout(Duration::from_secs(60));
        let held: Vec<_> = ["slow1", "slow2"]
            .into_iter()
            .map(|key| {
                let tenants = tenants.clone();
                tokio::spawn(async move { tenants.lookup(key).await })
            })
            .collect();
        settle().await;
        let busy = tenants.lookup("slow3").await;
        assert!(matches!(busy, Err(LookupError::Busy(2))), "{busy:?}");
        // A cached tenant needs no slot.
        release.notify_waiters();
        for task in held {
            assert!(task.await.unwrap().unwrap().is_none());
        }
        assert!(tenants.lookup("acme").await.unwrap().is_some());
        assert_eq!(tenants.lookups_in_flight(), 0);
    }

    /// Spellings of one tenant cached under their keys are all forgotten by
    /// invalidating its id.
    #[tokio::test]
    async fn invalidating_an_id_forgets_every_spelling() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let tenants = Tenants::new(move |key: String| {
            let seen = seen.clone();
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                Ok(key.eq_ignore_ascii_case("acme").then(acme))
            }
        });
        for key in ["acme", "ACME", "Acme"] {
            assert_eq!(tenants.lookup(key).await.unwrap().unwrap().id(), "acme");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        tenants.invalidate("acme");
        for key in ["acme", "ACME", "Acme"] {
            assert!(tenants.cached(key).is_none(), "{key}");
        }
    }

    #[test]
    fn tenant_keys_from_paths_and_hosts() {
        let seg = TenantFrom::PathSegment(2);
        let key = |from: TenantFrom, path: &str, host: Option<&str>| {
            from.key(path, host).map(Cow::into_owned)
        };
        assert_eq!(
            key(seg, "/hooks/mapping/acme", None).as_deref(),
            Some("acme")
        );
        assert_eq!(
            key(seg, "//hooks/mapping/acme/", None).as_deref(),
            Some("acme")
        );
        assert_eq!(key(seg, "/hooks/mapping", None), None);
        assert_eq!(key(seg, &format!("/a/b/{}", "x".repeat(129)), None), None);
        let host = TenantFrom::Host;
        for spelling in [
            "acme.example.com",
            "acme.example.com:8080",
            "ACME.Example.com",
            "acme.example.com.",
            "Acme.Example.Com.:443",
            "acme.example.com:80",
        ] {
            assert_eq!(
                key(host, "/", Some(spelling)).as_deref(),
                Some("acme.example.com"),
                "{spelling}"
            );
        }
        // No allocation when the host is already in its normal form.
        assert!(matches!(
            host.key("/", Some("acme.example.com:443")),
            Some(Cow::Borrowed(_))
        ));
        assert_eq!(key(host, "/", Some("[::1]:80")).as_deref(), Some("[::1]"));
        assert_eq!(key(host, "/", Some(".")), None);
        assert_eq!(key(host, "/", None), None);
    }
}
