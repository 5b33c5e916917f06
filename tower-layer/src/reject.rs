//! How a request answered without running the handler becomes a response.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};
use mapping_webhooks::{DUPLICATE_HEADER, Reply};

/// Builds the response for a request the layer answers itself: a refusal (4xx), a
/// duplicate (200), a copy already in flight (409) or an unavailable store (503).
///
/// Implemented for every `Fn(&Reply) -> Response<Bytes>`; see
/// [`WebhookVerify::on_reject`](crate::WebhookVerify::on_reject). Keep the
/// [`Reply::status`]: the sender retries anything but a 2xx, and the layer's dedup
/// decisions rely on it.
pub trait OnReject: Send + Sync + 'static {
    /// The response for `reply`.
    fn on_reject(&self, reply: &Reply) -> Response<Bytes>;
}

impl<F> OnReject for F
where
    F: Fn(&Reply) -> Response<Bytes> + Send + Sync + 'static,
{
    fn on_reject(&self, reply: &Reply) -> Response<Bytes> {
        self(reply)
    }
}

/// The default: the reply's status, its short reason as `text/plain`, `Retry-After`
/// where the reply has one, and `X-Webhook-Duplicate: true` on a duplicate.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainTextReject;

impl OnReject for PlainTextReject {
    fn on_reject(&self, reply: &Reply) -> Response<Bytes> {
        plain_text(reply)
    }
}

/// The reply's status and [`Reply::to_json`] as `application/json`
/// (`{"status":401,"code":"signature_mismatch","reason":"…"}`), with `Retry-After` where
/// the reply has one. Select it with
/// [`WebhookVerify::json_rejections`](crate::WebhookVerify::json_rejections).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonReject;

impl OnReject for JsonReject {
    fn on_reject(&self, reply: &Reply) -> Response<Bytes> {
        json(reply)
    }
}

/// The default response for `reply`, to reuse inside your own [`OnReject`] function.
pub fn plain_text(reply: &Reply) -> Response<Bytes> {
    respond(
        reply,
        "text/plain; charset=utf-8",
        Bytes::from_static(reply.reason().as_bytes()),
    )
}

/// The JSON response for `reply`, to reuse inside your own [`OnReject`] function.
pub fn json(reply: &Reply) -> Response<Bytes> {
    respond(reply, "application/json", Bytes::from(reply.to_json()))
}

fn respond(reply: &Reply, content_type: &'static str, body: Bytes) -> Response<Bytes> {
    let mut response = Response::new(body);
    *response.status_mut() =
        StatusCode::from_u16(reply.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(secs) = reply.retry_after() {
        headers.insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    if reply.is_duplicate() {
        headers.insert(DUPLICATE_HEADER, HeaderValue::from_static("true"));
    }
    response
}
