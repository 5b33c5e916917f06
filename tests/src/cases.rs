//! The cases, each written once. Each takes the adapter's app spawner.

use std::time::Duration;

use mapping_webhooks::{ManualClock, MatchedSecret, OnStoreError};
use serde_json::Value;

use crate::{
    AppSpec, Behaviour, Client, CountingStore, Dedup, Failure, HANDLER_COMPLETED, HANDLER_RESOLVED,
    PREVIOUS_SECRET, ROUTE_ANY, ROUTE_EVENTS, ROUTE_HOOKS, ROUTE_JSON, ROUTE_TYPED,
    ROUTE_UNLAYERED, SECRET, deliver_at_once, envelope, envelope_of, event_id, matched_current,
    now, raw_exchange, sign, wait_for,
};

const COMPLETED_DATA: &str =
    r#"{"mappingJobId":"job_1","status":"COMPLETED","rowCount":4821,"exportFileId":"ef_1"}"#;
const RESOLVED_DATA: &str = r#"{"mappingJobId":"job_1","errorId":"err_1"}"#;

async fn refused_without_handler(
    spawn: impl AsyncFn(AppSpec) -> crate::App,
    status: u16,
    headers: impl FnOnce(&[u8]) -> Vec<(String, String)>,
    body: Vec<u8>,
) {
    let spec = AppSpec::new();
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let client = Client::new(&app);
    let headers = headers(&body);
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let answer = client.post(ROUTE_HOOKS, &headers, body).await;
    assert_eq!(answer.status, status, "{answer:?}");
    assert!(!answer.body.is_empty(), "a refusal says why");
    assert_eq!(probe.calls(), 0, "the handler must not run");
}

fn signature(value: String) -> Vec<(String, String)> {
    vec![("x-webhook-signature".into(), value)]
}

/// Valid → 200, the handler ran once and got the very bytes that were sent.
pub async fn valid_delivery_is_processed_once(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let spec = AppSpec::new();
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let body = envelope(&event_id("valid"), "del_1");
    let answer = Client::new(&app).deliver(ROUTE_HOOKS, body.clone()).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = probe.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, body, "the handler must get the raw bytes");
}

/// The same event again (a new delivery attempt, newly signed) → 200 without the handler.
pub async fn duplicate_is_acknowledged_without_the_handler(
    spawn: impl AsyncFn(AppSpec) -> crate::App,
) {
    let spec = AppSpec::new();
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let client = Client::new(&app);
    let id = event_id("dup");
    assert_eq!(
        client
            .deliver(ROUTE_HOOKS, envelope(&id, "del_1"))
            .await
            .status,
        200
    );
    let again = client.deliver(ROUTE_HOOKS, envelope(&id, "del_2")).await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(probe.calls(), 1, "a duplicate must not run the handler");
}

/// A body changed after signing → 401.
pub async fn tampered_body_is_refused(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let original = envelope(&event_id("tamper"), "del_1");
    let header = sign(SECRET, &original, now());
    let mut tampered = original.clone();
    let at = tampered.iter().position(|&b| b == b'4').expect("a digit");
    tampered[at] = b'5';
    refused_without_handler(spawn, 401, |_| signature(header), tampered).await;
}

/// Signed with another secret → 401, and the answer never holds the expected signature.
pub async fn wrong_secret_is_refused(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let spec = AppSpec::new();
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let body = envelope(&event_id("wrong"), "del_1");
    let ts = now();
    let answer = Client::new(&app)
        .deliver_signed(ROUTE_HOOKS, "whsec_someone_else", body.clone(), ts)
        .await;
    assert_eq!(answer.status, 401, "{answer:?}");
    let expected = sign(SECRET, &body, ts);
    let expected_hex = expected.split("v1=").nth(1).unwrap();
    assert!(!answer.body.contains(expected_hex), "leaked the signature");
    assert!(!answer.body.contains(SECRET), "leaked the secret");
    assert_eq!(probe.calls(), 0);
}

/// A timestamp older than the tolerance → 401.
pub async fn stale_timestamp_is_refused(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let body = envelope(&event_id("stale"), "del_1");
    let header = sign(SECRET, &body, now() - 3600);
    refused_without_handler(spawn, 401, |_| signature(header), body).await;
}

/// A timestamp further ahead than the tolerance → 401.
pub async fn future_timestamp_is_refused(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let body = envelope(&event_id("future"), "del_1");
    let header = sign(SECRET, &body, now() + 3600);
    refused_without_handler(spawn, 401, |_| signature(header), body).await;
}

/// No signature header → 400.
pub async fn missing_header_is_refused(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let body = envelope(&event_id("missing"), "del_1");
    refused_without_handler(spawn, 400, |_| Vec::new(), body).await;
}

/// A header that does not parse → 400.
pub async fn malformed_header_is_refused(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let body = envelope(&event_id("malformed"), "del_1");
    let value = format!("t={},v1=not-hex", now());
    refused_without_handler(spawn, 400, |_| signature(value), body).await;
}

/// Two signature headers (even both valid) → 400.
pub async fn repeated_header_is_refused(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let body = envelope(&event_id("repeated"), "del_1");
    let header = sign(SECRET, &body, now());
    refused_without_handler(
        spawn,
        400,
        |_| {
            let mut h = signature(header.clone());
            h.extend(signature(header));
            h
        },
        body,
    )
    .await;
}

/// During a rotation the previous secret is accepted too, and the handler is told so.
pub async fn previous_secret_is_accepted(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let spec = AppSpec::new().previous_secret(PREVIOUS_SECRET);
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let client = Client::new(&app);
    let old = client
        .deliver_signed(
            ROUTE_HOOKS,
            PREVIOUS_SECRET,
            envelope(&event_id("old"), "d"),
            now(),
        )
        .await;
    assert_eq!(old.status, 200, "{old:?}");
    let new = client
        .deliver(ROUTE_HOOKS, envelope(&event_id("new"), "d"))
        .await;
    assert_eq!(new.status, 200, "{new:?}");
    let seen = probe.seen();
    assert_eq!(
        seen[0].verified.as_ref().unwrap().secret,
        MatchedSecret::Previous(0)
    );
    assert!(matched_current(seen[1].verified.as_ref().unwrap()));
}

/// A header with two `v1` values, one of them right → accepted.
pub async fn two_v1_signatures_one_valid(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let spec = AppSpec::new();
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let body = envelope(&event_id("two"), "d");
    let ts = now();
    let good = sign(SECRET, &body, ts);
    let good_hex = good.split("v1=").nth(1).unwrap();
    let header = format!("t={ts},v1={},v1={good_hex}", "0".repeat(64));
    let answer = Client::new(&app)
        .post(ROUTE_HOOKS, &[("x-webhook-signature", &header)], body)
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(probe.calls(), 1);
}

/// 2 MiB against the default 1 MiB limit → 413.
pub async fn two_mib_body_is_413(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let spec = AppSpec::new();
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let mut body = envelope(&event_id("big"), "d");
    body.truncate(body.len() - 1);
    body.extend_from_slice(b", \"pad\":\"");
    body.resize(2 * 1024 * 1024 - 2, b'x');
    body.extend_from_slice(b"\"}");
    // Over a raw socket, reading while writing: the server answers 413 on the declared
    // length and closes, and an HTTP client still writing the body may see the reset
    // before the answer.
    let head = format!(
        "POST {ROUTE_HOOKS} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         x-webhook-signature: {}\r\ncontent-length: {}\r\n\r\n",
        app.addr(),
        sign(SECRET, &body, now()),
        body.len()
    );
    let status = raw_exchange(&app, head.as_bytes(), Some(&body)).await;
    assert_eq!(status, Some(413));
    assert_eq!(probe.calls(), 0);
}

/// A configured limit applies: one byte over it → 413, at it → accepted.
pub async fn small_limit_is_enforced(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let at = envelope(&event_id("limit"), "d");
    let spec = AppSpec::new().body_limit(at.len());
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let client = Client::new(&app);
    let mut over = envelope(&event_id("limit"), "d");
    over.push(b' ');
    assert_eq!(client.deliver(ROUTE_HOOKS, over).await.status, 413);
    assert_eq!(probe.calls(), 0);
    assert_eq!(client.deliver(ROUTE_HOOKS, at).await.status, 200);
}

/// A chunked body (no `Content-Length`) passing the limit → 413 while it streams.
pub async fn chunked_body_over_the_limit_is_413(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let spec = AppSpec::new().body_limit(64 * 1024);
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let head = format!(
        "POST {ROUTE_HOOKS} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         x-webhook-signature: t={},v1={}\r\ntransfer-encoding: chunked\r\n\r\n",
        app.addr(),
        now(),
        "0".repeat(64)
    );
    // 128 chunks of 4 KiB: twice the limit, and no terminating chunk.
    let chunk = format!("1000\r\n{}\r\n", "x".repeat(4096));
    let more = chunk.repeat(128);
    let status = raw_exchange(&app, head.as_bytes(), Some(more.as_bytes())).await;
    assert_eq!(status, Some(413));
    assert_eq!(probe.calls(), 0);
}

/// A declared length over the limit is refused before any byte of the body is read: the
/// client sends none, and still gets 413 (not a read timeout).
pub async fn oversized_content_length_is_refused_before_reading(
    spawn: impl AsyncFn(AppSpec) -> crate::App,
) {
    let spec = AppSpec::new();
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let head = format!(
        "POST {ROUTE_HOOKS} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         x-webhook-signature: t={},v1={}\r\ncontent-length: 1073741824\r\n\r\n",
        app.addr(),
        now(),
        "0".repeat(64)
    );
    let status = raw_exchange(&app, head.as_bytes(), None).await;
    assert_eq!(status, Some(413));
    // The declared length is checked first, before the signature header.
    let unsigned = format!(
        "POST {ROUTE_HOOKS} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         content-length: 1073741824\r\n\r\n",
        app.addr(),
    );
    let status = raw_exchange(&app, unsigned.as_bytes(), None).await;
    assert_eq!(status, Some(413), "without a signature header");
    assert_eq!(probe.calls(), 0);
}

/// A correctly signed body that is not an envelope → 400.
pub async fn signed_non_envelope_is_400(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let body = br#"{"hello":"world"}"#.to_vec();
    let header = sign(SECRET, &body, now());
    refused_without_handler(spawn, 400, |_| signature(header), body).await;
}

/// The handler answers 500 → the sender's retry is processed; then it is done.
pub async fn handler_500_leaves_the_event_retryable(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let spec = AppSpec::new().behaviour(Behaviour::fail_first(1, Failure::Status(500)));
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let client = Client::new(&app);
    let body = envelope(&event_id("h500"), "d");
    assert_eq!(client.deliver(ROUTE_HOOKS, body.clone()).await.status, 500);
    let retry = client.deliver_until_not_in_flight(ROUTE_HOOKS, &body).await;
    assert_eq!(retry.status, 200, "{retry:?}");
    assert_eq!((probe.calls(), probe.successes()), (2, 1));
    assert_eq!(client.deliver(ROUTE_HOOKS, body).await.status, 200);
    assert_eq!(probe.calls(), 2, "done after the success");
}

/// The handler panics → the sender's retry is processed.
pub async fn handler_panic_leaves_the_event_retryable(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let spec = AppSpec::new().behaviour(Behaviour::fail_first(1, Failure::Panic));
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let client = Client::new(&app);
    let body = envelope(&event_id("panic"), "d");
    let signature = sign(SECRET, &body, now());
    let first = client
        .try_post(
            ROUTE_HOOKS,
            &[("x-webhook-signature", &signature)],
            body.clone(),
        )
        .await;
    // A 500 from the framework's panic handling, or a dropped connection.
    assert!(first.as_ref().is_none_or(|a| a.status == 500), "{first:?}");
    assert_eq!(probe.calls(), 1);
    let retry = client.deliver_until_not_in_flight(ROUTE_HOOKS, &body).await;
    assert_eq!(retry.status, 200, "{retry:?}");
    assert_eq!((probe.calls(), probe.successes()), (2, 1));
}

/// The client goes away while the handler runs → its future is dropped, the claim freed,
/// and the sender's retry is processed.
pub async fn client_disconnect_leaves_the_event_retryable(
    spawn: impl AsyncFn(AppSpec) -> crate::App,
) {
    let spec = AppSpec::new().behaviour(Behaviour::fail_first(1, Failure::Hang));
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let body = envelope(&event_id("gone"), "d");
    let head = format!(
        "POST {ROUTE_HOOKS} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         x-webhook-signature: {}\r\ncontent-length: {}\r\n\r\n",
        app.addr(),
        sign(SECRET, &body, now()),
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(app.addr()).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, head.as_bytes())
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, &body)
        .await
        .unwrap();
    wait_for("the handler to start", || probe.calls() == 1).await;
    drop(stream);
    let client = Client::new(&app);
    let retry = client.deliver_until_not_in_flight(ROUTE_HOOKS, &body).await;
    assert_eq!(retry.status, 200, "{retry:?}");
    assert_eq!((probe.calls(), probe.successes()), (2, 1));
}

/// 32 copies of one event at once → the handler ran exactly once, nobody got a 5xx.
pub async fn concurrent_copies_run_the_handler_once(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let spec = AppSpec::new().behaviour(Behaviour::slow(Duration::from_millis(200)));
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let client = Client::new(&app);
    let id = event_id("burst");
    let statuses = deliver_at_once(&[client], ROUTE_HOOKS, 32, |copy| {
        envelope(&id, &format!("del_{copy}"))
    })
    .await;
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?}"
    );
    assert!(statuses.contains(&200), "{statuses:?}");
    assert_eq!(probe.calls(), 1, "{statuses:?}");
}

/// While one copy is being processed, another gets 409 with `Retry-After`.
pub async fn in_flight_copy_gets_409_with_retry_after(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let spec = AppSpec::new().behaviour(Behaviour::fail_first(1, Failure::Hang));
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let client = Client::new(&app);
    let body = envelope(&event_id("inflight"), "d");
    let first = {
        let client = client.clone();
        let body = body.clone();
        tokio::spawn(async move { client.deliver(ROUTE_HOOKS, body).await })
    };
    wait_for("the first copy's handler to start", || probe.calls() == 1).await;
    let second = client.deliver(ROUTE_HOOKS, body).await;
    assert_eq!(second.status, 409, "{second:?}");
    let retry_after: u64 = second
        .retry_after
        .as_deref()
        .expect("Retry-After on 409")
        .parse()
        .expect("Retry-After in seconds");
    assert!(retry_after > 0);
    assert_eq!(probe.calls(), 1);
    first.abort();
}

/// The store fails → 503 by default, the handler does not run.
pub async fn store_error_is_503_by_default(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let spec = AppSpec::new().dedup(Dedup::Failing);
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let answer = Client::new(&app)
        .deliver(ROUTE_HOOKS, envelope(&event_id("down"), "d"))
        .await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(probe.calls(), 0);
}

/// The store fails and pass-through was chosen → the handler runs.
pub async fn store_error_passes_through_when_configured(
    spawn: impl AsyncFn(AppSpec) -> crate::App,
) {
    let spec = AppSpec::new()
        .dedup(Dedup::Failing)
        .on_store_error(OnStoreError::PassThrough);
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let answer = Client::new(&app)
        .deliver(ROUTE_HOOKS, envelope(&event_id("pass"), "d"))
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(probe.calls(), 1);
}

/// A user's own store is the one consulted, and only for verified requests.
pub async fn user_store_is_used(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let store = CountingStore::default();
    let spec = AppSpec::new().dedup(Dedup::User(store.clone()));
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let client = Client::new(&app);
    let id = event_id("user");
    let forged = client
        .deliver_signed(ROUTE_HOOKS, "whsec_forger", envelope(&id, "d"), now())
        .await;
    assert_eq!(forged.status, 401);
    assert_eq!(
        store.begins(),
        0,
        "a forged request must not touch the store"
    );
    assert_eq!(
        client.deliver(ROUTE_HOOKS, envelope(&id, "d")).await.status,
        200
    );
    assert_eq!(
        client.deliver(ROUTE_HOOKS, envelope(&id, "e")).await.status,
        200
    );
    assert_eq!(store.begins(), 2);
    assert_eq!(probe.calls(), 1);
}

/// Without dedup, every verified copy runs the handler.
pub async fn dedup_can_be_turned_off(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let spec = AppSpec::new().dedup(Dedup::Off);
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let client = Client::new(&app);
    let id = event_id("off");
    assert_eq!(
        client.deliver(ROUTE_HOOKS, envelope(&id, "d")).await.status,
        200
    );
    assert_eq!(
        client.deliver(ROUTE_HOOKS, envelope(&id, "e")).await.status,
        200
    );
    assert_eq!(probe.calls(), 2);
}

/// The framework's JSON extractor behind the adapter sees the very bytes that were sent.
pub async fn json_extractor_gets_the_original_bytes(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let spec = AppSpec::new();
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let body = envelope(&event_id("json"), "d");
    let answer = Client::new(&app).deliver(ROUTE_JSON, body.clone()).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = probe.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].route, ROUTE_JSON);
    assert_eq!(
        seen[0].body, body,
        "Json<RawValue> must hold the original bytes"
    );
}

/// The handler finds the verified metadata, all taken from the signed body.
pub async fn metadata_is_in_the_extensions(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let spec = AppSpec::new();
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let id = event_id("meta");
    let ts = now();
    let answer = Client::new(&app)
        .deliver_signed(ROUTE_HOOKS, SECRET, envelope(&id, "del_meta"), ts)
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let verified = probe.seen()[0].verified.clone().expect("metadata");
    assert_eq!(verified.event_id, id);
    assert_eq!(verified.event_type, "mapping.completed");
    assert_eq!(verified.delivery_id, "del_meta");
    assert_eq!(verified.timestamp, ts);
    assert!(matched_current(&verified));
}

/// The typed extractor gives the envelope with its typed payload and the metadata.
pub async fn typed_extractor_gives_the_envelope(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let spec = AppSpec::new();
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let id = event_id("typed");
    let answer = Client::new(&app)
        .deliver(ROUTE_TYPED, envelope(&id, "del_typed"))
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = &probe.seen()[0];
    assert_eq!(seen.verified.as_ref().unwrap().event_id, id);
    let envelope: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(envelope["eventId"], id.as_str());
    assert_eq!(envelope["id"], "del_typed");
    assert_eq!(envelope["data"]["rowCount"], 4821);
    assert_eq!(envelope["data"]["mappingJobId"], "job_01HZ");
}

/// A verified payload that does not match the handler's type → 422, and the event
/// stays retryable (a fixed deploy still gets it).
pub async fn typed_extractor_mismatch_is_422_and_retryable(
    spawn: impl AsyncFn(AppSpec) -> crate::App,
) {
    let spec = AppSpec::new();
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let client = Client::new(&app);
    let id = event_id("mismatch");
    let bad = format!(
        r#"{{"id":"d","eventId":"{id}","type":"mapping.completed","data":{{"rowCount":"many"}}}}"#
    );
    let answer = client.deliver(ROUTE_TYPED, bad.into_bytes()).await;
    assert_eq!(answer.status, 422, "{answer:?}");
    assert_eq!(probe.calls(), 0);
    let retry = client
        .deliver_until_not_in_flight(ROUTE_HOOKS, &envelope(&id, "d2"))
        .await;
    assert_eq!(
        retry.status, 200,
        "the event must stay retryable: {retry:?}"
    );
    assert_eq!(probe.calls(), 1);
}

/// The typed extractor on a route without the adapter → 500 naming the missing layer.
pub async fn extractor_without_the_layer_is_500(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let spec = AppSpec::new();
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let answer = Client::new(&app)
        .deliver(ROUTE_UNLAYERED, envelope(&event_id("bare"), "d"))
        .await;
    assert_eq!(answer.status, 500, "{answer:?}");
    assert!(answer.body.contains("WebhookVerify"), "{answer:?}");
    assert_eq!(probe.calls(), 0);
}

/// Exactly at the tolerance either way is accepted; one second beyond is refused.
pub async fn tolerance_edges_are_inclusive(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    const T: u64 = 1_800_000_000;
    let spec = AppSpec::new().clock(ManualClock::at_secs(T));
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let client = Client::new(&app);
    for (ts, status) in [
        (T - 300, 200),
        (T + 300, 200),
        (T - 301, 401),
        (T + 301, 401),
    ] {
        let answer = client
            .deliver_signed(ROUTE_HOOKS, SECRET, envelope(&event_id("edge"), "d"), ts)
            .await;
        assert_eq!(
            answer.status, status,
            "timestamp {ts} vs now {T}: {answer:?}"
        );
    }
    assert_eq!(probe.calls(), 2);
}

/// A configured tolerance replaces the default.
pub async fn custom_tolerance_is_applied(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    const T: u64 = 1_800_000_000;
    let spec = AppSpec::new()
        .clock(ManualClock::at_secs(T))
        .tolerance(Duration::from_secs(30));
    let app = spawn(spec).await;
    let client = Client::new(&app);
    for (ts, status) in [(T - 30, 200), (T - 31, 401), (T + 31, 401)] {
        let answer = client
            .deliver_signed(ROUTE_HOOKS, SECRET, envelope(&event_id("tol"), "d"), ts)
            .await;
        assert_eq!(
            answer.status, status,
            "timestamp {ts} vs now {T}: {answer:?}"
        );
    }
}

/// Asserts that `event_id` is remembered as done: a new copy is answered 200 "already
/// processed", so the sender would not retry it.
async fn assert_done(client: &Client, route: &str, body: &[u8]) {
    let again = client.deliver_until_not_in_flight(route, body).await;
    assert!(again.is_duplicate(), "{again:?}");
}

/// The typed extractor of one payload type (`MappingCompleted`) acknowledges an event of
/// another subscribed type (2xx, remembered as done) without running the handler: the
/// sender must never retry it until it is dead.
pub async fn typed_extractor_acknowledges_another_type(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let spec = AppSpec::new();
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let client = Client::new(&app);
    // Its data would even parse as MappingCompleted: the type alone decides.
    let body = envelope_of("mapping.error.resolved", &event_id("other"), COMPLETED_DATA);
    let answer = client.deliver(ROUTE_TYPED, body.clone()).await;
    assert!((200..300).contains(&answer.status), "{answer:?}");
    assert!(answer.body.contains("mapping.error.resolved"), "{answer:?}");
    assert_eq!(
        probe.calls(),
        0,
        "the handler is for mapping.completed only"
    );
    assert_done(&client, ROUTE_TYPED, &body).await;
    assert_eq!(probe.calls(), 0);
}

/// The extractor of the `Event` enum takes every type: the known ones typed, any other
/// one kept, each handled once.
pub async fn event_extractor_takes_every_type(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    let spec = AppSpec::new();
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let client = Client::new(&app);
    let deliveries = [
        ("mapping.completed", COMPLETED_DATA),
        ("mapping.error.resolved", RESOLVED_DATA),
        ("export.expired", r#"{"exportFileId":"ef_1"}"#),
    ];
    for (event_type, data) in deliveries {
        let answer = client
            .deliver(ROUTE_ANY, envelope_of(event_type, &event_id("any"), data))
            .await;
        assert_eq!(answer.status, 200, "{event_type}: {answer:?}");
    }
    let seen = probe.seen();
    assert_eq!(seen.len(), 3);
    for ((event_type, data), seen) in deliveries.iter().zip(&seen) {
        assert_eq!(seen.route, ROUTE_ANY);
        assert_eq!(seen.verified.as_ref().unwrap().event_type, *event_type);
        let envelope: Value = serde_json::from_slice(&seen.body).unwrap();
        assert_eq!(envelope["type"], *event_type);
        assert_eq!(
            envelope["data"],
            serde_json::from_str::<Value>(data).unwrap()
        );
    }
}

/// The adapter's `EventRouter` runs exactly the handler registered for the event's type,
/// once, with its payload.
pub async fn dispatch_runs_exactly_the_registered_handler(
    spawn: impl AsyncFn(AppSpec) -> crate::App,
) {
    let spec = AppSpec::new();
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let client = Client::new(&app);
    let completed = envelope_of("mapping.completed", &event_id("dispatch"), COMPLETED_DATA);
    let answer = client.deliver(ROUTE_EVENTS, completed.clone()).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let resolved = envelope_of(
        "mapping.error.resolved",
        &event_id("dispatch"),
        RESOLVED_DATA,
    );
    let answer = client.deliver(ROUTE_EVENTS, resolved.clone()).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let seen = probe.seen();
    let routes: Vec<&str> = seen.iter().map(|s| s.route).collect();
    assert_eq!(routes, [HANDLER_COMPLETED, HANDLER_RESOLVED]);
    let first: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(first["data"]["rowCount"], 4821);
    let second: Value = serde_json::from_slice(&seen[1].body).unwrap();
    assert_eq!(second["data"]["errorId"], "err_1");
    // Each is done: a copy runs no handler.
    assert_done(&client, ROUTE_EVENTS, &completed).await;
    assert_done(&client, ROUTE_EVENTS, &resolved).await;
    assert_eq!(probe.calls(), 2);
}

/// A type without a handler (and no fallback) is acknowledged with a 2xx, runs no
/// handler, and is remembered as done: never refused, so never retried until dead.
pub async fn dispatch_acknowledges_an_unregistered_type(
    spawn: impl AsyncFn(AppSpec) -> crate::App,
) {
    let spec = AppSpec::new();
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let client = Client::new(&app);
    let body = envelope_of("export.expired", &event_id("unregistered"), "{}");
    let answer = client.deliver(ROUTE_EVENTS, body.clone()).await;
    assert!((200..300).contains(&answer.status), "{answer:?}");
    assert_eq!(probe.calls(), 0);
    assert_done(&client, ROUTE_EVENTS, &body).await;
    assert_eq!(probe.calls(), 0);
}

/// A registered type whose payload does not match its handler's type → 422, no handler
/// runs, and the event stays retryable (a fixed deploy still gets it).
pub async fn dispatch_payload_mismatch_is_422_and_retryable(
    spawn: impl AsyncFn(AppSpec) -> crate::App,
) {
    let spec = AppSpec::new();
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let client = Client::new(&app);
    let id = event_id("dispatch_bad");
    let bad = envelope_of("mapping.completed", &id, r#"{"rowCount":"many"}"#);
    let answer = client.deliver(ROUTE_EVENTS, bad).await;
    assert_eq!(answer.status, 422, "{answer:?}");
    assert_eq!(probe.calls(), 0);
    let fixed = envelope_of("mapping.completed", &id, COMPLETED_DATA);
    let retry = client
        .deliver_until_not_in_flight(ROUTE_EVENTS, &fixed)
        .await;
    assert_eq!(
        retry.status, 200,
        "the event must stay retryable: {retry:?}"
    );
    let routes: Vec<&str> = probe.seen().iter().map(|s| s.route).collect();
    assert_eq!(routes, [HANDLER_COMPLETED]);
}

/// The adapter's `clock(..)` also drives the default store: a done event is forgotten
/// once the manual clock passes the store's TTL (24 h), and processed again.
pub async fn clock_drives_the_default_store_s_ttl(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    const T: u64 = 1_800_000_000;
    let clock = ManualClock::at_secs(T);
    let spec = AppSpec::new().clock(clock.clone());
    let probe = spec.probe.clone();
    let app = spawn(spec).await;
    let client = Client::new(&app);
    let body = envelope(&event_id("ttl"), "del_ttl");
    let first = client
        .deliver_signed(ROUTE_HOOKS, SECRET, body.clone(), T)
        .await;
    assert_eq!(first.status, 200, "{first:?}");
    let copy = client
        .deliver_signed(ROUTE_HOOKS, SECRET, body.clone(), T)
        .await;
    assert!(copy.is_duplicate(), "{copy:?}");
    clock.advance(Duration::from_secs(24 * 3600 + 1));
    let later = client
        .deliver_signed(ROUTE_HOOKS, SECRET, body, T + 24 * 3600 + 1)
        .await;
    assert_eq!(later.status, 200, "{later:?}");
    assert_eq!(
        probe.calls(),
        2,
        "the store's TTL must follow the adapter's clock"
    );
}

/// An observer hears each request's outcome exactly once, with its reason: the refusals
/// the adapter finds while reading the body (413 while streaming, 408) as well as the
/// gate's own, a handler that panics (reported as `panicked` where the adapter catches
/// it, `dropped` where the panic unwinds through it), the copies in flight while its
/// claim is freed, the processed retry and the duplicate. The claims in flight return
/// to zero.
pub async fn observer_hears_each_outcome_once(spawn: impl AsyncFn(AppSpec) -> crate::App) {
    use mapping_webhooks::{HandlerEnd, Outcome, Refusal};

    let observer = crate::CountingObserver::default();
    let spec = AppSpec::new()
        .behaviour(Behaviour::fail_first(1, Failure::Panic))
        .body_limit(64 * 1024)
        .read_timeout(Duration::from_millis(300))
        .observer(observer.clone());
    let app = spawn(spec).await;
    let client = Client::new(&app);
    let mut expected = 0;

    // The handler panics.
    let body = envelope(&event_id("observed"), "d");
    let signature = sign(SECRET, &body, now());
    let first = client
        .try_post(
            ROUTE_HOOKS,
            &[("x-webhook-signature", &signature)],
            body.clone(),
        )
        .await;
    assert!(first.as_ref().is_none_or(|a| a.status == 500), "{first:?}");
    expected += 1;
    // Retried until its claim is freed (a dropped ticket frees it in the background).
    let mut in_flight = 0;
    let retry = loop {
        let answer = client.deliver(ROUTE_HOOKS, body.clone()).await;
        expected += 1;
        if answer.status != 409 {
            break answer;
        }
        in_flight += 1;
        assert!(in_flight < 200, "the claim was never freed");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(retry.status, 200);
    assert_eq!(client.deliver(ROUTE_HOOKS, body).await.status, 200);
    expected += 1;

    // 413 while the chunked body streams.
    let head = format!(
        "POST {ROUTE_HOOKS} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         x-webhook-signature: t={},v1={}\r\ntransfer-encoding: chunked\r\n\r\n",
        app.addr(),
        now(),
        "0".repeat(64)
    );
    let more = format!("1000\r\n{}\r\n", "x".repeat(4096)).repeat(32);
    let status = raw_exchange(&app, head.as_bytes(), Some(more.as_bytes())).await;
    assert_eq!(status, Some(413));
    expected += 1;

    // 408: a body shorter than its declared length, never finished.
    let stalled = envelope(&event_id("stalled"), "d");
    let head = format!(
        "POST {ROUTE_HOOKS} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         x-webhook-signature: {}\r\ncontent-length: {}\r\n\r\n",
        app.addr(),
        sign(SECRET, &stalled, now()),
        stalled.len()
    );
    let status = raw_exchange(&app, head.as_bytes(), Some(&stalled[..10])).await;
    assert!(matches!(status, None | Some(408)), "{status:?}");
    expected += 1;

    // A forged one.
    let forged = envelope(&event_id("forged"), "d");
    let answer = client
        .deliver_signed(ROUTE_HOOKS, "whsec_forger", forged, now())
        .await;
    assert_eq!(answer.status, 401);
    expected += 1;

    wait_for("every outcome reported", || {
        observer.outcomes().len() >= expected
    })
    .await;
    wait_for("no claim in flight", || observer.claims_in_flight() == 0).await;
    let outcomes = observer.outcomes();
    assert_eq!(outcomes.len(), expected, "{outcomes:?}");
    let count = |wanted: &dyn Fn(&Outcome) -> bool| outcomes.iter().filter(|o| wanted(o)).count();
    let handled = |o: &Outcome, ends: &[HandlerEnd]| matches!(o, Outcome::Handled(h) if ends.contains(&h.end) && !h.store_error);
    assert_eq!(
        count(&|o| handled(o, &[HandlerEnd::Panicked, HandlerEnd::Dropped])),
        1,
        "the panic, once: {outcomes:?}"
    );
    assert_eq!(
        count(&|o| handled(o, &[HandlerEnd::Status(200)])),
        1,
        "{outcomes:?}"
    );
    assert_eq!(count(&|o| *o == Outcome::InFlight), in_flight);
    assert_eq!(count(&|o| *o == Outcome::Duplicate), 1);
    for refusal in [
        Refusal::BodyTooLarge,
        Refusal::ReadTimeout,
        Refusal::SignatureMismatch,
    ] {
        assert_eq!(
            count(&|o| *o == Outcome::Refused(refusal)),
            1,
            "{refusal:?} once: {outcomes:?}"
        );
    }
}
