//! The Redis store against a real `redis-server` (one per test, see `server.rs`): the
//! store's protocol, faults, and two gates sharing one Redis as two replicas would; with
//! the `redis-cluster` feature, the store on a real Redis Cluster (see `cluster_server.rs`).

#![cfg(feature = "redis")]

#[cfg(feature = "redis-cluster")]
mod cluster;
#[cfg(feature = "redis-cluster")]
mod cluster_server;
mod gate;
mod server;
mod store;

use std::future::Future;
use std::time::{Duration, Instant};

use mapping_webhooks::{Begin, Claim, RedisStore, RedisStoreBuilder};

use server::RedisServer;

/// A store on `server` with the default timeout (generous on a loaded CI machine),
/// configured further by `configure`.
async fn store_on(
    server: &RedisServer,
    configure: impl FnOnce(RedisStoreBuilder) -> RedisStoreBuilder,
) -> RedisStore {
    configure(RedisStore::builder(server.url()))
        .build()
        .await
        .expect("build a RedisStore")
}

/// A plain connection, to look at what the store wrote.
async fn inspector(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("connect to redis-server")
}

fn claim_of(begin: Begin) -> Claim {
    match begin {
        Begin::New(claim) => claim,
        other => panic!("expected New, got {other:?}"),
    }
}

/// Polls `check` every 25 ms until it returns `Some`, for at most `limit`.
async fn eventually<T, F: Future<Output = Option<T>>>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Makes `redis-server` hold every client's commands for `pause` (`CLIENT PAUSE .. ALL`):
/// they are queued, and run once the pause ends, as on a server stalled by a slow command
/// or a failover.
async fn pause_clients(redis: &mut redis::aio::MultiplexedConnection, pause: Duration) {
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(u64::try_from(pause.as_millis()).unwrap())
        .arg("ALL")
        .query_async::<()>(redis)
        .await
        .expect("CLIENT PAUSE");
}
