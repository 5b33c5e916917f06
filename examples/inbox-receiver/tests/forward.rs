//! `inbox-receiver` as a forwarding gateway (see `examples_testkit::inbox_forward`).

use examples_testkit::inbox_forward;

const RECEIVER: &str = env!("CARGO_BIN_EXE_inbox-receiver");

#[test]
fn two_gateways_forward_every_event_through_failures_hangs_and_a_kill_9() {
    inbox_forward::two_gateways_forward_every_event_through_failures_hangs_and_a_kill_9(RECEIVER);
}

#[test]
fn a_bad_forward_setting_stops_the_gateway() {
    inbox_forward::a_bad_forward_setting_stops_the_gateway(RECEIVER);
}
