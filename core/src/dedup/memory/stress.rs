//! A multi-threaded checker of the in-memory store: a small store, several threads
//! claiming, copying, completing and abandoning events at once while moka's housekeeping
//! (eviction) runs on another thread, and every answer checked against a model.
//!
//! `cargo test` runs a bounded number of events (a few seconds); set
//! `MAPPING_WEBHOOKS_STORE_SOAK_SECS` to run as long as you like instead.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::*;

/// A slot of the model per event: what the checker knows of it, and when (in calls to
/// the store so far) that began.
const FREE: u64 = 0;
const IN_FLIGHT: u64 = 1;
const DONE_: u64 = 2;

fn slot(state: u64, at: u64) -> u64 {
    (state << 62) | at
}

/// What the run saw. Only what happened within one claim window counts as a fault: the
/// store keeps every event touched within the last `capacity / 2` calls (an entry is
/// evicted only once `capacity` others were used after it, each by at least one call).
#[derive(Debug, Default, PartialEq, Eq)]
struct Faults {
    /// A second `New` for an event while its first claim was still held.
    double_new: u64,
    /// A `New` for an event whose completion had been reported on time or late.
    forgotten: u64,
}

struct Run {
    store: MemoryStore,
    window: u64,
    model: Vec<AtomicU64>,
    next: AtomicU64,
    /// Calls made to the store so far: the clock of the window.
    calls: AtomicU64,
    double_new: AtomicU64,
    forgotten: AtomicU64,
    /// The same, outside the window (the store is allowed to forget those).
    outside: AtomicU64,
    completions: AtomicU64,
}

fn key(n: u64) -> String {
    format!("evt_{n:010}")
}

impl Run {
    /// Claims event `e` and checks the answer against the model; returns the claim to
    /// finish.
    ///
    /// A thread can be preempted on either side of its store call, so the call's time is
    /// a range: `before` (when it was counted) and `after` (when it returned). A slot
    /// records the earliest time its write may have happened (`before`), and an answer
    /// counts as a fault only if even its latest time (`after`) is within the window:
    /// preemption can then only put a fault outside the window, never make a legitimate
    /// eviction look like one.
    fn begin(&self, e: u64) -> Option<Claim> {
        let before = self.calls.fetch_add(1, Ordering::Relaxed);
        let answer = self.store.begin_now(&key(e));
        let after = self.calls.load(Ordering::Relaxed);
        let Begin::New(claim) = answer else {
            return None;
        };
        let previous = self.model[e as usize].swap(slot(IN_FLIGHT, before), Ordering::AcqRel);
        let (state, since) = (previous >> 62, previous & ((1 << 62) - 1));
        if state != FREE {
            if after.saturating_sub(since) > self.window {
                self.outside.fetch_add(1, Ordering::Relaxed);
            } else if state == IN_FLIGHT {
                self.double_new.fetch_add(1, Ordering::Relaxed);
            } else {
                self.forgotten.fetch_add(1, Ordering::Relaxed);
            }
        }
        Some(claim)
    }

    fn finish(&self, e: u64, claim: Claim, abandon: bool) {
        let now = self.calls.fetch_add(1, Ordering::Relaxed);
        let k = key(e);
        if abandon {
            // Freed in the model first: a copy may take it over as soon as the store does.
            self.model[e as usize].store(slot(FREE, now), Ordering::Release);
            self.store.abandon_now(&k, claim);
            return;
        }
        match self.store.complete_now(&k, claim) {
            Completion::OnTime | Completion::Late => {
                self.completions.fetch_add(1, Ordering::Relaxed);
                self.model[e as usize].store(slot(DONE_, now), Ordering::Release);
                // A copy arriving right after the answer must find the event done.
                if let Some(again) = self.begin(e) {
                    self.finish(e, again, false);
                }
            }
            Completion::Superseded => {}
        }
    }

    /// One receiver thread. Per new event: claim it; a quarter fail at once (abandon),
    /// the rest complete after about `hold` events (slow handlers: their entries are
    /// then among the least recently used, next in line for eviction); and a retry of
    /// an event that failed about `lag` events ago, sent by several threads at once.
    fn worker(&self, seed: u64, events: u64, hold: usize, lag: u64, deadline: Option<Instant>) {
        let mut rng = seed | 1;
        let mut random = move || {
            // xorshift64
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut held = std::collections::VecDeque::with_capacity(hold + 1);
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            if n >= events {
                break;
            }
            let len = self.model.len() as u64;
            let e = n % len;
            if let Some(claim) = self.begin(e) {
                // The events retried below all failed at once.
                if e.is_multiple_of(8) || random().is_multiple_of(4) {
                    self.finish(e, claim, true);
                } else {
                    held.push_back((e, claim));
                }
            }
            if held.len() > hold {
                let (e, claim) = held.pop_front().unwrap();
                self.finish(e, claim, false);
            }
            // Retries of one old event from every thread at about the same time.
            if n >= lag {
                let old = ((n - lag) & !7) % len;
                if let Some(claim) = self.begin(old) {
                    self.finish(old, claim, false);
                }
            }
        }
        for (e, claim) in held {
            self.finish(e, claim, false);
        }
    }
}

/// Runs `threads` workers over a store of `capacity` with housekeeping on its own
/// thread, for `events` events (or until `soak` has passed).
fn run(capacity: u64, threads: u64, events: u64, soak: Option<Duration>) -> (Faults, u64, u64) {
    let store = MemoryStore::builder()
        .max_capacity(capacity)
        .build()
        .unwrap();
    let (model_len, events) = match soak {
        // A soak reuses the model's slots: events far apart never meet in the store.
        Some(_) => (1 << 20, u64::MAX),
        None => (events, events),
    };
    let run = Run {
        store,
        window: capacity / 2,
        model: (0..model_len).map(|_| AtomicU64::new(0)).collect(),
        next: AtomicU64::new(0),
        calls: AtomicU64::new(0),
        double_new: AtomicU64::new(0),
        forgotten: AtomicU64::new(0),
        outside: AtomicU64::new(0),
        completions: AtomicU64::new(0),
    };
    let deadline = soak.map(|s| Instant::now() + s);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let housekeeping = scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                run.store.cache.run_pending_tasks();
                std::thread::yield_now();
            }
        });
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let run = &run;
                scope.spawn(move || {
                    let hold = (capacity * 7 / 8 / threads) as usize;
                    let lag = std::env::var("LAG").map_or(capacity * 7 / 8, |l| {
                        capacity * l.parse::<u64>().unwrap() / 64
                    });
                    run.worker(0x9e37_79b9_7f4a_7c15 ^ (t + 1), events, hold, lag, deadline)
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        housekeeping.join().unwrap();
    });
    assert!(run.store.entry_count() <= capacity);
    (
        Faults {
            double_new: run.double_new.into_inner(),
            forgotten: run.forgotten.into_inner(),
        },
        run.outside.into_inner(),
        run.completions.into_inner(),
    )
}

/// How long a soak runs: `MAPPING_WEBHOOKS_STORE_SOAK_SECS`, if set.
fn soak() -> Option<Duration> {
    let secs = std::env::var("MAPPING_WEBHOOKS_STORE_SOAK_SECS").ok()?;
    Some(Duration::from_secs(
        secs.parse()
            .expect("MAPPING_WEBHOOKS_STORE_SOAK_SECS: whole seconds"),
    ))
}

/// Four threads on stores of 64 and 512 entries (full and evicting all along), with
/// slow handlers whose completions touch the entries next in line for eviction: at most
/// [`RARE_EVICTION_RACES`] completions forgotten or events claimed twice within a claim
/// window, per capacity.
///
/// Before each change of a key became one atomic operation on the cache, 21 to 27
/// completions of 20,000 events were forgotten at each capacity (issue 19, item 12).
#[test]
fn four_threads_on_a_small_full_store_follow_the_model() {
    let mut seen = Vec::new();
    for capacity in [64, 512] {
        let (faults, outside, completions) = run(capacity, 4, 20_000, soak());
        eprintln!(
            "capacity {capacity}: {faults:?}, {outside} outside the window, {completions} completions"
        );
        assert!(completions > 10_000, "{completions} completions");
        seen.push((capacity, faults));
    }
    assert!(
        seen.iter()
            .all(|(_, f)| f.double_new + f.forgotten <= RARE_EVICTION_RACES),
        "{seen:?}"
    );
}

/// How many faults a run may see from a race inside moka's eviction (0.12.16), not in
/// the store: under heavy preemption, eviction very rarely removes an entry that was
/// written at that moment. Seen: one forgotten completion in one CI run of 20,000 events
/// at capacity 64 on a loaded 2-core machine (and none in 25 runs here, nor 16 with 8 and
/// 16 threads), and two fresh claims lost in a 100-second soak of 1.5 million completions
/// at capacity 64; none at capacity 512 in 760,000. The store's own regressions this
/// checker guards against made ten times as many in every run (see above).
const RARE_EVICTION_RACES: u64 = 2;

/// Retries of one event that failed a while ago (its entry is the least recently used,
/// next in line for eviction), sent by `threads` threads at once while new events keep
/// arriving; how many rounds saw more than one `New`, of `rounds`.
fn hot_retries(capacity: u64, threads: usize, rounds: u64) -> u64 {
    let store = MemoryStore::builder()
        .max_capacity(capacity)
        .build()
        .unwrap();
    let barrier = std::sync::Barrier::new(threads + 1);
    let stop = AtomicBool::new(false);
    let news = AtomicU64::new(0);
    let mut doubles = 0;
    std::thread::scope(|scope| {
        let housekeeping = scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                store.cache.run_pending_tasks();
                std::thread::yield_now();
            }
        });
        let retriers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    for round in 0..rounds {
                        barrier.wait();
                        if let Begin::New(claim) = store.begin_now(&format!("hot_{round}")) {
                            news.fetch_add(1, Ordering::Relaxed);
                            store.complete_now(&format!("hot_{round}"), claim);
                        }
                        barrier.wait();
                    }
                })
            })
            .collect();
        let mut filler = 0u64;
        for round in 0..rounds {
            // The event fails at once; then enough new events that it is the oldest entry.
            let key = format!("hot_{round}");
            let Begin::New(claim) = store.begin_now(&key) else {
                panic!("{key} is new")
            };
            store.abandon_now(&key, claim);
            // How close to eviction, and how many new events meanwhile: the race's timing
            // varies with both, so every round tries another pair.
            let (before, during) = (round % 2, 1 << (round / 2 % 4));
            for _ in 0..capacity - before {
                filler += 1;
                let _ = store.begin_now(&format!("filler_{filler}"));
            }
            news.store(0, Ordering::Relaxed);
            barrier.wait();
            // New events keep arriving while the retries run.
            for _ in 0..during {
                filler += 1;
                let _ = store.begin_now(&format!("filler_{filler}"));
            }
            barrier.wait();
            if news.load(Ordering::Relaxed) > 1 {
                doubles += 1;
            }
        }
        for r in retriers {
            r.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        housekeeping.join().unwrap();
    });
    doubles
}

/// Four retries at once of an event that failed a while ago, while new events evict
/// it: exactly one is processed (in all but at most one round).
///
/// Before each change of a key became one atomic operation on the cache, 4 to 89 rounds
/// of 2,000 let two retries run (issue 19, item 13).
#[test]
fn hot_retries_of_an_old_event_claim_it_once() {
    let deadline = soak().map(|soak| Instant::now() + soak);
    let (mut rounds, mut doubles) = (0, 0);
    loop {
        doubles += hot_retries(64, 4, 2_000);
        rounds += 2_000;
        if deadline.is_none_or(|d| Instant::now() >= d) {
            break;
        }
    }
    // One round is left to moka's rare eviction race (see `RARE_EVICTION_RACES`).
    assert!(doubles <= 1, "{doubles} of {rounds} rounds had two claims");
}
