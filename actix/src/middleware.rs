//! The `WebhookVerify` middleware: its builder (an actix-web
//! [`Transform`](https://docs.rs/actix-web/4/actix_web/dev/trait.Transform.html)) and its
//! [`Service`](https://docs.rs/actix-web/4/actix_web/dev/trait.Service.html), whose
//! request path moves bytes into the core's pipeline and answers what it decides.

use std::any::Any;
use std::fmt;
use std::future::{Future, Ready, poll_fn, ready};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::web::Bytes;
use actix_web::{Error, HttpMessage, HttpRequest, HttpResponse};
use mapping_webhooks::adapter::Admitted;
use mapping_webhooks::{DedupStore, Gate, MemoryStore, Reply};
use tracing::Instrument;

use crate::body::{self, Head, TenantKeyFn};
use crate::reject::{self, RejectFn};

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
/// use mapping_webhooks_actix::{Gate, VerifiedEvent, WebhookVerify};
///
/// async fn hook(event: VerifiedEvent) -> HttpResponse {
///     println!("{} {}", event.envelope.event_type, event.envelope.event_id);
///     HttpResponse::Ok().finish()
/// }
///
/// # fn main() -> std::io::Result<()> {
/// # actix_web::rt::System::new().block_on(async {
/// // Every option of the gate (secrets, tolerance, limits, store, observer) is set here.
/// let gate = Gate::builder()
///     .secret(std::env::var("MAPPING_WEBHOOK_SECRET").unwrap_or_default())
///     .body_limit(256 * 1024)
///     .build()
///     .expect("MAPPING_WEBHOOK_SECRET is set");
/// let verify = WebhookVerify::from_gate(gate);
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
///    body: a `Content-Length` over the [body limit](mapping_webhooks::GateBuilder::body_limit) 413; a missing,
///    repeated or malformed `X-Webhook-Signature` 400; a timestamp outside the
///    [tolerance](mapping_webhooks::GateBuilder::tolerance) 401;
/// 2. then reads the body, counting bytes: 413 as soon as it passes the limit (the rest
///    is never buffered), 408 when it is not received within the
///    [read timeout](mapping_webhooks::GateBuilder::read_timeout);
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
    pub(crate) gate: Gate<D>,
    pub(crate) on_reject: Arc<R>,
    pub(crate) tenant_key: Option<Arc<TenantKeyFn>>,
}

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
    /// rejections. The one-line shorthand: for any other option, build a [`Gate`] with
    /// [`Gate::builder`] and pass it to [`from_gate`](WebhookVerify::from_gate).
    ///
    /// # Panics
    ///
    /// When `secret` is empty or blank, which usually means its environment variable is
    /// not set: a receiver must not start without a secret. To handle that as an error,
    /// build the gate: `WebhookVerify::from_gate(Gate::builder().secret(secret).build()?)`;
    /// many tenants ([`Gate::for_tenants`]) or a [`Secrets`](crate::Secrets) handle to
    /// rotate while the server runs ([`Gate::from_secrets`], [`Gate::secrets`]) are the
    /// gate's too.
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        match Gate::builder().secret(secret).build() {
            Ok(gate) => Self::from_gate(gate),
            Err(e) => panic!("WebhookVerify::new: {e}"),
        }
    }
}

impl<D: DedupStore> WebhookVerify<D> {
    /// The middleware applying `gate`, built with [`Gate::builder`]: every option of the
    /// gate (previous secrets, tolerance, body limit, read timeout, dedup store,
    /// namespace, store-error policy, clock, observer) is set there, checked at once.
    ///
    /// ```
    /// use std::time::Duration;
    /// use mapping_webhooks_actix::{Gate, MemoryStore, WebhookVerify};
    ///
    /// let gate = Gate::builder()
    ///     .secret("whsec_current")
    ///     .previous_secret("whsec_before_rotation")
    ///     .tolerance(Duration::from_secs(120))
    ///     .read_timeout(Duration::from_secs(5))
    ///     .dedup(MemoryStore::new())
    ///     .namespace("orders")
    ///     .build()?;
    /// let verify = WebhookVerify::from_gate(gate).json_rejections();
    /// assert_eq!(verify.gate().read_timeout(), Duration::from_secs(5));
    /// # Ok::<(), mapping_webhooks_actix::ConfigError>(())
    /// ```
    ///
    /// Behind the middleware the handler's extractors apply their own limits too:
    /// `web::Bytes` and `String` default to 256 KiB (`web::PayloadConfig`), `web::Json`
    /// to 2 MiB (`web::JsonConfig`).
    pub fn from_gate(gate: Gate<D>) -> Self {
        Self {
            gate,
            on_reject: Arc::new(reject::plain_text),
            tenant_key: None,
        }
    }
}

impl<D: DedupStore, R> WebhookVerify<D, R> {
    /// Builds the responses given without running the handler (refusals, duplicates,
    /// 409, 503, and the inbox endpoint's answers) with `f` instead of
    /// [`reject::plain_text`]. [`reject::json`] is ready to use (see also
    /// [`json_rejections`](Self::json_rejections)); your own function can call either and
    /// adjust the result. Keep the [`Reply`]'s status: the sender retries anything but 2xx.
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

    /// Takes each request's tenant key with `f` instead of the [`TenantFrom`](crate::TenantFrom) given to
    /// [`Gate::for_tenants`] (which this replaces; without tenants
    /// the key is not used). `None` is an unknown tenant (404). The route is matched
    /// before the middleware runs, so a path parameter is there:
    ///
    /// ```
    /// use mapping_webhooks_actix::{Gate, ResolveError, Tenant, TenantFrom, Tenants, WebhookVerify};
    ///
    /// let tenants = Tenants::new(|_key: String| async { Ok::<Option<Tenant>, ResolveError>(None) });
    /// // web::resource("/hooks/{tenant}/mapping")
    /// let verify = WebhookVerify::from_gate(Gate::for_tenants(tenants, TenantFrom::PathSegment(1)))
    ///     .tenant_key(|req| req.match_info().get("tenant").map(str::to_owned));
    /// # let _ = verify;
    /// ```
    pub fn tenant_key<F>(mut self, f: F) -> Self
    where
        F: Fn(&HttpRequest) -> Option<String> + Send + Sync + 'static,
    {
        self.tenant_key = Some(Arc::new(f));
        self
    }

    /// The core gate this middleware applies: its settings read back with the gate's
    /// getters ([`body_limit`](Gate::body_limit), [`read_timeout`](Gate::read_timeout), …).
    pub fn gate(&self) -> &Gate<D> {
        &self.gate
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

/// One request: the core's pipeline decides, the handler runs in the delivery's span,
/// and its status settles the event.
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
    // Taking the payload reads nothing; it is only polled once the head has passed.
    let mut payload = req.take_payload();
    let admitted = {
        let head = Head {
            req: req.request(),
            tenant_key: shared.tenant_key.as_deref(),
        };
        match body::read(&shared.gate, &head, &mut payload).await {
            Ok(intake) => intake.admit().await,
            Err(reply) => Err(reply),
        }
    };
    drop(payload);
    let Admitted {
        verified,
        body,
        ticket,
        ..
    } = match admitted {
        Ok(admitted) => admitted,
        Err(reply) => {
            let response = (shared.on_reject)(&reply);
            return Ok(req.into_response(response).map_into_right_body());
        }
    };
    req.extensions_mut().insert(verified);
    req.extensions_mut().insert(VerifiedBody(body.clone()));
    req.set_payload(Payload::from(body));

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
            // The panic hook printed the message. Without this, actix-web drops the
            // connection and the sender sees no answer at all.
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
