//! Verify and deduplicate [Mapping.Travel](https://mapping.travel) webhooks in axum,
//! hyper and any tower stack.
//!
//! [`WebhookVerify`] is a tower [`Layer`](tower_layer::Layer). Put it on the webhook
//! route and every request goes through the core's [`Gate`]
//! before your handler runs:
//!
//! 1. the request head is checked before any byte of the body is read (and, as hyper
//!    sends `100 Continue` only when the body is first read, before an
//!    `Expect: 100-continue` is answered): a declared `Content-Length` over the body
//!    limit (default 1 MiB) 413; a missing, repeated or malformed `X-Webhook-Signature`
//!    400; a timestamp outside the tolerance (stale or future) 401;
//! 2. only then is the raw body read up to the limit (413 as soon as it is passed, the
//!    rest is not buffered) within the read timeout (408), and the signature checked
//!    against those raw bytes: a wrong signature 401, a correctly signed body that is not
//!    an envelope 400;
//! 3. the event is claimed in the dedup store on its `eventId` (only now, so a forged
//!    request never touches the store): already processed → 200 without running the
//!    handler; another copy in flight → 409 with `Retry-After`; store down → 503 (or,
//!    if you choose [`OnStoreError::PassThrough`](mapping_webhooks::OnStoreError), the
//!    handler runs unchecked);
//! 4. your handler gets the request with the **same bytes** as its body (so `Json<T>`,
//!    `Bytes` and `String` work unchanged) and the [`Verified`]
//!    metadata in its extensions;
//! 5. the event is marked done only if the handler answered 2xx. Any other status, an
//!    error, a panic or a dropped future (the client went away, a timeout) frees the
//!    claim, so the sender's retry is processed.
//!
//! Refusals are responses with a short reason (never the expected signature), built by
//! [`PlainTextReject`] by default, [`JsonReject`] with
//! [`json_rejections`](WebhookVerify::json_rejections), or your own function with
//! [`on_reject`](WebhookVerify::on_reject). Each is logged once, by the core, as a
//! `tracing` event.
//!
//! # axum
//!
//! ```
//! use axum::{Extension, Json, Router, http::StatusCode, routing::post};
//! use mapping_webhooks::Verified;
//! use mapping_webhooks_tower::{VerifiedEvent, WebhookVerify};
//!
//! // The typed extractor: the envelope and the metadata.
//! async fn on_event(event: VerifiedEvent) -> StatusCode {
//!     println!("{} {}", event.verified.event_type, event.envelope.event_id);
//!     StatusCode::NO_CONTENT
//! }
//!
//! // Or axum's own extractors, behind the layer, with the metadata from the extensions.
//! async fn on_json(Extension(meta): Extension<Verified>, Json(body): Json<serde_json::Value>) {
//!     println!("{} {}", meta.event_id, body["data"]);
//! }
//!
//! # fn secret() -> String { "whsec_test".into() }
//! let app: Router = Router::new()
//!     .route("/hooks/mapping", post(on_event))
//!     .route("/hooks/raw", post(on_json))
//!     .layer(WebhookVerify::new(secret()));
//! ```
//!
//! `Router::route_layer` works the same, and limits the layer to the routes added
//! before it. The [`VerifiedEvent`] extractor needs the default `axum` feature;
//! without it this crate does not depend on axum.
//!
//! # hyper 1 and plain tower
//!
//! The service accepts any request body and hands the inner service a
//! `Request<`[`VerifiedBody`]`>`. With hyper, wrap the stack with hyper-util's
//! `TowerToHyperService`:
//!
//! ```no_run
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use hyper_util::rt::TokioIo;
//! use hyper_util::service::TowerToHyperService;
//! use mapping_webhooks::Verified;
//! use mapping_webhooks_tower::{VerifiedBody, WebhookVerify};
//! use tower::ServiceBuilder;
//!
//! async fn handle(request: Request<VerifiedBody>) -> Result<Response<String>, Infallible> {
//!     let meta = request.extensions().get::<Verified>().expect("set by the layer");
//!     let body = request.body().as_bytes(); // the verified raw bytes
//!     println!("{} ({} bytes)", meta.event_id, body.len());
//!     Ok(Response::new(String::new()))
//! }
//!
//! # #[tokio::main] async fn main() -> std::io::Result<()> {
//! let service = ServiceBuilder::new()
//!     .layer(WebhookVerify::new("whsec_test"))
//!     .service_fn(handle);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! loop {
//!     let (stream, _) = listener.accept().await?;
//!     let service = TowerToHyperService::new(service.clone());
//!     tokio::spawn(async move {
//!         let io = TokioIo::new(stream);
//!         let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
//!     });
//! }
//! # }
//! ```
//!
//! The response body of an inner service must have `Bytes` as its data (as axum's,
//! `String`-free hyper bodies such as `Full<Bytes>` do); the layer answers with
//! [`ResponseBody`], which is either the inner body or its own short reply. The read
//! timeout uses tokio's timer, so the runtime needs it enabled (`#[tokio::main]` does).
//!
//! # Deduplication across replicas
//!
//! The default [`MemoryStore`] is right for one process.
//! Behind a load balancer, pass a shared store to [`dedup`](WebhookVerify::dedup), such
//! as the core's `RedisStore` (this crate's `redis` feature re-exports it); turn
//! deduplication off with [`without_dedup`](WebhookVerify::without_dedup) only if the
//! handler is idempotent on its own.

mod body;
#[cfg(feature = "axum")]
mod extract;
mod layer;
pub mod reject;
mod service;

pub use body::{ResponseBody, VerifiedBody};
#[cfg(feature = "axum")]
pub use extract::{VerifiedEvent, VerifiedEventRejection};
pub use layer::WebhookVerify;
/// Request counts and durations through the `metrics` facade.
#[cfg(feature = "metrics")]
pub use mapping_webhooks::MetricsObserver;
/// The core's types a receiver names, so one dependency is enough for most apps.
pub use mapping_webhooks::{
    DedupStore, Envelope, Gate, MappingCompleted, MatchedSecret, MemoryStore, OnStoreError, Reply,
    Verified,
};
/// The Redis store, for receivers that run on several replicas.
#[cfg(feature = "redis")]
pub use mapping_webhooks::{RedisStore, RedisStoreBuilder};
pub use reject::{JsonReject, OnReject, PlainTextReject};
pub use service::{ResponseFuture, WebhookVerifyService};
