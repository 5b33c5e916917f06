//! The headers each scheme's sender sends: for tests, the example sender, and the
//! interop vectors checked by each provider's own library.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::Mac;

use super::{Scheme, StandardKey, headers};
use crate::header::encode_hex32;
use crate::verify::{keyed_mac, sign_with};
use crate::{ConfigError, Secret};

impl Scheme {
    /// The headers (lowercase names) a sender of this scheme sends with `body`, signed
    /// with `secret` at `timestamp`, for the event `id`.
    ///
    /// `id` goes into the id header of the schemes that have one (Standard Webhooks,
    /// Svix, GitHub, Shopify); for Mapping.Travel, Stripe and Slack the id is in the body
    /// and `id` is not used. `timestamp` is not used by GitHub and Shopify. HMAC only: a
    /// `v1a` signature needs the sender's private key.
    ///
    /// ```
    /// use mapping_webhooks::scheme::Scheme;
    /// use mapping_webhooks::Secret;
    ///
    /// let secret = Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
    /// let headers = Scheme::Standard.sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#)?;
    /// assert_eq!(headers[2], ("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".to_owned()));
    /// # Ok::<(), mapping_webhooks::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::SecretNotForScheme`] for a Standard Webhooks or Svix secret that is
    /// not `whsec_` and base64.
    pub fn sign(
        self,
        secret: &Secret,
        id: &str,
        timestamp: u64,
        body: &[u8],
    ) -> Result<Vec<(&'static str, String)>, ConfigError> {
        let key = keyed_mac(secret);
        let hex = |bytes: &[u8]| {
            let mut out = String::with_capacity(64);
            encode_hex32(bytes, &mut out);
            out
        };
        let body_mac = || {
            let mut mac = key.clone();
            mac.update(body);
            mac.finalize().into_bytes()
        };
        Ok(match self {
            Self::Mapping | Self::Stripe => {
                let signature = hex(&sign_with(&key, timestamp, body).into_bytes());
                vec![(
                    self.signature_header(),
                    format!("t={timestamp},v1={signature}"),
                )]
            }
            Self::Standard | Self::Svix => {
                let names = if self == Self::Standard {
                    &headers::STANDARD
                } else {
                    &headers::SVIX
                };
                let StandardKey::Hmac(mut mac) = StandardKey::of(secret) else {
                    return Err(ConfigError::SecretNotForScheme(self));
                };
                mac.update(format!("{id}.{timestamp}.").as_bytes());
                mac.update(body);
                let signature = BASE64.encode(mac.finalize().into_bytes());
                vec![
                    (names.id, id.to_owned()),
                    (names.timestamp, timestamp.to_string()),
                    (names.signature, format!("v1,{signature}")),
                ]
            }
            Self::GitHub => vec![
                (
                    headers::GITHUB_SIGNATURE,
                    format!("sha256={}", hex(&body_mac())),
                ),
                (headers::GITHUB_DELIVERY, id.to_owned()),
            ],
            Self::Shopify => vec![
                (headers::SHOPIFY_HMAC, BASE64.encode(body_mac())),
                (headers::SHOPIFY_EVENT_ID, id.to_owned()),
            ],
            Self::Slack => {
                let mut mac = key.clone();
                mac.update(format!("v0:{timestamp}:").as_bytes());
                mac.update(body);
                vec![
                    (
                        headers::SLACK_SIGNATURE,
                        format!("v0={}", hex(&mac.finalize().into_bytes())),
                    ),
                    (headers::SLACK_TIMESTAMP, timestamp.to_string()),
                ]
            }
        })
    }
}
