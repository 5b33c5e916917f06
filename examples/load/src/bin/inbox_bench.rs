//! The inbox's accept cost against its floor, and the worker's throughput.
//!
//! ```text
//! cargo run --release -p load-test --bin inbox_bench -- 3000
//! ```
//!
//! The argument is the deliveries per round (default 2000). `INBOX_BENCH_ONLY=sqlite` or
//! `postgres` runs one database; `INBOX_BENCH_POSTGRES_URL` benches a server of yours
//! (an empty database) instead of starting one; `INBOX_BENCH_CONCURRENCY` sets the
//! worker's (default 256).
//!
//! For SQLite (a temporary file, WAL, `synchronous=FULL`) and for Postgres (a server
//! started for the run, on loopback, with Postgres's default durability), 256 concurrent
//! senders call `Gate::admit_into(&inbox, ..)` with pre-signed, distinct events (the
//! inbox's default group commit on), and the same senders run the floor: a bare
//! single-row `INSERT` of the same row into an identical table through the same pool,
//! without verification, `ON CONFLICT` or `RETURNING`, one commit per row. After each
//! round's accept and floor, a worker with a no-op handler drains what the round
//! accepted: the three alternate (accept, floor, drain, accept, …) so all see the same
//! machine, which others share. A first round warms up and is not counted. Last the
//! pickup: with the
//! worker idle, one delivery at a time, the time from its 202 (its commit) to its
//! handler's start (0 when the handler started before the 202 was seen). On Postgres
//! that worker runs on an inbox of its own (another pool, as in another process), so it
//! learns of each delivery through `LISTEN`/`NOTIFY`; its poll interval is 1 s.
//! Measured in-process, without HTTP.
//!
//! The last line per database is
//! `RESULT database=<postgres|sqlite> accept_vs_floor=<x> worker_vs_floor=<y> pickup_p50_ms=<z> pickup_p99_ms=<w>`,
//! the rates as ratios to the floor's events/s (higher is better).

#[path = "../../../../inbox/tests/support/postgres.rs"]
mod postgres;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mapping_webhooks::{Secret, Signer, UnsignedHeaders};
use mapping_webhooks_inbox::{Db, Delivery, Gate, Inbox, Reply};

const SECRET: &str = "whsec_bench_0123456789abcdef0123456789";
const SENDERS: usize = 256;
const ROUNDS: usize = 3;
/// The worker's concurrency in the drain (its handler does nothing).
const WORKER_CONCURRENCY: usize = 256;
/// Deliveries sent one at a time for the pickup latency.
const PICKUPS: usize = 200;

struct Event {
    header: String,
    body: Vec<u8>,
    event_id: String,
}

fn events(tag: &str, n: usize) -> Vec<Event> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let signer = Signer::new(Secret::new(SECRET).unwrap());
    (0..n)
        .map(|i| {
            let event_id = format!("evt_{tag}_{i}");
            let body = format!(
                r#"{{"id":"del_{i}","eventId":"{event_id}","type":"mapping.completed","apiVersion":"2026-06-01","createdAt":"2026-06-07T12:01:00Z","data":{{"mappingJobId":"job_01HZ","status":"COMPLETED","rowCount":4821,"exportFileId":"ef_01HZ"}}}}"#
            )
            .into_bytes();
            Event {
                header: signer.sign(&body, now),
                body,
                event_id,
            }
        })
        .collect()
}

/// Runs `op` over every event from `SENDERS` tasks; returns the sorted latencies and the
/// wall time.
async fn drive<F, Fut>(events: Arc<Vec<Event>>, op: F) -> (Vec<Duration>, Duration)
where
    F: Fn(Arc<Vec<Event>>, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..SENDERS)
        .map(|_| {
            let (events, next, op) = (events.clone(), next.clone(), op.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= events.len() {
                        return latencies;
                    }
                    let t = Instant::now();
                    op(events.clone(), i).await;
                    latencies.push(t.elapsed());
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let wall = start.elapsed();
    all.sort();
    (all, wall)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

const FLOOR_INSERT: &str = "INSERT INTO bench_floor \
     (namespace, event_id, event_type, delivery_id, signed_at, secret, signature, body, \
      received_at, state, attempts, due_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', 0, $9)";

async fn floor_insert(db: &Db, e: &Event) {
    let now = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    macro_rules! insert {
        ($pool:expr) => {
            sqlx::query(FLOOR_INSERT)
                .bind("")
                .bind(&e.event_id)
                .bind("mapping.completed")
                .bind("del_x")
                .bind(1_i64)
                .bind("current")
                .bind(&e.header)
                .bind(&e.body)
                .bind(now)
                .execute($pool)
                .await
                .expect("floor insert")
        };
    }
    match db {
        Db::Sqlite(pool) => {
            insert!(pool);
        }
        Db::Postgres(pool) => {
            insert!(pool);
        }
        _ => unreachable!(),
    }
}

/// Runs a worker with a no-op handler until `ran` reaches `total` and no delivery is
/// left to do; returns the time it took.
async fn drain(inbox: &Inbox, concurrency: usize, ran: &Arc<AtomicUsize>, total: u64) -> Duration {
    let worker = {
        let ran = ran.clone();
        inbox
            .worker(move |_d: Delivery| {
                ran.fetch_add(1, Ordering::Relaxed);
                async { Ok::<(), std::convert::Infallible>(()) }
            })
            .concurrency(concurrency)
            .poll_interval(Duration::from_millis(5))
    };
    let start = Instant::now();
    let task = tokio::spawn(worker.run());
    loop {
        if ran.load(Ordering::Relaxed) as u64 >= total && undone(inbox.db()).await == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "worker too slow"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let wall = start.elapsed();
    task.abort();
    let _ = task.await;
    wall
}

/// How many deliveries are pending or running.
async fn undone(db: &Db) -> i64 {
    const UNDONE: &str = "SELECT COUNT(*) FROM mapping_webhooks_inbox \
         WHERE namespace = '' AND state IN ('pending', 'running')";
    match db {
        Db::Sqlite(pool) => sqlx::query_scalar(UNDONE).fetch_one(pool).await,
        Db::Postgres(pool) => sqlx::query_scalar(UNDONE).fetch_one(pool).await,
        _ => unreachable!(),
    }
    .expect("count the deliveries not done")
}

async fn create_floor(db: &Db, migration: &str) {
    let sql = migration
        .replace("mapping_webhooks_inbox_", "bench_floor_")
        .replace("mapping_webhooks_inbox", "bench_floor");
    match db {
        Db::Sqlite(pool) => {
            sqlx::raw_sql(&sql).execute(pool).await.unwrap();
        }
        Db::Postgres(pool) => {
            sqlx::raw_sql(&sql).execute(pool).await.unwrap();
        }
        _ => unreachable!(),
    }
}

async fn bench(name: &str, url: &str, migration: &str, per_round: usize) -> String {
    // The gate verifies; the inbox, its sink, stores (and deduplicates) on its own.
    let gate = Arc::new(
        Gate::builder()
            .secret(SECRET)
            .without_dedup()
            .build()
            .expect("a valid gate"),
    );
    let inbox = Inbox::builder()
        .max_connections(if url.starts_with("sqlite") { 4 } else { 16 })
        .connect(url)
        .await
        .expect("connect");
    create_floor(inbox.db(), migration).await;
    let mut accept_lat = Vec::new();
    let mut floor_lat = Vec::new();
    let (mut accept_wall, mut floor_wall) = (Duration::ZERO, Duration::ZERO);
    let mut worker_wall = Duration::ZERO;
    let concurrency = std::env::var("INBOX_BENCH_CONCURRENCY")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(WORKER_CONCURRENCY);
    let ran = Arc::new(AtomicUsize::new(0));
    // Round 0 warms up (a server just started, caches, prepared statements) and is not
    // counted.
    for round in 0..=ROUNDS {
        let counted = round > 0;
        let evs = Arc::new(events(&format!("a{round}"), per_round));
        let (inbox2, gate2) = (inbox.clone(), Arc::clone(&gate));
        let (lat, wall) = drive(evs, move |evs, i| {
            let (inbox, gate) = (inbox2.clone(), Arc::clone(&gate2));
            async move {
                let e = &evs[i];
                let answer = gate
                    .admit_into(
                        &inbox,
                        [e.header.as_bytes()],
                        UnsignedHeaders::default(),
                        &e.body,
                    )
                    .await;
                assert_eq!(answer, Reply::Queued, "{answer:?}");
            }
        })
        .await;
        if counted {
            accept_lat.extend(lat);
            accept_wall += wall;
        }

        let evs = Arc::new(events(&format!("f{round}"), per_round));
        let db = inbox.db().clone();
        let (lat, wall) = drive(evs, move |evs, i| {
            let db = db.clone();
            async move { floor_insert(&db, &evs[i]).await }
        })
        .await;
        if counted {
            floor_lat.extend(lat);
            floor_wall += wall;
        }

        // A worker with a no-op handler drains the round's deliveries, timed until each
        // is marked done. Its handler counts, so the bench asks the database only once
        // the handlers are through, and then how many rows are not done yet (read
        // through the claim's partial index, which holds only those), not a count of all.
        let wall = drain(&inbox, concurrency, &ran, (per_round * (round + 1)) as u64).await;
        if counted {
            worker_wall += wall;
        }
    }
    accept_lat.sort();
    floor_lat.sort();
    let n = (per_round * ROUNDS) as f64;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (a50, a99) = (pct(&accept_lat, 0.5), pct(&accept_lat, 0.99));
    let (f50, f99) = (pct(&floor_lat, 0.5), pct(&floor_lat, 0.99));
    let (ars, frs) = (n / accept_wall.as_secs_f64(), n / floor_wall.as_secs_f64());
    println!(
        "| {name} | accept | {:.2} / {:.2} ms | {:.0} | **{:.2}x** |",
        ms(a50),
        ms(a99),
        ars,
        frs / ars
    );
    println!(
        "| {name} | bare INSERT (floor) | {:.2} / {:.2} ms | {:.0} | 1.00x |",
        ms(f50),
        ms(f99),
        frs
    );

    let total = (per_round * ROUNDS) as u64;
    let wrs = total as f64 / worker_wall.as_secs_f64();
    println!(
        "| {name} | worker, no-op handler, concurrency {concurrency} | – | {wrs:.0} processed/s | {:.2}x |",
        frs / wrs
    );

    // Pickup: an idle worker (polling every second), one delivery at a time.
    let worker_inbox = if url.starts_with("postgres") {
        Inbox::builder().connect(url).await.expect("connect")
    } else {
        inbox.clone()
    };
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let worker = worker_inbox
        .worker(move |_d: Delivery| {
            let _ = started_tx.send(Instant::now());
            async { Ok::<(), std::convert::Infallible>(()) }
        })
        .poll_interval(Duration::from_secs(1));
    let task = tokio::spawn(worker.run());
    // Let the worker start (and LISTEN) before the first delivery.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let evs = events("pickup", PICKUPS);
    let mut pickups = Vec::with_capacity(PICKUPS);
    for e in &evs {
        let answer = gate
            .admit_into(
                &inbox,
                [e.header.as_bytes()],
                UnsignedHeaders::default(),
                &e.body,
            )
            .await;
        let committed = Instant::now();
        assert_eq!(answer, Reply::Queued, "{answer:?}");
        let started = tokio::time::timeout(Duration::from_secs(10), started_rx.recv())
            .await
            .expect("picked up within 10 s")
            .expect("the worker runs");
        pickups.push(started.saturating_duration_since(committed));
        // The worker idle again before the next one.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    task.abort();
    let _ = task.await;
    pickups.sort();
    let (p50, p99) = (pct(&pickups, 0.5), pct(&pickups, 0.99));
    println!(
        "| {name} | pickup, commit to handler start, idle worker | {:.2} / {:.2} ms | – | – |",
        ms(p50),
        ms(p99)
    );
    if url.starts_with("postgres") {
        worker_inbox.close().await;
    }
    inbox.close().await;
    format!(
        "RESULT database={} accept_vs_floor={:.2} worker_vs_floor={:.2} pickup_p50_ms={:.2} pickup_p99_ms={:.2}",
        name.to_lowercase(),
        ars / frs,
        wrs / frs,
        ms(p50),
        ms(p99)
    )
}

#[tokio::main]
async fn main() {
    let per_round: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    println!("| database | what | p50 / p99 | events/s | floor events/s ÷ this |");
    println!("|---|---|---:|---:|---:|");
    // INBOX_BENCH_ONLY=sqlite|postgres runs one database.
    let only = std::env::var("INBOX_BENCH_ONLY").unwrap_or_default();
    let mut results = Vec::new();
    if only.is_empty() || only == "sqlite" {
        let path = postgres::temp_sqlite_path("bench");
        results.push(
            bench(
                "SQLite",
                &format!("sqlite://{}", path.display()),
                include_str!("../../../../inbox/migrations/sqlite/0001_inbox.sql"),
                per_round,
            )
            .await,
        );
        postgres::remove_sqlite(&path);
    }
    // INBOX_BENCH_POSTGRES_URL: a server of your own (its database must be empty of the
    // inbox's tables); otherwise one is started for the run.
    let own = std::env::var("INBOX_BENCH_POSTGRES_URL").ok();
    let started = if own.is_none() {
        postgres::PostgresServer::start_durable("inbox_bench")
    } else {
        None
    };
    match own.or_else(|| started.as_ref().map(|pg| pg.url())) {
        _ if !(only.is_empty() || only == "postgres") => {}
        Some(url) => {
            results.push(
                bench(
                    "Postgres",
                    &url,
                    include_str!("../../../../inbox/migrations/postgres/0001_inbox.sql"),
                    per_round,
                )
                .await,
            );
        }
        None => println!("(Postgres skipped: not installed)"),
    }
    for result in results {
        println!("{result}");
    }
}
