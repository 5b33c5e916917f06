//! The inbox at scale, on real databases: group commit on the accept path (fewer commits
//! than deliveries, each request answered once its own row is committed), batched
//! "done" marks in the worker (fewer write transactions than deliveries), and an idle
//! worker woken by Postgres's `NOTIFY` from another pool instead of its next poll.
//!
//! Commits are counted on Postgres as transaction ids: each write transaction takes one
//! (`pg_current_xact_id()` before and after), read-only ones take none.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mapping_webhooks::{ManualClock, Reply};
use mapping_webhooks_inbox::{Attempt, AttemptResult, Db, Delivery, Inbox, State, WorkerObserver};
use support::{Backend, T0, TestDb, deliver, eventually};

/// The database's next transaction id (taking one, for itself).
async fn next_xid(inbox: &Inbox) -> i64 {
    match inbox.db() {
        Db::Postgres(pool) => sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
            .fetch_one(pool)
            .await
            .unwrap(),
        _ => unreachable!("a Postgres inbox"),
    }
}

/// 400 requests at once, each of 200 events twice (the second copies in the reverse
/// order): each event is answered 202 once and 200 once, every row is there, and (on
/// Postgres) they took far fewer write transactions than rows.
///
/// Before each batch sorted its rows, two batches in flight could deadlock on Postgres
/// (each holding a row the other wanted), and every request in the aborted one got 503.
async fn concurrent_deliveries_share_commits_and_each_event_is_stored_once(backend: Backend) {
    let Some(db) = TestDb::open(backend, "group_commit") else {
        return;
    };
    let clock = ManualClock::at_secs(T0);
    let inbox = db.inbox(&clock).await;
    const EVENTS: usize = 200;
    let before = match backend {
        Backend::Postgres => Some(next_xid(&inbox).await),
        Backend::Sqlite => None,
    };
    let mut sends = Vec::new();
    for copy in 0..2 {
        for e in 0..EVENTS {
            // The second copies arrive in the reverse order: two batches in flight at
            // once then hold one event's row each and want the other's.
            let e = if copy == 0 { e } else { EVENTS - 1 - e };
            let (inbox, clock) = (inbox.clone(), clock.clone());
            sends.push(tokio::spawn(async move {
                let event_id = format!("evt_group_{e}");
                let reply = deliver(&inbox, &clock, &event_id).await;
                (event_id, copy, reply)
            }));
        }
    }
    let mut answers: HashMap<String, Vec<Reply>> = HashMap::new();
    for send in sends {
        let (event_id, _copy, reply) = send.await.unwrap();
        answers.entry(event_id).or_default().push(reply);
    }
    let after = match backend {
        Backend::Postgres => Some(next_xid(&inbox).await),
        Backend::Sqlite => None,
    };
    assert_eq!(answers.len(), EVENTS);
    for (event_id, replies) in &answers {
        let queued = replies.iter().filter(|r| **r == Reply::Queued).count();
        let duplicate = replies
            .iter()
            .filter(|r| **r == Reply::AlreadyProcessed)
            .count();
        assert_eq!(
            (queued, duplicate),
            (1, 1),
            "{event_id}: one 202 and one 200, not {replies:?}"
        );
    }
    assert_eq!(
        inbox.counts().await.unwrap(),
        HashMap::from([(State::Pending, EVENTS as u64)])
    );
    if let (Some(before), Some(after)) = (before, after) {
        // One for the second probe itself.
        let writes = after - before - 1;
        eprintln!(
            "{} requests stored {EVENTS} rows in {writes} write transactions",
            2 * EVENTS
        );
        assert!(
            writes < (EVENTS / 2) as i64,
            "{writes} write transactions for {EVENTS} rows: the accept path does not group its commits"
        );
    }
    inbox.close().await;
}

/// Stores `n` distinct deliveries.
async fn store_many(inbox: &Inbox, clock: &ManualClock, tag: &str, n: usize) {
    for e in 0..n {
        assert_eq!(
            deliver(inbox, clock, &format!("evt_{tag}_{e}")).await,
            Reply::Queued
        );
    }
}

/// Counts the attempts by result.
#[derive(Clone, Default)]
struct Results(Arc<Mutex<HashMap<AttemptResult, usize>>>);

impl WorkerObserver for Results {
    fn attempt(&self, attempt: Attempt) {
        *self.0.lock().unwrap().entry(attempt.result).or_default() += 1;
    }
}

/// Runs a worker of `concurrency` slots, whose handler counts its runs per event, until
/// `n` deliveries are done; returns each event's runs and the attempts by result.
async fn run_counting(
    inbox: &Inbox,
    n: usize,
    concurrency: usize,
) -> (HashMap<String, usize>, HashMap<AttemptResult, usize>) {
    let runs: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let results = Results::default();
    let worker = {
        let runs = runs.clone();
        inbox
            .worker(move |d: Delivery| {
                *runs
                    .lock()
                    .unwrap()
                    .entry(d.envelope.event_id.clone())
                    .or_default() += 1;
                async {
                    tokio::task::yield_now().await;
                    Ok::<(), String>(())
                }
            })
            .concurrency(concurrency)
            .retention(None)
            .observer(results.clone())
            .poll_interval(Duration::from_millis(20))
    };
    let task = tokio::spawn(worker.run());
    eventually("every delivery done", || {
        let inbox = inbox.clone();
        async move { inbox.counts().await.unwrap().get(&State::Done) == Some(&(n as u64)) }
    })
    .await;
    task.abort();
    let _ = task.await;
    let runs = runs.lock().unwrap().clone();
    let results = results.0.lock().unwrap().clone();
    (runs, results)
}

/// A running worker with a no-op handler marks 300 deliveries done in far fewer write
/// transactions than deliveries (claims and "done" marks in batches); every delivery is
/// done and its handler ran once.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_claims_and_acknowledges_in_batches() {
    let Some(db) = TestDb::open(Backend::Postgres, "worker_batches") else {
        return;
    };
    let clock = ManualClock::at_secs(T0);
    let inbox = db.inbox(&clock).await;
    const EVENTS: usize = 300;
    store_many(&inbox, &clock, "batch", EVENTS).await;
    let before = next_xid(&inbox).await;
    let (runs, _) = run_counting(&inbox, EVENTS, 32).await;
    let writes = next_xid(&inbox).await - before - 1;
    assert_eq!(runs.len(), EVENTS);
    assert!(runs.values().all(|&n| n == 1), "a handler ran twice");
    eprintln!("the worker processed {EVENTS} deliveries in {writes} write transactions");
    assert!(
        writes < (EVENTS / 2) as i64,
        "{writes} write transactions for {EVENTS} deliveries: claims and done marks are not batched"
    );
    inbox.close().await;
}

/// A busy worker runs two claims at once (the second while the first one's rows come
/// back): with 1,000 deliveries and 64 slots, each handler runs once and each attempt
/// is recorded done; none finds its lease taken by the other claim.
async fn overlapping_claims_run_each_delivery_once(backend: Backend) {
    let Some(db) = TestDb::open(backend, "overlapping_claims") else {
        return;
    };
    let clock = ManualClock::at_secs(T0);
    let inbox = db.inbox(&clock).await;
    const EVENTS: usize = 1000;
    store_many(&inbox, &clock, "overlap", EVENTS).await;
    let (runs, results) = run_counting(&inbox, EVENTS, 64).await;
    assert_eq!(runs.len(), EVENTS);
    assert!(runs.values().all(|&n| n == 1), "a handler ran twice");
    assert_eq!(results, HashMap::from([(AttemptResult::Done, EVENTS)]));
    inbox.close().await;
}

/// An idle worker on its own pool (as in another process), polling only every 60 s,
/// starts each delivery stored through another pool at once: Postgres notifies it.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_elsewhere_is_woken_by_notify_not_its_poll() {
    let Some(db) = TestDb::open(Backend::Postgres, "notify") else {
        return;
    };
    let clock = ManualClock::at_secs(T0);
    let accepting = db.inbox(&clock).await;
    let working = db.inbox(&clock).await;
    let (started, mut starts) = tokio::sync::mpsc::unbounded_channel::<String>();
    let worker = working
        .worker(move |d: Delivery| {
            let _ = started.send(d.envelope.event_id.clone());
            async { Ok::<(), String>(()) }
        })
        .poll_interval(Duration::from_secs(60));
    let task = tokio::spawn(worker.run());
    // The worker's first look (nothing due) and its LISTEN.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..3 {
        let event_id = format!("evt_notify_{i}");
        assert_eq!(deliver(&accepting, &clock, &event_id).await, Reply::Queued);
        let ran = tokio::time::timeout(Duration::from_secs(10), starts.recv()).await;
        assert_eq!(
            ran.ok().flatten().as_deref(),
            Some(event_id.as_str()),
            "delivery {i} was not started within 10 s by an idle worker polling every 60 s"
        );
    }
    task.abort();
    let _ = task.await;
}

on_both!(
    concurrent_deliveries_share_commits_and_each_event_is_stored_once,
    overlapping_claims_run_each_delivery_once,
);
