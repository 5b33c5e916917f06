//! The bounded in-memory store, on a moka cache.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::ops::compute::Op;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;

use super::{Begin, Claim, DEFAULT_LEASE, DEFAULT_TTL, DedupStore, StoreError, late_complete};
use crate::{Clock, ConfigError};

/// The default number of events a [`MemoryStore`] remembers (in flight and done).
///
/// Measured (`benches/peers`, `store_memory`): about 60 MB resident when full of
/// 30-character event ids, and about 82 MB in the worst case, ids of 128 characters
/// (longer ones are hashed to 71; a namespace adds its length); moka costs about 550
/// bytes an entry here, against about 100 for a plain `HashSet<String>` of the same
/// ids.
///
/// Size the capacity to the events you receive per [TTL](MemoryStoreBuilder::time_to_live):
/// 100,000 covers about 1.2 events a second for the default day. Past the bound the store
/// evicts the entries used least recently (the oldest events) first, never exceeds it, and
/// never drops a new claim or a fresh "done" record to make room.
pub const DEFAULT_CAPACITY: u64 = 100_000;

/// A bounded, in-process [`DedupStore`]: right for a receiver that runs as one process.
///
/// Behind a load balancer with several replicas, a retry can land on another process
/// that never saw the first attempt: use a shared store such as Redis there.
///
/// # When it is full
///
/// The store holds at most its [capacity](MemoryStoreBuilder::max_capacity) of events,
/// in flight and done. When full it forgets the event used least recently (moka's LRU
/// policy), so the newest events are always kept: an event claimed or completed within
/// the last `capacity / 2` events is never processed again while its lease or TTL lasts.
/// An event forgotten early is processed again if the sender retries it, so size the
/// capacity to the events received per TTL (see [`DEFAULT_CAPACITY`]).
///
/// # Time
///
/// Leases and TTLs follow a monotonic clock, so a step of the wall clock (NTP, a VM
/// resumed) neither frees a claim early nor keeps one for ever. Only the signature
/// window reads the wall clock.
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
    /// The most events remembered at once (default [`DEFAULT_CAPACITY`]); at least one.
    pub fn max_capacity(mut self, events: u64) -> Self {
        self.capacity = events;
        self
    }

    /// How long a claim lasts before a retry may take it over (default
    /// [`DEFAULT_LEASE`](super::DEFAULT_LEASE)), within [`LEASE_RANGE`](super::LEASE_RANGE).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long a processed event is remembered (default
    /// [`DEFAULT_TTL`](super::DEFAULT_TTL)), within [`TTL_RANGE`](super::TTL_RANGE).
    pub fn time_to_live(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Reads the time from `clock` instead of the default monotonic clock (for tests of
    /// leases and TTLs without sleeping). The store only uses differences of its readings.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Builds the store.
    ///
    /// # Errors
    ///
    /// [`ConfigError::ZeroCapacity`], [`ConfigError::Lease`] or
    /// [`ConfigError::TimeToLive`] for a value the store cannot work with.
    pub fn build(self) -> Result<MemoryStore, ConfigError> {
        if self.capacity == 0 {
            return Err(ConfigError::ZeroCapacity);
        }
        super::check_lease_and_ttl(self.lease, self.ttl)?;
        let cache = Cache::builder()
            .max_capacity(self.capacity)
            // TinyLFU (moka's default) admits a new entry into a full cache only if it is
            // used more often than its victim, so it would drop fresh claims and fresh
            // "done" records: exactly the events a retry is about to repeat.
            .eviction_policy(EvictionPolicy::lru())
            .expire_after(SlotExpiry {
                lease: self.lease,
                ttl: self.ttl,
            })
            .build_with_hasher(KeyHasher::default());
        Ok(MemoryStore {
            cache,
            lease: self.lease,
            ttl: self.ttl,
            capacity: self.capacity,
            clock: self.clock,
        })
    }
}

/// The store's default clock: milliseconds since the store was configured, from
/// [`Instant`], which never steps back or jumps with the wall clock.
struct Monotonic(Instant);

impl Clock for Monotonic {
    fn now_millis(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
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
        Self::builder()
            .build()
            .expect("the default capacity, lease and TTL are valid")
    }

    /// Configures a store.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            capacity: DEFAULT_CAPACITY,
            lease: DEFAULT_LEASE,
            ttl: DEFAULT_TTL,
            clock: Arc::new(Monotonic(Instant::now())),
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

    /// Marks `key` done; false when the claim had already run out (and a warning says so).
    fn complete_now(&self, key: &str, claim: Claim) -> bool {
        let now = self.clock.now_millis();
        let done = Slot::Done {
            until: now.saturating_add(Self::millis(self.ttl)),
        };
        let mut on_time = false;
        self.cache.entry_by_ref(key).and_compute_with(|current| {
            match current.map(|e| e.into_value()) {
                Some(Slot::InFlight { claim: held, until }) if held == claim => {
                    if until > now {
                        on_time = true;
                    } else {
                        late_complete(key, "its claim had expired");
                    }
                    Op::Put(done)
                }
                // Expired (or evicted) while the handler ran: still remember it is done.
                None => {
                    late_complete(key, "its claim had expired");
                    Op::Put(done)
                }
                Some(Slot::InFlight { .. }) => {
                    late_complete(key, "another copy took the event over and is running");
                    Op::Nop
                }
                Some(Slot::Done { .. }) => {
                    late_complete(key, "another copy already processed it");
                    Op::Nop
                }
            }
        });
        on_time
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
        let _on_time = self.complete_now(key, claim);
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
            .unwrap()
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
            .lease(Duration::from_secs(1))
            .build()
            .unwrap();
        claim_of(s.begin_now("e"));
        assert_eq!(s.entry_count(), 1);
        // moka's timer wheel ticks about once a second: poll, bounded, for the drop.
        let deadline = Instant::now() + Duration::from_secs(10);
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
        let s = MemoryStore::builder().max_capacity(100).build().unwrap();
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

    /// The review's scenario, scaled down: a store of capacity 10,000 takes 50,000 fresh
    /// events (five times its capacity, so it is full and evicting for most of the run).
    /// Every event is claimed, a copy arrives while it is in flight, and a tenth are
    /// retried 4,000 events later (within `capacity / 2`). None may be claimed twice.
    #[test]
    fn a_full_store_keeps_its_newest_events() {
        const CAPACITY: u64 = 10_000;
        const EVENTS: usize = 50_000;
        const LAG: usize = 4_000;
        const IN_FLIGHT: usize = 500;
        let s = MemoryStore::builder()
            .max_capacity(CAPACITY)
            .build()
            .unwrap();
        let key = |i: usize| format!("evt_{i:08}_0123456789abcdef");
        let mut held = std::collections::VecDeque::new();
        let (mut reprocessed, mut double_claims) = (0, 0);
        for i in 0..EVENTS {
            let Begin::New(claim) = s.begin_now(&key(i)) else {
                panic!("fresh event {i} was not claimed");
            };
            held.push_back((i, claim));
            // Handlers run a while: the oldest claims in flight are copied, then complete.
            if held.len() > IN_FLIGHT {
                let (j, claim) = held.pop_front().unwrap();
                if s.begin_now(&key(j)) != Begin::InFlight {
                    double_claims += 1;
                }
                s.complete_now(&key(j), claim);
            }
            if i >= LAG && i % 10 == 0 && s.begin_now(&key(i - LAG)) != Begin::Done {
                reprocessed += 1;
            }
            // Let moka's housekeeping (eviction, expiry) run now and then, so the checks
            // above see a store that has really been evicting, not one that only queued it.
            if i % 1_000 == 999 {
                assert!(s.entry_count() <= CAPACITY, "{} entries", s.entry_count());
            }
        }
        assert_eq!(
            (reprocessed, double_claims),
            (0, 0),
            "(reprocessed, double claims)"
        );
        assert!(s.entry_count() <= CAPACITY, "{} entries", s.entry_count());
    }

    #[test]
    fn a_complete_after_the_lease_is_reported_late() {
        let clock = ManualClock::at_secs(1000);
        let s = store(&clock);
        let on_time = claim_of(s.begin_now("a"));
        assert!(s.complete_now("a", on_time));
        // Ran past its lease, nobody took over: remembered as done all the same.
        let slow = claim_of(s.begin_now("b"));
        clock.advance(Duration::from_secs(61));
        assert!(!s.complete_now("b", slow));
        assert_eq!(s.begin_now("b"), Begin::Done);
        // Ran past its lease and a retry took the event over: the retry's claim stands.
        let first = claim_of(s.begin_now("c"));
        clock.advance(Duration::from_secs(61));
        let retry = claim_of(s.begin_now("c"));
        assert!(!s.complete_now("c", first));
        assert_eq!(s.begin_now("c"), Begin::InFlight);
        assert!(s.complete_now("c", retry));
    }

    #[test]
    fn the_default_clock_is_monotonic_not_the_wall_clock() {
        // Readings count from the store's configuration, so a step of the system's
        // wall clock cannot move a lease or a TTL.
        let s = MemoryStore::new();
        assert!(s.clock.now_millis() < 60_000, "{}", s.clock.now_millis());
    }

    #[test]
    fn builder_refuses_values_the_store_cannot_work_with() {
        let b = MemoryStore::builder;
        assert_eq!(
            b().lease(Duration::ZERO).build().unwrap_err(),
            ConfigError::Lease(Duration::ZERO)
        );
        assert_eq!(
            b().lease(Duration::from_millis(999)).build().unwrap_err(),
            ConfigError::Lease(Duration::from_millis(999))
        );
        assert_eq!(
            b().lease(Duration::MAX).build().unwrap_err(),
            ConfigError::Lease(Duration::MAX)
        );
        assert_eq!(
            b().time_to_live(Duration::ZERO).build().unwrap_err(),
            ConfigError::TimeToLive(Duration::ZERO)
        );
        assert_eq!(
            b().time_to_live(Duration::from_secs(u64::MAX))
                .build()
                .unwrap_err(),
            ConfigError::TimeToLive(Duration::from_secs(u64::MAX))
        );
        assert_eq!(
            b().max_capacity(0).build().unwrap_err(),
            ConfigError::ZeroCapacity
        );
        let message = b().lease(Duration::ZERO).build().unwrap_err().to_string();
        assert!(
            message.contains("lease must be between 1s and 86400s"),
            "{message}"
        );
        // The edges are accepted.
        b().lease(*crate::LEASE_RANGE.start()).build().unwrap();
        b().lease(*crate::LEASE_RANGE.end()).build().unwrap();
        b().time_to_live(*crate::TTL_RANGE.end()).build().unwrap();
    }
}
