//! `METRICS_ADDR`, for an example receiver (`axum-receiver`, `actix-receiver`): start it
//! with metrics on, send a known
//! sequence of deliveries (valid, duplicate, concurrent copies, forged, stale, malformed,
//! oversize, signed with the previous secret), scrape `/metrics` and check every count.
//! `inbox-receiver` too, with its worker's metrics.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mapping_webhooks::{Secret, Signer};
use mapping_webhooks_examples::{METRICS_PATH, WEBHOOK_PATH};

use crate::support::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CURRENT: &str = "whsec_metrics_scrape_current_0123456789abcdef";
const PREVIOUS: &str = "whsec_metrics_scrape_previous_0123456789abcdef";
/// Concurrent copies of one event.
const COPIES: usize = 8;

/// A receiver process, killed when dropped.
struct Receiver(Child);

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

async fn start(binary: &str) -> (Receiver, String, String) {
    start_with(binary, &[]).await
}

async fn start_with(binary: &str, env: &[(&str, &str)]) -> (Receiver, String, String) {
    let (addr, metrics) = (free_addr(), free_addr());
    let child = Command::new(binary)
        .envs(env.iter().copied())
        .env("MAPPING_WEBHOOK_SECRET", CURRENT)
        .env("MAPPING_WEBHOOK_SECRET_PREVIOUS", PREVIOUS)
        .env_remove("PORT")
        .env("BIND_ADDR", &addr)
        .env("METRICS_ADDR", &metrics)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {binary}: {e}"));
    let receiver = Receiver(child);
    // Bounded polling until both listen.
    for _ in 0..400 {
        if TcpStream::connect(&addr).await.is_ok() && TcpStream::connect(&metrics).await.is_ok() {
            return (receiver, addr, metrics);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{binary} never listened on {addr} and {metrics}");
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn envelope(event_id: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"del_{event_id}","eventId":"{event_id}","type":"mapping.completed","apiVersion":"2026-06-01","data":{{"mappingJobId":"job_1","status":"COMPLETED","rowCount":1}}}}"#
    )
    .into_bytes()
}

fn sign(secret: &str, body: &[u8], t: u64) -> String {
    Signer::new(Secret::new(secret).unwrap()).sign(body, t)
}

/// One request on a fresh connection: the head with these headers and a
/// `Content-Length` (`declared`, or the body's), then the body; returns the status.
async fn exchange(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    declared: Option<usize>,
    body: &[u8],
) -> (u16, String) {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        declared.unwrap_or(body.len())
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut request = request.into_bytes();
    request.extend_from_slice(body);
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(&request).await.unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        response
    };
    let response = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .expect("answered within 30 s");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    (status, text)
}

async fn deliver(addr: &str, secret: &str, body: &[u8], t: u64) -> u16 {
    let signature = sign(secret, body, t);
    let headers = [("x-webhook-signature", signature.as_str())];
    exchange(addr, "POST", WEBHOOK_PATH, &headers, None, body)
        .await
        .0
}

/// The value of the series `name{labels}` in a Prometheus text exposition.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    wanted.sort();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, number)) = line.rsplit_once(' ') else {
            continue;
        };
        let (series_name, series_labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let mut got: Vec<String> = series_labels
            .split(',')
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        got.sort();
        if series_name == name && got == wanted {
            return number.parse().unwrap();
        }
    }
    panic!("no series {name}{labels:?} in:\n{text}");
}

/// The sum of every `mapping_webhooks_requests_total` series.
fn all_requests(text: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with("mapping_webhooks_requests_total{"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum()
}

/// The runtime the scenarios' clients run on.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// With metrics on, a known sequence of deliveries (valid, duplicate, concurrent copies,
/// forged, stale, malformed, oversize, signed with the previous secret): every count
/// scraped from `/metrics` is exact, and no id or secret is in them.
pub fn counts_each_delivery_exactly(name: &str, binary: &str) {
    runtime().block_on(counts(name, binary));
}

async fn counts(name: &str, binary: &str) {
    let (_receiver, addr, metrics) = start(binary).await;
    let scrape = || exchange(&metrics, "GET", METRICS_PATH, &[], None, b"");
    let requests = |text: &str, outcome, reason| {
        value(
            text,
            "mapping_webhooks_requests_total",
            &[("outcome", outcome), ("reason", reason)],
        )
    };

    // Before any delivery every series is there, at zero.
    let (status, before) = scrape().await;
    assert_eq!(status, 200, "{name}: {before}");
    assert_eq!(requests(&before, "processed", "2xx"), 0.0, "{name}");
    assert_eq!(requests(&before, "refused", "read_timeout"), 0.0, "{name}");
    assert_eq!(all_requests(&before), 0.0, "{name}");

    let tag = format!("{name}_{}", std::process::id());
    let valid = envelope(&format!("evt_valid_{tag}"));
    assert_eq!(deliver(&addr, CURRENT, &valid, now()).await, 204, "{name}");
    assert_eq!(
        deliver(&addr, CURRENT, &valid, now()).await,
        200,
        "{name}: duplicate"
    );

    // Concurrent copies of one new event: exactly one runs the handler; each other
    // copy is told it is in flight (409) or already done (200), as it happened.
    let copy = Arc::new(envelope(&format!("evt_copies_{tag}")));
    let start = Arc::new(tokio::sync::Barrier::new(COPIES));
    let tasks: Vec<_> = (0..COPIES)
        .map(|_| {
            let (addr, copy, start) = (addr.clone(), copy.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                deliver(&addr, CURRENT, &copy, now()).await
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let count = |s: u16| statuses.iter().filter(|&&x| x == s).count() as f64;
    assert_eq!(count(204), 1.0, "{name}: {statuses:?}");
    assert_eq!(
        count(204) + count(409) + count(200),
        COPIES as f64,
        "{name}: {statuses:?}"
    );

    let forged = envelope(&format!("evt_forged_{tag}"));
    assert_eq!(
        deliver(&addr, "whsec_forger", &forged, now()).await,
        401,
        "{name}"
    );
    let stale = envelope(&format!("evt_stale_{tag}"));
    assert_eq!(
        deliver(&addr, CURRENT, &stale, now() - 400).await,
        401,
        "{name}"
    );
    let malformed = envelope(&format!("evt_malformed_{tag}"));
    let headers = [("x-webhook-signature", "t=soon,v1=zz")];
    let (status, _) = exchange(&addr, "POST", WEBHOOK_PATH, &headers, None, &malformed).await;
    assert_eq!(status, 400, "{name}: malformed");
    // Declared over the 1 MiB limit: refused from the head, nothing sent after it.
    let oversize = envelope(&format!("evt_oversize_{tag}"));
    let signature = sign(CURRENT, &oversize, now());
    let headers = [("x-webhook-signature", signature.as_str())];
    let (status, _) = exchange(&addr, "POST", WEBHOOK_PATH, &headers, Some(2 << 20), b"").await;
    assert_eq!(status, 413, "{name}: oversize");
    let rotated = envelope(&format!("evt_previous_{tag}"));
    assert_eq!(
        deliver(&addr, PREVIOUS, &rotated, now()).await,
        204,
        "{name}"
    );

    let (status, text) = scrape().await;
    assert_eq!(status, 200);
    let checks = [
        ("processed", "2xx", 3.0),
        ("duplicate", "already_processed", 1.0 + count(200)),
        ("in_flight", "in_flight", count(409)),
        ("refused", "signature_mismatch", 1.0),
        ("refused", "timestamp_too_old", 1.0),
        ("refused", "malformed_header", 1.0),
        ("refused", "body_too_large", 1.0),
    ];
    for (outcome, reason, expected) in checks {
        assert_eq!(
            requests(&text, outcome, reason),
            expected,
            "{name}: {outcome}/{reason}\n{text}"
        );
    }
    let sent = 2.0 + COPIES as f64 + 5.0;
    assert_eq!(
        all_requests(&text),
        sent,
        "{name}: each request once\n{text}"
    );
    let previous = value(&text, "mapping_webhooks_previous_secret_matches_total", &[]);
    assert_eq!(previous, 1.0, "{name}");
    assert_eq!(
        value(&text, "mapping_webhooks_claims_in_flight", &[]),
        0.0,
        "{name}"
    );
    // Verified: valid twice, the copies, forged, previous. Stale, malformed and
    // oversize were refused from the head.
    let verified = 2.0 + COPIES as f64 + 2.0;
    let histogram =
        |name: &str, labels: &[(&str, &str)]| value(&text, &format!("{name}_count"), labels);
    assert_eq!(
        histogram("mapping_webhooks_verification_duration_seconds", &[]),
        verified,
        "{name}"
    );
    assert_eq!(
        histogram("mapping_webhooks_handler_duration_seconds", &[]),
        3.0,
        "{name}"
    );
    let store = "mapping_webhooks_store_duration_seconds";
    assert_eq!(
        histogram(store, &[("operation", "begin")]),
        verified - 1.0,
        "{name}"
    );
    assert_eq!(
        histogram(store, &[("operation", "complete")]),
        3.0,
        "{name}"
    );
    assert_eq!(histogram(store, &[("operation", "abandon")]), 0.0, "{name}");
    // No id ever becomes a label.
    assert!(
        !text.contains("evt_"),
        "{name}: an event id in the metrics\n{text}"
    );
    assert!(!text.contains("whsec_"), "{name}: a secret in the metrics");
}

/// Without `METRICS_ADDR`, nothing is served but the webhooks.
pub fn without_metrics_addr_nothing_is_served(name: &str, binary: &str) {
    let (addr, metrics) = (free_addr(), free_addr());
    let child = Command::new(binary)
        .env_remove("METRICS_ADDR")
        .env("BIND_ADDR", &addr)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _receiver = Receiver(child);
    let mut up = false;
    for _ in 0..400 {
        if std::net::TcpStream::connect(&addr).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(up, "{name} never listened");
    assert!(
        std::net::TcpStream::connect(&metrics).is_err(),
        "{name} serves metrics without METRICS_ADDR"
    );
}

/// The metrics of the inbox's worker, which only `inbox-receiver` serves.
const INBOX_METRICS: &str = "mapping_webhooks_inbox_";

/// The Grafana dashboard (`examples/grafana/mapping-webhooks.json`) queries exactly the
/// metrics an inline receiver serves, apart from its inbox row.
pub fn the_dashboard_queries_the_served_metrics(binary: &str) {
    runtime().block_on(dashboard(binary, &[], |name| {
        !name.starts_with(INBOX_METRICS)
    }));
}

/// The dashboard's inbox row queries exactly the worker metrics `inbox-receiver` serves.
pub fn the_dashboard_queries_the_inbox_metrics(binary: &str) {
    let dir = TempDir::new("inbox-dashboard");
    let database = format!("sqlite://{}", dir.path().join("webhooks.db").display());
    let env = [("DATABASE_URL", database.as_str())];
    runtime().block_on(dashboard(binary, &env, |name| {
        name.starts_with(INBOX_METRICS)
    }));
}

/// The metric names the dashboard queries and `binary` serves, of those `family` takes,
/// are the same.
async fn dashboard(binary: &str, env: &[(&str, &str)], family: fn(&str) -> bool) {
    let dashboard = include_str!("../../grafana/mapping-webhooks.json");
    let json: serde_json::Value = serde_json::from_str(dashboard).expect("valid JSON");
    let names = |text: &str| -> std::collections::BTreeSet<String> {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("mapping_webhooks_"))
            .map(|w| {
                ["_bucket", "_count", "_sum"]
                    .iter()
                    .fold(w, |w, suffix| w.strip_suffix(suffix).unwrap_or(w))
                    .to_owned()
            })
            .filter(|name| family(name))
            .collect()
    };
    let mut queried = std::collections::BTreeSet::new();
    for panel in json["panels"].as_array().unwrap() {
        // A row has no queries.
        for target in panel["targets"].as_array().into_iter().flatten() {
            queried.extend(names(target["expr"].as_str().unwrap()));
        }
    }
    let (_receiver, _, metrics) = start_with(binary, env).await;
    let (_, text) = exchange(&metrics, "GET", METRICS_PATH, &[], None, b"").await;
    let body = text.split_once("\r\n\r\n").unwrap().1;
    let served = names(body);
    assert!(!served.is_empty(), "{body}");
    assert_eq!(queried, served);
}

/// `inbox-receiver` with metrics on: deliveries stored for the worker count as
/// `queued`, a stored event sent again as `duplicate`, a forged one as refused; the
/// worker's attempts and their lag are served from the same `/metrics`.
pub fn inbox_counts_each_delivery_exactly(binary: &str) {
    let dir = TempDir::new("inbox-metrics");
    let database = format!("sqlite://{}", dir.path().join("webhooks.db").display());
    runtime().block_on(async {
        let (_receiver, addr, metrics) =
            start_with(binary, &[("DATABASE_URL", database.as_str())]).await;
        let scrape = || exchange(&metrics, "GET", METRICS_PATH, &[], None, b"");
        let tag = std::process::id();
        let (first, second) = (
            envelope(&format!("evt_inbox_1_{tag}")),
            envelope(&format!("evt_inbox_2_{tag}")),
        );
        assert_eq!(deliver(&addr, CURRENT, &first, now()).await, 202);
        assert_eq!(deliver(&addr, PREVIOUS, &second, now()).await, 202);
        assert_eq!(deliver(&addr, CURRENT, &first, now()).await, 200);
        let forged = "whsec_not_the_receivers_secret_0123456789";
        assert_eq!(deliver(&addr, forged, &second, now()).await, 401);

        // The worker processes both (bounded polling of what it reports).
        let done = |text: &str| {
            value(
                text,
                "mapping_webhooks_inbox_attempts_total",
                &[("result", "done")],
            )
        };
        let mut text = scrape().await.1;
        for _ in 0..300 {
            if done(&text) >= 2.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            text = scrape().await.1;
        }
        let requests = |outcome, reason| {
            value(
                &text,
                "mapping_webhooks_requests_total",
                &[("outcome", outcome), ("reason", reason)],
            )
        };
        assert_eq!(requests("queued", "stored"), 2.0, "{text}");
        assert_eq!(requests("duplicate", "already_processed"), 1.0, "{text}");
        assert_eq!(requests("refused", "signature_mismatch"), 1.0, "{text}");
        assert_eq!(all_requests(&text), 4.0, "{text}");
        assert_eq!(
            value(&text, "mapping_webhooks_previous_secret_matches_total", &[]),
            1.0
        );
        assert_eq!(done(&text), 2.0, "{text}");
        for result in ["retry", "dead", "timed_out", "panicked", "unrecorded"] {
            let attempts = value(
                &text,
                "mapping_webhooks_inbox_attempts_total",
                &[("result", result)],
            );
            assert_eq!(attempts, 0.0, "{result}: {text}");
        }
        let lags = value(
            &text,
            "mapping_webhooks_inbox_processing_lag_seconds_count",
            &[],
        );
        assert_eq!(lags, 2.0, "{text}");
        // The deliveries by state: every series is there (set by the worker every 15 s).
        for state in ["pending", "running", "done", "dead"] {
            value(
                &text,
                "mapping_webhooks_inbox_deliveries",
                &[("namespace", ""), ("state", state)],
            );
        }
        assert!(!text.contains("whsec_"), "a secret in the metrics");
    });
}
