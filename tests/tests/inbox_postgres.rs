//! Two receivers (axum's and actix's `WebhookVerify::inbox`) and two workers on
//! one Postgres, over real HTTP: 1,000 events sent 3 times each, concurrently, round-robin
//! over the receivers. Every event's effect happens exactly once, and no delivery is left
//! running. The Postgres server is started by the test (skipped without it unless
//! `MAPPING_WEBHOOKS_REQUIRE_POSTGRES=1`).

#[path = "../../inbox/tests/support/postgres.rs"]
mod postgres;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::HttpServer;
use axum::Router;
use axum::routing::post_service;
use mapping_webhooks_conformance::inbox_cases::ROUTE_INBOX;
use mapping_webhooks_conformance::{App, Client, SECRET, envelope};
use mapping_webhooks_inbox::{Delivery, Inbox, State};

async fn inbox(url: &str) -> Inbox {
    Inbox::builder()
        .connect(url)
        .await
        .expect("connect to Postgres")
}

/// The receivers' gate: the secret; the inbox deduplicates durably on its own.
fn gate() -> mapping_webhooks::Gate {
    mapping_webhooks::Gate::builder()
        .secret(SECRET)
        .without_dedup()
        .build()
        .expect("a valid gate")
}

async fn spawn_axum(inbox: Inbox) -> App {
    let app = Router::new().route_service(
        ROUTE_INBOX,
        post_service(mapping_webhooks_tower::WebhookVerify::from_gate(gate()).inbox(inbox)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    App::new(url, Abort(server))
}

/// The actix receiver connects its own pool inside its own runtime.
async fn spawn_actix(db_url: String) -> App {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let inbox = inbox(&db_url).await;
            let server = HttpServer::new(move || {
                actix_web::App::new().service(
                    mapping_webhooks_actix::WebhookVerify::from_gate(gate())
                        .inbox(ROUTE_INBOX, inbox.clone()),
                )
            })
            .workers(2)
            .disable_signals()
            .listen(listener)
            .unwrap()
            .run();
            tx.send(server.handle()).unwrap();
            server.await
        })
    });
    App::new(url, Stop(rx.await.unwrap()))
}

struct Abort(tokio::task::JoinHandle<()>);

impl Drop for Abort {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Stop(actix_web::dev::ServerHandle);

impl Drop for Stop {
    fn drop(&mut self) {
        drop(self.0.stop(false));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_receivers_two_workers_1000_events_3_copies_over_http() {
    let Some(pg) = postgres::PostgresServer::start("inbox_postgres_http") else {
        return;
    };
    let first = inbox(&pg.url()).await;
    let second = inbox(&pg.url()).await;
    let receivers = [spawn_axum(first.clone()).await, spawn_actix(pg.url()).await];
    let clients: Vec<Client> = receivers.iter().map(Client::new).collect();

    let effects: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let workers: Vec<_> = [&first, &second]
        .into_iter()
        .map(|inbox| {
            let effects = effects.clone();
            let worker = inbox
                .worker(move |d: Delivery| {
                    *effects
                        .lock()
                        .unwrap()
                        .entry(d.envelope.event_id.clone())
                        .or_default() += 1;
                    async { Ok::<(), String>(()) }
                })
                .poll_interval(Duration::from_millis(50));
            tokio::spawn(worker.run())
        })
        .collect();

    const EVENTS: usize = 1000;
    let gate = Arc::new(tokio::sync::Semaphore::new(32));
    let mut sends = Vec::new();
    for copy in 0..3 {
        for e in 0..EVENTS {
            let client = clients[(e + copy) % 2].clone();
            let gate = gate.clone();
            sends.push(tokio::spawn(async move {
                let _permit = gate.acquire().await.unwrap();
                let body = envelope(&format!("evt_http_{e}"), &format!("del_{e}_{copy}"));
                client.deliver(ROUTE_INBOX, body).await.status
            }));
        }
    }
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for send in sends {
        *statuses.entry(send.await.unwrap()).or_default() += 1;
    }
    assert_eq!(
        statuses,
        HashMap::from([(202, EVENTS), (200, 2 * EVENTS)]),
        "one copy stored, the others acknowledged"
    );
    let mut done = 0;
    for _ in 0..3000 {
        done = first
            .counts()
            .await
            .unwrap()
            .get(&State::Done)
            .copied()
            .unwrap_or(0);
        if done == EVENTS as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(done, EVENTS as u64, "every event processed within 60 s");
    for worker in workers {
        worker.abort();
    }
    let effects = effects.lock().unwrap().clone();
    assert_eq!(effects.len(), EVENTS);
    assert!(effects.values().all(|&n| n == 1), "an effect ran twice");
    assert_eq!(
        first.counts().await.unwrap(),
        HashMap::from([(State::Done, EVENTS as u64)]),
        "nothing left running"
    );
}
