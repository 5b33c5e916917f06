//! The `VerifiedEvent` extractor.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use mapping_webhooks::{FromEventData, Verified};

use crate::middleware::VerifiedBody;

mapping_webhooks::declare_verified_event! {
    /// A webhook that passed [`WebhookVerify`](crate::WebhookVerify): its envelope, parsed
    /// from the verified bytes, and what the middleware verified.
    ///
    /// `T` is the type of `data`, and decides which events the handler takes:
    ///
    /// - [`Event`](crate::Event) takes **every** event type: match on it. This is the way to
    ///   receive a destination's events, which all arrive at one URL.
    /// - [`MappingCompleted`](crate::MappingCompleted) or
    ///   [`MappingErrorResolved`](crate::MappingErrorResolved) takes only its own type. Another
    ///   type is acknowledged (200, logged at `warn`) without running the handler, so the
    ///   sender does not retry it; route by type with [`EventRouter`](crate::EventRouter) to
    ///   handle several.
    /// - `serde_json::Value` (the default) or your own type takes any type whose `data`
    ///   parses as `T`.
    ///
    /// ```
    /// use actix_web::HttpResponse;
    /// use mapping_webhooks_actix::{Event, VerifiedEvent};
    ///
    /// async fn hook(event: VerifiedEvent<Event>) -> HttpResponse {
    ///     match &event.envelope.data {
    ///         Event::MappingCompleted(job) => println!("{} finished with {} rows", job.mapping_job_id, job.row_count),
    ///         Event::MappingErrorResolved(resolved) => println!("resolved: {}", resolved.data),
    ///         other => println!("{}: nothing to do", other.event_type()),
    ///     }
    ///     HttpResponse::NoContent().finish()
    /// }
    /// ```
    ///
    /// It refuses the request with [`VerifiedEventRejection`]:
    /// - 500 when the route is not wrapped by `WebhookVerify`, so a misconfigured app can
    ///   never treat an unverified body as verified;
    /// - 422 when the verified body of a type it takes does not match `Envelope<T>`. The
    ///   event stays retryable, so a deploy that fixes `T` within the sender's retries
    ///   (about 36 minutes) still receives it, and a delivery that stays unreadable shows as
    ///   dead in the dashboard instead of being acknowledged unread.
    ///
    /// It reads nothing from the payload, so it can be combined with `web::Json<T>`,
    /// `web::Bytes` or `String` in one handler. Build one with [`new`](VerifiedEvent::new) or
    /// [`from_envelope`](VerifiedEvent::from_envelope) to unit-test a handler without the middleware.
    pub struct VerifiedEvent;
    /// Why [`VerifiedEvent`] did not run the handler. Each variant is a response, with the
    /// status [`status`](VerifiedEventRejection::status) gives (also its
    /// [`ResponseError::status_code`](https://docs.rs/actix-web/4/actix_web/trait.ResponseError.html#method.status_code)).
    pub enum VerifiedEventRejection;
    crate = "mapping_webhooks_actix",
    status = StatusCode,
    missing_layer = "VerifiedEvent needs the WebhookVerify middleware: wrap this route with .wrap(WebhookVerify::new(secret))",
}

impl<T: FromEventData> VerifiedEvent<T> {
    pub(crate) fn extract(req: &HttpRequest) -> Result<Self, VerifiedEventRejection> {
        let extensions = req.extensions();
        let (Some(verified), Some(VerifiedBody(body))) = (
            extensions.get::<Verified>(),
            extensions.get::<VerifiedBody>(),
        ) else {
            return Err(VerifiedEventRejection::missing_layer(req.path()));
        };
        Self::from_request_parts(verified.clone(), body)
    }
}

impl<T: FromEventData> FromRequest for VerifiedEvent<T> {
    type Error = VerifiedEventRejection;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Self::extract(req))
    }
}

impl ResponseError for VerifiedEventRejection {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .content_type(actix_web::http::header::ContentType::plaintext())
            .body(self.to_string())
    }
}
