//! [`GateBuilder`]: every option of a [`Gate`], checked together at [`build`](GateBuilder::build).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::{DEFAULT_BODY_LIMIT, DEFAULT_READ_TIMEOUT, Gate, OnStoreError};
use crate::dedup::{DedupStore, MemoryStore};
use crate::scheme::Scheme;
use crate::{Clock, ConfigError, Observer, Secret, Secrets, TenantFrom, Tenants};

/// Builds a [`Gate`]: [`Gate::builder`], the options, then [`build`](Self::build), which
/// checks them all at once and says what is wrong.
///
/// Every adapter and the inbox endpoints are built from the [`Gate`] this makes, so an
/// option is set in one place whatever serves the route.
///
/// ```
/// use std::time::Duration;
/// use mapping_webhooks::Gate;
///
/// let gate = Gate::builder()
///     .secret("whsec_current")
///     .previous_secret("whsec_before_rotation")
///     .tolerance(Duration::from_secs(300))
///     .body_limit(256 * 1024)
///     .namespace("orders")
///     .build()?;
/// assert_eq!(gate.body_limit(), 256 * 1024);
///
/// // A blank secret (an unset environment variable) is an error, not a panic.
/// assert!(Gate::builder().secret("  ").build().is_err());
/// # Ok::<(), mapping_webhooks::ConfigError>(())
/// ```
#[must_use = "call build() to get the Gate"]
pub struct GateBuilder<D = MemoryStore> {
    scheme: Scheme,
    secret: Option<Result<Secret, ConfigError>>,
    secrets: Option<Secrets>,
    previous: Vec<Result<Secret, ConfigError>>,
    tenants: Option<(Tenants, TenantFrom)>,
    tolerance: Option<Duration>,
    clock: Option<Arc<dyn Clock>>,
    store: Store<D>,
    namespace: Option<String>,
    on_store_error: OnStoreError,
    body_limit: usize,
    read_timeout: Duration,
    observer: Option<Arc<dyn Observer>>,
}

/// The dedup store chosen so far.
enum Store<D> {
    /// The default [`MemoryStore`], made at `build` (on the builder's clock).
    Default,
    /// One given with [`GateBuilder::dedup`].
    Given(D),
    /// No dedup.
    None,
}

impl GateBuilder {
    pub(super) fn new() -> Self {
        Self {
            scheme: Scheme::Mapping,
            secret: None,
            secrets: None,
            previous: Vec::new(),
            tenants: None,
            tolerance: None,
            clock: None,
            store: Store::Default,
            namespace: None,
            on_store_error: OnStoreError::default(),
            body_limit: DEFAULT_BODY_LIMIT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            observer: None,
        }
    }
}

impl<D: DedupStore> GateBuilder<D> {
    /// Verifies another sender's signature scheme instead of Mapping.Travel's (the
    /// default): Standard Webhooks, Svix, Stripe, GitHub, Shopify or Slack. Secrets are
    /// given as that provider shows them (see [`scheme`](crate::scheme)); everything
    /// else (rotation, tenants, dedup, the inbox) works the same.
    ///
    /// ```
    /// use mapping_webhooks::Gate;
    /// use mapping_webhooks::scheme::Scheme;
    ///
    /// let gate = Gate::builder()
    ///     .scheme(Scheme::Standard)
    ///     .secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    ///     .build()?;
    /// assert_eq!(gate.scheme(), Scheme::Standard);
    /// // A Standard Webhooks secret must be base64: a typo is found at build.
    /// assert!(Gate::builder().scheme(Scheme::Svix).secret("whsec_not base64!").build().is_err());
    /// # Ok::<(), mapping_webhooks::ConfigError>(())
    /// ```
    pub fn scheme(mut self, scheme: Scheme) -> Self {
        self.scheme = scheme;
        self
    }

    /// The signing secret: the whole string the sender's dashboard shows, `whsec_`
    /// included. Checked at [`build`](Self::build) ([`ConfigError::EmptySecret`] for an
    /// empty or blank one). Replaces a [`secrets`](Self::secrets) handle set before.
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secret = Some(Secret::new(secret));
        self.secrets = None;
        self
    }

    /// Reads `secrets`, a handle the app keeps to change them while the server runs
    /// ([`Secrets::rotate`], [`Secrets::set`]): each request sees them as they are then.
    /// Replaces a [`secret`](Self::secret) set before.
    pub fn secrets(mut self, secrets: Secrets) -> Self {
        self.secrets = Some(secrets);
        self.secret = None;
        self
    }

    /// Also accepts signatures made with a previous secret, during a rotation. May be
    /// called more than once; the secret is added to the gate's [`Secrets`] without an
    /// expiry (remove it with [`Secrets::remove_previous`], or rotate through the handle
    /// instead, whose previous secret expires by itself).
    pub fn previous_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.previous.push(Secret::new(secret));
        self
    }

    /// Serves many tenants on one route: each request's tenant key is taken as `from`
    /// says (for `/hooks/mapping/{tenant}`, `TenantFrom::PathSegment(2)`) and its secrets
    /// from `tenants`, before the body is read. An unknown tenant is answered 404, a
    /// failed lookup 503; dedup keys are per tenant. No [`secret`](Self::secret) is then
    /// needed: one set is never used.
    pub fn tenants(mut self, tenants: Tenants, from: TenantFrom) -> Self {
        self.tenants = Some((tenants, from));
        self
    }

    /// How far the signed timestamp may be from the clock, either way (default 5
    /// minutes; whole seconds; a timestamp exactly at the edge is accepted).
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = Some(tolerance);
        self
    }

    /// Reads the time from `clock` (for tests, a [`ManualClock`](crate::ManualClock)):
    /// the signature window, the secrets' expiry deadlines, and the leases and TTLs of
    /// the default [`MemoryStore`]. A store given with [`dedup`](Self::dedup) keeps its
    /// own clock (see [`MemoryStoreBuilder::clock`](crate::dedup::MemoryStoreBuilder::clock)).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// The largest body read, in bytes (default [`DEFAULT_BODY_LIMIT`], 1 MiB). A larger
    /// body is answered 413: a declared `Content-Length` before any byte is read,
    /// otherwise as soon as the limit is passed. Zero is refused at
    /// [`build`](Self::build).
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// The time allowed for reading the whole body (default [`DEFAULT_READ_TIMEOUT`],
    /// 10 s); a client still sending after it is answered 408. Zero is refused at
    /// [`build`](Self::build).
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// Deduplicates with `store` (a shared [`RedisStore`](crate::dedup) when several
    /// replicas receive webhooks, or a [`MemoryStore`] built with other limits) instead
    /// of the default in-memory one.
    pub fn dedup<S: DedupStore>(self, store: S) -> GateBuilder<S> {
        GateBuilder {
            scheme: self.scheme,
            secret: self.secret,
            secrets: self.secrets,
            previous: self.previous,
            tenants: self.tenants,
            tolerance: self.tolerance,
            clock: self.clock,
            store: Store::Given(store),
            namespace: self.namespace,
            on_store_error: self.on_store_error,
            body_limit: self.body_limit,
            read_timeout: self.read_timeout,
            observer: self.observer,
        }
    }

    /// Does not deduplicate: every verified request runs the handler, duplicates too.
    pub fn without_dedup(mut self) -> Self {
        self.store = Store::None;
        self
    }

    /// Prefixes dedup keys with `namespace`, so one store can serve several endpoints.
    /// Any string works (see [`Gate::key_for`]); an empty one is the same as none.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// What to do when the dedup store cannot answer: [`OnStoreError::Reject`] (503, the
    /// default: the sender retries, nothing is lost) or [`OnStoreError::PassThrough`]
    /// (run the handler unchecked: only for handlers that are idempotent themselves).
    pub fn on_store_error(mut self, policy: OnStoreError) -> Self {
        self.on_store_error = policy;
        self
    }

    /// Reports each request's [`Outcome`](crate::Outcome) (exactly once) and the time
    /// taken by verification, the store and the handler to `observer` (see the
    /// [`observe`](crate::observe) module). Without one, no clock is read for it.
    pub fn observer(mut self, observer: impl Observer) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// Checks every option and makes the gate.
    ///
    /// # Errors
    ///
    /// - [`ConfigError::EmptySecret`]: a secret or previous secret is empty or blank;
    /// - [`ConfigError::MissingSecret`]: no secret, secrets handle or tenants was given;
    /// - [`ConfigError::ZeroBodyLimit`], [`ConfigError::ZeroReadTimeout`];
    /// - [`ConfigError::SecretNotForScheme`]: a Standard Webhooks or Svix secret given
    ///   here is neither `whsec_` and base64 nor a `whpk_` public key.
    pub fn build(self) -> Result<Gate<D>, ConfigError> {
        let previous = self.previous.into_iter().collect::<Result<Vec<_>, _>>()?;
        let secrets = match (self.secret, self.secrets, &self.tenants) {
            (Some(secret), _, _) => Secrets::new(secret?),
            (None, Some(secrets), _) => secrets,
            (None, None, Some(_)) => Secrets::new(Gate::unused_secret()),
            (None, None, None) => return Err(ConfigError::MissingSecret),
        };
        if self.body_limit == 0 {
            return Err(ConfigError::ZeroBodyLimit);
        }
        if self.read_timeout.is_zero() {
            return Err(ConfigError::ZeroReadTimeout);
        }
        let mut gate = Gate::from_secrets(secrets);
        for secret in previous {
            gate.verifier = gate.verifier.previous_secret(secret);
        }
        gate.scheme = self.scheme;
        if self.scheme.uses_standard_keys() && self.tenants.is_none() {
            gate.verifier.secrets().check_standard_keys(self.scheme)?;
        }
        if let Some(tolerance) = self.tolerance {
            gate.verifier = gate.verifier.tolerance(tolerance);
        }
        if let Some(clock) = self.clock {
            gate = gate.with_clock(clock);
        }
        gate.tenants = self.tenants;
        gate.set_namespace(self.namespace.unwrap_or_default());
        gate.on_store_error = self.on_store_error;
        gate.body_limit = self.body_limit;
        gate.read_timeout = self.read_timeout;
        gate.observer = self.observer;
        Ok(match self.store {
            Store::Given(store) => gate.with_store(Some(Arc::new(store))),
            Store::None => gate.with_store(None),
            // `D` is `MemoryStore` here: `dedup` is the only way to another type.
            Store::Default => {
                let store: Arc<dyn std::any::Any + Send + Sync> =
                    gate.store.take().expect("Gate::from_secrets makes a store");
                gate.with_store(Some(
                    store
                        .downcast::<D>()
                        .expect("the default store is a MemoryStore"),
                ))
            }
        })
    }
}

impl<D> fmt::Debug for GateBuilder<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GateBuilder")
            .field("scheme", &self.scheme)
            .field("secret", &self.secret.as_ref().map(|_| "<secret>"))
            .field("secrets", &self.secrets)
            .field("previous", &self.previous.len())
            .field("tenants", &self.tenants)
            .field("tolerance", &self.tolerance)
            .field("namespace", &self.namespace)
            .field("on_store_error", &self.on_store_error)
            .field("body_limit", &self.body_limit)
            .field("read_timeout", &self.read_timeout)
            .field("observer", &self.observer.is_some())
            .finish_non_exhaustive()
    }
}
