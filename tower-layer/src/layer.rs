//! The builder: [`WebhookVerify`], a tower [`Layer`](https://docs.rs/tower-layer/0.3/tower_layer/trait.Layer.html).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use mapping_webhooks::{
    Clock, ConfigError, DedupStore, Gate, MemoryStore, Observer, OnStoreError, Reply, Secret,
    Secrets, TenantFrom, Tenants,
};
use tower_layer::Layer;

use crate::reject::{JsonReject, OnReject, PlainTextReject};
use crate::service::WebhookVerifyService;

/// A tower [`Layer`](https://docs.rs/tower-layer/0.3/tower_layer/trait.Layer.html) that verifies, deduplicates and acknowledges Mapping.Travel
/// webhooks before the inner service (your handler) sees them.
///
/// Cheap to clone: the configuration sits behind an [`Arc`]. `D` is the dedup store
/// ([`MemoryStore`] by default), `R` builds the responses the layer gives itself
/// ([`PlainTextReject`] by default). See the [crate docs](crate) for what a request goes
/// through, and [`Gate`] for the decisions, which live in the core.
///
/// ```
/// use std::time::Duration;
/// use mapping_webhooks_tower::WebhookVerify;
///
/// let layer = WebhookVerify::new("whsec_current")
///     .previous_secret("whsec_before_rotation")
///     .tolerance(Duration::from_secs(300))
///     .body_limit(256 * 1024)
///     .json_rejections();
/// // The secrets never show in Debug output.
/// assert!(!format!("{layer:?}").contains("current"));
/// ```
#[must_use = "a layer does nothing until it wraps a service"]
pub struct WebhookVerify<D = MemoryStore, R = PlainTextReject> {
    gate: Arc<Gate<D>>,
    on_reject: Arc<R>,
    tenant_key: Option<Arc<TenantKeyFn>>,
}

/// A function taking a request's tenant key from its head (see
/// [`WebhookVerify::tenant_key`]).
pub(crate) type TenantKeyFn = dyn Fn(&http::request::Parts) -> Option<String> + Send + Sync;

impl WebhookVerify {
    /// A layer for `secret` (the whole string the dashboard showed, `whsec_` included),
    /// with the default tolerance (5 minutes), body limit (1 MiB), read timeout (10 s)
    /// and a bounded in-memory dedup store.
    ///
    /// # Panics
    ///
    /// When `secret` is empty or blank: usually an environment variable that is not set.
    /// This happens while the app is built, never at a request; use
    /// [`try_new`](Self::try_new) to handle it yourself.
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        Self::try_new(secret).unwrap_or_else(|e| panic!("WebhookVerify::new: {e}"))
    }

    /// Like [`new`](Self::new), returning the configuration error instead of panicking.
    ///
    /// # Errors
    ///
    /// [`ConfigError::EmptySecret`] when `secret` is empty or blank.
    pub fn try_new(secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        Ok(Self::from_gate(Gate::new(Secret::new(secret)?)))
    }

    /// A layer reading `secrets`, a handle the app keeps to change the secrets while the
    /// server runs, without rebuilding the router:
    ///
    /// ```
    /// use mapping_webhooks_tower::{Secret, Secrets, WebhookVerify};
    ///
    /// let secrets = Secrets::new(Secret::new("whsec_current")?);
    /// let layer = WebhookVerify::from_secrets(secrets.clone());
    /// // Later, on a reloaded secrets file or an admin call: the next request sees it.
    /// secrets.rotate(Secret::new("whsec_next")?);
    /// # let _ = layer;
    /// # Ok::<(), mapping_webhooks_tower::ConfigError>(())
    /// ```
    pub fn from_secrets(secrets: Secrets) -> Self {
        Self::from_gate(Gate::from_secrets(secrets))
    }

    /// A layer for many tenants on one route: each request's tenant key is taken as
    /// `from` says (for `/hooks/mapping/{tenant}`, `TenantFrom::PathSegment(2)`), and
    /// its secrets from `tenants`, before the body is read. An unknown tenant is answered
    /// 404, a failed lookup 503; dedup keys are per tenant, and
    /// [`Verified::tenant`](mapping_webhooks::Verified::tenant) names it.
    pub fn for_tenants(tenants: Tenants, from: TenantFrom) -> Self {
        Self::from_gate(Gate::for_tenants(tenants, from))
    }
}

impl<D: DedupStore> WebhookVerify<D> {
    /// A layer around an already configured [`Gate`].
    pub fn from_gate(gate: Gate<D>) -> Self {
        Self {
            gate: Arc::new(gate),
            on_reject: Arc::new(PlainTextReject),
            tenant_key: None,
        }
    }
}

impl<D: DedupStore, R> WebhookVerify<D, R> {
    fn map_gate<E: DedupStore>(self, f: impl FnOnce(Gate<D>) -> Gate<E>) -> WebhookVerify<E, R> {
        WebhookVerify {
            gate: Arc::new(f(Arc::unwrap_or_clone(self.gate))),
            on_reject: self.on_reject,
            tenant_key: self.tenant_key,
        }
    }

    /// Also accepts signatures made with a previous secret, for the rotation window
    /// (about five minutes after a rotation). May be called more than once. It is added
    /// to the layer's [`Secrets`] (shared with the layer's clones) and does not expire; to
    /// rotate while the server runs, use [`secrets`](Self::secrets) instead.
    ///
    /// # Panics
    ///
    /// When `secret` is empty or blank; build a [`Gate`] and use
    /// [`from_gate`](WebhookVerify::from_gate) to handle that yourself.
    pub fn previous_secret(self, secret: impl AsRef<[u8]>) -> Self {
        let secret =
            Secret::new(secret).unwrap_or_else(|e| panic!("WebhookVerify::previous_secret: {e}"));
        self.map_gate(|g| g.previous_secret(secret))
    }

    /// How far the signed timestamp may be from the clock, either way (default 5
    /// minutes; whole seconds; a timestamp exactly at the edge is accepted).
    pub fn tolerance(self, tolerance: Duration) -> Self {
        self.map_gate(|g| g.tolerance(tolerance))
    }

    /// The largest body read, in bytes (default 1 MiB). A larger body is answered 413:
    /// a declared `Content-Length` before any byte is read, otherwise as soon as the
    /// limit is passed, without buffering the rest.
    ///
    /// With axum, extractors behind the layer (`Json`, `Bytes`, `String`) still apply
    /// axum's own `DefaultBodyLimit` (2 MB): raise it too if you set a larger limit here.
    ///
    /// # Panics
    ///
    /// When `bytes` is 0.
    pub fn body_limit(self, bytes: usize) -> Self {
        self.map_gate(|g| {
            g.body_limit(bytes)
                .unwrap_or_else(|e| panic!("WebhookVerify::body_limit: {e}"))
        })
    }

    /// The time allowed for reading the whole body (default 10 s); a client still
    /// sending after it is answered 408.
    pub fn read_timeout(self, timeout: Duration) -> Self {
        self.map_gate(|g| g.read_timeout(timeout))
    }

    /// Deduplicates with `store` (for example a shared Redis store when several replicas
    /// receive webhooks) instead of the in-memory one.
    pub fn dedup<S: DedupStore>(self, store: S) -> WebhookVerify<S, R> {
        self.map_gate(|g| g.dedup(store))
    }

    /// Does not deduplicate: every verified request runs the handler, duplicates too.
    pub fn without_dedup(self) -> Self {
        self.map_gate(Gate::without_dedup)
    }

    /// Prefixes dedup keys with `namespace`, so one store can serve several endpoints.
    pub fn namespace(self, namespace: impl Into<String>) -> Self {
        self.map_gate(|g| g.namespace(namespace))
    }

    /// What to do when the dedup store cannot answer: [`OnStoreError::Reject`] (503, the
    /// default: the sender retries, nothing is lost) or [`OnStoreError::PassThrough`]
    /// (run the handler unchecked: only for handlers that are idempotent themselves).
    pub fn on_store_error(self, policy: OnStoreError) -> Self {
        self.map_gate(|g| g.on_store_error(policy))
    }

    /// Reads the time from `clock` instead of the system clock (for tests, with a
    /// [`ManualClock`](crate::ManualClock)): the signature window, and the leases
    /// and TTLs of the default [`MemoryStore`], which is rebuilt on this clock. A store
    /// passed with [`dedup`](Self::dedup) keeps its own clock (see
    /// [`MemoryStoreBuilder::clock`](crate::MemoryStoreBuilder::clock)).
    pub fn clock(self, clock: impl Clock) -> Self {
        self.map_gate(|g| g.clock(clock))
    }

    /// Reports each request's outcome (exactly once) and the time taken by
    /// verification, the store and the handler to `observer` (an [`Observer`](crate::Observer),
    /// or a closure taking an [`Outcome`](crate::Outcome)). With the `metrics` feature,
    /// `MetricsObserver` records them with the `metrics` crate.
    pub fn observer(self, observer: impl Observer) -> Self {
        self.map_gate(|g| g.observer(observer))
    }

    /// Builds the responses the layer gives itself with `f`.
    ///
    /// Keep `reply.status()`: the sender retries everything but a 2xx.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http::Response;
    /// use mapping_webhooks_tower::{WebhookVerify, reject};
    ///
    /// let layer = WebhookVerify::new("whsec_test").on_reject(|reply| {
    ///     let mut response = reject::plain_text(reply);
    ///     response.headers_mut().insert("x-webhook-refusal", reply.code().parse().unwrap());
    ///     response
    /// });
    /// ```
    pub fn on_reject<F>(self, f: F) -> WebhookVerify<D, F>
    where
        F: Fn(&Reply) -> Response<Bytes> + Send + Sync + 'static,
    {
        self.reject_with(f)
    }

    /// Builds the responses the layer gives itself with an [`OnReject`] value.
    pub fn reject_with<T: OnReject>(self, on_reject: T) -> WebhookVerify<D, T> {
        WebhookVerify {
            gate: self.gate,
            on_reject: Arc::new(on_reject),
            tenant_key: self.tenant_key,
        }
    }

    /// Answers with a JSON body ([`JsonReject`]) instead of plain text.
    pub fn json_rejections(self) -> WebhookVerify<D, JsonReject> {
        self.reject_with(JsonReject)
    }

    /// Takes each request's tenant key with `f`, from the request's head, instead of the
    /// [`TenantFrom`] given to [`for_tenants`](WebhookVerify::for_tenants) (which this
    /// replaces; without tenants the key is not used). `None` is an unknown tenant (404).
    ///
    /// ```
    /// use mapping_webhooks_tower::{ResolveError, Tenant, TenantFrom, Tenants, WebhookVerify};
    ///
    /// let tenants = Tenants::new(|_key: String| async { Ok::<Option<Tenant>, ResolveError>(None) });
    /// // acme.hooks.example.com -> "acme"
    /// let layer = WebhookVerify::for_tenants(tenants, TenantFrom::Host).tenant_key(|parts| {
    ///     let host = parts.headers.get(http::header::HOST)?.to_str().ok()?;
    ///     Some(host.split('.').next()?.to_owned())
    /// });
    /// # let _ = layer;
    /// ```
    pub fn tenant_key<F>(mut self, f: F) -> Self
    where
        F: Fn(&http::request::Parts) -> Option<String> + Send + Sync + 'static,
    {
        self.tenant_key = Some(Arc::new(f));
        self
    }

    /// The gate holding the configuration.
    pub fn gate(&self) -> &Gate<D> {
        &self.gate
    }

    /// The secrets handle every request reads: clone it to [`rotate`](Secrets::rotate)
    /// or [`set`](Secrets::set) the secrets while the server runs.
    pub fn secrets(&self) -> &Secrets {
        self.gate.secrets()
    }
}

impl<D, R> Clone for WebhookVerify<D, R> {
    fn clone(&self) -> Self {
        Self {
            gate: Arc::clone(&self.gate),
            on_reject: Arc::clone(&self.on_reject),
            tenant_key: self.tenant_key.clone(),
        }
    }
}

impl<D, R> fmt::Debug for WebhookVerify<D, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookVerify")
            .field("gate", &self.gate)
            .field("on_reject", &format_args!("<fn>"))
            .field("tenant_key", &self.tenant_key.as_ref().map(|_| "<fn>"))
            .finish()
    }
}

impl<S, D, R> Layer<S> for WebhookVerify<D, R> {
    type Service = WebhookVerifyService<S, D, R>;

    fn layer(&self, inner: S) -> Self::Service {
        WebhookVerifyService::new(
            inner,
            Arc::clone(&self.gate),
            Arc::clone(&self.on_reject),
            self.tenant_key.clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn try_new_refuses_a_blank_secret() {
        assert_eq!(
            WebhookVerify::try_new(" ").unwrap_err(),
            ConfigError::EmptySecret
        );
    }

    #[test]
    #[should_panic(expected = "signing secret is empty")]
    fn new_panics_on_an_empty_secret() {
        let _ = WebhookVerify::new("");
    }

    #[test]
    #[should_panic(expected = "body limit")]
    fn a_zero_body_limit_panics() {
        let _ = WebhookVerify::new("whsec_x").body_limit(0);
    }

    #[test]
    fn builder_settings_reach_the_gate() {
        let layer = WebhookVerify::new("whsec_0123456789abcdef0123456789")
            .body_limit(10)
            .read_timeout(Duration::from_secs(2))
            .tolerance(Duration::from_secs(7));
        assert_eq!(layer.gate().get_body_limit(), 10);
        assert_eq!(layer.gate().get_read_timeout(), Duration::from_secs(2));
        assert_eq!(
            layer.gate().verifier().get_tolerance(),
            Duration::from_secs(7)
        );
        let shown = format!("{:?}", layer.on_reject(crate::reject::json));
        assert!(shown.contains("<fn>"), "{shown}");
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
    }
}
