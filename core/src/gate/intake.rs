//! One request's whole life, without I/O: [`Gate::intake`] opens it on the head, the
//! adapter pushes the body's chunks in, and [`Intake::admit`] (run a handler) or
//! [`Intake::admit_into`] (store it for later) ends it. Adapters only move bytes.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::{CheckedHead, Gate, Reply, Ticket, UnsignedHeaders};
use crate::observe::Outcome;
use crate::scheme::Scheme;
use crate::{DELIVERY_HEADER, DedupStore, EVENT_HEADER, SignatureHeader, Verified, VerifyError};

/// What the pipeline reads from a request's head, as the adapter's framework holds it.
///
/// An adapter implements it over its request type (a few lines: the header lookup, the
/// path and the host); the gate takes every decision from it.
pub trait RequestHead {
    /// Every value of the header `name` (lowercase), in the order received.
    fn header_values<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]>;

    /// The path of the request's URI, such as `/hooks/mapping/acme`.
    fn path(&self) -> &str;

    /// The request's host: the URI's authority (HTTP/2, absolute form), else `Host`.
    fn host(&self) -> Option<&str>;

    /// The body's declared length: `Content-Length` by default. An adapter that knows
    /// the body's exact size otherwise says so here.
    fn content_length(&self) -> Option<u64> {
        let value = self.header_values("content-length").next()?;
        std::str::from_utf8(value).ok()?.parse().ok()
    }

    /// The tenant key when the adapter takes it itself (a function of the app's own);
    /// `None` takes it as the gate's [`TenantFrom`](crate::TenantFrom) says. An adapter
    /// whose own function found no key returns an empty one: it is refused (404).
    fn tenant_key(&self) -> Option<Cow<'_, str>> {
        None
    }

    /// The first value of header `name`, when it is text.
    fn header_text(&self, name: &'static str) -> Option<&str> {
        std::str::from_utf8(self.header_values(name).next()?).ok()
    }
}

/// A head from a list of lowercase header names and values, as
/// [`Scheme::sign`](crate::scheme::Scheme::sign) returns them: for a caller without a
/// framework, tests and benchmarks. Its path is `/` and it has no host.
///
/// ```
/// use mapping_webhooks::adapter::RequestHead;
///
/// let head = vec![("webhook-id", "msg_1".to_owned())];
/// assert_eq!(head.header_text("webhook-id"), Some("msg_1"));
/// ```
impl RequestHead for Vec<(&'static str, String)> {
    fn header_values<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> {
        self.iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, v)| v.as_bytes())
    }
    fn path(&self) -> &str {
        "/"
    }
    fn host(&self) -> Option<&str> {
        None
    }
}

/// A request on its way through a [`Gate`]: its head passed, its tenant is known, and
/// its body is being read. Made by [`Gate::intake`].
///
/// ```
/// use mapping_webhooks::adapter::RequestHead;
/// use mapping_webhooks::{Gate, Secret, Signer};
///
/// /// A request as some framework holds it.
/// struct Head { signature: String }
///
/// impl RequestHead for Head {
///     fn header_values<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> {
///         (name == "x-webhook-signature").then(|| self.signature.as_bytes()).into_iter()
///     }
///     fn path(&self) -> &str { "/hooks/mapping" }
///     fn host(&self) -> Option<&str> { None }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let gate = Gate::new(Secret::new("whsec_test")?);
/// let body = br#"{"id":"del_1","eventId":"evt_1","type":"mapping.completed","data":{}}"#;
/// let head = Head { signature: Signer::new(Secret::new("whsec_test")?).sign_now(body) };
///
/// let mut intake = gate.intake(&head).await.expect("the head passes");
/// for chunk in body.chunks(16) {
///     intake.push(bytes::Bytes::copy_from_slice(chunk)).expect("within the limit");
/// }
/// let admitted = intake.admit().await.expect("verified and new");
/// assert_eq!(admitted.verified.event_id, "evt_1");
/// // ... run the handler with `admitted.body`, then:
/// admitted.ticket.finish(200).await;
/// # Ok::<(), mapping_webhooks::ConfigError>(())
/// # }).unwrap();
/// ```
#[must_use = "push the body and admit the request, or answer the reply it gives"]
pub struct Intake<'r, D: DedupStore> {
    gate: &'r Gate<D>,
    head: CheckedHead<'r>,
    unsigned: UnsignedHeaders<'r>,
    declared: Option<u64>,
    body: Body,
}

/// The body read so far: one chunk is kept as it came (no copy), more are joined.
enum Body {
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl Body {
    /// The whole body, without a copy.
    fn into_bytes(self) -> Bytes {
        match self {
            Self::Empty => Bytes::new(),
            Self::One(bytes) => bytes,
            Self::Many(bytes) => bytes.freeze(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Empty => 0,
            Self::One(bytes) => bytes.len(),
            Self::Many(bytes) => bytes.len(),
        }
    }
}

/// A request the gate admitted: verified, and claimed in the dedup store.
#[derive(Debug)]
#[non_exhaustive]
pub struct Admitted<D: DedupStore> {
    /// What was verified.
    pub verified: Verified,
    /// The raw body, as signed.
    pub body: Bytes,
    /// The dedup claim: [`finish`](Ticket::finish) it with the handler's status.
    pub ticket: Ticket<D>,
    /// The parsed signature header (a durable inbox stores it to verify again later):
    /// Mapping.Travel's and Stripe's; `None` for the other [schemes](crate::scheme),
    /// whose head is several headers.
    pub signature: Option<SignatureHeader>,
}

/// A verified delivery handed to a [`Sink`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct SinkDelivery<'a> {
    /// What was verified (the tenant's id included, for a gate with tenants).
    pub verified: &'a Verified,
    /// The scheme that verified it.
    pub scheme: Scheme,
    /// The parsed signature header, for the schemes whose head is one signature header
    /// (Mapping.Travel, Stripe); `None` for the others.
    pub signature: Option<&'a SignatureHeader>,
    /// The scheme's signed headers as received, to store and verify again later with
    /// [`Scheme::verify_stored`]: for Mapping.Travel and Stripe the signature header's
    /// value, for the others one `name: value` line per header the scheme reads.
    pub signed_headers: &'a str,
    /// The raw body, as signed.
    pub body: &'a [u8],
}

/// What a [`Sink`] did with a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Stored and committed: answered 202.
    New,
    /// The same event (its tenant's, for a gate with tenants) was stored before:
    /// answered as a duplicate, 200.
    AlreadyStored,
}

/// A durable store that takes a verified delivery instead of a handler running at once:
/// the inbox (`mapping-webhooks-inbox`) is one. [`Intake::admit_into`] answers 202 only
/// once [`store`](Self::store) returned [`Stored::New`], so a delivery acknowledged is
/// never lost.
pub trait Sink: Send + Sync {
    /// Stores `delivery`. An error is answered 503 (the sender retries) and logged.
    fn store(
        &self,
        delivery: SinkDelivery<'_>,
    ) -> impl Future<Output = Result<Stored, Box<dyn std::error::Error + Send + Sync>>> + Send;
}

impl<D: DedupStore> Gate<D> {
    /// Opens the pipeline for one request, before any byte of its body is read: checks
    /// its head (413 for a declared length over the limit, 400 for no signature header,
    /// more than one or a malformed one, 401 for a timestamp outside the tolerance) and,
    /// for a gate with tenants, finds the request's tenant (404, or 503 when the lookup
    /// fails). A request refused here is never read, nor sent a `100 Continue`.
    ///
    /// # Errors
    ///
    /// The [`Reply`] to answer with; it was logged and reported to the observer.
    pub async fn intake<'r, H: RequestHead>(&'r self, head: &'r H) -> Result<Intake<'r, D>, Reply> {
        let unsigned = UnsignedHeaders {
            delivery_id: head.header_text(DELIVERY_HEADER),
            event_type: head.header_text(EVENT_HEADER),
        };
        let declared = head.content_length();
        let checked = self.check_scheme_head(head, declared, unsigned)?;
        let checked = match self.tenant_from() {
            None => checked,
            Some(from) => {
                let key = match head.tenant_key() {
                    Some(key) => Some(key),
                    None => from.key(head.path(), head.host()),
                };
                self.check_tenant(checked, key.as_deref(), unsigned).await?
            }
        };
        Ok(Intake {
            gate: self,
            head: checked,
            unsigned,
            declared,
            body: Body::Empty,
        })
    }
}

impl<D: DedupStore> Gate<D> {
    /// Verifies a request whose body was read already and stores it in `sink`, as
    /// [`Intake::admit_into`] does: the framework-free counterpart of [`admit`](Gate::admit)
    /// for a durable sink. `signatures` are the values of every `X-Webhook-Signature`
    /// header. A gate with tenants refuses it (404): tenants need the request's path or
    /// host, which an adapter gives through [`intake`](Gate::intake). For another
    /// [`Scheme`], `signatures` are the values of its
    /// [signature header](Scheme::signature_header), as for [`admit`](Gate::admit): a
    /// scheme that reads more headers (Standard Webhooks, Svix, GitHub, Shopify, Slack)
    /// is answered 400 for the missing ones; give its request to
    /// [`intake`](Gate::intake).
    pub async fn admit_into<'h, S: Sink>(
        &self,
        sink: &S,
        signatures: impl IntoIterator<Item = &'h [u8]>,
        unsigned: UnsignedHeaders<'_>,
        body: &[u8],
    ) -> Reply {
        let length = u64::try_from(body.len()).unwrap_or(u64::MAX);
        // Another scheme's head is read from its signature header's values (its other
        // headers missing), as `admit` does: the adapters' endpoints give the whole head.
        let mut signatures = signatures.into_iter();
        let only = super::admission::OnlySignatures {
            name: self.scheme.signature_header(),
            values: [signatures.next(), signatures.next()],
        };
        let head = if self.scheme.is_signature_header_only() {
            self.check_head(only.values.into_iter().flatten(), Some(length), unsigned)
        } else {
            self.check_scheme_head(&only, Some(length), unsigned)
        };
        let head = match head {
            Ok(head) => head,
            Err(reply) => return reply,
        };
        self.store_in(&head, unsigned, body, sink).await
    }
}

impl<'r, D: DedupStore> Intake<'r, D> {
    /// The largest body this request may have.
    pub fn body_limit(&self) -> usize {
        self.gate.body_limit
    }

    /// The time the adapter allows for reading the whole body; past it, answer
    /// [`body_failed`](Self::body_failed)`(true)`.
    pub fn read_timeout(&self) -> Duration {
        self.gate.read_timeout
    }

    /// Takes the body's next chunk.
    ///
    /// # Errors
    ///
    /// A 413 [`Reply`] as soon as the body passes the limit (stop reading and answer it).
    pub fn push(&mut self, chunk: Bytes) -> Result<(), Reply> {
        let limit = self.gate.body_limit;
        if self.body.len().saturating_add(chunk.len()) > limit {
            return Err(self
                .gate
                .refuse(VerifyError::BodyTooLarge { limit }, self.unsigned));
        }
        self.body = match std::mem::replace(&mut self.body, Body::Empty) {
            Body::Empty => Body::One(chunk),
            Body::One(first) => {
                // Room for the whole declared body at once, within the limit.
                let expected = self
                    .declared
                    .and_then(|n| usize::try_from(n).ok())
                    .unwrap_or(0)
                    .clamp(first.len() + chunk.len(), limit);
                let mut joined = BytesMut::with_capacity(expected);
                joined.extend_from_slice(&first);
                joined.extend_from_slice(&chunk);
                Body::Many(joined)
            }
            Body::Many(mut joined) => {
                joined.extend_from_slice(&chunk);
                Body::Many(joined)
            }
        };
        Ok(())
    }

    /// The body could not be read: the connection broke (400), or the read took longer
    /// than [`read_timeout`](Self::read_timeout) (`timed_out`: 408).
    pub fn body_failed(self, timed_out: bool) -> Reply {
        self.gate
            .refuse(VerifyError::BodyRead { timed_out }, self.unsigned)
    }

    /// The body is complete: checks its signature (401), its envelope (400), then claims
    /// its event (200 for a duplicate, 409 for a copy in flight, 503 for a store failure).
    ///
    /// # Errors
    ///
    /// The [`Reply`] to answer with, without running the handler.
    pub async fn admit(self) -> Result<Admitted<D>, Reply> {
        let body = self.body.into_bytes();
        match self
            .gate
            .admit_checked(&self.head, self.unsigned, &body)
            .await
        {
            super::Admission::Process { verified, ticket } => Ok(Admitted {
                verified,
                body,
                ticket,
                signature: match self.head.signed {
                    super::Signed::Header(header) => Some(header),
                    super::Signed::Scheme(_) => None,
                },
            }),
            super::Admission::Reply(reply) => Err(reply),
        }
    }

    /// Admits the request (as [`admit`](Self::admit)) and stores it in `sink` instead of
    /// running a handler: 202 once the sink committed it, 200 (a duplicate) when it held
    /// the event already, 503 when it failed. The dedup claim is completed only once
    /// the sink answered, and freed when it failed, so the sender's retry is stored.
    pub async fn admit_into<S: Sink>(self, sink: &S) -> Reply {
        let body = self.body.into_bytes();
        self.gate
            .store_in(&self.head, self.unsigned, &body, sink)
            .await
    }
}

impl<D: DedupStore> Gate<D> {
    /// Admits a request whose body was read and stores it in `sink`: the end of both
    /// [`Intake::admit_into`] and [`Gate::admit_into`].
    async fn store_in<S: Sink>(
        &self,
        head: &CheckedHead<'_>,
        unsigned: UnsignedHeaders<'_>,
        body: &[u8],
        sink: &S,
    ) -> Reply {
        // The sink stores the scheme's signed headers, to verify them again later.
        let (signature, signed_headers) = match &head.signed {
            super::Signed::Header(header) => (Some(header), header.to_header_value()),
            super::Signed::Scheme(scheme_head) => (None, scheme_head.signed_headers()),
        };
        let (verified, ticket) = match self.admit_checked(head, unsigned, body).await {
            super::Admission::Process { verified, ticket } => (verified, ticket),
            super::Admission::Reply(reply) => return reply,
        };
        let stored = sink
            .store(SinkDelivery {
                verified: &verified,
                scheme: self.scheme,
                signature,
                signed_headers: &signed_headers,
                body,
            })
            .await;
        match stored {
            Ok(Stored::New) => {
                ticket.hand_over(Outcome::Queued, true).await;
                Reply::Queued
            }
            Ok(Stored::AlreadyStored) => {
                ticket.hand_over(Outcome::Duplicate, true).await;
                Reply::AlreadyProcessed
            }
            Err(error) => {
                tracing::error!(
                    %error,
                    event_id = verified.event_id,
                    delivery_id = verified.delivery_id,
                    "the inbox could not store the webhook; answered 503 so the sender retries"
                );
                ticket.hand_over(Outcome::StoreUnavailable, false).await;
                Reply::SinkUnavailable
            }
        }
    }
}

impl<D: DedupStore> fmt::Debug for Intake<'_, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Intake")
            .field("head", &self.head)
            .field("declared", &self.declared)
            .field("read", &self.body.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::{
        ManualClock, ResolveError, SIGNATURE_HEADER, Secret, Secrets, Signer, Tenant, TenantFrom,
        Tenants,
    };

    const SECRET: &str = "whsec_intake_test_0123456789abcdef";
    const NOW: u64 = 1_717_250_400;

    /// A head as an adapter sees it: its headers, path and host, and its own tenant key.
    #[derive(Default)]
    struct Head {
        headers: Vec<(&'static str, String)>,
        path: String,
        tenant_key: Option<String>,
    }

    impl RequestHead for Head {
        fn header_values<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> {
            self.headers
                .iter()
                .filter(move |(n, _)| *n == name)
                .map(|(_, v)| v.as_bytes())
        }
        fn path(&self) -> &str {
            &self.path
        }
        fn host(&self) -> Option<&str> {
            None
        }
        fn tenant_key(&self) -> Option<Cow<'_, str>> {
            self.tenant_key.as_deref().map(Cow::Borrowed)
        }
    }

    fn body(event_id: &str) -> Vec<u8> {
        format!(r#"{{"id":"del_1","eventId":"{event_id}","type":"mapping.completed","data":{{}}}}"#)
            .into_bytes()
    }

    fn head(secret: &str, body: &[u8]) -> Head {
        let signature = Signer::new(Secret::new(secret).unwrap()).sign(body, NOW);
        Head {
            headers: vec![
                (SIGNATURE_HEADER, signature),
                ("content-length", body.len().to_string()),
            ],
            path: "/hooks/mapping/acme".into(),
            tenant_key: None,
        }
    }

    fn builder() -> crate::GateBuilder {
        Gate::builder()
            .secret(SECRET)
            .clock(ManualClock::at_secs(NOW))
    }

    #[tokio::test]
    async fn chunks_are_joined_and_the_limit_holds_while_reading() {
        let gate = builder().body_limit(200).build().unwrap();
        let b = body("evt_chunks");
        let h = head(SECRET, &b);
        let mut intake = gate.intake(&h).await.unwrap();
        for chunk in b.chunks(7) {
            intake.push(Bytes::copy_from_slice(chunk)).unwrap();
        }
        let admitted = intake.admit().await.unwrap();
        assert_eq!(admitted.body, b);
        assert_eq!(admitted.verified.event_id, "evt_chunks");
        admitted.ticket.finish(200).await;

        // A body longer than it declared passes the limit while it is read: 413 then.
        let b = body("evt_long");
        let h = head(SECRET, &b);
        let mut intake = gate.intake(&h).await.unwrap();
        intake.push(Bytes::from(vec![b' '; 150])).unwrap();
        let reply = intake.push(Bytes::from(vec![b' '; 51])).unwrap_err();
        assert_eq!(reply.status(), 413);

        // A declared length over the limit is refused on the head.
        let mut big = head(SECRET, &b);
        big.headers[1].1 = "201".into();
        assert_eq!(gate.intake(&big).await.unwrap_err().status(), 413);
    }

    #[tokio::test]
    async fn tenants_come_from_the_path_or_the_adapter_s_own_key() {
        let tenants = Tenants::new(|key: String| async move {
            Ok::<_, ResolveError>((key == "acme").then(|| {
                Tenant::new(
                    "acme",
                    Secrets::new(Secret::new(format!("{SECRET}_acme")).unwrap()),
                )
            }))
        });
        let gate = builder()
            .tenants(tenants, TenantFrom::PathSegment(2))
            .build()
            .unwrap();
        let b = body("evt_tenant");
        let tenant_secret = format!("{SECRET}_acme");
        let h = head(&tenant_secret, &b);
        let mut intake = gate.intake(&h).await.unwrap();
        intake.push(Bytes::from(b.clone())).unwrap();
        let admitted = intake.admit().await.unwrap();
        assert_eq!(admitted.verified.tenant.as_deref(), Some("acme"));
        admitted.ticket.finish(200).await;

        // The gate's own secret is no tenant's.
        let h = head(SECRET, &b);
        let mut intake = gate.intake(&h).await.unwrap();
        intake.push(Bytes::from(b.clone())).unwrap();
        assert_eq!(intake.admit().await.unwrap_err().status(), 401);

        // The adapter's own key wins over the path; an empty one is no tenant: 404.
        for (key, status) in [("nobody", 404), ("", 404)] {
            let mut h = head(&tenant_secret, &b);
            h.tenant_key = Some(key.into());
            assert_eq!(gate.intake(&h).await.unwrap_err().status(), status);
        }
        let mut h = head(&tenant_secret, &body("evt_keyed"));
        h.path = "/elsewhere".into();
        h.tenant_key = Some("acme".into());
        assert!(gate.intake(&h).await.is_ok());
    }

    #[tokio::test]
    async fn a_broken_or_slow_body_is_400_or_408() {
        let gate = builder().build().unwrap();
        let b = body("evt_broken");
        for (timed_out, status) in [(false, 400), (true, 408)] {
            let h = head(SECRET, &b);
            let intake = gate.intake(&h).await.unwrap();
            assert_eq!(intake.body_failed(timed_out).status(), status);
        }
        // Nothing was claimed: the event is still new.
        let h = head(SECRET, &b);
        let mut intake = gate.intake(&h).await.unwrap();
        intake.push(Bytes::from(b.clone())).unwrap();
        intake.admit().await.unwrap().ticket.finish(200).await;
    }
}
