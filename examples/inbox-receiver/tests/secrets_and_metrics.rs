//! `inbox-receiver` reloads its secrets file on `SIGHUP` and serves the inbox's metrics
//! on `METRICS_ADDR` (see `examples_testkit::rotation` and `metrics_scrape`).

use examples_testkit::{metrics_scrape, rotation};

const NAME: &str = "inbox-receiver";
const RECEIVER: &str = env!("CARGO_BIN_EXE_inbox-receiver");

#[cfg(unix)]
#[test]
fn sighup_reloads_the_file_when_polling_is_off() {
    rotation::sighup_reloads_the_file_when_polling_is_off(NAME, RECEIVER);
}

#[test]
fn counts_each_delivery_exactly() {
    metrics_scrape::inbox_counts_each_delivery_exactly(RECEIVER);
}
