//! Signed requests for your tests: post an event to your app (`oneshot`, or a real
//! server) exactly as the sender would.
//!
//! ```
//! use axum::{Router, http::StatusCode, routing::post};
//! use mapping_webhooks_tower::testing::SignedRequest;
//! use mapping_webhooks_tower::{
//!     Envelope, Event, Gate, MAPPING_COMPLETED, ManualClock, MappingCompleted, VerifiedEvent,
//!     WebhookVerify,
//! };
//! use tower::ServiceExt; // oneshot
//!
//! async fn on_event(event: VerifiedEvent<Event>) -> StatusCode {
//!     StatusCode::NO_CONTENT
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let secret = "whsec_test_secret";
//! let clock = ManualClock::at_secs(1_717_250_400);
//! let app = Router::new()
//!     .route("/hooks/mapping", post(on_event))
//!     .layer(WebhookVerify::from_gate(Gate::builder().secret(secret).clock(clock.clone()).build()?));
//!
//! let job = MappingCompleted::new("job_1", "COMPLETED", 4821, None);
//! let envelope = Envelope::new("del_1", "evt_1", MAPPING_COMPLETED, job);
//! let request = SignedRequest::new(&envelope, secret)
//!     .uri("/hooks/mapping")
//!     .signed_at(1_717_250_400)
//!     .build();
//! let response = app.clone().oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::NO_CONTENT);
//!
//! // Signed six minutes ago: outside the window.
//! let stale = SignedRequest::new(&envelope, secret).uri("/hooks/mapping").signed_at(1_717_250_040);
//! assert_eq!(app.oneshot(stale.build()).await.unwrap().status(), StatusCode::UNAUTHORIZED);
//! # Ok::<(), mapping_webhooks_tower::ConfigError>(())
//! # }).unwrap();
//! ```

use http::{Method, Request};
use mapping_webhooks::{Envelope, SignedDelivery};
use serde::Serialize;

/// A POST signed like the sender's: `X-Webhook-Signature` over the exact body, with
/// `X-Webhook-Event`, `X-Webhook-Delivery` and `Content-Type: application/json`: a
/// [`SignedDelivery`] and the path to post it to.
///
/// [`build`](Self::build) gives an `http::Request<String>`, which axum's `Router` and
/// [`WebhookVerify`](crate::WebhookVerify) accept directly (for `oneshot`), and which
/// any HTTP client can send to a real server.
#[derive(Debug, Clone)]
#[must_use]
pub struct SignedRequest {
    delivery: SignedDelivery,
    uri: String,
}

impl SignedRequest {
    /// A request carrying `envelope`, signed with `secret` (the whole `whsec_…` string).
    ///
    /// # Panics
    ///
    /// When `secret` is empty or blank, or `envelope` cannot be serialised.
    pub fn new<T: Serialize>(envelope: &Envelope<T>, secret: impl AsRef<[u8]>) -> Self {
        Self::from(SignedDelivery::new(envelope, secret))
    }

    /// A request carrying exactly `body` (malformed JSON included), signed with `secret`.
    ///
    /// # Panics
    ///
    /// When `secret` is empty or blank.
    pub fn from_body(body: impl Into<String>, secret: impl AsRef<[u8]>) -> Self {
        Self::from(SignedDelivery::from_body(body, secret))
    }

    /// The path (and query) to post to (default `/`).
    pub fn uri(mut self, uri: impl Into<String>) -> Self {
        self.uri = uri.into();
        self
    }

    /// Signs at `timestamp` (Unix seconds) instead of now: pair it with a
    /// [`ManualClock`](crate::ManualClock) given to [`GateBuilder::clock`](crate::GateBuilder::clock).
    pub fn signed_at(mut self, timestamp: u64) -> Self {
        self.delivery = self.delivery.signed_at(timestamp);
        self
    }

    /// The `X-Webhook-Signature` value this request will carry.
    pub fn signature(&self) -> String {
        self.delivery.signature()
    }

    /// The request.
    ///
    /// # Panics
    ///
    /// When the URI is not a valid request target.
    pub fn build(self) -> Request<String> {
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(self.uri.as_str());
        for (name, value) in self.delivery.headers() {
            builder = builder.header(name, value);
        }
        builder
            .body(self.delivery.into_body())
            .unwrap_or_else(|e| panic!("SignedRequest: {e}"))
    }
}

/// A request for the delivery, posted to `/` until [`uri`](SignedRequest::uri) says
/// otherwise.
impl From<SignedDelivery> for SignedRequest {
    fn from(delivery: SignedDelivery) -> Self {
        Self {
            delivery,
            uri: "/".to_owned(),
        }
    }
}
