//! `METRICS_ADDR` on `axum-receiver` (see `examples_testkit::metrics_scrape`).

use examples_testkit::metrics_scrape;

const NAME: &str = "axum-receiver";
const RECEIVER: &str = env!("CARGO_BIN_EXE_axum-receiver");

#[test]
fn counts_each_delivery_exactly() {
    metrics_scrape::counts_each_delivery_exactly(NAME, RECEIVER);
}

#[test]
fn without_metrics_addr_nothing_is_served() {
    metrics_scrape::without_metrics_addr_nothing_is_served(NAME, RECEIVER);
}

#[test]
fn the_dashboard_queries_the_served_metrics() {
    metrics_scrape::the_dashboard_queries_the_served_metrics(RECEIVER);
}
