//! Deduplication on `eventId`: the store trait, its protocol, and the in-memory store.
//!
//! The sender retries every delivery that did not get a 2xx, and may deliver the same
//! event twice even when it did, so a receiver must run its handler at most once per
//! `eventId` *and* must not remember an event it failed to process. The protocol:
//!
//! 1. [`begin`](DedupStore::begin) after the signature is verified (a forged request
//!    never touches the store). It answers atomically:
//!    [`Begin::New`] (this request owns the event: run the handler),
//!    [`Begin::InFlight`] (another copy is running: answer 409 so the sender retries),
//!    or [`Begin::Done`] (already processed: answer 200 without running the handler).
//! 2. [`complete`](DedupStore::complete) once the handler answered 2xx: the event is
//!    remembered as done for the TTL.
//! 3. [`abandon`](DedupStore::abandon) when it did not (an error, a non-2xx answer, a
//!    panic, a dropped future): the claim is freed so the sender's retry is processed.
//!
//! A claim that is never completed nor abandoned (the process crashed) expires after
//! the lease, so retries are not blocked for ever. [`Gate`](crate::Gate) drives this
//! protocol for the adapters; a store only implements the three steps.
//!
//! Keep handlers well under the lease: once it has run out, a retry may take the event
//! over and run it a second time. A `complete` that comes too late is logged at `warn` by
//! every store here; a claim taken over stays with its new owner, but when nobody holds
//! the event any more (the copy that took it over failed, or its lease ran out too) the
//! late success is recorded as done: the work was done, and running it again would not
//! undo it. A conformance test (`core/tests/store_conformance.rs`) runs these cases
//! against every store.

mod memory;
#[cfg(feature = "redis")]
mod redis;

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::ConfigError;

#[cfg(feature = "redis")]
pub use self::redis::{DEFAULT_PREFIX, DEFAULT_TIMEOUT, RedisStore, RedisStoreBuilder};
pub use memory::{DEFAULT_CAPACITY, MemoryStore, MemoryStoreBuilder};

/// How long a claim lasts by default before a retry may take it over: far longer than a
/// handler may run (the sender gives up after 30 s), and short enough that a claimant
/// that crashed still lets the sender's third and fourth attempts (about 6 and 36
/// minutes after the first) through.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(5 * 60);

/// How long a processed event is remembered by default: the sender's retries span
/// about 36 minutes, and a day also covers a manual re-send from the dashboard.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The leases a store accepts: at least a second (a zero lease would let concurrent
/// copies each claim the event), at most a day (a claimant that crashed blocks its
/// event's retries for the whole lease).
pub const LEASE_RANGE: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(24 * 60 * 60);

/// The times to live a store accepts: at least a second, at most a year (Redis keeps
/// expiries in milliseconds that must fit its integers).
pub const TTL_RANGE: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(366 * 24 * 60 * 60);

/// Checks a store's lease and TTL against [`LEASE_RANGE`] and [`TTL_RANGE`].
pub(crate) fn check_lease_and_ttl(lease: Duration, ttl: Duration) -> Result<(), ConfigError> {
    if !LEASE_RANGE.contains(&lease) {
        return Err(ConfigError::Lease(lease));
    }
    if !TTL_RANGE.contains(&ttl) {
        return Err(ConfigError::TimeToLive(ttl));
    }
    Ok(())
}

/// Warns that a handler finished after its lease ran out (a retry may have run it a
/// second time): every store says so in the same words.
fn late_complete(key: &str, what: &str) {
    tracing::warn!(
        key,
        "a webhook handler finished after its dedup lease ran out and {what}; keep handlers well under the lease"
    );
}

/// A store that remembers which events are being processed or are done.
///
/// Implementations must make [`begin`](Self::begin) atomic: of many concurrent calls
/// for one key, exactly one gets [`Begin::New`]. [`abandon`](Self::abandon) acts only
/// while `claim` still owns the key, and [`complete`](Self::complete) only while it does
/// or nobody does, so a late call can never undo someone else's claim. See the
/// [module docs](self) for the protocol.
pub trait DedupStore: Send + Sync + 'static {
    /// Claims `key` if nobody holds it and it is not done.
    fn begin(&self, key: &str) -> impl Future<Output = Result<Begin, StoreError>> + Send;

    /// Marks `key` as done, if `claim` still holds it or nothing holds it any more (its
    /// lease ran out and no other claim is live: a late success is still a success).
    /// Leaves another live claim, or a done record, alone.
    fn complete(
        &self,
        key: &str,
        claim: Claim,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Frees `key`, if `claim` still holds it, so a retry is processed.
    fn abandon(
        &self,
        key: &str,
        claim: Claim,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Abandons from a place that cannot wait, such as a `Drop`: the handler's future
    /// was dropped or panicked. The default spawns [`abandon`](Self::abandon) on the
    /// current tokio runtime; without one the claim simply expires after its lease.
    fn abandon_detached(self: Arc<Self>, key: String, claim: Claim)
    where
        Self: Sized,
    {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = self.abandon(&key, claim).await {
                    tracing::warn!(%error, key, "could not free a dedup claim; it expires after its lease");
                }
            });
        } else {
            tracing::warn!(
                key,
                "no runtime to free a dedup claim; it expires after its lease"
            );
        }
    }
}

/// What [`DedupStore::begin`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    /// Nobody had the key: this caller now holds it with this claim.
    New(Claim),
    /// Another caller holds the key and its lease has not run out.
    InFlight,
    /// The key was processed successfully within the TTL.
    Done,
}

/// This process's id, read once: `getpid` is a system call, and claims are made on
/// every request.
fn process_id() -> u32 {
    static ID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *ID.get_or_init(std::process::id)
}

/// Proof of holding a key: a random 128-bit token, unique across processes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Claim(u128);

impl Claim {
    /// A fresh, unpredictable claim.
    pub fn random() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        // `RandomState` is seeded from the OS; hashing a counter through two of them
        // gives unique, unguessable tokens without another dependency.
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let half = || {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(n);
            h.write_u32(process_id());
            h.finish()
        };
        Self((u128::from(half()) << 64) | u128::from(half()))
    }

    /// The token as a number.
    pub fn as_u128(self) -> u128 {
        self.0
    }

    /// Rebuilds a claim from [`as_u128`](Self::as_u128).
    pub fn from_u128(token: u128) -> Self {
        Self(token)
    }
}

impl fmt::Debug for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Claim({:032x})", self.0)
    }
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// A dedup store could not answer. By default the adapters then answer 503 so the sender
/// retries later and nothing is lost.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// The store did not answer within its timeout.
    Timeout(Duration),
    /// The store answered with an error, or could not be reached.
    Backend(Box<dyn Error + Send + Sync>),
    /// The store was configured with a value it cannot work with (from a builder).
    Config(ConfigError),
}

impl From<ConfigError> for StoreError {
    fn from(error: ConfigError) -> Self {
        Self::Config(error)
    }
}

impl StoreError {
    /// Wraps a backend's error. Make sure its message carries no credentials.
    pub fn backend(error: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self::Backend(error.into())
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(after) => write!(f, "dedup store did not answer within {after:?}"),
            Self::Backend(e) => write!(f, "dedup store failed: {e}"),
            Self::Config(e) => write!(f, "dedup store misconfigured: {e}"),
        }
    }
}

impl Error for StoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Timeout(_) => None,
            Self::Backend(e) => Some(&**e),
            Self::Config(e) => Some(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(Claim::random()));
        }
    }

    #[test]
    fn claim_round_trips_through_u128_and_hex() {
        let c = Claim::random();
        assert_eq!(Claim::from_u128(c.as_u128()), c);
        assert_eq!(c.to_string().len(), 32);
    }
}
