//! The inbox endpoint: the layer's pipeline, ending in a durable [`Sink`] (such as
//! `mapping-webhooks-inbox`'s `Inbox`) instead of a handler.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
#[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
use http_body_util::BodyExt;
#[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
use mapping_webhooks::{DELIVERY_HEADER, EVENT_HEADER};
use mapping_webhooks::{DedupStore, MemoryStore, Sink};
#[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
use mapping_webhooks_inbox::Delivery;
use tower_service::Service;

use crate::WebhookVerify;
use crate::body::{self, Head, ResponseBody, VerifiedBody};
use crate::reject::{OnReject, PlainTextReject};
use crate::service::ResponseFuture;

impl<D: DedupStore, R: OnReject> WebhookVerify<D, R> {
    /// A service that verifies each delivery as the layer does, stores it in `sink` and
    /// answers at once; a worker processes it afterwards. Mount it with axum's
    /// `route_service` (or `post_service`).
    ///
    /// It is the layer's own pipeline, so everything configured here applies: tenants
    /// (and [`tenant_key`](Self::tenant_key)), the gate's limits, dedup store and
    /// observer, and the refusal format ([`on_reject`](Self::on_reject),
    /// [`json_rejections`](Self::json_rejections)), which also builds the answers: 202
    /// once the sink committed the delivery, 200 with `X-Webhook-Duplicate: true` when it
    /// held the event already, 503 (the sender retries) when it failed, and every
    /// refusal the layer gives, before the body is read where the head decides.
    ///
    /// With `mapping-webhooks-inbox`:
    ///
    /// ```ignore
    /// use axum::{Router, routing::post_service};
    /// use mapping_webhooks_tower::{Gate, WebhookVerify};
    /// use mapping_webhooks_inbox::{Delivery, Inbox};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let gate = Gate::builder().secret(std::env::var("MAPPING_WEBHOOK_SECRET")?).build()?;
    /// let inbox = Inbox::builder().connect("sqlite://webhooks.db").await?;
    /// let worker = inbox.worker(|delivery: Delivery| async move {
    ///     println!("{}", delivery.envelope.event_id);
    ///     Ok::<(), std::io::Error>(())
    /// });
    /// tokio::spawn(worker.run());
    /// let endpoint = WebhookVerify::from_gate(gate).json_rejections().inbox(inbox);
    /// let app: Router = Router::new().route_service("/hooks/mapping", post_service(endpoint));
    /// # Ok(()) }
    /// ```
    pub fn inbox<S: Sink + 'static>(self, sink: S) -> InboxService<S, D, R> {
        InboxService {
            sink: Arc::new(sink),
            verify: self,
        }
    }
}

/// A tower [`Service`](https://docs.rs/tower-service/0.3/tower_service/trait.Service.html)
/// storing every verified delivery in a [`Sink`] and answering at once; made by
/// [`WebhookVerify::inbox`]. Cheap to clone.
pub struct InboxService<S, D = MemoryStore, R = PlainTextReject> {
    sink: Arc<S>,
    verify: WebhookVerify<D, R>,
}

impl<S, D, R> InboxService<S, D, R> {
    /// The sink deliveries are stored in.
    pub fn sink(&self) -> &S {
        &self.sink
    }
}

impl<S, D, R> Clone for InboxService<S, D, R> {
    fn clone(&self) -> Self {
        Self {
            sink: Arc::clone(&self.sink),
            verify: self.verify.clone(),
        }
    }
}

impl<S: fmt::Debug, D, R> fmt::Debug for InboxService<S, D, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboxService")
            .field("sink", &self.sink)
            .field("verify", &self.verify)
            .finish()
    }
}

impl<B, S, D, R> Service<Request<B>> for InboxService<S, D, R>
where
    B: Body + Send + 'static,
    B::Data: Send,
    S: Sink + 'static,
    D: DedupStore,
    R: OnReject,
{
    type Response = Response<ResponseBody<VerifiedBody>>;
    type Error = Infallible;
    type Future = InboxFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let this = self.clone();
        ResponseFuture {
            inner: Box::pin(async move {
                let (parts, body) = request.into_parts();
                let head = Head::new(&parts, &body, &this.verify);
                let reply = match body::read(&this.verify.gate, &head, body).await {
                    Ok(intake) => intake.admit_into(&*this.sink).await,
                    Err(reply) => reply,
                };
                Ok(this.verify.on_reject.on_reject(&reply).map(body::reply))
            }),
        }
    }
}

/// The future of [`InboxService`]: the layer's [`ResponseFuture`], whose inner body
/// is never used.
pub type InboxFuture = ResponseFuture<VerifiedBody, Infallible>;

/// Runs `service`, the handler an app runs inline behind [`WebhookVerify`] (an axum
/// handler's `.with_state(..)` or `.into_service()`, an
/// [`EventRouter`](crate::EventRouter)'s, a `Router`), as the handler of an inbox
/// [`Worker`](mapping_webhooks_inbox::Worker): moving a slow handler to the inbox is
/// one line, `inbox.worker(worker_handler(service))`.
///
/// Each stored delivery is handed to `service` as the layer hands a request on: a
/// `POST /` whose body is the raw bytes as signed and whose extensions hold the
/// [`Verified`](mapping_webhooks::Verified) rebuilt from the stored row (tenant
/// included), with the sender's `Content-Type`, `X-Webhook-Event` and
/// `X-Webhook-Delivery` headers; a `Router` given here routes `/`. A 2xx answer marks
/// the delivery done; any other status or an error of the service is a failure the
/// worker retries (its message says the status, and the answer's body when it is at
/// most 1 KiB).
///
/// ```no_run
/// use axum::handler::Handler;
/// use axum::http::StatusCode;
/// use mapping_webhooks_inbox::Inbox;
/// use mapping_webhooks_tower::{EventRouter, MappingCompleted, VerifiedEvent, worker_handler};
///
/// async fn on_completed(event: VerifiedEvent<MappingCompleted>) -> StatusCode {
///     println!("{} rows", event.envelope.data.row_count); // slow work: an import
///     StatusCode::NO_CONTENT
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let inbox = Inbox::builder().connect("sqlite://webhooks.db").await?;
/// // Inline it was `.route("/hooks/mapping", post(events.clone()))` behind the layer:
/// let events = EventRouter::new().on(on_completed);
/// tokio::spawn(inbox.worker(worker_handler(events.with_state(()))).run());
/// # Ok(()) }
/// ```
#[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
pub fn worker_handler<S, ResBody>(service: S) -> impl Fn(Delivery) -> WorkerFuture + Send + Sync
where
    S: Service<Request<VerifiedBody>, Response = Response<ResBody>> + Clone + Send + Sync + 'static,
    S::Future: Send,
    S::Error: fmt::Display,
    ResBody: Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    move |delivery: Delivery| {
        let mut service = service.clone();
        Box::pin(async move {
            let mut request = Request::new(VerifiedBody::new(delivery.body.clone()));
            *request.method_mut() = http::Method::POST;
            let headers = request.headers_mut();
            let json = http::HeaderValue::from_static("application/json");
            headers.insert(http::header::CONTENT_TYPE, json);
            let (event, id) = (&delivery.envelope.event_type, &delivery.envelope.id);
            // A value no header can carry (a control character) is left out: the
            // handler reads the signed body, never these headers, to decide.
            for (name, value) in [(EVENT_HEADER, event), (DELIVERY_HEADER, id)] {
                if let Ok(value) = http::HeaderValue::from_str(value) {
                    headers.insert(name, value);
                }
            }
            request.extensions_mut().insert(delivery.verified());
            std::future::poll_fn(|cx| service.poll_ready(cx))
                .await
                .map_err(|e| format!("the handler's service failed: {e}"))?;
            let response = service
                .call(request)
                .await
                .map_err(|e| format!("the handler failed: {e}"))?;
            if response.status().is_success() {
                return Ok(());
            }
            // The answer (the refusal's reason, usually) for the operator, when short.
            let (parts, body) = response.into_parts();
            let text = http_body_util::Limited::new(body, 1024).collect().await;
            let text = text.map(|t| t.to_bytes()).unwrap_or_default();
            let text = String::from_utf8_lossy(&text);
            Err(format!("the handler answered {}: {text}", parts.status))
        })
    }
}

/// The future of the handler [`worker_handler`] makes: `Err` carries why the delivery
/// is retried.
#[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
pub type WorkerFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;
