//! The axum extractor for verified events.

use std::fmt;

use axum::body::Body;
use axum::extract::FromRequest;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use mapping_webhooks::adapter::{PayloadRefusal, read_payload};
use mapping_webhooks::{Envelope, FromEventData, SystemClock, Verified};
use serde_json::Value;

/// A webhook that passed [`WebhookVerify`](crate::WebhookVerify): the envelope, with its
/// `data` parsed as `T` from the verified bytes, and the verified metadata.
///
/// `T` decides which events the handler takes:
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
/// use axum::{Router, http::StatusCode, routing::post};
/// use mapping_webhooks_tower::{Event, VerifiedEvent, WebhookVerify};
///
/// async fn on_event(event: VerifiedEvent<Event>) -> StatusCode {
///     match &event.envelope.data {
///         Event::MappingCompleted(job) => println!("job {} has {} rows", job.mapping_job_id, job.row_count),
///         Event::MappingErrorResolved(resolved) => println!("resolved: {}", resolved.data),
///         other => println!("{}: nothing to do", other.event_type()),
///     }
///     StatusCode::NO_CONTENT
/// }
///
/// let app: Router = Router::new()
///     .route("/hooks/mapping", post(on_event))
///     .layer(WebhookVerify::new("whsec_test"));
/// ```
///
/// It refuses with 500 (and logs an error) on a route without the layer, so a
/// misconfigured router never treats an unverified body as verified. When the payload of
/// a type it takes does not match `T`, it answers 422: the event stays retryable (the
/// handler did not answer 2xx), so a deploy that fixes `T` within the sender's retries
/// (about 36 minutes) still receives it, and a delivery that stays unreadable shows as
/// dead in the dashboard instead of being acknowledged unread.
///
/// Build one with [`new`](Self::new) or [`from_envelope`](Self::from_envelope) to unit-test
/// a handler without the layer.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VerifiedEvent<T = Value> {
    /// The envelope, parsed from the verified bytes.
    pub envelope: Envelope<T>,
    /// The signature facts and ids, as the layer verified them.
    pub verified: Verified,
}

impl<T> VerifiedEvent<T> {
    /// An event from its parts, for tests of a handler (only the layer's extractor means
    /// the request was verified).
    pub fn new(envelope: Envelope<T>, verified: Verified) -> Self {
        Self { envelope, verified }
    }

    /// An event as the layer would give it for `envelope`, signed now with the current
    /// secret: for unit tests of a handler.
    ///
    /// ```
    /// use axum::http::StatusCode;
    /// use mapping_webhooks_tower::{Envelope, MAPPING_COMPLETED, MappingCompleted, VerifiedEvent};
    ///
    /// async fn on_completed(event: VerifiedEvent<MappingCompleted>) -> StatusCode {
    ///     if event.envelope.data.row_count > 0 { StatusCode::NO_CONTENT } else { StatusCode::UNPROCESSABLE_ENTITY }
    /// }
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let job = MappingCompleted::new("job_1", "COMPLETED", 4821, None);
    /// let event = VerifiedEvent::from_envelope(Envelope::new("del_1", "evt_1", MAPPING_COMPLETED, job));
    /// assert_eq!(event.verified.event_id, "evt_1");
    /// assert_eq!(on_completed(event).await, StatusCode::NO_CONTENT);
    /// # });
    /// ```
    pub fn from_envelope(envelope: Envelope<T>) -> Self {
        use mapping_webhooks::Clock;
        let verified = Verified::new(
            envelope.event_id.clone(),
            envelope.event_type.clone(),
            envelope.id.clone(),
            SystemClock.now_secs(),
        );
        Self { envelope, verified }
    }

    /// The envelope and the metadata.
    pub fn into_parts(self) -> (Envelope<T>, Verified) {
        (self.envelope, self.verified)
    }
}

impl<T, S> FromRequest<S> for VerifiedEvent<T>
where
    T: FromEventData,
    S: Send + Sync,
{
    type Rejection = VerifiedEventRejection;

    async fn from_request(mut request: Request<Body>, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(verified) = request.extensions_mut().remove::<Verified>() else {
            return Err(VerifiedEventRejection::missing_layer(request.uri().path()));
        };
        // The layer already bounded and buffered the body: this takes its one frame.
        let bytes = request
            .into_body()
            .collect()
            .await
            .map_err(VerifiedEventRejection::BodyRead)?
            .to_bytes();
        let envelope = read_payload(&verified, &bytes)?;
        Ok(Self { envelope, verified })
    }
}

/// Why [`VerifiedEvent`] did not run the handler. Each variant is a response, with the
/// status [`status`](Self::status) gives.
#[derive(Debug)]
#[non_exhaustive]
pub enum VerifiedEventRejection {
    /// The request did not pass through [`WebhookVerify`](crate::WebhookVerify): the
    /// router is misconfigured. (500)
    MissingLayer,
    /// The event is of another type than the one the handler's payload type belongs to.
    /// (200: acknowledged, so the sender does not retry an event nobody here handles)
    OtherEventType {
        /// The type the handler takes.
        expected: &'static str,
        /// The event's type.
        event_type: String,
    },
    /// The verified envelope's payload does not match the handler's type. (422, so the
    /// sender retries it)
    InvalidPayload(serde_json::Error),
    /// The body could not be read. (400)
    BodyRead(axum::Error),
}

impl VerifiedEventRejection {
    pub(crate) fn missing_layer(path: &str) -> Self {
        tracing::error!(
            path,
            "VerifiedEvent used on a route without the WebhookVerify layer; refused with 500"
        );
        Self::MissingLayer
    }

    /// The status it answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingLayer => StatusCode::INTERNAL_SERVER_ERROR,
            Self::OtherEventType { .. } => StatusCode::OK,
            Self::InvalidPayload(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::BodyRead(_) => StatusCode::BAD_REQUEST,
        }
    }
}

impl fmt::Display for VerifiedEventRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingLayer => f.write_str(
                "VerifiedEvent needs the WebhookVerify layer on this route: add `.layer(WebhookVerify::new(secret))` (or `.route_layer(..)`) to the router serving it",
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
            Self::BodyRead(e) => write!(f, "webhook body could not be read: {e}"),
        }
    }
}

impl std::error::Error for VerifiedEventRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::MissingLayer | Self::OtherEventType { .. } => None,
            Self::InvalidPayload(e) => Some(e),
            Self::BodyRead(e) => Some(e),
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

impl IntoResponse for VerifiedEventRejection {
    fn into_response(self) -> Response {
        (self.status(), self.to_string()).into_response()
    }
}
