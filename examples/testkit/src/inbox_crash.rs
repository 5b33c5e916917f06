//! `inbox-receiver` killed with SIGKILL after it answered 2xx and before it processed:
//! after a restart, every accepted delivery is processed, once; and a commit that fails
//! (a file-size limit) is never answered 202.
//!
//! The first run stores only (`INBOX_WORKER=off`), so the kill surely lands between the
//! 2xx and the processing. On SQLite the receiver uses its default database,
//! `webhooks.db` in its working directory (a temporary directory here); on Postgres, a
//! server the test starts (skipped without Postgres unless it is required).

#[path = "../../../inbox/tests/support/postgres.rs"]
pub(crate) mod postgres;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mapping_webhooks::{Secret, Signer};
use mapping_webhooks_examples::{DEV_SECRET, WEBHOOK_PATH};

const EVENTS: usize = 50;

pub(crate) struct Receiver(pub(crate) Child);

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn start(
    binary: &str,
    dir: &Path,
    addr: &str,
    db: Option<&str>,
    worker: bool,
) -> Receiver {
    let mut command = Command::new(binary);
    command.current_dir(dir).env_remove("DATABASE_URL");
    if let Some(url) = db {
        command.env("DATABASE_URL", url);
    }
    command
        .env_remove("MAPPING_WEBHOOK_SECRET")
        .env("BIND_ADDR", addr)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if !worker {
        command.env("INBOX_WORKER", "off");
    }
    let receiver = Receiver(
        command
            .spawn()
            .unwrap_or_else(|e| panic!("start {binary}: {e}")),
    );
    for _ in 0..400 {
        if TcpStream::connect(addr).is_ok() {
            return receiver;
        }
        thread::sleep(Duration::from_millis(25));
    }
    panic!("{binary} never listened on {addr}");
}

/// Posts a signed delivery of `event_id` and returns the status.
pub(crate) fn deliver(addr: &str, event_id: &str) -> u16 {
    let body = format!(
        r#"{{"id":"del_{event_id}","eventId":"{event_id}","type":"mapping.completed","apiVersion":"2026-06-01","createdAt":"2026-06-07T12:01:00Z","data":{{"mappingJobId":"job_1","status":"COMPLETED","rowCount":1}}}}"#
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = Signer::new(Secret::new(DEV_SECRET).unwrap()).sign(body.as_bytes(), now);
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "POST {WEBHOOK_PATH} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         x-webhook-signature: {header}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"))
}

pub(crate) fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mapping-webhooks-inbox-crash-{tag}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// On SQLite, the receiver's default database (`webhooks.db` in its working directory).
pub fn kill_9_after_2xx_then_restart_processes_every_accepted_delivery_once_sqlite(binary: &str) {
    let dir = temp_dir("sqlite");
    crash_and_restart(binary, &dir, None);
    assert!(
        dir.join("webhooks.db").exists(),
        "the default database file"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// On Postgres, a server started for the test (skipped without Postgres unless
/// `MAPPING_WEBHOOKS_REQUIRE_POSTGRES=1`).
pub fn kill_9_after_2xx_then_restart_processes_every_accepted_delivery_once_postgres(binary: &str) {
    let Some(pg) = postgres::PostgresServer::start("inbox_crash_postgres") else {
        return;
    };
    let dir = temp_dir("postgres");
    crash_and_restart(binary, &dir, Some(&pg.url()));
    assert!(
        !dir.join("webhooks.db").exists(),
        "stored in Postgres, not SQLite"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn crash_and_restart(binary: &str, dir: &Path, db: Option<&str>) {
    let addr = format!("127.0.0.1:{}", free_port());
    let ids: Vec<String> = (0..EVENTS).map(|i| format!("evt_crash_{i}")).collect();

    // Accept every event, then SIGKILL: nothing processed, nothing flushed on exit.
    let mut receiver = start(binary, dir, &addr, db, false);
    for id in &ids {
        assert_eq!(deliver(&addr, id), 202, "{id}");
    }
    receiver.0.kill().unwrap();
    receiver.0.wait().unwrap();

    // Restart with the worker: every accepted delivery is processed.
    let mut receiver = start(binary, dir, &addr, db, true);
    let stdout = receiver.0.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen: HashMap<String, usize> = HashMap::new();
    while seen.len() < EVENTS {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("only {} of {EVENTS} processed", seen.len()));
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        *seen
            .entry(event["eventId"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    // The sender's retries are acknowledged, not processed again.
    for id in &ids {
        assert_eq!(deliver(&addr, id), 200, "{id}");
    }
    // Give a second run of anything time to show.
    thread::sleep(Duration::from_millis(500));
    drop(receiver);
    for line in lines.try_iter() {
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        *seen
            .entry(event["eventId"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(seen.len(), EVENTS);
    assert!(seen.values().all(|&n| n == 1), "processed twice: {seen:?}");
}

/// `inbox-receiver` run with a file-size limit (`RLIMIT_FSIZE`) just above its SQLite
/// database, `SIGXFSZ` ignored, so a commit's write-ahead-log write fails with `EFBIG`
/// as on a full disk: every delivery answered 202 is a row after a restart without the
/// limit, the others are 503, and the failure is logged.
///
/// `tool` is the `inbox` binary, which reads the rows back.
pub fn a_failed_commit_is_503_and_every_202_is_stored(binary: &str, tool: &str) {
    const DELIVERIES: usize = 200;
    let dir = temp_dir("fsize");
    let addr = format!("127.0.0.1:{}", free_port());

    // A first run creates the database; SIGTERM closes it, which checkpoints the WAL
    // into the database file.
    let mut receiver = start(binary, &dir, &addr, None, false);
    assert_eq!(deliver(&addr, "evt_fsize_seed"), 202);
    let term = Command::new("kill")
        .args(["-TERM", &receiver.0.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    assert!(receiver.0.wait().unwrap().success(), "graceful stop");
    let size = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .max()
        .unwrap();
    // Room for a few commits' WAL frames (4 KiB pages; a delivery's commit writes its
    // table page and one page of each of its three indexes) over the largest file (the
    // database, or the 32 KiB shared-memory index).
    let limit = size.max(32 * 1024) + 64 * 1024;

    // The limited run: `prlimit` sets the limit, the shell ignores SIGXFSZ (ignored
    // signals stay ignored across `exec`), so writes past it fail with EFBIG.
    let log = dir.join("receiver.log");
    let mut command = Command::new("prlimit");
    command
        .arg(format!("--fsize={limit}:{limit}"))
        .args(["sh", "-c", "trap '' XFSZ; exec \"$0\"", binary])
        .current_dir(&dir)
        .env_remove("DATABASE_URL")
        .env_remove("MAPPING_WEBHOOK_SECRET")
        .env("BIND_ADDR", &addr)
        .env("RUST_LOG", "warn")
        .env("INBOX_WORKER", "off")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let receiver = Receiver(command.spawn().expect("prlimit"));
    let mut listening = false;
    for _ in 0..400 {
        if TcpStream::connect(&addr).is_ok() {
            listening = true;
            break;
        }
        thread::sleep(Duration::from_millis(25));
    }
    assert!(
        listening,
        "the limited receiver never listened: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let mut accepted = Vec::new();
    let mut unavailable = 0;
    for i in 0..DELIVERIES {
        let id = format!("evt_fsize_{i}");
        match deliver(&addr, &id) {
            202 => accepted.push(id),
            503 => unavailable += 1,
            other => panic!("{id}: {other}"),
        }
    }
    drop(receiver);
    let logged = std::fs::read_to_string(&log).unwrap();

    // Without the limit: the rows as the tool reads them.
    let listed = Command::new(tool)
        .args(["list", "pending", "--limit", "1000"])
        .current_dir(&dir)
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.join("webhooks.db").display()),
        )
        .output()
        .expect("run the inbox tool");
    assert!(listed.status.success(), "{listed:?}");
    // The event id's column, found by its header.
    let listed = String::from_utf8_lossy(&listed.stdout);
    let mut lines = listed.lines();
    let column = lines
        .next()
        .and_then(|header| header.split('\t').position(|name| name == "eventId"))
        .unwrap_or_else(|| panic!("no eventId column in the tool's list: {listed}"));
    let stored: std::collections::HashSet<String> = lines
        .filter_map(|line| line.split('\t').nth(column).map(str::to_owned))
        .collect();
    let lost: Vec<&String> = accepted.iter().filter(|id| !stored.contains(*id)).collect();
    let seen = format!(
        "limit {limit} bytes: {} answered 202, {unavailable} answered 503, {} rows stored (with the seed), {} answered 202 but not stored",
        accepted.len(),
        stored.len(),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "{seen}; the first lost: {:?}",
        &lost[..lost.len().min(5)]
    );
    assert!(unavailable > 0, "the limit never bit: {seen}");
    assert!(!accepted.is_empty(), "nothing fit under the limit: {seen}");
    assert!(
        logged.contains("the inbox could not store the webhook"),
        "{seen}; no log line for the failed commits:\n{logged}"
    );
    eprintln!("{seen}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The worker's settings come from the environment: a value that is not a positive
/// whole number (`INBOX_MAX_ATTEMPTS=ten`, `INBOX_LEASE_SECS=0`) stops the receiver at
/// start with a message naming the variable, before it listens.
pub fn a_bad_worker_setting_in_the_environment_stops_the_receiver(binary: &str) {
    let dir = temp_dir("worker-env");
    for (name, value) in [
        ("INBOX_MAX_ATTEMPTS", "ten"),
        ("INBOX_LEASE_SECS", "0"),
        ("INBOX_BACKOFF_SECS", "-5"),
    ] {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut child = Receiver(
            Command::new(binary)
                .current_dir(&dir)
                .env_remove("DATABASE_URL")
                .env_remove("MAPPING_WEBHOOK_SECRET")
                .env("BIND_ADDR", &addr)
                .env("RUST_LOG", "warn")
                .env(name, value)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("start {binary}: {e}")),
        );
        let mut status = None;
        for _ in 0..400 {
            if let Some(exited) = child.0.try_wait().unwrap() {
                status = Some(exited);
                break;
            }
            thread::sleep(Duration::from_millis(25));
        }
        let listening = TcpStream::connect(&addr).is_ok();
        let Some(status) = status else {
            panic!("{name}={value}: the receiver kept running (listening: {listening})");
        };
        let mut stderr = String::new();
        child
            .0
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(!status.success(), "{name}={value}: exited {status}");
        assert!(
            stderr.contains(&format!("{name} must be a positive whole number")),
            "{name}={value}: {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
