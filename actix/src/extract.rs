//! The `VerifiedEvent` extractor.

use std::fmt;
use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use mapping_webhooks::adapter::{PayloadRefusal, read_payload};
use mapping_webhooks::{Clock, Envelope, FromEventData, SystemClock, Verified};
use serde_json::Value;

use crate::middleware::VerifiedBody;

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
/// `web::Bytes` or `String` in one handler. Build one with [`new`](Self::new) or
/// [`from_envelope`](Self::from_envelope) to unit-test a handler without the middleware.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VerifiedEvent<T = Value> {
    /// The envelope, parsed from the verified bytes.
    pub envelope: Envelope<T>,
    /// What the middleware verified: the signed timestamp, which secret matched, and
    /// the event id, type and delivery id from the signed body.
    pub verified: Verified,
}

impl<T> VerifiedEvent<T> {
    /// An event from its parts, for tests of a handler (only the middleware's extractor
    /// means the request was verified).
    pub fn new(envelope: Envelope<T>, verified: Verified) -> Self {
        Self { envelope, verified }
    }

    /// An event as the middleware would give it for `envelope`, signed now with the
    /// current secret: for unit tests of a handler.
    ///
    /// ```
    /// use actix_web::{HttpResponse, http::StatusCode};
    /// use mapping_webhooks_actix::{Envelope, MAPPING_COMPLETED, MappingCompleted, VerifiedEvent};
    ///
    /// async fn hook(event: VerifiedEvent<MappingCompleted>) -> HttpResponse {
    ///     if event.envelope.data.row_count > 0 {
    ///         HttpResponse::NoContent().finish()
    ///     } else {
    ///         HttpResponse::UnprocessableEntity().finish()
    ///     }
    /// }
    ///
    /// # actix_web::rt::System::new().block_on(async {
    /// let job = MappingCompleted::new("job_1", "COMPLETED", 4821, None);
    /// let event = VerifiedEvent::from_envelope(Envelope::new("del_1", "evt_1", MAPPING_COMPLETED, job));
    /// assert_eq!(hook(event).await.status(), StatusCode::NO_CONTENT);
    /// # });
    /// ```
    pub fn from_envelope(envelope: Envelope<T>) -> Self {
        let verified = Verified::new(
            envelope.event_id.clone(),
            envelope.event_type.clone(),
            envelope.id.clone(),
            SystemClock.now_secs(),
        );
        Self { envelope, verified }
    }

    /// The envelope and the verified metadata.
    pub fn into_parts(self) -> (Envelope<T>, Verified) {
        (self.envelope, self.verified)
    }
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
        let envelope = read_payload(verified, body).map_err(VerifiedEventRejection::from)?;
        Ok(Self {
            envelope,
            verified: verified.clone(),
        })
    }
}

impl<T: FromEventData> FromRequest for VerifiedEvent<T> {
    type Error = VerifiedEventRejection;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Self::extract(req))
    }
}

/// Why [`VerifiedEvent`] did not run the handler. Each variant is a response, with the
/// status [`status`](Self::status) gives (also its
/// [`ResponseError::status_code`](https://docs.rs/actix-web/4/actix_web/trait.ResponseError.html#method.status_code)).
#[derive(Debug)]
#[non_exhaustive]
pub enum VerifiedEventRejection {
    /// The route is not wrapped by [`WebhookVerify`](crate::WebhookVerify): a
    /// configuration mistake, answered 500.
    MissingLayer,
    /// The event is of another type than the one the handler's payload type belongs to.
    /// (200: acknowledged, so the sender does not retry an event nobody here handles)
    OtherEventType {
        /// The type the handler takes.
        expected: &'static str,
        /// The event's type.
        event_type: String,
    },
    /// The verified body does not match `Envelope<T>` (422). The sender will retry it
    /// and eventually mark it dead; take [`Event`](crate::Event) or `serde_json::Value`
    /// to accept any payload.
    InvalidPayload(serde_json::Error),
}

impl VerifiedEventRejection {
    pub(crate) fn missing_layer(path: &str) -> Self {
        tracing::error!(
            path,
            "VerifiedEvent used on a route that is not wrapped by WebhookVerify; refused with 500"
        );
        Self::MissingLayer
    }

    /// The status it answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingLayer => StatusCode::INTERNAL_SERVER_ERROR,
            Self::OtherEventType { .. } => StatusCode::OK,
            Self::InvalidPayload(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }
}

impl fmt::Display for VerifiedEventRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingLayer => f.write_str(
                "VerifiedEvent needs the WebhookVerify middleware: wrap this route with \
                 .wrap(WebhookVerify::new(secret))",
            ),
            Self::OtherEventType {
                expected,
                event_type,
            } => write!(
                f,
                "event type {event_type:?} acknowledged without running the handler, which takes only {expected:?}"
            ),
            Self::InvalidPayload(e) => {
                write!(f, "webhook payload does not match the expected type: {e}")
            }
        }
    }
}

impl std::error::Error for VerifiedEventRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::MissingLayer | Self::OtherEventType { .. } => None,
            Self::InvalidPayload(e) => Some(e),
        }
    }
}

impl From<PayloadRefusal> for VerifiedEventRejection {
    fn from(refusal: PayloadRefusal) -> Self {
        match refusal {
            PayloadRefusal::OtherEventType {
                expected,
                event_type,
            } => Self::OtherEventType {
                expected,
                event_type,
            },
            PayloadRefusal::InvalidPayload(e) => Self::InvalidPayload(e),
            // A refusal a later core may add: 422, saying why.
            other => Self::InvalidPayload(serde::de::Error::custom(other)),
        }
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
