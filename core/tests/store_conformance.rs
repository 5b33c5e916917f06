//! One set of cases run against every store: [`MemoryStore`] here, [`RedisStore`] on a
//! real `redis-server` the test starts (with the `redis` feature) and on a real Redis
//! Cluster (with the `redis-cluster` feature). Where two stores
//! could disagree (a handler that outlives its lease, a stale claim, a take-over that
//! fails), they must answer alike.

use mapping_webhooks::{Begin, Claim, DedupStore, ManualClock, MemoryStore};

#[cfg(feature = "redis")]
#[path = "redis_store/server.rs"]
mod server;

fn claim_of(begin: Begin) -> Claim {
    match begin {
        Begin::New(claim) => claim,
        other => panic!("expected New, got {other:?}"),
    }
}

/// The cases, on two replicas `a` and `b` of one store (the same store twice for a
/// store in memory); `run_out` lets every lease taken so far run out.
async fn conformance<S: DedupStore>(a: &S, b: &S, run_out: impl AsyncFn()) {
    // The protocol, step by step.
    let claim = claim_of(a.begin("plain").await.unwrap());
    assert_eq!(b.begin("plain").await.unwrap(), Begin::InFlight);
    a.complete("plain", claim).await.unwrap();
    assert_eq!(b.begin("plain").await.unwrap(), Begin::Done);
    let failed = claim_of(a.begin("failed").await.unwrap());
    a.abandon("failed", failed).await.unwrap();
    let retry = claim_of(b.begin("failed").await.unwrap());
    assert_ne!(retry, failed);
    b.complete("failed", retry).await.unwrap();
    assert_eq!(a.begin("failed").await.unwrap(), Begin::Done);

    // Slow handlers on `a`: every one outlives its lease.
    let slow = |key| async move { claim_of(a.begin(key).await.unwrap()) };
    let after_failed_take_over = slow("after_failed_take_over").await;
    let stale_abandon = slow("stale_abandon").await;
    let alone = slow("alone").await;
    let while_taken_over = slow("while_taken_over").await;
    run_out().await;

    // A retry on `b` takes the event over and fails; then `a` answers 2xx. The work
    // was done: the event is done, not run a third time (issue 19, item 15).
    let take_over = claim_of(b.begin("after_failed_take_over").await.unwrap());
    b.abandon("after_failed_take_over", take_over)
        .await
        .unwrap();
    a.complete("after_failed_take_over", after_failed_take_over)
        .await
        .unwrap();
    assert_eq!(
        b.begin("after_failed_take_over").await.unwrap(),
        Begin::Done,
        "a late success after a failed take-over is remembered"
    );

    // A stale claim's release never frees the claim that took over.
    let take_over = claim_of(b.begin("stale_abandon").await.unwrap());
    a.abandon("stale_abandon", stale_abandon).await.unwrap();
    assert_eq!(b.begin("stale_abandon").await.unwrap(), Begin::InFlight);
    b.complete("stale_abandon", take_over).await.unwrap();
    assert_eq!(a.begin("stale_abandon").await.unwrap(), Begin::Done);

    // Nobody took over: a late success is remembered.
    a.complete("alone", alone).await.unwrap();
    assert_eq!(b.begin("alone").await.unwrap(), Begin::Done);

    // A retry is running: a late success leaves its claim alone, and a late release of
    // a done event does not forget it.
    let take_over = claim_of(b.begin("while_taken_over").await.unwrap());
    a.complete("while_taken_over", while_taken_over)
        .await
        .unwrap();
    assert_eq!(
        a.begin("while_taken_over").await.unwrap(),
        Begin::InFlight,
        "the retry's claim stands"
    );
    b.complete("while_taken_over", take_over).await.unwrap();
    a.abandon("while_taken_over", while_taken_over)
        .await
        .unwrap();
    assert_eq!(a.begin("while_taken_over").await.unwrap(), Begin::Done);
}

#[tokio::test]
async fn memory_store() {
    let clock = ManualClock::at_secs(1_000_000);
    let lease = *mapping_webhooks::LEASE_RANGE.start();
    let store = MemoryStore::builder()
        .lease(lease)
        .clock(clock.clone())
        .build()
        .unwrap();
    conformance(&store, &store, async || clock.advance(lease)).await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_store() {
    use mapping_webhooks::RedisStore;

    let Some(server) = server::RedisServer::start("store_conformance::redis_store") else {
        return;
    };
    let lease = *mapping_webhooks::LEASE_RANGE.start();
    // Two replicas, each with its own connection.
    let replica = || async {
        RedisStore::builder(server.url())
            .lease(lease)
            .build()
            .await
            .expect("build a RedisStore")
    };
    let (a, b) = (replica().await, replica().await);
    // Redis expires keys on its own clock, in whole milliseconds.
    conformance(&a, &b, async || {
        tokio::time::sleep(lease + std::time::Duration::from_millis(50)).await;
    })
    .await;
}

#[cfg(feature = "redis-cluster")]
#[path = "redis_store/cluster_server.rs"]
mod cluster_server;

#[cfg(feature = "redis-cluster")]
#[tokio::test]
async fn redis_store_on_a_cluster() {
    use mapping_webhooks::RedisStore;

    let Some(cluster) =
        cluster_server::RedisCluster::start("store_conformance::redis_store_on_a_cluster", 3, 0)
    else {
        return;
    };
    let lease = *mapping_webhooks::LEASE_RANGE.start();
    // Two replicas, each with its own cluster connection.
    let replica = || async {
        let store = RedisStore::cluster_builder(cluster.urls())
            .lease(lease)
            .build()
            .await
            .expect("build a RedisStore on the cluster");
        assert!(store.is_cluster());
        store
    };
    let (a, b) = (replica().await, replica().await);
    conformance(&a, &b, async || {
        tokio::time::sleep(lease + std::time::Duration::from_millis(50)).await;
    })
    .await;
}
