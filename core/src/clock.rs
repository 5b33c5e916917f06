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
///
/// [`now_secs`](Clock::now_secs), which the signature window reads on every request, is
/// coarse: a value a background thread (`mapping-webhooks-clock`, started on the first
/// read) refreshes every 100 ms, so a request reads one atomic instead of the system
/// clock (about 30 ns saved at 300 B, a tenth of the check). Whole seconds within a
/// fraction of a second are all a ±300 s window needs. A child process after a `fork`
/// (which takes no threads along) starts its own within 256 reads. [`now_millis`](Clock::now_millis)
/// and [`monotonic_millis`](Clock::monotonic_millis) read the system clock each time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

/// How often the coarse seconds are refreshed.
const COARSE_TICK: Duration = Duration::from_millis(100);

/// Whole seconds since the Unix epoch, straight from the system clock.
fn exact_secs() -> u64 {
    // A clock set before 1970 reads as 0, which the window check then refuses.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The coarse seconds (see [`SystemClock`]).
fn coarse_secs() -> u64 {
    /// The last refresh.
    static SECS: AtomicU64 = AtomicU64::new(0);
    /// Reads since the last check of the ticker.
    static READS: AtomicU64 = AtomicU64::new(0);
    /// The process whose ticker refreshes [`SECS`]; 0 when no ticker could start.
    static TICKER_PID: AtomicU64 = AtomicU64::new(0);
    static STARTED: OnceLock<()> = OnceLock::new();

    /// Starts a ticker for this process, unless one was started for it already.
    fn start_ticker(seen: u64) {
        let pid = u64::from(std::process::id());
        if TICKER_PID
            .compare_exchange(seen, pid, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        SECS.store(exact_secs(), Ordering::Release);
        let spawned = std::thread::Builder::new()
            .name("mapping-webhooks-clock".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(COARSE_TICK);
                    SECS.store(exact_secs(), Ordering::Release);
                }
            });
        if spawned.is_err() {
            TICKER_PID.store(0, Ordering::Release);
        }
    }

    STARTED.get_or_init(|| start_ticker(0));
    let pid = TICKER_PID.load(Ordering::Acquire);
    if pid == 0 {
        // No thread could be started: the exact clock on every read.
        return exact_secs();
    }
    // A ticker does not survive a `fork`: the child notices its new process id and
    // starts its own (a cheap check, once in 256 reads).
    if READS.fetch_add(1, Ordering::Relaxed) % 256 == 255 && pid != u64::from(std::process::id()) {
        start_ticker(pid);
        return exact_secs();
    }
    SECS.load(Ordering::Acquire)
}

impl Clock for SystemClock {
    fn now_millis(&self) -> u64 {
        // A clock set before 1970 reads as 0, which the window check then refuses.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn now_secs(&self) -> u64 {
        coarse_secs()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coarse_seconds_follow_the_system_clock() {
        // Over a second and a half of reads, each coarse reading is the exact second or
        // one just before it (the ticker refreshes it every 100 ms; a loaded machine may
        // hold the ticker back a little), never later than the clock.
        let until = Instant::now() + Duration::from_millis(1500);
        let mut reads = 0u64;
        let mut seen = std::collections::BTreeSet::new();
        while Instant::now() < until {
            let before = exact_secs();
            let coarse = SystemClock.now_secs();
            let after = exact_secs();
            assert!(
                coarse + 3 >= before && coarse <= after,
                "coarse {coarse} outside [{before} - 3, {after}]"
            );
            seen.insert(coarse);
            reads += 1;
            if reads.is_multiple_of(1000) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        // It moved with time: at least two distinct seconds in 1.5 s.
        assert!(seen.len() >= 2, "{seen:?}");
    }
}
