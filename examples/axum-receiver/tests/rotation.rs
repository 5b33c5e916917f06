//! The operator's rotation against `axum-receiver`, with the `rotate` command's code
//! in-process (see `examples_testkit::rotation`).

use examples_testkit::{Tool, rotation};

const NAME: &str = "axum-receiver";
const RECEIVER: &str = env!("CARGO_BIN_EXE_axum-receiver");

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

#[test]
fn a_restart_after_the_rotation_window_refuses_the_old_secret() {
    rotation::a_restart_after_the_rotation_window_refuses_the_old_secret(
        NAME,
        RECEIVER,
        Tool::InProcess(rotate::run),
    );
}

#[test]
fn rotate_keeps_the_owner_and_an_unreadable_file_is_retried() {
    rotation::rotate_keeps_the_owner_and_an_unreadable_file_is_retried(
        NAME,
        RECEIVER,
        Tool::InProcess(rotate::run),
    );
}

#[test]
fn a_byte_order_mark_is_skipped_and_a_bad_line_refused() {
    rotation::a_byte_order_mark_is_skipped_and_a_bad_line_refused(NAME, RECEIVER);
}

#[test]
fn a_half_written_file_is_never_applied() {
    rotation::a_half_written_file_is_never_applied(NAME, RECEIVER);
}
