//! The builder: [`WebhookVerify`], a tower [`Layer`](https://docs.rs/tower-layer/0.3/tower_layer/trait.Layer.html).

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use mapping_webhooks::{DedupStore, Gate, MemoryStore, Reply};
use tower_layer::Layer;

use crate::body::TenantKeyFn;
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
/// Every option of the verification itself (previous secrets, tolerance, body limit,
/// read timeout, dedup store, namespace, clock, observer, …) is set on
/// [`Gate::builder`], validated once at `build()`, and the gate passed to
/// [`from_gate`](WebhookVerify::from_gate); the layer keeps only what is about HTTP: the
/// refusal format and the tenant-key function.
///
/// ```
/// use std::time::Duration;
/// use mapping_webhooks_tower::{Gate, WebhookVerify};
///
/// let gate = Gate::builder()
///     .secret("whsec_current")
///     .previous_secret("whsec_before_rotation")
///     .tolerance(Duration::from_secs(300))
///     .body_limit(256 * 1024)
///     .build()?;
/// let layer = WebhookVerify::from_gate(gate).json_rejections();
/// // The secrets never show in Debug output.
/// assert!(!format!("{layer:?}").contains("current"));
/// # Ok::<(), mapping_webhooks_tower::ConfigError>(())
/// ```
#[must_use = "a layer does nothing until it wraps a service"]
pub struct WebhookVerify<D = MemoryStore, R = PlainTextReject> {
    pub(crate) gate: Arc<Gate<D>>,
    pub(crate) on_reject: Arc<R>,
    pub(crate) tenant_key: Option<Arc<TenantKeyFn>>,
}

impl WebhookVerify {
    /// A layer for `secret` (the whole string the dashboard showed, `whsec_` included),
    /// with the default tolerance (5 minutes), body limit (1 MiB), read timeout (10 s)
    /// and a bounded in-memory dedup store.
    ///
    /// The one-line shorthand for the common case; set any other option on
    /// [`Gate::builder`] and pass the gate to [`from_gate`](WebhookVerify::from_gate).
    ///
    /// # Panics
    ///
    /// When `secret` is empty or blank (the message says so): usually an environment
    /// variable that is not set. This happens while the app is built, never at a
    /// request. To handle it yourself, build the gate:
    /// `WebhookVerify::from_gate(Gate::builder().secret(secret).build()?)`; many tenants
    /// ([`Gate::for_tenants`]) or a [`Secrets`](crate::Secrets) handle to rotate while the
    /// server runs ([`Gate::from_secrets`], [`Gate::secrets`]) are the gate's too.
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        match Gate::builder().secret(secret).build() {
            Ok(gate) => Self::from_gate(gate),
            Err(e) => panic!("WebhookVerify::new: {e}"),
        }
    }
}

impl<D: DedupStore> WebhookVerify<D> {
    /// A layer around a [`Gate`] configured with [`Gate::builder`]: every option of the
    /// verification (previous secrets, tolerance, body limit, read timeout, dedup store,
    /// namespace, store-error policy, clock, observer) is the gate's.
    pub fn from_gate(gate: Gate<D>) -> Self {
        Self {
            gate: Arc::new(gate),
            on_reject: Arc::new(PlainTextReject),
            tenant_key: None,
        }
    }
}

impl<D: DedupStore, R> WebhookVerify<D, R> {
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
    /// [`TenantFrom`](crate::TenantFrom) given to [`Gate::for_tenants`] (which this
    /// replaces; without tenants the key is not used). `None` is an unknown tenant (404).
    ///
    /// ```
    /// use mapping_webhooks_tower::{Gate, ResolveError, Tenant, TenantFrom, Tenants, WebhookVerify};
    ///
    /// let tenants = Tenants::new(|_key: String| async { Ok::<Option<Tenant>, ResolveError>(None) });
    /// // acme.hooks.example.com -> "acme"
    /// let layer = WebhookVerify::from_gate(Gate::for_tenants(tenants, TenantFrom::Host)).tenant_key(|parts| {
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
        WebhookVerifyService::new(inner, self.clone())
    }
}
