//! Resident memory of the moka-backed `MemoryStore`, against a plain `HashSet<String>`
//! holding the same ids, and proof that the store stays within its bound when fed three
//! times its capacity.
//!
//! `cargo run --release --manifest-path benches/peers/Cargo.toml --bin store_memory`
//!
//! Each measurement runs in a fresh child process (this program re-executed), so memory
//! freed by one measurement cannot hide the next one's growth.

use std::collections::HashSet;
use std::future::Future;
use std::pin::pin;
use std::process::Command;
use std::task::{Context, Poll, Waker};

use mapping_webhooks::dedup::DEFAULT_CAPACITY;
use mapping_webhooks::{Begin, DedupStore, MemoryStore};

const MILLION: u64 = 1_000_000;

/// The resident set size of this process, in bytes (VmRSS in /proc/self/status).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line");
    kib * 1024
}

/// Runs a future that never waits (the in-memory store answers at once).
fn ready<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the in-memory store never waits"),
    }
}

/// A realistic event id: `evt_` and a ULID-like tail, `len` characters in all.
fn id(n: u64, len: usize) -> String {
    let mut id = format!("evt_01HZ{n:022}");
    while id.len() < len {
        id.push('x');
    }
    id
}

/// Claims and completes `count` distinct events; returns the largest entry count seen
/// (sampled every 10,000 events).
fn feed(store: &MemoryStore, count: u64, len: usize) -> u64 {
    let mut most = 0;
    for n in 0..count {
        let key = id(n, len);
        let Begin::New(claim) = ready(store.begin(&key)).expect("memory store") else {
            panic!("{key} seen before");
        };
        ready(store.complete(&key, claim)).expect("memory store");
        if n % 10_000 == 9_999 {
            most = most.max(store.entry_count());
        }
    }
    most.max(store.entry_count())
}

/// One measurement, in this (child) process: prints `rss_growth entries most_entries`.
fn child(kind: &str, count: u64, capacity: u64, len: usize) {
    let before = rss();
    // Measured while the set or store is alive: dropping it may return its memory.
    if kind == "hashset" {
        let set: HashSet<String> = (0..count).map(|n| id(n, len)).collect();
        println!("{} {} {}", rss() - before, set.len(), set.len());
    } else {
        let store = MemoryStore::builder().max_capacity(capacity).build().unwrap();
        let most = feed(&store, count, len);
        let entries = store.entry_count();
        println!("{} {entries} {most}", rss() - before);
    }
}

struct Measured {
    growth: u64,
    entries: u64,
    most: u64,
}

fn measure(kind: &str, count: u64, capacity: u64, len: usize) -> Measured {
    let out = Command::new(std::env::current_exe().expect("own path"))
        .args([
            "child",
            kind,
            &count.to_string(),
            &capacity.to_string(),
            &len.to_string(),
        ])
        .output()
        .expect("re-run self");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let v: Vec<u64> = text
        .split_whitespace()
        .map(|x| x.parse().expect("number"))
        .collect();
    Measured {
        growth: v[0],
        entries: v[1],
        most: v[2],
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("child") {
        let n = |i: usize| args[i].parse::<u64>().expect("a number");
        child(&args[1], n(2), n(3), n(4) as usize);
        return;
    }

    println!("| what | entries held | resident memory | bytes per entry | ratio to HashSet |");
    println!("|---|---:|---:|---:|---:|");
    let set = measure("hashset", MILLION, 0, 30);
    let per_set = set.growth as f64 / set.entries as f64;
    println!(
        "| `HashSet<String>`, 1,000,000 ids of 30 chars | {} | {} | {per_set:.0} | 1.0x |",
        set.entries,
        mb(set.growth)
    );
    let moka = measure("moka", MILLION, MILLION, 30);
    let per_moka = moka.growth as f64 / moka.entries as f64;
    println!(
        "| `MemoryStore` (capacity 1,000,000), 1,000,000 ids of 30 chars | {} | **{}** | {per_moka:.0} | {:.1}x |",
        moka.entries,
        mb(moka.growth),
        per_moka / per_set
    );
    // The budget: 3,000,000 ids through a store of 1,000,000, so it is full and
    // has been evicting for two million events when measured.
    let big = measure("moka", 3 * MILLION, MILLION, 30);
    println!(
        "| `MemoryStore` (capacity 1,000,000) fed 3,000,000 ids of 30 chars | {} (most seen {}) | **{}** | {:.0} | |",
        big.entries,
        big.most,
        mb(big.growth),
        big.growth as f64 / big.entries as f64
    );
    let fed = measure("moka", 3 * DEFAULT_CAPACITY, DEFAULT_CAPACITY, 30);
    println!(
        "| default `MemoryStore` ({DEFAULT_CAPACITY}) fed {} ids of 30 chars | {} (most seen {}) | {} | {:.0} | |",
        3 * DEFAULT_CAPACITY,
        fed.entries,
        fed.most,
        mb(fed.growth),
        fed.growth as f64 / fed.entries as f64
    );
    let worst = measure("moka", 3 * DEFAULT_CAPACITY, DEFAULT_CAPACITY, 128);
    println!(
        "| default `MemoryStore` ({DEFAULT_CAPACITY}) fed {} ids of 128 chars (the store keeps a fingerprint) | {} (most seen {}) | **{}** | {:.0} | |",
        3 * DEFAULT_CAPACITY,
        worst.entries,
        worst.most,
        mb(worst.growth),
        worst.growth as f64 / worst.entries as f64
    );
    let within =
        fed.most <= DEFAULT_CAPACITY && worst.most <= DEFAULT_CAPACITY && big.most <= MILLION;
    println!();
    println!(
        "bound held when fed 3x capacity: {}",
        if within { "yes" } else { "NO" }
    );
    println!(
        "goal (<= 400 MB with 3,000,000 ids fed into capacity 1,000,000): {}",
        if big.growth <= 400_000_000 {
            "met"
        } else {
            "missed"
        }
    );
    if !within {
        std::process::exit(1);
    }
}
