//! What only Postgres offers: many workers sharing one database, the transactional
//! handler, and a database that stops and comes back. Each test starts its own server.

#![cfg(feature = "postgres")]

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mapping_webhooks::{ManualClock, Reply};
use mapping_webhooks_inbox::{Db, Delivery, Inbox, LeaseClock, PgTransaction, State};
use support::{Backend, T0, TestDb, deliver, deliver_stored, eventually};
use tokio::sync::Notify;

async fn setup(test: &str) -> Option<(TestDb, Inbox, ManualClock)> {
    let db = TestDb::open(Backend::Postgres, test)?;
    let clock = ManualClock::at_secs(T0);
    let inbox = db.inbox(&clock).await;
    Some((db, inbox, clock))
}

fn pool(inbox: &Inbox) -> sqlx::PgPool {
    match inbox.db() {
        Db::Postgres(pool) => pool.clone(),
        _ => unreachable!("a Postgres inbox"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_is_503_then_accepted_again_without_a_restart() {
    let Some((mut db, inbox, clock)) = setup("db_down").await else {
        return;
    };
    assert!(matches!(
        deliver(&inbox, &clock, "evt_before").await,
        Reply::Queued
    ));
    db.pg.as_mut().unwrap().stop();
    let answer = tokio::time::timeout(
        Duration::from_secs(20),
        deliver(&inbox, &clock, "evt_during"),
    )
    .await
    .expect("answered within the acquire timeout");
    assert_eq!(answer, Reply::SinkUnavailable);
    assert_eq!(answer.status(), 503);

    db.pg.as_mut().unwrap().restart();
    // The pool reconnects by itself; the sender's retry is stored.
    let mut answer = Reply::SinkUnavailable;
    for _ in 0..50 {
        answer = deliver(&inbox, &clock, "evt_during").await;
        if answer != Reply::SinkUnavailable {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(matches!(answer, Reply::Queued), "{answer:?}");
    assert_eq!(
        inbox.counts().await.unwrap(),
        HashMap::from([(State::Pending, 2)])
    );
}

/// The next delivery a worker ran, waiting at most 30 s.
async fn next_run(runs: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(30), runs.recv())
        .await
        .ok()
        .flatten()
}

/// The database stops under a running worker and comes back: the worker's claims fail
/// meanwhile (logged, tried again at its poll interval), and it runs what is stored
/// afterwards without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_worker_outlives_a_database_outage() {
    let Some((mut db, inbox, clock)) = setup("worker_outage").await else {
        return;
    };
    let (ran, mut runs) = tokio::sync::mpsc::unbounded_channel::<String>();
    let worker = inbox
        .worker(move |d: Delivery| {
            let _ = ran.send(d.envelope.event_id.clone());
            async { Ok::<(), String>(()) }
        })
        .poll_interval(Duration::from_millis(100));
    let task = tokio::spawn(worker.run());
    assert_eq!(deliver(&inbox, &clock, "evt_before").await, Reply::Queued);
    assert_eq!(next_run(&mut runs).await.as_deref(), Some("evt_before"));

    db.pg.as_mut().unwrap().stop();
    // Several polls' worth of failed claims.
    tokio::time::sleep(Duration::from_secs(1)).await;
    db.pg.as_mut().unwrap().restart();
    let mut answer = Reply::SinkUnavailable;
    for _ in 0..50 {
        answer = deliver(&inbox, &clock, "evt_after").await;
        if answer != Reply::SinkUnavailable {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answer, Reply::Queued);
    assert_eq!(
        next_run(&mut runs).await.as_deref(),
        Some("evt_after"),
        "the worker did not run a delivery stored after the database came back"
    );
    assert!(!task.is_finished(), "the worker stopped");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_receivers_two_workers_1000_events_3_copies_each_exactly_once() {
    let Some((db, first, clock)) = setup("two_workers").await else {
        return;
    };
    // A second "replica": its own pool, same database.
    let second = db.inbox(&clock).await;
    let effects: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let handler = |effects: Arc<Mutex<HashMap<String, usize>>>| {
        move |d: Delivery| {
            *effects
                .lock()
                .unwrap()
                .entry(d.envelope.event_id.clone())
                .or_default() += 1;
            async { Ok::<(), String>(()) }
        }
    };
    let workers: Vec<_> = [&first, &second]
        .into_iter()
        .map(|inbox| {
            let worker = inbox
                .worker(handler(effects.clone()))
                .concurrency(8)
                .poll_interval(Duration::from_millis(50));
            tokio::spawn(worker.run())
        })
        .collect();

    const EVENTS: usize = 1000;
    let stored = Arc::new(AtomicUsize::new(0));
    let duplicates = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(32));
    let mut sends = Vec::new();
    // Copy c of event e goes to replica (e + c) % 2, all interleaved.
    for copy in 0..3 {
        for e in 0..EVENTS {
            let inbox = if (e + copy) % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            let (clock, stored, duplicates, gate) = (
                clock.clone(),
                stored.clone(),
                duplicates.clone(),
                gate.clone(),
            );
            sends.push(tokio::spawn(async move {
                let _permit = gate.acquire().await.unwrap();
                match deliver(&inbox, &clock, &format!("evt_many_{e}")).await {
                    Reply::Queued => stored.fetch_add(1, Ordering::SeqCst),
                    Reply::AlreadyProcessed => duplicates.fetch_add(1, Ordering::SeqCst),
                    other => panic!("{other:?}"),
                };
            }));
        }
    }
    for send in sends {
        send.await.unwrap();
    }
    assert_eq!(stored.load(Ordering::SeqCst), EVENTS);
    assert_eq!(duplicates.load(Ordering::SeqCst), 2 * EVENTS);
    eventually("every event done", || {
        let first = first.clone();
        async move { first.counts().await.unwrap().get(&State::Done) == Some(&(EVENTS as u64)) }
    })
    .await;
    for worker in workers {
        worker.abort();
    }
    let effects = effects.lock().unwrap().clone();
    assert_eq!(effects.len(), EVENTS);
    assert!(effects.values().all(|&n| n == 1), "an effect ran twice");
    assert_eq!(
        first.counts().await.unwrap(),
        HashMap::from([(State::Done, EVENTS as u64)]),
        "nothing left running"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_handler_effect_is_exactly_once_after_a_killed_worker() {
    let Some((_db, inbox, clock)) = setup("transactional").await else {
        return;
    };
    let pool = pool(&inbox);
    sqlx::query("CREATE TABLE imports (event_id TEXT NOT NULL, rows BIGINT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    let id = deliver_stored(&inbox, &clock, "evt_tx").await;
    let started = Arc::new(Notify::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (started, calls) = (started.clone(), calls.clone());
        move |d: Delivery, mut tx: PgTransaction| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            let started = started.clone();
            async move {
                // The handler's own write, in the inbox's transaction (no unique key:
                // only the transaction keeps it from happening twice).
                sqlx::query("INSERT INTO imports (event_id, rows) VALUES ($1, 4821)")
                    .bind(&d.envelope.event_id)
                    .execute(&mut *tx)
                    .await?;
                if n == 0 {
                    // Wrote, then the worker dies before the commit.
                    started.notify_one();
                    std::future::pending::<()>().await;
                }
                Ok::<_, sqlx::Error>(tx)
            }
        }
    };
    let lease = Duration::from_secs(300);
    let worker = inbox
        .transactional_worker(handler.clone())
        .unwrap()
        .lease(lease)
        .poll_interval(Duration::from_millis(20));
    let task = tokio::spawn(worker.run());
    tokio::time::timeout(Duration::from_secs(30), started.notified())
        .await
        .expect("the handler started");

    // Past the lease, while the first worker is still stuck, the row is locked: no
    // other worker takes it.
    let second = inbox
        .transactional_worker(handler.clone())
        .unwrap()
        .lease(lease);
    clock.advance(lease + Duration::from_secs(1));
    assert_eq!(
        second.run_once().await.unwrap(),
        0,
        "locked by the running handler"
    );

    // The first worker dies mid-handler: its write is rolled back, the row unlocked.
    task.abort();
    let _ = task.await;
    let mut ran = 0;
    for _ in 0..250 {
        ran = second.run_once().await.unwrap();
        if ran == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        ran, 1,
        "claimed again once the dead worker's transaction ended"
    );
    let info = inbox.show(id).await.unwrap().info;
    assert_eq!((info.state, info.attempts), (State::Done, 2));
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM imports WHERE event_id = 'evt_tx'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 1, "the effect exactly once");

    // A handler error rolls its write back and schedules a retry.
    let id = deliver_stored(&inbox, &clock, "evt_tx_error").await;
    let failing = inbox
        .transactional_worker(|d: Delivery, mut tx: PgTransaction| async move {
            sqlx::query("INSERT INTO imports (event_id, rows) VALUES ($1, 1)")
                .bind(&d.envelope.event_id)
                .execute(&mut *tx)
                .await
                .map_err(|e| e.to_string())?;
            Err::<PgTransaction, _>("the export file is not ready".to_owned())
        })
        .unwrap();
    assert_eq!(failing.run_once().await.unwrap(), 1);
    let info = inbox.show(id).await.unwrap().info;
    assert_eq!(info.state, State::Pending);
    assert_eq!(
        info.last_error.as_deref(),
        Some("the export file is not ready")
    );
    let rows: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM imports WHERE event_id = 'evt_tx_error'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(rows, 0, "rolled back");
}

#[tokio::test]
async fn transactional_worker_needs_postgres() {
    let db = TestDb::open(Backend::Sqlite, "tx_sqlite").unwrap();
    let inbox = db.inbox(&ManualClock::at_secs(T0)).await;
    let refused = inbox
        .transactional_worker(|_d: Delivery, tx: PgTransaction| async move { Ok::<_, String>(tx) });
    assert!(refused.is_err());
}

/// Replicas whose clocks disagree time their leases on the database's clock: a replica
/// whose clock runs ten minutes ahead does not take over a delivery another replica is
/// still running. With leases on its own clock, it does (the hazard the default avoids).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_clock_runs_ahead_does_not_take_over_a_running_delivery() {
    let Some(db) = TestDb::open(Backend::Postgres, "lease_clock") else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let replica = |clock: Option<ManualClock>, lease_clock: Option<LeaseClock>| {
        let mut builder = Inbox::builder().acquire_timeout(Duration::from_secs(2));
        if let Some(clock) = clock {
            builder = builder.clock(clock);
        }
        if let Some(lease_clock) = lease_clock {
            builder = builder.lease_clock(lease_clock);
        }
        builder.connect(&db.url)
    };
    // Replica A: the system clock and the default lease clock (the database's).
    let a = replica(None, None).await.unwrap();
    let id = deliver_stored(&a, &ManualClock::at_secs(now), "evt_skew").await;
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let lease = Duration::from_secs(60);
    let worker = a
        .worker({
            let (started, release, runs) = (started.clone(), release.clone(), runs.clone());
            move |_d: Delivery| {
                let (started, release, runs) = (started.clone(), release.clone(), runs.clone());
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    started.notify_one();
                    release.notified().await;
                    Ok::<_, String>(())
                }
            }
        })
        .lease(lease)
        .handler_timeout(Duration::from_secs(30))
        .poll_interval(Duration::from_millis(20));
    let task = tokio::spawn(worker.run());
    tokio::time::timeout(Duration::from_secs(30), started.notified())
        .await
        .expect("replica A runs the delivery");

    // Replica B's clock runs ten minutes ahead, past A's lease.
    let ahead = ManualClock::at_secs(now + 600);
    let counting = |runs: Arc<AtomicUsize>| {
        move |_d: Delivery| {
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(())
            }
        }
    };
    let b = replica(Some(ahead.clone()), Some(LeaseClock::Database))
        .await
        .unwrap();
    let b_worker = b
        .worker(counting(runs.clone()))
        .lease(lease)
        .handler_timeout(Duration::from_secs(30));
    assert_eq!(
        b_worker.run_once().await.unwrap(),
        0,
        "a replica whose clock is ahead took over a running delivery"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    // The same replica timing leases on its own clock takes it over: two runs at once.
    let own = replica(Some(ahead), Some(LeaseClock::Inbox)).await.unwrap();
    let own_worker = own
        .worker(counting(runs.clone()))
        .lease(lease)
        .handler_timeout(Duration::from_secs(30));
    assert_eq!(own_worker.run_once().await.unwrap(), 1);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "the hazard LeaseClock::Database avoids"
    );

    release.notify_one();
    task.abort();
    let _ = task.await;
    assert_eq!(a.show(id).await.unwrap().info.state, State::Done);
}

/// The readiness check follows the database: `ping` answers while Postgres runs, fails
/// (within the acquire timeout) while it is stopped, and answers again once it is back,
/// without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_fails_while_postgres_is_down_and_answers_once_it_is_back() {
    let Some((mut db, inbox, _clock)) = setup("ping").await else {
        return;
    };
    inbox.ping().await.expect("Postgres is up");
    db.pg.as_mut().unwrap().stop();
    let down = tokio::time::timeout(Duration::from_secs(20), inbox.ping())
        .await
        .expect("answered within the acquire timeout");
    assert!(
        matches!(down, Err(mapping_webhooks_inbox::InboxError::Database(_))),
        "{down:?}"
    );
    db.pg.as_mut().unwrap().restart();
    let mut up = inbox.ping().await;
    for _ in 0..50 {
        if up.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        up = inbox.ping().await;
    }
    up.expect("Postgres is back");
}
