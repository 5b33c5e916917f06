//! Criterion run of every case at every size: its estimates feed the chart.
//!
//! `cargo bench --manifest-path benches/peers/Cargo.toml`

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mapping_webhooks_peers::support::SIZES;
use mapping_webhooks_peers::{CASES, Setup};

fn peers(c: &mut Criterion) {
    let mut group = c.benchmark_group("peers");
    for size in SIZES {
        let setup = Setup::new(size);
        group.throughput(Throughput::Bytes(size as u64));
        // svix takes milliseconds at 1 MiB: fewer samples keep the run short.
        group.sample_size(if size >= 64 * 1024 { 20 } else { 60 });
        for case in CASES {
            group.bench_function(BenchmarkId::new(case.name(), size), |b| {
                b.iter(|| setup.run(case))
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = peers
}
criterion_main!(benches);
