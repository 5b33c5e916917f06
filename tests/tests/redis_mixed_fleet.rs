//! A mixed fleet: an actix-web replica and an axum replica behind one load balancer,
//! sharing one real Redis through `RedisStore`. Both adapters key events the same way
//! (the core decides), so an event is processed once whichever replica gets each copy.
//!
//! It also checks actix-web's runtime model with a shared store: the `RedisStore` is
//! built on the test's tokio runtime, outside the actix server, and used from actix's
//! worker threads, each on its own single-threaded runtime.
//!
//! Each test starts its own `redis-server` (see `core/tests/redis_store/server.rs`);
//! without one installed the tests say they were skipped, unless
//! `MAPPING_WEBHOOKS_REQUIRE_REDIS=1`.

#[path = "../../core/tests/redis_store/server.rs"]
mod server;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{HttpResponse, HttpServer, web};
use mapping_webhooks::{OnStoreError, RedisStore};
use mapping_webhooks_conformance::{
    App, Client, ROUTE_HOOKS, SECRET, assert_processed_once, deliver_at_once, envelope, event_id,
};
use server::RedisServer;

/// What both replicas' handlers share: successful runs per replica, and how many
/// attempts are still to fail.
#[derive(Debug, Default)]
struct Handler {
    runs: [AtomicUsize; 2],
    failures_left: AtomicUsize,
}

impl Handler {
    /// Runs the handler for replica `at`: a short piece of work, then 204, or 500 while
    /// failures are left.
    async fn run(&self, at: usize) -> u16 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let fail = self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return 500;
        }
        self.runs[at].fetch_add(1, Ordering::SeqCst);
        204
    }

    fn total(&self) -> usize {
        self.runs.iter().map(|r| r.load(Ordering::SeqCst)).sum()
    }
}

const ACTIX: usize = 0;
const AXUM: usize = 1;

async fn store(server: &RedisServer) -> RedisStore {
    RedisStore::builder(server.url())
        .timeout(Duration::from_millis(500))
        .build()
        .await
        .expect("build a RedisStore")
}

/// The gate both replicas are built from: one secret, the shared store.
fn gate(store: RedisStore) -> mapping_webhooks::Gate<RedisStore> {
    mapping_webhooks::Gate::builder()
        .secret(SECRET)
        .on_store_error(OnStoreError::Reject)
        .dedup(store)
        .build()
        .expect("a valid gate")
}

/// The actix replica, built as `mapping-webhooks-actix` documents, on its own thread.
async fn actix_replica(store: RedisStore, handler: Arc<Handler>) -> App {
    let verify = mapping_webhooks_actix::WebhookVerify::from_gate(gate(store));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                let handler = handler.clone();
                actix_web::App::new().service(
                    web::resource(ROUTE_HOOKS)
                        .wrap(verify.clone())
                        .route(web::post().to(move || {
                            let handler = handler.clone();
                            async move {
                                let status = handler.run(ACTIX).await;
                                HttpResponse::new(status.try_into().unwrap())
                            }
                        })),
                )
            })
            .workers(2)
            .disable_signals()
            .h1_allow_half_closed(false)
            .listen(listener)
            .unwrap()
            .run();
            tx.send(server.handle()).unwrap();
            server.await
        })
    });
    App::new(url, StopOnDrop(rx.await.unwrap()))
}

/// The axum replica, built as `mapping-webhooks-tower` documents.
async fn axum_replica(store: RedisStore, handler: Arc<Handler>) -> App {
    let router = axum::Router::new()
        .route(
            ROUTE_HOOKS,
            axum::routing::post(move || async move {
                http::StatusCode::from_u16(handler.run(AXUM).await).unwrap()
            }),
        )
        .layer(mapping_webhooks_tower::WebhookVerify::from_gate(gate(
            store,
        )));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let serve = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    App::new(url, AbortOnDrop(serve))
}

struct StopOnDrop(ServerHandle);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        // `stop` sends the command at once; its future only waits for the completion.
        drop(self.0.stop(false));
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_spread_over_actix_and_axum_run_the_handler_once() {
    let Some(server) = RedisServer::start("redis_mixed_fleet: copies over both") else {
        return;
    };
    let handler = Arc::new(Handler::default());
    let replicas = [
        actix_replica(store(&server).await, handler.clone()).await,
        axum_replica(store(&server).await, handler.clone()).await,
    ];
    let clients = [Client::new(&replicas[0]), Client::new(&replicas[1])];
    let body = envelope(&event_id("mixed"), "del_1");
    let statuses = deliver_at_once(&clients, ROUTE_HOOKS, 40, |_| body.clone()).await;
    assert_processed_once(&statuses);
    assert_eq!(handler.total(), 1, "handler runs over both replicas");
    // The sender's retries of the 409s are acknowledged by either replica.
    for client in &clients {
        assert_eq!(client.deliver(ROUTE_HOOKS, body.clone()).await.status, 200);
    }
    assert_eq!(handler.total(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_on_one_adapter_is_retried_on_the_other() {
    let Some(server) = RedisServer::start("redis_mixed_fleet: retry elsewhere") else {
        return;
    };
    let handler = Arc::new(Handler {
        failures_left: AtomicUsize::new(1),
        ..Handler::default()
    });
    let actix = actix_replica(store(&server).await, handler.clone()).await;
    let axum = axum_replica(store(&server).await, handler.clone()).await;
    let (to_actix, to_axum) = (Client::new(&actix), Client::new(&axum));

    // Fails on actix, retried on axum.
    let body = envelope(&event_id("actix_then_axum"), "del_1");
    assert_eq!(
        to_actix.deliver(ROUTE_HOOKS, body.clone()).await.status,
        500
    );
    assert_eq!(to_axum.deliver(ROUTE_HOOKS, body.clone()).await.status, 204);
    assert_eq!(to_actix.deliver(ROUTE_HOOKS, body).await.status, 200);

    // Fails on axum, retried on actix.
    handler.failures_left.store(1, Ordering::SeqCst);
    let body = envelope(&event_id("axum_then_actix"), "del_1");
    assert_eq!(to_axum.deliver(ROUTE_HOOKS, body.clone()).await.status, 500);
    assert_eq!(
        to_actix.deliver(ROUTE_HOOKS, body.clone()).await.status,
        204
    );
    assert_eq!(to_axum.deliver(ROUTE_HOOKS, body).await.status, 200);

    assert_eq!(handler.runs[ACTIX].load(Ordering::SeqCst), 1);
    assert_eq!(handler.runs[AXUM].load(Ordering::SeqCst), 1);
}
