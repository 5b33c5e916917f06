//! The responses given without running the handler, built from the core's [`Reply`].
//!
//! [`WebhookVerify`](crate::WebhookVerify) answers with [`plain_text`] by default; pass
//! [`json`] or your own function to [`on_reject`](crate::WebhookVerify::on_reject) to
//! change the body. The status and `Retry-After` are the core's: keep them, the sender
//! decides whether to retry from the status alone.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentType};
use mapping_webhooks::{DUPLICATE_HEADER, Reply};

/// The type of the default rejection function.
pub type RejectFn = fn(&Reply) -> HttpResponse;

/// A `text/plain` response with the reply's status, its short reason as the body, and
/// `Retry-After` when the reply has one (a 409 while another copy is being processed).
///
/// ```
/// use actix_web::body::MessageBody;
/// use mapping_webhooks_actix::Reply;
///
/// let response = mapping_webhooks_actix::reject::plain_text(&Reply::InFlight);
/// assert_eq!(response.status(), 409);
/// assert_eq!(response.headers().get("retry-after").unwrap(), "60");
/// let body = response.into_body().try_into_bytes().unwrap();
/// assert_eq!(body, "event is being processed; retry later");
/// ```
pub fn plain_text(reply: &Reply) -> HttpResponse {
    let mut response = builder(reply);
    response
        .insert_header(ContentType::plaintext())
        .body(reply.reason())
}

/// An `application/json` response with the reply's status, a body of
/// `{"status":…,"code":"…","reason":"…"}` ([`Reply::to_json`]), and `Retry-After` when
/// the reply has one.
///
/// ```
/// use actix_web::body::MessageBody;
/// use mapping_webhooks_actix::{Reply, VerifyError};
///
/// let reply = Reply::Refused(VerifyError::SignatureMismatch);
/// let response = mapping_webhooks_actix::reject::json(&reply);
/// assert_eq!(response.status(), 401);
/// let body = response.into_body().try_into_bytes().unwrap();
/// assert_eq!(
///     body,
///     r#"{"status":401,"code":"signature_mismatch","reason":"signature does not match"}"#
/// );
/// ```
pub fn json(reply: &Reply) -> HttpResponse {
    let mut response = builder(reply);
    response
        .insert_header(ContentType::json())
        .body(reply.to_json())
}

/// A response builder with the reply's status, `Retry-After`, and
/// `X-Webhook-Duplicate: true` on a duplicate.
fn builder(reply: &Reply) -> actix_web::HttpResponseBuilder {
    // The core only produces valid statuses; the fallback can never be taken.
    let status = StatusCode::from_u16(reply.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = HttpResponse::build(status);
    if let Some(secs) = reply.retry_after() {
        response.insert_header((header::RETRY_AFTER, secs));
    }
    if reply.is_duplicate() {
        response.insert_header((DUPLICATE_HEADER, "true"));
    }
    response
}

#[cfg(test)]
mod tests {
    use actix_web::body::MessageBody;
    use mapping_webhooks::VerifyError;

    use super::*;

    fn header(headers: &header::HeaderMap, name: header::HeaderName) -> &str {
        headers.get(name).unwrap().to_str().unwrap()
    }

    #[test]
    fn plain_text_carries_status_reason_and_no_retry_after_when_none() {
        let reply = Reply::Refused(VerifyError::BodyTooLarge { limit: 10 });
        let response = plain_text(&reply);
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            header(response.headers(), header::CONTENT_TYPE),
            "text/plain; charset=utf-8"
        );
        assert!(!response.headers().contains_key(header::RETRY_AFTER));
        let body = response.into_body().try_into_bytes().unwrap();
        assert_eq!(body, reply.reason());
    }

    #[test]
    fn json_carries_the_code_and_retry_after() {
        let response = json(&Reply::InFlight);
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(header(response.headers(), header::RETRY_AFTER), "60");
        assert_eq!(
            header(response.headers(), header::CONTENT_TYPE),
            "application/json"
        );
        let body = response.into_body().try_into_bytes().unwrap();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["code"], "in_flight");
        assert_eq!(value["status"], 409);
    }
}
