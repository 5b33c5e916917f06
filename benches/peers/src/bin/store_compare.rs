//! What a dedup claim costs in the moka-backed `MemoryStore`, against its floor (one
//! plain moka `insert` of a fresh key into a full cache of the same capacity, moka's
//! defaults) and a sketch of a plain bounded store (sharded `Mutex<HashMap>`, evicting
//! the oldest insert first), per request and per entry held. Interleaved rounds, same
//! keys, same machine.
//!
//! `cargo run --release --manifest-path benches/peers/Cargo.toml --bin store_compare`
//!
//! The sketch is not a store the crate ships: it has begin and complete only (no
//! abandon, no expiry sweep) and exists to show what moka's generality costs here.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use mapping_webhooks::dedup::DEFAULT_CAPACITY;
use mapping_webhooks::{Begin, DedupStore, MemoryStore};

fn ready<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("never waits"),
    }
}

fn id(n: u64) -> String {
    format!("evt_01HZ{n:022}")
}

#[derive(Clone, Copy)]
enum State {
    InFlight { claim: u128, until: u64 },
    Done { until: u64 },
}

#[derive(Clone, Copy)]
struct Slot {
    state: State,
    seq: u64,
}

#[derive(Default)]
struct Shard {
    map: HashMap<Arc<str>, Slot>,
    fifo: VecDeque<(Arc<str>, u64)>,
    seq: u64,
}

/// The sketch: 64 shards, each bounded to its share of the capacity, oldest out first.
struct Sketch {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    hasher: RandomState,
}

impl Sketch {
    fn new(capacity: usize) -> Self {
        let n = 64;
        Self {
            shards: (0..n).map(|_| Mutex::default()).collect(),
            per_shard: capacity.div_ceil(n),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, key: &str) -> &Mutex<Shard> {
        let h = self.hasher.hash_one(key) as usize;
        &self.shards[h % self.shards.len()]
    }

    fn begin(&self, key: &str, now: u64, claim: u128) -> bool {
        let mut shard = self.shard(key).lock().expect("not poisoned");
        if let Some(slot) = shard.map.get_mut(key) {
            let (State::InFlight { until, .. } | State::Done { until }) = slot.state;
            if until > now {
                return false;
            }
            slot.state = State::InFlight {
                claim,
                until: now + 300_000,
            };
            return true;
        }
        shard.seq += 1;
        let seq = shard.seq;
        let key: Arc<str> = Arc::from(key);
        let state = State::InFlight {
            claim,
            until: now + 300_000,
        };
        shard.map.insert(Arc::clone(&key), Slot { state, seq });
        shard.fifo.push_back((key, seq));
        if shard.fifo.len() > self.per_shard
            && let Some((old, old_seq)) = shard.fifo.pop_front()
            && shard.map.get(&*old).is_some_and(|s| s.seq == old_seq)
        {
            shard.map.remove(&*old);
        }
        true
    }

    fn complete(&self, key: &str, now: u64, claim: u128) {
        let mut shard = self.shard(key).lock().expect("not poisoned");
        if let Some(slot) = shard.map.get_mut(key)
            && matches!(slot.state, State::InFlight { claim: held, .. } if held == claim)
        {
            slot.state = State::Done {
                until: now + 86_400_000,
            };
        }
    }
}

fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

fn memory(kind: &str) {
    const N: u64 = 1_000_000;
    let before = rss();
    match kind {
        "moka" => {
            let store = MemoryStore::builder().max_capacity(N).build().unwrap();
            for n in 0..N {
                let key = id(n);
                let Begin::New(claim) = ready(store.begin(&key)).expect("store") else {
                    panic!("seen")
                };
                ready(store.complete(&key, claim)).expect("store");
            }
            assert_eq!(store.entry_count(), N);
            println!("{}", (rss() - before) / N);
        }
        _ => {
            let sketch = Sketch::new(N as usize);
            for n in 0..N {
                let key = id(n);
                assert!(sketch.begin(&key, 1, u128::from(n)));
                sketch.complete(&key, 1, u128::from(n));
            }
            // Measured while the store is alive: dropping it would return its memory.
            println!("{}", (rss() - before) / N);
        }
    }
}

fn main() {
    if let Some(kind) = std::env::args()
        .nth(2)
        .filter(|_| std::env::args().nth(1).as_deref() == Some("memory"))
    {
        memory(&kind);
        return;
    }
    let capacity = DEFAULT_CAPACITY;
    let store = MemoryStore::builder().max_capacity(capacity).build().unwrap();
    let floor: moka::sync::Cache<String, u64> = moka::sync::Cache::new(capacity);
    let sketch = Sketch::new(capacity as usize);
    const BATCH: u64 = 20_000;
    const ROUNDS: u64 = 25;
    let mut next = 0u64;
    let (mut moka_ns, mut floor_ns, mut sketch_ns) = (Vec::new(), Vec::new(), Vec::new());
    // Both start empty and fill past their capacity: most rounds measure the evicting
    // steady state of a busy receiver.
    for _ in 0..ROUNDS {
        let keys: Vec<String> = (next..next + BATCH).map(id).collect();
        next += BATCH;
        let start = Instant::now();
        for key in &keys {
            let Begin::New(claim) = ready(store.begin(key)).expect("store") else {
                panic!("seen")
            };
            ready(store.complete(key, claim)).expect("store");
        }
        moka_ns.push(start.elapsed().as_nanos() as f64 / BATCH as f64);
        let start = Instant::now();
        for (i, key) in keys.iter().enumerate() {
            floor.insert(key.clone(), i as u64);
        }
        floor_ns.push(start.elapsed().as_nanos() as f64 / BATCH as f64);
        let start = Instant::now();
        for (i, key) in keys.iter().enumerate() {
            assert!(sketch.begin(key, 1, i as u128));
            sketch.complete(key, 1, i as u128);
        }
        sketch_ns.push(start.elapsed().as_nanos() as f64 / BATCH as f64);
    }
    // The evicting rounds only (past the capacity).
    let skip = (capacity / BATCH) as usize + 1;
    let median = |v: &[f64]| {
        let mut v = v[skip..].to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ratios: Vec<f64> = moka_ns.iter().zip(&sketch_ns).map(|(m, s)| m / s).collect();
    let to_floor: Vec<f64> = moka_ns.iter().zip(&floor_ns).map(|(m, f)| m / f).collect();
    let per_entry = |kind: &str| -> u64 {
        let out = std::process::Command::new(std::env::current_exe().expect("own path"))
            .args(["memory", kind])
            .output()
            .expect("re-run self");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a number")
    };
    println!(
        "| store | claim + completion, full and evicting | resident bytes per entry (1,000,000 ids) |"
    );
    println!("|---|---:|---:|");
    println!(
        "| `MemoryStore` (moka) | {:.0} ns | {} |",
        median(&moka_ns),
        per_entry("moka")
    );
    println!(
        "| floor: one moka `insert` (`Cache<String, u64>`, defaults) | {:.0} ns | – |",
        median(&floor_ns)
    );
    println!(
        "| sketch: sharded `Mutex<HashMap>` + oldest-first eviction | {:.0} ns | {} |",
        median(&sketch_ns),
        per_entry("sketch")
    );
    println!(
        "store / floor, same rounds: {:.2}x (goal <= 1.3x)",
        median(&to_floor)
    );
    println!("store / sketch, same rounds: {:.1}x", median(&ratios));
}
