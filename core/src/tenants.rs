//! One endpoint, many tenants: each tenant's secrets, looked up by a key taken from the
//! request and cached.

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

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
#[derive(Debug)]
pub struct ResolveError(Box<dyn Error + Send + Sync>);

impl ResolveError {
    /// Wraps the lookup's error. Make sure its message carries no secret or credential:
    /// it is logged.
    pub fn new(error: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self(error.into())
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
}

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
        }
    }

    /// Forgets what the cache holds for `tenant`: the next request looks it up again.
    pub fn invalidate(&self, tenant: &str) {
        self.cache.invalidate(tenant);
    }

    /// Forgets every cached tenant.
    pub fn invalidate_all(&self) {
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
        let found = self.resolver.lookup(tenant).await?;
        self.cache.insert(tenant.into(), found.clone());
        Ok(found)
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
