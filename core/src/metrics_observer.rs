//! [`MetricsObserver`]: the gate's outcomes and timings through the `metrics` facade.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Unit};

use crate::observe::{Handled, HandlerEnd, Observer, Outcome, Refusal, StoreOperation};
use crate::{MatchedSecret, VerifyError};

/// Records what the gate decides with the [`metrics`](https://docs.rs/metrics) facade
/// (the `metrics` feature). Install an exporter (for Prometheus,
/// `metrics-exporter-prometheus`) **before** building it: every handle is registered once,
/// in [`new`](Self::new), with the recorder installed then, so a request costs only
/// atomic updates and no label lookup. Cheap to clone; clones share the handles.
///
/// | metric | type | labels |
/// |---|---|---|
/// | `mapping_webhooks_requests_total` | counter | `outcome`, `reason` ([`Outcome::as_str`], [`Outcome::reason`]) |
/// | `mapping_webhooks_verification_duration_seconds` | histogram | |
/// | `mapping_webhooks_handler_duration_seconds` | histogram | |
/// | `mapping_webhooks_store_duration_seconds` | histogram | `operation` (`begin`, `complete`, `abandon`) |
/// | `mapping_webhooks_claims_in_flight` | gauge | |
/// | `mapping_webhooks_previous_secret_matches_total` | counter | |
///
/// Every combination of labels is registered up front, so each series exists (at 0)
/// from the start and a rate over it never starts from a missing series. No label ever
/// carries an event id, a delivery id or a secret.
///
/// ```
/// use mapping_webhooks::{Gate, MetricsObserver, Secret};
///
/// // Install the exporter's recorder first, then:
/// let gate = Gate::builder()
///     .secret("whsec_test")
///     .observer(MetricsObserver::new())
///     .build()?;
/// # Ok::<(), mapping_webhooks::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct MetricsObserver {
    handles: Arc<Handles>,
}

struct Handles {
    /// Indexed by [`slot`].
    requests: Vec<Counter>,
    verification: Histogram,
    handler: Histogram,
    /// Indexed by [`StoreOperation`] order.
    store: [Histogram; 3],
    claims: Gauge,
    previous_secret: Counter,
}

impl MetricsObserver {
    /// Requests by outcome and reason.
    pub const REQUESTS: &'static str = "mapping_webhooks_requests_total";
    /// Time to check a body's signature and read its envelope.
    pub const VERIFICATION_DURATION: &'static str =
        "mapping_webhooks_verification_duration_seconds";
    /// Time from admission to the handler's answer (or its drop).
    pub const HANDLER_DURATION: &'static str = "mapping_webhooks_handler_duration_seconds";
    /// Time of each dedup store call, by operation.
    pub const STORE_DURATION: &'static str = "mapping_webhooks_store_duration_seconds";
    /// Dedup claims taken and not yet completed or abandoned.
    pub const CLAIMS_IN_FLIGHT: &'static str = "mapping_webhooks_claims_in_flight";
    /// Requests signed with a previous secret.
    pub const PREVIOUS_SECRET_MATCHES: &'static str =
        "mapping_webhooks_previous_secret_matches_total";

    /// Registers every metric, with its description and unit, with the recorder
    /// installed now (or none: then the handles do nothing).
    pub fn new() -> Self {
        metrics::describe_counter!(
            Self::REQUESTS,
            Unit::Count,
            "Webhook requests by outcome and reason; each request is counted once."
        );
        metrics::describe_histogram!(
            Self::VERIFICATION_DURATION,
            Unit::Seconds,
            "Time to check a webhook body's signature and read its envelope."
        );
        metrics::describe_histogram!(
            Self::HANDLER_DURATION,
            Unit::Seconds,
            "Time the webhook handler took, from admission to its answer."
        );
        metrics::describe_histogram!(
            Self::STORE_DURATION,
            Unit::Seconds,
            "Time of each dedup store call, by operation."
        );
        metrics::describe_gauge!(
            Self::CLAIMS_IN_FLIGHT,
            Unit::Count,
            "Dedup claims taken whose handler has not finished."
        );
        metrics::describe_counter!(
            Self::PREVIOUS_SECRET_MATCHES,
            Unit::Count,
            "Webhooks signed with a previous secret; remove it once this stops rising."
        );
        let requests = every_outcome()
            .map(|outcome| {
                metrics::counter!(Self::REQUESTS, "outcome" => outcome.as_str(), "reason" => outcome.reason())
            })
            .collect();
        let store = StoreOperation::ALL
            .map(|op| metrics::histogram!(Self::STORE_DURATION, "operation" => op.as_str()));
        Self {
            handles: Arc::new(Handles {
                requests,
                verification: metrics::histogram!(Self::VERIFICATION_DURATION),
                handler: metrics::histogram!(Self::HANDLER_DURATION),
                store,
                claims: metrics::gauge!(Self::CLAIMS_IN_FLIGHT),
                previous_secret: metrics::counter!(Self::PREVIOUS_SECRET_MATCHES),
            }),
        }
    }
}

impl Default for MetricsObserver {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MetricsObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsObserver").finish_non_exhaustive()
    }
}

impl Observer for MetricsObserver {
    fn outcome(&self, outcome: Outcome) {
        self.handles.requests[slot(&outcome)].increment(1);
        if let Outcome::Handled(handled) = outcome {
            self.handles.handler.record(handled.duration.as_secs_f64());
        }
    }

    fn verification(&self, duration: Duration, secret: Option<MatchedSecret>) {
        self.handles.verification.record(duration.as_secs_f64());
        if let Some(MatchedSecret::Previous(_)) = secret {
            self.handles.previous_secret.increment(1);
        }
    }

    fn store(&self, operation: StoreOperation, duration: Duration, _ok: bool) {
        let index = match operation {
            StoreOperation::Begin => 0,
            StoreOperation::Complete => 1,
            StoreOperation::Abandon => 2,
        };
        self.handles.store[index].record(duration.as_secs_f64());
    }

    fn claim_started(&self) {
        self.handles.claims.increment(1.0);
    }

    fn claim_ended(&self) {
        self.handles.claims.decrement(1.0);
    }
}

/// The handler ends with distinct labels, in [`slot`] order.
const ENDS: [HandlerEnd; 9] = [
    HandlerEnd::Status(200),
    HandlerEnd::Status(100),
    HandlerEnd::Status(300),
    HandlerEnd::Status(400),
    HandlerEnd::Status(500),
    HandlerEnd::Status(0),
    HandlerEnd::Failed,
    HandlerEnd::Panicked,
    HandlerEnd::Dropped,
];

/// One outcome for each (outcome, reason) pair, in [`slot`] order.
fn every_outcome() -> impl Iterator<Item = Outcome> {
    let handled = |end, store_error| {
        Outcome::Handled(Handled {
            end,
            duration: Duration::ZERO,
            store_error,
        })
    };
    [
        Outcome::Duplicate,
        Outcome::InFlight,
        Outcome::StoreUnavailable,
        Outcome::Queued,
        handled(HandlerEnd::Succeeded, true),
    ]
    .into_iter()
    .chain(ENDS.map(|end| handled(end, false)))
    .chain(Refusal::ALL.map(Outcome::Refused))
}

/// The index of an outcome's counter, without comparing strings.
fn slot(outcome: &Outcome) -> usize {
    const HANDLED: usize = 5;
    const REFUSED: usize = HANDLED + ENDS.len();
    match outcome {
        Outcome::Duplicate => 0,
        Outcome::InFlight => 1,
        Outcome::StoreUnavailable => 2,
        Outcome::Queued => 3,
        Outcome::Handled(h) if h.store_error => 4,
        Outcome::Handled(h) => {
            HANDLED
                + match h.end {
                    HandlerEnd::Status(200..=299) | HandlerEnd::Succeeded => 0,
                    HandlerEnd::Status(100..=199) => 1,
                    HandlerEnd::Status(300..=399) => 2,
                    HandlerEnd::Status(400..=499) => 3,
                    HandlerEnd::Status(500..=599) => 4,
                    HandlerEnd::Status(_) => 5,
                    HandlerEnd::Failed => 6,
                    HandlerEnd::Panicked => 7,
                    HandlerEnd::Dropped => 8,
                }
        }
        Outcome::Refused(r) => {
            REFUSED
                + match r {
                    Refusal::BodyTooLarge => 0,
                    Refusal::MissingHeader => 1,
                    Refusal::RepeatedHeader => 2,
                    Refusal::MalformedHeader => 3,
                    Refusal::TimestampTooOld => 4,
                    Refusal::TimestampInFuture => 5,
                    Refusal::ReadTimeout => 6,
                    Refusal::BodyRead => 7,
                    Refusal::UnknownTenant => 8,
                    Refusal::TenantLookupFailed => 9,
                    Refusal::SignatureMismatch => 10,
                    Refusal::NotAnEnvelope => 11,
                }
        }
    }
}

// `Refusal::of` must cover every error: a new `VerifyError` kind fails to compile there.
const _: fn(&VerifyError) -> Refusal = Refusal::of;

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    use metrics::{Key, KeyName, Metadata, Recorder, SharedString};

    use super::*;
    use crate::{Admission, Gate, ManualClock, OnStoreError, Secret, Signer, UnsignedHeaders};

    const SECRET: &str = "whsec_metrics_test_0123456789abcdef";
    const PREVIOUS: &str = "whsec_metrics_previous_0123456789abcdef";
    const NOW: u64 = 1_717_250_400;

    /// A recorder keeping every series by its rendered key.
    #[derive(Default)]
    struct TestRecorder {
        counters: Mutex<HashMap<String, Arc<AtomicU64>>>,
        gauges: Mutex<HashMap<String, Arc<AtomicU64>>>,
        histograms: Mutex<HashMap<String, Arc<Samples>>>,
        units: Mutex<HashMap<String, Unit>>,
    }

    #[derive(Default)]
    struct Samples(Mutex<Vec<f64>>);

    impl metrics::HistogramFn for Samples {
        fn record(&self, value: f64) {
            self.0.lock().unwrap().push(value);
        }
    }

    fn render(key: &Key) -> String {
        let mut labels: Vec<_> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        format!("{}{{{}}}", key.name(), labels.join(","))
    }

    impl Recorder for TestRecorder {
        fn describe_counter(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
            self.units
                .lock()
                .unwrap()
                .insert(key.as_str().into(), unit.unwrap());
        }
        fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
            self.describe_counter(key, unit, SharedString::const_str(""));
        }
        fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
            self.describe_counter(key, unit, SharedString::const_str(""));
        }
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let mut map = self.counters.lock().unwrap();
            let previous = map.insert(render(key), Arc::default());
            assert!(previous.is_none(), "{} registered twice", render(key));
            Counter::from_arc(Arc::clone(&map[&render(key)]))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            let mut map = self.gauges.lock().unwrap();
            Gauge::from_arc(Arc::clone(map.entry(render(key)).or_default()))
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            let mut map = self.histograms.lock().unwrap();
            Histogram::from_arc(Arc::clone(map.entry(render(key)).or_default()))
        }
    }

    impl TestRecorder {
        fn counter(&self, key: &str) -> u64 {
            self.counters.lock().unwrap()[key].load(Ordering::SeqCst)
        }
        fn requests(&self, outcome: &str, reason: &str) -> u64 {
            self.counter(&format!(
                "{}{{outcome={outcome},reason={reason}}}",
                MetricsObserver::REQUESTS
            ))
        }
        fn gauge(&self, key: &str) -> f64 {
            f64::from_bits(self.gauges.lock().unwrap()[key].load(Ordering::SeqCst))
        }
        fn samples(&self, key: &str) -> Vec<f64> {
            self.histograms.lock().unwrap()[key]
                .0
                .lock()
                .unwrap()
                .clone()
        }
        /// Every request counted, over all labels.
        fn total_requests(&self) -> u64 {
            let map = self.counters.lock().unwrap();
            map.iter()
                .filter(|(k, _)| k.starts_with(MetricsObserver::REQUESTS))
                .map(|(_, v)| v.load(Ordering::SeqCst))
                .sum()
        }
    }

    fn body(event_id: &str) -> Vec<u8> {
        format!(r#"{{"id":"del_1","eventId":"{event_id}","type":"mapping.completed","data":{{}}}}"#)
            .into_bytes()
    }

    async fn admit<D: crate::DedupStore>(gate: &Gate<D>, secret: &str, b: &[u8]) -> Admission<D> {
        let header = Signer::new(Secret::new(secret).unwrap()).sign(b, NOW);
        gate.admit([header.as_bytes()], UnsignedHeaders::default(), b)
            .await
    }

    #[test]
    fn every_outcome_has_its_own_series_and_slot() {
        let all: Vec<_> = every_outcome().collect();
        for (i, outcome) in all.iter().enumerate() {
            assert_eq!(slot(outcome), i, "{outcome:?}");
        }
        let labels: std::collections::HashSet<_> =
            all.iter().map(|o| (o.as_str(), o.reason())).collect();
        assert_eq!(labels.len(), all.len(), "two slots share labels");
        // Every status lands in the slot of its class.
        for status in [0, 99, 100, 204, 299, 302, 404, 503, 600, 999] {
            let outcome = Outcome::Handled(Handled {
                end: HandlerEnd::Status(status),
                duration: Duration::ZERO,
                store_error: false,
            });
            assert_eq!(
                (all[slot(&outcome)].as_str(), all[slot(&outcome)].reason()),
                (outcome.as_str(), outcome.reason()),
                "{status}"
            );
        }
    }

    #[tokio::test]
    async fn a_gate_with_the_observer_fills_every_metric() {
        let recorder = TestRecorder::default();
        let observer = metrics::with_local_recorder(&recorder, MetricsObserver::new);
        // Every series exists from the start.
        assert_eq!(recorder.total_requests(), 0);
        assert_eq!(
            recorder.counters.lock().unwrap().len(),
            every_outcome().count() + 1
        );
        assert_eq!(
            recorder.units.lock().unwrap()[MetricsObserver::STORE_DURATION],
            Unit::Seconds
        );

        let gate = Gate::builder()
            .secret(SECRET)
            .previous_secret(PREVIOUS)
            .clock(ManualClock::at_secs(NOW))
            .observer(observer)
            .build()
            .unwrap();
        let b = body("evt_metrics");
        let Admission::Process { ticket, .. } = admit(&gate, SECRET, &b).await else {
            panic!("refused")
        };
        let claims = format!("{}{{}}", MetricsObserver::CLAIMS_IN_FLIGHT);
        assert_eq!(recorder.gauge(&claims), 1.0);
        let _ = admit(&gate, SECRET, &b).await; // in flight
        ticket.finish(204).await;
        assert_eq!(recorder.gauge(&claims), 0.0);
        let _ = admit(&gate, SECRET, &b).await; // duplicate
        let _ = admit(&gate, "whsec_forger", &b).await; // forged
        let Admission::Process { ticket, .. } = admit(&gate, PREVIOUS, &body("evt_prev")).await
        else {
            panic!("refused")
        };
        drop(ticket);
        let _ = gate.refuse(
            VerifyError::BodyRead { timed_out: true },
            UnsignedHeaders::default(),
        );

        assert_eq!(recorder.requests("processed", "2xx"), 1);
        assert_eq!(recorder.requests("in_flight", "in_flight"), 1);
        assert_eq!(recorder.requests("duplicate", "already_processed"), 1);
        assert_eq!(recorder.requests("refused", "signature_mismatch"), 1);
        assert_eq!(recorder.requests("refused", "read_timeout"), 1);
        assert_eq!(recorder.requests("handler_failed", "dropped"), 1);
        assert_eq!(recorder.total_requests(), 6);
        assert_eq!(
            recorder.counter(&format!("{}{{}}", MetricsObserver::PREVIOUS_SECRET_MATCHES)),
            1
        );
        assert_eq!(recorder.gauge(&claims), 0.0);
        let verification = format!("{}{{}}", MetricsObserver::VERIFICATION_DURATION);
        assert_eq!(recorder.samples(&verification).len(), 5);
        let handler = format!("{}{{}}", MetricsObserver::HANDLER_DURATION);
        assert_eq!(recorder.samples(&handler).len(), 2);
        let store = |op: &str| {
            recorder
                .samples(&format!(
                    "{}{{operation={op}}}",
                    MetricsObserver::STORE_DURATION
                ))
                .len()
        };
        // The dropped ticket's abandon runs in the background, untimed.
        assert_eq!(
            (store("begin"), store("complete"), store("abandon")),
            (4, 1, 0)
        );

        // A store failure answered 503, and one passed through.
        let recorder = TestRecorder::default();
        let observer = metrics::with_local_recorder(&recorder, MetricsObserver::new);
        let failing = |policy: OnStoreError| {
            Gate::builder()
                .secret(SECRET)
                .clock(ManualClock::at_secs(NOW))
                .observer(observer.clone())
                .dedup(Down)
                .on_store_error(policy)
                .build()
                .unwrap()
        };
        let rejecting = failing(OnStoreError::Reject);
        let _ = admit(&rejecting, SECRET, &b).await;
        let passing = failing(OnStoreError::PassThrough);
        let Admission::Process { ticket, .. } = admit(&passing, SECRET, &b).await else {
            panic!("refused")
        };
        ticket.finish(200).await;
        assert_eq!(recorder.requests("store_error", "store_unavailable"), 1);
        assert_eq!(recorder.requests("store_error", "passed_through"), 1);
        assert_eq!(recorder.total_requests(), 2);
    }

    /// A store that is down.
    struct Down;

    impl crate::DedupStore for Down {
        async fn begin(&self, _: &str) -> Result<crate::Begin, crate::StoreError> {
            Err(crate::StoreError::backend("down"))
        }
        async fn complete(&self, _: &str, _: crate::Claim) -> Result<(), crate::StoreError> {
            Err(crate::StoreError::backend("down"))
        }
        async fn abandon(&self, _: &str, _: crate::Claim) -> Result<(), crate::StoreError> {
            Err(crate::StoreError::backend("down"))
        }
    }

    #[test]
    fn a_delivery_queued_by_the_inbox_has_its_own_series() {
        let recorder = TestRecorder::default();
        let observer = metrics::with_local_recorder(&recorder, MetricsObserver::new);
        observer.outcome(Outcome::Queued);
        assert_eq!(recorder.requests("queued", "stored"), 1);
        assert_eq!(recorder.total_requests(), 1);
    }

    #[test]
    fn without_a_recorder_it_does_nothing() {
        let observer = MetricsObserver::new();
        observer.outcome(Outcome::Duplicate);
        observer.claim_started();
        assert!(format!("{observer:?}").starts_with("MetricsObserver"));
    }
}
