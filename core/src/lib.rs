//! Receive [Mapping.Travel](https://mapping.travel) webhooks safely: verify their
//! signatures, refuse replays, deduplicate retries and parse the envelope.
//!
//! This is the framework-free core. It knows bytes and strings, never HTTP types;
//! `mapping-webhooks-tower` (axum, hyper) and `mapping-webhooks-actix` wrap it as
//! middleware.
//!
//! # What a request must pass
//!
//! Each delivery carries `X-Webhook-Signature: t=<unix secs>,v1=<hex>`, where `v1` is
//! HMAC-SHA256 of `"{t}.{raw body}"` keyed with the endpoint's signing secret. A request
//! is accepted when:
//!
//! 1. there is exactly one such header, of at most [`MAX_HEADER_LEN`] bytes and
//!    [`MAX_SIGNATURES`] `v1` values;
//! 2. `t` is within the tolerance of the receiver's clock, either way (default
//!    [five minutes](DEFAULT_TOLERANCE));
//! 3. some `v1` equals the HMAC under the current secret or a previous one (compared in
//!    constant time, over the raw bytes, before any JSON parsing);
//! 4. the signed body is a JSON object with a string `eventId` and `type`.
//!
//! The secret is the **whole string** the dashboard showed, `whsec_` prefix included,
//! used as raw bytes.
//!
//! # Deduplication
//!
//! The sender retries any non-2xx answer and may deliver an event more than once;
//! `eventId` is stable across attempts. [`Gate`] claims each event in a [`DedupStore`]
//! before the handler runs and marks it done only when the handler answered 2xx; see the
//! [`dedup`] module for the protocol.
//!
//! # Rotating the secret while the server runs
//!
//! [`Verifier`] and [`Gate`] read a [`Secrets`] handle on every request, without a lock.
//! Keep a clone and change it at any time: the next request uses the new secrets, and the
//! dedup store is untouched.
//!
//! ```
//! use mapping_webhooks::{Gate, Secret, Secrets};
//!
//! let secrets = Secrets::new(Secret::new("whsec_old_0123456789abcdef0123456789")?);
//! let gate = Gate::from_secrets(secrets.clone());
//! // The old secret stays accepted as a previous one for ten minutes, then expires.
//! secrets.rotate(Secret::new("whsec_new_fedcba9876543210fedcba9876")?);
//! assert_eq!(gate.secrets().masked(), ["whsec_••••9876", "whsec_••••6789"]);
//! # Ok::<(), mapping_webhooks::ConfigError>(())
//! ```
//!
//! # Other senders' signatures
//!
//! The same gate (and so both adapters) receives Standard Webhooks (HMAC `v1`, and
//! ed25519 `v1a` with the `ed25519` feature), Svix, Stripe, GitHub, Shopify and Slack
//! webhooks: `Gate::builder().scheme(Scheme::Stripe)`. Each is deduplicated on its own
//! event id, with the same secrets handle, tenants and dedup store. See the [`scheme`]
//! module for each scheme's headers and what it cannot protect against.
//!
//! # Many tenants on one endpoint
//!
//! [`Gate::for_tenants`] takes each request's tenant key (a path segment, the host, or an
//! adapter's own function), asks the app's [`SecretsResolver`] for that tenant's
//! [`Tenant`] (its canonical id and [`Secrets`]) through bounded, expiring caches
//! ([`Tenants`]), before the body is read: an unknown tenant is answered 404, a failed,
//! slow or excess lookup 503. Dedup keys are per tenant id.
//! See [`Tenants`] for an example.
//!
//! # Example
//!
//! ```
//! use mapping_webhooks::{Secret, Signer, Verifier, VerifyError};
//!
//! let secret = Secret::new("whsec_e1c5d3a0b2f4c6d8e0f2a4b6c8d0e2f4a6b83a0e")?;
//! let verifier = Verifier::new(secret.clone());
//! let body = br#"{"id":"del_1","eventId":"evt_1","type":"mapping.completed","data":{}}"#;
//!
//! let header = Signer::new(secret).sign_now(body);
//! assert_eq!(verifier.verify(&header, body)?.event_id, "evt_1");
//!
//! // One changed byte and the signature no longer matches.
//! let tampered = br#"{"id":"del_1","eventId":"evt_2","type":"mapping.completed","data":{}}"#;
//! assert_eq!(verifier.verify(&header, tampered), Err(VerifyError::SignatureMismatch));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod adapter;
mod clock;
pub mod dedup;
mod envelope;
mod error;
mod gate;
mod header;
#[cfg(feature = "metrics")]
mod metrics_observer;
pub mod observe;
pub mod prelude;
pub mod scheme;
mod secret;
mod secrets;
#[cfg(feature = "secrets-file")]
pub mod secrets_file;
mod sign;
mod tenants;
mod verify;

pub use clock::{Clock, ManualClock, SystemClock};
pub use dedup::{Begin, Claim, DedupStore, LEASE_RANGE, MemoryStore, StoreError, TTL_RANGE};
#[cfg(feature = "redis")]
pub use dedup::{RedisStore, RedisStoreBuilder};
pub use envelope::{
    Envelope, Event, EventPayload, FromEventData, MAPPING_COMPLETED, MAPPING_ERROR_RESOLVED,
    MappingCompleted, MappingErrorResolved, PayloadError,
};
pub use error::{ConfigError, VerifyError};
pub use gate::{
    Admission, DEFAULT_BODY_LIMIT, DEFAULT_READ_TIMEOUT, Gate, GateBuilder, OnStoreError,
    RETRY_AFTER_SECS, Reply, Sink, SinkDelivery, Stored, UnsignedHeaders,
};

pub use header::{HeaderError, MAX_HEADER_LEN, MAX_SIGNATURES, SignatureHeader};
#[cfg(feature = "metrics")]
pub use metrics_observer::MetricsObserver;
pub use observe::{Handled, HandlerEnd, Observer, Outcome, Refusal, StoreOperation};
pub use secret::Secret;
pub use secrets::{DEFAULT_PREVIOUS_EXPIRY, Expiry, Secrets};
pub use sign::{SignedDelivery, Signer};
pub use tenants::{
    DEFAULT_LOOKUP_TIMEOUT, DEFAULT_MAX_LOOKUPS, DEFAULT_TENANT_CAPACITY, DEFAULT_TENANT_TTL,
    DEFAULT_UNKNOWN_TENANT_TTL, LookupError, MAX_TENANT_KEY_LEN, ResolveError, SecretsResolver,
    Tenant, TenantFrom, Tenants,
};
pub use verify::{DEFAULT_TOLERANCE, MatchedSecret, SignatureMatch, Verified, Verifier};

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-webhook-signature";
/// The header naming the event type (not signed: a hint only).
pub const EVENT_HEADER: &str = "x-webhook-event";
/// The header naming the delivery attempt (not signed: a hint only).
pub const DELIVERY_HEADER: &str = "x-webhook-delivery";
/// The **response** header on every answer to a copy of an event already received:
/// `X-Webhook-Duplicate: true`, with status 200 and the body [`DUPLICATE_REASON`].
///
/// Every receiver built on these crates answers a duplicate the same way, whether its
/// handler runs inline (the event was processed) or in the durable inbox (the event was
/// stored and is processed by its worker), so a client, a proxy or a test can tell a
/// duplicate from a first delivery without parsing the body.
pub const DUPLICATE_HEADER: &str = "x-webhook-duplicate";
/// The body (and [`Reply::reason`]) of the answer to a duplicate: see [`DUPLICATE_HEADER`].
pub const DUPLICATE_REASON: &str = "event already received";
