//! A worker killed with SIGKILL in the middle of a batch: its handlers finished (their
//! effects written), their "done" marks asked for but not committed (the test holds a
//! write lock on the table, so the batch waits). After the kill nothing of that batch
//! is marked done; a worker started afterwards runs those deliveries again (a re-run,
//! visible, counted) and every delivery ends done, none lost, none marked done without
//! its handler having run.
//!
//! The killed worker is a child process: this test binary again, told what to do by an
//! environment variable.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use mapping_webhooks::{Clock, Gate, Reply, SystemClock, UnsignedHeaders};
use mapping_webhooks_inbox::{Db, Delivery, Inbox, State};
use support::{Backend, SECRET, TestDb, envelope, eventually, sign};

/// The database URL the child works on; the child does nothing without it.
const CHILD_DB: &str = "MAPPING_WEBHOOKS_INBOX_BATCH_CHILD_DB";
/// The file the child's handlers append their effects to.
const CHILD_EFFECTS: &str = "MAPPING_WEBHOOKS_INBOX_BATCH_CHILD_EFFECTS";
const EVENTS: usize = 48;
const CONCURRENCY: usize = 16;
/// The child's lease: after the kill, its deliveries are claimed again after this.
const CHILD_LEASE: Duration = Duration::from_secs(4);

/// Appends `event_id` as one line (one `write`) to the effects file.
fn effect(path: &Path, event_id: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(format!("{event_id}\n").as_bytes()).unwrap();
}

fn effects(path: &Path) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        *counts.entry(line.to_owned()).or_default() += 1;
    }
    counts
}

/// The child: a worker whose handlers say when they start, wait for the `go` file,
/// write their effect and say they finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_crash_child() {
    let (Ok(url), Ok(effects)) = (std::env::var(CHILD_DB), std::env::var(CHILD_EFFECTS)) else {
        return;
    };
    let effects = PathBuf::from(effects);
    let go = effects.with_extension("go");
    let inbox = Inbox::builder()
        .acquire_timeout(Duration::from_secs(30))
        .connect(&url)
        .await
        .expect("the child opens the inbox");
    let worker = inbox
        .worker(move |d: Delivery| {
            let (effects, go) = (effects.clone(), go.clone());
            async move {
                let event_id = d.envelope.event_id.clone();
                println!("CLAIMED {event_id}");
                for _ in 0..1500 {
                    if go.exists() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                effect(&effects, &event_id);
                println!("FINISHED {event_id}");
                Ok::<(), String>(())
            }
        })
        .concurrency(CONCURRENCY)
        .lease(CHILD_LEASE)
        .handler_timeout(CHILD_LEASE - Duration::from_secs(1))
        .poll_interval(Duration::from_millis(50));
    worker.run().await.unwrap();
}

/// Holds the inbox table's write lock while it lives (dropped: released).
enum WriteLock {
    Sqlite(sqlx::pool::PoolConnection<sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

async fn lock_writes(inbox: &Inbox) -> WriteLock {
    match inbox.db() {
        Db::Sqlite(pool) => {
            let mut conn = pool.acquire().await.unwrap();
            sqlx::Executor::execute(&mut *conn, "BEGIN IMMEDIATE")
                .await
                .unwrap();
            WriteLock::Sqlite(conn)
        }
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("LOCK TABLE mapping_webhooks_inbox IN EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await
                .unwrap();
            WriteLock::Postgres(tx)
        }
        _ => unreachable!(),
    }
}

async fn unlock(lock: WriteLock) {
    match lock {
        WriteLock::Sqlite(mut conn) => {
            sqlx::Executor::execute(&mut *conn, "ROLLBACK")
                .await
                .unwrap();
        }
        WriteLock::Postgres(tx) => tx.rollback().await.unwrap(),
    }
}

async fn killed_mid_batch_reruns_the_unmarked_and_loses_nothing(backend: Backend) {
    if std::env::var(CHILD_DB).is_ok() {
        return;
    }
    let Some(db) = TestDb::open(backend, "batch_crash") else {
        return;
    };
    let inbox = Inbox::builder()
        .acquire_timeout(Duration::from_secs(10))
        .connect(&db.url)
        .await
        .unwrap();
    let gate = Gate::builder()
        .secret(SECRET)
        .without_dedup()
        .build()
        .unwrap();
    for i in 0..EVENTS {
        let event_id = format!("evt_batch_crash_{i}");
        let body = envelope(&event_id, &format!("del_{i}"));
        let header = sign(SECRET, &body, SystemClock.now_secs());
        let reply = gate
            .admit_into(
                &inbox,
                [header.as_bytes()],
                UnsignedHeaders::default(),
                &body,
            )
            .await;
        assert_eq!(reply, Reply::Queued, "{event_id}");
    }
    let dir = std::env::temp_dir().join(format!(
        "mapping-webhooks-batch-crash-{}-{backend:?}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let effects_path = dir.join("effects");
    let go = effects_path.with_extension("go");

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "batch_crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB, &db.url)
        .env(CHILD_EFFECTS, &effects_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let wait_for = |word: &str, n: usize| {
        let mut seen = Vec::new();
        while seen.len() < n {
            let line = lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("only {} {word} lines: {seen:?}", seen.len()));
            if let Some(at) = line.find(word) {
                seen.push(line[at + word.len()..].trim().to_owned());
            }
        }
        seen
    };
    // The first batch is claimed and its handlers wait.
    let claimed = wait_for("CLAIMED ", CONCURRENCY);
    // Writes wait from now on; then the handlers finish and ask for their marks.
    let lock = lock_writes(&inbox).await;
    std::fs::write(&go, b"").unwrap();
    let finished = wait_for("FINISHED ", CONCURRENCY);
    // Their marks reach the database and wait for the lock.
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    // Postgres notices a dead client only when it next reads from or writes to it: a
    // statement of the killed worker still waiting for the lock would run once it is
    // released. Its sessions are ended first, as the server's keepalive would.
    if let Db::Postgres(pool) = inbox.db() {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let ended: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE wait_event_type = 'Lock' AND datname = current_database()",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        assert!(
            !ended.is_empty(),
            "the killed worker's marks were waiting for the lock"
        );
    }
    unlock(lock).await;

    let mut finished_sorted = finished.clone();
    finished_sorted.sort();
    let mut claimed_sorted = claimed.clone();
    claimed_sorted.sort();
    assert_eq!(finished_sorted, claimed_sorted);
    let counts = inbox.counts().await.unwrap();
    assert_eq!(
        counts,
        HashMap::from([
            (State::Running, CONCURRENCY as u64),
            (State::Pending, (EVENTS - CONCURRENCY) as u64)
        ]),
        "killed mid-batch: {CONCURRENCY} handlers finished, none of their marks committed"
    );
    let before_restart = effects(&effects_path);
    assert_eq!(before_restart.len(), CONCURRENCY);

    // The restart: a new worker runs everything, the killed batch again after its lease.
    let worker = {
        let effects_path = effects_path.clone();
        inbox
            .worker(move |d: Delivery| {
                effect(&effects_path, &d.envelope.event_id);
                async { Ok::<(), String>(()) }
            })
            .poll_interval(Duration::from_millis(50))
    };
    let task = tokio::spawn(worker.run());
    eventually("every delivery done after the restart", || {
        let inbox = inbox.clone();
        async move { inbox.counts().await.unwrap().get(&State::Done) == Some(&(EVENTS as u64)) }
    })
    .await;
    task.abort();
    let _ = task.await;
    let after = effects(&effects_path);
    let reruns: Vec<&String> = after
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    eprintln!(
        "{backend:?}: killed with {} handlers finished and unmarked; after the restart {} events done, {} run twice",
        finished.len(),
        after.len(),
        reruns.len()
    );
    assert_eq!(
        after.len(),
        EVENTS,
        "every delivery's handler ran: {after:?}"
    );
    for (event_id, n) in &after {
        let expected = if finished.contains(event_id) { 2 } else { 1 };
        assert_eq!(
            *n, expected,
            "{event_id}: ran {n} times (the killed batch runs again, the rest once)"
        );
    }
    inbox.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

on_both!(killed_mid_batch_reruns_the_unmarked_and_loses_nothing);
