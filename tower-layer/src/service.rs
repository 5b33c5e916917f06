//! The service: read the body within the limits, ask the gate, run the inner service.

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

use crate::body::{ReadError, ResponseBody, VerifiedBody, read_limited};
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
}

impl<S, D, R> WebhookVerifyService<S, D, R> {
    pub(crate) fn new(inner: S, gate: Arc<Gate<D>>, on_reject: Arc<R>) -> Self {
        Self {
            inner,
            gate,
            on_reject,
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
        ResponseFuture {
            inner: Box::pin(receive(inner, gate, on_reject, request)),
        }
    }
}

/// The whole life of one request. Every decision is the gate's; this only moves bytes.
async fn receive<S, B, ResBody, D, R>(
    mut inner: S,
    gate: Arc<Gate<D>>,
    on_reject: Arc<R>,
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
    if let Err(reply) = gate.check_content_length(declared, unsigned) {
        return answer(reply);
    }
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
    let signatures = parts
        .headers
        .get_all(SIGNATURE_HEADER)
        .iter()
        .map(HeaderValue::as_bytes);
    let (verified, ticket) = match gate.admit(signatures, unsigned, &bytes).await {
        Admission::Process { verified, ticket } => (verified, ticket),
        Admission::Reply(reply) => return answer(reply),
    };
    parts.extensions.insert(verified);
    // If the inner future panics or this future is dropped (client gone, a timeout
    // layer), the ticket is dropped unfinished and frees the claim itself.
    match inner
        .call(Request::from_parts(parts, VerifiedBody::new(bytes)))
        .await
    {
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

fn unsigned_headers(headers: &HeaderMap) -> UnsignedHeaders<'_> {
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
