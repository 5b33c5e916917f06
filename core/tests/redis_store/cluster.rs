//! The store on a real 3-master Redis Cluster (see `cluster_server.rs`): the protocol,
//! keys spread over the masters, concurrent replicas, scripts flushed (`NOSCRIPT`), a slot
//! moved under the store (`ASK`, then `MOVED`), and a frozen master (timeouts, bounded).
//! One cluster for all of it: starting one takes a few seconds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mapping_webhooks::{Begin, DedupStore, RedisStore, StoreError};
use redis::AsyncCommands;

use super::claim_of;
use super::cluster_server::RedisCluster;

const PREFIX: &str = "mapping-webhooks:";

/// The port of the master holding `key` (the store's key, without the prefix).
fn holder(cluster: &RedisCluster, key: &str) -> u16 {
    let full = format!("{PREFIX}{key}");
    let holders: Vec<u16> = cluster
        .masters()
        .into_iter()
        .filter(|&port| cluster.cli(port, &["EXISTS", &full]).trim() == "1")
        .collect();
    assert_eq!(holders.len(), 1, "{full} held by {holders:?}");
    holders[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_store_on_a_three_master_cluster() {
    let Some(cluster) = RedisCluster::start("the_store_on_a_three_master_cluster", 3, 0) else {
        return;
    };
    let urls = cluster.urls();
    let timeout = Duration::from_millis(500);
    let replica = || async {
        RedisStore::cluster_builder(urls.clone())
            .timeout(timeout)
            .time_to_live(Duration::from_secs(3600))
            .build()
            .await
            .expect("build a RedisStore on the cluster")
    };
    let (a, b) = (replica().await, replica().await);
    assert!(a.is_cluster());
    assert!(format!("{a:?}").contains("cluster"), "{a:?}");
    a.ping().await.expect("ping every node");
    let mut redis = redis::cluster::ClusterClient::new(urls.clone())
        .unwrap()
        .get_async_connection()
        .await
        .expect("connect to the cluster");

    // The protocol, step by step, as on one server.
    let claim = claim_of(a.begin("evt_1").await.unwrap());
    let held: String = redis.get("mapping-webhooks:evt_1").await.unwrap();
    assert_eq!(held, claim.to_string(), "the key holds our claim");
    assert_eq!(b.begin("evt_1").await.unwrap(), Begin::InFlight);
    a.complete("evt_1", claim).await.unwrap();
    assert_eq!(b.begin("evt_1").await.unwrap(), Begin::Done);
    let ttl: i64 = redis.pttl("mapping-webhooks:evt_1").await.unwrap();
    assert!(ttl > 300_000 && ttl <= 3_600_000, "ttl {ttl} ms");
    let first = claim_of(a.begin("evt_2").await.unwrap());
    b.abandon("evt_2", first).await.unwrap();
    let exists: bool = redis.exists("mapping-webhooks:evt_2").await.unwrap();
    assert!(!exists, "abandon left the key behind");

    // Concurrent begins on two replicas, over keys of every master: one New per key.
    const KEYS: usize = 30;
    const TASKS: usize = 40;
    let start = Arc::new(tokio::sync::Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let store = [&a, &b][i % 2].clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let mut news = Vec::new();
                for k in 0..KEYS {
                    if let Begin::New(_) = store.begin(&format!("many_{k}")).await.unwrap() {
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
    // No hash tag: the keys spread over the three masters.
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3, "{masters:?}");
    let mut per_master = HashMap::new();
    for k in 0..KEYS {
        *per_master
            .entry(holder(&cluster, &format!("many_{k}")))
            .or_insert(0) += 1;
    }
    assert_eq!(per_master.len(), 3, "keys per master: {per_master:?}");

    // A master without the scripts (a restarted node, or a promoted replica that never
    // got them) answers NOSCRIPT: the store loads them again and goes on.
    for &port in &masters {
        assert_eq!(cluster.cli(port, &["SCRIPT", "FLUSH"]).trim(), "OK");
    }
    for k in 0..KEYS {
        let key = format!("after_flush_{k}");
        let claim = claim_of(a.begin(&key).await.expect("begin after SCRIPT FLUSH"));
        a.complete(&key, claim)
            .await
            .expect("complete after SCRIPT FLUSH");
        b.abandon(&key, claim)
            .await
            .expect("abandon after SCRIPT FLUSH");
        assert_eq!(b.begin(&key).await.unwrap(), Begin::Done);
    }

    // A slot moved to another master under the store: `ASK` while it migrates, `MOVED`
    // once it has. The two keys share a slot through a hash tag (the test's own choice,
    // to know which slot moves; the gate's keys have none).
    let moving = claim_of(a.begin("moving{slot}").await.unwrap());
    let from = holder(&cluster, "moving{slot}");
    let to = *masters.iter().find(|&&port| port != from).unwrap();
    let slot = cluster
        .cli(
            from,
            &["CLUSTER", "KEYSLOT", "mapping-webhooks:moving{slot}"],
        )
        .trim()
        .to_owned();
    let id = |port: u16| cluster.cli(port, &["CLUSTER", "MYID"]).trim().to_owned();
    let (from_id, to_id) = (id(from), id(to));
    let ok = |answer: String| assert_eq!(answer.trim(), "OK", "{answer}");
    ok(cluster.cli(to, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]));
    ok(cluster.cli(from, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]));
    // A key the old master lacks while the slot migrates: it answers ASK, and the claim
    // is taken on the new master.
    let asked = claim_of(b.begin("asked{slot}").await.unwrap());
    assert_eq!(
        cluster
            .cli(to, &["CLUSTER", "COUNTKEYSINSLOT", &slot])
            .trim(),
        "1",
        "the claim went to the importing master"
    );
    ok(cluster.cli(
        from,
        &[
            "MIGRATE",
            "127.0.0.1",
            &to.to_string(),
            "",
            "0",
            "5000",
            "KEYS",
            "mapping-webhooks:moving{slot}",
        ],
    ));
    for &port in &masters {
        ok(cluster.cli(port, &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]));
    }
    // The store still maps the slot to the old master: it gets MOVED, and follows.
    assert_eq!(a.begin("moving{slot}").await.unwrap(), Begin::InFlight);
    a.complete("moving{slot}", moving).await.unwrap();
    b.complete("asked{slot}", asked).await.unwrap();
    for key in ["moving{slot}", "asked{slot}"] {
        assert_eq!(b.begin(key).await.unwrap(), Begin::Done, "{key}");
        assert_eq!(holder(&cluster, key), to, "{key}");
    }

    // A frozen master (SIGSTOP): calls for its keys end in a timeout, bounded; the other
    // masters' keys still work; once it goes on, so do its keys. A store built on it as
    // its only seed gives up connecting after the timeout.
    let frozen = from;
    let (frozen_key, live_key) = {
        let mut frozen_key = None;
        let mut live_key = None;
        for k in 0..KEYS {
            let key = format!("many_{k}");
            if holder(&cluster, &key) == frozen {
                frozen_key.get_or_insert(key);
            } else {
                live_key.get_or_insert(key);
            }
        }
        (frozen_key.unwrap(), live_key.unwrap())
    };
    cluster.signal(frozen, "-STOP");
    let bounded = Duration::from_secs(10); // catches a hang; not a speed assertion
    // The live master first: once the others mark the frozen one failed (after the node
    // timeout), a cluster without a replica for its slots refuses every key.
    let live = tokio::time::timeout(bounded, b.begin(&live_key))
        .await
        .expect("a begin on a live master hung");
    let answer = tokio::time::timeout(bounded, a.begin(&frozen_key))
        .await
        .expect("a begin hung on a frozen master");
    let built = tokio::time::timeout(
        bounded,
        RedisStore::cluster_builder([format!("redis://127.0.0.1:{frozen}/")])
            .timeout(timeout)
            .build(),
    )
    .await
    .expect("connecting to a frozen seed hung");
    // Readiness asks every master: not ready while one is frozen.
    let pinged = tokio::time::timeout(bounded, a.ping())
        .await
        .expect("a ping hung on a frozen master");
    cluster.signal(frozen, "-CONT");
    assert!(
        matches!(answer, Err(StoreError::Timeout(after)) if after == timeout),
        "{answer:?}"
    );
    // The cluster client reports a node that did not answer in time as an I/O error
    // ("Failed to create initial connections - Io: timed out"), or our own timeout ends
    // the wait first: either way an error, bounded.
    assert!(
        matches!(built, Err(StoreError::Timeout(_) | StoreError::Backend(_))),
        "built on a frozen seed: {built:?}"
    );
    assert_eq!(
        live.unwrap(),
        Begin::InFlight,
        "{live_key} on a live master"
    );
    assert!(pinged.is_err(), "ready with a master frozen: {pinged:?}");
    // Bounded by count and time; the last answer is shown if it never recovers.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut last = a.begin(&frozen_key).await;
    while last.is_err() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(25)).await;
        last = a.begin(&frozen_key).await;
    }
    assert!(
        matches!(last, Ok(Begin::InFlight)),
        "{frozen_key} after SIGCONT: {last:?}"
    );
}

/// A `complete` sent to a master that dies before running it (frozen, then killed, the
/// command still in its socket), after the claim reached its replica: once the replica
/// is promoted, the store sends the `complete` again, so the event ends done rather
/// than held by a claim nobody will complete (409 for the whole lease, then run again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complete_lost_with_its_master_is_sent_again_to_the_promoted_replica() {
    let Some(mut cluster) =
        RedisCluster::start("a_complete_lost_with_its_master_is_sent_again", 3, 1)
    else {
        return;
    };
    let timeout = Duration::from_millis(500);
    let store = RedisStore::cluster_builder(cluster.urls())
        .timeout(timeout)
        .build()
        .await
        .expect("build a RedisStore on the cluster");
    let claim = claim_of(store.begin("lost_complete").await.unwrap());
    let master = holder(&cluster, "lost_complete");
    let replica = cluster.replica_of(master).expect("a replica");
    // The claim is on the replica too (the only key of this cluster).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cluster.cli(replica, &["DBSIZE"]).trim() != "1" {
        assert!(
            std::time::Instant::now() < deadline,
            "the claim never replicated"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    cluster.signal(master, "-STOP");
    let completed = store.complete("lost_complete", claim).await;
    assert!(
        matches!(completed, Err(StoreError::Timeout(after)) if after == timeout),
        "{completed:?}"
    );
    cluster.kill(master);
    cluster.wait_until_ok(Duration::from_secs(20));
    assert!(
        cluster.masters().contains(&replica),
        "the replica took over"
    );

    // A copy of the event, on the promoted replica: in flight until the store's own
    // `complete` lands there, then done; never processed again.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut answers = Vec::new();
    loop {
        let answer = store.begin("lost_complete").await;
        if !matches!(answers.last(), Some(last) if format!("{last:?}") == format!("{answer:?}")) {
            answers.push(answer);
        }
        match answers.last() {
            Some(Ok(Begin::Done)) => break,
            Some(Ok(Begin::New(_))) => panic!("processed a second time: {answers:?}"),
            _ => {}
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the event never became done on the promoted replica: answers {answers:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
