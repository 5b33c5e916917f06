//! Interleaved run: every case in turn (A B C D E, A B C D E, ...), many rounds, so the
//! noise of a shared machine hits all cases alike; each ratio is the median of the
//! per-round ratios, measured in the same round.
//!
//! `cargo run --release --manifest-path benches/peers/Cargo.toml --bin interleave`

use std::time::{Duration, Instant};

use mapping_webhooks_peers::support::SIZES;
use mapping_webhooks_peers::{CASES, Case, Setup};

/// Rounds per size (odd, for a plain median).
const ROUNDS: usize = 61;
/// The time one batch of one case should take.
const BATCH: Duration = Duration::from_millis(3);

fn batch(setup: &Setup, case: Case, iterations: u32) -> f64 {
    let start = Instant::now();
    for _ in 0..iterations {
        assert!(setup.run(case));
    }
    start.elapsed().as_nanos() as f64 / f64::from(iterations)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn ns(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} ms", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.2} µs", v / 1e3)
    } else {
        format!("{v:.0} ns")
    }
}

fn main() {
    let index = |case: Case| CASES.iter().position(|c| *c == case).expect("a case");
    println!(
        "| body | floor | signature | full verify | naive | svix | signature / floor | full / floor | naive / floor | svix / floor | svix / signature | svix / full |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for size in SIZES {
        let setup = Setup::new(size);
        // Iterations per batch, from one warm-up pass per case.
        let iterations: Vec<u32> = CASES
            .iter()
            .map(|&case| {
                let once = batch(&setup, case, 16).max(1.0);
                ((BATCH.as_nanos() as f64 / once) as u32).max(1)
            })
            .collect();
        let mut times = vec![Vec::with_capacity(ROUNDS); CASES.len()];
        for round in 0..ROUNDS {
            // Rotate the order too, so no case always runs right after the same one.
            for k in 0..CASES.len() {
                let i = (round + k) % CASES.len();
                times[i].push(batch(&setup, CASES[i], iterations[i]));
            }
        }
        let ratio = |a: Case, b: Case| {
            let mut r: Vec<f64> = (0..ROUNDS)
                .map(|round| times[index(a)][round] / times[index(b)][round])
                .collect();
            median(&mut r)
        };
        let medians: Vec<f64> = times.iter().map(|t| median(&mut t.clone())).collect();
        let label = match size {
            s if s >= 1 << 20 => format!("{} MiB", s >> 20),
            s if s >= 1 << 10 => format!("{} KiB", s >> 10),
            s => format!("{s} B"),
        };
        println!(
            "| {label} | {} | {} | {} | {} | {} | **{:.2}x** | **{:.2}x** | {:.2}x | {:.1}x | **{:.1}x** | **{:.1}x** |",
            ns(medians[0]),
            ns(medians[1]),
            ns(medians[2]),
            ns(medians[3]),
            ns(medians[4]),
            ratio(Case::Signature, Case::Floor),
            ratio(Case::Full, Case::Floor),
            ratio(Case::Naive, Case::Floor),
            ratio(Case::Svix, Case::Floor),
            ratio(Case::Svix, Case::Signature),
            ratio(Case::Svix, Case::Full),
        );
    }
}
