//! Two `tenants-receiver` processes on one Redis (`REDIS_URL`): a tenant's event sent to
//! both is processed once (see `examples_testkit::shared_store`).

use examples_testkit::shared_store::{self, Shared};

const RECEIVER: &str = env!("CARGO_BIN_EXE_tenants-receiver");

#[test]
fn two_replicas_on_one_redis_process_an_event_once() {
    shared_store::two_tenants_replicas_on_one_redis_process_an_event_once(RECEIVER, Shared::Redis);
}
