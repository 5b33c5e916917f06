//! Runtime secrets and observing, against real databases: rotating the secrets while
//! deliveries are accepted, the accept path's outcomes, and the worker's metrics.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mapping_webhooks::{
    Clock, Gate, ManualClock, MatchedSecret, Outcome, Refusal, Reply, Secret, Secrets,
};
use mapping_webhooks_inbox::{
    Attempt, AttemptResult, Delivery, Inbox, InboxError, Observer, State, UnsignedHeaders,
    VerifyError, WorkerMetrics,
};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use support::{
    Backend, SECRET, T0, TestDb, TestHead, deliver, envelope, eventually, sign, stored_id,
};

on_both!(
    rotating_while_accepting_loses_nothing_and_ends_the_old_secret,
    each_accept_reports_exactly_one_outcome,
    worker_metrics_count_a_known_sequence,
);

const OLD: &str = "whsec_inbox_old_0123456789abcdef0123";
const NEW: &str = "whsec_inbox_new_fedcba9876543210fedc";

fn secret(s: &str) -> Secret {
    Secret::new(s).unwrap()
}

async fn accept_signed(gate: &Gate, inbox: &Inbox, key: &str, event_id: &str, t: u64) -> Reply {
    let body = envelope(event_id, &format!("del_{event_id}"));
    let header = sign(key, &body, t);
    gate.admit_into(
        inbox,
        [header.as_bytes()],
        UnsignedHeaders::default(),
        &body,
    )
    .await
}

/// A gate on `clock` without a dedup store of its own, reading `secrets`.
fn gate_for(secrets: &Secrets, clock: &ManualClock) -> Gate {
    Gate::builder()
        .secrets(secrets.clone())
        .clock(clock.clone())
        .without_dedup()
        .build()
        .unwrap()
}

async fn rotating_while_accepting_loses_nothing_and_ends_the_old_secret(backend: Backend) {
    let Some(db) = TestDb::open(backend, "rotate_accepting") else {
        return;
    };
    let clock = ManualClock::at_secs(T0);
    let secrets = Secrets::new(secret(OLD));
    let inbox = Inbox::builder()
        .clock(clock.clone())
        .connect(&db.url)
        .await
        .unwrap();
    let gate = gate_for(&secrets, &clock);
    let stored = stored_id(
        &inbox,
        accept_signed(&gate, &inbox, OLD, "evt_before", T0).await,
        "evt_before",
    )
    .await;

    // A sender keeps delivering with the old secret while the app rotates: every copy is
    // stored, before, during and after the rotation.
    let (started, rotate) = tokio::sync::oneshot::channel();
    let sender = {
        let (inbox, gate) = (inbox.clone(), gate.clone());
        tokio::spawn(async move {
            let mut started = Some(started);
            let mut answers = Vec::new();
            for i in 0..60 {
                if i == 20 {
                    started.take().unwrap().send(()).unwrap();
                }
                let answer =
                    accept_signed(&gate, &inbox, OLD, &format!("evt_during_{i}"), T0).await;
                answers.push(answer.status());
            }
            answers
        })
    };
    rotate.await.unwrap();
    // The handle the gate hands out is the one it reads.
    gate.secrets().rotate(secret(NEW));
    let answers = sender.await.unwrap();
    assert!(answers.iter().all(|s| *s == 202), "{answers:?}");
    assert_eq!(
        inbox.counts().await.unwrap().get(&State::Pending),
        Some(&61)
    );
    // Verified as the current secret before the rotation, as a previous one after it.
    let mut matched = std::collections::BTreeSet::new();
    for info in inbox.list(State::Pending, 0, 100).await.unwrap() {
        matched.insert(info.secret);
    }
    assert_eq!(
        matched.into_iter().collect::<Vec<_>>(),
        ["current", "previous[0]"]
    );

    // After it, the new secret is current and the old one still accepted (previous).
    let by_new = stored_id(
        &inbox,
        accept_signed(&gate, &inbox, NEW, "evt_new", T0).await,
        "evt_new",
    )
    .await;
    assert_eq!(inbox.show(by_new).await.unwrap().info.secret, "current");
    let by_old = stored_id(
        &inbox,
        accept_signed(&gate, &inbox, OLD, "evt_old_after", T0).await,
        "evt_old_after",
    )
    .await;
    assert_eq!(inbox.show(by_old).await.unwrap().info.secret, "previous[0]");
    // Re-verifying reads the same secrets, now; it does not freeze their clock.
    assert_eq!(
        inbox.reverify(stored, &secrets).await.unwrap().secret,
        MatchedSecret::Previous(0)
    );

    // The rotation ends: the old secret is refused, for new deliveries and re-verifying.
    assert!(secrets.remove_previous(&secret(OLD)));
    let refused = accept_signed(&gate, &inbox, OLD, "evt_old_late", T0).await;
    assert_eq!(refused, Reply::Refused(VerifyError::SignatureMismatch));
    assert!(matches!(
        inbox.reverify(stored, &secrets).await,
        Err(InboxError::Verify(VerifyError::SignatureMismatch))
    ));
    assert_eq!(
        inbox.reverify(by_new, &secrets).await.unwrap().secret,
        MatchedSecret::Current
    );
    assert_eq!(
        accept_signed(&gate, &inbox, NEW, "evt_new_2", T0)
            .await
            .status(),
        202
    );

    // A previous secret left to expire stops verifying after the expiry, on the inbox's
    // clock (re-verifying above did not stop that clock).
    gate.secrets().rotate(secret(OLD));
    clock.advance(Duration::from_secs(60));
    let t = clock.now_secs();
    assert_eq!(
        accept_signed(&gate, &inbox, NEW, "evt_expiring", t)
            .await
            .status(),
        202
    );
    clock.advance(mapping_webhooks::DEFAULT_PREVIOUS_EXPIRY);
    let t = clock.now_secs();
    assert_eq!(
        accept_signed(&gate, &inbox, NEW, "evt_expired", t).await,
        Reply::Refused(VerifyError::SignatureMismatch)
    );
    assert_eq!(
        accept_signed(&gate, &inbox, OLD, "evt_current", t)
            .await
            .status(),
        202
    );

    // The fixed-secret builder still works, and hands out its handle too.
    let fixed_gate = Gate::builder()
        .secret(NEW)
        .previous_secret(OLD)
        .clock(clock.clone())
        .without_dedup()
        .build()
        .unwrap();
    let fixed = Inbox::builder()
        .namespace("fixed")
        .clock(clock.clone())
        .connect(&db.url)
        .await
        .unwrap();
    assert_eq!(
        accept_signed(&fixed_gate, &fixed, OLD, "evt_fixed", t)
            .await
            .status(),
        202
    );
    assert!(fixed_gate.secrets().remove_previous(&secret(OLD)));
    assert_eq!(
        accept_signed(&fixed_gate, &fixed, OLD, "evt_fixed_2", t)
            .await
            .status(),
        401
    );
}

/// What the accept path's observer heard.
#[derive(Clone, Default)]
struct Heard {
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    verifications: Arc<Mutex<Vec<Option<MatchedSecret>>>>,
}

impl Heard {
    fn take(&self) -> (Vec<Outcome>, Vec<Option<MatchedSecret>>) {
        (
            std::mem::take(&mut *self.outcomes.lock().unwrap()),
            std::mem::take(&mut *self.verifications.lock().unwrap()),
        )
    }
}

impl Observer for Heard {
    fn outcome(&self, outcome: Outcome) {
        self.outcomes.lock().unwrap().push(outcome);
    }
    fn verification(&self, _duration: Duration, secret: Option<MatchedSecret>) {
        self.verifications.lock().unwrap().push(secret);
    }
}

async fn each_accept_reports_exactly_one_outcome(backend: Backend) {
    let Some(db) = TestDb::open(backend, "accept_outcomes") else {
        return;
    };
    let clock = ManualClock::at_secs(T0);
    let heard = Heard::default();
    let gate = Gate::builder()
        .secret(SECRET)
        .previous_secret(OLD)
        .body_limit(4096)
        .clock(clock.clone())
        .observer(heard.clone())
        .without_dedup()
        .build()
        .unwrap();
    let inbox = Inbox::builder()
        .clock(clock.clone())
        .connect(&db.url)
        .await
        .unwrap();
    let u = UnsignedHeaders::default();
    let current = Some(MatchedSecret::Current);

    // Stored, then the same event again.
    assert_eq!(
        accept_signed(&gate, &inbox, SECRET, "evt_1", T0)
            .await
            .status(),
        202
    );
    assert_eq!(heard.take(), (vec![Outcome::Queued], vec![current]));
    assert_eq!(
        accept_signed(&gate, &inbox, SECRET, "evt_1", T0)
            .await
            .status(),
        200
    );
    assert_eq!(heard.take(), (vec![Outcome::Duplicate], vec![current]));
    assert_eq!(
        accept_signed(&gate, &inbox, OLD, "evt_2", T0)
            .await
            .status(),
        202
    );
    assert_eq!(
        heard.take(),
        (
            vec![Outcome::Queued],
            vec![Some(MatchedSecret::Previous(0))]
        )
    );

    // Refusals, each with the gate's reason; those of the head are never verified.
    let body = envelope("evt_3", "del_3");
    let good = sign(SECRET, &body, T0);
    let stale = sign(SECRET, &body, T0 - 301);
    let forged = sign("whsec_forger_0123456789", &body, T0);
    let none: [&[u8]; 0] = [];
    let cases: [(Vec<&[u8]>, Refusal); 4] = [
        (none.to_vec(), Refusal::MissingHeader),
        (
            vec![good.as_bytes(), good.as_bytes()],
            Refusal::RepeatedHeader,
        ),
        (vec![b"t=1,v1=zz"], Refusal::MalformedHeader),
        (vec![stale.as_bytes()], Refusal::TimestampTooOld),
    ];
    for (headers, refusal) in cases {
        let answer = gate.admit_into(&inbox, headers, u, &body).await;
        assert!(matches!(answer, Reply::Refused(_)), "{answer:?}");
        assert_eq!(heard.take(), (vec![Outcome::Refused(refusal)], vec![]));
    }
    let answer = gate.admit_into(&inbox, [forged.as_bytes()], u, &body).await;
    assert_eq!(answer.status(), 401);
    assert_eq!(
        heard.take(),
        (
            vec![Outcome::Refused(Refusal::SignatureMismatch)],
            vec![None]
        )
    );
    let not_envelope = br#"{"eventId":7}"#;
    let header = sign(SECRET, not_envelope, T0);
    let _ = gate
        .admit_into(&inbox, [header.as_bytes()], u, not_envelope)
        .await;
    assert_eq!(
        heard.take(),
        (
            vec![Outcome::Refused(Refusal::NotAnEnvelope)],
            vec![current]
        )
    );
    // Found by an adapter: the head with a declared length, a body read that failed.
    let too_large = TestHead::signed(&good).content_length(4097);
    assert!(gate.intake(&too_large).await.is_err());
    assert_eq!(
        heard.take(),
        (vec![Outcome::Refused(Refusal::BodyTooLarge)], vec![])
    );
    let head = TestHead::signed(&good);
    let intake = gate.intake(&head).await.expect("the head passes");
    assert_eq!(intake.body_failed(true).status(), 408);
    assert_eq!(
        heard.take(),
        (vec![Outcome::Refused(Refusal::ReadTimeout)], vec![])
    );

    // The database down: 503, reported once as the store's failure.
    inbox.close().await;
    assert_eq!(
        accept_signed(&gate, &inbox, SECRET, "evt_down", T0)
            .await
            .status(),
        503
    );
    assert_eq!(
        heard.take(),
        (vec![Outcome::StoreUnavailable], vec![current])
    );
}

/// A recorder keeping every series by its rendered key (`name{label=value,…}`).
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
        let unit = unit.expect("every metric has a unit");
        self.units.lock().unwrap().insert(key.as_str().into(), unit);
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, d: SharedString) {
        self.describe_counter(key, unit, d);
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, d: SharedString) {
        self.describe_counter(key, unit, d);
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
    fn attempts(&self) -> HashMap<String, u64> {
        let prefix = format!("{}{{result=", WorkerMetrics::ATTEMPTS);
        self.counters
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let result = k.strip_prefix(&prefix).unwrap().trim_end_matches('}');
                (result.to_owned(), v.load(Ordering::SeqCst))
            })
            .collect()
    }
    fn samples(&self, name: &str) -> Vec<f64> {
        self.histograms.lock().unwrap()[&format!("{name}{{}}")]
            .0
            .lock()
            .unwrap()
            .clone()
    }
    fn deliveries(&self, state: &str) -> f64 {
        let key = format!("{}{{namespace=,state={state}}}", WorkerMetrics::DELIVERIES);
        f64::from_bits(self.gauges.lock().unwrap()[&key].load(Ordering::SeqCst))
    }
}

async fn worker_metrics_count_a_known_sequence(backend: Backend) {
    let Some(db) = TestDb::open(backend, "worker_metrics") else {
        return;
    };
    let clock = ManualClock::at_secs(T0);
    let inbox = db.inbox(&clock).await;
    let recorder = Arc::new(TestRecorder::default());
    let metrics = metrics::with_local_recorder(&*recorder, WorkerMetrics::new);
    // Every series exists from the start, at 0.
    assert_eq!(recorder.attempts().len(), AttemptResult::ALL.len());
    assert!(recorder.attempts().values().all(|n| *n == 0));
    assert_eq!(
        recorder.units.lock().unwrap()[WorkerMetrics::PROCESSING_LAG],
        Unit::Seconds
    );

    // evt_ok succeeds; evt_flaky fails once, then succeeds; evt_bad always fails.
    for id in ["evt_ok", "evt_flaky", "evt_bad"] {
        deliver(&inbox, &clock, id).await;
    }
    let failed_once = Arc::new(Mutex::new(false));
    let handler = move |delivery: Delivery| {
        let fail = match delivery.envelope.event_id.as_str() {
            "evt_bad" => true,
            "evt_flaky" => !std::mem::replace(&mut *failed_once.lock().unwrap(), true),
            _ => false,
        };
        async move { if fail { Err("import failed") } else { Ok(()) } }
    };
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&attempts);
    let worker = || {
        inbox
            .worker(handler.clone())
            .max_attempts(2)
            .backoff(Duration::from_secs(10), Duration::from_secs(10))
            .jitter(0.0)
    };
    let observed = worker().observer(metrics.clone());
    assert_eq!(observed.run_once().await.unwrap(), 3);
    clock.advance(Duration::from_secs(10));
    assert_eq!(observed.run_once().await.unwrap(), 2);
    // A closure hears the same attempts (here: nothing left to run).
    let closure = worker().observer(move |a: Attempt| log.lock().unwrap().push(a));
    assert_eq!(closure.run_once().await.unwrap(), 0);
    assert!(attempts.lock().unwrap().is_empty());

    let expected: HashMap<String, u64> = AttemptResult::ALL
        .iter()
        .map(|r| {
            let n = match r {
                AttemptResult::Done => 2,
                AttemptResult::Retry => 2,
                AttemptResult::Dead => 1,
                _ => 0,
            };
            (r.as_str().to_owned(), n)
        })
        .collect();
    assert_eq!(recorder.attempts(), expected);
    assert_eq!(recorder.samples(WorkerMetrics::ATTEMPT_DURATION).len(), 5);
    // evt_ok was done at once (the clock had not moved), evt_flaky 10 s after it was
    // accepted.
    let mut lag = recorder.samples(WorkerMetrics::PROCESSING_LAG);
    lag.sort_by(f64::total_cmp);
    assert_eq!(lag, [0.0, 10.0]);

    // A running worker counts the deliveries by state (every state, zero included).
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker().observer(metrics.clone()).run_until(async move {
        let _ = stopped.await;
    }));
    let r = Arc::clone(&recorder);
    eventually("the states counted", move || {
        let r = Arc::clone(&r);
        async move { r.deliveries("done") == 2.0 }
    })
    .await;
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    assert_eq!(
        State::ALL.map(|s| recorder.deliveries(s.as_str())),
        [0.0, 0.0, 2.0, 1.0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_and_overruns_are_their_own_results() {
    let db = TestDb::open(Backend::Sqlite, "attempt_results").unwrap();
    let clock = ManualClock::at_secs(T0);
    let inbox = db.inbox(&clock).await;
    deliver(&inbox, &clock, "evt_panic").await;
    deliver(&inbox, &clock, "evt_hang").await;
    let heard = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&heard);
    let worker = inbox
        .worker(|delivery: Delivery| async move {
            match delivery.envelope.event_id.as_str() {
                "evt_panic" => panic!("boom"),
                _ => tokio::time::sleep(Duration::from_secs(30)).await,
            }
            Ok::<(), String>(())
        })
        // Long enough for a panic's backtrace to be printed (RUST_BACKTRACE in CI).
        .handler_timeout(Duration::from_secs(2))
        .lease(Duration::from_secs(3))
        .observer(move |a: Attempt| log.lock().unwrap().push((a.result, a.number)));
    assert_eq!(worker.run_once().await.unwrap(), 2);
    let mut heard = heard.lock().unwrap().clone();
    heard.sort_by_key(|(r, _)| r.as_str());
    assert_eq!(
        heard,
        [(AttemptResult::Panicked, 1), (AttemptResult::TimedOut, 1)]
    );
}
