//! What verifying a webhook costs, against the physical floor (one HMAC pass) and the
//! naive way; and what a dedup claim and the whole gate cost per request.
//!
//! `cargo bench -p mapping-webhooks --bench verify`. The peer comparison with `svix`
//! lives in `benches/peers`, outside the workspace, so `cargo test` never builds it.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mapping_webhooks::{
    Admission, Begin, Clock, DEFAULT_TOLERANCE, DedupStore, Gate, MemoryStore, Secret, Secrets,
    SignatureHeader, Signer, SystemClock, UnsignedHeaders, Verifier,
};

mod support;
use support::{FixedKeys, Floor, SECRET, SIZES, envelope, event_id, naive_verify, now_secs};

/// Runs a future that never waits (the in-memory store answers at once) to completion.
fn ready<F: Future>(future: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the in-memory store never waits"),
    }
}

fn secret() -> Secret {
    Secret::new(SECRET).expect("valid secret")
}

fn verification(c: &mut Criterion) {
    let floor = Floor::new();
    let verifier = Verifier::new(secret());
    let fixed = FixedKeys::new();
    // A handle in the middle of a rotation: the current secret plus a previous one with
    // a deadline. A request signed with the current secret never reads the deadline.
    let rotating = Secrets::new(Secret::new("whsec_bench_old_0123456789abcdef").expect("valid"));
    rotating.rotate(secret());
    let rotating = Verifier::from_secrets(rotating);
    let signer = Signer::new(secret());
    let tolerance = DEFAULT_TOLERANCE.as_secs();
    let mut group = c.benchmark_group("verify");
    for size in SIZES {
        let body = envelope(size, 1);
        // Signed now, per size, so the header stays inside the five-minute window.
        let t = now_secs();
        let header = signer.sign(&body, t);
        let prefix = format!("{t}.");
        assert!(verifier.verify(&header, &body).is_ok());
        assert_eq!(fixed.verify_signature(&header, &body), Ok(0));
        assert!(rotating.verify_signature(&header, &body).is_ok());
        assert!(naive_verify(SECRET, &header, &body, t, tolerance));
        assert_eq!(
            floor.mac(prefix.as_bytes(), &body),
            signer.signature(&body, t)
        );

        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("floor", size), &body, |b, body| {
            b.iter(|| floor.mac(black_box(prefix.as_bytes()), black_box(body)));
        });
        group.bench_with_input(BenchmarkId::new("signature", size), &body, |b, body| {
            b.iter(|| verifier.verify_signature(black_box(&header), black_box(body)));
        });
        if size == SIZES[0] {
            // Today's signature check against the same steps over fixed keys, and in the
            // middle of a rotation (see `Secrets`).
            group.bench_with_input(
                BenchmarkId::new("signature_fixed_keys", size),
                &body,
                |b, body| {
                    b.iter(|| fixed.verify_signature(black_box(&header), black_box(body)));
                },
            );
            group.bench_with_input(
                BenchmarkId::new("signature_rotating", size),
                &body,
                |b, body| {
                    b.iter(|| rotating.verify_signature(black_box(&header), black_box(body)));
                },
            );
        }
        group.bench_with_input(BenchmarkId::new("full", size), &body, |b, body| {
            b.iter(|| verifier.verify(black_box(&header), black_box(body)));
        });
        group.bench_with_input(BenchmarkId::new("naive", size), &body, |b, body| {
            b.iter(|| {
                naive_verify(
                    SECRET,
                    black_box(&header),
                    black_box(body),
                    now_secs(),
                    tolerance,
                )
            });
        });
    }
    group.finish();
}

/// Where the time beyond the floor goes at small sizes.
fn parts(c: &mut Criterion) {
    let body = envelope(300, 1);
    let header = Signer::new(secret()).sign(&body, now_secs());
    let mut group = c.benchmark_group("parts");
    group.bench_function("header_parse", |b| {
        b.iter(|| SignatureHeader::parse(black_box(&header)));
    });
    group.bench_function("system_clock", |b| b.iter(|| SystemClock.now_secs()));

    group.finish();
}

fn dedup(c: &mut Criterion) {
    let mut group = c.benchmark_group("dedup");
    // The default store (100,000 entries): after the first 100,000 keys every insert
    // also evicts, the steady state of a busy receiver.
    let store = MemoryStore::new();
    let mut n = 0u64;
    group.bench_function("memory_begin_complete", |b| {
        b.iter_batched(
            || {
                n += 1;
                event_id(n)
            },
            |key| {
                let Begin::New(claim) = ready(store.begin(&key)).expect("memory store") else {
                    panic!("{key} seen before");
                };
                ready(store.complete(&key, claim)).expect("memory store");
                key
            },
            BatchSize::SmallInput,
        );
    });
    // The store's floor: one plain moka insert of a fresh key into a full cache of the
    // same capacity (moka's defaults). The goal is the store within 1.3x of it;
    // `benches/peers` `store_compare` measures the ratio in interleaved rounds.
    let floor: moka::sync::Cache<String, u64> =
        moka::sync::Cache::new(mapping_webhooks::dedup::DEFAULT_CAPACITY);
    let mut n = 0u64;
    group.bench_function("moka_insert_floor", |b| {
        b.iter_batched(
            || {
                n += 1;
                event_id(n)
            },
            |key| floor.insert(key, 1),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn gate(c: &mut Criterion) {
    let gate = Gate::new(secret());
    let signer = Signer::new(secret());
    let mut group = c.benchmark_group("gate");
    let mut n = 0u64;
    for size in [300, 1024] {
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new("admit_finish", size), |b| {
            // Every request is a new event, signed outside the timed part.
            b.iter_batched(
                || {
                    n += 1;
                    let body = envelope(size, n);
                    let header = signer.sign(&body, now_secs());
                    (header, body)
                },
                |(header, body)| match ready(gate.admit(
                    [header.as_bytes()],
                    UnsignedHeaders::default(),
                    &body,
                )) {
                    Admission::Process { verified, ticket } => {
                        ready(ticket.finish(204));
                        verified
                    }
                    Admission::Reply(reply) => panic!("refused: {}", reply.reason()),
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

/// A store that always grants the claim at once: the gate's own cost, without moka's
/// (which is 5-7 µs when full, and would hide 100 ns in its noise).
struct NullStore;

impl DedupStore for NullStore {
    async fn begin(&self, _key: &str) -> Result<Begin, mapping_webhooks::StoreError> {
        Ok(Begin::New(mapping_webhooks::Claim::from_u128(1)))
    }
    async fn complete(
        &self,
        _key: &str,
        _claim: mapping_webhooks::Claim,
    ) -> Result<(), mapping_webhooks::StoreError> {
        Ok(())
    }
    async fn abandon(
        &self,
        _key: &str,
        _claim: mapping_webhooks::Claim,
    ) -> Result<(), mapping_webhooks::StoreError> {
        Ok(())
    }
}

/// One admit + finish of a new 300-byte event through `gate`, signed outside the timed
/// part; `upkeep` runs (untimed) every 4096 requests.
fn admit_finish<D: DedupStore>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    gate: &Gate<D>,
    upkeep: impl Fn(),
) {
    let signer = Signer::new(secret());
    let mut n = 0u64;
    group.bench_function(name, |b| {
        b.iter_batched(
            || {
                n += 1;
                if n.is_multiple_of(4096) {
                    upkeep();
                }
                let body = envelope(300, n);
                let header = signer.sign(&body, now_secs());
                (header, body)
            },
            |(header, body)| match ready(gate.admit(
                [header.as_bytes()],
                UnsignedHeaders::default(),
                &body,
            )) {
                Admission::Process { verified, ticket } => {
                    ready(ticket.finish(204));
                    verified
                }
                Admission::Reply(reply) => panic!("refused: {}", reply.reason()),
            },
            BatchSize::SmallInput,
        );
    });
}

/// What observing costs per request: the gate (with a store that costs nothing) without
/// an observer, and with the `metrics` feature's observer recording into a Prometheus
/// recorder (`--features metrics`). Run it a few times and compare the pair of each run.
fn observe(c: &mut Criterion) {
    let mut group = c.benchmark_group("observe");
    let gate = Gate::builder()
        .secret(SECRET)
        .dedup(NullStore)
        .build()
        .expect("valid");
    admit_finish(&mut group, "none", &gate, || ());
    // An observer that does nothing: what the gate's reporting itself costs (the clock
    // reads, the shared observer), without any recorder.
    struct Noop;
    impl mapping_webhooks::Observer for Noop {}
    let noop = Gate::builder()
        .secret(SECRET)
        .dedup(NullStore)
        .observer(Noop)
        .build()
        .expect("valid");
    admit_finish(&mut group, "noop", &noop, || ());
    #[cfg(feature = "metrics")]
    {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets(&[1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0])
            .expect("buckets")
            .build_recorder();
        let handle = recorder.handle();
        let observer =
            metrics::with_local_recorder(&recorder, mapping_webhooks::MetricsObserver::new);
        let observed = Gate::builder()
            .secret(SECRET)
            .dedup(NullStore)
            .observer(observer)
            .build()
            .expect("valid");
        admit_finish(&mut group, "metrics", &observed, || handle.run_upkeep());
        let text = handle.render();
        assert!(text.contains("mapping_webhooks_requests_total"), "{text}");
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = verification, parts, dedup, gate, observe
}
criterion_main!(benches);
