//! The layer's request path over tower: what each request is answered, what the inner
//! service gets, and the delivery's span.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HeaderValue};
use http::{Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use mapping_webhooks_tower::{
    Gate, Reply, SIGNATURE_HEADER, Secret, Signer, VerifiedBody, WebhookVerify,
};
use tower::{ServiceBuilder, ServiceExt};

/// A layer over a gate for `SECRET` built with `options`.
fn layer_with(
    options: impl FnOnce(mapping_webhooks_tower::GateBuilder) -> mapping_webhooks_tower::GateBuilder,
) -> WebhookVerify {
    WebhookVerify::from_gate(options(Gate::builder().secret(SECRET)).build().unwrap())
}

const SECRET: &str = "whsec_service_test_0123456789abcdef";

fn signed(event_id: &str) -> Request<VerifiedBody> {
    let body = format!(
        r#"{{"id":"del_1","eventId":"{event_id}","type":"mapping.completed","data":{{}}}}"#
    );
    let header = Signer::new(Secret::new(SECRET).unwrap()).sign_now(body.as_bytes());
    Request::post("/")
        .header(SIGNATURE_HEADER, header)
        .body(VerifiedBody::new(Bytes::from(body)))
        .unwrap()
}

/// A POST carrying a signature that is valid now (for some body: these bodies are
/// refused before their signature would be compared).
fn with_fresh_signature() -> http::request::Builder {
    let header = Signer::new(Secret::new(SECRET).unwrap()).sign_now(b"{}");
    Request::post("/").header(SIGNATURE_HEADER, header)
}

/// A body that never finishes.
struct Stalled;

impl Body for Stalled {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        Poll::Pending
    }
}

/// A body that must not be read.
struct Untouchable;

impl Body for Untouchable {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        panic!("the body was read although the request head was refused")
    }
}

/// A body of an exact size it says in its size hint (no `Content-Length` header), that
/// must not be read.
struct SizedUntouchable(u64);

impl Body for SizedUntouchable {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        panic!("the body was read although its size is over the limit")
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.0)
    }
}

/// A body whose transfer breaks.
struct Broken;

impl Body for Broken {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(Some(Err(std::io::Error::other("connection reset"))))
    }
}

async fn ok(_: Request<VerifiedBody>) -> Result<Response<VerifiedBody>, Infallible> {
    Ok(Response::new(VerifiedBody::default()))
}

use mapping_webhooks_test_spans::{SpanFields, current_span};

#[tokio::test]
async fn the_handler_runs_inside_the_delivery_span() {
    let spans = SpanFields::default();
    let service = ServiceBuilder::new()
        .layer(WebhookVerify::new(SECRET))
        .service_fn(|_: Request<VerifiedBody>| async {
            let span = current_span();
            tracing::info!("the handler logs");
            Ok::<_, Infallible>(Response::new(VerifiedBody::new(Bytes::from(
                span.unwrap_or("none"),
            ))))
        });
    // Registers the callsites before the subscriber (see `install`).
    let warm_up = service.clone().oneshot(signed("evt_span_warm_up")).await;
    assert_eq!(warm_up.unwrap().status(), http::StatusCode::OK);
    let _guard = spans.install();
    let response = service.oneshot(signed("evt_span")).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "webhook", "the handler ran outside the delivery span");
    let fields = spans.fields();
    for field in [
        "event_id=evt_span",
        "delivery_id=del_1",
        "event_type=mapping.completed",
        "outcome=processed",
        "reason=2xx",
    ] {
        assert!(fields.iter().any(|f| f == field), "{field} in {fields:?}");
    }
}

#[tokio::test]
async fn an_inner_error_frees_the_claim() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let service = ServiceBuilder::new()
        .layer(WebhookVerify::new(SECRET))
        .service_fn(move |_: Request<VerifiedBody>| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err(std::io::Error::other("handler failed"))
                } else {
                    Ok(Response::new(VerifiedBody::default()))
                }
            }
        });
    let first = service.clone().oneshot(signed("evt_err")).await;
    assert!(first.is_err(), "the inner error is the service's error");
    let second = service.clone().oneshot(signed("evt_err")).await.unwrap();
    assert_eq!(second.status(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the retry ran the handler");
    let third = service.oneshot(signed("evt_err")).await.unwrap();
    assert_eq!(third.status(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "then it is done");
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_unread() {
    let service = ServiceBuilder::new()
        .layer(layer_with(|g| g.body_limit(1000)))
        .service_fn(ok);
    let request = Request::post("/")
        .header(CONTENT_LENGTH, "1001")
        .body(Untouchable)
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 413);
}

#[tokio::test]
async fn an_exact_size_over_the_limit_is_refused_unread_without_a_content_length() {
    let service = ServiceBuilder::new()
        .layer(layer_with(|g| g.body_limit(1000)))
        .service_fn(ok);
    let request = with_fresh_signature().body(SizedUntouchable(1001)).unwrap();
    assert!(request.headers().get(CONTENT_LENGTH).is_none());
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 413);
}

#[tokio::test]
async fn a_bad_signature_header_is_refused_with_the_body_unread() {
    let service = ServiceBuilder::new()
        .layer(WebhookVerify::new(SECRET))
        .service_fn(ok);
    let stale = Signer::new(Secret::new(SECRET).unwrap()).sign(b"{}", 1_000_000_000);
    for (request, status) in [
        (Request::post("/"), 400),
        (Request::post("/").header(SIGNATURE_HEADER, "t=soon"), 400),
        (with_fresh_signature().header(SIGNATURE_HEADER, "t=1"), 400),
        (Request::post("/").header(SIGNATURE_HEADER, stale), 401),
    ] {
        let request = request
            .header(CONTENT_LENGTH, "1000")
            .body(Untouchable)
            .unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), status);
    }
}

#[tokio::test]
async fn a_stalled_body_times_out_with_408() {
    let service = ServiceBuilder::new()
        .layer(layer_with(|g| g.read_timeout(Duration::from_millis(20))))
        .service_fn(ok);
    let response = service
        .oneshot(with_fresh_signature().body(Stalled).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 408);
}

#[tokio::test]
async fn a_broken_body_is_400() {
    let service = ServiceBuilder::new()
        .layer(WebhookVerify::new(SECRET))
        .service_fn(ok);
    let response = service
        .oneshot(with_fresh_signature().body(Broken).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "body could not be read");
}

#[tokio::test]
async fn custom_and_json_rejections_are_used() {
    let custom = ServiceBuilder::new()
        .layer(WebhookVerify::new(SECRET).on_reject(|reply: &Reply| {
            let mut r = mapping_webhooks_tower::reject::plain_text(reply);
            r.headers_mut()
                .insert("x-refusal", HeaderValue::from_static(reply.code()));
            r
        }))
        .service_fn(ok);
    let response = custom
        .oneshot(Request::post("/").body(VerifiedBody::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["x-refusal"], "missing_header");

    let json = ServiceBuilder::new()
        .layer(WebhookVerify::new(SECRET).json_rejections())
        .service_fn(ok);
    let response = json
        .oneshot(Request::post("/").body(VerifiedBody::default()).unwrap())
        .await
        .unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(value["code"], "missing_header");
    assert_eq!(value["status"], 400);
}

#[tokio::test]
async fn the_inner_service_gets_the_bytes_and_the_metadata() {
    let service = ServiceBuilder::new()
        .layer(WebhookVerify::new(SECRET))
        .service_fn(|request: Request<VerifiedBody>| async move {
            let meta = request
                .extensions()
                .get::<mapping_webhooks_tower::Verified>();
            assert_eq!(meta.map(|m| m.event_id.as_str()), Some("evt_meta"));
            Ok::<_, Infallible>(Response::new(request.into_body()))
        });
    let request = signed("evt_meta");
    let sent = request.body().as_bytes().to_vec();
    let response = service.oneshot(request).await.unwrap();
    let echoed = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(echoed, sent);
}
