//! The inbox endpoint: a service that verifies and stores each delivery in a
//! [`Inbox`](mapping_webhooks_inbox::Inbox), answering once it is committed.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use mapping_webhooks::{DUPLICATE_HEADER, SIGNATURE_HEADER, VerifyError};
use mapping_webhooks_inbox::{Acceptance, Inbox};
use tower_service::Service;

use crate::body::{ReadError, ResponseBody, VerifiedBody, read_limited};
use crate::service::unsigned_headers;

/// A tower [`Service`](https://docs.rs/tower-service/0.3/tower_service/trait.Service.html)
/// that stores every verified delivery in an [`Inbox`] and answers at once; a
/// [`Worker`](mapping_webhooks_inbox::Worker) processes it afterwards.
///
/// Mount it with axum's `route_service`:
///
/// ```no_run
/// use axum::{Router, routing::post_service};
/// use mapping_webhooks_tower::InboxService;
/// use mapping_webhooks_inbox::{Delivery, Inbox};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let inbox = Inbox::builder(std::env::var("MAPPING_WEBHOOK_SECRET")?)?
///     .connect("sqlite://webhooks.db")
///     .await?;
/// tokio::spawn(
///     inbox
///         .worker(|delivery: Delivery| async move {
///             println!("{}", delivery.envelope.event_id);
///             Ok::<(), std::io::Error>(())
///         })
///         .run(),
/// );
/// let app: Router = Router::new().route_service("/hooks/mapping", post_service(InboxService::new(inbox)));
/// # Ok(()) }
/// ```
///
/// It reads the body within the inbox's [limit](Inbox::body_limit) (413 before reading
/// a larger `Content-Length`, or as soon as a streamed body passes it) and
/// [read timeout](Inbox::read_timeout) (408), then answers what
/// [`Inbox::accept`] decided: 202 once stored, 200 for a duplicate, 4xx for a refusal,
/// 503 when the database fails; a short plain-text reason in each case.
#[derive(Clone)]
pub struct InboxService {
    inbox: Inbox,
}

impl InboxService {
    /// An endpoint storing into `inbox`.
    pub fn new(inbox: Inbox) -> Self {
        Self { inbox }
    }

    /// The inbox.
    pub fn get_ref(&self) -> &Inbox {
        &self.inbox
    }
}

impl fmt::Debug for InboxService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboxService")
            .field("inbox", &self.inbox)
            .finish()
    }
}

impl<B> Service<Request<B>> for InboxService
where
    B: Body + Send + 'static,
    B::Data: Send,
{
    type Response = Response<ResponseBody<VerifiedBody>>;
    type Error = Infallible;
    type Future = InboxFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let inbox = self.inbox.clone();
        InboxFuture {
            inner: Box::pin(async move { Ok(respond(&accept(&inbox, request).await)) }),
        }
    }
}

/// Reads the body within the limits and asks the inbox. Every decision is the inbox's.
async fn accept<B: Body>(inbox: &Inbox, request: Request<B>) -> Acceptance {
    let (parts, body) = request.into_parts();
    let unsigned = unsigned_headers(&parts.headers);
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .or_else(|| body.size_hint().exact());
    let signatures = || {
        parts
            .headers
            .get_all(SIGNATURE_HEADER)
            .iter()
            .map(HeaderValue::as_bytes)
    };
    // The head first: a refused one is answered without reading the body.
    let head = match inbox.check_head(signatures(), declared, unsigned) {
        Ok(head) => head,
        Err(refused) => return refused,
    };
    let limit = inbox.body_limit();
    let read = tokio::time::timeout(inbox.read_timeout(), read_limited(body, limit, declared));
    let bytes = match read.await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(ReadError::TooLarge)) => {
            return inbox.refuse(VerifyError::BodyTooLarge { limit }, unsigned);
        }
        Ok(Err(ReadError::Broken)) => {
            return inbox.refuse(VerifyError::BodyRead { timed_out: false }, unsigned);
        }
        Err(_elapsed) => {
            return inbox.refuse(VerifyError::BodyRead { timed_out: true }, unsigned);
        }
    };
    // A head that passed has exactly one signature header.
    let header = signatures().next().unwrap_or_default();
    inbox.accept_checked(head, header, unsigned, &bytes).await
}

fn respond(acceptance: &Acceptance) -> Response<ResponseBody<VerifiedBody>> {
    let mut response = Response::new(ResponseBody::reply(Bytes::from_static(
        acceptance.reason().as_bytes(),
    )));
    *response.status_mut() =
        StatusCode::from_u16(acceptance.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if acceptance.is_duplicate() {
        headers.insert(DUPLICATE_HEADER, HeaderValue::from_static("true"));
    }
    response
}

/// What [`InboxService`] answers with.
type InboxResponse = Response<ResponseBody<VerifiedBody>>;

/// The future of [`InboxService`] (boxed: it awaits the inbox's `async fn`s).
pub struct InboxFuture {
    inner: Pin<Box<dyn Future<Output = Result<InboxResponse, Infallible>> + Send>>,
}

impl Future for InboxFuture {
    type Output = Result<InboxResponse, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl fmt::Debug for InboxFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboxFuture").finish_non_exhaustive()
    }
}
