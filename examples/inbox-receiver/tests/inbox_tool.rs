//! The `inbox` operator tool against the receiver's database (see
//! `examples_testkit::inbox_tool`).

use examples_testkit::inbox_tool;

const RECEIVER: &str = env!("CARGO_BIN_EXE_inbox-receiver");
const TOOL: &str = env!("CARGO_BIN_EXE_inbox");

#[test]
fn purge_of_pending_work_needs_force() {
    inbox_tool::purge_of_pending_work_needs_force(RECEIVER, TOOL);
}

#[test]
fn a_database_that_does_not_exist_is_refused() {
    inbox_tool::a_database_that_does_not_exist_is_refused(TOOL);
}

#[test]
fn prune_refuses_absurd_days() {
    inbox_tool::prune_refuses_absurd_days(RECEIVER, TOOL);
}
