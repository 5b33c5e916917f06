//! Two axum apps (two replicas behind a load balancer) sharing one real Redis through
//! `RedisStore`, over real HTTP: concurrent copies of an event run the handler once in
//! total, and a failed attempt is processed by the other replica on retry.
//!
//! Each test starts its own `redis-server` (see `core/tests/redis_store/server.rs`);
//! without one installed the tests say they were skipped, unless
//! `MAPPING_WEBHOOKS_REQUIRE_REDIS=1`.

#[path = "../../core/tests/redis_store/server.rs"]
mod server;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::routing::post;
use axum::{Extension, Router};
use http::StatusCode;
use mapping_webhooks::{OnStoreError, RedisStore, Verified};
use mapping_webhooks_conformance::{
    App, Client, ROUTE_HOOKS, SECRET, assert_processed_once, deliver_at_once, envelope, event_id,
};
use mapping_webhooks_tower::WebhookVerify;

use server::RedisServer;

/// What the handlers of both replicas share: how many runs succeeded, and how many
/// first attempts are still to fail.
#[derive(Debug, Default)]
struct Handler {
    runs: AtomicUsize,
    failures_left: AtomicUsize,
}

/// One replica: its own `RedisStore` (own connection) on the shared Redis.
struct Replica {
    app: App,
    runs: Arc<AtomicUsize>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn replica(server: &RedisServer, shared: Arc<Handler>, policy: OnStoreError) -> Replica {
    let store = RedisStore::builder(server.url())
        .build()
        .await
        .expect("build a RedisStore");
    let runs = Arc::new(AtomicUsize::new(0));
    let mine = runs.clone();
    let handler = move |Extension(_): Extension<Verified>| {
        let (shared, mine) = (shared.clone(), mine.clone());
        async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let fail = shared
                .failures_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if fail {
                return StatusCode::INTERNAL_SERVER_ERROR;
            }
            shared.runs.fetch_add(1, Ordering::SeqCst);
            mine.fetch_add(1, Ordering::SeqCst);
            StatusCode::NO_CONTENT
        }
    };
    let gate = mapping_webhooks::Gate::builder()
        .secret(SECRET)
        .on_store_error(policy)
        .dedup(store)
        .build()
        .expect("a valid gate");
    let router = Router::new()
        .route(ROUTE_HOOKS, post(handler))
        .layer(WebhookVerify::from_gate(gate));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let serve = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Replica {
        app: App::new(url, AbortOnDrop(serve)),
        runs,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_copies_over_two_replicas_run_the_handler_once() {
    let Some(server) = RedisServer::start("redis_replicas: fifty copies") else {
        return;
    };
    let shared = Arc::new(Handler::default());
    let replicas = [
        replica(&server, shared.clone(), OnStoreError::Reject).await,
        replica(&server, shared.clone(), OnStoreError::Reject).await,
    ];
    let clients = [Client::new(&replicas[0].app), Client::new(&replicas[1].app)];
    let body = envelope(&event_id("fifty"), "del_1");
    let statuses = deliver_at_once(&clients, ROUTE_HOOKS, 50, |_| body.clone()).await;
    assert_processed_once(&statuses);
    assert_eq!(
        shared.runs.load(Ordering::SeqCst),
        1,
        "handler runs in total"
    );
    // The sender retries the 409s: acknowledged by both replicas, the handler not run.
    for client in &clients {
        assert_eq!(client.deliver(ROUTE_HOOKS, body.clone()).await.status, 200);
    }
    assert_eq!(
        shared.runs.load(Ordering::SeqCst),
        1,
        "handler runs in total"
    );
}

#[tokio::test]
async fn a_failed_attempt_is_processed_by_the_other_replica_once() {
    let Some(server) = RedisServer::start("redis_replicas: retry elsewhere") else {
        return;
    };
    let shared = Arc::new(Handler {
        failures_left: AtomicUsize::new(1),
        ..Handler::default()
    });
    let [a, b] = [
        replica(&server, shared.clone(), OnStoreError::Reject).await,
        replica(&server, shared.clone(), OnStoreError::Reject).await,
    ];
    let (to_a, to_b) = (Client::new(&a.app), Client::new(&b.app));
    let body = envelope(&event_id("retry"), "del_1");
    assert_eq!(to_a.deliver(ROUTE_HOOKS, body.clone()).await.status, 500);
    // The load balancer sends the retry to replica B: processed there.
    assert_eq!(to_b.deliver(ROUTE_HOOKS, body.clone()).await.status, 204);
    assert_eq!(b.runs.load(Ordering::SeqCst), 1);
    // Later copies, on either replica, are acknowledged without running the handler.
    assert_eq!(to_a.deliver(ROUTE_HOOKS, body.clone()).await.status, 200);
    assert_eq!(to_b.deliver(ROUTE_HOOKS, body).await.status, 200);
    assert_eq!(a.runs.load(Ordering::SeqCst), 0);
    assert_eq!(
        shared.runs.load(Ordering::SeqCst),
        1,
        "handler runs in total"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_answers_503_or_passes_through_and_recovers() {
    let Some(mut server) = RedisServer::start("redis_replicas: redis down") else {
        return;
    };
    let shared = Arc::new(Handler::default());
    let reject = replica(&server, shared.clone(), OnStoreError::Reject).await;
    let pass = replica(&server, shared.clone(), OnStoreError::PassThrough).await;
    let (to_reject, to_pass) = (Client::new(&reject.app), Client::new(&pass.app));
    server.kill();
    let body = envelope(&event_id("down"), "del_1");
    let answer = to_reject.deliver(ROUTE_HOOKS, body.clone()).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(shared.runs.load(Ordering::SeqCst), 0);
    assert_eq!(to_pass.deliver(ROUTE_HOOKS, body.clone()).await.status, 204);
    assert_eq!(pass.runs.load(Ordering::SeqCst), 1, "passed through");

    // Redis is back on the same port: the same apps deduplicate again.
    server.restart();
    let mut processed = false;
    for _ in 0..400 {
        match to_reject.deliver(ROUTE_HOOKS, body.clone()).await.status {
            503 => tokio::time::sleep(Duration::from_millis(50)).await,
            204 => {
                processed = true;
                break;
            }
            other => panic!("answered {other}"),
        }
    }
    assert!(processed, "still 503 after Redis came back");
    assert_eq!(to_pass.deliver(ROUTE_HOOKS, body).await.status, 200);
    assert_eq!(reject.runs.load(Ordering::SeqCst), 1);
}
