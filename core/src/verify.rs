//! Signature verification against the raw body bytes.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use hmac::digest::{CtOutput, Output};
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::scheme::Scheme;
use crate::secrets::Key;
use crate::{Clock, Secret, Secrets, SignatureHeader, SystemClock, VerifyError};

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// How far the signed timestamp may be from the receiver's clock, either way, by default.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Checks `X-Webhook-Signature` headers against raw request bodies.
///
/// A verifier holds the current secret and any previous ones (during a rotation both are
/// accepted), each keyed once when it is added: a request costs one HMAC pass over the
/// body per secret, fed incrementally, with no copy of the body. Signatures are compared
/// in constant time with the MAC's own comparison.
///
/// ```
/// use mapping_webhooks::{MatchedSecret, Secret, Signer, Verifier};
///
/// let secret = Secret::new("whsec_e1c5d3a0b2f4c6d8e0f2a4b6c8d0e2f4a6b83a0e")?;
/// let body = br#"{"id":"del_1","eventId":"evt_1","type":"mapping.completed","data":{}}"#;
/// let now = std::time::SystemTime::now()
///     .duration_since(std::time::UNIX_EPOCH)?
///     .as_secs();
/// let header = Signer::new(secret.clone()).sign(body, now);
///
/// let verified = Verifier::new(secret).verify(&header, body)?;
/// assert_eq!(verified.event_id, "evt_1");
/// assert_eq!(verified.event_type, "mapping.completed");
/// assert_eq!(verified.secret, MatchedSecret::Current);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Verifier {
    /// The current secret's key first, then previous ones: read on every request, changed
    /// through the handle while the server runs.
    secrets: Secrets,
    tolerance_secs: u64,
    clock: Arc<dyn Clock>,
}

pub(crate) fn keyed_mac(secret: &Secret) -> HmacSha256 {
    // HMAC takes keys of any length, so this cannot fail.
    HmacSha256::new_from_slice(secret.expose()).expect("HMAC accepts keys of any length")
}

/// HMAC-SHA256 over `"{timestamp}.{body}"`, from a pre-keyed MAC, without copying the body.
pub(crate) fn sign_with(key: &HmacSha256, timestamp: u64, body: &[u8]) -> CtOutput<HmacSha256> {
    let mut mac = key.clone();
    let mut prefix = [0u8; 21];
    mac.update(timestamp_prefix(timestamp, &mut prefix));
    mac.update(body);
    mac.finalize()
}

/// Writes `"{timestamp}."` into `buf` and returns the written part.
fn timestamp_prefix(mut timestamp: u64, buf: &mut [u8; 21]) -> &[u8] {
    let mut start = buf.len() - 1;
    buf[start] = b'.';
    loop {
        start -= 1;
        buf[start] = b'0' + (timestamp % 10) as u8;
        timestamp /= 10;
        if timestamp == 0 {
            return &buf[start..];
        }
    }
}

/// Which secret a request was signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MatchedSecret {
    /// The current secret.
    Current,
    /// A previous secret, by its place in the order the previous secrets are tried (0
    /// for the first: the one most recently replaced by [`Secrets::rotate`], or the
    /// first given to `previous_secret`). Once no request matches a previous secret any
    /// more, the rotation is over and it can be removed.
    Previous(usize),
}

impl fmt::Display for MatchedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Current => f.write_str("current"),
            Self::Previous(i) => write!(f, "previous[{i}]"),
        }
    }
}

/// A request whose signature matched, before its body is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignatureMatch {
    /// The signed timestamp, in seconds since the Unix epoch.
    pub timestamp: u64,
    /// Which secret the signature was made with.
    pub secret: MatchedSecret,
}

/// What a verified request is: its signature facts and the envelope fields every
/// decision needs. For Mapping.Travel, Stripe and Slack all are taken from the signed
/// body; the other [schemes](crate::scheme) carry their id (and GitHub and Shopify their
/// type) in headers, which Standard Webhooks and Svix sign and GitHub and Shopify do not.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verified {
    /// The signed timestamp, in seconds since the Unix epoch; 0 for a scheme that signs
    /// none (GitHub, Shopify): see [`signed_at`](Self::signed_at).
    pub timestamp: u64,
    /// Which secret (or, for `v1a`, which public key) the signature was made with.
    pub secret: MatchedSecret,
    /// The event id, stable across retries: the idempotency key. Mapping.Travel's
    /// `eventId`; the scheme's own id for the others (see [`scheme`](crate::scheme));
    /// empty only for Slack's `url_verification`, which is not deduplicated.
    pub event_id: String,
    /// The event's type, such as `mapping.completed`: the body's `type` (Mapping.Travel,
    /// Stripe, Slack), the unsigned `X-GitHub-Event` or `X-Shopify-Topic`, or empty
    /// (Standard Webhooks, Svix: read the body).
    pub event_type: String,
    /// The delivery attempt's id (empty if the scheme has none): Mapping.Travel's `id`,
    /// new on every retry; GitHub's `X-GitHub-Delivery`; Shopify's `X-Shopify-Webhook-Id`.
    pub delivery_id: String,
    /// The tenant whose secret verified the request, when the gate serves many
    /// ([`Gate::for_tenants`](crate::Gate::for_tenants)).
    pub tenant: Option<String>,
    /// The scheme that verified the request.
    pub scheme: Scheme,
}

impl Verified {
    /// The metadata of an event signed at `timestamp` with the current secret, as the
    /// middleware would insert it: for unit tests of a handler that takes it, without the
    /// middleware. Only the middleware's value means the request was verified.
    ///
    /// ```
    /// use mapping_webhooks::{MatchedSecret, Verified};
    ///
    /// let verified = Verified::new("evt_1", "mapping.completed", "del_1", 1_717_250_400);
    /// assert_eq!(verified.secret, MatchedSecret::Current);
    /// let rotated = verified.with_secret(MatchedSecret::Previous(0));
    /// assert_eq!(rotated.secret, MatchedSecret::Previous(0));
    /// ```
    pub fn new(
        event_id: impl Into<String>,
        event_type: impl Into<String>,
        delivery_id: impl Into<String>,
        timestamp: u64,
    ) -> Self {
        Self {
            timestamp,
            secret: MatchedSecret::Current,
            event_id: event_id.into(),
            event_type: event_type.into(),
            delivery_id: delivery_id.into(),
            tenant: None,
            scheme: Scheme::Mapping,
        }
    }

    /// The signed timestamp, `None` for a scheme that signs none (GitHub, Shopify).
    pub fn signed_at(&self) -> Option<u64> {
        self.scheme.has_timestamp().then_some(self.timestamp)
    }

    /// The same metadata, as if signed with `secret`.
    #[must_use]
    pub fn with_secret(mut self, secret: MatchedSecret) -> Self {
        self.secret = secret;
        self
    }
}

#[derive(Deserialize)]
struct EnvelopeHead<'a> {
    #[serde(rename = "eventId", borrow)]
    event_id: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    event_type: Cow<'a, str>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
}

impl Verifier {
    /// A verifier for one secret, with the default tolerance of five minutes.
    pub fn new(secret: Secret) -> Self {
        Self::from_secrets(Secrets::new(secret))
    }

    /// A verifier reading `secrets`, a handle the app can change while the server runs
    /// (see [`Secrets`]), with the default tolerance of five minutes.
    pub fn from_secrets(secrets: Secrets) -> Self {
        Self {
            secrets,
            tolerance_secs: DEFAULT_TOLERANCE.as_secs(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Also accepts signatures made with a previous secret, for the rotation window.
    /// May be called more than once. The secret is added to this verifier's
    /// [`Secrets`] handle (shared with its clones) and does not expire: see
    /// [`Secrets::previous_secret`].
    #[must_use]
    pub fn previous_secret(self, secret: Secret) -> Self {
        let secrets = self.secrets.clone().previous_secret(secret);
        Self { secrets, ..self }
    }

    /// The secrets handle this verifier reads: clone it to rotate the secrets later.
    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// How far the signed timestamp may be from the clock, either way (whole seconds;
    /// default five minutes). A request exactly at the edge is accepted.
    #[must_use]
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance_secs = tolerance.as_secs();
        self
    }

    /// Reads the time from `clock` instead of the system clock (for tests). The
    /// [`Secrets`] handle's expiry deadlines follow the same clock.
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(clock);
        self.secrets.set_clock(Arc::clone(&clock));
        self.clock = clock;
        self
    }

    /// The configured tolerance.
    pub fn get_tolerance(&self) -> Duration {
        Duration::from_secs(self.tolerance_secs)
    }

    /// Checks the header's timestamp and signatures against `body`, without looking
    /// inside the body.
    ///
    /// # Errors
    ///
    /// [`VerifyError::MalformedHeader`], [`VerifyError::TimestampTooOld`],
    /// [`VerifyError::TimestampInFuture`] or [`VerifyError::SignatureMismatch`].
    pub fn verify_signature(
        &self,
        header: impl AsRef<[u8]>,
        body: &[u8],
    ) -> Result<SignatureMatch, VerifyError> {
        let header = SignatureHeader::parse(header)?;
        self.check_window(&header)?;
        self.match_signature(&header, body)
    }

    /// Checks a request of any [`Scheme`] against `body`, without looking inside the
    /// body: the scheme's headers, read from `head` (see
    /// [`Scheme::parse_head`]), its timestamp window where it has one, and its
    /// signatures against every live secret. The counterpart of
    /// [`verify_signature`](Self::verify_signature) for the other senders; the
    /// [`Gate`](crate::Gate) does the same, then reads the scheme's event id and
    /// deduplicates.
    ///
    /// ```
    /// use mapping_webhooks::adapter::RequestHead;
    /// use mapping_webhooks::scheme::Scheme;
    /// use mapping_webhooks::{ManualClock, MatchedSecret, Secret, Verifier};
    ///
    /// struct Head(Vec<(&'static str, String)>);
    /// impl RequestHead for Head {
    ///     fn header_values<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> {
    ///         self.0.iter().filter(move |(n, _)| *n == name).map(|(_, v)| v.as_bytes())
    ///     }
    ///     fn path(&self) -> &str { "/hooks/slack" }
    ///     fn host(&self) -> Option<&str> { None }
    /// }
    ///
    /// let secret = Secret::new("8f742231b10e8888abcd99yyyzzz85a5")?;
    /// let body = br#"{"event_id":"Ev1","type":"event_callback"}"#;
    /// let head = Head(Scheme::Slack.sign(&secret, "", 1_717_250_400, body)?);
    /// let verifier = Verifier::new(secret).clock(ManualClock::at_secs(1_717_250_400));
    /// let matched = verifier.verify_head(Scheme::Slack, &head, body)?;
    /// assert_eq!(matched.secret, MatchedSecret::Current);
    /// assert!(verifier.verify_head(Scheme::Slack, &head, b"{}").is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Those of [`Scheme::parse_head`] (400), [`VerifyError::TimestampTooOld`],
    /// [`VerifyError::TimestampInFuture`] or [`VerifyError::SignatureMismatch`] (401).
    pub fn verify_head<H: crate::adapter::RequestHead>(
        &self,
        scheme: Scheme,
        head: &H,
        body: &[u8],
    ) -> Result<SignatureMatch, VerifyError> {
        let head = scheme.parse_head(head)?;
        if let Some(timestamp) = head.timestamp() {
            self.check_timestamp(timestamp)?;
        }
        let secret = scheme.match_signature(&self.secrets, &head, body)?;
        Ok(SignatureMatch {
            timestamp: head.timestamp().unwrap_or(0),
            secret,
        })
    }

    /// Refuses a parsed header whose timestamp is more than the tolerance away from the
    /// clock, either way. Needs no body, so [`Gate::check_head`](crate::Gate::check_head)
    /// runs it before one is read.
    #[inline]
    pub(crate) fn check_window(&self, header: &SignatureHeader) -> Result<(), VerifyError> {
        self.check_timestamp(header.timestamp())
    }

    /// Refuses a signed timestamp more than the tolerance away from the clock.
    #[inline]
    pub(crate) fn check_timestamp(&self, timestamp: u64) -> Result<(), VerifyError> {
        let now = self.clock.now_secs();
        if now.saturating_sub(timestamp) > self.tolerance_secs {
            return Err(VerifyError::TimestampTooOld { timestamp, now });
        }
        if timestamp.saturating_sub(now) > self.tolerance_secs {
            return Err(VerifyError::TimestampInFuture { timestamp, now });
        }
        Ok(())
    }

    /// Compares the header's signatures with the HMAC of `body` under every secret (the
    /// timestamp window is not checked here: see [`check_window`](Self::check_window)).
    #[inline]
    pub(crate) fn match_signature(
        &self,
        header: &SignatureHeader,
        body: &[u8],
    ) -> Result<SignatureMatch, VerifyError> {
        self.match_signature_with(&self.secrets, header, body)
    }

    /// [`match_signature`](Self::match_signature) against `secrets` (a tenant's) instead
    /// of the verifier's own.
    #[inline]
    pub(crate) fn match_signature_with(
        &self,
        secrets: &Secrets,
        header: &SignatureHeader,
        body: &[u8],
    ) -> Result<SignatureMatch, VerifyError> {
        let timestamp = header.timestamp();
        let secret = find_key(secrets, |key| {
            let expected = sign_with(&key.mac, timestamp, body);
            header
                .signatures()
                .any(|signature| expected == CtOutput::new(Output::<HmacSha256>::from(*signature)))
        })?;
        Ok(SignatureMatch { timestamp, secret })
    }

    /// Checks the signature, then reads `eventId`, `type` and `id` from the verified
    /// body (the rest of the envelope is skipped, not deserialised).
    ///
    /// # Errors
    ///
    /// Those of [`verify_signature`](Self::verify_signature), and
    /// [`VerifyError::NotAnEnvelope`] when a correctly signed body is not a JSON object
    /// with a non-empty string `eventId` and a string `type`.
    pub fn verify(&self, header: impl AsRef<[u8]>, body: &[u8]) -> Result<Verified, VerifyError> {
        let matched = self.verify_signature(header, body)?;
        read_envelope(matched, body)
    }
}

/// Tries `matches` on each live secret of `secrets`, the current one first, and says
/// which one matched. Previous secrets past their deadline are skipped (and pruned).
#[inline]
pub(crate) fn find_key(
    secrets: &Secrets,
    mut matches: impl FnMut(&Key) -> bool,
) -> Result<MatchedSecret, VerifyError> {
    let ring = secrets.load();
    // Read once, and only if a previous secret with a deadline is tried.
    let mut now_ms = None;
    let mut expired = false;
    for (index, key) in ring.keys.iter().enumerate() {
        if let Some(deadline) = key.expires_at_ms
            && *now_ms.get_or_insert_with(|| ring.clock.monotonic_millis()) >= deadline
        {
            expired = true;
            continue;
        }
        if matches(key) {
            return Ok(match index {
                0 => MatchedSecret::Current,
                i => MatchedSecret::Previous(i - 1),
            });
        }
    }
    if expired {
        drop(ring);
        secrets.prune_expired();
    }
    Err(VerifyError::SignatureMismatch)
}

/// Reads `eventId`, `type` and `id` from a body whose signature matched.
pub(crate) fn read_envelope(matched: SignatureMatch, body: &[u8]) -> Result<Verified, VerifyError> {
    // JSON text is UTF-8 (RFC 8259). Checking the whole body, not only the fields read
    // here, means a handler never gets invalid text in the parts this skips.
    let text = std::str::from_utf8(body)
        .map_err(|e| VerifyError::NotAnEnvelope(format!("body is not UTF-8: {e}")))?;
    // A derived `Deserialize` also accepts a JSON array, by position.
    if text.trim_ascii_start().as_bytes().first() != Some(&b'{') {
        return Err(VerifyError::NotAnEnvelope(
            "body is not a JSON object".into(),
        ));
    }
    let head: EnvelopeHead<'_> =
        serde_json::from_str(text).map_err(|e| VerifyError::NotAnEnvelope(e.to_string()))?;
    if head.event_id.is_empty() {
        return Err(VerifyError::NotAnEnvelope("eventId is empty".into()));
    }
    Ok(Verified {
        timestamp: matched.timestamp,
        secret: matched.secret,
        event_id: head.event_id.into_owned(),
        event_type: head.event_type.into_owned(),
        delivery_id: head.id.map(Cow::into_owned).unwrap_or_default(),
        tenant: None,
        scheme: Scheme::Mapping,
    })
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("secrets", &self.secrets)
            .field("tolerance_secs", &self.tolerance_secs)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ManualClock, Signer};

    const SECRET: &str = "whsec_test_0123456789abcdef0123456789";
    const OLD: &str = "whsec_old_fedcba9876543210fedcba98765";
    const NOW: u64 = 1_717_250_400;
    const BODY: &[u8] = br#"{"id":"del_1","eventId":"evt_1","type":"mapping.completed","apiVersion":"2026-06-01","createdAt":"2026-06-07T12:01:00Z","data":{"rowCount":1}}"#;

    fn secret(s: &str) -> Secret {
        Secret::new(s).unwrap()
    }

    fn verifier() -> Verifier {
        Verifier::new(secret(SECRET)).clock(ManualClock::at_secs(NOW))
    }

    fn sign(s: &str, body: &[u8], t: u64) -> String {
        Signer::new(secret(s)).sign(body, t)
    }

    fn v1(header: &str) -> &str {
        header.split("v1=").nth(1).unwrap()
    }

    #[test]
    fn accepts_a_valid_request_and_reads_the_envelope() {
        let v = verifier().verify(sign(SECRET, BODY, NOW), BODY).unwrap();
        assert_eq!(v.timestamp, NOW);
        assert_eq!(v.secret, MatchedSecret::Current);
        assert_eq!(v.event_id, "evt_1");
        assert_eq!(v.event_type, "mapping.completed");
        assert_eq!(v.delivery_id, "del_1");
    }

    #[test]
    fn second_of_two_signatures_matches() {
        let good = sign(SECRET, BODY, NOW);
        let bad = sign(OLD, BODY, NOW);
        let header = format!("t={NOW},v1={},v1={}", v1(&bad), v1(&good));
        assert!(verifier().verify(&header, BODY).is_ok());
    }

    #[test]
    fn previous_secret_is_accepted_and_reported() {
        let v = verifier().previous_secret(secret(OLD));
        let got = v.verify(sign(OLD, BODY, NOW), BODY).unwrap();
        assert_eq!(got.secret, MatchedSecret::Previous(0));
        // Without the previous secret the same request fails.
        assert_eq!(
            verifier().verify(sign(OLD, BODY, NOW), BODY),
            Err(VerifyError::SignatureMismatch)
        );
    }

    #[test]
    fn tolerance_edges() {
        let v = verifier();
        let tol = DEFAULT_TOLERANCE.as_secs();
        for t in [NOW - tol, NOW + tol, NOW] {
            assert!(v.verify(sign(SECRET, BODY, t), BODY).is_ok(), "t={t}");
        }
        assert_eq!(
            v.verify(sign(SECRET, BODY, NOW - tol - 1), BODY),
            Err(VerifyError::TimestampTooOld {
                timestamp: NOW - tol - 1,
                now: NOW
            })
        );
        assert_eq!(
            v.verify(sign(SECRET, BODY, NOW + tol + 1), BODY),
            Err(VerifyError::TimestampInFuture {
                timestamp: NOW + tol + 1,
                now: NOW
            })
        );
        let strict = verifier().tolerance(Duration::from_secs(10));
        assert!(strict.verify(sign(SECRET, BODY, NOW - 10), BODY).is_ok());
        assert!(strict.verify(sign(SECRET, BODY, NOW - 11), BODY).is_err());
    }

    #[test]
    fn extreme_timestamps_are_refused_not_overflowed() {
        let v = verifier();
        for t in [0, u64::MAX] {
            let err = v.verify(sign(SECRET, BODY, t), BODY).unwrap_err();
            assert_eq!(err.status(), 401, "{err}");
        }
    }

    #[test]
    fn a_changed_byte_is_refused() {
        let header = sign(SECRET, BODY, NOW);
        let mut body = BODY.to_vec();
        body[10] ^= 1;
        assert_eq!(
            verifier().verify(&header, &body),
            Err(VerifyError::SignatureMismatch)
        );
        // The signature of a neighbouring timestamp does not transfer.
        let moved = header.replacen(&format!("t={NOW}"), &format!("t={}", NOW + 1), 1);
        assert_eq!(
            verifier().verify(&moved, BODY),
            Err(VerifyError::SignatureMismatch)
        );
    }

    #[test]
    fn reserialised_json_is_refused() {
        let header = sign(SECRET, BODY, NOW);
        let value: serde_json::Value = serde_json::from_slice(BODY).unwrap();
        let pretty = serde_json::to_vec_pretty(&value).unwrap();
        assert_ne!(pretty, BODY);
        assert_eq!(
            verifier().verify(&header, &pretty),
            Err(VerifyError::SignatureMismatch)
        );
    }

    #[test]
    fn non_utf8_body_is_verified_as_bytes() {
        let body = b"\xff\xfe{\"eventId\":1}";
        let header = sign(SECRET, body, NOW);
        assert!(verifier().verify_signature(&header, body).is_ok());
        assert!(matches!(
            verifier().verify(&header, body),
            Err(VerifyError::NotAnEnvelope(_))
        ));
    }

    #[test]
    fn invalid_utf8_anywhere_in_a_signed_body_is_refused() {
        // Also in a part that is skipped, not parsed: the handler gets the bytes.
        for body in [
            &b"{\"eventId\":\"e\",\"type\":\"t\",\"data\":{\"note\":\"caf\xe9\"}}"[..],
            b"{\"eventId\":\"e\",\"type\":\"t\",\"x\":\"\xed\xa0\x80\"}",
            b"{\"eventId\":\"e\xff\",\"type\":\"t\"}",
        ] {
            let err = verifier()
                .verify(sign(SECRET, body, NOW), body)
                .unwrap_err();
            assert!(matches!(err, VerifyError::NotAnEnvelope(_)), "{err:?}");
            assert_eq!(err.status(), 400);
        }
    }

    #[test]
    fn signed_bodies_that_are_not_envelopes() {
        for body in [
            &br#"{"type":"mapping.completed"}"#[..],
            br#"{"eventId":42,"type":"x"}"#,
            br#"{"eventId":"","type":"x"}"#,
            br#"{"eventId":"e"}"#,
            br#"{"eventId":"e","eventId":"f","type":"x"}"#,
            br#"["eventId"]"#,
            br#"["evt_1","mapping.completed","del_1"]"#,
            br#" ["evt_1","mapping.completed"]"#,
            b"",
            b"not json",
        ] {
            let header = sign(SECRET, body, NOW);
            let err = verifier().verify(&header, body).unwrap_err();
            assert!(matches!(err, VerifyError::NotAnEnvelope(_)), "{err:?}");
            assert_eq!(err.status(), 400);
        }
    }

    #[test]
    fn escaped_event_ids_are_decoded() {
        let body = br#"{"eventId":"evt_\u0031\"x","type":"t"}"#;
        let v = verifier().verify(sign(SECRET, body, NOW), body).unwrap();
        assert_eq!(v.event_id, "evt_1\"x");
        assert_eq!(v.delivery_id, "");
    }

    #[test]
    fn malformed_headers_are_400() {
        for header in ["", "t=1", "v1=00", "t=-1,v1=00", "t=abc,v1=00"] {
            let err = verifier().verify(header, BODY).unwrap_err();
            assert!(matches!(err, VerifyError::MalformedHeader(_)), "{header}");
            assert_eq!(err.status(), 400);
        }
    }

    #[test]
    fn debug_shows_masked_secrets_only() {
        let v = verifier().previous_secret(secret(OLD));
        let shown = format!("{v:?}");
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
        assert!(!shown.contains("fedcba"), "{shown}");
        assert!(shown.contains("whsec_••••6789"), "{shown}");
    }

    #[test]
    fn timestamp_prefix_formats_every_width() {
        for t in [0, 7, 10, 1_717_250_400, u64::MAX] {
            let mut buf = [0; 21];
            assert_eq!(timestamp_prefix(t, &mut buf), format!("{t}.").as_bytes());
        }
    }
}
