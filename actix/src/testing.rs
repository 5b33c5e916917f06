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

mapping_webhooks::declare_signed_request! {
    /// A POST signed like the sender's: `X-Webhook-Signature` over the exact body, with
    /// `X-Webhook-Event`, `X-Webhook-Delivery` and `Content-Type: application/json`: a
    /// [`SignedDelivery`](crate::SignedDelivery) and the path to post it to.
    ///
    /// [`build`](Self::build) gives an actix-web
    /// [`TestRequest`](https://docs.rs/actix-web/4/actix_web/test/struct.TestRequest.html); turn it into a request with
    /// `to_request()` for `test::call_service`.
    pub struct SignedRequest;
}

impl SignedRequest {
    /// The test request.
    pub fn build(self) -> TestRequest {
        let mut request = TestRequest::post().uri(&self.uri);
        for header in self.delivery.headers() {
            request = request.insert_header(header);
        }
        request.set_payload(self.delivery.into_body())
    }
}
