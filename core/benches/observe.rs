//! What observing costs per request, measured in interleaved rounds (A B C, A B C, …)
//! so that the load of a shared machine falls on every variant alike.
//!
//! `cargo bench -p mapping-webhooks --features metrics --bench observe`
//!
//! Each round times `PER_ROUND` admit + finish calls of a 300-byte event through a gate
//! whose store costs nothing (so the gate's own cost is what is measured), for each
//! variant in turn: no observer, an observer that does nothing (the gate's reporting
//! itself: clock reads, the shared observer), and, with the `metrics` feature,
//! `MetricsObserver` recording into a Prometheus recorder. It prints the median time per
//! request of each variant and the median of each round's difference to "none".

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use mapping_webhooks::{
    Admission, Begin, Claim, DedupStore, Gate, GateBuilder, Observer, Secret, Signer, StoreError,
    UnsignedHeaders,
};

mod support;
use support::{SECRET, envelope, now_secs};

const ROUNDS: usize = 61;
const PER_ROUND: usize = 20_000;
/// Distinct requests, signed once and cycled (the null store grants every claim).
const REQUESTS: usize = 1024;

fn ready<F: Future>(future: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the null store never waits"),
    }
}

/// A store that grants every claim at once.
struct NullStore;

impl DedupStore for NullStore {
    async fn begin(&self, _key: &str) -> Result<Begin, StoreError> {
        Ok(Begin::New(Claim::from_u128(1)))
    }
    async fn complete(&self, _key: &str, _claim: Claim) -> Result<(), StoreError> {
        Ok(())
    }
    async fn abandon(&self, _key: &str, _claim: Claim) -> Result<(), StoreError> {
        Ok(())
    }
}

/// An observer that does nothing.
struct Noop;

impl Observer for Noop {}

struct Variant {
    name: &'static str,
    gate: Gate<NullStore>,
    /// Run after each round, untimed (the recorder's upkeep).
    after: Box<dyn Fn()>,
    ns: Vec<f64>,
}

fn builder() -> GateBuilder<NullStore> {
    Gate::builder().secret(SECRET).dedup(NullStore)
}

fn gate() -> Gate<NullStore> {
    builder().build().expect("valid")
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test` runs benches with no argument: then
    // one short round checks that it works.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (rounds, per_round) = if quick { (1, 100) } else { (ROUNDS, PER_ROUND) };

    let signer = Signer::new(Secret::new(SECRET).expect("secret"));
    let requests: Vec<(String, Vec<u8>)> = (0..REQUESTS as u64)
        .map(|n| {
            let body = envelope(300, n);
            (signer.sign(&body, now_secs()), body)
        })
        .collect();

    let mut variants = vec![
        Variant {
            name: "none",
            gate: gate(),
            after: Box::new(|| ()),
            ns: Vec::new(),
        },
        Variant {
            name: "noop observer",
            gate: builder().observer(Noop).build().expect("valid"),
            after: Box::new(|| ()),
            ns: Vec::new(),
        },
    ];
    #[cfg(feature = "metrics")]
    {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets(&[1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0])
            .expect("buckets")
            .build_recorder();
        let handle = recorder.handle();
        let observer =
            metrics::with_local_recorder(&recorder, mapping_webhooks::MetricsObserver::new);
        variants.push(Variant {
            name: "metrics (Prometheus recorder)",
            gate: builder().observer(observer).build().expect("valid"),
            after: Box::new(move || handle.run_upkeep()),
            ns: Vec::new(),
        });
    }

    for round in 0..rounds {
        // Rotate the order every round, so no variant always runs first.
        let count = variants.len();
        for k in 0..count {
            let v = &mut variants[(round + k) % count];
            let start = Instant::now();
            for i in 0..per_round {
                let (header, body) = &requests[i % REQUESTS];
                match ready(
                    v.gate
                        .admit([header.as_bytes()], UnsignedHeaders::default(), body),
                ) {
                    Admission::Process { verified, ticket } => {
                        ready(ticket.finish(204));
                        black_box(verified);
                    }
                    Admission::Reply(reply) => panic!("refused: {}", reply.reason()),
                }
            }
            v.ns.push(start.elapsed().as_nanos() as f64 / per_round as f64);
            (v.after)();
        }
    }

    let median = |xs: &[f64]| {
        let mut xs = xs.to_vec();
        xs.sort_by(f64::total_cmp);
        xs[xs.len() / 2]
    };
    println!("{rounds} interleaved rounds of {per_round} requests (300 B, null store)");
    println!(
        "{:<32} {:>14} {:>22} {:>12}",
        "variant", "median ns/req", "median diff vs none", "ratio"
    );
    let none = variants[0].ns.clone();
    for v in &variants {
        let diffs: Vec<f64> = v.ns.iter().zip(&none).map(|(a, b)| a - b).collect();
        let ratios: Vec<f64> = v.ns.iter().zip(&none).map(|(a, b)| a / b).collect();
        println!(
            "{:<32} {:>14.0} {:>22.0} {:>12.3}",
            v.name,
            median(&v.ns),
            median(&diffs),
            median(&ratios)
        );
    }
}
