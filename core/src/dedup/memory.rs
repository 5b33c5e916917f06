//! The bounded in-memory store, on a moka cache.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::ops::compute::Op;
use moka::sync::Cache;

use super::{Begin, Claim, DEFAULT_LEASE, DEFAULT_TTL, DedupStore, StoreError};
use crate::{Clock, SystemClock};

/// The default number of events a [`MemoryStore`] remembers (in flight and done).
///
/// Measured (`benches/peers`, `store_memory`): about 60 MB resident when full of
/// 30-character event ids, and about 82 MB in the worst case, ids of 128 characters
/// (longer ones are hashed to 71; a namespace adds its length); moka costs about 550
/// bytes an entry here, against about 100 for a plain `HashSet<String>` of the same
/// ids. The sender's retries span about 36 minutes, so this covers about 46 events a
/// second sustained; past the bound the least useful entries are evicted first, never
/// the memory bound exceeded.
pub const DEFAULT_CAPACITY: u64 = 100_000;

/// A bounded, in-process [`DedupStore`]: right for a receiver that runs as one process.
///
/// Behind a load balancer with several replicas, a retry can land on another process
/// that never saw the first attempt: use a shared store such as Redis there.
///
/// Cheap to clone: clones share the same cache.
///
/// ```
/// use mapping_webhooks::{Begin, DedupStore, MemoryStore};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// let Begin::New(claim) = store.begin("evt_1").await? else { unreachable!() };
/// assert_eq!(store.begin("evt_1").await?, Begin::InFlight);
/// store.complete("evt_1", claim).await?;
/// assert_eq!(store.begin("evt_1").await?, Begin::Done);
/// # Ok::<(), mapping_webhooks::StoreError>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    cache: Cache<String, Slot, KeyHasher>,
    lease: Duration,
    ttl: Duration,
    capacity: u64,
    clock: Arc<dyn Clock>,
}

/// The cache's hasher. Under a flood of new events moka rehashes its table often (every
/// eviction leaves a tombstone), and SipHash was a third of a claim's cost there;
/// foldhash is several times faster on short keys. Its weaker resistance to chosen
/// collisions does not matter here: keys are `eventId`s from bodies whose signature was
/// already verified, so only the sender, who holds the secret, chooses them.
type KeyHasher = foldhash::fast::RandomState;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// Held by `claim` until `until` (milliseconds on the store's clock).
    InFlight { claim: Claim, until: u64 },
    /// Processed; remembered until `until`.
    Done { until: u64 },
}

impl Slot {
    fn live(&self, now: u64) -> bool {
        match *self {
            Self::InFlight { until, .. } | Self::Done { until } => until > now,
        }
    }
}

/// Lets moka drop entries at the same moments our own clock would: in-flight entries
/// after the lease, done entries after the TTL.
struct SlotExpiry {
    lease: Duration,
    ttl: Duration,
}

impl SlotExpiry {
    fn of(&self, slot: &Slot) -> Option<Duration> {
        Some(match slot {
            Slot::InFlight { .. } => self.lease,
            Slot::Done { .. } => self.ttl,
        })
    }
}

impl Expiry<String, Slot> for SlotExpiry {
    fn expire_after_create(&self, _: &String, slot: &Slot, _: Instant) -> Option<Duration> {
        self.of(slot)
    }

    fn expire_after_update(
        &self,
        _: &String,
        slot: &Slot,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        self.of(slot)
    }
}

/// Configures a [`MemoryStore`].
#[derive(Clone)]
#[must_use]
pub struct MemoryStoreBuilder {
    capacity: u64,
    lease: Duration,
    ttl: Duration,
    clock: Arc<dyn Clock>,
}

impl MemoryStoreBuilder {
    /// The most events remembered at once (default [`DEFAULT_CAPACITY`]).
    pub fn max_capacity(mut self, events: u64) -> Self {
        self.capacity = events;
        self
    }

    /// How long a claim lasts before a retry may take it over (default
    /// [`DEFAULT_LEASE`](super::DEFAULT_LEASE)).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long a processed event is remembered (default
    /// [`DEFAULT_TTL`](super::DEFAULT_TTL)).
    pub fn time_to_live(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Reads the time from `clock` (for tests of leases and TTLs without sleeping).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Builds the store.
    pub fn build(self) -> MemoryStore {
        let cache = Cache::builder()
            .max_capacity(self.capacity)
            .expire_after(SlotExpiry {
                lease: self.lease,
                ttl: self.ttl,
            })
            .build_with_hasher(KeyHasher::default());
        MemoryStore {
            cache,
            lease: self.lease,
            ttl: self.ttl,
            capacity: self.capacity,
            clock: self.clock,
        }
    }
}

impl fmt::Debug for MemoryStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStoreBuilder")
            .field("capacity", &self.capacity)
            .field("lease", &self.lease)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// A store with the default capacity, lease and TTL.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Configures a store.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            capacity: DEFAULT_CAPACITY,
            lease: DEFAULT_LEASE,
            ttl: DEFAULT_TTL,
            clock: Arc::new(SystemClock),
        }
    }

    /// How many entries the cache holds now (approximate: moka counts lazily).
    pub fn entry_count(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    fn millis(d: Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    }

    fn begin_now(&self, key: &str) -> Begin {
        let now = self.clock.now_millis();
        let claim = Claim::random();
        let held = Slot::InFlight {
            claim,
            until: now.saturating_add(Self::millis(self.lease)),
        };
        // `or_insert_with` is atomic per key, and unlike a plain `insert` a full cache
        // does not refuse the new key.
        let entry = self.cache.entry_by_ref(key).or_insert_with(|| held);
        if entry.is_fresh() {
            return Begin::New(claim);
        }
        let found = entry.into_value();
        if found.live(now) {
            return match found {
                Slot::InFlight { .. } => Begin::InFlight,
                Slot::Done { .. } => Begin::Done,
            };
        }
        // Expired on our clock but not yet dropped by moka: take it over, unless a
        // concurrent caller already did.
        let mut outcome = Begin::InFlight;
        self.cache.entry_by_ref(key).and_compute_with(|current| {
            match current.map(|e| e.into_value()) {
                Some(slot) if slot.live(now) => {
                    if let Slot::Done { .. } = slot {
                        outcome = Begin::Done;
                    }
                    Op::Nop
                }
                _ => {
                    outcome = Begin::New(claim);
                    Op::Put(held)
                }
            }
        });
        outcome
    }

    fn complete_now(&self, key: &str, claim: Claim) {
        let now = self.clock.now_millis();
        let done = Slot::Done {
            until: now.saturating_add(Self::millis(self.ttl)),
        };
        self.cache.entry_by_ref(key).and_compute_with(|current| {
            match current.map(|e| e.into_value()) {
                Some(Slot::InFlight { claim: held, .. }) if held == claim => Op::Put(done),
                // Evicted or expired while the handler ran: still remember it is done.
                None => Op::Put(done),
                Some(_) => Op::Nop,
            }
        });
    }

    fn abandon_now(&self, key: &str, claim: Claim) {
        self.cache.entry_by_ref(key).and_compute_with(|current| {
            match current.map(|e| e.into_value()) {
                Some(Slot::InFlight { claim: held, .. }) if held == claim => Op::Remove,
                _ => Op::Nop,
            }
        });
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("capacity", &self.capacity)
            .field("lease", &self.lease)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl DedupStore for MemoryStore {
    async fn begin(&self, key: &str) -> Result<Begin, StoreError> {
        Ok(self.begin_now(key))
    }

    async fn complete(&self, key: &str, claim: Claim) -> Result<(), StoreError> {
        self.complete_now(key, claim);
        Ok(())
    }

    async fn abandon(&self, key: &str, claim: Claim) -> Result<(), StoreError> {
        self.abandon_now(key, claim);
        Ok(())
    }

    /// Frees the claim at once: the in-memory store needs no runtime to do it.
    fn abandon_detached(self: Arc<Self>, key: String, claim: Claim) {
        self.abandon_now(&key, claim);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;

    fn store(clock: &ManualClock) -> MemoryStore {
        MemoryStore::builder()
            .lease(Duration::from_secs(60))
            .time_to_live(Duration::from_secs(3600))
            .clock(clock.clone())
            .build()
    }

    fn claim_of(b: Begin) -> Claim {
        match b {
            Begin::New(c) => c,
            other => panic!("expected New, got {other:?}"),
        }
    }

    #[test]
    fn begin_complete_then_done() {
        let s = store(&ManualClock::at_secs(1000));
        let c = claim_of(s.begin_now("e"));
        assert_eq!(s.begin_now("e"), Begin::InFlight);
        s.complete_now("e", c);
        assert_eq!(s.begin_now("e"), Begin::Done);
        assert!(matches!(s.begin_now("other"), Begin::New(_)));
    }

    #[test]
    fn abandon_frees_the_key_for_a_retry() {
        let s = store(&ManualClock::at_secs(1000));
        let c = claim_of(s.begin_now("e"));
        s.abandon_now("e", c);
        let retry = claim_of(s.begin_now("e"));
        assert_ne!(retry, c);
    }

    #[test]
    fn a_stale_claim_cannot_undo_a_newer_one() {
        let clock = ManualClock::at_secs(1000);
        let s = store(&clock);
        let old = claim_of(s.begin_now("e"));
        clock.advance(Duration::from_secs(61));
        let new = claim_of(s.begin_now("e"));
        // The first claimant wakes up late and gives up: the new claim must survive.
        s.abandon_now("e", old);
        assert_eq!(s.begin_now("e"), Begin::InFlight);
        s.complete_now("e", new);
        assert_eq!(s.begin_now("e"), Begin::Done);
        // A late abandon after completion does not forget the event either.
        s.abandon_now("e", new);
        assert_eq!(s.begin_now("e"), Begin::Done);
    }

    #[test]
    fn lease_expiry_lets_a_retry_through() {
        let clock = ManualClock::at_secs(1000);
        let s = store(&clock);
        claim_of(s.begin_now("e"));
        clock.advance(Duration::from_secs(59));
        assert_eq!(s.begin_now("e"), Begin::InFlight);
        clock.advance(Duration::from_secs(1));
        assert!(matches!(s.begin_now("e"), Begin::New(_)));
    }

    #[test]
    fn ttl_expiry_forgets_done_events() {
        let clock = ManualClock::at_secs(1000);
        let s = store(&clock);
        let c = claim_of(s.begin_now("e"));
        s.complete_now("e", c);
        clock.advance(Duration::from_secs(3599));
        assert_eq!(s.begin_now("e"), Begin::Done);
        clock.advance(Duration::from_secs(1));
        assert!(matches!(s.begin_now("e"), Begin::New(_)));
    }

    #[test]
    fn moka_itself_drops_expired_entries() {
        let s = MemoryStore::builder()
            .lease(Duration::from_millis(20))
            .build();
        claim_of(s.begin_now("e"));
        assert_eq!(s.entry_count(), 1);
        // moka's timer wheel ticks about once a second: poll, bounded, for the drop.
        let deadline = Instant::now() + Duration::from_secs(5);
        while s.entry_count() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(s.entry_count(), 0, "expired claim still held");
        assert!(matches!(s.begin_now("e"), Begin::New(_)));
    }

    #[test]
    fn concurrent_begins_yield_exactly_one_new() {
        let s = MemoryStore::new();
        let barrier = Arc::new(std::sync::Barrier::new(16));
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let (s, barrier) = (s.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    (0..200)
                        .filter(|i| matches!(s.begin_now(&format!("k{i}")), Begin::New(_)))
                        .count()
                })
            })
            .collect();
        let news: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(news, 200, "each of 200 keys must be claimed exactly once");
    }

    #[test]
    fn capacity_is_a_bound_and_a_full_store_still_deduplicates() {
        let s = MemoryStore::builder().max_capacity(100).build();
        for i in 0..1000 {
            let c = claim_of(s.begin_now(&format!("old{i}")));
            s.complete_now(&format!("old{i}"), c);
        }
        assert!(s.entry_count() <= 100, "{} entries", s.entry_count());
        // Full: every brand-new key is still claimed once and then deduplicated.
        for i in 0..100 {
            let key = format!("new{i}");
            let c = claim_of(s.begin_now(&key));
            assert_eq!(s.begin_now(&key), Begin::InFlight, "{key} was not kept");
            s.complete_now(&key, c);
            assert_eq!(s.begin_now(&key), Begin::Done, "{key} was not kept");
        }
        assert!(s.entry_count() <= 100, "{} entries", s.entry_count());
    }
}
