//! Each scheme's head: which headers it reads, and their shape. Parsing checks the
//! shape (a malformed head is refused before any byte of the body is read) and keeps the
//! HMAC signature it decoded doing so, so the check with the body decodes nothing again
//! (and nothing once per secret during a rotation). A header with several HMAC
//! signatures (a sender mid-rotation) is decoded once more, once, at the check: the
//! head stays small, as it is moved through the pipeline on every request.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::Scheme;
use crate::adapter::RequestHead;
use crate::header::{decode_hex32, parse_timestamp};
use crate::{MAX_HEADER_LEN, MAX_SIGNATURES, SignatureHeader, VerifyError};

/// The longest event id header accepted (`webhook-id`, `X-GitHub-Delivery`,
/// `X-Shopify-Event-Id`), in bytes: real ones are under 64.
pub const MAX_ID_LEN: usize = 256;

/// A Standard Webhooks dialect's header names.
pub(super) struct StandardNames {
    pub(super) id: &'static str,
    pub(super) timestamp: &'static str,
    pub(super) signature: &'static str,
}

pub(super) const STANDARD: StandardNames = StandardNames {
    id: "webhook-id",
    timestamp: "webhook-timestamp",
    signature: "webhook-signature",
};
pub(super) const SVIX: StandardNames = StandardNames {
    id: "svix-id",
    timestamp: "svix-timestamp",
    signature: "svix-signature",
};
pub(super) const STRIPE_SIGNATURE: &str = "stripe-signature";
pub(super) const GITHUB_SIGNATURE: &str = "x-hub-signature-256";
pub(super) const GITHUB_DELIVERY: &str = "x-github-delivery";
pub(super) const GITHUB_EVENT: &str = "x-github-event";
pub(super) const SHOPIFY_HMAC: &str = "x-shopify-hmac-sha256";
pub(super) const SHOPIFY_EVENT_ID: &str = "x-shopify-event-id";
pub(super) const SHOPIFY_TOPIC: &str = "x-shopify-topic";
pub(super) const SHOPIFY_WEBHOOK_ID: &str = "x-shopify-webhook-id";
pub(super) const SLACK_SIGNATURE: &str = "x-slack-signature";
pub(super) const SLACK_TIMESTAMP: &str = "x-slack-request-timestamp";

/// A request's head as its scheme reads it, borrowed from the request: its shape was
/// checked, its signatures are not (that needs the body). `Debug` never shows a
/// signature.
///
/// ```
/// use mapping_webhooks::adapter::RequestHead;
/// use mapping_webhooks::scheme::Scheme;
///
/// struct Head(Vec<(&'static str, &'static str)>);
/// impl RequestHead for Head {
///     fn header_values<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> {
///         self.0.iter().filter(move |(n, _)| *n == name).map(|(_, v)| v.as_bytes())
///     }
///     fn path(&self) -> &str { "/hooks/github" }
///     fn host(&self) -> Option<&str> { None }
/// }
///
/// let sig = format!("sha256={}", "ab".repeat(32));
/// let sig: &'static str = Box::leak(sig.into_boxed_str());
/// let head = Head(vec![("x-hub-signature-256", sig), ("x-github-delivery", "72d3162e")]);
/// let parsed = Scheme::GitHub.parse_head(&head)?;
/// assert_eq!(parsed.id(), Some("72d3162e"));
/// assert_eq!(parsed.timestamp(), None);
///
/// let missing = Head(vec![("x-github-delivery", "72d3162e")]);
/// assert_eq!(Scheme::GitHub.parse_head(&missing).unwrap_err().status(), 400);
/// # Ok::<(), mapping_webhooks::VerifyError>(())
/// ```
#[derive(Clone, Copy)]
pub struct SchemeHead<'r> {
    pub(super) scheme: Scheme,
    pub(super) timestamp: Option<u64>,
    /// The timestamp's digits as sent (and signed), canonical.
    pub(super) timestamp_text: &'r [u8],
    /// The id from a header (empty for schemes whose id is in the body).
    pub(super) id: &'r str,
    /// An unsigned event type header (GitHub's event, Shopify's topic), or empty.
    pub(super) event_type: &'r str,
    /// An unsigned delivery id header (GitHub's delivery, Shopify's webhook id), or empty.
    pub(super) delivery: &'r str,
    /// The signature header's value, whose shape was checked (`v1a` entries are decoded
    /// from it when a `whpk_` key is tried).
    pub(super) signature: &'r [u8],
    /// The first HMAC-SHA256 signature, decoded when the head was read: Mapping.Travel's
    /// or Stripe's first `v1`, Standard Webhooks' first `v1` entry, GitHub's, Shopify's,
    /// Slack's.
    pub(super) hmac: [u8; 32],
    /// How many HMAC signatures the header holds (at most [`MAX_SIGNATURES`]).
    pub(super) hmac_count: u8,
}

impl<'r> SchemeHead<'r> {
    /// The scheme that read it.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The signed timestamp, for a scheme that has one.
    pub fn timestamp(&self) -> Option<u64> {
        self.timestamp
    }

    /// The event id from a header (Standard Webhooks, Svix, GitHub, Shopify); `None`
    /// for the schemes whose id is in the signed body.
    pub fn id(&self) -> Option<&'r str> {
        (!self.id.is_empty()).then_some(self.id)
    }

    /// Runs `f` with the decoded HMAC signatures: the one kept when the head was read,
    /// or, for a header holding several, all of them decoded once here.
    #[inline]
    pub(super) fn with_hmacs<R>(&self, f: impl FnOnce(&[[u8; 32]]) -> R) -> R {
        if self.hmac_count <= 1 {
            return f(&std::slice::from_ref(&self.hmac)[..usize::from(self.hmac_count)]);
        }
        let mut all = [[0u8; 32]; MAX_SIGNATURES];
        let mut count = 0;
        let mut keep = |signature: &[u8; 32]| {
            if let Some(slot) = all.get_mut(count) {
                *slot = *signature;
                count += 1;
            }
        };
        match self.scheme {
            Scheme::Mapping | Scheme::Stripe => {
                if let Ok(header) = SignatureHeader::parse(self.signature) {
                    header.signatures().for_each(&mut keep);
                }
            }
            Scheme::Standard | Scheme::Svix => {
                for entry in standard_signatures(self.signature) {
                    if let Ok(StandardSignature::Hmac(signature)) = entry {
                        keep(&signature);
                    }
                }
            }
            Scheme::GitHub | Scheme::Shopify | Scheme::Slack => keep(&self.hmac),
        }
        f(&all[..count])
    }

    /// Counts one decoded HMAC signature, keeping the first.
    fn push_hmac(&mut self, signature: &[u8; 32]) {
        if self.hmac_count == 0 {
            self.hmac = *signature;
        }
        self.hmac_count = self.hmac_count.saturating_add(1);
    }
}

impl fmt::Debug for SchemeHead<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemeHead")
            .field("scheme", &self.scheme)
            .field("timestamp", &self.timestamp)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Scheme {
    /// Reads and checks the shape of the scheme's headers in `head`: each present once,
    /// well formed, within [`MAX_HEADER_LEN`] and [`MAX_ID_LEN`]. The signatures are
    /// checked with the body, by the [`Gate`](crate::Gate).
    ///
    /// # Errors
    ///
    /// 400: [`VerifyError::MissingSchemeHeader`], [`VerifyError::RepeatedSchemeHeader`],
    /// [`VerifyError::MalformedSchemeHeader`] (for Mapping.Travel, the errors of
    /// [`SignatureHeader::parse`]). Never panics, whatever the bytes.
    pub fn parse_head<'r, H: RequestHead>(
        self,
        head: &'r H,
    ) -> Result<SchemeHead<'r>, VerifyError> {
        let mut parsed = SchemeHead {
            scheme: self,
            timestamp: None,
            timestamp_text: b"",
            id: "",
            event_type: "",
            delivery: "",
            signature: b"",
            hmac: [0; 32],
            hmac_count: 0,
        };
        match self {
            Self::Mapping | Self::Stripe => {
                let name = self.signature_header();
                let value = one(head, name)?;
                let header = SignatureHeader::parse(value).map_err(VerifyError::from)?;
                parsed.timestamp = Some(header.timestamp());
                parsed.signature = value;
                for signature in header.signatures() {
                    parsed.push_hmac(signature);
                }
            }
            Self::Standard | Self::Svix => {
                let names = if self == Self::Standard {
                    &STANDARD
                } else {
                    &SVIX
                };
                parsed.id = id(head, names.id)?;
                let (t, text) = timestamp(head, names.timestamp)?;
                parsed.timestamp = Some(t);
                parsed.timestamp_text = text;
                let value = one(head, names.signature)?;
                check_standard_signatures(value, &mut parsed)
                    .map_err(|why| malformed(names.signature, why))?;
                parsed.signature = value;
            }
            Self::GitHub => {
                let value = one(head, GITHUB_SIGNATURE)?;
                let signature = github_signature(value).ok_or_else(|| {
                    malformed(GITHUB_SIGNATURE, "is not sha256= and 64 hex digits")
                })?;
                parsed.push_hmac(&signature);
                parsed.signature = value;
                parsed.id = id(head, GITHUB_DELIVERY)?;
                parsed.delivery = parsed.id;
                parsed.event_type = optional_text(head, GITHUB_EVENT)?;
            }
            Self::Shopify => {
                let value = one(head, SHOPIFY_HMAC)?;
                let signature = shopify_signature(value)
                    .ok_or_else(|| malformed(SHOPIFY_HMAC, "is not the base64 of 32 bytes"))?;
                parsed.push_hmac(&signature);
                parsed.signature = value;
                parsed.id = id(head, SHOPIFY_EVENT_ID)?;
                parsed.event_type = optional_text(head, SHOPIFY_TOPIC)?;
                parsed.delivery = optional_text(head, SHOPIFY_WEBHOOK_ID)?;
            }
            Self::Slack => {
                let value = one(head, SLACK_SIGNATURE)?;
                let signature = slack_signature(value)
                    .ok_or_else(|| malformed(SLACK_SIGNATURE, "is not v0= and 64 hex digits"))?;
                parsed.push_hmac(&signature);
                parsed.signature = value;
                let (t, text) = timestamp(head, SLACK_TIMESTAMP)?;
                parsed.timestamp = Some(t);
                parsed.timestamp_text = text;
            }
        }
        Ok(parsed)
    }
}

fn malformed(header: &'static str, why: &'static str) -> VerifyError {
    VerifyError::MalformedSchemeHeader { header, why }
}

/// The one value of header `name`: missing and repeated headers are refused.
fn one<'r, H: RequestHead>(head: &'r H, name: &'static str) -> Result<&'r [u8], VerifyError> {
    let mut values = head.header_values(name);
    match (values.next(), values.next()) {
        (Some(value), None) => {
            if value.len() > MAX_HEADER_LEN {
                return Err(malformed(name, "is too long"));
            }
            Ok(value.trim_ascii())
        }
        (None, _) => Err(VerifyError::MissingSchemeHeader { header: name }),
        (Some(_), Some(_)) => Err(VerifyError::RepeatedSchemeHeader { header: name }),
    }
}

/// An id header: 1 to [`MAX_ID_LEN`] visible ASCII characters.
fn id<'r, H: RequestHead>(head: &'r H, name: &'static str) -> Result<&'r str, VerifyError> {
    let value = one(head, name)?;
    if value.is_empty() {
        return Err(malformed(name, "is empty"));
    }
    if value.len() > MAX_ID_LEN {
        return Err(malformed(name, "is longer than 256 bytes"));
    }
    visible(value).ok_or_else(|| malformed(name, "is not visible ASCII"))
}

/// An optional unsigned text header (a type or a delivery id): visible ASCII, at most
/// [`MAX_ID_LEN`] bytes; empty when absent.
fn optional_text<'r, H: RequestHead>(
    head: &'r H,
    name: &'static str,
) -> Result<&'r str, VerifyError> {
    if head.header_values(name).next().is_none() {
        return Ok("");
    }
    id(head, name)
}

fn visible(value: &[u8]) -> Option<&str> {
    value
        .iter()
        .all(|b| b.is_ascii_graphic())
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
}

/// A timestamp header: decimal seconds, canonical (no sign, no leading zero), as the
/// providers write it and as their libraries sign it.
fn timestamp<'r, H: RequestHead>(
    head: &'r H,
    name: &'static str,
) -> Result<(u64, &'r [u8]), VerifyError> {
    let value = one(head, name)?;
    let t = parse_timestamp(value)
        .map_err(|_| malformed(name, "is not a unix time in whole seconds"))?;
    Ok((t, value))
}

/// The most entries of a Standard Webhooks signature header looked at, whatever their
/// version: beyond it, the header is refused rather than tried.
const MAX_STANDARD_ENTRIES: usize = MAX_SIGNATURES;

/// A Standard Webhooks signature entry.
pub(super) enum StandardSignature {
    /// `v1,<base64 of 32 bytes>`: HMAC-SHA256.
    Hmac([u8; 32]),
    /// `v1a,<base64 of 64 bytes>`: ed25519 (checked with the `ed25519` feature only).
    #[cfg_attr(not(feature = "ed25519"), allow(dead_code))]
    Ed25519([u8; 64]),
}

/// The entries of a Standard Webhooks signature header (space-separated
/// `<version>,<base64>`), decoded: `v1` and `v1a` entries of the right length; entries
/// of other versions, or undecodable ones, are skipped (they can match nothing).
pub(super) fn standard_signatures(
    value: &[u8],
) -> impl Iterator<Item = Result<StandardSignature, &'static str>> + '_ {
    value
        .split(|&b| b == b' ')
        .filter(|part| !part.is_empty())
        .take(MAX_STANDARD_ENTRIES + 1)
        .enumerate()
        .map(|(index, part)| {
            if index == MAX_STANDARD_ENTRIES {
                return Err("has more than 8 signatures");
            }
            let comma = part
                .iter()
                .position(|&b| b == b',')
                .ok_or("has an entry that is not <version>,<base64>")?;
            let (version, encoded) = (&part[..comma], &part[comma + 1..]);
            let mut buf = [0u8; 66];
            if encoded.len() > 88 {
                return Ok(None);
            }
            let decoded = BASE64.decode_slice(encoded, &mut buf).ok();
            Ok(match (version, decoded) {
                (b"v1", Some(32)) => {
                    Some(StandardSignature::Hmac(buf[..32].try_into().expect("32")))
                }
                (b"v1a", Some(64)) => Some(StandardSignature::Ed25519(
                    buf[..64].try_into().expect("64"),
                )),
                _ => None,
            })
        })
        .filter_map(Result::transpose)
}

/// Checks a Standard Webhooks signature header: at least one usable `v1` or `v1a`
/// entry, at most [`MAX_STANDARD_ENTRIES`] entries; keeps the decoded `v1` ones in
/// `parsed`.
fn check_standard_signatures(
    value: &[u8],
    parsed: &mut SchemeHead<'_>,
) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("is empty");
    }
    let mut usable = false;
    for entry in standard_signatures(value) {
        if let StandardSignature::Hmac(signature) = entry? {
            parsed.push_hmac(&signature);
        }
        usable = true;
    }
    if usable {
        Ok(())
    } else {
        Err("has no v1 or v1a signature of the right length")
    }
}

/// GitHub's `sha256=<64 hex digits>`.
pub(super) fn github_signature(value: &[u8]) -> Option<[u8; 32]> {
    decode_hex32(value.strip_prefix(b"sha256=")?)
}

/// Slack's `v0=<64 hex digits>`.
pub(super) fn slack_signature(value: &[u8]) -> Option<[u8; 32]> {
    decode_hex32(value.strip_prefix(b"v0=")?)
}

/// Shopify's base64 of 32 bytes (44 characters, padded).
pub(super) fn shopify_signature(value: &[u8]) -> Option<[u8; 32]> {
    if value.len() != 44 {
        return None;
    }
    let mut buf = [0u8; 33];
    match BASE64.decode_slice(value, &mut buf) {
        Ok(32) => Some(buf[..32].try_into().expect("32")),
        _ => None,
    }
}
