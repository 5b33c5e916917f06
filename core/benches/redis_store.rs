//! What the Redis store adds to each request, on loopback: round trips, and p50/p99
//! latency of `begin` + `complete`, next to the in-memory store and a bare `PING` (the
//! floor: one round trip).
//!
//! ```text
//! cargo bench -p mapping-webhooks --features redis --bench redis_store
//! ```
//!
//! Starts its own `redis-server` on a free loopback port (like the tests). Set
//! `BENCH_ITERATIONS` to change the number of requests (default 20 000).
//!
//! With the `redis-cluster` feature, the same `begin` + `complete` round trips then run
//! on a Redis Cluster of 3 masters, in the same run, and the ratio to the single server
//! is printed:
//!
//! ```text
//! cargo bench -p mapping-webhooks --features redis-cluster,metrics,secrets-file --bench redis_store
//! ```
//!
//! The cluster is the one `BENCH_REDIS_CLUSTER_URLS` names (comma-separated seeds), or
//! else one the benchmark starts on loopback (like the tests, with `redis-server` and
//! `redis-cli`); without them the cluster part is skipped.

#[path = "../tests/redis_store/server.rs"]
mod server;

#[cfg(feature = "redis-cluster")]
#[path = "../tests/redis_store/cluster_server.rs"]
mod cluster_server;

use std::time::{Duration, Instant};

use mapping_webhooks::{Begin, DedupStore, MemoryStore, RedisStore};
use redis::aio::ConnectionManager;

use server::RedisServer;

fn main() {
    let Some(server) = RedisServer::start("redis_store bench") else {
        return;
    };
    let iterations: usize = std::env::var("BENCH_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let single = runtime.block_on(run(&server, iterations));
    drop(server);
    #[cfg(feature = "redis-cluster")]
    runtime.block_on(cluster(iterations, &single));
    let _ = single;
}

/// What the cluster part compares with: the single server's figures (read only with
/// the `redis-cluster` feature).
#[cfg_attr(not(feature = "redis-cluster"), allow(dead_code))]
struct Single {
    p50: f64,
    throughput: f64,
}

/// `begin` + `complete` on a 3-master cluster: sequential, then 32 at once, each
/// against the single server's figures.
#[cfg(feature = "redis-cluster")]
async fn cluster(iterations: usize, single: &Single) {
    let (_started, urls) = match std::env::var("BENCH_REDIS_CLUSTER_URLS") {
        Ok(urls) => (None, urls.split(',').map(str::to_owned).collect()),
        Err(_) => {
            let Some(cluster) = cluster_server::RedisCluster::start("redis_store bench", 3, 0)
            else {
                return;
            };
            let urls = cluster.urls();
            (Some(cluster), urls)
        }
    };
    let store = RedisStore::cluster_builder(urls).build().await.unwrap();
    let sequential = measure(iterations, |i| begin_complete(&store, format!("evt_{i}"))).await;
    let (concurrent, throughput) = at_once(&store, iterations).await;
    println!();
    println!("the same on a Redis Cluster of 3 masters (one connection per master)");
    println!("{:<44} {:>9} {:>9} {:>9}", "", "p50", "p99", "mean");
    for (name, samples) in [
        ("cluster begin + complete (new event)", &sequential),
        ("cluster begin + complete, 32 at once", &concurrent),
    ] {
        let Stats { p50, p99, mean } = stats(samples);
        println!("{name:<44} {p50:>7.1}µs {p99:>7.1}µs {mean:>7.1}µs");
    }
    println!("32 at once on the cluster: {throughput:.0} new events/s");
    println!(
        "cluster / single server: p50 (sequential) {:.2}x; throughput, 32 at once {:.2}x",
        stats(&sequential).p50 / single.p50,
        throughput / single.throughput
    );
}

/// `begin` + `complete` for new events, [`CONCURRENCY`] at once over one store: each
/// request's time, and the events per second.
async fn at_once(store: &RedisStore, iterations: usize) -> (Vec<Duration>, f64) {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..CONCURRENCY {
        let redis = store.clone();
        let per_task = iterations / CONCURRENCY;
        tasks.spawn(async move {
            let mut samples = Vec::with_capacity(per_task);
            for i in 0..per_task {
                let start = Instant::now();
                begin_complete(&redis, format!("concurrent_{t}_{i}")).await;
                samples.push(start.elapsed());
            }
            samples
        });
    }
    let concurrent: Vec<Duration> = tasks.join_all().await.into_iter().flatten().collect();
    let throughput = concurrent.len() as f64 / started.elapsed().as_secs_f64();
    (concurrent, throughput)
}

/// Many requests at once share the store's one multiplexed connection (per node).
const CONCURRENCY: usize = 32;

async fn run(server: &RedisServer, iterations: usize) -> Single {
    let client = redis::Client::open(server.url()).unwrap();
    let mut ping = ConnectionManager::new(client).await.unwrap();
    let redis = RedisStore::builder(server.url()).build().await.unwrap();
    let memory = MemoryStore::new();

    let floor = measure(iterations, |_| {
        let mut ping = ping.clone();
        async move {
            let pong: String = redis::cmd("PING").query_async(&mut ping).await.unwrap();
            assert_eq!(pong, "PONG");
        }
    })
    .await;
    let in_memory = measure(iterations, |i| begin_complete(&memory, format!("evt_{i}"))).await;
    let calls_before = evalsha_calls(&mut ping).await;
    let commands_before = commands_processed(&mut ping).await;
    let memory_before = used_memory(&mut ping).await;
    let in_redis = measure(iterations, |i| begin_complete(&redis, format!("evt_{i}"))).await;
    // Warm-up included; the INFO calls in between count themselves once each.
    let requests = (iterations + iterations / 10) as f64;
    let round_trips = (evalsha_calls(&mut ping).await - calls_before) as f64 / requests;
    let commands = (commands_processed(&mut ping).await - commands_before - 3) as f64 / requests;
    let memory_after = used_memory(&mut ping).await;
    let duplicates = measure(iterations, |i| {
        let redis = &redis;
        async move {
            let found = redis.begin(&format!("evt_{i}")).await.unwrap();
            assert_eq!(found, Begin::Done);
        }
    })
    .await;

    let (concurrent, throughput) = at_once(&redis, iterations).await;

    println!(
        "{iterations} sequential requests on loopback, one connection, current-thread runtime"
    );
    println!("{:<44} {:>9} {:>9} {:>9}", "", "p50", "p99", "mean");
    for (name, samples) in [
        ("PING (one round trip: the floor)", &floor),
        ("MemoryStore begin + complete", &in_memory),
        ("RedisStore begin + complete (new event)", &in_redis),
        ("RedisStore begin (duplicate: Done)", &duplicates),
        ("RedisStore begin + complete, 32 at once", &concurrent),
    ] {
        let Stats { p50, p99, mean } = stats(samples);
        println!("{name:<44} {p50:>7.1}µs {p99:>7.1}µs {mean:>7.1}µs");
    }
    let added = stats(&in_redis).p50 - stats(&in_memory).p50;
    println!(
        "per new event: {round_trips:.2} round trips (EVALSHA), {commands:.2} Redis commands \
         counting those the scripts run; p50 added over MemoryStore: {added:.1}µs"
    );
    println!("32 at once on one connection: {throughput:.0} new events/s");
    println!(
        "used_memory per done event: {:.0} bytes",
        (memory_after.saturating_sub(memory_before)) as f64 / requests
    );
    Single {
        p50: stats(&in_redis).p50,
        throughput,
    }
}

async fn begin_complete(store: &impl DedupStore, key: String) {
    let Begin::New(claim) = store.begin(&key).await.unwrap() else {
        panic!("{key} was not new");
    };
    store.complete(&key, claim).await.unwrap();
}

/// Runs `request` a tenth of `iterations` times to warm up, then `iterations` times,
/// timing each.
async fn measure<F: Future<Output = ()>>(
    iterations: usize,
    mut request: impl FnMut(usize) -> F,
) -> Vec<Duration> {
    for i in 0..iterations / 10 {
        request(usize::MAX - i).await;
    }
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let start = Instant::now();
        request(i).await;
        samples.push(start.elapsed());
    }
    samples
}

struct Stats {
    p50: f64,
    p99: f64,
    mean: f64,
}

fn stats(samples: &[Duration]) -> Stats {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    let at = |q: f64| micros(sorted[((sorted.len() - 1) as f64 * q).round() as usize]);
    Stats {
        p50: at(0.50),
        p99: at(0.99),
        mean: micros(sorted.iter().sum::<Duration>()) / sorted.len() as f64,
    }
}

async fn info_field(connection: &mut ConnectionManager, section: &str, field: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query_async(connection)
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("INFO {section} has no {field}"))
}

async fn commands_processed(connection: &mut ConnectionManager) -> u64 {
    info_field(connection, "stats", "total_commands_processed").await
}

async fn evalsha_calls(connection: &mut ConnectionManager) -> u64 {
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(connection)
        .await
        .unwrap();
    stats
        .lines()
        .find_map(|line| {
            line.strip_prefix("cmdstat_evalsha:calls=")?
                .split(',')
                .next()
        })
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}

async fn used_memory(connection: &mut ConnectionManager) -> u64 {
    info_field(connection, "memory", "used_memory").await
}
