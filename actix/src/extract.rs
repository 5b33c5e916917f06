//! The `VerifiedEvent` extractor.

use std::fmt;
use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use mapping_webhooks::{Envelope, Verified};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::middleware::VerifiedBody;

/// A webhook that passed [`WebhookVerify`](crate::WebhookVerify): its envelope, parsed
/// from the verified bytes, and what the middleware verified.
///
/// `T` is the type of `data`: [`serde_json::Value`] by default,
/// [`MappingCompleted`](mapping_webhooks::MappingCompleted) or your own type.
///
/// ```
/// use actix_web::HttpResponse;
/// use mapping_webhooks::MappingCompleted;
/// use mapping_webhooks_actix::VerifiedEvent;
///
/// async fn hook(event: VerifiedEvent<MappingCompleted>) -> HttpResponse {
///     let job = &event.envelope.data;
///     println!("{} finished with {} rows", job.mapping_job_id, job.row_count);
///     HttpResponse::NoContent().finish()
/// }
/// ```
///
/// It refuses the request with [`VerifiedEventError`]:
/// - 500 when the route is not wrapped by `WebhookVerify`, so a misconfigured app can
///   never treat an unverified body as verified;
/// - 422 when the verified body does not match `Envelope<T>`.
///
/// It reads nothing from the payload, so it can be combined with `web::Json<T>`,
/// `web::Bytes` or `String` in one handler.
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
    /// The envelope and the verified metadata.
    pub fn into_parts(self) -> (Envelope<T>, Verified) {
        (self.envelope, self.verified)
    }

    fn extract(req: &HttpRequest) -> Result<Self, VerifiedEventError>
    where
        T: DeserializeOwned,
    {
        let extensions = req.extensions();
        let (Some(verified), Some(VerifiedBody(body))) = (
            extensions.get::<Verified>(),
            extensions.get::<VerifiedBody>(),
        ) else {
            tracing::error!(
                path = req.path(),
                "VerifiedEvent used on a route that is not wrapped by WebhookVerify"
            );
            return Err(VerifiedEventError::MissingMiddleware);
        };
        let envelope = serde_json::from_slice(body).map_err(|error| {
            tracing::warn!(
                %error,
                event_id = verified.event_id,
                "verified webhook body does not match the handler's payload type"
            );
            VerifiedEventError::InvalidPayload(error)
        })?;
        Ok(Self {
            envelope,
            verified: verified.clone(),
        })
    }
}

impl<T: DeserializeOwned> FromRequest for VerifiedEvent<T> {
    type Error = VerifiedEventError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Self::extract(req))
    }
}

/// Why [`VerifiedEvent`] refused a request.
#[derive(Debug)]
#[non_exhaustive]
pub enum VerifiedEventError {
    /// The route is not wrapped by [`WebhookVerify`](crate::WebhookVerify): a
    /// configuration mistake, answered 500.
    MissingMiddleware,
    /// The verified body does not match `Envelope<T>` (422). The sender will retry it
    /// and eventually mark it dead; accept `serde_json::Value` to take any payload.
    InvalidPayload(serde_json::Error),
}

impl fmt::Display for VerifiedEventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingMiddleware => f.write_str(
                "VerifiedEvent needs the WebhookVerify middleware: wrap this route with \
                 .wrap(WebhookVerify::new(secret))",
            ),
            Self::InvalidPayload(e) => {
                write!(f, "webhook payload does not match the expected type: {e}")
            }
        }
    }
}

impl std::error::Error for VerifiedEventError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::MissingMiddleware => None,
            Self::InvalidPayload(e) => Some(e),
        }
    }
}

impl ResponseError for VerifiedEventError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::MissingMiddleware => StatusCode::INTERNAL_SERVER_ERROR,
            Self::InvalidPayload(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .content_type(actix_web::http::header::ContentType::plaintext())
            .body(self.to_string())
    }
}
