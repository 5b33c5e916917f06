//! The body read, through the layer: one frame handed on without a copy, frames gathered
//! in order, the limit, and the body the inner service gets.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use mapping_webhooks_tower::{Gate, SIGNATURE_HEADER, Secret, Signer, VerifiedBody, WebhookVerify};
use tower::{ServiceBuilder, ServiceExt};

const SECRET: &str = "whsec_body_test_0123456789abcdef";
const BODY: &str = r#"{"id":"del_1","eventId":"evt_body","type":"mapping.completed","data":{}}"#;

/// A body arriving in several frames.
struct Chunks(Vec<&'static [u8]>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let next = (!self.0.is_empty()).then(|| self.0.remove(0));
        Poll::Ready(next.map(|c| Ok(Frame::data(Bytes::from_static(c)))))
    }
}

/// What the inner service received, and the layer's answer.
async fn send<B>(limit: usize, body: B) -> (u16, Option<Bytes>)
where
    B: Body<Data = Bytes, Error = Infallible> + Send + 'static,
{
    let gate = Gate::builder()
        .secret(SECRET)
        .body_limit(limit)
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(None));
    let sink = Arc::clone(&seen);
    let service = ServiceBuilder::new()
        .layer(WebhookVerify::from_gate(gate))
        .service_fn(move |request: Request<VerifiedBody>| {
            *sink.lock().unwrap() = Some(request.into_body().into_bytes());
            async { Ok::<_, Infallible>(Response::new(VerifiedBody::default())) }
        });
    let signature = Signer::new(Secret::new(SECRET).unwrap()).sign_now(BODY.as_bytes());
    let request = Request::post("/")
        .header(SIGNATURE_HEADER, signature)
        .body(body)
        .unwrap();
    let status = service.oneshot(request).await.unwrap().status().as_u16();
    let seen = seen.lock().unwrap().take();
    (status, seen)
}

/// `BODY` cut into frames of at most `n` bytes.
fn chunks(n: usize) -> Chunks {
    Chunks(BODY.as_bytes().chunks(n).collect())
}

#[tokio::test]
async fn one_frame_is_handed_on_without_a_copy() {
    let bytes = Bytes::from_static(BODY.as_bytes());
    let (status, read) = send(BODY.len(), VerifiedBody::new(bytes.clone())).await;
    assert_eq!(status, 200);
    assert_eq!(read.unwrap().as_ptr(), bytes.as_ptr());
}

#[tokio::test]
async fn frames_are_gathered_in_order() {
    let (status, read) = send(BODY.len(), chunks(7)).await;
    assert_eq!(status, 200);
    assert_eq!(read.unwrap(), BODY);
}

#[tokio::test]
async fn one_byte_over_the_limit_is_refused() {
    let (status, read) = send(BODY.len() - 1, chunks(7)).await;
    assert_eq!(status, 413);
    assert_eq!(read, None, "the inner service did not run");
}

#[tokio::test]
async fn verified_body_yields_its_bytes_once() {
    let body = VerifiedBody::new(Bytes::from_static(b"xyz"));
    assert_eq!(body.size_hint().exact(), Some(3));
    let collected = body.collect().await.unwrap().to_bytes();
    assert_eq!(collected, "xyz");
}
