//! A scheme's signed headers as a durable sink (the inbox) stores them, and their
//! signature checked again later, from the stored text and body.
//!
//! The text: for the schemes whose head is one signature header (Mapping.Travel,
//! Stripe), that header's value, as received (so rows stored before other schemes were
//! stored read as they always did); for the others, one `name: value` line per header
//! the scheme reads (lowercase names, `\n` between lines), absent ones left out.

use std::time::Duration;

use super::{Scheme, SchemeHead};
use crate::adapter::RequestHead;
use crate::{Secrets, SignatureMatch, Verified, Verifier, VerifyError};

impl SchemeHead<'_> {
    /// The headers this head was read from, as a durable sink stores them (see
    /// [`Scheme::verify_stored`]): `name: value` lines, the signature's value included.
    pub fn signed_headers(&self) -> String {
        let signature = String::from_utf8_lossy(self.signature);
        let timestamp = String::from_utf8_lossy(self.timestamp_text);
        let mut lines: Vec<(&str, &str)> = Vec::with_capacity(4);
        match self.scheme {
            Scheme::Mapping | Scheme::Stripe => return signature.into_owned(),
            Scheme::Standard | Scheme::Svix => {
                let names = if self.scheme == Scheme::Standard {
                    &super::headers::STANDARD
                } else {
                    &super::headers::SVIX
                };
                lines.push((names.id, self.id));
                lines.push((names.timestamp, &timestamp));
                lines.push((names.signature, &signature));
            }
            Scheme::GitHub => {
                lines.push((super::headers::GITHUB_SIGNATURE, &signature));
                lines.push((super::headers::GITHUB_DELIVERY, self.id));
                lines.push((super::headers::GITHUB_EVENT, self.event_type));
            }
            Scheme::Shopify => {
                lines.push((super::headers::SHOPIFY_HMAC, &signature));
                lines.push((super::headers::SHOPIFY_EVENT_ID, self.id));
                lines.push((super::headers::SHOPIFY_TOPIC, self.event_type));
                lines.push((super::headers::SHOPIFY_WEBHOOK_ID, self.delivery));
            }
            Scheme::Slack => {
                lines.push((super::headers::SLACK_SIGNATURE, &signature));
                lines.push((super::headers::SLACK_TIMESTAMP, &timestamp));
            }
        }
        let mut text = String::new();
        for (name, value) in lines.into_iter().filter(|(_, v)| !v.is_empty()) {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(name);
            text.push_str(": ");
            text.push_str(value);
        }
        text
    }
}

/// Stored header text read back as a request head.
struct StoredHead<'a> {
    scheme: Scheme,
    text: &'a str,
}

impl RequestHead for StoredHead<'_> {
    fn header_values<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> {
        let whole = self.scheme.is_signature_header_only();
        let single = (whole && name == self.scheme.signature_header()).then_some(self.text);
        let lines = (!whole)
            .then(|| self.text.split('\n'))
            .into_iter()
            .flatten()
            .filter_map(move |line| {
                let (n, value) = line.split_once(": ")?;
                n.eq_ignore_ascii_case(name).then_some(value)
            });
        single.into_iter().chain(lines).map(str::as_bytes)
    }

    fn path(&self) -> &str {
        ""
    }

    fn host(&self) -> Option<&str> {
        None
    }
}

impl Scheme {
    /// Checks a stored delivery's signature again: `signed_headers` as a durable sink
    /// was given them ([`SinkDelivery::signed_headers`](crate::SinkDelivery)), `body`
    /// the stored bytes, `secrets` as they are now. The signature only, whatever the
    /// delivery's age: no timestamp window (the stored bytes are proven to be what the
    /// sender signed, however old); a secret rotated out and removed, or expired, no
    /// longer verifies what it signed. Returns what was verified (scheme, dedup id,
    /// type, timestamp, matched secret), as the gate read it at the time.
    ///
    /// ```
    /// use mapping_webhooks::scheme::Scheme;
    /// use mapping_webhooks::{Secret, Secrets, Signer};
    ///
    /// let secrets = Secrets::new(Secret::new("whsec_test")?);
    /// let body = br#"{"eventId":"evt_1","id":"del_1","type":"mapping.completed","createdAt":"2026-01-01T00:00:00Z","data":{}}"#;
    /// let header = Signer::new(Secret::new("whsec_test")?).sign(body, 1);
    /// let verified = Scheme::Mapping.verify_stored(&secrets, &header, body)?;
    /// assert_eq!(verified.event_id, "evt_1");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The [`VerifyError`] the gate would have answered: a malformed stored head, a
    /// signature that no live secret made, a body that names no event.
    pub fn verify_stored(
        self,
        secrets: &Secrets,
        signed_headers: &str,
        body: &[u8],
    ) -> Result<Verified, VerifyError> {
        if self == Self::Mapping {
            // The handle's own clock still rules its secrets' expiry.
            return Verifier::from_secrets(secrets.clone())
                .tolerance(Duration::MAX)
                .verify(signed_headers, body);
        }
        let stored = StoredHead {
            scheme: self,
            text: signed_headers,
        };
        let head = self.parse_head(&stored)?;
        let secret = self.match_signature(secrets, &head, body)?;
        let matched = SignatureMatch {
            timestamp: head.timestamp().unwrap_or(0),
            secret,
        };
        super::read_verified(self, matched, Some(&head), body)
    }
}
