//! Producing signatures, for tests of a receiver and for the example sender.

use std::fmt;

use crate::header::encode_hex32;
use crate::verify::{HmacSha256, keyed_mac, sign_with};
use crate::{Clock, Secret, SystemClock};

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
