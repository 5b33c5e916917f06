//! The service: read the body within the limits, ask the gate, run the inner service.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::Body;
use mapping_webhooks::{
    Admission, DELIVERY_HEADER, DedupStore, EVENT_HEADER, Gate, MemoryStore, Reply,
    SIGNATURE_HEADER, UnsignedHeaders, VerifyError,
};
use tower_service::Service;
use tracing::Instrument;

use crate::body::{ReadError, ResponseBody, VerifiedBody, read_limited};
use crate::layer::TenantKeyFn;
use crate::reject::{OnReject, PlainTextReject};

/// The service [`WebhookVerify`](crate::WebhookVerify) wraps around your handler.
///
/// It accepts a request with any body, and hands the inner service a
/// `Request<`[`VerifiedBody`]`>` carrying the same bytes and, in its extensions, the
/// [`Verified`](mapping_webhooks::Verified) metadata. Its error is the inner service's:
/// a refused request is a response, not an error.
pub struct WebhookVerifyService<S, D = MemoryStore, R = PlainTextReject> {
    inner: S,
    gate: Arc<Gate<D>>,
    on_reject: Arc<R>,
    tenant_key: Option<Arc<TenantKeyFn>>,
}

impl<S, D, R> WebhookVerifyService<S, D, R> {
    pub(crate) fn new(
        inner: S,
        gate: Arc<Gate<D>>,
        on_reject: Arc<R>,
        tenant_key: Option<Arc<TenantKeyFn>>,
    ) -> Self {
        Self {
            inner,
            gate,
            on_reject,
            tenant_key,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, D, R> Clone for WebhookVerifyService<S, D, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            gate: Arc::clone(&self.gate),
            on_reject: Arc::clone(&self.on_reject),
            tenant_key: self.tenant_key.clone(),
        }
    }
}

impl<S: fmt::Debug, D, R> fmt::Debug for WebhookVerifyService<S, D, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookVerifyService")
            .field("inner", &self.inner)
            .field("gate", &self.gate)
            .field("on_reject", &format_args!("<fn>"))
            .finish()
    }
}

impl<S, B, ResBody, D, R> Service<Request<B>> for WebhookVerifyService<S, D, R>
where
    S: Service<Request<VerifiedBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    ResBody: Body<Data = Bytes> + Send + 'static,
    D: DedupStore,
    R: OnReject,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // Take the service that was driven to readiness and leave a fresh clone behind.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let gate = Arc::clone(&self.gate);
        let on_reject = Arc::clone(&self.on_reject);
        let tenant_key = self.tenant_key.clone();
        ResponseFuture {
            inner: Box::pin(receive(inner, gate, on_reject, tenant_key, request)),
        }
    }
}

/// The whole life of one request. Every decision is the gate's; this only moves bytes.
async fn receive<S, B, ResBody, D, R>(
    mut inner: S,
    gate: Arc<Gate<D>>,
    on_reject: Arc<R>,
    tenant_key: Option<Arc<TenantKeyFn>>,
    request: Request<B>,
) -> Result<Response<ResponseBody<ResBody>>, S::Error>
where
    S: Service<Request<VerifiedBody>, Response = Response<ResBody>>,
    B: Body,
    D: DedupStore,
    R: OnReject,
{
    let answer = |reply: Reply| Ok(on_reject.on_reject(&reply).map(ResponseBody::reply));
    let (mut parts, body) = request.into_parts();
    let unsigned = unsigned_headers(&parts.headers);
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .or_else(|| body.size_hint().exact());
    let signatures = parts
        .headers
        .get_all(SIGNATURE_HEADER)
        .iter()
        .map(HeaderValue::as_bytes);
    // Before the body is polled: hyper answers `Expect: 100-continue` only then, so a
    // request refused here is never sent a 100, and none of its body is read.
    let head = match gate.check_head(signatures, declared, unsigned) {
        Ok(head) => head,
        Err(reply) => return answer(reply),
    };
    // Many tenants: the tenant's secrets, still before the body is read.
    let custom = match (&tenant_key, gate.tenant_from()) {
        (Some(f), Some(_)) => f(&parts),
        _ => None,
    };
    let tenant = match (custom, gate.tenant_from()) {
        (Some(key), _) => Some(Cow::Owned(key)),
        (None, Some(from)) if tenant_key.is_none() => from.key(parts.uri.path(), host(&parts)),
        _ => None,
    };
    let head = match gate.check_tenant(head, tenant.as_deref(), unsigned).await {
        Ok(head) => head,
        Err(reply) => return answer(reply),
    };
    let limit = gate.get_body_limit();
    let read = tokio::time::timeout(gate.get_read_timeout(), read_limited(body, limit, declared));
    let bytes = match read.await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(ReadError::TooLarge)) => {
            return answer(gate.refuse(VerifyError::BodyTooLarge { limit }, unsigned));
        }
        Ok(Err(ReadError::Broken)) => {
            return answer(gate.refuse(VerifyError::BodyRead { timed_out: false }, unsigned));
        }
        Err(_elapsed) => {
            return answer(gate.refuse(VerifyError::BodyRead { timed_out: true }, unsigned));
        }
    };
    let (verified, ticket) = match gate.admit_checked(head, unsigned, &bytes).await {
        Admission::Process { verified, ticket } => (verified, ticket),
        Admission::Reply(reply) => return answer(reply),
    };
    parts.extensions.insert(verified);
    // If the inner future panics or this future is dropped (client gone, a timeout
    // layer), the ticket is dropped unfinished and frees the claim itself. The handler
    // runs inside the delivery's span.
    let span = ticket.span().clone();
    let call = span.in_scope(|| inner.call(Request::from_parts(parts, VerifiedBody::new(bytes))));
    match call.instrument(span).await {
        Ok(response) => {
            ticket.finish(response.status().as_u16()).await;
            Ok(response.map(ResponseBody::inner))
        }
        Err(error) => {
            ticket.failed().await;
            Err(error)
        }
    }
}

/// The request's host: the URI's authority (HTTP/2, absolute-form), else `Host`.
fn host(parts: &http::request::Parts) -> Option<&str> {
    parts
        .uri
        .authority()
        .map(http::uri::Authority::as_str)
        .or_else(|| parts.headers.get(http::header::HOST)?.to_str().ok())
}

pub(crate) fn unsigned_headers(headers: &HeaderMap) -> UnsignedHeaders<'_> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    UnsignedHeaders {
        delivery_id: text(DELIVERY_HEADER),
        event_type: text(EVENT_HEADER),
    }
}

/// The future of [`WebhookVerifyService`].
///
/// It is boxed (one allocation per request) because it awaits the gate's `admit` and
/// the store's `begin`/`complete`/`abandon`, which are `async fn`s whose future types
/// cannot be named on stable Rust; a hand-written state machine would have to box them
/// anyway.
pub struct ResponseFuture<B, E> {
    inner: Pin<Box<dyn Future<Output = Outcome<B, E>> + Send>>,
}

type Outcome<B, E> = Result<Response<ResponseBody<B>>, E>;

impl<B, E> Future for ResponseFuture<B, E> {
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<B, E> fmt::Debug for ResponseFuture<B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture")
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use http_body_util::BodyExt;
    use mapping_webhooks::{Secret, Signer};
    use tower::{ServiceBuilder, ServiceExt};

    use super::*;
    use crate::WebhookVerify;

    const SECRET: &str = "whsec_service_test_0123456789abcdef";

    fn signed(event_id: &str) -> Request<VerifiedBody> {
        let body = format!(
            r#"{{"id":"del_1","eventId":"{event_id}","type":"mapping.completed","data":{{}}}}"#
        );
        let header = Signer::new(Secret::new(SECRET).unwrap()).sign_now(body.as_bytes());
        Request::post("/")
            .header(SIGNATURE_HEADER, header)
            .body(VerifiedBody::new(Bytes::from(body)))
            .unwrap()
    }

    /// A POST carrying a signature that is valid now (for some body: these bodies are
    /// refused before their signature would be compared).
    fn with_fresh_signature() -> http::request::Builder {
        let header = Signer::new(Secret::new(SECRET).unwrap()).sign_now(b"{}");
        Request::post("/").header(SIGNATURE_HEADER, header)
    }

    /// A body that never finishes.
    struct Stalled;

    impl Body for Stalled {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
            Poll::Pending
        }
    }

    /// A body that must not be read.
    struct Untouchable;

    impl Body for Untouchable {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
            panic!("the body was read although the request head was refused")
        }
    }

    /// A body whose transfer breaks.
    struct Broken;

    impl Body for Broken {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
            Poll::Ready(Some(Err(std::io::Error::other("connection reset"))))
        }
    }

    async fn ok(_: Request<VerifiedBody>) -> Result<Response<VerifiedBody>, Infallible> {
        Ok(Response::new(VerifiedBody::default()))
    }

    /// Records the fields of every `webhook` span, as `name=value`.
    #[derive(Clone, Default)]
    struct SpanFields(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

    impl tracing::field::Visit for SpanFields {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{}={value:?}", field.name()));
        }

        fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{}={value}", field.name()));
        }
    }

    impl<S> tracing_subscriber::Layer<S> for SpanFields
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            _: &tracing::span::Id,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            if attrs.metadata().name() == "webhook" {
                attrs.record(&mut self.clone());
            }
        }

        fn on_record(
            &self,
            id: &tracing::span::Id,
            values: &tracing::span::Record<'_>,
            ctx: tracing_subscriber::layer::Context<'_, S>,
        ) {
            if ctx.span(id).is_some_and(|span| span.name() == "webhook") {
                values.record(&mut self.clone());
            }
        }
    }

    impl SpanFields {
        /// Installs a registry with this layer as the thread's default subscriber.
        ///
        /// Send one delivery before: tracing caches each callsite's interest when the
        /// callsite is first hit, and a test on another thread hitting the span's
        /// callsite while this subscriber is being installed can leave it cached as
        /// "never" (the span then disabled here). Hit first on this thread, the callsite
        /// is registered before the subscriber, whose installation rebuilds every
        /// registered callsite's interest.
        fn install(&self) -> tracing::subscriber::DefaultGuard {
            use tracing_subscriber::layer::SubscriberExt;
            tracing::subscriber::set_default(tracing_subscriber::registry().with(self.clone()))
        }

        fn fields(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }
    }

    /// The name of the span the code calling this runs in.
    fn current_span() -> Option<&'static str> {
        tracing::Span::current().metadata().map(|m| m.name())
    }

    #[tokio::test]
    async fn the_handler_runs_inside_the_delivery_span() {
        let spans = SpanFields::default();
        let service = ServiceBuilder::new()
            .layer(WebhookVerify::new(SECRET))
            .service_fn(|_: Request<VerifiedBody>| async {
                let span = current_span();
                tracing::info!("the handler logs");
                Ok::<_, Infallible>(Response::new(VerifiedBody::new(Bytes::from(
                    span.unwrap_or("none"),
                ))))
            });
        // Registers the callsites before the subscriber (see `install`).
        let warm_up = service.clone().oneshot(signed("evt_span_warm_up")).await;
        assert_eq!(warm_up.unwrap().status(), http::StatusCode::OK);
        let _guard = spans.install();
        let response = service.oneshot(signed("evt_span")).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "webhook", "the handler ran outside the delivery span");
        let fields = spans.fields();
        for field in [
            "event_id=evt_span",
            "delivery_id=del_1",
            "event_type=mapping.completed",
            "outcome=processed",
            "reason=2xx",
        ] {
            assert!(fields.iter().any(|f| f == field), "{field} in {fields:?}");
        }
    }

    #[tokio::test]
    async fn an_inner_error_frees_the_claim() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let service = ServiceBuilder::new()
            .layer(WebhookVerify::new(SECRET))
            .service_fn(move |_: Request<VerifiedBody>| {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n == 0 {
                        Err(std::io::Error::other("handler failed"))
                    } else {
                        Ok(Response::new(VerifiedBody::default()))
                    }
                }
            });
        let first = service.clone().oneshot(signed("evt_err")).await;
        assert!(first.is_err(), "the inner error is the service's error");
        let second = service.clone().oneshot(signed("evt_err")).await.unwrap();
        assert_eq!(second.status(), 200);
        assert_eq!(calls.load(Ordering::SeqCst), 2, "the retry ran the handler");
        let third = service.oneshot(signed("evt_err")).await.unwrap();
        assert_eq!(third.status(), 200);
        assert_eq!(calls.load(Ordering::SeqCst), 2, "then it is done");
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_unread() {
        let service = ServiceBuilder::new()
            .layer(WebhookVerify::new(SECRET).body_limit(1000))
            .service_fn(ok);
        let request = Request::post("/")
            .header(CONTENT_LENGTH, "1001")
            .body(Untouchable)
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        assert_eq!(response.status(), 413);
    }

    #[tokio::test]
    async fn a_bad_signature_header_is_refused_with_the_body_unread() {
        let service = ServiceBuilder::new()
            .layer(WebhookVerify::new(SECRET))
            .service_fn(ok);
        let stale = Signer::new(Secret::new(SECRET).unwrap()).sign(b"{}", 1_000_000_000);
        for (request, status) in [
            (Request::post("/"), 400),
            (Request::post("/").header(SIGNATURE_HEADER, "t=soon"), 400),
            (with_fresh_signature().header(SIGNATURE_HEADER, "t=1"), 400),
            (Request::post("/").header(SIGNATURE_HEADER, stale), 401),
        ] {
            let request = request
                .header(CONTENT_LENGTH, "1000")
                .body(Untouchable)
                .unwrap();
            let response = service.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), status);
        }
    }

    #[tokio::test]
    async fn a_stalled_body_times_out_with_408() {
        let service = ServiceBuilder::new()
            .layer(WebhookVerify::new(SECRET).read_timeout(Duration::from_millis(20)))
            .service_fn(ok);
        let response = service
            .oneshot(with_fresh_signature().body(Stalled).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 408);
    }

    #[tokio::test]
    async fn a_broken_body_is_400() {
        let service = ServiceBuilder::new()
            .layer(WebhookVerify::new(SECRET))
            .service_fn(ok);
        let response = service
            .oneshot(with_fresh_signature().body(Broken).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "body could not be read");
    }

    #[tokio::test]
    async fn custom_and_json_rejections_are_used() {
        let custom = ServiceBuilder::new()
            .layer(WebhookVerify::new(SECRET).on_reject(|reply: &Reply| {
                let mut r = crate::reject::plain_text(reply);
                r.headers_mut()
                    .insert("x-refusal", HeaderValue::from_static(reply.code()));
                r
            }))
            .service_fn(ok);
        let response = custom
            .oneshot(Request::post("/").body(VerifiedBody::default()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(response.headers()["x-refusal"], "missing_header");

        let json = ServiceBuilder::new()
            .layer(WebhookVerify::new(SECRET).json_rejections())
            .service_fn(ok);
        let response = json
            .oneshot(Request::post("/").body(VerifiedBody::default()).unwrap())
            .await
            .unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["code"], "missing_header");
        assert_eq!(value["status"], 400);
    }

    #[tokio::test]
    async fn the_inner_service_gets_the_bytes_and_the_metadata() {
        let service = ServiceBuilder::new()
            .layer(WebhookVerify::new(SECRET))
            .service_fn(|request: Request<VerifiedBody>| async move {
                let meta = request.extensions().get::<mapping_webhooks::Verified>();
                assert_eq!(meta.map(|m| m.event_id.as_str()), Some("evt_meta"));
                Ok::<_, Infallible>(Response::new(request.into_body()))
            });
        let request = signed("evt_meta");
        let sent = request.body().as_bytes().to_vec();
        let response = service.oneshot(request).await.unwrap();
        let echoed = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(echoed, sent);
    }
}
