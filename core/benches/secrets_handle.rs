//! What the shared secrets handle costs a request, measured interleaved: the signature
//! check at 300 B through `Verifier` (which reads a `Secrets` handle) against the same
//! steps over fixed keys (the verifier before the handle, `support::FixedKeys`), and in
//! the middle of a rotation (a previous secret with a deadline); and the gate's whole
//! verification (head, signature, envelope; no dedup) for one secret against the same
//! for a tenant whose secrets are in the [`Tenants`] cache. The cases run in turn,
//! batch by batch, for many rounds, so the noise of a shared machine hits them alike;
//! each ratio is the median of the per-round ratios.
//!
//! `cargo bench -p mapping-webhooks --bench secrets_handle`

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mapping_webhooks::adapter::RequestHead;
use mapping_webhooks::{
    Gate, ResolveError, SIGNATURE_HEADER, Secret, Secrets, Signer, Tenant, TenantFrom, Tenants,
    Verifier,
};

mod support;
use support::{FixedKeys, SECRET, envelope, now_secs};

/// Rounds (odd, for a plain median).
const ROUNDS: usize = 101;
/// The time one batch of one case should take.
const BATCH: Duration = Duration::from_millis(2);

/// One measured case: a name and one signature check that must succeed.
type Case<'a> = (&'static str, Box<dyn Fn() -> bool + 'a>);

/// Runs a future that never waits (a cache hit, no store) to completion.
fn ready<F: Future>(future: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a cache hit never waits"),
    }
}

/// A request head: the signature header and the path.
struct Head<'a> {
    signature: &'a str,
    path: &'a str,
}

impl RequestHead for Head<'_> {
    fn header_values<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> {
        (name == SIGNATURE_HEADER)
            .then_some(self.signature.as_bytes())
            .into_iter()
    }
    fn path(&self) -> &str {
        self.path
    }
    fn host(&self) -> Option<&str> {
        None
    }
}

/// The gate's verification of one request, as an adapter drives it: the head, the
/// tenant (when the gate has tenants), the body in one chunk, then its signature and
/// envelope.
fn admitted(gate: &Gate, header: &str, body: &Bytes, path: &str) -> bool {
    let head = Head {
        signature: header,
        path,
    };
    let Ok(mut intake) = ready(gate.intake(&head)) else {
        return false;
    };
    if intake.push(body.clone()).is_err() {
        return false;
    }
    ready(intake.admit()).is_ok()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; run any other way (`cargo test --bench ..`), a
    // quick pass is enough.
    let quick = !std::env::args().any(|a| a == "--bench");
    let secret = || Secret::new(SECRET).expect("valid secret");
    let body = envelope(300, 1);
    let header = Signer::new(secret()).sign(&body, now_secs());

    let fixed = FixedKeys::new();
    let handle = Verifier::new(secret());
    let rotating = Secrets::new(Secret::new("whsec_bench_old_0123456789abcdef").expect("valid"));
    rotating.rotate(secret());
    let rotating = Verifier::from_secrets(rotating);

    let body = Bytes::from(body);
    let single = Gate::builder()
        .secret(SECRET)
        .without_dedup()
        .build()
        .expect("valid");
    let tenants = Tenants::new(|tenant: String| async move {
        Ok::<_, ResolveError>(
            (tenant == "acme")
                .then(|| Tenant::new(tenant, Secrets::new(Secret::new(SECRET).unwrap()))),
        )
    });
    let for_tenants = Gate::builder()
        .tenants(tenants, TenantFrom::PathSegment(2))
        .without_dedup()
        .build()
        .expect("valid");
    // Warm the cache, on a runtime (a lookup is timed): every measured lookup is a hit.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let head = Head {
        signature: &header,
        path: "/hooks/mapping/acme",
    };
    assert!(runtime.block_on(for_tenants.intake(&head)).is_ok());
    assert!(admitted(
        &for_tenants,
        &header,
        &body,
        "/hooks/mapping/acme"
    ));

    let cases: [Case<'_>; 5] = [
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
        (
            "gate, one secret",
            Box::new(|| admitted(&single, black_box(&header), black_box(&body), "/")),
        ),
        (
            "gate, tenant cache hit",
            Box::new(|| {
                admitted(
                    &for_tenants,
                    black_box(&header),
                    black_box(&body),
                    black_box("/hooks/mapping/acme"),
                )
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
        // The handle against the fixed keys; the tenant gate against the one-secret gate.
        let base = if i < 3 { 0 } else { 3 };
        let mut ratios: Vec<f64> = (0..rounds).map(|r| times[i][r] / times[base][r]).collect();
        println!(
            "{name:<24} {:>7.1} ns   {:.3}x {}",
            median(&mut times[i].clone()),
            median(&mut ratios),
            cases[base].0
        );
    }
}
