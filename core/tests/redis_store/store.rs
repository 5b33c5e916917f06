//! The store's protocol, one step at a time, then under concurrency and faults.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mapping_webhooks::{Begin, DedupStore, LEASE_RANGE, RedisStore, StoreError, TTL_RANGE};
use redis::AsyncCommands;

use super::server::RedisServer;
use super::{claim_of, eventually, inspector, pause_clients, store_on};

#[tokio::test]
async fn begin_complete_abandon() {
    let Some(server) = RedisServer::start("begin_complete_abandon") else {
        return;
    };
    let store = store_on(&server, |b| b.time_to_live(Duration::from_secs(3600))).await;
    let mut redis = inspector(&server).await;

    let claim = claim_of(store.begin("evt_1").await.unwrap());
    let held: String = redis.get("mapping-webhooks:evt_1").await.unwrap();
    assert_eq!(held, claim.to_string(), "the key holds our claim");
    let lease: i64 = redis.pttl("mapping-webhooks:evt_1").await.unwrap();
    assert!(lease > 0 && lease <= 300_000, "lease {lease} ms");
    assert_eq!(store.begin("evt_1").await.unwrap(), Begin::InFlight);

    store.complete("evt_1", claim).await.unwrap();
    assert_eq!(store.begin("evt_1").await.unwrap(), Begin::Done);
    let done: String = redis.get("mapping-webhooks:evt_1").await.unwrap();
    assert_eq!(done, "done");
    let ttl: i64 = redis.pttl("mapping-webhooks:evt_1").await.unwrap();
    assert!(ttl > 300_000 && ttl <= 3_600_000, "ttl {ttl} ms");

    // A failed attempt frees the key: the retry gets a new claim.
    let first = claim_of(store.begin("evt_2").await.unwrap());
    store.abandon("evt_2", first).await.unwrap();
    let exists: bool = redis.exists("mapping-webhooks:evt_2").await.unwrap();
    assert!(!exists, "abandon left the key behind");
    let retry = claim_of(store.begin("evt_2").await.unwrap());
    assert_ne!(retry, first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_one_new_among_concurrent_begins_on_two_replicas() {
    let Some(server) = RedisServer::start("exactly_one_new_among_concurrent_begins") else {
        return;
    };
    // Two stores, each with its own connection: two replicas.
    let replicas = [
        store_on(&server, |b| b).await,
        store_on(&server, |b| b).await,
    ];
    const KEYS: usize = 20;
    const TASKS: usize = 50;
    let start = Arc::new(tokio::sync::Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let store = replicas[i % 2].clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let mut news = Vec::new();
                for k in 0..KEYS {
                    if let Begin::New(_) = store.begin(&format!("evt_{k}")).await.unwrap() {
                        news.push(k);
                    }
                }
                news
            })
        })
        .collect();
    let mut claimed = HashMap::new();
    for task in tasks {
        for k in task.await.unwrap() {
            *claimed.entry(k).or_insert(0) += 1;
        }
    }
    assert_eq!(claimed.len(), KEYS, "every key claimed");
    assert!(
        claimed.values().all(|&n| n == 1),
        "a key claimed more than once: {claimed:?}"
    );
}

#[tokio::test]
async fn a_late_abandon_or_complete_cannot_touch_someone_elses_claim() {
    let Some(server) = RedisServer::start("a_late_abandon_cannot_free_someone_elses_claim") else {
        return;
    };
    let store = store_on(&server, |b| b.lease(*LEASE_RANGE.start())).await;
    let old = claim_of(store.begin("evt").await.unwrap());
    // The first claimant stalls past its lease; a retry takes the event over.
    let new = eventually(Duration::from_secs(10), "lease expiry", || async {
        match store.begin("evt").await.unwrap() {
            Begin::New(claim) => Some(claim),
            _ => None,
        }
    })
    .await;
    // It wakes up and gives up: the retry's claim must survive.
    store.abandon("evt", old).await.unwrap();
    assert_eq!(store.begin("evt").await.unwrap(), Begin::InFlight);
    // The retry fails: its abandon frees the key.
    store.abandon("evt", new).await.unwrap();
    let newest = claim_of(store.begin("evt").await.unwrap());
    // The stalled claimant's late complete must not mark the newest attempt done.
    store.complete("evt", old).await.unwrap();
    assert_eq!(store.begin("evt").await.unwrap(), Begin::InFlight);
    store.complete("evt", newest).await.unwrap();
    assert_eq!(store.begin("evt").await.unwrap(), Begin::Done);
    // And nobody's late abandon forgets a done event.
    for claim in [old, new, newest] {
        store.abandon("evt", claim).await.unwrap();
    }
    assert_eq!(store.begin("evt").await.unwrap(), Begin::Done);
}

#[tokio::test]
async fn an_expired_lease_lets_a_retry_through() {
    let Some(server) = RedisServer::start("an_expired_lease_lets_a_retry_through") else {
        return;
    };
    let store = store_on(&server, |b| b.lease(*LEASE_RANGE.start())).await;
    let crashed = claim_of(store.begin("evt").await.unwrap());
    assert_eq!(store.begin("evt").await.unwrap(), Begin::InFlight);
    let retry = eventually(Duration::from_secs(10), "lease expiry", || async {
        match store.begin("evt").await.unwrap() {
            Begin::New(claim) => Some(claim),
            Begin::InFlight => None,
            Begin::Done => panic!("a claim that was never completed became done"),
        }
    })
    .await;
    assert_ne!(retry, crashed);
}

#[tokio::test]
async fn done_events_are_forgotten_after_the_ttl() {
    let Some(server) = RedisServer::start("done_events_are_forgotten_after_the_ttl") else {
        return;
    };
    let store = store_on(&server, |b| b.time_to_live(*TTL_RANGE.start())).await;
    let claim = claim_of(store.begin("evt").await.unwrap());
    store.complete("evt", claim).await.unwrap();
    assert_eq!(store.begin("evt").await.unwrap(), Begin::Done);
    eventually(Duration::from_secs(10), "ttl expiry", || async {
        match store.begin("evt").await.unwrap() {
            Begin::New(_) => Some(()),
            Begin::Done => None,
            Begin::InFlight => panic!("a done event went back in flight"),
        }
    })
    .await;
}

#[tokio::test]
async fn prefixes_keep_stores_apart() {
    let Some(server) = RedisServer::start("prefixes_keep_stores_apart") else {
        return;
    };
    let default = store_on(&server, |b| b).await;
    let a = store_on(&server, |b| b.prefix("app-a:")).await;
    let b = store_on(&server, |b| b.prefix("app-b:")).await;
    assert_eq!(default.prefix(), "mapping-webhooks:");
    for store in [&default, &a, &b] {
        claim_of(store.begin("evt").await.unwrap());
    }
    let mut redis = inspector(&server).await;
    let mut keys: Vec<String> = redis.keys("*").await.unwrap();
    keys.sort();
    assert_eq!(keys, ["app-a:evt", "app-b:evt", "mapping-webhooks:evt"]);
}

/// Each of the three calls, for the fault test.
async fn each_call(store: &RedisStore) -> [Result<(), StoreError>; 3] {
    let claim = mapping_webhooks::Claim::random();
    [
        store.begin("evt_x").await.map(|_| ()),
        store.complete("evt_x", claim).await,
        store.abandon("evt_x", claim).await,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_redis_fails_fast_and_a_restarted_one_works_again() {
    let Some(mut server) = RedisServer::start("a_dead_redis_fails_fast") else {
        return;
    };
    let timeout = Duration::from_millis(500);
    let store = store_on(&server, |b| b.timeout(timeout)).await;
    let claim = claim_of(store.begin("evt").await.unwrap());

    server.kill();
    // Every call answers an error, bounded by the timeout (the outer bound only catches a
    // hang; it is not a speed assertion), and keeps doing so while Redis is away.
    for round in 0..3 {
        let results = tokio::time::timeout(timeout * 3 + Duration::from_secs(5), each_call(&store))
            .await
            .expect("a call hung with Redis down");
        for result in results {
            match result {
                Err(StoreError::Timeout(after)) => assert_eq!(after, timeout),
                Err(StoreError::Backend(_)) => {}
                Err(other) => panic!("round {round}: unexpected error {other:?}"),
                Ok(()) => panic!("round {round}: a call succeeded with Redis down"),
            }
        }
    }

    // Same port, same store object: it reconnects by itself.
    server.restart();
    let after_restart = eventually(Duration::from_secs(20), "reconnect", || async {
        store.begin("evt").await.ok()
    })
    .await;
    // Without persistence the restarted server forgot the claim (see the module docs).
    let retry = claim_of(after_restart);
    assert_ne!(retry, claim);
    store.complete("evt", retry).await.unwrap();
    assert_eq!(store.begin("evt").await.unwrap(), Begin::Done);
}

/// `ping`, a readiness check: Ok while Redis runs; an error (bounded by the store's
/// timeout) once it is killed, and while it is frozen; Ok again once it is back, on the
/// same store object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_follows_the_server_down_frozen_and_back() {
    let Some(mut server) = RedisServer::start("ping_follows_the_server") else {
        return;
    };
    let timeout = Duration::from_millis(500);
    let store = store_on(&server, |b| b.timeout(timeout)).await;
    store.ping().await.expect("ping a running redis-server");
    // The outer bound only catches a hang; it is not a speed assertion.
    let bounded = Duration::from_secs(10);

    // Frozen (SIGSTOP): no answer, so the store's timeout ends the ping.
    server.pause();
    let frozen = tokio::time::timeout(bounded, store.ping())
        .await
        .expect("ping hung on a frozen Redis");
    server.resume();
    assert!(
        matches!(frozen, Err(StoreError::Timeout(after)) if after == timeout),
        "{frozen:?}"
    );
    eventually(Duration::from_secs(20), "ping after SIGCONT", || async {
        store.ping().await.ok()
    })
    .await;

    server.kill();
    for round in 0..3 {
        let result = tokio::time::timeout(bounded, store.ping())
            .await
            .expect("ping hung with Redis down");
        match result {
            Err(StoreError::Timeout(after)) => assert_eq!(after, timeout),
            Err(StoreError::Backend(error)) => {
                assert!(!error.to_string().contains(&server.url()), "{error}");
            }
            other => panic!("round {round}: ping with Redis down gave {other:?}"),
        }
    }

    // Same port, same store object: ready again once it reconnects.
    server.restart();
    eventually(Duration::from_secs(20), "ping after a restart", || async {
        store.ping().await.ok()
    })
    .await;
    store.ping().await.expect("ping once reconnected");
}

#[tokio::test]
async fn credentials_never_show() {
    const PASSWORD: &str = "hunter2-s3cr3t";
    let Some(mut server) = RedisServer::start_with_password("credentials_never_show", PASSWORD)
    else {
        return;
    };
    let store = store_on(&server, |b| b).await;
    assert!(!format!("{store:?}").contains(PASSWORD));
    claim_of(store.begin("evt").await.unwrap());

    // A wrong password: the error names the problem, not the password tried.
    let wrong = "not-the-password-77";
    let url = server.url().replace(PASSWORD, wrong);
    let builder = RedisStore::builder(url).timeout(Duration::from_millis(500));
    assert!(!format!("{builder:?}").contains(wrong));
    let error = builder
        .build()
        .await
        .expect_err("a wrong password was accepted");
    for shown in [error.to_string(), format!("{error:?}")] {
        assert!(!shown.contains(wrong), "{shown}");
        assert!(!shown.contains(PASSWORD), "{shown}");
    }

    // A server gone: the errors of the running store, and of a new one, stay clean.
    server.kill();
    let mut errors: Vec<StoreError> = each_call(&store)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect();
    assert_eq!(errors.len(), 3, "calls succeeded with Redis down");
    errors.push(
        RedisStore::builder(server.url())
            .timeout(Duration::from_millis(500))
            .build()
            .await
            .expect_err("built against a dead server"),
    );
    errors.push(
        RedisStore::builder(format!("redis://:{PASSWORD}@127.0.0.1:notaport/"))
            .build()
            .await
            .expect_err("built with an invalid URL"),
    );
    for error in errors {
        for shown in [error.to_string(), format!("{error:?}")] {
            assert!(!shown.contains(PASSWORD), "{shown}");
        }
    }
}

/// Memory per key, as the module docs state it: measured, and bounded here so the docs
/// stay true.
#[tokio::test]
async fn memory_per_key() {
    let Some(server) = RedisServer::start("memory_per_key") else {
        return;
    };
    let store = store_on(&server, |b| b).await;
    let mut redis = inspector(&server).await;
    let event = "evt_01JD6Q8K3M2X9V7T5R4P1N0B8C"; // a typical 30-character id
    let claim = claim_of(store.begin(event).await.unwrap());
    let key = format!("mapping-webhooks:{event}");
    let memory = |redis: &mut redis::aio::MultiplexedConnection| {
        let mut redis = redis.clone();
        let key = key.clone();
        async move {
            redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(&key)
                .query_async::<u64>(&mut redis)
                .await
                .unwrap()
        }
    };
    let in_flight = memory(&mut redis).await;
    store.complete(event, claim).await.unwrap();
    let done = memory(&mut redis).await;
    eprintln!("MEMORY USAGE of {key}: in flight {in_flight} bytes, done {done} bytes");
    assert!(in_flight <= 160, "in flight: {in_flight} bytes");
    assert!(done <= 160, "done: {done} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_times_out_and_recovers_when_it_answers_again() {
    let Some(server) = RedisServer::start("a_hung_redis_times_out") else {
        return;
    };
    let timeout = Duration::from_millis(300);
    let store = store_on(&server, |b| b.timeout(timeout)).await;
    let claim = claim_of(store.begin("evt").await.unwrap());
    server.pause();
    let results = tokio::time::timeout(timeout * 3 + Duration::from_secs(5), each_call(&store))
        .await
        .expect("a call hung with Redis frozen");
    for result in results {
        match result {
            Err(StoreError::Timeout(after)) => assert_eq!(after, timeout),
            other => panic!("expected a timeout, got {other:?}"),
        }
    }
    server.resume();
    // The same connection answers again, and the claim taken before is still there.
    let found = eventually(Duration::from_secs(10), "answers again", || async {
        store.begin("evt").await.ok()
    })
    .await;
    assert_eq!(found, Begin::InFlight);
    store.complete("evt", claim).await.unwrap();
    assert_eq!(store.begin("evt").await.unwrap(), Begin::Done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outage_outlasting_the_reconnect_retries_still_recovers() {
    let Some(mut server) = RedisServer::start("a_long_outage_still_recovers") else {
        return;
    };
    let store = store_on(&server, |b| b.timeout(Duration::from_millis(500))).await;
    claim_of(store.begin("evt").await.unwrap());
    server.kill();
    // Longer than the connection manager's retries (at most about 3.5 s with its backoff
    // capped at 1 s): it gives up, and the next call must start reconnecting again.
    for _ in 0..12 {
        assert!(store.begin("evt").await.is_err(), "Redis is down");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    server.restart();
    eventually(Duration::from_secs(20), "reconnect", || async {
        store.begin("evt").await.ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lazy_store_starts_without_redis_and_works_once_it_is_up() {
    let Some(mut server) = RedisServer::start("a_lazy_store_starts_without_redis") else {
        return;
    };
    server.kill();
    let store = RedisStore::builder(server.url())
        .timeout(Duration::from_millis(500))
        .build_lazy()
        .expect("a lazy store builds without Redis");
    assert!(store.begin("evt").await.is_err(), "Redis is down");
    server.restart();
    // Up: the scripts were never loaded on this server, the first call loads them.
    let claim = eventually(Duration::from_secs(20), "connect", || async {
        store.begin("evt").await.ok()
    })
    .await;
    store.complete("evt", claim_of(claim)).await.unwrap();
    assert_eq!(store.begin("evt").await.unwrap(), Begin::Done);
}

#[test]
fn build_lazy_outside_a_runtime_is_an_error_not_a_panic() {
    let error = RedisStore::builder("redis://127.0.0.1:1/")
        .build_lazy()
        .expect_err("no runtime");
    assert!(error.to_string().contains("tokio runtime"), "{error}");
}

/// What a retry gets while a claim left behind (or not) by an interrupted `begin` is in
/// the way: `Some` once it is processed.
async fn retry_processed(store: &RedisStore, key: &str) -> Option<mapping_webhooks::Claim> {
    match store.begin(key).await {
        Ok(Begin::New(claim)) => Some(claim),
        Ok(Begin::InFlight) | Err(_) => None,
        Ok(Begin::Done) => panic!("an event nobody completed is done"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_begin_that_timed_out_releases_the_claim_it_was_taking() {
    let Some(server) = RedisServer::start("a_begin_that_timed_out_releases_its_claim") else {
        return;
    };
    let timeout = Duration::from_millis(200);
    // A lease far longer than the test: only the release can let the retry through.
    let lease = Duration::from_secs(60);
    let store = store_on(&server, |b| b.timeout(timeout).lease(lease)).await;
    let mut redis = inspector(&server).await;

    // The server holds our script past the timeout, then runs it: it takes a claim that
    // nobody was told about.
    pause_clients(&mut redis, Duration::from_millis(1500)).await;
    match store.begin("evt").await {
        Err(StoreError::Timeout(after)) => assert_eq!(after, timeout),
        other => panic!("expected a timeout, got {other:?}"),
    }
    // The sender's retry is processed once the server answers again, not after the lease.
    let retry = eventually(Duration::from_secs(15), "the retry is processed", || {
        retry_processed(&store, "evt")
    })
    .await;
    let held: String = redis.get("mapping-webhooks:evt").await.unwrap();
    assert_eq!(held, retry.to_string(), "the key holds the retry's claim");
    store.complete("evt", retry).await.unwrap();
    assert_eq!(store.begin("evt").await.unwrap(), Begin::Done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_begin_dropped_mid_call_releases_the_claim_it_was_taking() {
    let Some(server) = RedisServer::start("a_begin_dropped_mid_call_releases_its_claim") else {
        return;
    };
    // The store would wait 5 s; the caller (a request cancelled by its client, a
    // framework's own timeout) gives up after 200 ms and drops the call.
    let store = store_on(&server, |b| {
        b.timeout(Duration::from_secs(5))
            .lease(Duration::from_secs(60))
    })
    .await;
    let mut redis = inspector(&server).await;

    pause_clients(&mut redis, Duration::from_millis(1500)).await;
    tokio::time::timeout(Duration::from_millis(200), store.begin("evt"))
        .await
        .expect_err("begin answered while the server was paused");
    let retry = eventually(Duration::from_secs(15), "the retry is processed", || {
        retry_processed(&store, "evt")
    })
    .await;
    let held: String = redis.get("mapping-webhooks:evt").await.unwrap();
    assert_eq!(held, retry.to_string(), "the key holds the retry's claim");
}

#[tokio::test]
async fn leases_and_ttls_out_of_range_are_refused_before_connecting() {
    use mapping_webhooks::ConfigError;
    // Nothing listens on port 1: the builder refuses before it tries to connect.
    let builder = || RedisStore::builder("redis://127.0.0.1:1/");
    let huge = Duration::MAX;
    let cases = [
        (
            builder().lease(Duration::ZERO),
            ConfigError::Lease(Duration::ZERO),
        ),
        (builder().lease(huge), ConfigError::Lease(huge)),
        (
            builder().lease(*LEASE_RANGE.end() + Duration::from_millis(1)),
            ConfigError::Lease(*LEASE_RANGE.end() + Duration::from_millis(1)),
        ),
        (
            builder().time_to_live(Duration::ZERO),
            ConfigError::TimeToLive(Duration::ZERO),
        ),
        (builder().time_to_live(huge), ConfigError::TimeToLive(huge)),
    ];
    for (configured, expected) in cases {
        match configured.build().await {
            Err(StoreError::Config(error)) => assert_eq!(error, expected),
            other => panic!("expected {expected:?}, got {other:?}"),
        }
    }
    match builder().lease(Duration::ZERO).build_lazy() {
        Err(StoreError::Config(ConfigError::Lease(lease))) => assert_eq!(lease, Duration::ZERO),
        other => panic!("build_lazy accepted a zero lease: {other:?}"),
    }
    match builder().time_to_live(huge).build_lazy() {
        Err(StoreError::Config(ConfigError::TimeToLive(ttl))) => assert_eq!(ttl, huge),
        other => panic!("build_lazy accepted a huge TTL: {other:?}"),
    }
}

#[tokio::test]
async fn the_edges_of_the_lease_and_ttl_ranges_work() {
    let Some(server) = RedisServer::start("the_edges_of_the_lease_and_ttl_ranges_work") else {
        return;
    };
    let mut redis = inspector(&server).await;
    let edges = [
        (*LEASE_RANGE.start(), *TTL_RANGE.start()),
        (*LEASE_RANGE.end(), *TTL_RANGE.end()),
    ];
    for (lease, ttl) in edges {
        let store = store_on(&server, |b| b.lease(lease).time_to_live(ttl)).await;
        let key = format!("evt_{}", lease.as_secs());
        let redis_key = format!("mapping-webhooks:{key}");
        let claim = claim_of(store.begin(&key).await.unwrap());
        let left: u64 = redis.pttl(&redis_key).await.unwrap();
        let lease_ms = u64::try_from(lease.as_millis()).unwrap();
        assert!(
            left <= lease_ms && left + 10_000 > lease_ms,
            "lease {lease:?}: {left} ms left"
        );
        store.complete(&key, claim).await.unwrap();
        let left: u64 = redis.pttl(&redis_key).await.unwrap();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap();
        assert!(
            left <= ttl_ms && left + 10_000 > ttl_ms,
            "ttl {ttl:?}: {left} ms left"
        );
        assert_eq!(store.begin(&key).await.unwrap(), Begin::Done);
    }
}
