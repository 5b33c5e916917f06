//! The one place a request enters the core's pipeline: its head, as the gate reads it,
//! and its body, read chunk by chunk within the gate's limit and read timeout. The
//! middleware and the inbox endpoint both start here.

use std::borrow::Cow;
use std::future::poll_fn;
use std::pin::Pin;

use actix_web::HttpRequest;
use actix_web::dev::Payload;
use actix_web::http::header::{HOST, HeaderName, HeaderValue};
use futures_core::Stream;
use mapping_webhooks::adapter::{Intake, RequestHead};
use mapping_webhooks::{DedupStore, Gate, Reply};

/// A function taking a request's tenant key (see [`WebhookVerify::tenant_key`](crate::WebhookVerify::tenant_key)).
pub(crate) type TenantKeyFn = dyn Fn(&HttpRequest) -> Option<String> + Send + Sync;

/// A request's head, with the app's own tenant-key function if it has one.
pub(crate) struct Head<'a> {
    pub(crate) req: &'a HttpRequest,
    pub(crate) tenant_key: Option<&'a TenantKeyFn>,
}

impl RequestHead for Head<'_> {
    fn header_values<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> {
        // A static name: no allocation, unlike a lookup by `&str` (the core's names are
        // lowercase constants).
        let name = HeaderName::from_static(name);
        self.req.headers().get_all(name).map(HeaderValue::as_bytes)
    }

    fn path(&self) -> &str {
        self.req.path()
    }

    fn host(&self) -> Option<&str> {
        let authority = self.req.uri().authority().map(|a| a.as_str());
        authority.or_else(|| self.req.headers().get(HOST)?.to_str().ok())
    }

    fn tenant_key(&self) -> Option<Cow<'_, str>> {
        // The app's function found no key: an empty one, refused 404.
        self.tenant_key
            .map(|f| Cow::Owned(f(self.req).unwrap_or_default()))
    }
}

/// Opens the gate's pipeline on `head` (a refused head is answered without reading any
/// byte of the body), then pushes the payload's chunks into it within the read timeout.
pub(crate) async fn read<'r, D: DedupStore>(
    gate: &'r Gate<D>,
    head: &'r Head<'_>,
    payload: &mut Payload,
) -> Result<Intake<'r, D>, Reply> {
    let mut intake = gate.intake(head).await?;
    let timeout = intake.read_timeout();
    let chunks = async {
        while let Some(chunk) = poll_fn(|cx| Pin::new(&mut *payload).poll_next(cx)).await {
            // A broken connection: Ok(false), answered 400.
            let Ok(chunk) = chunk else { return Ok(false) };
            intake.push(chunk)?;
        }
        Ok(true)
    };
    match actix_web::rt::time::timeout(timeout, chunks).await {
        Ok(Ok(true)) => Ok(intake),
        Ok(Ok(false)) => Err(intake.body_failed(false)),
        Ok(Err(too_large)) => Err(too_large),
        Err(_elapsed) => Err(intake.body_failed(true)),
    }
}
