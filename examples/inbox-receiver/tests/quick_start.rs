//! The README's quick start against `inbox-receiver`, driven by the sender's code
//! in-process (see `examples_testkit::quick_start`). The inbox receiver has no rotation,
//! tenants or metrics, so the other scenarios leave it out.

use examples_testkit::{Tool, quick_start};

const NAME: &str = "inbox-receiver";
const RECEIVER: &str = env!("CARGO_BIN_EXE_inbox-receiver");

#[test]
fn the_sender_drives_the_receiver() {
    quick_start::the_sender_drives_the_receiver(NAME, RECEIVER, Tool::InProcess(sender::run));
}

/// The inbox answers a duplicate as the inline receivers do (`X-Webhook-Duplicate`), so
/// the sender counts the copies right.
#[test]
fn copies_of_one_event_exit_0_with_one_processed() {
    quick_start::copies_of_one_event_exit_0_with_one_processed(
        NAME,
        RECEIVER,
        Tool::InProcess(sender::run),
    );
}

#[test]
fn without_a_secret_a_public_address_is_refused() {
    quick_start::without_a_secret_a_public_address_is_refused(NAME, RECEIVER);
}

#[cfg(unix)]
#[test]
fn ctrl_c_and_sigterm_stop_the_receiver_gracefully() {
    quick_start::ctrl_c_and_sigterm_stop_the_receiver_gracefully(NAME, RECEIVER);
}
