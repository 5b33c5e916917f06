//! Verify and deduplicate [Mapping.Travel](https://mapping.travel) webhooks in axum,
//! hyper and any tower stack.
//!
//! ```toml
//! [dependencies]
//! mapping-webhooks-tower = "0.1"
//! axum = "0.8"
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! ```
//!
//! This crate alone is enough: it re-exports what a receiver and its tests name from the
//! core crate, `mapping-webhooks` ([`Event`], [`Envelope`], [`Signer`], [`ManualClock`],
//! [`ConfigError`], …).
//!
//! # One handler for every event
//!
//! A destination posts every event it subscribes to (`mapping.completed`,
//! `mapping.error.resolved`, …) to one URL. Take [`VerifiedEvent<Event>`](VerifiedEvent)
//! and match on the type:
//!
//! ```
//! use axum::{Router, http::StatusCode, routing::post};
//! use mapping_webhooks_tower::{Event, VerifiedEvent, WebhookVerify};
//!
//! async fn on_event(event: VerifiedEvent<Event>) -> StatusCode {
//!     // Runs once per eventId. Answer 2xx only when the work is done: anything else is retried.
//!     match &event.envelope.data {
//!         Event::MappingCompleted(job) => println!("job {} has {} rows", job.mapping_job_id, job.row_count),
//!         Event::MappingErrorResolved(resolved) => println!("resolved: {}", resolved.data),
//!         // A type this app does not handle: acknowledge it, or the sender retries it.
//!         other => println!("{}: nothing to do", other.event_type()),
//!     }
//!     StatusCode::NO_CONTENT
//! }
//!
//! # fn secret() -> String { "whsec_test".into() }
//! let app: Router = Router::new()
//!     .route("/hooks/mapping", post(on_event))
//!     .layer(WebhookVerify::new(secret()));
//! ```
//!
//! Or give each type its own handler with an [`EventRouter`]: a type without one is
//! acknowledged (200) and logged, never refused.
//!
//! ```
//! use axum::{Router, http::StatusCode, routing::post};
//! use mapping_webhooks_tower::{EventRouter, MappingCompleted, VerifiedEvent, WebhookVerify};
//!
//! async fn on_completed(event: VerifiedEvent<MappingCompleted>) -> StatusCode {
//!     println!("{} rows", event.envelope.data.row_count);
//!     StatusCode::NO_CONTENT
//! }
//!
//! let app: Router = Router::new()
//!     .route("/hooks/mapping", post(EventRouter::new().on(on_completed)))
//!     .layer(WebhookVerify::new("whsec_test"));
//! ```
//!
//! A handler taking `VerifiedEvent<MappingCompleted>` alone takes only that type; any
//! other is acknowledged without running it. Behind the layer, axum's own extractors see
//! the verified bytes (`Json<T>`, `Bytes`, `String`), and `Extension<Verified>` gives the
//! [`Verified`] metadata alone.
//!
//! Unit-test a handler with [`VerifiedEvent::from_envelope`], and the whole app with
//! [`testing::SignedRequest`].
//!
//! # What a request goes through
//!
//! [`WebhookVerify`] is a tower [`Layer`](https://docs.rs/tower-layer/0.3/tower_layer/trait.Layer.html). Put it on the webhook
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
//!    if you choose [`OnStoreError::PassThrough`](OnStoreError), the
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
//! # hyper 1 and plain tower
//!
//! Without the default `axum` feature this crate does not depend on axum (no
//! [`VerifiedEvent`] or [`EventRouter`] then). The service accepts any request body and hands the inner service a
//! `Request<`[`VerifiedBody`]`>`. With hyper, wrap the stack with hyper-util's
//! `TowerToHyperService`:
//!
//! ```no_run
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use hyper_util::rt::TokioIo;
//! use hyper_util::service::TowerToHyperService;
//! use mapping_webhooks_tower::{Verified, VerifiedBody, WebhookVerify};
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
//! # Rotating the secret while the server runs
//!
//! The layer reads a shared [`Secrets`] handle on every request (one atomic load, no
//! lock); change it and the next request uses the new secrets, with no rebuilt router:
//!
//! ```
//! use mapping_webhooks_tower::{Secret, Secrets, WebhookVerify};
//!
//! let layer = WebhookVerify::new("whsec_old_0123456789abcdef0123456789");
//! let secrets: Secrets = layer.gate().secrets().clone(); // or Gate::from_secrets(..)
//! // On a reloaded secrets file, an admin call...: the old one stays accepted for 10 min.
//! secrets.rotate(Secret::new("whsec_new_fedcba9876543210fedcba9876")?);
//! # Ok::<(), mapping_webhooks_tower::ConfigError>(())
//! ```
//!
//! # Many tenants on one endpoint
//!
//! One route for many Mapping.Travel accounts, each with its own secrets from your
//! resolver, cached; the tenant is looked up before the body is read (unknown: 404,
//! lookup failed, timed out or too many at once: 503), and dedup keys are per tenant:
//!
//! ```
//! use mapping_webhooks_tower::{
//!     Gate, ResolveError, Secret, Secrets, Tenant, TenantFrom, Tenants, WebhookVerify,
//! };
//!
//! let tenants = Tenants::new(|key: String| async move {
//!     // A database or secret-manager lookup; None for an unknown tenant. The id names
//!     // the tenant in dedup keys, whichever spelling of it the request used.
//!     let secrets = || Secrets::new(Secret::new("whsec_acme").unwrap());
//!     Ok::<_, ResolveError>(key.eq_ignore_ascii_case("acme").then(|| Tenant::new("acme", secrets())))
//! });
//! // /hooks/mapping/{tenant}: the tenant is the third path segment.
//! let verify = WebhookVerify::from_gate(Gate::for_tenants(tenants, TenantFrom::PathSegment(2)));
//! # let _ = verify;
//! ```
//!
//! # Deduplication across replicas
//!
//! The default [`MemoryStore`] is right for one process.
//! Behind a load balancer, pass a shared store to [`GateBuilder::dedup`], such as the
//! core's `RedisStore` (this crate's `redis` feature re-exports it), and the gate to
//! [`WebhookVerify::from_gate`]; turn deduplication off with
//! [`without_dedup`](GateBuilder::without_dedup) only if the handler is idempotent on
//! its own. Every option of the verification is the gate's, set on [`Gate::builder`]
//! and checked once at `build()`:
//!
//! ```
//! use std::time::Duration;
//! use mapping_webhooks_tower::{Gate, MemoryStore, WebhookVerify};
//!
//! let gate = Gate::builder()
//!     .secret("whsec_test")
//!     .body_limit(256 * 1024)
//!     .read_timeout(Duration::from_secs(5))
//!     .dedup(MemoryStore::new())
//!     .namespace("orders")
//!     .build()?;
//! let layer = WebhookVerify::from_gate(gate);
//! # let _ = layer;
//! # Ok::<(), mapping_webhooks_tower::ConfigError>(())
//! ```
//!
//! # A durable inbox
//!
//! [`WebhookVerify::inbox`] is the same pipeline ending in a [`Sink`] (the
//! `mapping-webhooks-inbox` crate's `Inbox` is one): each delivery is stored and
//! answered 202 at once, and a worker runs the handler afterwards. With an `inbox-*`
//! feature, `worker_handler` runs the handler written for the inline path
//! (`VerifiedEvent<T>`, an [`EventRouter`]) in that worker unchanged.
//!
//! # Serving
//!
//! `axum::serve` gives hyper no timer, so slow or idle clients hold their connections
//! for ever. With the `serve` feature, `mapping_webhooks_tower::serve(listener, app)`
//! serves over HTTP/1 with a header timeout (5 s), a connection cap (512) and graceful
//! shutdown (see `SECURITY.md`, "What your server must configure").
//!
//! # Tests
//!
//! [`GateBuilder::clock`] with a [`ManualClock`] drives the signature window and the
//! default store's leases and TTLs, so tests never sleep; [`testing::SignedRequest`]
//! signs a request at a given time.

mod body;
#[cfg(feature = "axum")]
mod extract;
mod inbox;
mod layer;
pub mod reject;
#[cfg(feature = "axum")]
mod router;
mod serve;
mod service;
pub mod testing;

pub use body::{ResponseBody, VerifiedBody};
#[cfg(feature = "axum")]
pub use extract::{VerifiedEvent, VerifiedEventRejection};
pub use inbox::{InboxFuture, InboxService};
#[cfg(any(feature = "inbox-sqlite", feature = "inbox-postgres"))]
pub use inbox::{WorkerFuture, worker_handler};
pub use layer::WebhookVerify;
// What an app names from the core, in one list (the core's `prelude`); inlined, so the
// pages (and the links to them) exist in this crate's own docs. The adapter-author items
// (`mapping_webhooks::adapter`) are not in it.
#[doc(inline)]
pub use mapping_webhooks::prelude::*;
pub use reject::{JsonReject, OnReject, PlainTextReject};
#[cfg(feature = "axum")]
pub use router::{EventHandler, EventRouter};
#[cfg(feature = "serve")]
pub use serve::{Serve, WithGracefulShutdown, serve};
pub use service::{ResponseFuture, WebhookVerifyService};
