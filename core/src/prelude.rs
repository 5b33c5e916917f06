//! What an app using an adapter (`mapping-webhooks-tower`, `mapping-webhooks-actix`)
//! names from this crate, in one list: each adapter re-exports it whole
//! (`pub use mapping_webhooks::prelude::*;`), so a receiver and its tests depend on the
//! adapter alone. App code may glob-import it too.
//!
//! It holds the gate and its builder, the signature [`Scheme`]s, the secrets, the
//! verified metadata, the envelope
//! and event types, tenants, observers, the dedup stores (with [`Begin`] and [`Claim`],
//! which a store of your own returns), the replies, the durable [`Sink`], the test
//! signer and the clocks, and the header names and defaults. What only an adapter's
//! author needs ([`adapter`](crate::adapter): `Intake`, `Ticket`, `RequestHead`, …,
//! and [`Admission`](crate::Admission), [`UnsignedHeaders`](crate::UnsignedHeaders))
//! is not in it.

#[cfg(feature = "metrics")]
pub use crate::MetricsObserver;
pub use crate::dedup::MemoryStoreBuilder;
#[cfg(feature = "redis")]
pub use crate::dedup::{RedisStore, RedisStoreBuilder};
pub use crate::observe::{Handled, HandlerEnd, Observer, Outcome, Refusal, StoreOperation};
pub use crate::scheme::{Scheme, UnknownScheme};
pub use crate::{
    Begin, Claim, Clock, ConfigError, DEFAULT_BODY_LIMIT, DEFAULT_PREVIOUS_EXPIRY,
    DEFAULT_READ_TIMEOUT, DEFAULT_TOLERANCE, DELIVERY_HEADER, DUPLICATE_HEADER, DUPLICATE_REASON,
    DedupStore, EVENT_HEADER, Envelope, Event, EventPayload, Expiry, FromEventData, Gate,
    GateBuilder, HeaderError, LEASE_RANGE, MAPPING_COMPLETED, MAPPING_ERROR_RESOLVED,
    MAX_HEADER_LEN, MAX_SIGNATURES, ManualClock, MappingCompleted, MappingErrorResolved,
    MatchedSecret, MemoryStore, OnStoreError, PayloadError, RETRY_AFTER_SECS, Reply,
    SIGNATURE_HEADER, Secret, Secrets, SignatureMatch, SignedDelivery, Signer, Sink, SinkDelivery,
    StoreError, Stored, SystemClock, TTL_RANGE, Verified, Verifier, VerifyError,
};
pub use crate::{LookupError, ResolveError, SecretsResolver, Tenant, TenantFrom, Tenants};
