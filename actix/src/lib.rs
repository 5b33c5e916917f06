//! Receive [Mapping.Travel](https://mapping.travel) webhooks in actix-web 4: verify
//! their signatures, refuse replays, deduplicate retries and hand the handler a typed
//! event.
//!
//! Wrap the webhook's resource with [`WebhookVerify`] and take a [`VerifiedEvent`] (or
//! `web::Json<T>`, `web::Bytes`, `String`: they see the original bytes):
//!
//! ```
//! use actix_web::{App, HttpResponse, test, web};
//! use mapping_webhooks::{Secret, Signer};
//! use mapping_webhooks_actix::{VerifiedEvent, WebhookVerify};
//!
//! async fn hook(event: VerifiedEvent) -> HttpResponse {
//!     // Runs once per eventId; a non-2xx answer makes the sender retry it.
//!     println!("{} {}", event.envelope.event_type, event.envelope.event_id);
//!     HttpResponse::Ok().finish()
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
//! let body = r#"{"id":"del_1","eventId":"evt_1","type":"mapping.completed","data":{}}"#;
//! let signature = Signer::new(Secret::new("whsec_example_secret")?).sign_now(body.as_bytes());
//! let request = test::TestRequest::post()
//!     .uri("/hooks/mapping")
//!     .insert_header(("x-webhook-signature", signature))
//!     .set_payload(body);
//! assert_eq!(test::call_service(&app, request.to_request()).await.status(), 200);
//!
//! // Unsigned (or forged, stale, tampered) requests never reach the handler.
//! let forged = test::TestRequest::post().uri("/hooks/mapping").set_payload(body);
//! assert_eq!(test::call_service(&app, forged.to_request()).await.status(), 400);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! Every decision (which status for which outcome, when an event is remembered as done)
//! is taken by the core crate [`mapping_webhooks`]'s [`Gate`]; this crate only moves
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
//! # Deduplication across replicas
//!
//! The default [`MemoryStore`] serves one process (all its workers). Behind a load
//! balancer, give every replica the same shared store, such as the core's
//! `RedisStore` (feature `redis` of `mapping-webhooks`), with
//! [`dedup`](WebhookVerify::dedup). Replicas running the tower/axum adapter can share
//! it too: both adapters key events the same way.

mod extract;
mod middleware;
pub mod reject;

pub use extract::{VerifiedEvent, VerifiedEventError};
pub use middleware::{WebhookVerify, WebhookVerifyService};

/// Request counts and durations through the `metrics` facade.
#[cfg(feature = "metrics")]
pub use mapping_webhooks::MetricsObserver;
pub use mapping_webhooks::{
    ConfigError, DedupStore, Envelope, Gate, MappingCompleted, MatchedSecret, MemoryStore,
    OnStoreError, Reply, Verified,
};
/// The Redis store, for receivers that run on several replicas.
#[cfg(feature = "redis")]
pub use mapping_webhooks::{RedisStore, RedisStoreBuilder};

#[cfg(test)]
mod tests;
