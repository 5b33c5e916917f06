//! `inbox-receiver` as a forwarding gateway (`FORWARD_URL`): two gateway processes on
//! one Postgres server (started by the test) forward to a target served in the test on
//! 127.0.0.1:0, which first answers 500, then hangs past `FORWARD_TIMEOUT_SECS`, then
//! recovers; one gateway is killed with SIGKILL mid-batch. Every event reaches the
//! target, each forwarded request verifies with the core's Standard Webhooks verifier,
//! and the target, deduplicating on `webhook-id`, processes each event once.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use mapping_webhooks::scheme::Scheme;
use mapping_webhooks::{Secret, Verifier};

use crate::inbox_crash::{Receiver, deliver, free_port, postgres, temp_dir};

/// The internal hop's secret (a Standard Webhooks `whsec_` secret).
const FORWARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const EVENTS: usize = 30;
/// The target's first answers: this many 500s, then this many hangs.
const FAILS: usize = 12;
const HANGS: usize = 8;

/// What the target saw.
#[derive(Default)]
struct Seen {
    /// Requests so far.
    requests: usize,
    /// Requests answered 500, and those left hanging.
    failed: usize,
    hung: usize,
    /// Attempts per `webhook-id`.
    attempts: HashMap<String, usize>,
    /// `webhook-id`s processed (once each: the target deduplicates on it) and the
    /// repeats it acknowledged without processing.
    processed: HashSet<String>,
    repeats: usize,
    /// Requests that failed verification or whose headers did not match the body.
    bad: Vec<String>,
}

async fn target(
    State(seen): State<Arc<Mutex<Seen>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    // Verify as the internal service does: the core's Standard Webhooks verifier.
    let head: Vec<(&'static str, String)> =
        ["webhook-id", "webhook-timestamp", "webhook-signature"]
            .into_iter()
            .filter_map(|name| {
                let value = headers.get(name)?.to_str().ok()?.to_owned();
                Some((name, value))
            })
            .collect();
    let verified = Verifier::new(Secret::new(FORWARD_SECRET).unwrap()).verify_head(
        Scheme::Standard,
        &head,
        &body,
    );
    let envelope: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let hang = {
        let mut seen = seen.lock().unwrap();
        if let Err(error) = verified {
            seen.bad.push(format!("{id}: {error}"));
            return StatusCode::UNAUTHORIZED;
        }
        let event_type = headers
            .get("webhook-event-type")
            .and_then(|v| v.to_str().ok());
        let json = headers.get("content-type").and_then(|v| v.to_str().ok());
        if envelope["eventId"].as_str() != Some(id.as_str())
            || event_type != envelope["type"].as_str()
            || json != Some("application/json")
        {
            seen.bad.push(format!(
                "{id}: type {event_type:?}, content-type {json:?}, body {envelope}"
            ));
            return StatusCode::BAD_REQUEST;
        }
        seen.requests += 1;
        *seen.attempts.entry(id.clone()).or_default() += 1;
        if seen.requests <= FAILS {
            seen.failed += 1;
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
        if seen.requests <= FAILS + HANGS {
            seen.hung += 1;
            true
        } else {
            if !seen.processed.insert(id) {
                seen.repeats += 1;
            }
            false
        }
    };
    if hang {
        // Far past FORWARD_TIMEOUT_SECS: the gateway gives up first.
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    StatusCode::NO_CONTENT
}

fn start_gateway(binary: &str, dir: &Path, addr: &str, db: &str, forward: &str) -> Receiver {
    let receiver = Receiver(
        Command::new(binary)
            .current_dir(dir)
            .env_remove("MAPPING_WEBHOOK_SECRET")
            .env("DATABASE_URL", db)
            .env("BIND_ADDR", addr)
            .env("RUST_LOG", "warn")
            .env("FORWARD_URL", forward)
            .env("FORWARD_SECRET", FORWARD_SECRET)
            .env("FORWARD_TIMEOUT_SECS", "1")
            .env("INBOX_LEASE_SECS", "3")
            .env("INBOX_BACKOFF_SECS", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
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

/// Two gateways on one Postgres, a failing, hanging, then recovering target, and a
/// SIGKILL of one gateway mid-batch (skipped without Postgres unless
/// `MAPPING_WEBHOOKS_REQUIRE_POSTGRES=1`).
pub fn two_gateways_forward_every_event_through_failures_hangs_and_a_kill_9(binary: &str) {
    let Some(pg) = postgres::PostgresServer::start("inbox_forward") else {
        return;
    };
    let dir = temp_dir("forward");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let forward = format!(
        "http://{}/internal/webhooks",
        listener.local_addr().unwrap()
    );
    let app = axum::Router::new()
        .route("/internal/webhooks", axum::routing::post(target))
        .with_state(seen.clone());
    runtime.spawn(async move { axum::serve(listener, app).await });

    let a_addr = format!("127.0.0.1:{}", free_port());
    let b_addr = format!("127.0.0.1:{}", free_port());
    let mut a = start_gateway(binary, &dir, &a_addr, &pg.url(), &forward);
    let b = start_gateway(binary, &dir, &b_addr, &pg.url(), &forward);
    let ids: Vec<String> = (0..EVENTS).map(|i| format!("evt_fwd_{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let addr = if i % 2 == 0 { &a_addr } else { &b_addr };
        assert_eq!(deliver(addr, id), 202, "{id}");
    }

    // SIGKILL gateway A mid-batch: once the target hangs, A holds claims in flight.
    let started = Instant::now();
    loop {
        let now = seen.lock().unwrap();
        if now.hung > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the target never hung: {} forwarded requests, {} answered 500",
            now.requests,
            now.failed
        );
        drop(now);
        thread::sleep(Duration::from_millis(10));
    }
    a.0.kill().unwrap();
    a.0.wait().unwrap();

    // Gateway B forwards the rest, taking A's claims over when their lease ends.
    while seen.lock().unwrap().processed.len() < EVENTS {
        let seen = seen.lock().unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(25),
            "only {} of {EVENTS} reached the target ({} requests, {} failed, {} hung)",
            seen.processed.len(),
            seen.requests,
            seen.failed,
            seen.hung
        );
        drop(seen);
        thread::sleep(Duration::from_millis(50));
    }
    // Give a late duplicate time to show.
    thread::sleep(Duration::from_millis(500));
    drop(b);
    let seen = seen.lock().unwrap();
    let retried = seen.attempts.values().filter(|&&n| n > 1).count();
    eprintln!(
        "{} requests: {} answered 500, {} hung, {} processed, {} repeats acknowledged, {retried} events retried",
        seen.requests,
        seen.failed,
        seen.hung,
        seen.processed.len(),
        seen.repeats
    );
    assert!(
        seen.bad.is_empty(),
        "bad forwarded requests: {:?}",
        seen.bad
    );
    assert_eq!(seen.failed, FAILS);
    assert_eq!(seen.hung, HANGS);
    let expected: HashSet<String> = ids.into_iter().collect();
    assert_eq!(seen.processed, expected, "each event processed once");
    // The failed and hung attempts were retried with the same webhook-id.
    assert!(retried >= 1, "no event was retried: {:?}", seen.attempts);
    assert_eq!(
        seen.attempts.values().sum::<usize>(),
        seen.requests,
        "every request carried an event's id"
    );
    drop(seen);
    runtime.shutdown_background();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `FORWARD_URL` without `FORWARD_SECRET`, with a secret that is not `whsec_` and
/// base64, a URL that is not `http://`, or a `FORWARD_TIMEOUT_SECS` not below the
/// handler's timeout stops the gateway at start with a message, and never logs the
/// secret.
pub fn a_bad_forward_setting_stops_the_gateway(binary: &str) {
    let dir = temp_dir("forward-env");
    // (FORWARD_URL, FORWARD_SECRET, FORWARD_TIMEOUT_SECS, INBOX_LEASE_SECS), the message.
    let url = "http://127.0.0.1:9/internal";
    for (settings, message) in [
        (
            (url, None, None, None),
            "FORWARD_SECRET (a whsec_ secret) is required",
        ),
        (
            (url, Some("not-a-whsec-secret-at-all"), None, None),
            "FORWARD_SECRET must be whsec_",
        ),
        (
            ("ftp://127.0.0.1/internal", Some(FORWARD_SECRET), None, None),
            "FORWARD_URL must be an http:// URL",
        ),
        (
            (url, Some(FORWARD_SECRET), Some("10"), Some("5")),
            "FORWARD_TIMEOUT_SECS (10 s) must be below the handler's timeout (4 s",
        ),
    ] {
        let (url, secret, timeout, lease) = settings;
        let addr = format!("127.0.0.1:{}", free_port());
        let mut command = Command::new(binary);
        command
            .current_dir(&dir)
            .env_remove("DATABASE_URL")
            .env_remove("MAPPING_WEBHOOK_SECRET")
            .env_remove("FORWARD_SECRET")
            .env("BIND_ADDR", &addr)
            .env("RUST_LOG", "warn")
            .env_remove("FORWARD_TIMEOUT_SECS")
            .env_remove("INBOX_LEASE_SECS")
            .env("FORWARD_URL", url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(secret) = secret {
            command.env("FORWARD_SECRET", secret);
        }
        if let Some(timeout) = timeout {
            command.env("FORWARD_TIMEOUT_SECS", timeout);
        }
        if let Some(lease) = lease {
            command.env("INBOX_LEASE_SECS", lease);
        }
        let mut child = Receiver(
            command
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
        let Some(status) = status else {
            panic!("{settings:?}: the gateway kept running");
        };
        let mut stderr = String::new();
        child
            .0
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(!status.success(), "{settings:?}: exited {status}");
        assert!(stderr.contains(message), "{settings:?}: {stderr}");
        assert!(
            !stderr.contains("not-a-whsec"),
            "the secret was logged: {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
