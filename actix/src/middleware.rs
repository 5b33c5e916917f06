//! The `WebhookVerify` middleware: its builder (an actix-web
//! [`Transform`](https://docs.rs/actix-web/4/actix_web/dev/trait.Transform.html)) and its
//! [`Service`](https://docs.rs/actix-web/4/actix_web/dev/trait.Service.html).

use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::future::{Future, Ready, poll_fn, ready};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{CONTENT_LENGTH, HOST, HeaderMap, HeaderName};
use actix_web::web::{Bytes, BytesMut};
use actix_web::{Error, HttpMessage, HttpResponse};
use futures_core::Stream;
use mapping_webhooks::{
    Admission, Clock, ConfigError, DELIVERY_HEADER, DedupStore, EVENT_HEADER, Gate, MemoryStore,
    Observer, OnStoreError, Reply, SIGNATURE_HEADER, Secret, Secrets, TenantFrom, Tenants,
    UnsignedHeaders, VerifyError,
};

use tracing::Instrument;

use crate::reject::{self, RejectFn};

pub(crate) const SIGNATURE: HeaderName = HeaderName::from_static(SIGNATURE_HEADER);
const EVENT: HeaderName = HeaderName::from_static(EVENT_HEADER);
const DELIVERY: HeaderName = HeaderName::from_static(DELIVERY_HEADER);

/// The verified body, kept in the request extensions for [`VerifiedEvent`](crate::VerifiedEvent):
/// the extractor parses exactly the bytes whose signature was checked.
#[derive(Clone)]
pub(crate) struct VerifiedBody(pub(crate) Bytes);

/// actix-web middleware that verifies, deduplicates and forwards Mapping.Travel webhooks.
///
/// Wrap the webhook route (not the whole app: other routes are not signed):
///
/// ```no_run
/// use actix_web::{App, HttpResponse, HttpServer, web};
/// use mapping_webhooks_actix::{VerifiedEvent, WebhookVerify};
///
/// async fn hook(event: VerifiedEvent) -> HttpResponse {
///     println!("{} {}", event.envelope.event_type, event.envelope.event_id);
///     HttpResponse::Ok().finish()
/// }
///
/// # fn main() -> std::io::Result<()> {
/// # actix_web::rt::System::new().block_on(async {
/// let verify = WebhookVerify::new(std::env::var("MAPPING_WEBHOOK_SECRET").unwrap_or_default());
/// HttpServer::new(move || {
///     App::new().service(
///         web::resource("/hooks/mapping")
///             .wrap(verify.clone())
///             .route(web::post().to(hook)),
///     )
/// })
/// // A sender that gave up closes the connection: cancel its handler (see below).
/// .h1_allow_half_closed(false)
/// .bind("127.0.0.1:3000")?
/// .run()
/// .await
/// # })
/// # }
/// ```
///
/// For each request it:
///
/// 1. checks the request head with the core's [`Gate`] before reading any byte of the
///    body: a `Content-Length` over the [body limit](Self::body_limit) 413; a missing,
///    repeated or malformed `X-Webhook-Signature` 400; a timestamp outside the
///    [tolerance](Self::tolerance) 401;
/// 2. then reads the body, counting bytes: 413 as soon as it passes the limit (the rest
///    is never buffered), 408 when it is not received within the
///    [read timeout](Self::read_timeout);
/// 3. hands the body to the [`Gate`], which verifies the signature and claims the event
///    in the dedup store: a refusal (400, 401), a duplicate (200 without running the
///    handler), a copy being processed right now (409 with `Retry-After`) or a store
///    failure (503, or pass-through) is answered here, through
///    [`on_reject`](Self::on_reject);
/// 4. otherwise inserts [`Verified`](mapping_webhooks::Verified) into the request
///    extensions (read it with `web::ReqData<Verified>` or [`VerifiedEvent`](crate::VerifiedEvent)),
///    puts the **same bytes** back as the payload, so `web::Json<T>`, `web::Bytes` and
///    `String` extractors work unchanged, and calls the handler;
/// 5. marks the event done only if the handler answered 2xx. Any other status, an
///    error, a panic (answered 500 here) or a dropped future (client gone, timeout)
///    leaves it retryable.
///
/// actix-http answers `Expect: 100-continue` with `100 Continue` itself, before any
/// middleware runs (`HttpServer` offers no way to change that), so a client asking for it
/// gets its `100` even when the head is then refused. The body is still not read: the
/// refusal is sent at once, and actix-http buffers at most about 32 KiB of a payload that
/// nobody reads before it stops reading from the socket, then discards the rest.
///
/// `WebhookVerify` is cheap to clone and `Send`, so it can be built once, outside the
/// `HttpServer::new` closure, and cloned into every worker: the clones share one dedup
/// store, so copies of an event landing on different workers still run the handler once.
///
/// # When the sender gives up
///
/// The sender waits 30 s for an answer, then closes the connection and retries later.
/// By default actix-web allows half-closed connections, so it cannot tell that close from
/// a client that merely finished sending, and keeps running the handler: if it later
/// answers 2xx the event is done (the retry is acknowledged), but a handler that never
/// finishes holds the event's claim until its lease runs out (5 minutes with the
/// default store), answering the retries in between 409. Serve the webhook with
/// `HttpServer::h1_allow_half_closed(false)`: actix-web then drops the handler's future
/// when the client disconnects, the claim is freed at once, and the next retry runs.
#[must_use = "a WebhookVerify does nothing until it wraps a route"]
pub struct WebhookVerify<D = MemoryStore, R = RejectFn> {
    gate: Gate<D>,
    on_reject: Arc<R>,
    tenant_key: Option<Arc<TenantKeyFn>>,
}

/// A function taking a request's tenant key (see [`WebhookVerify::tenant_key`]).
type TenantKeyFn = dyn Fn(&ServiceRequest) -> Option<String> + Send + Sync;

impl<D, R> Clone for WebhookVerify<D, R> {
    fn clone(&self) -> Self {
        Self {
            gate: self.gate.clone(),
            on_reject: Arc::clone(&self.on_reject),
            tenant_key: self.tenant_key.clone(),
        }
    }
}

impl WebhookVerify {
    /// The middleware for `secret` (the whole `whsec_…` string the dashboard showed),
    /// with the defaults: 5-minute tolerance, 1 MiB body limit, 10 s read timeout,
    /// deduplication in a bounded [`MemoryStore`], 503 on store errors and plain-text
    /// rejections.
    ///
    /// # Panics
    ///
    /// When `secret` is empty or blank, which usually means its environment variable is
    /// not set: a receiver must not start without a secret. Use [`try_new`](Self::try_new)
    /// to handle that as an error.
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        Self::try_new(secret).unwrap_or_else(|e| panic!("WebhookVerify::new: {e}"))
    }

    /// Like [`new`](Self::new), returning an error instead of panicking.
    ///
    /// # Errors
    ///
    /// [`ConfigError::EmptySecret`] when `secret` is empty or blank.
    pub fn try_new(secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        Ok(Self::from_gate(Gate::new(Secret::new(secret)?)))
    }

    /// The middleware reading `secrets`, a handle the app keeps to change the secrets
    /// while the server runs; every worker's clone reads the same handle:
    ///
    /// ```
    /// use mapping_webhooks_actix::{Secret, Secrets, WebhookVerify};
    ///
    /// let secrets = Secrets::new(Secret::new("whsec_current")?);
    /// let verify = WebhookVerify::from_secrets(secrets.clone());
    /// // Later, on a reloaded secrets file or an admin call: the next request sees it.
    /// secrets.rotate(Secret::new("whsec_next")?);
    /// # let _ = verify;
    /// # Ok::<(), mapping_webhooks_actix::ConfigError>(())
    /// ```
    pub fn from_secrets(secrets: Secrets) -> Self {
        Self::from_gate(Gate::from_secrets(secrets))
    }

    /// The middleware for many tenants on one route: each request's tenant key is taken
    /// as `from` says (for `web::resource("/hooks/mapping/{tenant}")`,
    /// `TenantFrom::PathSegment(2)`), and its secrets from `tenants`, before the body is
    /// read. An unknown tenant is answered 404, a failed lookup 503; dedup keys are per
    /// tenant, and [`Verified::tenant`](mapping_webhooks::Verified::tenant) names it.
    pub fn for_tenants(tenants: Tenants, from: TenantFrom) -> Self {
        Self::from_gate(Gate::for_tenants(tenants, from))
    }
}

impl<D: DedupStore> WebhookVerify<D> {
    /// The middleware for a [`Gate`] configured by hand (for instance shared with another
    /// framework's adapter, or built with fallible options).
    pub fn from_gate(gate: Gate<D>) -> Self {
        Self {
            gate,
            on_reject: Arc::new(reject::plain_text),
            tenant_key: None,
        }
    }
}

impl<D: DedupStore, R> WebhookVerify<D, R> {
    /// Also accepts signatures made with a previous secret, during a rotation window.
    /// May be called more than once. It is added to the middleware's [`Secrets`] (shared
    /// with its clones) and does not expire; to rotate while the server runs, use
    /// [`secrets`](Self::secrets) instead.
    ///
    /// # Panics
    ///
    /// When `secret` is empty or blank. Build a [`Gate`] and use
    /// [`from_gate`](WebhookVerify::from_gate) to handle that as an error.
    pub fn previous_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        let secret =
            Secret::new(secret).unwrap_or_else(|e| panic!("WebhookVerify::previous_secret: {e}"));
        self.gate = self.gate.previous_secret(secret);
        self
    }

    /// How far the signed timestamp may be from the clock, either way (default 5 minutes).
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.gate = self.gate.tolerance(tolerance);
        self
    }

    /// The largest body read, in bytes (default 1 MiB). Larger requests are answered 413.
    ///
    /// Behind the middleware the handler's extractors apply their own limits too:
    /// `web::Bytes` and `String` default to 256 KiB (`web::PayloadConfig`), `web::Json`
    /// to 2 MiB (`web::JsonConfig`).
    ///
    /// # Panics
    ///
    /// When `bytes` is 0.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.gate = self
            .gate
            .body_limit(bytes)
            .unwrap_or_else(|e| panic!("WebhookVerify::body_limit: {e}"));
        self
    }

    /// The time allowed for receiving the whole body (default 10 s); 408 after it.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.gate = self.gate.read_timeout(timeout);
        self
    }

    /// Deduplicates with `store` (your own [`DedupStore`], or a configured
    /// [`MemoryStore`]) instead of the default memory store.
    pub fn dedup<S: DedupStore>(self, store: S) -> WebhookVerify<S, R> {
        WebhookVerify {
            gate: self.gate.dedup(store),
            on_reject: self.on_reject,
            tenant_key: self.tenant_key,
        }
    }

    /// Does not deduplicate: every verified request runs the handler, duplicates
    /// included. Choose this only when the handler is idempotent on its own.
    pub fn without_dedup(mut self) -> Self {
        self.gate = self.gate.without_dedup();
        self
    }

    /// Prefixes store keys with `namespace`, so one store can serve several endpoints.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.gate = self.gate.namespace(namespace);
        self
    }

    /// What to do when the dedup store cannot answer: 503 so the sender retries
    /// ([`OnStoreError::Reject`], the default), or run the handler unchecked
    /// ([`OnStoreError::PassThrough`]).
    pub fn on_store_error(mut self, policy: OnStoreError) -> Self {
        self.gate = self.gate.on_store_error(policy);
        self
    }

    /// Reads the time from `clock` instead of the system clock (for tests): the signature
    /// window, and the default [`MemoryStore`]'s leases and TTLs (see [`Gate::clock`]; a
    /// store passed with [`dedup`](Self::dedup) keeps its own clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.gate = self.gate.clock(clock);
        self
    }

    /// Reports each request's outcome (exactly once) and the time taken by
    /// verification, the store and the handler to `observer` (an [`Observer`](crate::Observer),
    /// or a closure taking an [`Outcome`](crate::Outcome)). With the `metrics` feature,
    /// `MetricsObserver` records them with the `metrics` crate.
    pub fn observer(mut self, observer: impl Observer) -> Self {
        self.gate = self.gate.observer(observer);
        self
    }

    /// Builds the responses given without running the handler (refusals, duplicates,
    /// 409, 503) with `f` instead of [`reject::plain_text`]. [`reject::json`] is ready
    /// to use (see also [`json_rejections`](Self::json_rejections)); your own function
    /// can call either and adjust the result. Keep the [`Reply`]'s status: the sender retries anything but 2xx.
    ///
    /// ```
    /// use mapping_webhooks_actix::{WebhookVerify, reject};
    ///
    /// let verify = WebhookVerify::new("whsec_test").on_reject(reject::json);
    /// let custom = WebhookVerify::new("whsec_test").on_reject(|reply| {
    ///     actix_web::HttpResponse::build(reply.status().try_into().unwrap())
    ///         .body(format!("webhook refused: {}", reply.code()))
    /// });
    /// # let _ = (verify, custom);
    /// ```
    pub fn on_reject<F>(self, f: F) -> WebhookVerify<D, F>
    where
        F: Fn(&Reply) -> HttpResponse + 'static,
    {
        WebhookVerify {
            gate: self.gate,
            on_reject: Arc::new(f),
            tenant_key: self.tenant_key,
        }
    }

    /// Answers the requests it refuses with [`reject::json`] instead of plain text:
    /// `{"status":401,"code":"signature_mismatch","reason":"…"}`.
    pub fn json_rejections(self) -> WebhookVerify<D, RejectFn> {
        self.on_reject(reject::json as RejectFn)
    }

    /// Takes each request's tenant key with `f` instead of the [`TenantFrom`] given to
    /// [`for_tenants`](WebhookVerify::for_tenants) (which this replaces; without tenants
    /// the key is not used). `None` is an unknown tenant (404). The route is matched
    /// before the middleware runs, so a path parameter is there:
    ///
    /// ```
    /// use mapping_webhooks_actix::{ResolveError, Tenant, TenantFrom, Tenants, WebhookVerify};
    ///
    /// let tenants = Tenants::new(|_key: String| async { Ok::<Option<Tenant>, ResolveError>(None) });
    /// // web::resource("/hooks/{tenant}/mapping")
    /// let verify = WebhookVerify::for_tenants(tenants, TenantFrom::PathSegment(1))
    ///     .tenant_key(|req| req.match_info().get("tenant").map(str::to_owned));
    /// # let _ = verify;
    /// ```
    pub fn tenant_key<F>(mut self, f: F) -> Self
    where
        F: Fn(&ServiceRequest) -> Option<String> + Send + Sync + 'static,
    {
        self.tenant_key = Some(Arc::new(f));
        self
    }

    /// The core gate this middleware applies.
    pub fn gate(&self) -> &Gate<D> {
        &self.gate
    }

    /// The secrets handle every request reads (in every worker): clone it to
    /// [`rotate`](Secrets::rotate) or [`set`](Secrets::set) the secrets while the server
    /// runs.
    pub fn secrets(&self) -> &Secrets {
        self.gate.secrets()
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

impl<S, B, D, R> Transform<S, ServiceRequest> for WebhookVerify<D, R>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
    D: DedupStore,
    R: Fn(&Reply) -> HttpResponse + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = WebhookVerifyService<S, D, R>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(WebhookVerifyService {
            service: Rc::new(service),
            shared: Rc::new(self.clone()),
        }))
    }
}

/// The actix-web
/// [`Service`](https://docs.rs/actix-web/4/actix_web/dev/trait.Service.html)
/// built by [`WebhookVerify`] around a route's service.
pub struct WebhookVerifyService<S, D = MemoryStore, R = RejectFn> {
    service: Rc<S>,
    shared: Rc<WebhookVerify<D, R>>,
}

impl<S, D, R> fmt::Debug for WebhookVerifyService<S, D, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookVerifyService")
            .field("config", &self.shared)
            .finish_non_exhaustive()
    }
}

/// The response future. It is boxed because the core's `admit` and `finish` are
/// `async fn`s, whose futures cannot be named in a struct on stable Rust; it is one
/// allocation per request, the same as actix-web's own `from_fn` middleware.
type ResponseFuture<B> =
    Pin<Box<dyn Future<Output = Result<ServiceResponse<EitherBody<B>>, Error>>>>;

impl<S, B, D, R> Service<ServiceRequest> for WebhookVerifyService<S, D, R>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
    D: DedupStore,
    R: Fn(&Reply) -> HttpResponse + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = ResponseFuture<B>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        Box::pin(handle(
            Rc::clone(&self.shared),
            Rc::clone(&self.service),
            req,
        ))
    }
}

async fn handle<S, B, D, R>(
    shared: Rc<WebhookVerify<D, R>>,
    service: Rc<S>,
    mut req: ServiceRequest,
) -> Result<ServiceResponse<EitherBody<B>>, Error>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    D: DedupStore,
    R: Fn(&Reply) -> HttpResponse,
{
    let gate = &shared.gate;
    let reject = |req: ServiceRequest, reply: &Reply| {
        req.into_response((shared.on_reject)(reply))
            .map_into_right_body()
    };

    // Taking the payload reads nothing; it is only polled once the head has passed.
    let mut payload = req.take_payload();
    let headers = req.headers();
    let unsigned = unsigned_headers(headers);
    let declared = content_length(headers);
    let signatures = headers.get_all(SIGNATURE).map(|value| value.as_bytes());
    let head = match gate.check_head(signatures, declared, unsigned) {
        Ok(head) => head,
        Err(reply) => return Ok(reject(req, &reply)),
    };
    // Many tenants: the tenant's secrets, still before the body is read.
    let host = headers.get(HOST).and_then(|v| v.to_str().ok());
    let custom = match (&shared.tenant_key, gate.tenant_from()) {
        (Some(f), Some(_)) => f(&req),
        _ => None,
    };
    let tenant = match (custom, gate.tenant_from()) {
        (Some(key), _) => Some(Cow::Owned(key)),
        (None, Some(from)) if shared.tenant_key.is_none() => from.key(req.path(), host),
        _ => None,
    };
    let head = match gate.check_tenant(head, tenant.as_deref(), unsigned).await {
        Ok(head) => head,
        Err(reply) => return Ok(reject(req, &reply)),
    };
    let read = actix_web::rt::time::timeout(
        gate.get_read_timeout(),
        read_body(&mut payload, gate.get_body_limit(), declared),
    )
    .await;
    let body = match read {
        Ok(Ok(body)) => body,
        Ok(Err(error)) => {
            let reply = gate.refuse(error, unsigned);
            return Ok(reject(req, &reply));
        }
        Err(_elapsed) => {
            let reply = gate.refuse(VerifyError::BodyRead { timed_out: true }, unsigned);
            return Ok(reject(req, &reply));
        }
    };
    drop(payload);

    let (verified, ticket) = match gate.admit_checked(head, unsigned, &body).await {
        Admission::Process { verified, ticket } => (verified, ticket),
        Admission::Reply(reply) => return Ok(reject(req, &reply)),
    };

    {
        let mut extensions = req.extensions_mut();
        extensions.insert(verified);
        extensions.insert(VerifiedBody(body.clone()));
    }
    req.set_payload(Payload::from(body));

    // The handler runs inside the delivery's span.
    let span = ticket.span().clone();
    let call = catch_panic(|| span.in_scope(|| service.call(req)).instrument(span.clone()));
    match call.await {
        Ok(Ok(response)) => {
            ticket.finish(response.status().as_u16()).await;
            Ok(response.map_into_left_body())
        }
        Ok(Err(error)) => {
            // actix-web renders it as a response later, but the handler did not succeed.
            ticket.failed().await;
            Err(error)
        }
        Err(_panic) => {
            // The panic message was already printed by the panic hook. Without this,
            // actix-web drops the connection and the sender sees no answer at all.
            span.in_scope(|| {
                tracing::error!(
                    "webhook handler panicked; answered 500, the event stays retryable"
                );
            });
            ticket.panicked().await;
            Err(actix_web::error::ErrorInternalServerError(
                "internal server error",
            ))
        }
    }
}

/// The unsigned headers, for logs only.
pub(crate) fn unsigned_headers(headers: &HeaderMap) -> UnsignedHeaders<'_> {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    UnsignedHeaders {
        delivery_id: text(DELIVERY),
        event_type: text(EVENT),
    }
}

/// The declared body length, if any. (actix-web itself refuses a malformed one.)
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
}

/// Reads the whole payload, refusing it as soon as it passes `limit`. A body that
/// arrives in one chunk (the usual case) is kept without copying; otherwise the chunks
/// are joined in one buffer sized from the declared length (at most the limit).
pub(crate) async fn read_body(
    payload: &mut Payload,
    limit: usize,
    declared: Option<u64>,
) -> Result<Bytes, VerifyError> {
    let mut first = Bytes::new();
    let mut joined: Option<BytesMut> = None;
    while let Some(chunk) = poll_fn(|cx| Pin::new(&mut *payload).poll_next(cx)).await {
        let chunk = chunk.map_err(|_| VerifyError::BodyRead { timed_out: false })?;
        let so_far = joined.as_ref().map_or(first.len(), BytesMut::len);
        if chunk.len() > limit - so_far {
            return Err(VerifyError::BodyTooLarge { limit });
        }
        match &mut joined {
            Some(buf) => buf.extend_from_slice(&chunk),
            None if first.is_empty() => first = chunk,
            None => {
                let wanted = declared.map_or(2 * (so_far + chunk.len()), |len| {
                    usize::try_from(len).unwrap_or(usize::MAX)
                });
                let mut buf = BytesMut::with_capacity(wanted.clamp(so_far + chunk.len(), limit));
                buf.extend_from_slice(&first);
                buf.extend_from_slice(&chunk);
                joined = Some(buf);
            }
        }
    }
    Ok(joined.map_or(first, BytesMut::freeze))
}

/// Makes the service call and polls its future, turning a panic in either into `Err`.
async fn catch_panic<F: Future>(
    call: impl FnOnce() -> F,
) -> Result<F::Output, Box<dyn Any + Send>> {
    let future = catch_unwind(AssertUnwindSafe(call))?;
    let mut future = pin!(future);
    poll_fn(
        |cx| match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        },
    )
    .await
}
