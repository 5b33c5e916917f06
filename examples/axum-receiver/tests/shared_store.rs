//! Two `axum-receiver` processes on one Redis (`REDIS_URL`) and on a Redis Cluster
//! (`REDIS_CLUSTER_URLS`): an event sent to both is processed once (see
//! `examples_testkit::shared_store`).

use examples_testkit::shared_store::{self, Shared};

const NAME: &str = "axum-receiver";
const RECEIVER: &str = env!("CARGO_BIN_EXE_axum-receiver");

#[test]
fn two_replicas_on_one_redis_process_an_event_once() {
    shared_store::two_replicas_on_one_redis_process_an_event_once(NAME, RECEIVER, Shared::Redis);
}

#[test]
fn two_replicas_on_a_redis_cluster_process_an_event_once() {
    shared_store::two_replicas_on_one_redis_process_an_event_once(
        NAME,
        RECEIVER,
        Shared::RedisCluster,
    );
}
