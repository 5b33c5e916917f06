//! The `deliveries{namespace, state}` gauge with two namespaces (one per tenant) in one
//! database, each with its own worker and one shared `WorkerMetrics`: each namespace's
//! counts stay its own, so a dead delivery in one is not hidden by the other's report.
//!
//! Its own test binary: the gauges of a namespace are registered when its worker first
//! counts, on the worker's task, so the recorder is the global one.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use mapping_webhooks::ManualClock;
use mapping_webhooks_inbox::{Delivery, Inbox, WorkerMetrics};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use support::{Backend, T0, TestDb, deliver, eventually};

/// Keeps every gauge by its rendered key (`name{label=value,…}`, labels sorted).
#[derive(Default)]
struct Gauges(Mutex<HashMap<String, Arc<AtomicU64>>>);

impl Recorder for Gauges {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let mut labels: Vec<_> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        Gauge::from_arc(Arc::clone(self.0.lock().unwrap().entry(name).or_default()))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

fn gauges() -> &'static Gauges {
    static GAUGES: OnceLock<&'static Gauges> = OnceLock::new();
    GAUGES.get_or_init(|| {
        let gauges: &'static Gauges = Box::leak(Box::default());
        metrics::set_global_recorder(gauges).expect("the only recorder of this binary");
        gauges
    })
}

/// Every `deliveries` series and its value.
fn deliveries() -> HashMap<String, f64> {
    gauges()
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with(WorkerMetrics::DELIVERIES))
        .map(|(k, v)| (k.clone(), f64::from_bits(v.load(Ordering::SeqCst))))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_namespace_reports_its_own_deliveries() {
    let _ = gauges();
    let db = TestDb::open(Backend::Sqlite, "metrics_namespaces").unwrap();
    let clock = ManualClock::at_secs(T0);
    let open = |namespace: &'static str| {
        let (url, clock) = (db.url.clone(), clock.clone());
        async move {
            Inbox::builder()
                .namespace(namespace)
                .clock(clock)
                .connect(&url)
                .await
                .unwrap()
        }
    };
    let (a, b) = (open("tenant_a").await, open("tenant_b").await);
    // tenant_a: one delivery, dead at its first failure; tenant_b: two, done.
    deliver(&a, &clock, "evt_a").await;
    deliver(&b, &clock, "evt_b1").await;
    deliver(&b, &clock, "evt_b2").await;
    let metrics = WorkerMetrics::new();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut workers = Vec::new();
    for inbox in [&a, &b] {
        let fails = inbox.namespace() == "tenant_a";
        let worker =
            inbox
                .worker(move |_d: Delivery| async move {
                    if fails { Err("import failed") } else { Ok(()) }
                })
                .max_attempts(1)
                .poll_interval(Duration::from_millis(20))
                .observer(metrics.clone());
        let mut stopped = stopped.clone();
        workers.push(tokio::spawn(worker.run_until(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })));
    }
    // The workers count at start, then every 15 s: wait for both to have processed,
    // then stop them and count once more with fresh workers.
    eventually("both namespaces processed", || async {
        let (ca, cb) = (a.counts().await.unwrap(), b.counts().await.unwrap());
        ca.get(&mapping_webhooks_inbox::State::Dead) == Some(&1)
            && cb.get(&mapping_webhooks_inbox::State::Done) == Some(&2)
    })
    .await;
    stop.send(true).unwrap();
    for worker in workers.drain(..) {
        worker.await.unwrap().unwrap();
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    for inbox in [&a, &b] {
        let worker = inbox
            .worker(|_d: Delivery| async { Ok::<(), String>(()) })
            .observer(metrics.clone());
        let mut stopped = stopped.clone();
        workers.push(tokio::spawn(worker.run_until(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })));
    }
    let key = |ns: &str, state: &str| {
        format!(
            "{}{{namespace={ns},state={state}}}",
            WorkerMetrics::DELIVERIES
        )
    };
    let wanted = [
        (key("tenant_a", "dead"), 1.0),
        (key("tenant_a", "done"), 0.0),
        (key("tenant_b", "dead"), 0.0),
        (key("tenant_b", "done"), 2.0),
    ];
    let seen = || {
        let now = deliveries();
        wanted
            .iter()
            .map(|(k, _)| now.get(k).copied())
            .collect::<Vec<_>>()
    };
    for _ in 0..300 {
        if seen() == wanted.iter().map(|(_, v)| Some(*v)).collect::<Vec<_>>() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    for worker in workers {
        worker.await.unwrap().unwrap();
    }
    assert_eq!(
        seen(),
        wanted.iter().map(|(_, v)| Some(*v)).collect::<Vec<_>>(),
        "every deliveries series: {:?}",
        deliveries()
    );
}
