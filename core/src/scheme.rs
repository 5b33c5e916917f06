//! Other senders' signature schemes: one [`Gate`](crate::Gate), and through it both
//! adapters and the inbox's endpoint, receives any of them.
//!
//! A scheme says, from a request's head (and, for some, its body): which headers carry
//! the signature, the timestamp and the event id; which bytes are signed; how the
//! signature is written; and where the dedup id is. Everything else the pipeline does
//! (the body limit and read timeout, the secrets handle and its rotation, tenants, the
//! dedup claim, observers, replies) is the same for every scheme.
//!
//! | scheme | headers | signed bytes, encoding | window | dedup id |
//! |---|---|---|---|---|
//! | [`Mapping`](Scheme::Mapping) (default) | `X-Webhook-Signature: t=,v1=` | `{t}.{body}`, hex | ±tolerance | body `eventId` |
//! | [`Standard`](Scheme::Standard) | `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<b64> [v1a,<b64>]` | `{id}.{ts}.{body}`, base64 | ±tolerance | `webhook-id` |
//! | [`Svix`](Scheme::Svix) | the same with `svix-` names | the same | ±tolerance | `svix-id` |
//! | [`Stripe`](Scheme::Stripe) | `Stripe-Signature: t=,v1=[,v1=][,v0=]` | `{t}.{body}`, hex; every `v1` tried, `v0` ignored | ±tolerance | body `id` |
//! | [`GitHub`](Scheme::GitHub) | `X-Hub-Signature-256: sha256=<hex>`, `X-GitHub-Delivery`, `X-GitHub-Event` | `{body}`, hex | none | `X-GitHub-Delivery` (unsigned) |
//! | [`Shopify`](Scheme::Shopify) | `X-Shopify-Hmac-Sha256: <b64>`, `X-Shopify-Event-Id`, `X-Shopify-Topic` | `{body}`, base64 | none | `X-Shopify-Event-Id` (unsigned) |
//! | [`Slack`](Scheme::Slack) | `X-Slack-Signature: v0=<hex>`, `X-Slack-Request-Timestamp` | `v0:{ts}:{body}`, hex | ±tolerance | body `event_id` |
//!
//! # Choosing a scheme
//!
//! A scheme is a setting of the [`Gate`](crate::Gate), as the body limit is:
//! `Gate::builder().scheme(Scheme::Standard).secret(..)`, and the gate goes to the tower
//! layer or the actix middleware as any gate does, or to the inbox's endpoint, which
//! stores the scheme's signed headers with the body and checks them again later
//! ([`Scheme::verify_stored`]). A scheme
//! is one value of a closed enum, not a trait object: the pipeline branches on it once
//! per request, and the default scheme's path is the one it always was (same parser,
//! same pre-keyed HMAC).
//! One route receives one scheme; a receiver of several senders mounts one gate per
//! route (`/hooks/stripe`, `/hooks/github`, …), each with its own secrets.
//!
//! Why a builder option rather than `WebhookVerify::stripe(secret)`-style constructors:
//! every adapter (`WebhookVerify::from_gate`, the actix middleware's `from_gate`) and
//! the inbox's endpoint are built from a [`Gate`](crate::Gate), as tower-http's layers
//! are built from one config value; one `.scheme(..)` there reaches all three, and
//! every other option (secrets handle, tenants, store, limits) composes with it
//! unchanged, where per-scheme constructors would be written three times over and
//! still need the builder for the rest.
//!
//! ```
//! use mapping_webhooks::scheme::Scheme;
//! use mapping_webhooks::{Gate, Secret, Secrets};
//!
//! // Rotation works as for Mapping.Travel: keep the handle, rotate at any time.
//! let secrets = Secrets::new(Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?);
//! let gate = Gate::builder().scheme(Scheme::Standard).secrets(secrets.clone()).build()?;
//! // `WebhookVerify::from_gate(gate)` (tower) or the actix middleware's `from_gate`.
//! secrets.rotate(Secret::new("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")?);
//! assert_eq!(gate.secrets().masked().len(), 2);
//! # Ok::<(), mapping_webhooks::ConfigError>(())
//! ```
//!
//! # Secrets
//!
//! Every scheme reads the same [`Secrets`](crate::Secrets) handle (rotation, several
//! secrets valid at once, expiry) and the same [`Tenants`](crate::Tenants). A secret is
//! given as the provider shows it:
//!
//! - Standard Webhooks and Svix: `whsec_` followed by base64, which is decoded (as their
//!   libraries do); or, with the `ed25519` feature, a `whpk_` public key (base64 of 32
//!   bytes), which checks `v1a` signatures, so the receiver holds no signing secret at
//!   all. A handle may hold both kinds at once. The decoded key is prepared once per
//!   secret, at its first request, and kept with it.
//! - Stripe (`whsec_…`), GitHub, Shopify (the app's client secret) and Slack (the
//!   signing secret): the whole string, as raw bytes, like Mapping.Travel's.
//!
//! # Unsigned id headers (GitHub, Shopify)
//!
//! GitHub and Shopify sign the body only. Their event id (`X-GitHub-Delivery`,
//! `X-Shopify-Event-Id`) and event type are headers outside the signature, and there is
//! no signed timestamp. So anyone who captured one signed delivery can send its body
//! again with a new id header, at any time, and it is processed again: dedup only stops
//! the sender's own retries and a replay of the whole request unchanged. Neither
//! provider offers a defence but rotating the secret. The default is still to dedup on
//! those headers (it is what both providers document for idempotency), and it means:
//! keep the dedup store's TTL at least as long as the provider retries (Shopify: hours;
//! GitHub redelivers by hand, days later), and make the handler idempotent on the
//! body's own ids (an order id) when a replay would do harm.
//!
//! Shopify's id: `X-Shopify-Event-Id`, not `X-Shopify-Webhook-Id`. Shopify's page on
//! duplicates names the event id as the one that is the same across the deliveries of
//! one event; the webhook id names one delivery, so a retry would be taken for a new
//! event. Both are unsigned.
//!
//! # What reaches the handler
//!
//! [`Verified`](crate::Verified) says which [`scheme`](crate::Verified::scheme) checked
//! the request, its dedup id ([`event_id`](crate::Verified::event_id)), its signed
//! timestamp ([`signed_at`](crate::Verified::signed_at): `None` for GitHub and Shopify),
//! and which secret or key matched. Dedup keys name the scheme (Mapping.Travel's keys
//! are as they always were), so two schemes' ids never share a key in one store.

mod headers;
mod keys;
mod matching;
mod sign;
mod stored;

use std::fmt;
use std::str::FromStr;

pub use headers::{MAX_ID_LEN, SchemeHead};
pub(crate) use keys::StandardKey;
pub(crate) use matching::read_verified;

/// Which sender's signature scheme a [`Gate`](crate::Gate) verifies: see the
/// [module docs](crate::scheme) for each scheme's headers, signed bytes and dedup id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// Mapping.Travel: `X-Webhook-Signature: t=<secs>,v1=<hex>`, dedup on the body's
    /// `eventId` (the default).
    #[default]
    Mapping,
    /// [Standard Webhooks](https://www.standardwebhooks.com): `webhook-id`,
    /// `webhook-timestamp`, `webhook-signature` (`v1` HMAC-SHA256 with a `whsec_`
    /// secret; `v1a` ed25519 with a `whpk_` public key, with the `ed25519` feature),
    /// dedup on `webhook-id`.
    Standard,
    /// Svix: Standard Webhooks with `svix-id`, `svix-timestamp` and `svix-signature`.
    Svix,
    /// Stripe: `Stripe-Signature: t=,v1=` (every `v1` tried, `v0` ignored), dedup on
    /// the body's `id` (`evt_…`).
    Stripe,
    /// GitHub: `X-Hub-Signature-256: sha256=<hex>` over the body, dedup on the unsigned
    /// `X-GitHub-Delivery`; no timestamp, so no window.
    GitHub,
    /// Shopify: `X-Shopify-Hmac-Sha256: <base64>` over the body, dedup on the unsigned
    /// `X-Shopify-Event-Id`; no timestamp, so no window.
    Shopify,
    /// Slack's Events API: `X-Slack-Signature: v0=<hex>` over `v0:{ts}:{body}` with
    /// `X-Slack-Request-Timestamp`, dedup on the body's `event_id` (a
    /// `url_verification` request, which has none, is not deduplicated).
    Slack,
}

impl Scheme {
    /// Every scheme, the default first.
    pub const ALL: [Self; 7] = [
        Self::Mapping,
        Self::Standard,
        Self::Svix,
        Self::Stripe,
        Self::GitHub,
        Self::Shopify,
        Self::Slack,
    ];

    /// The scheme's short name (`mapping`, `standard`, `svix`, `stripe`, `github`,
    /// `shopify`, `slack`): in dedup keys, logs and `--scheme` options.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mapping => "mapping",
            Self::Standard => "standard",
            Self::Svix => "svix",
            Self::Stripe => "stripe",
            Self::GitHub => "github",
            Self::Shopify => "shopify",
            Self::Slack => "slack",
        }
    }

    /// The header carrying the signature (lowercase).
    pub fn signature_header(self) -> &'static str {
        match self {
            Self::Mapping => crate::SIGNATURE_HEADER,
            Self::Standard => headers::STANDARD.signature,
            Self::Svix => headers::SVIX.signature,
            Self::Stripe => headers::STRIPE_SIGNATURE,
            Self::GitHub => headers::GITHUB_SIGNATURE,
            Self::Shopify => headers::SHOPIFY_HMAC,
            Self::Slack => headers::SLACK_SIGNATURE,
        }
    }

    /// Whether the scheme signs a timestamp, so a request outside the tolerance is
    /// refused (401). GitHub and Shopify sign none: dedup is their only replay guard.
    pub fn has_timestamp(self) -> bool {
        !matches!(self, Self::GitHub | Self::Shopify)
    }

    /// Whether the whole head is one signature header that parses as a
    /// [`SignatureHeader`](crate::SignatureHeader) (Mapping.Travel, Stripe).
    pub(crate) fn is_signature_header_only(self) -> bool {
        matches!(self, Self::Mapping | Self::Stripe)
    }

    /// Whether the scheme's secrets are base64 keys (`whsec_…`) or `whpk_` public keys.
    pub(crate) fn uses_standard_keys(self) -> bool {
        matches!(self, Self::Standard | Self::Svix)
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is no scheme's: see [`Scheme::name`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownScheme(pub String);

impl fmt::Display for UnknownScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown webhook scheme {:?}: expected one of mapping, standard, svix, stripe, github, shopify, slack",
            self.0
        )
    }
}

impl std::error::Error for UnknownScheme {}

impl FromStr for Scheme {
    type Err = UnknownScheme;

    /// Parses a [`name`](Scheme::name), in any case.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| UnknownScheme(name.to_owned()))
    }
}

#[cfg(test)]
mod tests;
