//! The one place a request enters the core's pipeline (its head as the gate reads it,
//! its body pushed in chunk by chunk within the read timeout; the layer and the inbox
//! endpoint both start here), and the bodies the layer hands on and answers with.

use std::borrow::Cow;
use std::convert::Infallible;
use std::fmt;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderValue;
use http::request::Parts;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Either, Full};
use mapping_webhooks::adapter::{Intake, RequestHead};
use mapping_webhooks::{DedupStore, Gate, Reply};

use crate::WebhookVerify;

/// A function taking a request's tenant key from its head (see
/// [`WebhookVerify::tenant_key`](crate::WebhookVerify::tenant_key)).
pub(crate) type TenantKeyFn = dyn Fn(&Parts) -> Option<String> + Send + Sync;

/// A request's head as the gate reads it: the parts, the body's exact size when it
/// declares one (the length without a `Content-Length`), and the app's own tenant-key
/// function if it has one.
pub(crate) struct Head<'a> {
    parts: &'a Parts,
    exact_size: Option<u64>,
    tenant_key: Option<&'a TenantKeyFn>,
}

impl<'a> Head<'a> {
    pub(crate) fn new<B: Body, D, R>(
        parts: &'a Parts,
        body: &B,
        verify: &'a WebhookVerify<D, R>,
    ) -> Self {
        let tenant_key = verify.tenant_key.as_deref();
        let exact_size = body.size_hint().exact();
        Self {
            parts,
            exact_size,
            tenant_key,
        }
    }
}

impl RequestHead for Head<'_> {
    fn header_values<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> {
        self.parts
            .headers
            .get_all(name)
            .iter()
            .map(HeaderValue::as_bytes)
    }

    fn path(&self) -> &str {
        self.parts.uri.path()
    }

    fn host(&self) -> Option<&str> {
        let authority = self.parts.uri.authority().map(http::uri::Authority::as_str);
        authority.or_else(|| self.parts.headers.get(http::header::HOST)?.to_str().ok())
    }

    fn content_length(&self) -> Option<u64> {
        let declared = self
            .header_text("content-length")
            .and_then(|v| v.parse().ok());
        declared.or(self.exact_size)
    }

    fn tenant_key(&self) -> Option<Cow<'_, str>> {
        // The app's function found no key: an empty one, refused 404.
        self.tenant_key
            .map(|f| Cow::Owned(f(self.parts).unwrap_or_default()))
    }
}

/// Opens the gate's pipeline on `head` (a refused head is answered without polling the
/// body, so hyper never sends it a `100 Continue`), then pushes the body's frames into
/// it within the read timeout.
pub(crate) async fn read<'r, D: DedupStore, B: Body>(
    gate: &'r Gate<D>,
    head: &'r Head<'_>,
    body: B,
) -> Result<Intake<'r, D>, Reply> {
    let mut intake = gate.intake(head).await?;
    let timeout = intake.read_timeout();
    let frames = async {
        let mut body = pin!(body);
        while let Some(frame) = body.as_mut().frame().await {
            // A broken transfer: Ok(false), answered 400.
            let Ok(frame) = frame else { return Ok(false) };
            // Trailers carry nothing the signature covers.
            if let Ok(mut data) = frame.into_data() {
                intake.push(data.copy_to_bytes(data.remaining()))?;
            }
        }
        Ok(true)
    };
    match tokio::time::timeout(timeout, frames).await {
        Ok(Ok(true)) => Ok(intake),
        Ok(Ok(false)) => Err(intake.body_failed(false)),
        Ok(Err(too_large)) => Err(too_large),
        Err(_elapsed) => Err(intake.body_failed(true)),
    }
}

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

/// The response body of [`WebhookVerifyService`](crate::WebhookVerifyService) (and
/// [`InboxService`](crate::InboxService)): the inner service's body (`Left`), or the
/// short body of a response the layer gave itself (`Right`). Its error is boxed, as
/// axum's and hyper's bodies accept.
pub type ResponseBody<B> = Either<B, Full<Bytes>>;

/// The body of a response the layer gives itself.
pub(crate) fn reply<B>(bytes: Bytes) -> ResponseBody<B> {
    Either::Right(Full::new(bytes))
}
