//! Signed requests for your tests: post an event to your app (`test::call_service`)
//! exactly as the sender would.
//!
//! ```
//! use actix_web::{App, HttpResponse, http::StatusCode, test, web};
//! use mapping_webhooks_actix::testing::SignedRequest;
//! use mapping_webhooks_actix::{
//!     Envelope, Event, MAPPING_COMPLETED, ManualClock, MappingCompleted, VerifiedEvent, WebhookVerify,
//! };
//!
//! async fn hook(event: VerifiedEvent<Event>) -> HttpResponse {
//!     HttpResponse::NoContent().finish()
//! }
//!
//! # actix_web::rt::System::new().block_on(async {
//! let secret = "whsec_test_secret";
//! let clock = ManualClock::at_secs(1_717_250_400);
//! let app = test::init_service(App::new().service(
//!     web::resource("/hooks/mapping")
//!         .wrap(WebhookVerify::new(secret).clock(clock.clone()))
//!         .route(web::post().to(hook)),
//! ))
//! .await;
//!
//! let job = MappingCompleted::new("job_1", "COMPLETED", 4821, None);
//! let envelope = Envelope::new("del_1", "evt_1", MAPPING_COMPLETED, job);
//! let request = SignedRequest::new(&envelope, secret)
//!     .uri("/hooks/mapping")
//!     .signed_at(1_717_250_400)
//!     .build();
//! let response = test::call_service(&app, request.to_request()).await;
//! assert_eq!(response.status(), StatusCode::NO_CONTENT);
//!
//! // Signed six minutes ago: outside the window.
//! let stale = SignedRequest::new(&envelope, secret).uri("/hooks/mapping").signed_at(1_717_250_040);
//! let response = test::call_service(&app, stale.build().to_request()).await;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! # });
//! ```

use actix_web::http::header::ContentType;
use actix_web::test::TestRequest;
use mapping_webhooks::{
    Clock, DELIVERY_HEADER, EVENT_HEADER, Envelope, SIGNATURE_HEADER, Secret, Signer, SystemClock,
};
use serde::Serialize;

/// A POST signed like the sender's: `X-Webhook-Signature` over the exact body, with
/// `X-Webhook-Event`, `X-Webhook-Delivery` and `Content-Type: application/json`.
///
/// [`build`](Self::build) gives an actix-web
/// [`TestRequest`](https://docs.rs/actix-web/4/actix_web/test/struct.TestRequest.html); turn it into a request with
/// `to_request()` for `test::call_service`.
#[derive(Debug, Clone)]
#[must_use]
pub struct SignedRequest {
    body: String,
    signer: Signer,
    timestamp: Option<u64>,
    uri: String,
    event_type: Option<String>,
    delivery_id: Option<String>,
}

impl SignedRequest {
    /// A request carrying `envelope`, signed with `secret` (the whole `whsec_…` string).
    ///
    /// # Panics
    ///
    /// When `secret` is empty or blank, or `envelope` cannot be serialised.
    pub fn new<T: Serialize>(envelope: &Envelope<T>, secret: impl AsRef<[u8]>) -> Self {
        let body = serde_json::to_string(envelope)
            .unwrap_or_else(|e| panic!("SignedRequest: the envelope does not serialise: {e}"));
        let mut request = Self::from_body(body, secret);
        request.event_type = Some(envelope.event_type.clone());
        request.delivery_id = Some(envelope.id.clone());
        request
    }

    /// A request carrying exactly `body` (malformed JSON included), signed with `secret`.
    ///
    /// # Panics
    ///
    /// When `secret` is empty or blank.
    pub fn from_body(body: impl Into<String>, secret: impl AsRef<[u8]>) -> Self {
        let secret = Secret::new(secret).unwrap_or_else(|e| panic!("SignedRequest: {e}"));
        Self {
            body: body.into(),
            signer: Signer::new(secret),
            timestamp: None,
            uri: "/".to_owned(),
            event_type: None,
            delivery_id: None,
        }
    }

    /// The path (and query) to post to (default `/`).
    pub fn uri(mut self, uri: impl Into<String>) -> Self {
        self.uri = uri.into();
        self
    }

    /// Signs at `timestamp` (Unix seconds) instead of now: pair it with a
    /// [`ManualClock`](crate::ManualClock) given to [`WebhookVerify::clock`](crate::WebhookVerify::clock).
    pub fn signed_at(mut self, timestamp: u64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// The `X-Webhook-Signature` value this request will carry.
    pub fn signature(&self) -> String {
        let timestamp = self.timestamp.unwrap_or_else(|| SystemClock.now_secs());
        self.signer.sign(self.body.as_bytes(), timestamp)
    }

    /// The test request.
    pub fn build(self) -> TestRequest {
        let mut request = TestRequest::post()
            .uri(&self.uri)
            .insert_header(ContentType::json())
            .insert_header((SIGNATURE_HEADER, self.signature()));
        if let Some(event_type) = self.event_type {
            request = request.insert_header((EVENT_HEADER, event_type));
        }
        if let Some(delivery_id) = self.delivery_id.filter(|id| !id.is_empty()) {
            request = request.insert_header((DELIVERY_HEADER, delivery_id));
        }
        request.set_payload(self.body)
    }
}
