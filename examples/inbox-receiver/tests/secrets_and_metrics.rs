//! `inbox-receiver` reloads its secrets file on `SIGHUP` and serves the inbox's metrics
//! on `METRICS_ADDR`, which the dashboard's inbox row queries (see `examples_testkit::rotation` and `metrics_scrape`).

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

#[test]
fn the_dashboard_queries_the_inbox_metrics() {
    metrics_scrape::the_dashboard_queries_the_inbox_metrics(RECEIVER);
}
