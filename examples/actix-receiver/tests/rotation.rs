//! The operator's rotation against `actix-receiver`, with the `rotate` command's code
//! in-process (see `examples_testkit::rotation`).

use examples_testkit::{Tool, rotation};

const NAME: &str = "actix-receiver";
const RECEIVER: &str = env!("CARGO_BIN_EXE_actix-receiver");

#[test]
fn the_operator_rotates_while_deliveries_flow() {
    rotation::the_operator_rotates_while_deliveries_flow(
        NAME,
        RECEIVER,
        Tool::InProcess(rotate::run),
    );
}

#[test]
fn sighup_reloads_the_file_when_polling_is_off() {
    rotation::sighup_reloads_the_file_when_polling_is_off(NAME, RECEIVER);
}
