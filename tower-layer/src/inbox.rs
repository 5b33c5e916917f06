//! The inbox endpoint: the layer's pipeline, ending in a durable [`Sink`] (such as
//! `mapping-webhooks-inbox`'s `Inbox`) instead of a handler.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use mapping_webhooks::{DedupStore, MemoryStore, Sink};
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
                let head = Head {
                    parts: &parts,
                    exact_size: body.size_hint().exact(),
                    tenant_key: this.verify.tenant_key.as_deref(),
                };
                let reply = match body::read(&this.verify.gate, &head, body).await {
                    Ok(intake) => intake.admit_into(&*this.sink).await,
                    Err(reply) => reply,
                };
                Ok(this
                    .verify
                    .on_reject
                    .on_reject(&reply)
                    .map(ResponseBody::reply))
            }),
        }
    }
}

/// The future of [`InboxService`]: the layer's [`ResponseFuture`], whose inner body
/// is never used.
pub type InboxFuture = ResponseFuture<VerifiedBody, Infallible>;
