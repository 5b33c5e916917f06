//! `serve` over real TCP on 127.0.0.1: the header timeout closes a stalled client, the
//! connection cap holds the next client in the listen queue, and a graceful shutdown
//! finishes the request in progress and closes the idle connection.

#![cfg(all(feature = "serve", feature = "axum"))]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::{Router, routing::get};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};

/// The generous bound on any wait for something that must happen (a test fails rather
/// than hangs); nothing is asserted about how long it took.
const BOUND: Duration = Duration::from_secs(10);

/// A header timeout no test reaches, for the tests about something else.
const LONG: Duration = Duration::from_secs(120);

async fn listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// `GET path` on a kept-alive connection.
async fn send(stream: &mut TcpStream, path: &str) {
    let head = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
}

/// Reads one response (its head and a `Content-Length` body); `None` when the server
/// closed the connection first.
async fn response(stream: &mut TcpStream) -> Option<String> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if bytes.len() >= end + 4 + length {
                return Some(text);
            }
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads until the server closes the connection; what it sent before, if anything.
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes).await;
    String::from_utf8_lossy(&bytes).into_owned()
}

fn counting_app(served: Arc<AtomicUsize>) -> Router {
    Router::new().route(
        "/",
        get(move || {
            served.fetch_add(1, Ordering::SeqCst);
            async { "ok" }
        }),
    )
}

#[tokio::test]
async fn a_client_stalling_in_its_request_head_is_disconnected_after_the_header_timeout() {
    let (listener, addr) = listener().await;
    let app = counting_app(Arc::default());
    tokio::spawn(
        mapping_webhooks_tower::serve(listener, app)
            .header_timeout(Duration::from_millis(300))
            .into_future(),
    );
    let mut slow = TcpStream::connect(addr).await.unwrap();
    // Half a request head, then nothing: a slowloris client.
    slow.write_all(b"POST /hooks/mapping HTTP/1.1\r\nHost: test\r\nContent-Type: appl")
        .await
        .unwrap();
    let sent = tokio::time::timeout(BOUND, until_closed(&mut slow))
        .await
        .expect("the server never closed a connection stalled in its request head");
    // hyper answers 408 before closing, or closes at once: either way, no other answer.
    assert!(
        sent.is_empty() || sent.starts_with("HTTP/1.1 408"),
        "{sent:?}"
    );

    // A kept-alive connection left idle after its response is closed too.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    send(&mut idle, "/").await;
    let answer = response(&mut idle).await.expect("a response");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let sent = tokio::time::timeout(BOUND, until_closed(&mut idle))
        .await
        .expect("the server never closed an idle kept-alive connection");
    assert!(
        sent.is_empty() || sent.starts_with("HTTP/1.1 408"),
        "{sent:?}"
    );
}

#[tokio::test]
async fn a_connection_over_the_cap_waits_in_the_queue_and_is_served_once_one_closes() {
    let (listener, addr) = listener().await;
    let served = Arc::new(AtomicUsize::new(0));
    tokio::spawn(
        mapping_webhooks_tower::serve(listener, counting_app(served.clone()))
            .header_timeout(LONG)
            .max_connections(1)
            .into_future(),
    );
    // The first client is served, and keeps its connection open.
    let mut first = TcpStream::connect(addr).await.unwrap();
    send(&mut first, "/").await;
    assert!(
        response(&mut first)
            .await
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );
    // The second one connects (the kernel completes the handshake: it is in the listen
    // queue) and sends its request, which is not read while the first is open.
    let mut second = TcpStream::connect(addr).await.unwrap();
    send(&mut second, "/").await;
    let waiting = tokio::time::timeout(Duration::from_millis(500), response(&mut second)).await;
    assert!(waiting.is_err(), "served past the cap: {waiting:?}");
    // The first connection is still served meanwhile.
    send(&mut first, "/").await;
    assert!(
        response(&mut first)
            .await
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );
    assert_eq!(
        served.load(Ordering::SeqCst),
        2,
        "only the first client's requests"
    );

    drop(first);
    let answer = tokio::time::timeout(BOUND, response(&mut second))
        .await
        .expect("the waiting client was never served after the first one left")
        .expect("a response, not a closed connection");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(served.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn on_shutdown_the_request_in_progress_finishes_and_an_idle_connection_is_closed() {
    let (listener, addr) = listener().await;
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let (started_in, release_in) = (started.clone(), release.clone());
    let app = Router::new().route("/", get(|| async { "ok" })).route(
        "/slow",
        get(move || {
            let (started, release) = (started_in.clone(), release_in.clone());
            async move {
                started.notify_one();
                release.notified().await;
                "finished"
            }
        }),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(
        mapping_webhooks_tower::serve(listener, app)
            .header_timeout(LONG)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .into_future(),
    );
    // An idle kept-alive connection, after one request.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    send(&mut idle, "/").await;
    assert!(
        response(&mut idle)
            .await
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );
    // A request in progress: its handler has started and waits to be released.
    let mut busy = TcpStream::connect(addr).await.unwrap();
    send(&mut busy, "/slow").await;
    tokio::time::timeout(BOUND, started.notified())
        .await
        .expect("the slow handler never started");

    stop.send(()).unwrap();
    let sent = tokio::time::timeout(BOUND, until_closed(&mut idle))
        .await
        .expect("the idle connection was not closed on shutdown");
    assert_eq!(sent, "", "nothing sent on the idle connection");
    assert!(
        !server.is_finished(),
        "the server stopped with a request in progress"
    );

    release.notify_one();
    let answer = tokio::time::timeout(BOUND, response(&mut busy))
        .await
        .expect("the request in progress never finished")
        .expect("its response, not a closed connection");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("finished"), "{answer}");
    tokio::time::timeout(BOUND, server)
        .await
        .expect("the server never stopped after its last request")
        .unwrap()
        .unwrap();
    // The listener is closed: no new client is accepted.
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
#[should_panic(expected = "a connection cap of zero")]
async fn a_cap_of_zero_connections_is_refused_when_configured() {
    let (listener, _) = listener().await;
    let _ =
        mapping_webhooks_tower::serve(listener, counting_app(Arc::default())).max_connections(0);
}

#[tokio::test]
#[should_panic(expected = "a header timeout of zero")]
async fn a_header_timeout_of_zero_is_refused_when_configured() {
    let (listener, _) = listener().await;
    let _ = mapping_webhooks_tower::serve(listener, counting_app(Arc::default()))
        .header_timeout(Duration::ZERO);
}
