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

mapping_webhooks::declare_signed_request! {
    /// A POST signed like the sender's: `X-Webhook-Signature` over the exact body, with
    /// `X-Webhook-Event`, `X-Webhook-Delivery` and `Content-Type: application/json`: a
    /// [`SignedDelivery`](crate::SignedDelivery) and the path to post it to.
    ///
    /// [`build`](Self::build) gives an `http::Request<String>`, which axum's `Router` and
    /// [`WebhookVerify`](crate::WebhookVerify) accept directly (for `oneshot`), and which
    /// any HTTP client can send to a real server.
    pub struct SignedRequest;
}

impl SignedRequest {
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
