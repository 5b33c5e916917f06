//! One endpoint, many tenants: each tenant's secrets, looked up by a key taken from the
//! request and cached.

use std::collections::HashMap;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::{ConfigError, Secrets};

/// How many tenants' secrets [`Tenants`] keeps by default.
pub const DEFAULT_TENANT_CAPACITY: u64 = 10_000;

/// How long [`Tenants`] keeps a lookup's answer by default (found or not): a change made
/// without [`Tenants::invalidate`] is seen within this time.
pub const DEFAULT_TENANT_TTL: Duration = Duration::from_secs(60);

/// Looks up a tenant's secrets, usually in a database or a secret manager. The app
/// implements it; [`Tenants`] caches its answers.
///
/// Answer `Ok(None)` for a tenant that does not exist (the request is answered 404
/// before its body is read), and an error when the lookup itself failed (503: the sender
/// retries). A closure `Fn(String) -> impl Future<Output = Result<Option<Secrets>,
/// ResolveError>>` is a resolver too.
pub trait SecretsResolver: Send + Sync + 'static {
    /// The secrets of `tenant`, `None` if there is no such tenant.
    fn resolve(
        &self,
        tenant: &str,
    ) -> impl Future<Output = Result<Option<Secrets>, ResolveError>> + Send;
}

impl<F, Fut> SecretsResolver for F
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<Secrets>, ResolveError>> + Send,
{
    fn resolve(
        &self,
        tenant: &str,
    ) -> impl Future<Output = Result<Option<Secrets>, ResolveError>> + Send {
        self(tenant.to_owned())
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

type Lookup<'a> = Pin<Box<dyn Future<Output = Result<Option<Secrets>, ResolveError>> + Send + 'a>>;

trait DynResolver: Send + Sync {
    fn lookup<'a>(&'a self, tenant: &'a str) -> Lookup<'a>;
}

impl<R: SecretsResolver> DynResolver for R {
    fn lookup<'a>(&'a self, tenant: &'a str) -> Lookup<'a> {
        Box::pin(self.resolve(tenant))
    }
}

/// A [`SecretsResolver`] with a bounded cache in front of it, so a request for a known
/// tenant costs no lookup. Cheap to clone; clones share the cache.
///
/// Both answers are cached for the TTL: a tenant's secrets, and "no such tenant" (so
/// requests for made-up tenants cannot turn into a lookup each). The cache holds each
/// tenant's [`Secrets`] handle, so [`Secrets::rotate`] on a handle the resolver returned
/// takes effect at once; when the resolver would now answer differently (a tenant added
/// or removed, its secrets replaced in the database), call [`invalidate`](Self::invalidate).
///
/// A tenant's previous secrets expire on the clock of the [`Secrets`] the resolver
/// returned ([`Secrets::clock`]; the system clock by default): the gate's own
/// [`clock`](crate::Gate::clock) does not reach a handle the app owns, so a test with a
/// manual clock gives it to the tenants' handles too.
///
/// Concurrent requests for a tenant that is not cached share one lookup: when a
/// tenant's entry expires under load, the resolver is asked once, not once per request
/// (and a failed lookup's error goes to every request that waited for it).
///
/// ```
/// use mapping_webhooks::{Gate, ResolveError, Secret, Secrets, TenantFrom, Tenants};
///
/// let tenants = Tenants::new(|tenant: String| async move {
///     // Usually a database or secret-manager lookup.
///     Ok::<_, ResolveError>(match tenant.as_str() {
///         "acme" => Some(Secrets::new(Secret::new("whsec_acme_0123456789abcdef01")?)),
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
    cache: moka::sync::Cache<Box<str>, Option<Secrets>>,
    /// The lookups running now, one per tenant, which concurrent misses wait for.
    flights: Arc<Mutex<HashMap<Box<str>, Arc<Flight>>>>,
}

/// One lookup, awaited by every request that missed the cache while it ran.
type Flight = OnceCell<Result<Option<Secrets>, ResolveError>>;

impl Tenants {
    /// Tenants looked up by `resolver`, cached for [`DEFAULT_TENANT_TTL`], at most
    /// [`DEFAULT_TENANT_CAPACITY`] of them.
    pub fn new(resolver: impl SecretsResolver) -> Self {
        Self::with_cache(resolver, DEFAULT_TENANT_CAPACITY, DEFAULT_TENANT_TTL)
    }

    /// Tenants looked up by `resolver`, at most `capacity` of them cached, each for
    /// `ttl`.
    pub fn with_cache(resolver: impl SecretsResolver, capacity: u64, ttl: Duration) -> Self {
        Self {
            resolver: Arc::new(resolver),
            cache: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
            flights: Arc::default(),
        }
    }

    /// Forgets what the cache holds for `tenant`: the next request looks it up again.
    ///
    /// A lookup already running when this is called is not waited for by later
    /// requests: they start their own.
    pub fn invalidate(&self, tenant: &str) {
        self.flights().remove(tenant);
        self.cache.invalidate(tenant);
    }

    /// Forgets every cached tenant.
    pub fn invalidate_all(&self) {
        self.flights().clear();
        self.cache.invalidate_all();
    }

    /// The secrets of `tenant`: from the cache, else from the resolver (and then cached).
    ///
    /// # Errors
    ///
    /// The resolver's error (not cached: the next request asks again).
    pub async fn secrets_for(&self, tenant: &str) -> Result<Option<Secrets>, ResolveError> {
        if let Some(cached) = self.cache.get(tenant) {
            return Ok(cached);
        }
        let flight = self.flights().entry(tenant.into()).or_default().clone();
        // Runs the lookup once; the others wait for its answer. If the request running
        // it is dropped, a waiting one runs it instead.
        let answer = flight
            .get_or_init(|| async {
                // A lookup that ended just before this flight began cached its answer.
                if let Some(cached) = self.cache.get(tenant) {
                    return Ok(cached);
                }
                let found = self.resolver.lookup(tenant).await?;
                self.cache.insert(tenant.into(), found.clone());
                Ok(found)
            })
            .await
            .clone();
        // The flight is over: the next miss (after an error, an invalidation or the TTL)
        // starts a new one. Each request that waited tries; the first removes it.
        let mut flights = self.flights();
        if flights
            .get(tenant)
            .is_some_and(|current| Arc::ptr_eq(current, &flight))
        {
            flights.remove(tenant);
        }
        answer
    }

    fn flights(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Arc<Flight>>> {
        // Nothing panics while holding the lock; a poisoned map is still consistent.
        self.flights.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached answer for `tenant`, without asking the resolver.
    pub(crate) fn cached(&self, tenant: &str) -> Option<Option<Secrets>> {
        self.cache.get(tenant)
    }
}

impl fmt::Debug for Tenants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tenants")
            .field("cached", &self.cache.entry_count())
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
    /// `PathSegment(2)` of `/hooks/mapping/acme` is `acme`. (With axum's `nest`, the
    /// layer sees the path without the nest's prefix.)
    PathSegment(usize),
    /// The request's host, without the port (`acme.hooks.example.com`).
    Host,
}

impl TenantFrom {
    /// Applies this rule to a request's path and host.
    pub fn key<'a>(&self, path: &'a str, host: Option<&'a str>) -> Option<&'a str> {
        let key = match *self {
            Self::PathSegment(index) => path.split('/').filter(|s| !s.is_empty()).nth(index),
            Self::Host => host.map(|h| match h.rsplit_once(':') {
                // Keep an IPv6 literal's colons; drop a port.
                Some((name, port))
                    if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    name
                }
                _ => h,
            }),
        };
        key.filter(|k| !k.is_empty() && k.len() <= MAX_TENANT_KEY_LEN)
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

    fn counting() -> (Tenants, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let tenants = Tenants::new(move |tenant: String| {
            let seen = seen.clone();
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                match tenant.as_str() {
                    "acme" => Ok(Some(Secrets::new(Secret::new("whsec_acme").unwrap()))),
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
            assert!(tenants.secrets_for("acme").await.unwrap().is_some());
            assert!(tenants.secrets_for("nobody").await.unwrap().is_none());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one lookup each");
        tenants.invalidate("acme");
        assert!(tenants.secrets_for("acme").await.unwrap().is_some());
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // Errors are not cached.
        assert!(tenants.secrets_for("down").await.is_err());
        assert!(tenants.secrets_for("down").await.is_err());
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
                    "acme" => Ok(Some(Secrets::new(Secret::new("whsec_acme").unwrap()))),
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
                    tokio::spawn(async move { tenants.secrets_for(tenant).await })
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
        assert!(tenants.secrets_for("acme").await.unwrap().is_some());
        let retry = tokio::spawn({
            let tenants = tenants.clone();
            async move { tenants.secrets_for("down").await }
        });
        settle().await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "a new lookup after an error"
        );
        release.notify_waiters();
        assert!(retry.await.unwrap().is_err());
        assert!(tenants.flights().is_empty());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_dropped_lookup_is_taken_over_by_a_waiting_request() {
        let (tenants, calls, release) = held();
        let first = tokio::spawn({
            let tenants = tenants.clone();
            async move { tenants.secrets_for("acme").await }
        });
        settle().await;
        let second = tokio::spawn({
            let tenants = tenants.clone();
            async move { tenants.secrets_for("acme").await }
        });
        settle().await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // The request running the lookup goes away (its client disconnected).
        first.abort();
        settle().await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "the waiting one looks up");
        release.notify_waiters();
        assert!(second.await.unwrap().unwrap().is_some());
        assert!(tenants.flights().is_empty());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn after_invalidate_requests_do_not_wait_for_the_old_lookup() {
        let (tenants, calls, release) = held();
        let old = tokio::spawn({
            let tenants = tenants.clone();
            async move { tenants.secrets_for("acme").await }
        });
        settle().await;
        tenants.invalidate("acme");
        let new = tokio::spawn({
            let tenants = tenants.clone();
            async move { tenants.secrets_for("acme").await }
        });
        settle().await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "a lookup of its own");
        release.notify_waiters();
        assert!(old.await.unwrap().unwrap().is_some());
        assert!(new.await.unwrap().unwrap().is_some());
    }

    #[test]
    fn tenant_keys_from_paths_and_hosts() {
        let seg = TenantFrom::PathSegment(2);
        assert_eq!(seg.key("/hooks/mapping/acme", None), Some("acme"));
        assert_eq!(seg.key("//hooks/mapping/acme/", None), Some("acme"));
        assert_eq!(seg.key("/hooks/mapping", None), None);
        assert_eq!(seg.key(&format!("/a/b/{}", "x".repeat(129)), None), None);
        let host = TenantFrom::Host;
        assert_eq!(
            host.key("/", Some("acme.example.com:8080")),
            Some("acme.example.com")
        );
        assert_eq!(
            host.key("/", Some("acme.example.com")),
            Some("acme.example.com")
        );
        assert_eq!(host.key("/", Some("[::1]:80")), Some("[::1]"));
        assert_eq!(host.key("/", None), None);
    }
}
