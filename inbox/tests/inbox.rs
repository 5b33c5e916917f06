//! The inbox against real databases: SQLite in a temporary file and a Postgres server
//! started by the test. Time is driven with a manual clock wherever the inbox reads it
//! (retry schedules, leases, retention); only handler deadlines use real time.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mapping_webhooks::{Clock, Gate, ManualClock, Reply, Secret, Secrets};
use mapping_webhooks_inbox::{Delivery, Event, Inbox, State, UnsignedHeaders};
use support::{
    Backend, PREVIOUS_SECRET, SECRET, T0, TestDb, accept, deliver, deliver_stored, envelope,
    eventually, sign, stored_id,
};
use tokio::sync::Notify;

on_both!(
    accept_stores_the_delivery_and_duplicates_are_200,
    refusals_store_nothing,
    failing_handler_is_retried_on_schedule_then_dead_then_replayed,
    backoff_has_jitter_within_bounds,
    panic_is_retried_after_the_lease,
    hang_is_stopped_and_retried_after_the_lease,
    killed_worker_delivery_is_claimed_again_after_the_lease,
    shutdown_lets_running_handlers_finish_and_releases_the_rest,
    list_show_purge_and_prune,
    reverify_proves_the_stored_bytes,
    worker_run_processes_what_is_accepted,
    a_clock_stepped_past_the_lease_never_runs_a_delivery_twice_at_once,
    hanging_retries_do_not_keep_new_deliveries_waiting,
    one_pool_serves_several_inboxes_and_ping_fails_once_it_is_closed,
);

async fn setup(backend: Backend, test: &str) -> Option<(TestDb, Inbox, ManualClock)> {
    let db = TestDb::open(backend, test)?;
    let clock = ManualClock::at_secs(T0);
    let inbox = db.inbox(&clock).await;
    Some((db, inbox, clock))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap()
}

async fn accept_stores_the_delivery_and_duplicates_are_200(backend: Backend) {
    let Some((_db, inbox, clock)) = setup(backend, "accept_stores").await else {
        return;
    };
    let body = envelope("evt_store", "del_first");
    let header = sign(SECRET, &body, T0);
    let answer = accept(&inbox, &clock, [header.as_bytes()], &body).await;
    assert_eq!(answer.status(), 202);
    let id = stored_id(&inbox, answer, "evt_store").await;

    let stored = inbox.show(id).await.unwrap();
    assert_eq!(stored.body, body, "the raw bytes, unchanged");
    assert_eq!(stored.signature, header);
    let info = &stored.info;
    assert_eq!(info.event_id, "evt_store");
    assert_eq!(info.event_type, "mapping.completed");
    assert_eq!(info.delivery_id, "del_first");
    assert_eq!(info.signed_at, T0);
    assert_eq!(info.secret, "current");
    assert_eq!(info.received_at_ms, ms(Duration::from_secs(T0)));
    assert_eq!(info.state, State::Pending);
    assert_eq!(info.attempts, 0);

    // A retry of the same event (new delivery id, new signature time) is acknowledged.
    clock.advance(Duration::from_secs(60));
    let retry = envelope("evt_store", "del_second");
    let header = sign(SECRET, &retry, clock.now_secs());
    let again = accept(&inbox, &clock, [header.as_bytes()], &retry).await;
    assert_eq!(again, Reply::AlreadyProcessed);
    assert_eq!(
        (again.status(), again.reason()),
        (200, "event already received")
    );
    assert_eq!(
        inbox.counts().await.unwrap(),
        HashMap::from([(State::Pending, 1)])
    );
    assert_eq!(inbox.show(id).await.unwrap().info.delivery_id, "del_first");

    // The previous secret is accepted during a rotation and recorded as such.
    let rotating = Gate::builder()
        .secret(SECRET)
        .previous_secret(PREVIOUS_SECRET)
        .clock(clock.clone())
        .without_dedup()
        .build()
        .unwrap();
    let body = envelope("evt_old_secret", "del_1");
    let header = sign(PREVIOUS_SECRET, &body, clock.now_secs());
    let answer = rotating
        .admit_into(
            &inbox,
            [header.as_bytes()],
            UnsignedHeaders::default(),
            &body,
        )
        .await;
    let id = stored_id(&inbox, answer, "evt_old_secret").await;
    assert_eq!(inbox.show(id).await.unwrap().info.secret, "previous[0]");

    // Another namespace is another inbox in the same table.
    let other = Inbox::builder()
        .namespace("orders")
        .clock(clock.clone())
        .connect(&_db.url)
        .await
        .unwrap();
    assert!(matches!(
        deliver(&other, &clock, "evt_store").await,
        Reply::Queued
    ));
    assert!(matches!(
        other.show(id).await,
        Err(mapping_webhooks_inbox::InboxError::NotFound(_))
    ));
}

async fn refusals_store_nothing(backend: Backend) {
    let Some((_db, inbox, clock)) = setup(backend, "refusals").await else {
        return;
    };
    let body = envelope("evt_refused", "del_1");
    let good = sign(SECRET, &body, T0);
    // (signature headers, body, expected status)
    type Case<'a> = (Vec<&'a [u8]>, Vec<u8>, u16);
    let cases: Vec<Case<'_>> = vec![
        (vec![], body.clone(), 400),
        (vec![good.as_bytes(), good.as_bytes()], body.clone(), 400),
        (vec![b"t=1,v1=zz"], body.clone(), 400),
        (vec![good.as_bytes()], envelope("evt_other", "del_1"), 401),
    ];
    for (headers, body, status) in cases {
        let answer = accept(&inbox, &clock, headers, &body).await;
        assert_eq!(answer.status(), status, "{answer:?}");
    }
    let wrong = sign("whsec_wrong_secret_0123456789abcdef", &body, T0);
    let stale = sign(SECRET, &body, T0 - 301);
    for header in [wrong, stale] {
        let answer = accept(&inbox, &clock, [header.as_bytes()], &body).await;
        assert_eq!(answer.status(), 401, "{answer:?}");
    }
    // A signed body that is not an envelope.
    let not_envelope = br#"{"type":"x"}"#;
    let header = sign(SECRET, not_envelope, clock.now_secs());
    let answer = accept(&inbox, &clock, [header.as_bytes()], not_envelope).await;
    assert_eq!(answer.status(), 400);
    assert!(inbox.counts().await.unwrap().is_empty(), "nothing stored");
}

/// A handler that fails while `fail` is set, recording each attempt it saw.
#[derive(Clone, Default)]
struct Flaky {
    fail: Arc<std::sync::atomic::AtomicBool>,
    attempts: Arc<Mutex<Vec<(String, u32)>>>,
}

impl Flaky {
    fn failing() -> Self {
        let flaky = Self::default();
        flaky.fail.store(true, Ordering::SeqCst);
        flaky
    }

    fn handler(
        &self,
    ) -> impl Fn(Delivery) -> std::future::Ready<Result<(), String>> + Send + Sync + 'static {
        let this = self.clone();
        move |delivery: Delivery| {
            // The handler gets the typed event.
            let Ok(Event::MappingCompleted(done)) = delivery.event() else {
                return std::future::ready(Err("not a typed mapping.completed".into()));
            };
            assert_eq!(done.row_count, 4821);
            this.attempts
                .lock()
                .unwrap()
                .push((delivery.envelope.event_id.clone(), delivery.attempt));
            std::future::ready(if this.fail.load(Ordering::SeqCst) {
                Err(format!("import failed on attempt {}", delivery.attempt))
            } else {
                Ok(())
            })
        }
    }
}

async fn failing_handler_is_retried_on_schedule_then_dead_then_replayed(backend: Backend) {
    let Some((_db, inbox, clock)) = setup(backend, "retry_schedule").await else {
        return;
    };
    let id = deliver_stored(&inbox, &clock, "evt_flaky").await;
    let flaky = Flaky::failing();
    let worker = inbox
        .worker(flaky.handler())
        .max_attempts(3)
        .backoff(Duration::from_secs(10), Duration::from_secs(3600))
        .jitter(0.0);

    // Attempt 1 fails: due again in 10 s.
    assert_eq!(worker.run_once().await.unwrap(), 1);
    let info = inbox.show(id).await.unwrap().info;
    assert_eq!(info.state, State::Pending);
    assert_eq!(info.attempts, 1);
    assert_eq!(info.due_at_ms, ms(Duration::from_secs(T0 + 10)));
    assert_eq!(
        info.last_error.as_deref(),
        Some("import failed on attempt 1")
    );

    // Not before its time.
    clock.advance(Duration::from_millis(9_999));
    assert_eq!(worker.run_once().await.unwrap(), 0);
    clock.advance(Duration::from_millis(1));
    assert_eq!(worker.run_once().await.unwrap(), 1);
    // Attempt 2 fails: due again 20 s later (doubling).
    let info = inbox.show(id).await.unwrap().info;
    assert_eq!(info.due_at_ms, ms(Duration::from_secs(T0 + 10 + 20)));
    clock.advance(Duration::from_secs(19));
    assert_eq!(worker.run_once().await.unwrap(), 0);
    clock.advance(Duration::from_secs(1));
    assert_eq!(worker.run_once().await.unwrap(), 1);

    // Attempt 3 was the last: dead, kept with its error, never run again.
    let info = inbox.show(id).await.unwrap().info;
    assert_eq!(info.state, State::Dead);
    assert_eq!(info.attempts, 3);
    assert_eq!(
        info.last_error.as_deref(),
        Some("import failed on attempt 3")
    );
    clock.advance(Duration::from_secs(365 * 24 * 3600));
    assert_eq!(worker.run_once().await.unwrap(), 0);
    assert_eq!(
        inbox.prune(Duration::from_secs(1)).await.unwrap(),
        0,
        "dead is kept"
    );
    assert_eq!(inbox.list(State::Dead, 0, 10).await.unwrap().len(), 1);

    // Fixed and replayed: attempt 1 again, and done.
    flaky.fail.store(false, Ordering::SeqCst);
    assert_eq!(inbox.replay_dead().await.unwrap(), 1);
    assert_eq!(inbox.show(id).await.unwrap().info.state, State::Pending);
    assert_eq!(worker.run_once().await.unwrap(), 1);
    let info = inbox.show(id).await.unwrap().info;
    assert_eq!(info.state, State::Done);
    assert_eq!(info.last_error, None);
    assert_eq!(
        *flaky.attempts.lock().unwrap(),
        [1, 2, 3, 1].map(|n| ("evt_flaky".to_owned(), n))
    );
    assert_eq!(
        worker.run_once().await.unwrap(),
        0,
        "done is never run again"
    );

    // One replayed by id runs again too.
    assert!(inbox.replay(id).await.unwrap());
    assert_eq!(worker.run_once().await.unwrap(), 1);
    assert_eq!(flaky.attempts.lock().unwrap().len(), 5);
}

async fn backoff_has_jitter_within_bounds(backend: Backend) {
    let Some((_db, inbox, clock)) = setup(backend, "jitter").await else {
        return;
    };
    let flaky = Flaky::failing();
    let worker = inbox
        .worker(flaky.handler())
        .concurrency(20)
        .backoff(Duration::from_secs(100), Duration::from_secs(3600))
        .jitter(0.5);
    for i in 0..20 {
        deliver(&inbox, &clock, &format!("evt_jitter_{i}")).await;
    }
    assert_eq!(worker.run_once().await.unwrap(), 20);
    let due: Vec<i64> = inbox
        .list(State::Pending, 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|d| d.due_at_ms - ms(Duration::from_secs(T0)))
        .collect();
    assert_eq!(due.len(), 20);
    assert!(
        due.iter().all(|d| (50_000..=100_000).contains(d)),
        "{due:?}"
    );
    let distinct: std::collections::HashSet<_> = due.iter().collect();
    assert!(distinct.len() > 10, "the retries spread out: {due:?}");
}

async fn panic_is_retried_after_the_lease(backend: Backend) {
    let Some((_db, inbox, clock)) = setup(backend, "panic").await else {
        return;
    };
    let id = deliver_stored(&inbox, &clock, "evt_panic").await;
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let worker = inbox
        .worker(move |_d: Delivery| {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            async move {
                assert!(n > 0, "the handler panics on purpose");
                Ok::<(), String>(())
            }
        })
        .lease(Duration::from_secs(60))
        .handler_timeout(Duration::from_secs(5));
    assert_eq!(worker.run_once().await.unwrap(), 1);
    let info = inbox.show(id).await.unwrap().info;
    assert_eq!(info.state, State::Pending);
    assert_eq!(
        info.due_at_ms,
        ms(Duration::from_secs(T0 + 60)),
        "after the lease"
    );
    assert!(
        info.last_error.as_deref().unwrap().contains("panicked"),
        "{:?}",
        info.last_error
    );
    clock.advance(Duration::from_secs(59));
    assert_eq!(worker.run_once().await.unwrap(), 0);
    clock.advance(Duration::from_secs(1));
    assert_eq!(worker.run_once().await.unwrap(), 1);
    assert_eq!(inbox.show(id).await.unwrap().info.state, State::Done);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

async fn hang_is_stopped_and_retried_after_the_lease(backend: Backend) {
    let Some((_db, inbox, clock)) = setup(backend, "hang").await else {
        return;
    };
    let id = deliver_stored(&inbox, &clock, "evt_hang").await;
    let calls = Arc::new(AtomicUsize::new(0));
    let cancelled = Arc::new(AtomicUsize::new(0));
    let (seen, dropped) = (Arc::clone(&calls), Arc::clone(&cancelled));
    let worker = inbox
        .worker(move |_d: Delivery| {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let guard = DropCounter(Arc::clone(&dropped));
            async move {
                if n == 0 {
                    std::future::pending::<()>().await;
                }
                std::mem::forget(guard);
                Ok::<(), String>(())
            }
        })
        .lease(Duration::from_secs(60))
        .handler_timeout(Duration::from_millis(300));
    assert_eq!(worker.run_once().await.unwrap(), 1);
    let info = inbox.show(id).await.unwrap().info;
    assert_eq!(info.state, State::Pending);
    assert_eq!(info.due_at_ms, ms(Duration::from_secs(T0 + 60)));
    assert!(info.last_error.as_deref().unwrap().contains("deadline"));
    assert_eq!(
        cancelled.load(Ordering::SeqCst),
        1,
        "the hung handler was stopped"
    );
    clock.advance(Duration::from_secs(60));
    assert_eq!(worker.run_once().await.unwrap(), 1);
    assert_eq!(inbox.show(id).await.unwrap().info.state, State::Done);
}

struct DropCounter(Arc<AtomicUsize>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

async fn killed_worker_delivery_is_claimed_again_after_the_lease(backend: Backend) {
    let Some((_db, inbox, clock)) = setup(backend, "killed_worker").await else {
        return;
    };
    let id = deliver_stored(&inbox, &clock, "evt_killed").await;
    let started = Arc::new(Notify::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let cancelled = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (started, calls, cancelled) = (started.clone(), calls.clone(), cancelled.clone());
        move |_d: Delivery| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            let (started, guard) = (started.clone(), DropCounter(cancelled.clone()));
            async move {
                if n == 0 {
                    started.notify_one();
                    std::future::pending::<()>().await;
                }
                std::mem::forget(guard);
                Ok::<(), String>(())
            }
        }
    };
    let worker = inbox
        .worker(handler.clone())
        .lease(Duration::from_secs(300))
        .handler_timeout(Duration::from_secs(120))
        .poll_interval(Duration::from_millis(20));
    let task = tokio::spawn(worker.run());
    tokio::time::timeout(Duration::from_secs(30), started.notified())
        .await
        .expect("the handler started");
    // The worker dies mid-handler.
    task.abort();
    let _ = task.await;
    eventually("the aborted handler is dropped", || {
        let n = cancelled.load(Ordering::SeqCst);
        async move { n == 1 }
    })
    .await;
    let info = inbox.show(id).await.unwrap().info;
    assert_eq!(info.state, State::Running);
    assert_eq!(info.attempts, 1);

    let next = inbox.worker(handler).lease(Duration::from_secs(300));
    clock.advance(Duration::from_secs(299));
    assert_eq!(next.run_once().await.unwrap(), 0, "the lease holds");
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        next.run_once().await.unwrap(),
        1,
        "claimed again after the lease"
    );
    let info = inbox.show(id).await.unwrap().info;
    assert_eq!((info.state, info.attempts), (State::Done, 2));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

async fn shutdown_lets_running_handlers_finish_and_releases_the_rest(backend: Backend) {
    let Some((_db, inbox, clock)) = setup(backend, "shutdown").await else {
        return;
    };
    let quick = deliver_stored(&inbox, &clock, "evt_quick").await;
    let stuck = deliver_stored(&inbox, &clock, "evt_stuck").await;
    let started = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(Notify::new());
    let (seen, stop_signal) = (started.clone(), stop.clone());
    let worker = inbox
        .worker(move |d: Delivery| {
            seen.fetch_add(1, Ordering::SeqCst);
            async move {
                if d.envelope.event_id == "evt_stuck" {
                    std::future::pending::<()>().await;
                } else {
                    // Still running when shutdown starts; finishes within the grace.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Ok::<(), String>(())
            }
        })
        .concurrency(2)
        .shutdown_timeout(Duration::from_secs(2))
        .poll_interval(Duration::from_millis(20));
    let task = tokio::spawn(worker.run_until(async move { stop_signal.notified().await }));
    eventually("both handlers started", || {
        let n = started.load(Ordering::SeqCst);
        async move { n == 2 }
    })
    .await;
    stop.notify_one();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("shutdown is bounded")
        .unwrap()
        .unwrap();
    assert_eq!(inbox.show(quick).await.unwrap().info.state, State::Done);
    let info = inbox.show(stuck).await.unwrap().info;
    assert_eq!(info.state, State::Pending, "released for the next worker");
    assert_eq!(info.attempts, 0, "a released attempt does not count");
    assert_eq!(info.due_at_ms, ms(Duration::from_secs(T0)));
}

async fn list_show_purge_and_prune(backend: Backend) {
    let Some((_db, inbox, clock)) = setup(backend, "operate").await else {
        return;
    };
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = deliver_stored(&inbox, &clock, &format!("evt_op_{i}")).await;
        ids.push(id);
    }
    // Pages of two, in id order.
    let first = inbox.list(State::Pending, 0, 2).await.unwrap();
    let second = inbox.list(State::Pending, first[1].id, 2).await.unwrap();
    let third = inbox.list(State::Pending, second[1].id, 2).await.unwrap();
    let listed: Vec<i64> = [first, second, third]
        .concat()
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(listed, ids);
    assert_eq!(
        inbox.find("evt_op_3").await.unwrap().unwrap().info.id,
        ids[3]
    );
    assert!(inbox.find("evt_nope").await.unwrap().is_none());

    // Process all; then the retention prunes done ones only.
    let worker = inbox.worker(|_d: Delivery| async { Ok::<(), String>(()) });
    assert_eq!(worker.run_once().await.unwrap(), 5);
    assert_eq!(
        inbox.counts().await.unwrap(),
        HashMap::from([(State::Done, 5)])
    );
    assert!(inbox.purge(ids[0]).await.unwrap());
    assert!(matches!(
        inbox.show(ids[0]).await,
        Err(mapping_webhooks_inbox::InboxError::NotFound(_))
    ));
    // A purged event is new again.
    assert!(matches!(
        deliver(&inbox, &clock, "evt_op_0").await,
        Reply::Queued
    ));
    clock.advance(Duration::from_secs(29 * 24 * 3600));
    assert_eq!(
        inbox
            .prune(mapping_webhooks_inbox::DEFAULT_RETENTION)
            .await
            .unwrap(),
        0
    );
    clock.advance(Duration::from_secs(24 * 3600 + 1));
    assert_eq!(
        inbox
            .prune(mapping_webhooks_inbox::DEFAULT_RETENTION)
            .await
            .unwrap(),
        4
    );
    assert_eq!(
        inbox.counts().await.unwrap(),
        HashMap::from([(State::Pending, 1)])
    );
    assert_eq!(inbox.purge_state(State::Pending).await.unwrap(), 1);
    assert!(inbox.purge_state(State::Running).await.is_err());
}

async fn reverify_proves_the_stored_bytes(backend: Backend) {
    let Some((_db, inbox, clock)) = setup(backend, "reverify").await else {
        return;
    };
    let id = deliver_stored(&inbox, &clock, "evt_reverify").await;
    // Long after the signature window, the stored delivery still verifies as of its t.
    clock.advance(Duration::from_secs(90 * 24 * 3600));
    let secrets = support::gate(&clock).secrets().clone();
    let verified = inbox.reverify(id, &secrets).await.unwrap();
    assert_eq!(verified.event_id, "evt_reverify");
    assert_eq!(verified.timestamp, T0);

    // With another secret it does not.
    let other = Secrets::new(Secret::new("whsec_another_secret_0123456789abcdef").unwrap());
    assert!(matches!(
        inbox.reverify(id, &other).await,
        Err(mapping_webhooks_inbox::InboxError::Verify(_))
    ));

    // A tampered row does not either.
    let tamper = "UPDATE mapping_webhooks_inbox SET body = $1 WHERE id = $2";
    let altered = envelope("evt_reverify", "del_changed");
    match inbox.db() {
        mapping_webhooks_inbox::Db::Sqlite(pool) => {
            sqlx::query(tamper)
                .bind(&altered)
                .bind(id)
                .execute(pool)
                .await
                .unwrap();
        }
        #[cfg(feature = "postgres")]
        mapping_webhooks_inbox::Db::Postgres(pool) => {
            sqlx::query(tamper)
                .bind(&altered)
                .bind(id)
                .execute(pool)
                .await
                .unwrap();
        }
        _ => unreachable!(),
    }
    assert!(matches!(
        inbox.reverify(id, &secrets).await,
        Err(mapping_webhooks_inbox::InboxError::Verify(_))
    ));
}

async fn worker_run_processes_what_is_accepted(backend: Backend) {
    let Some((_db, inbox, clock)) = setup(backend, "run").await else {
        return;
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let worker = inbox
        .worker(move |d: Delivery| {
            record.lock().unwrap().push(d.envelope.event_id.clone());
            async { Ok::<(), String>(()) }
        })
        // Long poll: the accepted deliveries wake the worker.
        .poll_interval(Duration::from_secs(3600));
    let task = tokio::spawn(worker.run());
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..20 {
        deliver(&inbox, &clock, &format!("evt_run_{i}")).await;
    }
    eventually("20 processed", || {
        let inbox = inbox.clone();
        async move { inbox.counts().await.unwrap().get(&State::Done) == Some(&20) }
    })
    .await;
    task.abort();
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 20);
}

#[tokio::test]
async fn sqlite_is_in_wal_with_full_sync() {
    let db = TestDb::open(Backend::Sqlite, "pragmas").unwrap();
    let inbox = db.inbox(&ManualClock::at_secs(T0)).await;
    let mapping_webhooks_inbox::Db::Sqlite(pool) = inbox.db() else {
        unreachable!()
    };
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(pool)
        .await
        .unwrap();
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(
        (mode.as_str(), sync),
        ("wal", 2),
        "WAL with synchronous=FULL"
    );
}

#[tokio::test]
async fn secrets_and_passwords_stay_out_of_debug_and_errors() {
    const PASSWORD: &str = "hunter2_db_password";
    for url in [
        format!("postgres://app:{PASSWORD}@127.0.0.1:1/webhooks"),
        format!("postgres://app:{PASSWORD}@[not-an-address/webhooks"),
        format!("mysql://app:{PASSWORD}@127.0.0.1/webhooks"),
    ] {
        let err = Inbox::builder()
            .acquire_timeout(Duration::from_secs(2))
            .connect(&url)
            .await
            .expect_err("nothing listens there");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(PASSWORD), "{shown}");
        // The same through the pool's own constructor.
        let err = mapping_webhooks_inbox::Db::options()
            .acquire_timeout(Duration::from_secs(2))
            .connect(&url)
            .await
            .expect_err("nothing listens there");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(PASSWORD), "{shown}");
    }
    let db = TestDb::open(Backend::Sqlite, "hygiene").unwrap();
    let inbox = db.inbox(&ManualClock::at_secs(T0)).await;
    let shown = format!("{inbox:?}");
    assert!(!shown.contains(&SECRET[10..]), "{shown}");
}

/// Per event: runs going now, the most at once, runs in all.
type Runs = Arc<Mutex<HashMap<String, (usize, usize, usize)>>>;

/// The wall clock steps forward past the lease while a handler runs: the worker's next
/// claim (for a new delivery) does not take the running one back.
async fn a_clock_stepped_past_the_lease_never_runs_a_delivery_twice_at_once(backend: Backend) {
    let Some((_db, inbox, clock)) = setup(backend, "clock_step").await else {
        return;
    };
    let step = deliver_stored(&inbox, &clock, "evt_step").await;
    let runs: Runs = Arc::default();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (seen, held) = (Arc::clone(&runs), Arc::clone(&gate));
    let worker = inbox
        .worker(move |d: Delivery| {
            let (seen, held) = (Arc::clone(&seen), Arc::clone(&held));
            async move {
                let event = d.envelope.event_id.clone();
                {
                    let mut runs = seen.lock().unwrap();
                    let entry = runs.entry(event.clone()).or_default();
                    entry.0 += 1;
                    entry.1 = entry.1.max(entry.0);
                    entry.2 += 1;
                }
                if event == "evt_step" {
                    held.acquire().await.unwrap().forget();
                }
                seen.lock().unwrap().get_mut(&event).unwrap().0 -= 1;
                Ok::<(), String>(())
            }
        })
        .lease(Duration::from_secs(60))
        .handler_timeout(Duration::from_secs(30))
        .poll_interval(Duration::from_millis(20));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run_until(async move {
        let _ = stopped.await;
    }));
    eventually("the first run", || async {
        runs.lock().unwrap().get("evt_step").map(|r| r.0) == Some(1)
    })
    .await;
    // Past the lease's end, by the wall clock; the handler's own deadline (monotonic)
    // is far away.
    clock.advance(Duration::from_secs(120));
    let after = deliver_stored(&inbox, &clock, "evt_after").await;
    // A claim ran after the step: it took the new delivery.
    eventually("the new delivery done", || async {
        inbox.show(after).await.unwrap().info.state == State::Done
    })
    .await;
    let attempts = inbox.show(step).await.unwrap().info.attempts;
    gate.add_permits(10);
    eventually("the stepped delivery done", || async {
        inbox.show(step).await.unwrap().info.state == State::Done
    })
    .await;
    let _ = stop.send(());
    running.await.unwrap().unwrap();
    let (_, most, total) = runs.lock().unwrap()["evt_step"];
    assert_eq!(
        (attempts, most, total),
        (1, 1, 1),
        "(attempts when the new delivery was done, most runs at once, runs in all)"
    );
}

/// Four deliveries whose handler hangs are stopped at the deadline and due again at
/// their lease's end; two new deliveries accepted after that are claimed first.
async fn hanging_retries_do_not_keep_new_deliveries_waiting(backend: Backend) {
    let Some((_db, inbox, clock)) = setup(backend, "hanging_retries").await else {
        return;
    };
    for i in 0..4 {
        deliver(&inbox, &clock, &format!("evt_hang_{i}")).await;
    }
    let done = Arc::new(Mutex::new(Vec::<String>::new()));
    let worker = |concurrency: usize| {
        let done = Arc::clone(&done);
        inbox
            .worker(move |d: Delivery| {
                let done = Arc::clone(&done);
                async move {
                    if d.envelope.event_id.starts_with("evt_hang") {
                        std::future::pending::<()>().await;
                    }
                    done.lock().unwrap().push(d.envelope.event_id);
                    Ok::<(), String>(())
                }
            })
            .concurrency(concurrency)
            .lease(Duration::from_secs(60))
            .handler_timeout(Duration::from_millis(200))
    };
    assert_eq!(worker(4).run_once().await.unwrap(), 4, "four hang");
    clock.advance(Duration::from_secs(61));
    let mut fresh = Vec::new();
    for i in 0..2 {
        let id = deliver_stored(&inbox, &clock, &format!("evt_new_{i}")).await;
        fresh.push(id);
    }
    // Two slots, four retries due before the new deliveries: the new ones go first.
    let small = worker(2);
    assert_eq!(small.run_once().await.unwrap(), 2);
    let mut states = Vec::new();
    for id in &fresh {
        states.push(inbox.show(*id).await.unwrap().info.state);
    }
    assert_eq!(
        states,
        [State::Done, State::Done],
        "processed: {:?}",
        done.lock().unwrap()
    );
    // The retries are not starved: the next claim takes them.
    assert_eq!(small.run_once().await.unwrap(), 2);
    let retried = inbox.list(State::Pending, 0, 10).await.unwrap();
    assert_eq!(
        retried.iter().filter(|d| d.attempts == 2).count(),
        2,
        "{retried:?}"
    );
}

/// A pool opened once (`Db::options().connect(url)`) serves two inboxes, each its own
/// namespace, without a throwaway inbox; `ping` answers while the pool is open and
/// fails once it is closed, for every inbox on it.
async fn one_pool_serves_several_inboxes_and_ping_fails_once_it_is_closed(backend: Backend) {
    let Some(db) = TestDb::open(backend, "shared_pool") else {
        return;
    };
    let clock = ManualClock::at_secs(T0);
    let pool = mapping_webhooks_inbox::Db::options()
        .max_connections(3)
        .acquire_timeout(Duration::from_secs(2))
        .connect(&db.url)
        .await
        .unwrap();
    let open = |namespace: &'static str| {
        Inbox::builder()
            .namespace(namespace)
            .clock(clock.clone())
            .pool(pool.clone())
    };
    let (orders, billing) = (
        open("orders").await.unwrap(),
        open("billing").await.unwrap(),
    );
    orders.ping().await.unwrap();
    billing.ping().await.unwrap();

    let id = deliver_stored(&orders, &clock, "evt_shared_pool").await;
    // The same event in the other namespace is its own delivery.
    let other = deliver_stored(&billing, &clock, "evt_shared_pool").await;
    assert_ne!(id, other);
    assert_eq!(orders.list(State::Pending, 0, 10).await.unwrap().len(), 1);
    assert_eq!(billing.list(State::Pending, 0, 10).await.unwrap().len(), 1);

    // One pool: closing it through one inbox stops both, and ping says so.
    orders.close().await;
    for inbox in [&orders, &billing] {
        let err = tokio::time::timeout(Duration::from_secs(20), inbox.ping())
            .await
            .expect("ping answers within the acquire timeout")
            .expect_err("the pool is closed");
        assert!(
            matches!(err, mapping_webhooks_inbox::InboxError::Database(_)),
            "{err:?}"
        );
    }
}
