//! Signed requests for your tests: post an event to your app (`test::call_service`)
//! exactly as the sender would.
//!
//! ```
//! use actix_web::{App, HttpResponse, http::StatusCode, test, web};
//! use mapping_webhooks_actix::testing::SignedRequest;
//! use mapping_webhooks_actix::{
//!     Envelope, Event, Gate, MAPPING_COMPLETED, ManualClock, MappingCompleted, VerifiedEvent,
//!     WebhookVerify,
//! };
//!
//! async fn hook(event: VerifiedEvent<Event>) -> HttpResponse {
//!     HttpResponse::NoContent().finish()
//! }
//!
//! # actix_web::rt::System::new().block_on(async {
//! let secret = "whsec_test_secret";
//! let clock = ManualClock::at_secs(1_717_250_400);
//! let gate = Gate::builder().secret(secret).clock(clock.clone()).build().unwrap();
//! let app = test::init_service(App::new().service(
//!     web::resource("/hooks/mapping")
//!         .wrap(WebhookVerify::from_gate(gate))
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

use actix_web::test::TestRequest;
use mapping_webhooks::{Envelope, SignedDelivery};
use serde::Serialize;

/// A POST signed like the sender's: `X-Webhook-Signature` over the exact body, with
/// `X-Webhook-Event`, `X-Webhook-Delivery` and `Content-Type: application/json`: a
/// [`SignedDelivery`] and the path to post it to.
///
/// [`build`](Self::build) gives an actix-web
/// [`TestRequest`](https://docs.rs/actix-web/4/actix_web/test/struct.TestRequest.html); turn it into a request with
/// `to_request()` for `test::call_service`.
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

    /// The test request.
    pub fn build(self) -> TestRequest {
        let mut request = TestRequest::post().uri(&self.uri);
        for header in self.delivery.headers() {
            request = request.insert_header(header);
        }
        request.set_payload(self.delivery.into_body())
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
