//! Two `actix-receiver` processes on one Redis (`REDIS_URL`): an event sent to both is
//! processed once (see `examples_testkit::shared_store`).

use examples_testkit::shared_store::{self, Shared};

const NAME: &str = "actix-receiver";
const RECEIVER: &str = env!("CARGO_BIN_EXE_actix-receiver");

#[test]
fn two_replicas_on_one_redis_process_an_event_once() {
    shared_store::two_replicas_on_one_redis_process_an_event_once(NAME, RECEIVER, Shared::Redis);
}
