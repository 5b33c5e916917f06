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
use std::fs::File;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing;
use mapping_webhooks::secrets_file;
use mapping_webhooks::{Secret, Signer};
use mapping_webhooks_examples::WEBHOOK_PATH;

use crate::support::{Logged as Receiver, Ran, TempDir, Tool};
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
    start_as(binary, secret_file, poll_secs, None)
}

/// [`start`], as the user and group `user` when given (root drops its groups too).
fn start_as(
    binary: &str,
    secret_file: &Path,
    poll_secs: &str,
    user: Option<(u32, u32)>,
) -> Receiver {
    let addr = free_addr();
    let mut command = Command::new(binary);
    if let Some((uid, gid)) = user {
        use std::os::unix::process::CommandExt;
        command.uid(uid).gid(gid);
    }
    Receiver::start(
        command
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
            .env("MAPPING_WEBHOOK_SECRET_FILE_POLL_SECS", poll_secs),
        addr,
    )
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
    stand_in_after(signing, answer, Duration::ZERO)
}

/// [`stand_in`], answering each call `delay` after it came.
fn stand_in_after(
    signing: Arc<AtomicU8>,
    answer: Option<(u16, String)>,
    delay: Duration,
) -> StandIn {
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
                tokio::time::sleep(delay).await;
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

/// The file as `rotate` leaves it: the new secret, then the old one until about ten
/// minutes from now; returns that time.
fn assert_rotated(file: &Path) -> SystemTime {
    let text = std::fs::read_to_string(file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0], NEW);
    let expires = lines[1]
        .strip_prefix(&format!("{OLD} expires="))
        .and_then(secrets_file::parse_time)
        .unwrap_or_else(|| panic!("no deadline on the old secret's line: {:?}", lines[1]));
    let left = expires
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    assert!(
        left > Duration::from_secs(9 * 60) && left <= Duration::from_secs(10 * 60),
        "the old secret ends in {left:?}"
    );
    expires
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
    assert_rotated(&file);
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
    assert_rotated(&file);
}

/// One delivery of a new event signed as `signing` says, to the receiver at `addr`.
fn deliver(addr: &str, signing: u8, tag: &str) -> u16 {
    static N: AtomicUsize = AtomicUsize::new(0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let id = format!("evt_{tag}_{}", N.fetch_add(1, Ordering::SeqCst));
    runtime.block_on(async {
        let b = body(&id);
        post(&reqwest::Client::new(), addr, &signature(signing, &b), b).await
    })
}

/// Writes `text` to `file` atomically (as an editor or a deployment tool does).
fn replace_file(file: &Path, text: &str) {
    let temp = file.with_extension("tmp");
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, file).unwrap();
}

/// A receiver (re)started after the rotation window does not accept the old secret: not
/// from a file the old `rotate` left (`new`, `old`, no deadline) a day ago, nor from one
/// the `rotate` command writes now (`old expires=...`) once its time has passed; within
/// the window it does. The new secret is accepted throughout.
pub fn a_restart_after_the_rotation_window_refuses_the_old_secret(
    name: &str,
    binary: &str,
    rotate: Tool,
) {
    let dir = TempDir::new(&format!("rotation-restart-{name}"));
    let file = dir.path().join("webhook-secrets");
    let statuses = |tag: &str| {
        let receiver = start(binary, &file, "1");
        let new = deliver(&receiver.addr, SIGN_NEW, &format!("{name}_{tag}_new"));
        let old = deliver(&receiver.addr, SIGN_OLD, &format!("{name}_{tag}_old"));
        (new, old)
    };

    // The file as `rotate` used to leave it, written a day ago.
    std::fs::write(&file, format!("{NEW}\n{OLD}\n")).unwrap();
    let a_day_ago = SystemTime::now() - Duration::from_secs(86_400);
    File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(a_day_ago)
        .unwrap();
    assert_eq!(
        statuses("legacy"),
        (204, 401),
        "{name}: (new, old) a day after"
    );

    // `rotate` now writes the old secret's deadline; within it, the old one is accepted.
    std::fs::write(&file, format!("{OLD}\n")).unwrap();
    let api = stand_in(Arc::default(), None);
    let rotated = run_rotate(rotate, &api.url, &file, Some(TOKEN));
    assert!(
        rotated.success,
        "{name}: {}{}",
        rotated.stdout, rotated.stderr
    );
    let expires = assert_rotated(&file);
    assert_eq!(
        statuses("within"),
        (204, 204),
        "{name}: (new, old) in the window"
    );

    // A day later, that deadline is a day past: a restart does not revive the old one.
    let past = secrets_file::format_time(expires - Duration::from_secs(86_400));
    replace_file(&file, &format!("{NEW}\n{OLD} expires={past}\n"));
    assert_eq!(
        statuses("after"),
        (204, 401),
        "{name}: (new, old) a day after"
    );
}

/// `rotate` (run as root) keeps the secrets file's owner and mode, so a receiver running
/// as another user (`nobody`) still reads it and takes the new secret; a file it cannot
/// read is tried again at every poll, so restoring its permissions is enough.
pub fn rotate_keeps_the_owner_and_an_unreadable_file_is_retried(
    name: &str,
    binary: &str,
    rotate: Tool,
) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
    const NOBODY: (u32, u32) = (65_534, 65_534);
    let dir = TempDir::new(&format!("rotation-owner-{name}"));
    let file = dir.path().join("webhook-secrets");
    std::fs::write(&file, format!("{OLD}\n")).unwrap();
    chown(&file, Some(NOBODY.0), Some(NOBODY.1)).unwrap();
    let mode = |m: u32| std::fs::set_permissions(&file, std::fs::Permissions::from_mode(m));
    mode(0o600).unwrap();
    let receiver = start_as(binary, &file, "1", Some(NOBODY));
    assert_eq!(
        deliver(&receiver.addr, SIGN_OLD, "owner_old"),
        204,
        "{name}"
    );

    let api = stand_in(Arc::default(), None);
    let rotated = run_rotate(rotate, &api.url, &file, Some(TOKEN));
    assert!(
        rotated.success,
        "{name}: {}{}",
        rotated.stdout, rotated.stderr
    );
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (NOBODY.0, NOBODY.1, 0o600),
        "{name}: the rotated file's owner, group, mode"
    );
    receiver.wait_for_log("reloaded the secrets file", 1);
    assert_eq!(
        deliver(&receiver.addr, SIGN_NEW, "owner_new"),
        204,
        "{name}"
    );

    // The file is made unreadable, changed, then readable again, its text unchanged.
    mode(0o000).unwrap();
    const THIRD: &str = "whsec_Third7xYq2Lm9Rt4Wn8Bc3Hj6Ds1Ue5K";
    std::fs::write(&file, format!("{THIRD}\n{NEW}\n")).unwrap();
    receiver.wait_for_log("Permission denied", 1);
    assert_eq!(
        deliver(&receiver.addr, SIGN_NEW, "owner_kept"),
        204,
        "{name}"
    );
    mode(0o600).unwrap();
    receiver.wait_for_log("reloaded the secrets file", 2);
    let third = {
        let b = body("evt_owner_third");
        let header = Signer::new(Secret::new(THIRD).unwrap()).sign(&b, now());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(post(&reqwest::Client::new(), &receiver.addr, &header, b))
    };
    assert_eq!(third, 204, "{name}: the secret in the restored file");
}

/// A byte order mark before the first secret (a file saved by a Windows editor) is not
/// part of it; a line with a character a secret cannot hold keeps the secrets loaded, and
/// the log names the line and the character, not the secret.
pub fn a_byte_order_mark_is_skipped_and_a_bad_line_refused(name: &str, binary: &str) {
    let dir = TempDir::new(&format!("rotation-bom-{name}"));
    let file = dir.path().join("webhook-secrets");
    std::fs::write(&file, format!("\u{feff}{NEW}\r\n")).unwrap();
    let receiver = start(binary, &file, "1");
    assert_eq!(deliver(&receiver.addr, SIGN_NEW, "bom"), 204, "{name}");

    replace_file(&file, &format!("{NEW}\n{OLD}\u{7}\n"));
    receiver.wait_for_log(
        "line 2: character 39 of the secret is a control character (U+0007)",
        1,
    );
    receiver.wait_for_log("keeping the secrets already loaded", 1);
    assert_eq!(deliver(&receiver.addr, SIGN_NEW, "bom_kept"), 204, "{name}");
    assert_no_secret(&receiver.stderr.lock().unwrap().join("\n"));
}

/// A secrets file rewritten in place, slowly (its first half, a pause longer than a
/// poll interval, the rest), is never applied half-written: deliveries signed with the old secret
/// pass throughout, and once the file is whole the new secret passes too.
pub fn a_half_written_file_is_never_applied(name: &str, binary: &str) {
    use std::io::Write as _;
    let dir = TempDir::new(&format!("rotation-half-{name}"));
    let file = dir.path().join("webhook-secrets");
    std::fs::write(&file, format!("{OLD}\n")).unwrap();
    let receiver = start(binary, &file, "1");
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (stop, addr, name) = (stop.clone(), receiver.addr.clone(), name.to_owned());
        thread::spawn(move || {
            let mut statuses = Vec::new();
            while !stop.load(Ordering::SeqCst) && statuses.len() < 10_000 {
                statuses.push(deliver(&addr, SIGN_OLD, &format!("half_{name}")));
                thread::sleep(Duration::from_millis(50));
            }
            statuses
        })
    };
    let text = format!("{NEW}\n{OLD}\n");
    let (first, rest) = text.split_at(NEW.len() / 2);
    let mut writer = File::create(&file).unwrap();
    writer.write_all(first.as_bytes()).unwrap();
    writer.sync_all().unwrap();
    // Longer than a poll interval, shorter than two.
    thread::sleep(Duration::from_millis(1500));
    writer.write_all(rest.as_bytes()).unwrap();
    writer.sync_all().unwrap();
    drop(writer);
    receiver.wait_for_log("reloaded the secrets file", 1);
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let statuses = sender.join().unwrap();
    let refused = statuses.iter().filter(|s| **s != 204).count();
    assert!(
        statuses.len() >= 20 && refused == 0,
        "{name}: {refused} of {} deliveries signed with the old secret refused",
        statuses.len()
    );
    assert_eq!(
        receiver
            .stderr
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("reloaded the secrets file"))
            .count(),
        1,
        "{name}: applied more than once"
    );
    assert_eq!(deliver(&receiver.addr, SIGN_NEW, "half_new"), 204, "{name}");
}

/// The `rotate` binary's arguments for `file`, against `api`.
fn rotate_command(binary: &str, api: &str, file: &Path) -> Command {
    let mut command = Command::new(binary);
    command
        .args(["--api", api, "--destination", DESTINATION, "--secret-file"])
        .arg(file)
        .env_remove("MAPPING_WEBHOOK_SECRET_FILE")
        .env("MAPPING_API_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// What a finished `rotate` process printed: (success, stdout, stderr).
fn outcome(child: std::process::Child) -> (bool, String, String) {
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A second `rotate` of the same file while one runs (its API call under way) fails
/// before calling the API, and the first one's file is the result.
pub fn a_second_rotate_while_one_runs_is_refused(rotate: &str) {
    let dir = TempDir::new("rotate-lock");
    let file = dir.path().join("webhook-secrets");
    std::fs::write(&file, format!("{OLD}\n")).unwrap();
    let api = stand_in_after(Arc::default(), None, Duration::from_secs(2));
    let first = rotate_command(rotate, &api.url, &file).spawn().unwrap();
    let deadline = Instant::now() + WAIT;
    while api.calls.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the first rotate never called");
        thread::sleep(Duration::from_millis(10));
    }
    let (ok, out, err) = outcome(rotate_command(rotate, &api.url, &file).spawn().unwrap());
    assert!(!ok, "the second rotate succeeded: {out}{err}");
    assert!(err.contains("another rotation"), "{err}");
    assert!(err.contains("nothing was rotated"), "{err}");
    assert_no_secret(&(out + &err));
    let (ok, out, err) = outcome(first);
    assert!(ok, "{out}{err}");
    assert_eq!(api.calls.load(Ordering::SeqCst), 1, "API calls");
    assert_rotated(&file);
    // The lock and the temporary file are gone.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

/// A secrets file that is a symbolic link: the link's target is rewritten, the link stays.
pub fn rotate_through_a_symlink_rewrites_its_target(rotate: &str) {
    let dir = TempDir::new("rotate-symlink");
    std::fs::create_dir(dir.path().join("real")).unwrap();
    let target = dir.path().join("real").join("webhook-secrets");
    std::fs::write(&target, format!("{OLD}\n")).unwrap();
    let link = dir.path().join("webhook-secrets");
    std::os::unix::fs::symlink("real/webhook-secrets", &link).unwrap();
    let api = stand_in(Arc::default(), None);
    let (ok, out, err) = outcome(rotate_command(rotate, &api.url, &link).spawn().unwrap());
    assert!(ok, "{out}{err}");
    let meta = std::fs::symlink_metadata(&link).unwrap();
    assert!(
        meta.file_type().is_symlink(),
        "the link was replaced by {meta:?}"
    );
    assert_rotated(&target);
    let left: Vec<_> = std::fs::read_dir(dir.path().join("real"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
}

/// A write that fails after the API rotated (here: the file size limit, `RLIMIT_FSIZE`,
/// with `SIGXFSZ` ignored, so writing fails with `EFBIG`) leaves the file alone and
/// prints the new secret once, on stderr, with what to do with it.
pub fn a_failed_write_after_the_rotation_shows_the_new_secret_once(rotate: &str) {
    let dir = TempDir::new("rotate-efbig");
    let file = dir.path().join("webhook-secrets");
    std::fs::write(&file, format!("{OLD}\n")).unwrap();
    let api = stand_in(Arc::default(), None);
    let inner = rotate_command(rotate, &api.url, &file);
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("trap '' XFSZ; exec prlimit --fsize=16 -- \"$@\"")
        .arg("sh")
        .arg(inner.get_program())
        .args(inner.get_args())
        .env_remove("MAPPING_WEBHOOK_SECRET_FILE")
        .env("MAPPING_API_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (ok, out, err) = outcome(command.spawn().unwrap());
    assert!(!ok, "{out}{err}");
    assert_eq!(api.calls.load(Ordering::SeqCst), 1, "API calls");
    assert!(
        err.contains("WAS rotated") && err.contains("File too large"),
        "{err}"
    );
    assert_eq!(err.matches(NEW).count(), 1, "the new secret, once: {err}");
    assert!(!out.contains(NEW), "{out}");
    assert!(!err.contains(OLD), "the old secret printed: {err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("{OLD}\n"));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}
