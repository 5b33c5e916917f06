//! The axum extractor for verified events.

use std::fmt;

use axum::body::Body;
use axum::extract::FromRequest;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use mapping_webhooks::{Envelope, Verified};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A webhook that passed [`WebhookVerify`](crate::WebhookVerify): the envelope, with its
/// `data` parsed as `T` from the verified bytes, and the verified metadata.
///
/// ```
/// use axum::{Router, http::StatusCode, routing::post};
/// use mapping_webhooks::MappingCompleted;
/// use mapping_webhooks_tower::{VerifiedEvent, WebhookVerify};
///
/// async fn on_completed(event: VerifiedEvent<MappingCompleted>) -> StatusCode {
///     println!("job {} has {} rows", event.envelope.data.mapping_job_id, event.envelope.data.row_count);
///     StatusCode::NO_CONTENT
/// }
///
/// let app: Router = Router::new()
///     .route("/hooks/mapping", post(on_completed))
///     .layer(WebhookVerify::new("whsec_test"));
/// ```
///
/// It refuses with 500 (and logs an error) on a route without the layer, so a
/// misconfigured router never treats an unverified body as verified; and with 422 when
/// the payload does not match `T`, which leaves the event retryable (the handler did
/// not answer 2xx), so a deploy that fixes `T` still receives it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VerifiedEvent<T = Value> {
    /// The envelope, parsed from the verified bytes.
    pub envelope: Envelope<T>,
    /// The signature facts and ids, as the layer verified them.
    pub verified: Verified,
}

impl<T> VerifiedEvent<T> {
    /// The envelope and the metadata.
    pub fn into_parts(self) -> (Envelope<T>, Verified) {
        (self.envelope, self.verified)
    }
}

impl<T, S> FromRequest<S> for VerifiedEvent<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = VerifiedEventRejection;

    async fn from_request(mut request: Request<Body>, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(verified) = request.extensions_mut().remove::<Verified>() else {
            tracing::error!(
                path = request.uri().path(),
                "VerifiedEvent used on a route without the WebhookVerify layer; refused with 500"
            );
            return Err(VerifiedEventRejection::MissingLayer);
        };
        // The layer already bounded and buffered the body: this takes its one frame.
        let bytes = request
            .into_body()
            .collect()
            .await
            .map_err(VerifiedEventRejection::BodyRead)?
            .to_bytes();
        match serde_json::from_slice(&bytes) {
            Ok(envelope) => Ok(Self { envelope, verified }),
            Err(error) => {
                tracing::warn!(
                    %error,
                    event_id = verified.event_id,
                    delivery_id = verified.delivery_id,
                    "verified webhook payload does not match the handler's type; answered 422, the event stays retryable"
                );
                Err(VerifiedEventRejection::InvalidPayload(error))
            }
        }
    }
}

/// Why [`VerifiedEvent`] refused a request.
#[derive(Debug)]
#[non_exhaustive]
pub enum VerifiedEventRejection {
    /// The request did not pass through [`WebhookVerify`](crate::WebhookVerify): the
    /// router is misconfigured. (500)
    MissingLayer,
    /// The verified envelope's payload does not match the handler's type. (422)
    InvalidPayload(serde_json::Error),
    /// The body could not be read. (400)
    BodyRead(axum::Error),
}

impl VerifiedEventRejection {
    /// The status it answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingLayer => StatusCode::INTERNAL_SERVER_ERROR,
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
            Self::MissingLayer => None,
            Self::InvalidPayload(e) => Some(e),
            Self::BodyRead(e) => Some(e),
        }
    }
}

impl IntoResponse for VerifiedEventRejection {
    fn into_response(self) -> Response {
        (self.status(), self.to_string()).into_response()
    }
}
