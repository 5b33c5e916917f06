//! The operator's rotation, end to end, against an example receiver (`axum-receiver`,
//! `actix-receiver`) as a real process reading `MAPPING_WEBHOOK_SECRET_FILE`:
//!
//! - a stand-in of the API's `rotate-secret` endpoint plays Mapping.Travel: before the
//!   call its sender signs with the old secret, from the call on with both (two `v1`
//!   values), and once the window is over with the new one only;
//! - deliveries flow the whole time while the `rotate` command calls the stand-in and
//!   rewrites the secrets file, which the receiver reloads without a restart;
//! - every delivery is answered 2xx, every event is processed exactly once (retries of
//!   events processed before the rotation, signed with the new secret, are acknowledged
//!   without running the handler again), and the process is the same one throughout.
//!
//! Also: `SIGHUP` reloads the file with polling turned off; an empty file keeps the
//! secrets loaded; the `rotate` command's failures leave the file alone and print no
//! secret (run by the `rotate` package against its binary).

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing;
use mapping_webhooks::{Secret, Signer};
use mapping_webhooks_examples::WEBHOOK_PATH;

use crate::support::{Logged as Receiver, Ran, TempDir, Tool, collect};
use crate::tls::{CA_CERT, tls_front};

const OLD: &str = "whsec_Qz7pK2mVx9LrT4nW8bYc3HfJ6dGsE1uA";
const NEW: &str = "whsec_oL5eNq8XwR2tZj4HbM7cV1kYpD9fGu3S";
const TOKEN: &str = "tok_rotation_test";
const DESTINATION: &str = "dest_01HZROTATION";

/// A bound on every wait: far above what each step takes.
const WAIT: Duration = Duration::from_secs(30);

/// Which secrets the stand-in sender signs with.
const SIGN_OLD: u8 = 0;
const SIGN_BOTH: u8 = 1;
const SIGN_NEW: u8 = 2;

fn free_addr() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

fn start(binary: &str, secret_file: &Path, poll_secs: &str) -> Receiver {
    let addr = free_addr();
    let mut child = Command::new(binary)
        .env_remove("MAPPING_WEBHOOK_SECRET")
        .env_remove("MAPPING_WEBHOOK_SECRET_PREVIOUS")
        .env_remove("PORT")
        .env("MAPPING_WEBHOOK_SECRET_FILE", secret_file)
        // Read by inbox-receiver only: its database next to the secrets file.
        .env(
            "DATABASE_URL",
            format!(
                "sqlite://{}",
                secret_file.with_file_name("webhooks.db").display()
            ),
        )
        .env("MAPPING_WEBHOOK_SECRET_FILE_POLL_SECS", poll_secs)
        .env("BIND_ADDR", &addr)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {binary}: {e}"));
    let stdout = collect(child.stdout.take().unwrap());
    let stderr = collect(child.stderr.take().unwrap());
    let receiver = Receiver {
        child,
        addr,
        stdout,
        stderr,
    };
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(&receiver.addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "{binary} never listened: {:?}",
            receiver.stderr.lock().unwrap()
        );
        thread::sleep(Duration::from_millis(25));
    }
    receiver
}

impl Receiver {
    /// Waits, bounded, until `count` log lines contain `needle`.
    fn wait_for_log(&self, needle: &str, count: usize) {
        let deadline = Instant::now() + WAIT;
        loop {
            let found = self
                .stderr
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains(needle))
                .count();
            if found >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no log line {needle:?} (x{count}) in {:#?}",
                self.stderr.lock().unwrap()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The event lines printed so far, as (eventId, secret).
    fn events(&self) -> Vec<(String, String)> {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).expect("an event line");
                (
                    v["eventId"].as_str().unwrap().to_owned(),
                    v["secret"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    fn still_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn body(event_id: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"del_{event_id}","eventId":"{event_id}","type":"mapping.completed","apiVersion":"2026-06-01","createdAt":"2026-06-07T12:01:00Z","data":{{"mappingJobId":"job_1","status":"COMPLETED","rowCount":1}}}}"#
    )
    .into_bytes()
}

/// The header Mapping.Travel sends: one `v1` per secret it signs with.
fn signature(signing: u8, body: &[u8]) -> String {
    let sign = |s: &str| Signer::new(Secret::new(s).unwrap()).sign(body, now());
    match signing {
        SIGN_OLD => sign(OLD),
        SIGN_NEW => sign(NEW),
        _ => {
            let new = sign(NEW);
            format!("{},v1={}", sign(OLD), new.split_once(",v1=").unwrap().1)
        }
    }
}

async fn post(client: &reqwest::Client, addr: &str, header: &str, body: Vec<u8>) -> u16 {
    client
        .post(format!("http://{addr}{WEBHOOK_PATH}"))
        .header("content-type", "application/json")
        .header("x-webhook-signature", header)
        .header("x-webhook-event", "mapping.completed")
        .body(body)
        .send()
        .await
        .expect("the receiver answers")
        .status()
        .as_u16()
}

/// The stand-in of `POST /api/v1/delivery-destinations/{id}/rotate-secret`: checks the
/// bearer token and the id, moves the stand-in sender to signing with both secrets, and
/// answers with the new secret in `signingSecret`. `answer` overrides the answer.
struct StandIn {
    url: String,
    calls: Arc<AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

fn stand_in(signing: Arc<AtomicU8>, answer: Option<(u16, String)>) -> StandIn {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let route = format!("/api/v1/delivery-destinations/{DESTINATION}/rotate-secret");
    let app = Router::new().route(
        &route,
        routing::post(move |headers: HeaderMap| {
            let (signing, answer, counter) = (signing.clone(), answer.clone(), counter.clone());
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
                if auth != Some(&format!("Bearer {TOKEN}")) {
                    return (StatusCode::UNAUTHORIZED, "bad token".to_owned());
                }
                if let Some((status, body)) = answer {
                    return (StatusCode::from_u16(status).unwrap(), body);
                }
                // From now on the sender signs with both secrets, for its window.
                signing.store(SIGN_BOTH, Ordering::SeqCst);
                let body = serde_json::json!({
                    "id": DESTINATION,
                    "type": "WEBHOOK",
                    "signingSecret": NEW,
                    "signingSecretMasked": "whsec_••••",
                });
                (StatusCode::OK, body.to_string())
            }
        }),
    );
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
    StandIn {
        url,
        calls,
        _runtime: runtime,
    }
}

fn run_rotate(rotate: Tool, api: &str, file: &Path, token: Option<&str>) -> Ran {
    let file = file.to_str().expect("a UTF-8 temporary path");
    rotate.run(
        &[
            "--api",
            api,
            "--destination",
            DESTINATION,
            "--secret-file",
            file,
        ],
        &[
            ("MAPPING_WEBHOOK_SECRET_FILE", None),
            ("MAPPING_API_TOKEN", token),
        ],
    )
}

fn assert_no_secret(output: &str) {
    for secret in [OLD, NEW] {
        // Any piece longer than the four characters a masked secret shows.
        for start in "whsec_".len()..secret.len() - 5 {
            let piece = &secret[start..start + 5];
            assert!(!output.contains(piece), "{piece:?} printed: {output}");
        }
    }
    assert!(!output.contains(TOKEN), "the token printed: {output}");
}

/// The rotation while deliveries flow (see the module's documentation), `rotate` run as
/// the operator runs it: zero refusals, every event processed once, no restart; then a
/// file emptied by mistake keeps the secrets loaded.
pub fn the_operator_rotates_while_deliveries_flow(name: &str, binary: &str, rotate: Tool) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = TempDir::new(&format!("rotation-{name}"));
    let file = dir.path().join("webhook-secrets");
    std::fs::write(&file, format!("{OLD}\n")).unwrap();
    let mut receiver = start(binary, &file, "1");
    let signing = Arc::new(AtomicU8::new(SIGN_OLD));
    let api = stand_in(signing.clone(), None);

    // The sender: new events, signed as the phase says, one after another, from two
    // tasks, for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let sent: Arc<Mutex<Vec<(String, u8, u16)>>> = Arc::default();
    let flows: Vec<_> = (0..2)
        .map(|flow| {
            let (stop, sent, signing) = (stop.clone(), sent.clone(), signing.clone());
            let (addr, name) = (receiver.addr.clone(), name.to_owned());
            runtime.spawn(async move {
                let client = reqwest::Client::new();
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) && n < 100_000 {
                    n += 1;
                    let id = format!("evt_{name}_{flow}_{n}");
                    let phase = signing.load(Ordering::SeqCst);
                    let b = body(&id);
                    let status = post(&client, &addr, &signature(phase, &b), b).await;
                    sent.lock().unwrap().push((id, phase, status));
                }
            })
        })
        .collect();
    let count = |phase: u8| {
        sent.lock()
            .unwrap()
            .iter()
            .filter(|(_, p, _)| *p == phase)
            .count()
    };
    let wait_sent = |phase: u8, at_least: usize| {
        let deadline = Instant::now() + WAIT;
        while count(phase) < at_least {
            assert!(Instant::now() < deadline, "{name}: the sender stalled");
            thread::sleep(Duration::from_millis(10));
        }
    };

    wait_sent(SIGN_OLD, 20);
    // The operator rotates, mid-stream.
    let rotated = run_rotate(rotate, &api.url, &file, Some(TOKEN));
    let out = rotated.stdout + &rotated.stderr;
    assert!(rotated.success, "{name}: rotate failed: {out}");
    assert_no_secret(&out);
    assert!(out.contains("whsec_••••"), "{out}");
    assert_eq!(api.calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        format!("{NEW}\n{OLD}\n")
    );
    // The receiver reloads by itself (polling), while the sender signs with both.
    receiver.wait_for_log("reloaded the secrets file", 1);
    let both = count(SIGN_BOTH);
    wait_sent(SIGN_BOTH, both + 20);
    // The sender's window is over: the new secret only.
    signing.store(SIGN_NEW, Ordering::SeqCst);
    wait_sent(SIGN_NEW, 20);
    stop.store(true, Ordering::SeqCst);
    for flow in flows {
        runtime.block_on(flow).unwrap();
    }

    // Retries of events processed before the rotation arrive signed with the new
    // secret; a late delivery signed before the rotation arrives with the old one.
    let sent = sent.lock().unwrap().clone();
    let (late, retried) = runtime.block_on(async {
        let client = reqwest::Client::new();
        let mut retried = Vec::new();
        for (id, _, _) in sent.iter().filter(|(_, p, _)| *p == SIGN_OLD).take(5) {
            let b = body(id);
            let status = post(&client, &receiver.addr, &signature(SIGN_NEW, &b), b).await;
            retried.push((id.clone(), status));
        }
        let b = body(&format!("evt_{name}_late"));
        let late = post(&client, &receiver.addr, &signature(SIGN_OLD, &b), b).await;
        (late, retried)
    });

    // Zero refusals.
    let refused: Vec<_> = sent.iter().filter(|(_, _, s)| *s != 204).collect();
    assert!(refused.is_empty(), "{name}: refused {refused:?}");
    assert!(
        retried.iter().all(|(_, s)| *s == 200),
        "{name}: {retried:?}"
    );
    assert_eq!(
        late, 204,
        "{name}: the old secret is still accepted, as previous"
    );

    // Every event processed exactly once: one line per event sent, none for retries.
    let deadline = Instant::now() + WAIT;
    while receiver.events().len() < sent.len() + 1 {
        assert!(Instant::now() < deadline, "{name}: missing event lines");
        thread::sleep(Duration::from_millis(10));
    }
    let events = receiver.events();
    let mut times: HashMap<&str, usize> = HashMap::new();
    for (id, _) in &events {
        *times.entry(id.as_str()).or_default() += 1;
    }
    assert_eq!(events.len(), sent.len() + 1, "{name}");
    for (id, _, _) in &sent {
        assert_eq!(times.get(id.as_str()), Some(&1), "{name}: {id}");
    }
    let late_line = events.iter().find(|(id, _)| id.ends_with("_late")).unwrap();
    assert_eq!(late_line.1, "previous[0]", "{name}");
    // No restart.
    assert!(receiver.still_running(), "{name} exited");
    assert_eq!(
        receiver
            .stderr
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("receiving webhooks on"))
            .count(),
        1,
        "{name} started twice"
    );

    // A file emptied by mistake keeps the secrets loaded, and says why.
    std::fs::write(&file, "\n\n").unwrap();
    receiver.wait_for_log("holds no secret", 1);
    receiver.wait_for_log("keeping the secrets already loaded", 1);
    let status = runtime.block_on(async {
        let b = body(&format!("evt_{name}_after_empty"));
        post(
            &reqwest::Client::new(),
            &receiver.addr,
            &signature(SIGN_NEW, &b),
            b,
        )
        .await
    });
    assert_eq!(status, 204, "{name}");
    let logs = receiver.stderr.lock().unwrap().join("\n");
    assert_no_secret(&logs);
}

/// With polling off, a changed file is not seen until `SIGHUP`, and a second `SIGHUP`
/// with nothing changed changes nothing. (`inbox-receiver` answers 202 where the others
/// answer 204.)
pub fn sighup_reloads_the_file_when_polling_is_off(name: &str, binary: &str) {
    let ok = if name == "inbox-receiver" { 202 } else { 204 };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = TempDir::new(&format!("rotation-hup-{name}"));
    let file = dir.path().join("webhook-secrets");
    std::fs::write(&file, format!("{OLD}\n")).unwrap();
    let receiver = start(binary, &file, "0");
    let deliver = |signing: u8, tag: &str| {
        runtime.block_on(async {
            let b = body(&format!("evt_hup_{name}_{tag}"));
            post(
                &reqwest::Client::new(),
                &receiver.addr,
                &signature(signing, &b),
                b,
            )
            .await
        })
    };
    std::fs::write(&file, format!("{NEW}\n{OLD}\n")).unwrap();
    // Without polling the change is not seen...
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(deliver(SIGN_NEW, "before"), 401, "{name}");
    // ... until SIGHUP.
    let hup = Command::new("kill")
        .args(["-HUP", &receiver.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    receiver.wait_for_log("reloaded the secrets file", 1);
    assert_eq!(deliver(SIGN_NEW, "after"), ok, "{name}");
    assert_eq!(deliver(SIGN_OLD, "old"), ok, "{name}");
    // A second SIGHUP with nothing changed changes nothing.
    Command::new("kill")
        .args(["-HUP", &receiver.child.id().to_string()])
        .status()
        .unwrap();
    receiver.wait_for_log("the secrets file is unchanged", 1);
    assert_eq!(deliver(SIGN_OLD, "old_again"), ok, "{name}");
}

/// The `rotate` command's failures (a wrong token, no token, a response without
/// `signingSecret`, a file holding no secret) leave the file alone, leave no temporary
/// file, and print no secret.
pub fn rotate_failures_leave_the_file_alone_and_print_no_secret(rotate: Tool) {
    let dir = TempDir::new("rotate-failures");
    let file = dir.path().join("webhook-secrets");
    std::fs::write(&file, format!("{OLD}\n")).unwrap();
    let unchanged = || {
        assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("{OLD}\n"));
        // No temporary file left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    };

    // A wrong token: the API refuses; nothing written.
    let api = stand_in(Arc::default(), None);
    let out = run_rotate(rotate, &api.url, &file, Some("tok_wrong"));
    assert!(!out.success);
    let printed = out.stdout + &out.stderr;
    assert!(printed.contains("401"), "{printed}");
    unchanged();

    // No token: refused before any call.
    let out = run_rotate(rotate, &api.url, &file, None);
    assert!(!out.success);
    assert!(out.stderr.contains("MAPPING_API_TOKEN"));
    assert_eq!(api.calls.load(Ordering::SeqCst), 1);

    // A response without `signingSecret` (the documented assumption broken): an error
    // naming the fields, not their values.
    let odd = serde_json::json!({"id": DESTINATION, "secret": NEW}).to_string();
    let api = stand_in(Arc::default(), Some((200, odd)));
    let out = run_rotate(rotate, &api.url, &file, Some(TOKEN));
    assert!(!out.success);
    let printed = out.stdout + &out.stderr;
    assert!(
        printed.contains("signingSecret") && printed.contains("\"secret\""),
        "{printed}"
    );
    assert_no_secret(&printed);
    unchanged();

    // A file that holds no secret: refused before any call.
    std::fs::write(&file, "\n").unwrap();
    let api = stand_in(Arc::default(), None);
    let out = run_rotate(rotate, &api.url, &file, Some(TOKEN));
    assert!(!out.success);
    assert!(out.stderr.contains("no secret"), "{}", out.stderr);
    assert_eq!(api.calls.load(Ordering::SeqCst), 0);
}

/// `rotate` reaches the API over HTTPS, as it must (the real API is HTTPS-only): with the
/// API's certificate authority trusted (`--ca-cert`) the secret is rotated and written;
/// without it the certificate is refused, nothing is called, and the file is unchanged.
pub fn rotate_reaches_the_api_over_https(rotate: Tool) {
    let dir = TempDir::new("rotate-https");
    let file = dir.path().join("webhook-secrets");
    std::fs::write(&file, format!("{OLD}\n")).unwrap();
    let api = stand_in(Arc::default(), None);
    let backend = api.url.trim_start_matches("http://").parse().unwrap();
    let https = format!("https://localhost:{}", tls_front(backend));
    let path = file.to_str().expect("a UTF-8 temporary path");
    let args = [
        "--api",
        &https,
        "--destination",
        DESTINATION,
        "--secret-file",
        path,
    ];
    let env = [
        ("MAPPING_WEBHOOK_SECRET_FILE", None),
        ("MAPPING_API_TOKEN", Some(TOKEN)),
    ];

    let untrusted = rotate.run(&args, &env);
    assert!(!untrusted.success);
    let printed = untrusted.stdout + &untrusted.stderr;
    assert!(printed.contains("certificate"), "{printed}");
    assert!(printed.contains("nothing was rotated"), "{printed}");
    assert_eq!(api.calls.load(Ordering::SeqCst), 0);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("{OLD}\n"));

    let trusted = rotate.run(&[&args[..], &["--ca-cert", CA_CERT]].concat(), &env);
    let printed = trusted.stdout + &trusted.stderr;
    assert!(trusted.success, "{printed}");
    assert_no_secret(&printed);
    assert_eq!(api.calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        format!("{NEW}\n{OLD}\n")
    );
}
