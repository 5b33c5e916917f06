//! The README's quick start against `axum-receiver`, driven by the sender's code
//! in-process (see `examples_testkit::quick_start`).

use examples_testkit::{Tool, quick_start};

const NAME: &str = "axum-receiver";
const RECEIVER: &str = env!("CARGO_BIN_EXE_axum-receiver");
const SENDER: Tool = Tool::InProcess(sender::run);

#[test]
fn the_sender_drives_the_receiver() {
    quick_start::the_sender_drives_the_receiver(NAME, RECEIVER, SENDER);
}

#[test]
fn the_sender_reaches_the_receiver_over_https() {
    quick_start::the_sender_reaches_the_receiver_over_https(NAME, RECEIVER, SENDER);
}

#[test]
fn without_a_secret_a_public_address_is_refused() {
    quick_start::without_a_secret_a_public_address_is_refused(NAME, RECEIVER);
}

#[test]
fn copies_of_one_event_exit_0_with_one_processed() {
    quick_start::copies_of_one_event_exit_0_with_one_processed(NAME, RECEIVER, SENDER);
}

#[cfg(unix)]
#[test]
fn ctrl_c_and_sigterm_stop_the_receiver_gracefully() {
    quick_start::ctrl_c_and_sigterm_stop_the_receiver_gracefully(NAME, RECEIVER);
}
