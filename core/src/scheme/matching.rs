//! Each scheme's signature check, over exactly the signed bytes with a pre-keyed MAC (no
//! copy of the body, no allocation), and where its dedup id is read.

use std::borrow::Cow;

use hmac::Mac;
use hmac::digest::{CtOutput, Output};
use serde::Deserialize;

#[cfg(feature = "ed25519")]
use super::headers::{StandardSignature, standard_signatures};
use super::{Scheme, SchemeHead, StandardKey};
use crate::secrets::Key;
use crate::verify::{HmacSha256, find_key, read_envelope, sign_with};
use crate::{MatchedSecret, Secrets, SignatureMatch, Verified, VerifyError};

/// A MAC's output, as the MAC's own constant-time comparison takes it.
fn ct(bytes: &[u8; 32]) -> CtOutput<HmacSha256> {
    CtOutput::new(Output::<HmacSha256>::from(*bytes))
}

impl Scheme {
    /// Which live secret of `secrets` signed `body` under `head`: one pre-keyed MAC per
    /// secret over exactly the signed bytes, compared with the signatures `head`
    /// decoded when it was read (never decoded again, whatever the number of secrets).
    ///
    /// # Errors
    ///
    /// [`VerifyError::SignatureMismatch`] when none did.
    pub(crate) fn match_signature(
        self,
        secrets: &Secrets,
        head: &SchemeHead<'_>,
        body: &[u8],
    ) -> Result<MatchedSecret, VerifyError> {
        head.with_hmacs(|signatures| {
            let any = |expected: CtOutput<HmacSha256>| signatures.iter().any(|s| expected == ct(s));
            match self {
                Self::Mapping | Self::Stripe => {
                    let timestamp = head.timestamp.unwrap_or(0);
                    find_key(secrets, |key| any(sign_with(&key.mac, timestamp, body)))
                }
                Self::Standard | Self::Svix => {
                    find_key(secrets, |key| standard_match(key, head, signatures, body))
                }
                Self::GitHub | Self::Shopify => find_key(secrets, |key| {
                    let mut mac = key.mac.clone();
                    mac.update(body);
                    any(mac.finalize())
                }),
                Self::Slack => find_key(secrets, |key| {
                    let mut mac = key.mac.clone();
                    mac.update(b"v0:");
                    mac.update(head.timestamp_text);
                    mac.update(b":");
                    mac.update(body);
                    any(mac.finalize())
                }),
            }
        })
    }
}

/// Standard Webhooks: `{id}.{timestamp}.{body}`, one HMAC per `whsec_` secret compared
/// with every `v1` entry, or one ed25519 check per `v1a` entry for a `whpk_` key.
fn standard_match(key: &Key, head: &SchemeHead<'_>, hmacs: &[[u8; 32]], body: &[u8]) -> bool {
    match key.standard() {
        StandardKey::Hmac(mac) => {
            if hmacs.is_empty() {
                return false;
            }
            let mut mac = mac.clone();
            mac.update(head.id.as_bytes());
            mac.update(b".");
            mac.update(head.timestamp_text);
            mac.update(b".");
            mac.update(body);
            let expected = mac.finalize();
            hmacs.iter().any(|s| expected == ct(s))
        }
        #[cfg(feature = "ed25519")]
        StandardKey::Ed25519(public) => standard_signatures(head.signature).any(|entry| {
            let Ok(StandardSignature::Ed25519(signature)) = entry else {
                return false;
            };
            let signature = ed25519_dalek::Signature::from_bytes(&signature);
            let Ok(mut stream) = public.verify_stream(&signature) else {
                return false;
            };
            stream.update(head.id.as_bytes());
            stream.update(b".");
            stream.update(head.timestamp_text);
            stream.update(b".");
            stream.update(body);
            stream.finalize_and_verify().is_ok()
        }),
        StandardKey::Unusable => false,
    }
}

/// Stripe's event: `id` (`evt_…`) and `type`.
#[derive(Deserialize)]
struct StripeEvent<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    event_type: Cow<'a, str>,
}

/// Slack's Events API body: `event_id` (absent from `url_verification`) and `type`.
#[derive(Deserialize)]
struct SlackEvent<'a> {
    #[serde(default, borrow)]
    event_id: Option<Cow<'a, str>>,
    #[serde(rename = "type", borrow)]
    event_type: Cow<'a, str>,
}

/// A JSON object body as text (the schemes whose id is in the body).
fn json_object(body: &[u8]) -> Result<&str, VerifyError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| VerifyError::NotAnEnvelope(format!("body is not UTF-8: {e}")))?;
    if text.trim_ascii_start().as_bytes().first() != Some(&b'{') {
        return Err(VerifyError::NotAnEnvelope(
            "body is not a JSON object".into(),
        ));
    }
    Ok(text)
}

/// What was verified, once the signature matched: the dedup id and type from the body
/// (Mapping.Travel, Stripe, Slack) or from the head (the others, which do not parse the
/// body at all). `head` is the scheme's head, `None` for the schemes read through
/// [`SignatureHeader`](crate::SignatureHeader) (Mapping.Travel, Stripe).
pub(crate) fn read_verified(
    scheme: Scheme,
    matched: SignatureMatch,
    head: Option<&SchemeHead<'_>>,
    body: &[u8],
) -> Result<Verified, VerifyError> {
    let mut verified = match scheme {
        Scheme::Mapping => read_envelope(matched, body)?,
        Scheme::Stripe => {
            let event: StripeEvent<'_> = serde_json::from_str(json_object(body)?)
                .map_err(|e| VerifyError::NotAnEnvelope(e.to_string()))?;
            if event.id.is_empty() {
                return Err(VerifyError::MissingEventId { field: "id" });
            }
            Verified::new(event.id, event.event_type, "", matched.timestamp)
        }
        Scheme::Slack => {
            let event: SlackEvent<'_> = serde_json::from_str(json_object(body)?)
                .map_err(|e| VerifyError::NotAnEnvelope(e.to_string()))?;
            let id = match event.event_id {
                Some(id) if !id.is_empty() => id,
                // Slack's handshake: answered by the handler, never deduplicated.
                None if event.event_type == "url_verification" => Cow::Borrowed(""),
                _ => return Err(VerifyError::MissingEventId { field: "event_id" }),
            };
            Verified::new(id, event.event_type, "", matched.timestamp)
        }
        Scheme::Standard | Scheme::Svix | Scheme::GitHub | Scheme::Shopify => {
            let head = head.ok_or(VerifyError::SignatureMismatch)?;
            Verified::new(head.id, head.event_type, head.delivery, matched.timestamp)
        }
    };
    verified.secret = matched.secret;
    verified.scheme = scheme;
    Ok(verified)
}
