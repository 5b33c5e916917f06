//! [`WorkerMetrics`]: the worker's attempts, lag and states through the `metrics` facade.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Unit};

use crate::{Attempt, AttemptResult, State, WorkerObserver};

/// Records what a [`Worker`](crate::Worker) does with the
/// [`metrics`](https://docs.rs/metrics) facade (the `metrics` feature). As with the
/// core's `MetricsObserver`, install the exporter's recorder **before** building it:
/// every handle is registered once, in [`new`](Self::new), so an attempt costs a few
/// atomic updates. Cheap to clone; give a clone to each worker.
///
/// | metric | type | labels |
/// |---|---|---|
/// | `mapping_webhooks_inbox_attempts_total` | counter | `result` ([`AttemptResult::as_str`]) |
/// | `mapping_webhooks_inbox_attempt_duration_seconds` | histogram | |
/// | `mapping_webhooks_inbox_processing_lag_seconds` | histogram | |
/// | `mapping_webhooks_inbox_deliveries` | gauge | `namespace` (the inbox's, empty for none), `state` (`pending`, `running`, `done`, `dead`) |
///
/// Every series is registered up front (at 0); the `deliveries` gauges of a namespace
/// other than the default (empty) one when its worker first counts. No label carries an
/// id. The `deliveries` gauge is set from a count query of its namespace by each running
/// worker every [`STATES_EVERY`](crate::STATES_EVERY): every replica reports the same
/// numbers for a namespace, so aggregate with `max` by namespace, then `sum` across
/// namespaces: `sum(max by (namespace) (mapping_webhooks_inbox_deliveries{state="dead"}))`.
/// One `WorkerMetrics` serves the workers of every namespace (one per tenant, say).
///
/// ```
/// use mapping_webhooks_inbox::WorkerMetrics;
///
/// # async fn run(inbox: mapping_webhooks_inbox::Inbox) {
/// // Install the exporter's recorder first, then:
/// let metrics = WorkerMetrics::new();
/// let worker = inbox
///     .worker(|_delivery| async { Ok::<(), std::io::Error>(()) })
///     .observer(metrics.clone());
/// # let _ = worker;
/// # }
/// ```
#[derive(Clone)]
pub struct WorkerMetrics {
    handles: Arc<Handles>,
}

struct Handles {
    /// In [`AttemptResult::ALL`] order.
    attempts: [Counter; 6],
    duration: Histogram,
    lag: Histogram,
    /// By namespace, each in [`State::ALL`] order.
    states: Mutex<HashMap<String, [Gauge; 4]>>,
}

impl WorkerMetrics {
    /// Attempts by result.
    pub const ATTEMPTS: &'static str = "mapping_webhooks_inbox_attempts_total";
    /// Time from an attempt's claim to the record of its result.
    pub const ATTEMPT_DURATION: &'static str = "mapping_webhooks_inbox_attempt_duration_seconds";
    /// Time from a delivery's acceptance to its being done.
    pub const PROCESSING_LAG: &'static str = "mapping_webhooks_inbox_processing_lag_seconds";
    /// Deliveries in each state.
    pub const DELIVERIES: &'static str = "mapping_webhooks_inbox_deliveries";

    /// Registers every metric, with its description and unit, with the recorder
    /// installed now (or none: then the handles do nothing).
    pub fn new() -> Self {
        metrics::describe_counter!(
            Self::ATTEMPTS,
            Unit::Count,
            "Inbox handler attempts by result; `dead` means a delivery needs a replay."
        );
        metrics::describe_histogram!(
            Self::ATTEMPT_DURATION,
            Unit::Seconds,
            "Time of each inbox handler attempt, from its claim to the record of its result."
        );
        metrics::describe_histogram!(
            Self::PROCESSING_LAG,
            Unit::Seconds,
            "Time from a delivery's acceptance to its being done."
        );
        metrics::describe_gauge!(
            Self::DELIVERIES,
            Unit::Count,
            "Deliveries in the inbox by namespace and state, counted every few seconds by a running worker."
        );
        Self {
            handles: Arc::new(Handles {
                attempts: AttemptResult::ALL
                    .map(|r| metrics::counter!(Self::ATTEMPTS, "result" => r.as_str())),
                duration: metrics::histogram!(Self::ATTEMPT_DURATION),
                lag: metrics::histogram!(Self::PROCESSING_LAG),
                states: Mutex::new(HashMap::from([(String::new(), Self::gauges(""))])),
            }),
        }
    }
}

impl WorkerMetrics {
    /// The `deliveries` gauges of `namespace`, in [`State::ALL`] order.
    fn gauges(namespace: &str) -> [Gauge; 4] {
        State::ALL.map(|s| {
            metrics::gauge!(Self::DELIVERIES, "namespace" => namespace.to_owned(), "state" => s.as_str())
        })
    }
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for WorkerMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerMetrics").finish_non_exhaustive()
    }
}

impl WorkerObserver for WorkerMetrics {
    fn attempt(&self, attempt: Attempt) {
        self.handles.attempts[slot(attempt.result)].increment(1);
        self.handles.duration.record(attempt.duration.as_secs_f64());
    }

    fn processed(&self, lag: Duration) {
        self.handles.lag.record(lag.as_secs_f64());
    }

    fn states(&self, namespace: &str, counts: &HashMap<State, u64>) {
        let mut namespaces = self
            .handles
            .states
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let gauges = namespaces
            .entry(namespace.to_owned())
            .or_insert_with(|| Self::gauges(namespace));
        for (gauge, state) in gauges.iter().zip(State::ALL) {
            // Counts of rows: exact in an f64 up to 2^53.
            gauge.set(counts.get(&state).copied().unwrap_or(0) as f64);
        }
    }
}

/// The index of a result's counter, in [`AttemptResult::ALL`] order.
fn slot(result: AttemptResult) -> usize {
    match result {
        AttemptResult::Done => 0,
        AttemptResult::Retry => 1,
        AttemptResult::TimedOut => 2,
        AttemptResult::Panicked => 3,
        AttemptResult::Dead => 4,
        AttemptResult::Unrecorded => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slots_follow_the_order_of_all() {
        for (i, result) in AttemptResult::ALL.into_iter().enumerate() {
            assert_eq!(slot(result), i, "{result}");
        }
        let names: std::collections::HashSet<_> = AttemptResult::ALL
            .iter()
            .map(AttemptResult::as_str)
            .collect();
        assert_eq!(names.len(), AttemptResult::ALL.len());
        // Without a recorder it does nothing.
        let metrics = WorkerMetrics::new();
        metrics.processed(Duration::from_secs(1));
        assert!(format!("{metrics:?}").starts_with("WorkerMetrics"));
    }
}
