//! Receive [Mapping.Travel](https://mapping.travel) webhooks in actix-web 4: verify
//! their signatures, refuse replays, deduplicate retries and hand the handler a typed
//! event.
//!
//! ```toml
//! [dependencies]
//! mapping-webhooks-actix = "0.1"
//! actix-web = "4"
//! ```
//!
//! This crate alone is enough: it re-exports what a receiver and its tests name from the
//! core crate, `mapping-webhooks` ([`Event`], [`Envelope`], [`Signer`], [`ManualClock`],
//! [`ConfigError`], …).
//!
//! # One handler for every event
//!
//! A destination posts every event it subscribes to (`mapping.completed`,
//! `mapping.error.resolved`, …) to one URL. Wrap that resource with [`WebhookVerify`],
//! take [`VerifiedEvent<Event>`](VerifiedEvent) and match on the type:
//!
//! ```
//! use actix_web::{App, HttpResponse, test, web};
//! use mapping_webhooks_actix::{Event, VerifiedEvent, WebhookVerify};
//! use mapping_webhooks_actix::testing::SignedRequest;
//!
//! async fn hook(event: VerifiedEvent<Event>) -> HttpResponse {
//!     // Runs once per eventId; a non-2xx answer makes the sender retry it.
//!     match &event.envelope.data {
//!         Event::MappingCompleted(job) => println!("job {} has {} rows", job.mapping_job_id, job.row_count),
//!         Event::MappingErrorResolved(resolved) => println!("resolved: {}", resolved.data),
//!         // A type this app does not handle: acknowledge it, or the sender retries it.
//!         other => println!("{}: nothing to do", other.event_type()),
//!     }
//!     HttpResponse::NoContent().finish()
//! }
//!
//! # actix_web::rt::System::new().block_on(async {
//! let app = test::init_service(App::new().service(
//!     web::resource("/hooks/mapping")
//!         .wrap(WebhookVerify::new("whsec_example_secret"))
//!         .route(web::post().to(hook)),
//! ))
//! .await;
//!
//! let body = r#"{"id":"del_1","eventId":"evt_1","type":"mapping.error.resolved","data":{}}"#;
//! let request = SignedRequest::from_body(body, "whsec_example_secret").uri("/hooks/mapping");
//! assert_eq!(test::call_service(&app, request.build().to_request()).await.status(), 204);
//!
//! // Unsigned (or forged, stale, tampered) requests never reach the handler.
//! let forged = test::TestRequest::post().uri("/hooks/mapping").set_payload(body);
//! assert_eq!(test::call_service(&app, forged.to_request()).await.status(), 400);
//! # });
//! ```
//!
//! Or give each type its own handler with an [`EventRouter`]
//! (`web::post().to(EventRouter::new().on(on_completed))`): a type without one is
//! acknowledged (200) and logged, never refused. A handler taking
//! `VerifiedEvent<MappingCompleted>` alone takes only that type; any other is
//! acknowledged without running it.
//!
//! Unit-test a handler with [`VerifiedEvent::from_envelope`], and the whole app with
//! [`testing::SignedRequest`]. A [`ManualClock`] given to [`GateBuilder::clock`] drives the
//! signature window and the default store's leases and TTLs, so tests never sleep.
//!
//! # What the middleware does
//!
//! Every decision (which status for which outcome, when an event is remembered as done)
//! is taken by the core crate `mapping-webhooks`'s [`Gate`]; this crate only moves
//! bytes between actix-web and the gate, so it answers exactly as the tower/axum
//! adapter does. See [`WebhookVerify`] for what happens to each request.
//!
//! # Behind the middleware
//!
//! - `web::ReqData<Verified>` gives the verified metadata alone, next to the
//!   framework's own extractors:
//!
//! ```
//! use actix_web::{HttpResponse, web};
//! use mapping_webhooks_actix::Verified;
//!
//! async fn hook(meta: web::ReqData<Verified>, body: web::Json<serde_json::Value>) -> HttpResponse {
//!     println!("{} (signed at {}): {}", meta.event_id, meta.timestamp, body["data"]);
//!     HttpResponse::Ok().finish()
//! }
//! ```
//!
//! - Other routes of the app are not affected: wrap only the webhook's resource (or a
//!   scope holding only webhook routes).
//! - Serve with `HttpServer::h1_allow_half_closed(false)`, so a handler whose sender
//!   gave up is cancelled and its event freed for the retry at once (see
//!   [`WebhookVerify`]'s docs).
//! - A handler that panics is answered 500 and its event stays retryable (actix-web
//!   would otherwise drop the connection). With `panic = "abort"` the process stops
//!   instead: the in-memory store's claims go with it, while a shared store's claim is
//!   taken over by a retry once its lease runs out.
//!
//! # Rotating the secret while the server runs
//!
//! Every worker's clone of the middleware reads one shared [`Secrets`] handle on every
//! request (one atomic load, no lock); change it and the next request, in any worker,
//! uses the new secrets:
//!
//! ```
//! use mapping_webhooks_actix::{Gate, Secret, Secrets, WebhookVerify};
//!
//! let secrets = Secrets::new(Secret::new("whsec_old_0123456789abcdef0123456789")?);
//! let verify = WebhookVerify::from_gate(Gate::from_secrets(secrets.clone())); // clone it into HttpServer::new
//! // On a reloaded secrets file, an admin call...: the old one stays accepted for 10 min.
//! secrets.rotate(Secret::new("whsec_new_fedcba9876543210fedcba9876")?);
//! # let _ = verify;
//! # Ok::<(), mapping_webhooks_actix::ConfigError>(())
//! ```
//!
//! # Many tenants on one endpoint
//!
//! One route for many Mapping.Travel accounts, each with its own secrets from your
//! resolver, cached; the tenant is looked up before the body is read (unknown: 404,
//! lookup failed, timed out or too many at once: 503), and dedup keys are per tenant:
//!
//! ```
//! use mapping_webhooks_actix::{
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
//! # Every option in one place
//!
//! [`WebhookVerify::new`] is the one-line shorthand. Every other option of the gate
//! (previous secrets, tolerance, body limit, read timeout, dedup store, namespace,
//! store-error policy, clock, observer) is set on [`Gate::builder`], checked at once by
//! `build()`, and the gate handed over with [`WebhookVerify::from_gate`]:
//!
//! ```
//! use std::time::Duration;
//! use mapping_webhooks_actix::{Gate, WebhookVerify};
//!
//! let gate = Gate::builder()
//!     .secret("whsec_current_0123456789abcdef")
//!     .previous_secret("whsec_before_rotation_0123456789")
//!     .tolerance(Duration::from_secs(120))
//!     .body_limit(256 * 1024)
//!     .namespace("orders")
//!     .build()?;
//! let verify = WebhookVerify::from_gate(gate).json_rejections();
//! assert_eq!(verify.gate().body_limit(), 256 * 1024);
//! # Ok::<(), mapping_webhooks_actix::ConfigError>(())
//! ```
//!
//! # Deduplication across replicas
//!
//! The default [`MemoryStore`] serves one process (all its workers). Behind a load
//! balancer, give every replica the same shared store, such as the core's
//! `RedisStore` (feature `redis` of `mapping-webhooks`), with
//! [`GateBuilder::dedup`]. Replicas running the tower/axum adapter can share
//! it too: both adapters key events the same way.
//!
//! # Answer at once, process later
//!
//! [`WebhookVerify::inbox`] serves a route whose deliveries are verified by the same
//! pipeline, then stored in a durable [`Sink`] (the `mapping-webhooks-inbox` crate's
//! `Inbox`) and answered 202 at once; tenants, refusal formats and observers work there
//! as on the middleware.

mod body;
mod extract;
mod inbox;
mod middleware;
pub mod reject;
mod router;
pub mod testing;

pub use extract::{VerifiedEvent, VerifiedEventRejection};
pub use middleware::{WebhookVerify, WebhookVerifyService};
pub use router::{EventHandler, EventRouter};

// What an app names from the core, in one list (the core's `prelude`); inlined, so the
// pages (and the links to them) exist in this crate's own docs. The adapter-author items
// (`mapping_webhooks::adapter`) are not in it.
#[doc(inline)]
pub use mapping_webhooks::prelude::*;
