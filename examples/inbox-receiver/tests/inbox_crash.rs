//! `inbox-receiver` killed with SIGKILL after its 2xx and before the processing, then
//! restarted (see `examples_testkit::inbox_crash`).

use examples_testkit::inbox_crash;

const RECEIVER: &str = env!("CARGO_BIN_EXE_inbox-receiver");

#[test]
fn kill_9_after_2xx_then_restart_processes_every_accepted_delivery_once_sqlite() {
    inbox_crash::kill_9_after_2xx_then_restart_processes_every_accepted_delivery_once_sqlite(
        RECEIVER,
    );
}

#[test]
fn kill_9_after_2xx_then_restart_processes_every_accepted_delivery_once_postgres() {
    inbox_crash::kill_9_after_2xx_then_restart_processes_every_accepted_delivery_once_postgres(
        RECEIVER,
    );
}

#[cfg(unix)]
#[test]
fn a_failed_commit_is_503_and_every_202_is_stored() {
    inbox_crash::a_failed_commit_is_503_and_every_202_is_stored(
        RECEIVER,
        env!("CARGO_BIN_EXE_inbox"),
    );
}

#[test]
fn a_bad_worker_setting_in_the_environment_stops_the_receiver() {
    inbox_crash::a_bad_worker_setting_in_the_environment_stops_the_receiver(RECEIVER);
}
