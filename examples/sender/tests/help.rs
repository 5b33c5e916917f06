//! The `sender` binary itself: `--help` describes every flag and exits 0. (The receiver
//! packages' tests drive their receivers with the same code, [`sender::run`],
//! in-process.)

use examples_testkit::{Tool, quick_start};

#[test]
fn sender_help_describes_the_flags_and_exits_0() {
    quick_start::sender_help_describes_the_flags_and_exits_0(Tool::Binary(env!(
        "CARGO_BIN_EXE_sender"
    )));
}
