//! Hostile clients, over raw sockets where a normal client cannot express the attack:
//! slow and lying bodies, oversized and repeated headers, deep JSON, bytes that are not
//! UTF-8, and replays. Every case also checks that the server keeps serving a valid
//! delivery while the attack is under way.
//!
//! [`hostile_suite!`](crate::hostile_suite) instantiates them for one adapter;
//! [`conformance_suite!`](crate::conformance_suite) already includes it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mapping_webhooks::ManualClock;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{
    App, AppSpec, Client, CountingStore, Dedup, Probe, ROUTE_HOOKS, ROUTE_TYPED, SECRET, envelope,
    event_id, now, raw_exchange, sign,
};

/// The read timeout the slow-body cases configure.
const READ_TIMEOUT: Duration = Duration::from_millis(500);
/// The pause between two bytes of a trickled body: the trickle lasts far longer than
/// [`READ_TIMEOUT`], so an answer before its end proves the timeout is a deadline for the
/// whole body, not an idle timer that every byte resets.
const TRICKLE_PAUSE: Duration = Duration::from_millis(20);
/// How long a case waits for an answer the server owes before declaring it hung: a
/// bound on the test, far above any timeout involved.
const HANG: Duration = Duration::from_secs(60);

/// A request head: the request line, `host`, `content-type`, then `headers` as given
/// (raw bytes, in order, names as spelled), then the blank line.
fn request_head(app: &App, route: &str, headers: &[(&str, &[u8])]) -> Vec<u8> {
    let mut head = format!(
        "POST {route} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n",
        app.addr()
    )
    .into_bytes();
    for (name, value) in headers {
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// A whole request with a `Content-Length` for `body`.
fn request(app: &App, route: &str, headers: &[(&str, &[u8])], body: &[u8]) -> Vec<u8> {
    let length = body.len().to_string();
    let mut all: Vec<(&str, &[u8])> = headers.to_vec();
    all.push(("content-length", length.as_bytes()));
    let mut request = request_head(app, route, &all);
    request.extend_from_slice(body);
    request
}

/// Reads a response head and returns its status, or `None` when the server closed the
/// connection without answering. Panics if the server neither answers nor closes.
async fn read_status(reader: &mut (impl AsyncRead + Unpin)) -> Option<u16> {
    let read = async {
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 1024];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
        buf
    };
    let buf = tokio::time::timeout(HANG, read)
        .await
        .expect("the server neither answered nor closed the connection");
    let text = String::from_utf8_lossy(&buf);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
}

/// Reads responses until a final one (not 1xx). Returns whether a `100 Continue` came
/// first, and the final status (`None`: the server closed without one). Panics if the
/// server neither answers nor closes.
async fn read_final_status(reader: &mut (impl AsyncRead + Unpin)) -> (bool, Option<u16>) {
    let read = async {
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 1024];
        let mut continued = false;
        loop {
            while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let status: Option<u16> = head
                    .strip_prefix("HTTP/1.1 ")
                    .and_then(|rest| rest.get(..3))
                    .and_then(|code| code.parse().ok());
                match status {
                    Some(100..=199) => {
                        continued |= status == Some(100);
                        buf.drain(..end + 4);
                    }
                    other => return (continued, other),
                }
            }
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => return (continued, None),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(HANG, read)
        .await
        .expect("the server neither answered nor closed the connection")
}

/// Sends `head`, then `body` one byte per [`TRICKLE_PAUSE`] until the server answers or
/// closes, keeping the connection open after the last byte. Returns the status (`None`:
/// closed without an answer) and how many body bytes had been sent by then.
async fn trickle(addr: String, head: Vec<u8>, body: Vec<u8>) -> (Option<u16>, usize) {
    let stream = TcpStream::connect(&addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    writer.write_all(&head).await.expect("write the head");
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&sent);
    let writing = tokio::spawn(async move {
        for byte in body {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(TRICKLE_PAUSE).await;
        }
        // Keep the connection open, as a client that stalls would.
        std::future::pending::<()>().await;
    });
    let status = read_status(&mut reader).await;
    let sent_by_then = sent.load(Ordering::SeqCst);
    writing.abort();
    (status, sent_by_then)
}

/// Sends `request` whole on a fresh connection, keeps it open, and reads the answer.
async fn send_and_hold(addr: String, request: Vec<u8>, half_close: bool) -> Option<u16> {
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    stream.write_all(&request).await.expect("write the request");
    if half_close {
        stream.shutdown().await.expect("half-close");
    }
    read_status(&mut stream).await
}

/// A valid delivery, sent while an attack is under way, is processed.
async fn still_serving(app: &App, probe: &Probe) {
    let body = envelope(&event_id("bystander"), "del_bystander");
    let answer = Client::new(app).deliver(ROUTE_HOOKS, body.clone()).await;
    assert_eq!(
        answer.status, 200,
        "a valid delivery during the attack: {answer:?}"
    );
    assert!(
        probe.seen().iter().any(|seen| seen.body == body),
        "the valid delivery's handler did not run"
    );
}

/// Asserts that no handler ever got `body`.
fn never_handled(probe: &Probe, body: &[u8]) {
    assert!(
        probe.seen().iter().all(|seen| seen.body != body),
        "a hostile body reached the handler"
    );
}

fn assert_4xx(status: Option<u16>, what: &str) {
    assert!(
        status.is_some_and(|s| (400..500).contains(&s)),
        "{what}: expected a 4xx, got {status:?}"
    );
}

/// A body trickled one byte at a time is cut off after the configured read timeout (408,
/// or the connection closed), long before the trickle ends.
pub async fn slow_body_is_cut_off_after_the_read_timeout(
    spawn: impl AsyncFn(AppSpec) -> crate::App,
) {
    let spec = AppSpec::new().read_timeout(READ_TIMEOUT);
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let body = envelope(&event_id("slow"), "del_slow");
    let signature = sign(SECRET, &body, now());
    let length = body.len().to_string();
    let head = request_head(
        &app,
        ROUTE_HOOKS,
        &[
            ("x-webhook-signature", signature.as_bytes()),
            ("content-length", length.as_bytes()),
        ],
    );
    // All but the last byte: were the server to wait for the body, it would wait forever.
    let trickled = body[..body.len() - 1].to_vec();
    let total = trickled.len();
    let attack = tokio::spawn(trickle(app.addr().to_owned(), head, trickled));
    still_serving(&app, &probe).await;
    let (status, sent) = attack.await.unwrap();
    assert!(
        matches!(status, None | Some(408)),
        "a slow body: expected 408 or a closed connection, got {status:?}"
    );
    assert!(
        sent < total,
        "the server waited for the whole trickle ({sent} of {total} bytes): \
         the read timeout must bound the whole body"
    );
    never_handled(&probe, &body);
}

/// A `Content-Length` longer than the body sent: the server waits for bytes that never
/// come, and gives up after the read timeout (408 or closed); a client that half-closes
/// instead gets a 4xx or a closed connection at once.
pub async fn content_length_longer_than_the_body_is_cut_off(
    spawn: impl AsyncFn(AppSpec) -> crate::App,
) {
    let spec = AppSpec::new().read_timeout(READ_TIMEOUT);
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let body = envelope(&event_id("longer"), "del_longer");
    let signature = sign(SECRET, &body, now());
    let claimed = (body.len() + 100).to_string();
    let mut request = request_head(
        &app,
        ROUTE_HOOKS,
        &[
            ("x-webhook-signature", signature.as_bytes()),
            ("content-length", claimed.as_bytes()),
        ],
    );
    request.extend_from_slice(&body);
    let held = tokio::spawn(send_and_hold(app.addr().to_owned(), request.clone(), false));
    let closed = tokio::spawn(send_and_hold(app.addr().to_owned(), request, true));
    still_serving(&app, &probe).await;
    let held = held.await.unwrap();
    assert!(
        matches!(held, None | Some(408)),
        "a body shorter than its Content-Length: expected 408 or closed, got {held:?}"
    );
    let closed = closed.await.unwrap();
    assert!(
        closed.is_none_or(|s| (400..500).contains(&s)),
        "a body cut short by the client: expected a 4xx or closed, got {closed:?}"
    );
    never_handled(&probe, &body);
}

/// A `Content-Length` shorter than the body sent: the server reads what was declared,
/// whose signature does not match (4xx); the rest is never taken for a request that
/// reaches the handler.
pub async fn content_length_shorter_than_the_body_is_refused(
    spawn: impl AsyncFn(AppSpec) -> crate::App,
) {
    let spec = AppSpec::new();
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let body = envelope(&event_id("shorter"), "del_shorter");
    let signature = sign(SECRET, &body, now());
    let claimed = (body.len() - 10).to_string();
    let mut request = request_head(
        &app,
        ROUTE_HOOKS,
        &[
            ("x-webhook-signature", signature.as_bytes()),
            ("content-length", claimed.as_bytes()),
        ],
    );
    request.extend_from_slice(&body);
    let status = raw_exchange(&app, &request, None).await;
    assert_4xx(status, "a body longer than its Content-Length");
    still_serving(&app, &probe).await;
    assert_eq!(probe.calls(), 1, "only the valid delivery ran");
}

/// A chunked body of thousands of small chunks that passes the limit only near its end
/// is refused (413) while it streams; the same framing under the limit, correctly signed,
/// is accepted with its bytes intact.
pub async fn chunked_body_over_the_limit_after_many_chunks_is_413(
    spawn: impl AsyncFn(AppSpec) -> crate::App,
) {
    const LIMIT: usize = 16 * 1024;
    let spec = AppSpec::new().body_limit(LIMIT);
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let head = |signature: &str| {
        request_head(
            &app,
            ROUTE_HOOKS,
            &[
                ("x-webhook-signature", signature.as_bytes()),
                ("transfer-encoding", b"chunked"),
            ],
        )
    };

    // 4096 chunks of 8 bytes: 32 KiB, over the limit after about 2000 of them.
    let mut chunks = Vec::new();
    for _ in 0..4096 {
        chunks.extend_from_slice(b"8\r\nxxxxxxxx\r\n");
    }
    chunks.extend_from_slice(b"0\r\n\r\n");
    let fake = format!("t={},v1={}", now(), "0".repeat(64));
    let attack = {
        let addr = app.addr().to_owned();
        let head = head(&fake);
        tokio::spawn(async move {
            let mut stream = TcpStream::connect(&addr).await.expect("connect");
            stream.write_all(&head).await.expect("write the head");
            for chunk in chunks.chunks(13 * 64) {
                // The server may answer and stop reading before the end: that is fine.
                if stream.write_all(chunk).await.is_err() {
                    break;
                }
            }
            read_status(&mut stream).await
        })
    };
    still_serving(&app, &probe).await;
    assert_eq!(attack.await.unwrap(), Some(413));
    assert_eq!(probe.calls(), 1, "only the valid delivery ran");

    // One-byte chunks of a valid delivery: the framing changes nothing.
    let body = envelope(&event_id("chunked"), "del_chunked");
    let mut request = head(&sign(SECRET, &body, now()));
    for byte in &body {
        request.extend_from_slice(b"1\r\n");
        request.push(*byte);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(raw_exchange(&app, &request, None).await, Some(200));
    assert!(probe.seen().iter().any(|seen| seen.body == body));
}

/// Signature headers far over the parser's cap (a few KiB, and 64 KiB) → 4xx.
pub async fn huge_signature_header_is_refused(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let spec = AppSpec::new();
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let body = envelope(&event_id("huge"), "del_huge");
    let valid = sign(SECRET, &body, now());
    for size in [8 * 1024, 64 * 1024] {
        let mut value = valid.clone();
        value.push_str(",x=");
        value.push_str(&"a".repeat(size));
        let request = request(
            &app,
            ROUTE_HOOKS,
            &[("x-webhook-signature", value.as_bytes())],
            &body,
        );
        let status = raw_exchange(&app, &request, None).await;
        assert_4xx(status, &format!("a {size}-byte signature header"));
    }
    still_serving(&app, &probe).await;
    never_handled(&probe, &body);
}

/// Hundreds of `v1` entries, even with the right one among them → 400: the verifier
/// never hashes over an attacker-chosen number of signatures.
pub async fn hundreds_of_v1_entries_are_refused(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let spec = AppSpec::new();
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let body = envelope(&event_id("many"), "del_many");
    let ts = now();
    let valid = sign(SECRET, &body, ts);
    let good = valid.split("v1=").nth(1).unwrap();
    let full = format!(
        "t={ts},{},v1={good}",
        vec![format!("v1={}", "0".repeat(64)); 300].join(",")
    );
    let short = format!("t={ts},v1={good},{}", vec!["v1=0"; 150].join(","));
    assert!(short.len() < 1024, "stays under the length cap");
    for header in [full, short] {
        let answer = Client::new(&app)
            .post(
                ROUTE_HOOKS,
                &[("x-webhook-signature", &header)],
                body.clone(),
            )
            .await;
        assert_eq!(
            answer.status,
            400,
            "{} v1 entries: {answer:?}",
            header.matches("v1=").count()
        );
    }
    still_serving(&app, &probe).await;
    never_handled(&probe, &body);
}

/// Repeated `X-Webhook-Signature` headers, spelled in any case and in any order, even
/// when one of them is valid → 400.
pub async fn repeated_signature_headers_in_any_case_are_refused(
    spawn: impl AsyncFn(AppSpec) -> crate::App,
) {
    let spec = AppSpec::new();
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let body = envelope(&event_id("repeat"), "del_repeat");
    let valid = sign(SECRET, &body, now());
    let junk = format!("t={},v1={}", now(), "0".repeat(64));
    let fifty: Vec<(&str, &[u8])> = vec![("x-webhook-signature", valid.as_bytes()); 50];
    for headers in [
        vec![
            ("X-Webhook-Signature", valid.as_bytes()),
            ("x-webhook-signature", junk.as_bytes()),
        ],
        vec![
            ("X-WEBHOOK-SIGNATURE", junk.as_bytes()),
            ("x-webhook-signature", valid.as_bytes()),
        ],
        vec![
            ("x-webhook-signature", valid.as_bytes()),
            ("x-webhook-event", b"mapping.completed"),
            ("X-Webhook-Signature", valid.as_bytes()),
        ],
        fifty,
    ] {
        let status = raw_exchange(&app, &request(&app, ROUTE_HOOKS, &headers, &body), None).await;
        assert_eq!(status, Some(400), "{} signature headers", headers.len());
    }
    still_serving(&app, &probe).await;
    never_handled(&probe, &body);
}

/// Correctly signed JSON nested a hundred thousand deep: a clean 4xx where the
/// envelope itself is nested, a clean 4xx from the typed extractor when only `data` is,
/// and no stack overflow anywhere (one would abort the whole test process). The raw
/// route hands such a body to its handler as bytes: the core reads `eventId` and `type`
/// without descending into the rest.
pub async fn deeply_nested_json_is_refused_cleanly(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    // 200 KB of brackets: deep enough for any recursive parser to overflow, and under
    // actix-web's own 256 KiB default for the `Bytes` extractor behind the middleware.
    const DEPTH: usize = 100_000;
    let spec = AppSpec::new();
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let client = Client::new(&app);
    let nested = |before: &str, after: &str| {
        let mut body = before.as_bytes().to_vec();
        body.resize(body.len() + DEPTH, b'[');
        body.resize(body.len() + DEPTH, b']');
        body.extend_from_slice(after.as_bytes());
        body
    };
    let id = event_id("deep");
    let whole = nested("", "");
    let in_event_id = nested(r#"{"type":"mapping.completed","eventId":"#, "}");
    let in_data = nested(
        &format!(r#"{{"id":"d","eventId":"{id}","type":"mapping.completed","data":"#),
        "}",
    );
    for (route, body, what) in [
        (ROUTE_HOOKS, &whole, "a nested envelope"),
        (ROUTE_HOOKS, &in_event_id, "a nested eventId"),
        (ROUTE_TYPED, &in_data, "nested data for the typed extractor"),
    ] {
        let answer = client.deliver(route, body.clone()).await;
        assert!(
            (400..500).contains(&answer.status),
            "{what}: expected a 4xx, got {answer:?}"
        );
        never_handled(&probe, body);
    }
    assert_eq!(probe.calls(), 0);
    let answer = client.deliver(ROUTE_HOOKS, in_data.clone()).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(probe.seen().iter().any(|seen| seen.body == in_data));
    still_serving(&app, &probe).await;
}

/// Bytes that are not UTF-8: in the signature header (400), in a correctly signed body
/// (400), inside a JSON string of a signed body (400). In the unsigned hint headers they
/// are ignored: the delivery is decided on the signed body alone and processed.
pub async fn non_utf8_bytes_are_refused(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let spec = AppSpec::new();
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let body = envelope(&event_id("utf8"), "del_utf8");
    let mut header = sign(SECRET, &body, now()).into_bytes();
    header.extend_from_slice(b",v0=\xff\xfe");
    let status = raw_exchange(
        &app,
        &request(
            &app,
            ROUTE_HOOKS,
            &[("x-webhook-signature", &header)],
            &body,
        ),
        None,
    )
    .await;
    assert_4xx(status, "a signature header with non-UTF-8 bytes");

    let mut latin1 = envelope(&event_id("utf8"), "del_utf8");
    let e_acute = latin1.windows(6).position(|w| w == b"\\u00e9").unwrap();
    latin1.splice(e_acute..e_acute + 6, [0xe9]);
    for signed in [b"\xff\xfe\x00{}".to_vec(), latin1] {
        let status = raw_exchange(
            &app,
            &request(
                &app,
                ROUTE_HOOKS,
                &[(
                    "x-webhook-signature",
                    sign(SECRET, &signed, now()).as_bytes(),
                )],
                &signed,
            ),
            None,
        )
        .await;
        assert_eq!(status, Some(400), "a signed body that is not UTF-8");
        never_handled(&probe, &signed);
    }

    let hinted = envelope(&event_id("utf8_hints"), "del_hints");
    let status = raw_exchange(
        &app,
        &request(
            &app,
            ROUTE_HOOKS,
            &[
                (
                    "x-webhook-signature",
                    sign(SECRET, &hinted, now()).as_bytes(),
                ),
                ("x-webhook-event", b"mapping.\xe9"),
                ("x-webhook-delivery", b"del_\xff"),
            ],
            &hinted,
        ),
        None,
    )
    .await;
    assert_eq!(
        status,
        Some(200),
        "non-UTF-8 hints must not block a valid delivery"
    );
    assert!(probe.seen().iter().any(|seen| seen.body == hinted));
    still_serving(&app, &probe).await;
}

/// A captured valid request, replayed byte for byte within the window (and with its
/// unsigned headers changed) → acknowledged, the handler not run again.
pub async fn replay_within_the_window_is_deduplicated(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let spec = AppSpec::new();
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let body = envelope(&event_id("replay"), "del_replay");
    let signature = sign(SECRET, &body, now());
    let captured = request(
        &app,
        ROUTE_HOOKS,
        &[
            ("x-webhook-signature", signature.as_bytes()),
            ("x-webhook-event", b"mapping.completed"),
            ("x-webhook-delivery", b"del_replay"),
        ],
        &body,
    );
    assert_eq!(raw_exchange(&app, &captured, None).await, Some(200));
    assert_eq!(raw_exchange(&app, &captured, None).await, Some(200));
    let relabelled = request(
        &app,
        ROUTE_HOOKS,
        &[
            ("x-webhook-signature", signature.as_bytes()),
            ("x-webhook-event", b"something.else"),
            ("x-webhook-delivery", b"del_new"),
        ],
        &body,
    );
    assert_eq!(raw_exchange(&app, &relabelled, None).await, Some(200));
    assert_eq!(probe.calls(), 1, "a replay must not run the handler again");
}

/// Replayed after the tolerance → 401: both a request that was processed and one that
/// was captured before it ever arrived.
pub async fn replay_after_the_window_is_refused(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    const T: u64 = 1_800_000_000;
    let clock = ManualClock::at_secs(T);
    let spec = AppSpec::new().clock(clock.clone());
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let capture = |body: &[u8]| {
        request(
            &app,
            ROUTE_HOOKS,
            &[("x-webhook-signature", sign(SECRET, body, T).as_bytes())],
            body,
        )
    };
    let delivered = capture(&envelope(&event_id("late"), "del_late"));
    let intercepted = capture(&envelope(&event_id("intercepted"), "del_intercepted"));
    assert_eq!(raw_exchange(&app, &delivered, None).await, Some(200));
    clock.advance(Duration::from_secs(301));
    assert_eq!(raw_exchange(&app, &delivered, None).await, Some(401));
    assert_eq!(raw_exchange(&app, &intercepted, None).await, Some(401));
    assert_eq!(probe.calls(), 1);
}

/// Requests that fail verification never reach the dedup store, so a forger who knows a
/// coming `eventId` cannot block the real event.
pub async fn forged_event_id_does_not_block_the_real_event(
    spawn: impl AsyncFn(AppSpec) -> crate::App,
) {
    let store = CountingStore::default();
    let spec = AppSpec::new().dedup(Dedup::User(store.clone()));
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let client = Client::new(&app);
    let id = event_id("target");
    let real = envelope(&id, "del_real");
    let forged = envelope(&id, "del_forged");
    let ts = now();
    let attempts = [
        sign("whsec_forger", &forged, ts),
        // A real signature, lifted from another body.
        sign(SECRET, &envelope(&event_id("other"), "del_other"), ts),
        // The right secret but outside the window (an old capture, edited).
        sign(SECRET, &forged, ts - 3600),
        format!("t={ts},v1={}", "0".repeat(64)),
    ];
    for signature in &attempts {
        let answer = client
            .post(
                ROUTE_HOOKS,
                &[("x-webhook-signature", signature)],
                forged.clone(),
            )
            .await;
        assert_eq!(answer.status, 401, "{answer:?}");
    }
    assert_eq!(store.begins(), 0, "a forged request reached the store");
    let answer = client.deliver(ROUTE_HOOKS, real.clone()).await;
    assert_eq!(answer.status, 200, "the real event was blocked: {answer:?}");
    assert_eq!(probe.calls(), 1);
    assert_eq!(probe.seen()[0].body, real);
}

/// A request head refused before its body matters: what it is, its signature headers
/// (name, value), and the status it gets.
struct BadHead {
    what: &'static str,
    headers: Vec<(&'static str, Vec<u8>)>,
    status: u16,
}

impl BadHead {
    /// Its headers, then `more`, as [`request_head`] takes them.
    fn with<'a>(&'a self, more: &[(&'a str, &'a [u8])]) -> Vec<(&'a str, &'a [u8])> {
        let mut all: Vec<(&str, &[u8])> = self.headers.iter().map(|(n, v)| (*n, &v[..])).collect();
        all.extend_from_slice(more);
        all
    }
}

/// Heads with no signature header, a malformed one, two, and a valid one outside the
/// window either way.
fn bad_heads(body: &[u8]) -> Vec<BadHead> {
    let valid = sign(SECRET, body, now()).into_bytes();
    let sig = "x-webhook-signature";
    let bad = |what, headers, status| BadHead {
        what,
        headers,
        status,
    };
    vec![
        bad("no signature header", vec![], 400),
        bad(
            "a malformed signature header",
            vec![(sig, b"t=soon,v1=nothing".to_vec())],
            400,
        ),
        bad(
            "two signature headers",
            vec![(sig, valid.clone()), (sig, valid)],
            400,
        ),
        bad(
            "a stale timestamp",
            vec![(sig, sign(SECRET, body, now() - 3600).into_bytes())],
            401,
        ),
        bad(
            "a future timestamp",
            vec![(sig, sign(SECRET, body, now() + 3600).into_bytes())],
            401,
        ),
    ]
}

/// A request head with `Expect: 100-continue` and a missing, malformed, repeated or
/// out-of-window signature header is refused without its body: no byte of it is ever
/// sent, and the answer is the header's 400 or 401, not the 408 of a server that waited
/// for the body. On hyper no `100 Continue` comes first (it is sent only when the body is
/// read); actix-web answers `100` itself before the middleware runs, so there a `100`
/// may come first, followed by the same refusal. A valid delivery asking for `100`
/// gets it, sends its body, and is processed.
pub async fn unauthenticated_expect_continue_is_refused_without_the_body(
    spawn: impl AsyncFn(AppSpec) -> crate::App,
) {
    let spec = AppSpec::new().read_timeout(READ_TIMEOUT);
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let body = envelope(&event_id("expect"), "del_expect");
    let length = body.len().to_string();
    for bad in bad_heads(&body) {
        let (what, expected) = (bad.what, bad.status);
        let all = bad.with(&[
            ("content-length", length.as_bytes()),
            ("expect", b"100-continue"),
        ]);
        let head = request_head(&app, ROUTE_HOOKS, &all);
        let mut stream = TcpStream::connect(app.addr()).await.expect("connect");
        stream.write_all(&head).await.expect("write the head");
        let (continued, status) = read_final_status(&mut stream).await;
        assert!(
            app.sends_continue_itself || !continued,
            "{what}: the server answered 100 Continue, then {status:?}"
        );
        assert_eq!(
            status,
            Some(expected),
            "{what} with Expect: 100-continue (408 means the server waited for the body)"
        );
    }

    // A valid delivery that waits for the 100 before sending its body.
    let signature = sign(SECRET, &body, now());
    let head = request_head(
        &app,
        ROUTE_HOOKS,
        &[
            ("x-webhook-signature", signature.as_bytes()),
            ("content-length", length.as_bytes()),
            ("expect", b"100-continue"),
        ],
    );
    let mut stream = TcpStream::connect(app.addr()).await.expect("connect");
    stream.write_all(&head).await.expect("write the head");
    let mut first = [0u8; 25];
    tokio::time::timeout(HANG, stream.read_exact(&mut first))
        .await
        .expect("the server answered 100 Continue")
        .expect("read 100 Continue");
    assert_eq!(&first, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(&body).await.expect("write the body");
    assert_eq!(read_status(&mut stream).await, Some(200));
    assert_eq!(probe.calls(), 1, "only the valid delivery ran");
    assert_eq!(probe.seen()[0].body, body);
}

/// A request with a missing, malformed, repeated or out-of-window signature header that
/// declares a large body (900 KiB, under the 1 MiB limit), sends 64 KiB of it and
/// stalls, is answered with the header's 400 or 401 at once: not the 408 a server waiting
/// for (and buffering) the body would give after its read timeout. The same goes for a
/// chunked body that never ends.
pub async fn unauthenticated_large_body_is_refused_without_waiting_for_it(
    spawn: impl AsyncFn(AppSpec) -> crate::App,
) {
    const DECLARED: usize = 900 * 1024;
    const SENT: usize = 64 * 1024;
    let spec = AppSpec::new().read_timeout(READ_TIMEOUT);
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let body = envelope(&event_id("stalled"), "del_stalled");
    let declared = DECLARED.to_string();
    let mut partial = body.clone();
    partial.resize(SENT, b' ');
    let mut chunked = format!("{SENT:x}\r\n").into_bytes();
    chunked.extend_from_slice(&partial);
    chunked.extend_from_slice(b"\r\n");
    let framings: [(&str, &[u8], &[u8]); 2] = [
        ("content-length", declared.as_bytes(), &partial),
        ("transfer-encoding", b"chunked", &chunked),
    ];
    for bad in bad_heads(&body) {
        let (what, expected) = (bad.what, bad.status);
        for (framing, value, sent) in framings {
            let head = request_head(&app, ROUTE_HOOKS, &bad.with(&[(framing, value)]));
            let stream = TcpStream::connect(app.addr()).await.expect("connect");
            let (mut reader, mut writer) = stream.into_split();
            let sent = sent.to_vec();
            let writing = tokio::spawn(async move {
                // The server may answer and close before taking it all: that is fine.
                if writer.write_all(&head).await.is_ok() {
                    let _ = writer.write_all(&sent).await;
                }
                // Then stall, the connection open.
                std::future::pending::<()>().await;
            });
            let status = read_status(&mut reader).await;
            writing.abort();
            assert_eq!(
                status,
                Some(expected),
                "{what}, {framing} body stalled (408 means the server waited for the body)"
            );
        }
    }
    still_serving(&app, &probe).await;
    never_handled(&probe, &partial);
}

/// Instantiates every case in [`hostile`](crate::hostile) as a `#[tokio::test]` for one
/// adapter. [`conformance_suite!`](crate::conformance_suite) calls it.
#[macro_export]
macro_rules! hostile_suite {
    ($spawn:path) => {
        $crate::hostile_suite!(@cases $spawn;
            slow_body_is_cut_off_after_the_read_timeout,
            content_length_longer_than_the_body_is_cut_off,
            content_length_shorter_than_the_body_is_refused,
            chunked_body_over_the_limit_after_many_chunks_is_413,
            huge_signature_header_is_refused,
            hundreds_of_v1_entries_are_refused,
            repeated_signature_headers_in_any_case_are_refused,
            deeply_nested_json_is_refused_cleanly,
            non_utf8_bytes_are_refused,
            replay_within_the_window_is_deduplicated,
            replay_after_the_window_is_refused,
            forged_event_id_does_not_block_the_real_event,
            unauthenticated_expect_continue_is_refused_without_the_body,
            unauthenticated_large_body_is_refused_without_waiting_for_it,
        );
    };
    (@cases $spawn:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::hostile::$case($spawn).await;
            }
        )*
    };
}
