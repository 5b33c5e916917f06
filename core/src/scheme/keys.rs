//! A secret as Standard Webhooks and Svix read it: `whsec_` and base64 (the HMAC key is
//! the decoded bytes), or `whpk_` and the base64 of an ed25519 public key.

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::KeyInit;
use zeroize::Zeroizing;

use crate::Secret;
use crate::verify::HmacSha256;

/// Base64 with or without its `=` padding: the providers' libraries accept a secret
/// either way (Standard Webhooks' pads it before decoding).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What a secret is to Standard Webhooks, prepared once per secret (at its first
/// request) and kept with it in the [`Secrets`](crate::Secrets) ring.
#[derive(Clone)]
pub(crate) enum StandardKey {
    /// `whsec_<base64>` (or bare base64): the HMAC keyed with the decoded bytes.
    Hmac(HmacSha256),
    /// `whpk_<base64 of 32 bytes>`: an ed25519 public key for `v1a` signatures.
    #[cfg(feature = "ed25519")]
    Ed25519(ed25519_dalek::VerifyingKey),
    /// Neither (or a `whpk_` key without the `ed25519` feature): matches nothing.
    Unusable,
}

impl StandardKey {
    pub(crate) fn of(secret: &Secret) -> Self {
        let bytes = secret.expose();
        if let Some(public) = bytes.strip_prefix(b"whpk_") {
            return Self::public_key(public);
        }
        let encoded = bytes.strip_prefix(b"whsec_").unwrap_or(bytes);
        let mut decoded = Zeroizing::new(vec![0u8; encoded.len() + 3]);
        match BASE64.decode_slice(encoded, &mut decoded[..]) {
            Ok(len) if len > 0 => Self::Hmac(
                HmacSha256::new_from_slice(&decoded[..len]).expect("HMAC takes any key length"),
            ),
            _ => Self::Unusable,
        }
    }

    #[cfg(feature = "ed25519")]
    fn public_key(encoded: &[u8]) -> Self {
        let mut decoded = [0u8; 48];
        match BASE64.decode_slice(encoded, &mut decoded) {
            Ok(32) => {
                let key: &[u8; 32] = decoded[..32].try_into().expect("32 bytes");
                ed25519_dalek::VerifyingKey::from_bytes(key).map_or(Self::Unusable, Self::Ed25519)
            }
            _ => Self::Unusable,
        }
    }

    #[cfg(not(feature = "ed25519"))]
    fn public_key(_: &[u8]) -> Self {
        Self::Unusable
    }

    /// Whether the secret can verify anything.
    pub(crate) fn is_usable(&self) -> bool {
        !matches!(self, Self::Unusable)
    }
}
