//! A commit that fails for want of room is answered 503, never 202: the inbox, as the
//! gate's sink, runs in a child process (this test binary again) with a file-size limit
//! (`RLIMIT_FSIZE`) just above its SQLite database and `SIGXFSZ` ignored, so the
//! write-ahead log's writes fail with `EFBIG` as on a full disk. Every delivery answered
//! 202 is a row when the database is opened again without the limit.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use mapping_webhooks::{Clock, Gate, Reply, SystemClock, UnsignedHeaders};
use mapping_webhooks_inbox::Inbox;
use support::postgres::{remove_sqlite, temp_sqlite_path};
use support::{SECRET, envelope, sign};

/// The database URL the child works on; the child does nothing without it.
const CHILD_DB: &str = "MAPPING_WEBHOOKS_INBOX_FSIZE_CHILD_DB";
/// How many deliveries the child sends at once (1 unless set): several at once share
/// group commits.
const CHILD_WAVE: &str = "MAPPING_WEBHOOKS_INBOX_FSIZE_CHILD_WAVE";
const DELIVERIES: usize = 200;

/// The child: stores deliveries through a gate until told to stop, printing each answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsize_child() {
    let Ok(url) = std::env::var(CHILD_DB) else {
        return;
    };
    let inbox = Inbox::builder()
        .acquire_timeout(Duration::from_secs(2))
        .connect(&url)
        .await
        .expect("the child opens the inbox");
    let gate = std::sync::Arc::new(
        Gate::builder()
            .secret(SECRET)
            .without_dedup()
            .build()
            .unwrap(),
    );
    let wave: usize = std::env::var(CHILD_WAVE)
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(1);
    for first in (0..DELIVERIES).step_by(wave) {
        let sends: Vec<_> = (first..(first + wave).min(DELIVERIES))
            .map(|i| {
                let (gate, inbox) = (gate.clone(), inbox.clone());
                tokio::spawn(async move {
                    let event_id = format!("evt_fsize_{i}");
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
                    (event_id, reply)
                })
            })
            .collect();
        for send in sends {
            let (event_id, reply) = send.await.unwrap();
            let status = match reply {
                Reply::Queued | Reply::SinkUnavailable => reply.status(),
                other => panic!("{event_id}: {other:?}"),
            };
            println!("ANSWER {status} {event_id}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_is_503_and_every_202_is_stored() {
    failed_commits(1).await;
}

/// Sixteen deliveries at a time share group commits: a batch whose commit fails
/// answers 202 to none of its requests (each 503 is a row that does not exist), and
/// each 202 is a row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_group_commit_answers_202_to_nobody_in_it() {
    failed_commits(16).await;
}

async fn failed_commits(wave: usize) {
    if std::env::var(CHILD_DB).is_ok() {
        return;
    }
    let path = temp_sqlite_path(&format!("fsize{wave}"));
    let url = format!("sqlite://{}", path.display());
    // The schema, then the pool closed (the WAL checkpointed into the file).
    let inbox = Inbox::builder().connect(&url).await.unwrap();
    inbox.close().await;
    let size = ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", path.display())).ok())
        .map(|m| m.len())
        .max()
        .unwrap();
    // Room for the shared-memory index and a few commits, not for 200 deliveries.
    let limit = size.max(32 * 1024) + 64 * 1024;

    // `prlimit` sets the limit; the shell ignores SIGXFSZ (ignored signals stay ignored
    // across `exec`), so writes past it fail with EFBIG instead of killing the child.
    let output = Command::new("prlimit")
        .arg(format!("--fsize={limit}:{limit}"))
        .args(["sh", "-c", "trap '' XFSZ; exec \"$0\" \"$@\""])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "fsize_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_DB, &url)
        .env(CHILD_WAVE, wave.to_string())
        .stdin(Stdio::null())
        .output()
        .expect("prlimit runs the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the child failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    // (The harness may print its own words before the first answer on a line.)
    for line in stdout
        .lines()
        .filter_map(|l| l.find("ANSWER ").map(|at| &l[at + 7..]))
    {
        match line.split_once(' ') {
            Some(("202", event_id)) => accepted.push(event_id.to_owned()),
            Some(("503", event_id)) => refused.push(event_id.to_owned()),
            _ => panic!("{line}"),
        }
    }
    let unavailable = refused.len();
    assert_eq!(accepted.len() + unavailable, DELIVERIES, "{stdout}");
    assert!(!accepted.is_empty(), "nothing was stored: {stdout}");

    eprintln!(
        "fsize limit {limit} bytes, {wave} at a time: {} answered 202, {unavailable} answered 503",
        accepted.len()
    );
    // Without the limit: every 202 is a row.
    let inbox = Inbox::builder().connect(&url).await.unwrap();
    let mut missing = Vec::new();
    for event_id in &accepted {
        if inbox.find(event_id).await.unwrap().is_none() {
            missing.push(event_id.clone());
        }
    }
    let mut stored_anyway = Vec::new();
    for event_id in &refused {
        if inbox.find(event_id).await.unwrap().is_some() {
            stored_anyway.push(event_id.clone());
        }
    }
    inbox.close().await;
    remove_sqlite(&path);
    assert!(
        stored_anyway.is_empty(),
        "{} deliveries answered 503 were stored: {stored_anyway:?}",
        stored_anyway.len()
    );
    assert!(
        missing.is_empty(),
        "{} of {} deliveries answered 202 were not stored ({unavailable} answered 503): {missing:?}",
        missing.len(),
        accepted.len()
    );
    assert!(
        unavailable > 0,
        "the limit ({limit} bytes) was never hit: {} accepted",
        accepted.len()
    );
}
