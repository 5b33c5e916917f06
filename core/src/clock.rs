//! Where "now" comes from, so tests never sleep.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time, in milliseconds since the Unix epoch.
///
/// The verifier reads it for the timestamp window and [`MemoryStore`](crate::MemoryStore)
/// for leases and TTLs. Production code uses [`SystemClock`]; tests use [`ManualClock`].
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> u64;

    /// Whole seconds since the Unix epoch.
    fn now_secs(&self) -> u64 {
        self.now_millis() / 1000
    }

    /// Milliseconds on a clock that moves at the pace of real time and does not jump
    /// when the wall clock is set (from any origin): what deadlines inside one process
    /// are measured on, such as a previous secret's expiry in
    /// [`Secrets`](crate::Secrets). [`SystemClock`] reads [`Instant`]; the default reads
    /// [`now_millis`](Self::now_millis), right for a clock that is never stepped.
    fn monotonic_millis(&self) -> u64 {
        self.now_millis()
    }
}

/// A shared clock, so one clock can drive both the verifier and a store.
impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now_millis(&self) -> u64 {
        (**self).now_millis()
    }

    fn now_secs(&self) -> u64 {
        (**self).now_secs()
    }

    fn monotonic_millis(&self) -> u64 {
        (**self).monotonic_millis()
    }
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> u64 {
        // A clock set before 1970 reads as 0, which the window check then refuses.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn now_secs(&self) -> u64 {
        // Whole seconds straight from the clock: no 128-bit milliseconds on every request.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    fn monotonic_millis(&self) -> u64 {
        // Since the first reading in this process.
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        let elapsed = ORIGIN.get_or_init(Instant::now).elapsed();
        u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
    }
}

/// A clock that only moves when told to; clones share the same time.
///
/// [`advance`](Self::advance) is time passing: it moves both the wall-clock reading and
/// the [monotonic](Clock::monotonic_millis) one. [`set_secs`](Self::set_secs) is the wall
/// clock being set (as `date -s` or an NTP step does): the monotonic reading stays.
///
/// ```
/// use std::time::Duration;
/// use mapping_webhooks::{Clock, ManualClock};
///
/// let clock = ManualClock::at_secs(1_717_250_400);
/// clock.advance(Duration::from_secs(301));
/// assert_eq!(clock.now_secs(), 1_717_250_701);
/// ```
#[derive(Clone, Default)]
pub struct ManualClock {
    millis: Arc<AtomicU64>,
    monotonic: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock reading `secs` seconds after the Unix epoch.
    pub fn at_secs(secs: u64) -> Self {
        Self {
            millis: Arc::new(AtomicU64::new(secs.saturating_mul(1000))),
            monotonic: Arc::new(AtomicU64::new(secs.saturating_mul(1000))),
        }
    }

    /// Moves the clock forward: time passes (both readings move).
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.millis.fetch_add(by, Ordering::SeqCst);
        self.monotonic.fetch_add(by, Ordering::SeqCst);
    }

    /// Sets the wall clock to `secs` seconds after the Unix epoch: a step, forward or
    /// back, that the [monotonic](Clock::monotonic_millis) reading does not follow.
    pub fn set_secs(&self, secs: u64) {
        self.millis
            .store(secs.saturating_mul(1000), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> u64 {
        self.millis.load(Ordering::SeqCst)
    }

    fn monotonic_millis(&self) -> u64 {
        self.monotonic.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("now_millis", &self.now_millis())
            .finish()
    }
}
