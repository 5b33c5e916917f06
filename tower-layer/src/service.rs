//! The service: the request's whole life, moved through the core's pipeline.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use mapping_webhooks::adapter::Admitted;
use mapping_webhooks::{DedupStore, MemoryStore};
use tower_service::Service;
use tracing::Instrument;

use crate::WebhookVerify;
use crate::body::{self, Head, ResponseBody, VerifiedBody};
use crate::reject::{OnReject, PlainTextReject};

/// The service [`WebhookVerify`] wraps around your handler.
///
/// It accepts a request with any body, and hands the inner service a
/// `Request<`[`VerifiedBody`]`>` carrying the same bytes and, in its extensions, the
/// [`Verified`](mapping_webhooks::Verified) metadata. Its error is the inner service's:
/// a refused request is a response, not an error.
pub struct WebhookVerifyService<S, D = MemoryStore, R = PlainTextReject> {
    inner: S,
    verify: WebhookVerify<D, R>,
}

impl<S, D, R> WebhookVerifyService<S, D, R> {
    pub(crate) fn new(inner: S, verify: WebhookVerify<D, R>) -> Self {
        Self { inner, verify }
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
        Self::new(self.inner.clone(), self.verify.clone())
    }
}

impl<S: fmt::Debug, D, R> fmt::Debug for WebhookVerifyService<S, D, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookVerifyService")
            .field("inner", &self.inner)
            .field("verify", &self.verify)
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
    ResBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
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
        ResponseFuture {
            inner: Box::pin(receive(inner, self.verify.clone(), request)),
        }
    }
}

/// The whole life of one request. Every decision is the gate's; this only moves bytes.
async fn receive<S, B, ResBody, D, R>(
    mut inner: S,
    verify: WebhookVerify<D, R>,
    request: Request<B>,
) -> Result<Response<ResponseBody<ResBody>>, S::Error>
where
    S: Service<Request<VerifiedBody>, Response = Response<ResBody>>,
    B: Body,
    D: DedupStore,
    R: OnReject,
{
    let (mut parts, body) = request.into_parts();
    let head = Head::new(&parts, &body, &verify);
    let admitted = match body::read(&verify.gate, &head, body).await {
        Ok(intake) => intake.admit().await,
        Err(reply) => Err(reply),
    };
    let Admitted {
        verified,
        body,
        ticket,
        ..
    } = match admitted {
        Ok(admitted) => admitted,
        Err(reply) => return Ok(verify.on_reject.on_reject(&reply).map(body::reply)),
    };
    parts.extensions.insert(verified);
    // If the inner future panics or this future is dropped (client gone, a timeout
    // layer), the ticket is dropped unfinished and frees the claim itself. The handler
    // runs inside the delivery's span.
    let span = ticket.span().clone();
    let call = span.in_scope(|| inner.call(Request::from_parts(parts, VerifiedBody::new(body))));
    match call.instrument(span).await {
        Ok(response) => {
            ticket.finish(response.status().as_u16()).await;
            Ok(response.map(ResponseBody::Left))
        }
        Err(error) => {
            ticket.failed().await;
            Err(error)
        }
    }
}

/// The future of [`WebhookVerifyService`].
///
/// It is boxed (one allocation per request) because it awaits the gate's `admit` and
/// the store's `begin`/`complete`/`abandon`, which are `async fn`s whose future types
/// cannot be named on stable Rust; a hand-written state machine would have to box them
/// anyway.
pub struct ResponseFuture<B, E> {
    pub(crate) inner: Pin<Box<dyn Future<Output = Outcome<B, E>> + Send>>,
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
