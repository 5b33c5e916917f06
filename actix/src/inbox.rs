//! The inbox endpoint: the middleware's pipeline, ending in a durable [`Sink`] (such as
//! `mapping-webhooks-inbox`'s `Inbox`) instead of a handler.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, Resource, web};
use mapping_webhooks::{DedupStore, Reply, Sink};

use crate::WebhookVerify;
use crate::body::{self, Head};

impl<D: DedupStore, R: Fn(&Reply) -> HttpResponse + 'static> WebhookVerify<D, R> {
    /// A resource at `path` whose `POST` verifies each delivery as the middleware does,
    /// stores it in `sink` and answers at once; a worker processes it afterwards.
    ///
    /// It is the middleware's own pipeline, so everything configured here applies:
    /// tenants (and [`tenant_key`](Self::tenant_key)), the gate's limits, dedup store
    /// and observer, and the refusal format ([`on_reject`](Self::on_reject),
    /// [`json_rejections`](Self::json_rejections)), which also builds the answers: 202
    /// once the sink committed the delivery, 200 with `X-Webhook-Duplicate: true` when it
    /// held the event already, 503 (the sender retries) when it failed, and every
    /// refusal the middleware gives, before the body is read where the head decides.
    ///
    /// With `mapping-webhooks-inbox` (not compiled here: this crate does not depend on it):
    ///
    /// ```ignore
    /// use actix_web::{App, HttpServer};
    /// use mapping_webhooks_actix::{Gate, WebhookVerify};
    /// use mapping_webhooks_inbox::{Delivery, Inbox};
    ///
    /// # #[actix_web::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let gate = Gate::builder().secret(std::env::var("MAPPING_WEBHOOK_SECRET")?).build()?;
    /// let verify = WebhookVerify::from_gate(gate).json_rejections();
    /// let inbox = Inbox::builder().connect("sqlite://webhooks.db").await?;
    /// let worker = inbox.worker(|delivery: Delivery| async move {
    ///     println!("{}", delivery.envelope.event_id);
    ///     Ok::<(), std::io::Error>(())
    /// });
    /// actix_web::rt::spawn(worker.run());
    /// HttpServer::new(move || {
    ///     App::new().service(verify.clone().inbox("/hooks/mapping", inbox.clone()))
    /// })
    /// .bind("127.0.0.1:3000")?
    /// .run()
    /// .await?;
    /// # Ok(()) }
    /// ```
    pub fn inbox<S: Sink + 'static>(self, path: &str, sink: S) -> Resource {
        let (verify, sink) = (Arc::new(self), Arc::new(sink));
        web::resource(path).route(
            web::post().to(move |req: HttpRequest, payload: web::Payload| {
                let (verify, sink) = (Arc::clone(&verify), Arc::clone(&sink));
                async move {
                    let head = Head {
                        req: &req,
                        tenant_key: verify.tenant_key.as_deref(),
                    };
                    let reply =
                        match body::read(&verify.gate, &head, &mut payload.into_inner()).await {
                            Ok(intake) => intake.admit_into(&*sink).await,
                            Err(reply) => reply,
                        };
                    (verify.on_reject)(&reply)
                }
            }),
        )
    }
}
