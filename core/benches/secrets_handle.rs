//! What the shared secrets handle costs a request, measured interleaved: the signature
//! check at 300 B through `Verifier` (which reads a `Secrets` handle) against the same
//! steps over fixed keys (the verifier before the handle, `support::FixedKeys`), and in
//! the middle of a rotation (a previous secret with a deadline). The cases run in turn,
//! batch by batch, for many rounds, so the noise of a shared machine hits them alike;
//! each ratio is the median of the per-round ratios.
//!
//! `cargo bench -p mapping-webhooks --bench secrets_handle`

use std::hint::black_box;
use std::time::{Duration, Instant};

use mapping_webhooks::{Secret, Secrets, Signer, Verifier};

mod support;
use support::{FixedKeys, SECRET, envelope, now_secs};

/// Rounds (odd, for a plain median).
const ROUNDS: usize = 101;
/// The time one batch of one case should take.
const BATCH: Duration = Duration::from_millis(2);

/// One measured case: a name and one signature check that must succeed.
type Case<'a> = (&'static str, Box<dyn Fn() -> bool + 'a>);

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    // `cargo test --benches` runs bench targets with `--test`: a quick pass is enough.
    let quick = std::env::args().any(|a| a == "--test");
    let secret = || Secret::new(SECRET).expect("valid secret");
    let body = envelope(300, 1);
    let header = Signer::new(secret()).sign(&body, now_secs());

    let fixed = FixedKeys::new();
    let handle = Verifier::new(secret());
    let rotating = Secrets::new(Secret::new("whsec_bench_old_0123456789abcdef").expect("valid"));
    rotating.rotate(secret());
    let rotating = Verifier::from_secrets(rotating);

    let cases: [Case<'_>; 3] = [
        (
            "fixed keys (before)",
            Box::new(|| fixed.verify_signature(black_box(&header), black_box(&body)) == Ok(0)),
        ),
        (
            "Secrets handle",
            Box::new(|| {
                handle
                    .verify_signature(black_box(&header), black_box(&body))
                    .is_ok()
            }),
        ),
        (
            "handle, mid-rotation",
            Box::new(|| {
                rotating
                    .verify_signature(black_box(&header), black_box(&body))
                    .is_ok()
            }),
        ),
    ];
    let batch = |case: &dyn Fn() -> bool, iterations: u32| {
        let start = Instant::now();
        for _ in 0..iterations {
            assert!(case());
        }
        start.elapsed().as_nanos() as f64 / f64::from(iterations)
    };
    let iterations: Vec<u32> = cases
        .iter()
        .map(|(_, case)| {
            let once = batch(case, 64).max(1.0);
            ((BATCH.as_nanos() as f64 / once) as u32).max(1)
        })
        .collect();
    let rounds = if quick { 3 } else { ROUNDS };
    let mut times = vec![Vec::with_capacity(rounds); cases.len()];
    for round in 0..rounds {
        for k in 0..cases.len() {
            let i = (round + k) % cases.len();
            times[i].push(batch(&*cases[i].1, iterations[i]));
        }
    }
    println!("signature check, 300 B, {rounds} interleaved rounds (medians)");
    for (i, (name, _)) in cases.iter().enumerate() {
        let mut ratios: Vec<f64> = (0..rounds).map(|r| times[i][r] / times[0][r]).collect();
        println!(
            "{name:<22} {:>7.1} ns   {:.3}x the fixed keys",
            median(&mut times[i].clone()),
            median(&mut ratios)
        );
    }
}
