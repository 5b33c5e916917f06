//! Two axum apps (two replicas behind a load balancer), each with its own `RedisStore`
//! on one real Redis Cluster of 3 masters and 3 replicas, over real HTTP, while the
//! cluster fails over twice: a replica takes over on `CLUSTER FAILOVER` (planned), then
//! a master is killed with SIGKILL and its replica promoted (a crash).
//!
//! 200 events, 50 copies of each spread over both apps, each copy sent again as the
//! sender would until it is acknowledged. What must hold: every copy ends acknowledged
//! (nothing lost), each event's handler ran once, the requests that hit the crash got
//! 503 (the store's timeout is shorter than the failover; see the README), and the
//! apps recovered without a restart.
//!
//! The cluster is started by the test (see `core/tests/redis_store/cluster_server.rs`);
//! without `redis-server` and `redis-cli` installed the test says it was skipped, unless
//! `MAPPING_WEBHOOKS_REQUIRE_REDIS=1`.

#[path = "../../core/tests/redis_store/cluster_server.rs"]
mod cluster_server;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::{Extension, Router};
use http::StatusCode;
use mapping_webhooks::{OnStoreError, RedisStore, Verified};
use mapping_webhooks_conformance::{
    App, Client, ROUTE_HOOKS, SECRET, envelope, event_id, now, sign,
};
use mapping_webhooks_tower::WebhookVerify;

use cluster_server::RedisCluster;

const EVENTS: usize = 200;
const COPIES: usize = 50;
/// Deliveries in flight at once, over both apps.
const SENDERS: usize = 48;
/// Each app's store timeout: shorter than a failover, so calls during one end in 503.
const STORE_TIMEOUT: Duration = Duration::from_millis(500);

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The copies still to send: (copy number, body), taken from the end.
type Queue = Arc<Mutex<Vec<(usize, Vec<u8>)>>>;

/// Handler runs per event id, over both apps.
type Runs = Arc<Mutex<HashMap<String, usize>>>;

async fn app(urls: Vec<String>, runs: Runs) -> App {
    let store = RedisStore::cluster_builder(urls)
        .timeout(STORE_TIMEOUT)
        .build()
        .await
        .expect("build a RedisStore on the cluster");
    let handler = move |Extension(verified): Extension<Verified>| {
        let runs = runs.clone();
        async move {
            *runs.lock().unwrap().entry(verified.event_id).or_insert(0) += 1;
            StatusCode::NO_CONTENT
        }
    };
    let gate = mapping_webhooks::Gate::builder()
        .secret(SECRET)
        .on_store_error(OnStoreError::Reject)
        .dedup(store)
        .build()
        .expect("a valid gate");
    let router = Router::new()
        .route(ROUTE_HOOKS, post(handler))
        .layer(WebhookVerify::from_gate(gate));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let serve = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    App::new(url, AbortOnDrop(serve))
}

/// What the sender saw: every answer's status, and how many copies were acknowledged.
#[derive(Debug, Default)]
struct Seen {
    statuses: Mutex<BTreeMap<u16, usize>>,
    acknowledged: AtomicUsize,
}

/// Sends copy `copy` of `body` until it is acknowledged (2xx), as the sender retries a
/// delivery, alternating apps (a load balancer); gives up at `deadline`.
async fn deliver(
    clients: &[Client; 2],
    copy: usize,
    body: Vec<u8>,
    seen: &Seen,
    deadline: Instant,
) {
    let mut attempt = copy;
    while Instant::now() < deadline {
        let signature = sign(SECRET, &body, now());
        let headers = [("x-webhook-signature", signature.as_str())];
        let status = clients[attempt % 2]
            .try_post(ROUTE_HOOKS, &headers, body.clone())
            .await
            .map_or(0, |answer| answer.status);
        *seen.statuses.lock().unwrap().entry(status).or_insert(0) += 1;
        if (200..300).contains(&status) {
            seen.acknowledged.fetch_add(1, Ordering::SeqCst);
            return;
        }
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_failover_under_load_runs_each_event_once_and_loses_nothing() {
    let Some(cluster) = RedisCluster::start("redis_cluster_failover", 3, 1) else {
        return;
    };
    let runs: Runs = Arc::default();
    let apps = [
        app(cluster.urls(), runs.clone()).await,
        app(cluster.urls(), runs.clone()).await,
    ];
    let clients = [Client::new(&apps[0]), Client::new(&apps[1])];
    let seen = Arc::new(Seen::default());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(45);

    // The copies in event order, so the copies of one event are in flight together.
    let ids: Vec<String> = (0..EVENTS).map(|_| event_id("failover")).collect();
    let queue: Queue = Arc::new(Mutex::new(
        ids.iter()
            .rev()
            .flat_map(|id| {
                (0..COPIES).map(move |copy| (copy, envelope(id, &format!("del_{copy}"))))
            })
            .collect(),
    ));
    let senders: Vec<_> = (0..SENDERS)
        .map(|_| {
            let (clients, seen, queue) = (clients.clone(), seen.clone(), queue.clone());
            tokio::spawn(async move {
                loop {
                    let next = queue.lock().unwrap().pop();
                    let Some((copy, body)) = next else { break };
                    deliver(&clients, copy, body, &seen, deadline).await;
                }
            })
        })
        .collect();

    // The failovers, while the copies flow: a planned one at a fifth of the copies, a
    // crash at half.
    let total = EVENTS * COPIES;
    let progress = seen.clone();
    let controller = tokio::task::spawn_blocking(move || {
        let mut cluster = cluster;
        let wait_for = |share: usize| {
            while progress.acknowledged.load(Ordering::SeqCst) < total / share
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        wait_for(5);
        let masters = cluster.masters();
        let replica = cluster
            .replica_of(masters[0])
            .expect("a replica of the first master");
        assert_eq!(cluster.cli(replica, &["CLUSTER", "FAILOVER"]).trim(), "OK");
        cluster.wait_until_ok(Duration::from_secs(20));
        let planned = (masters[0], replica, cluster.masters());
        wait_for(2);
        let victim = *cluster
            .masters()
            .iter()
            .find(|&&port| port != replica)
            .expect("another master");
        let heir = cluster.replica_of(victim).expect("a replica of the victim");
        let killed_at = progress.acknowledged.load(Ordering::SeqCst);
        cluster.kill(victim);
        cluster.wait_until_ok(Duration::from_secs(20));
        let crashed = (victim, heir, cluster.masters(), killed_at);
        (cluster, planned, crashed)
    });

    for sender in senders {
        sender.await.expect("a sender panicked");
    }
    let (cluster, planned, crashed) = controller.await.expect("the failovers");
    let elapsed = started.elapsed();
    let statuses = seen.statuses.lock().unwrap().clone();
    let acknowledged = seen.acknowledged.load(Ordering::SeqCst);
    let runs = runs.lock().unwrap().clone();
    let report = format!(
        "after {elapsed:?}: {acknowledged}/{total} copies acknowledged; answers {statuses:?}; \
         planned failover (old master, new master, masters) {planned:?}; crash (killed, \
         promoted, masters, acknowledged when killed) {crashed:?}"
    );
    eprintln!("{report}");

    // Both failovers happened: the replicas became masters.
    assert!(planned.2.contains(&planned.1), "{report}");
    assert!(
        crashed.2.contains(&crashed.1) && !crashed.2.contains(&crashed.0),
        "{report}"
    );
    // Nothing lost: every copy acknowledged, every event processed.
    assert_eq!(acknowledged, total, "{report}");
    let missing: Vec<&String> = ids.iter().filter(|id| !runs.contains_key(*id)).collect();
    assert!(missing.is_empty(), "never processed: {missing:?}; {report}");
    // Each event's handler ran once.
    let twice: Vec<(&String, &usize)> = runs.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "run more than once: {twice:?}; {report}");
    assert_eq!(runs.len(), EVENTS, "{report}");
    // The requests that hit the crash were told to retry (503), not failed or refused
    // otherwise: only 204 (ran), 200 (a duplicate), 409 (in flight) and 503.
    assert!(
        statuses.get(&503).is_some_and(|&n| n > 0),
        "no 503 during the crash: {report}"
    );
    assert!(
        statuses.keys().all(|s| [200, 204, 409, 503].contains(s)),
        "{report}"
    );
    // Recovered without a restart: a new event on each app is processed, then a duplicate.
    for client in &clients {
        let body = envelope(&event_id("after"), "del_after");
        assert_eq!(
            client.deliver(ROUTE_HOOKS, body.clone()).await.status,
            204,
            "{report}"
        );
        assert_eq!(
            client.deliver(ROUTE_HOOKS, body).await.status,
            200,
            "{report}"
        );
    }
    drop(cluster);
}
