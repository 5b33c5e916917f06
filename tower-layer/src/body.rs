//! The bodies the layer hands on and answers with, and the bounded body read.

use std::convert::Infallible;
use std::fmt;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use pin_project_lite::pin_project;

/// The request body the inner service receives: the raw bytes the signature was
/// verified over, unchanged.
///
/// It is an ordinary [`Body`](https://docs.rs/http-body/1/http_body/trait.Body.html), so axum's `Json<T>`, `Bytes` and `String` extractors work
/// behind the layer; a plain hyper or tower service can take the bytes without
/// collecting them with [`into_bytes`](Self::into_bytes).
#[derive(Clone, Default)]
pub struct VerifiedBody {
    bytes: Bytes,
}

impl VerifiedBody {
    /// A body holding `bytes`.
    pub fn new(bytes: Bytes) -> Self {
        Self { bytes }
    }

    /// The bytes not yet read from the body.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes not yet read from the body.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }
}

impl fmt::Debug for VerifiedBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedBody")
            .field("len", &self.bytes.len())
            .finish()
    }
}

impl Body for VerifiedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let bytes = std::mem::take(&mut self.get_mut().bytes);
        Poll::Ready((!bytes.is_empty()).then(|| Ok(Frame::data(bytes))))
    }

    fn is_end_stream(&self) -> bool {
        self.bytes.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.bytes.len() as u64)
    }
}

pin_project! {
    /// The response body of [`WebhookVerifyService`](crate::WebhookVerifyService):
    /// the inner service's body, or the short body of a response the layer gave itself.
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Reply { bytes: Bytes },
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn reply(bytes: Bytes) -> Self {
        Self {
            kind: Kind::Reply { bytes },
        }
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Inner { .. } => f.write_str("ResponseBody::Inner"),
            Kind::Reply { bytes } => f
                .debug_struct("ResponseBody::Reply")
                .field("len", &bytes.len())
                .finish(),
        }
    }
}

impl<B: Body<Data = Bytes>> Body for ResponseBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Reply { bytes } => {
                let bytes = std::mem::take(bytes);
                Poll::Ready((!bytes.is_empty()).then(|| Ok(Frame::data(bytes))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Reply { bytes } => bytes.is_empty(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Reply { bytes } => SizeHint::with_exact(bytes.len() as u64),
        }
    }
}

/// Why the body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// More than the limit arrived; the rest was not read.
    TooLarge,
    /// The body stream failed (the client went away, a broken transfer encoding).
    Broken,
}

/// Reads `body` whole, stopping as soon as it passes `limit` bytes. A body in one frame
/// (the usual case) is handed on without a copy; several frames are gathered into one
/// buffer sized from `expected` (the declared length, already checked against `limit`).
pub(crate) async fn read_limited<B: Body>(
    body: B,
    limit: usize,
    expected: Option<u64>,
) -> Result<Bytes, ReadError> {
    let mut body = pin!(body);
    let mut first: Option<Bytes> = None;
    let mut gathered = BytesMut::new();
    let mut len = 0usize;
    while let Some(frame) = body.as_mut().frame().await {
        let Ok(data) = frame.map_err(|_| ReadError::Broken)?.into_data() else {
            continue; // trailers carry nothing the signature covers
        };
        let mut data = data;
        let n = data.remaining();
        len = len.saturating_add(n);
        if len > limit {
            return Err(ReadError::TooLarge);
        }
        let chunk = data.copy_to_bytes(n);
        if gathered.is_empty() {
            match first.take() {
                None => {
                    first = Some(chunk);
                    continue;
                }
                Some(previous) => {
                    let want = expected.map_or(len, |e| usize::try_from(e).unwrap_or(len));
                    gathered.reserve(want.clamp(len, limit));
                    gathered.extend_from_slice(&previous);
                }
            }
        }
        gathered.extend_from_slice(&chunk);
    }
    Ok(if gathered.is_empty() {
        first.unwrap_or_default()
    } else {
        gathered.freeze()
    })
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

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

    fn chunks(parts: &[&'static [u8]]) -> Chunks {
        Chunks(parts.to_vec())
    }

    #[tokio::test]
    async fn one_frame_is_handed_on_without_a_copy() {
        let bytes = Bytes::from_static(b"hello");
        let read = read_limited(VerifiedBody::new(bytes.clone()), 5, None)
            .await
            .unwrap();
        assert_eq!(read.as_ptr(), bytes.as_ptr());
    }

    #[tokio::test]
    async fn frames_are_gathered_in_order() {
        let read = read_limited(chunks(&[b"ab", b"cd", b"e"]), 5, Some(5))
            .await
            .unwrap();
        assert_eq!(read, "abcde");
    }

    #[tokio::test]
    async fn one_byte_over_the_limit_is_refused() {
        let err = read_limited(chunks(&[b"ab", b"cd", b"ef"]), 5, None).await;
        assert_eq!(err, Err(ReadError::TooLarge));
    }

    #[tokio::test]
    async fn verified_body_yields_its_bytes_once() {
        let body = VerifiedBody::new(Bytes::from_static(b"xyz"));
        assert_eq!(body.size_hint().exact(), Some(3));
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(collected, "xyz");
    }
}
