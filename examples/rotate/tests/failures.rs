//! The `rotate` binary's failures leave the secrets file alone and print no secret, and
//! it reaches the API over HTTPS, against a stand-in of the API (see `examples_testkit::rotation`). (The receiver
//! packages' rotation tests run the same code, [`rotate::run`], in-process.)

use examples_testkit::{Tool, rotation};

#[test]
fn rotate_failures_leave_the_file_alone_and_print_no_secret() {
    rotation::rotate_failures_leave_the_file_alone_and_print_no_secret(Tool::Binary(env!(
        "CARGO_BIN_EXE_rotate"
    )));
}

#[test]
fn rotate_reaches_the_api_over_https() {
    rotation::rotate_reaches_the_api_over_https(Tool::Binary(env!("CARGO_BIN_EXE_rotate")));
}

#[test]
fn a_second_rotate_while_one_runs_is_refused() {
    rotation::a_second_rotate_while_one_runs_is_refused(env!("CARGO_BIN_EXE_rotate"));
}

#[test]
fn rotate_through_a_symlink_rewrites_its_target() {
    rotation::rotate_through_a_symlink_rewrites_its_target(env!("CARGO_BIN_EXE_rotate"));
}

#[test]
fn a_failed_write_after_the_rotation_shows_the_new_secret_once() {
    rotation::a_failed_write_after_the_rotation_shows_the_new_secret_once(env!(
        "CARGO_BIN_EXE_rotate"
    ));
}
