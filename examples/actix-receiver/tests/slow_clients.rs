//! Slow and idle clients against `actix-receiver` (see `examples_testkit::slow_clients`).
#![cfg(unix)]

use examples_testkit::{Tool, slow_clients};

#[test]
fn slow_and_idle_connections_are_closed_and_deliveries_still_succeed() {
    slow_clients::slow_and_idle_connections_are_closed_and_deliveries_still_succeed(
        "actix-receiver",
        env!("CARGO_BIN_EXE_actix-receiver"),
        Tool::InProcess(sender::run),
    );
}
