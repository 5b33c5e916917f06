//! Producing signatures and signed deliveries, for tests of a receiver and for the
//! example sender.

use std::fmt;

use serde::Serialize;

use crate::header::encode_hex32;
use crate::verify::{HmacSha256, keyed_mac, sign_with};
use crate::{
    Clock, DELIVERY_HEADER, EVENT_HEADER, Envelope, SIGNATURE_HEADER, Secret, SystemClock,
};

/// Signs bodies the way Mapping.Travel does, so a receiver can be tested end to end.
///
/// ```
/// use mapping_webhooks::{Secret, Signer};
///
/// let signer = Signer::new(Secret::new("whsec_test")?);
/// let header = signer.sign(br#"{"eventId":"evt_1"}"#, 1_717_250_400);
/// assert!(header.starts_with("t=1717250400,v1="));
/// assert_eq!(header.len(), "t=1717250400,v1=".len() + 64);
/// # Ok::<(), mapping_webhooks::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Signer {
    mac: HmacSha256,
    masked: String,
}

impl Signer {
    /// A signer for `secret`.
    pub fn new(secret: Secret) -> Self {
        Self {
            mac: keyed_mac(&secret),
            masked: secret.masked(),
        }
    }

    /// The `X-Webhook-Signature` value for `body` signed at `timestamp` (Unix seconds).
    pub fn sign(&self, body: &[u8], timestamp: u64) -> String {
        let mut header = format!("t={timestamp},v1=");
        header.reserve(64);
        encode_hex32(&self.signature(body, timestamp), &mut header);
        header
    }

    /// [`sign`](Self::sign) at the current system time.
    pub fn sign_now(&self, body: &[u8]) -> String {
        self.sign(body, SystemClock.now_secs())
    }

    /// The raw 32-byte `v1` signature, to build headers with several signatures.
    pub fn signature(&self, body: &[u8], timestamp: u64) -> [u8; 32] {
        sign_with(&self.mac, timestamp, body).into_bytes().into()
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Signer").field(&self.masked).finish()
    }
}

/// One delivery signed like the sender's, for tests of a receiver: the exact body and
/// the headers to send with it (`X-Webhook-Signature` over the body, `X-Webhook-Event`
/// and `X-Webhook-Delivery` from the envelope, `Content-Type: application/json`).
///
/// Each adapter's `testing::SignedRequest` turns one into its framework's request;
/// [`headers`](Self::headers) and [`into_body`](Self::into_body) serve any HTTP client.
///
/// ```
/// use mapping_webhooks::{
///     Envelope, MAPPING_COMPLETED, MappingCompleted, Secret, SignedDelivery, Verifier,
/// };
///
/// let job = MappingCompleted::new("job_1", "COMPLETED", 4821, None);
/// let envelope = Envelope::new("del_1", "evt_1", MAPPING_COMPLETED, job);
/// let delivery = SignedDelivery::new(&envelope, "whsec_test").signed_at(1_717_250_400);
///
/// let signature = delivery.signature();
/// assert!(signature.starts_with("t=1717250400,v1="));
/// assert!(delivery.headers().any(|(name, value)| name == "x-webhook-event" && value == MAPPING_COMPLETED));
///
/// let verifier = Verifier::new(Secret::new("whsec_test")?);
/// # let verifier = verifier.clock(mapping_webhooks::ManualClock::at_secs(1_717_250_400));
/// assert_eq!(verifier.verify(&signature, delivery.body().as_bytes())?.event_id, "evt_1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct SignedDelivery {
    body: String,
    signer: Signer,
    timestamp: Option<u64>,
    event_type: Option<String>,
    delivery_id: Option<String>,
}

impl SignedDelivery {
    /// A delivery carrying `envelope`, signed with `secret` (the whole `whsec_…` string).
    ///
    /// # Panics
    ///
    /// When `secret` is empty or blank, or `envelope` cannot be serialised: this is for
    /// tests, where a panic names the mistake.
    pub fn new<T: Serialize>(envelope: &Envelope<T>, secret: impl AsRef<[u8]>) -> Self {
        let body = serde_json::to_string(envelope)
            .unwrap_or_else(|e| panic!("SignedDelivery: the envelope does not serialise: {e}"));
        let mut delivery = Self::from_body(body, secret);
        delivery.event_type = Some(envelope.event_type.clone());
        delivery.delivery_id = Some(envelope.id.clone()).filter(|id| !id.is_empty());
        delivery
    }

    /// A delivery carrying exactly `body` (malformed JSON included), signed with
    /// `secret`, without the event and delivery headers.
    ///
    /// # Panics
    ///
    /// When `secret` is empty or blank.
    pub fn from_body(body: impl Into<String>, secret: impl AsRef<[u8]>) -> Self {
        let secret = Secret::new(secret).unwrap_or_else(|e| panic!("SignedDelivery: {e}"));
        Self {
            body: body.into(),
            signer: Signer::new(secret),
            timestamp: None,
            event_type: None,
            delivery_id: None,
        }
    }

    /// Signs at `timestamp` (Unix seconds) instead of when the headers are read: pair it
    /// with a [`ManualClock`](crate::ManualClock) on the receiving side.
    pub fn signed_at(mut self, timestamp: u64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// The `X-Webhook-Signature` value: signed at [`signed_at`](Self::signed_at)'s
    /// time, or now.
    pub fn signature(&self) -> String {
        let timestamp = self.timestamp.unwrap_or_else(|| SystemClock.now_secs());
        self.signer.sign(self.body.as_bytes(), timestamp)
    }

    /// The headers to send, names in lower case: content type, signature, and the event
    /// type and delivery id when the delivery was made from an envelope.
    pub fn headers(&self) -> impl Iterator<Item = (&'static str, String)> + '_ {
        [
            Some(("content-type", "application/json".to_owned())),
            Some((SIGNATURE_HEADER, self.signature())),
            self.event_type.clone().map(|t| (EVENT_HEADER, t)),
            self.delivery_id.clone().map(|id| (DELIVERY_HEADER, id)),
        ]
        .into_iter()
        .flatten()
    }

    /// The body, exactly as signed.
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The body, exactly as signed.
    pub fn into_body(self) -> String {
        self.body
    }
}
