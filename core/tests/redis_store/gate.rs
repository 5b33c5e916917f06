//! Two gates sharing one Redis, as two replicas behind a load balancer would.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mapping_webhooks::adapter::Ticket;
use mapping_webhooks::{
    Admission, DedupStore, Gate, LEASE_RANGE, OnStoreError, RedisStore, Reply, Secret, Signer,
    UnsignedHeaders,
};

use super::server::RedisServer;
use super::{eventually, store_on};

const SECRET: &str = "whsec_redis_replicas_0123456789abcdef";

fn body(event_id: &str) -> Vec<u8> {
    format!(r#"{{"id":"del_1","eventId":"{event_id}","type":"mapping.completed","data":{{}}}}"#)
        .into_bytes()
}

/// One copy of the delivery, freshly signed as each sender attempt is.
async fn deliver<D: DedupStore>(gate: &Gate<D>, body: &[u8]) -> Admission<D> {
    let header = Signer::new(Secret::new(SECRET).unwrap()).sign_now(body);
    gate.admit([header.as_bytes()], UnsignedHeaders::default(), body)
        .await
}

fn ticket_of<D: DedupStore>(admission: Admission<D>) -> Ticket<D> {
    match admission {
        Admission::Process { ticket, .. } => ticket,
        Admission::Reply(reply) => panic!("replied {} {}", reply.status(), reply.reason()),
    }
}

fn reply_of<D: DedupStore>(admission: Admission<D>) -> Reply {
    match admission {
        Admission::Reply(reply) => reply,
        Admission::Process { verified, .. } => panic!("processed {}", verified.event_id),
    }
}

/// Two replicas: each its own gate and store (own connection), one Redis.
async fn replicas(
    server: &RedisServer,
    lease: Duration,
    policy: OnStoreError,
) -> [Gate<RedisStore>; 2] {
    let mut gates = Vec::new();
    for _ in 0..2 {
        let store = store_on(server, |b| b.lease(lease)).await;
        gates.push(
            Gate::builder()
                .secret(SECRET)
                .namespace("orders")
                .on_store_error(policy)
                .dedup(store)
                .build()
                .unwrap(),
        );
    }
    gates.try_into().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_copies_over_two_replicas_run_the_handler_once() {
    let Some(server) = RedisServer::start("fifty_copies_over_two_replicas") else {
        return;
    };
    let gates = replicas(&server, Duration::from_secs(60), OnStoreError::Reject).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let body = body("evt_fifty");
    let start = Arc::new(tokio::sync::Barrier::new(50));
    let copies: Vec<_> = (0..50)
        .map(|i| {
            let (gate, runs, body, start) = (
                gates[i % 2].clone(),
                runs.clone(),
                body.clone(),
                start.clone(),
            );
            tokio::spawn(async move {
                start.wait().await;
                match deliver(&gate, &body).await {
                    Admission::Process { ticket, .. } => {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        ticket.finish(200).await;
                        200
                    }
                    Admission::Reply(reply) => reply.status(),
                }
            })
        })
        .collect();
    for copy in copies {
        let status = copy.await.unwrap();
        assert!(status == 200 || status == 409, "answered {status}");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "handler runs");
    // The sender's retries of the copies that got 409 are acknowledged on both replicas.
    for gate in &gates {
        assert_eq!(
            reply_of(deliver(gate, &body).await),
            Reply::AlreadyProcessed
        );
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "handler runs");
}

#[tokio::test]
async fn a_failed_attempt_is_retried_on_the_other_replica_once() {
    let Some(server) = RedisServer::start("a_failed_attempt_is_retried_elsewhere") else {
        return;
    };
    let [a, b] = replicas(&server, Duration::from_secs(60), OnStoreError::Reject).await;
    let body = body("evt_retry");
    // Replica A: the handler fails.
    ticket_of(deliver(&a, &body).await).finish(500).await;
    // The retry lands on replica B: processed there.
    let ticket = ticket_of(deliver(&b, &body).await);
    assert!(ticket.is_claimed());
    ticket.finish(200).await;
    // Any further copy, on either replica, is acknowledged without running the handler.
    assert_eq!(reply_of(deliver(&a, &body).await), Reply::AlreadyProcessed);
    assert_eq!(reply_of(deliver(&b, &body).await), Reply::AlreadyProcessed);
}

#[tokio::test]
async fn a_crashed_claimant_lets_a_retry_through_after_the_lease() {
    let Some(server) = RedisServer::start("a_crashed_claimant_lets_a_retry_through") else {
        return;
    };
    let [a, b] = replicas(&server, *LEASE_RANGE.start(), OnStoreError::Reject).await;
    let body = body("evt_crash");
    // Replica A crashes mid-handler: its ticket is neither finished nor dropped.
    std::mem::forget(ticket_of(deliver(&a, &body).await));
    assert_eq!(reply_of(deliver(&b, &body).await), Reply::InFlight);
    let ticket = eventually(Duration::from_secs(10), "lease expiry", || async {
        match deliver(&b, &body).await {
            Admission::Process { ticket, .. } => Some(ticket),
            Admission::Reply(Reply::InFlight) => None,
            Admission::Reply(reply) => panic!("replied {}", reply.status()),
        }
    })
    .await;
    ticket.finish(200).await;
    assert_eq!(reply_of(deliver(&a, &body).await), Reply::AlreadyProcessed);
}

#[tokio::test]
async fn a_dropped_ticket_frees_the_claim_at_once() {
    let Some(server) = RedisServer::start("a_dropped_ticket_frees_the_claim") else {
        return;
    };
    // A lease far longer than the test: only the abandon from `Drop` can free the key.
    let [a, b] = replicas(&server, Duration::from_secs(600), OnStoreError::Reject).await;
    let body = body("evt_dropped");
    // Replica A's handler panics or its future is dropped: the ticket drops unfinished.
    drop(ticket_of(deliver(&a, &body).await));
    let ticket = eventually(Duration::from_secs(10), "abandon from Drop", || async {
        match deliver(&b, &body).await {
            Admission::Process { ticket, .. } => Some(ticket),
            Admission::Reply(Reply::InFlight) => None,
            Admission::Reply(reply) => panic!("replied {}", reply.status()),
        }
    })
    .await;
    ticket.finish(200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_admit_answers_503_or_passes_through() {
    let Some(mut server) = RedisServer::start("with_redis_down_admit_answers_503") else {
        return;
    };
    let [reject, _] = replicas(&server, Duration::from_secs(60), OnStoreError::Reject).await;
    let [pass, _] = replicas(&server, Duration::from_secs(60), OnStoreError::PassThrough).await;
    server.kill();
    let body = body("evt_down");
    let bound = Duration::from_secs(10); // only catches a hang: the store's timeout is 2 s
    let refused = tokio::time::timeout(bound, deliver(&reject, &body))
        .await
        .expect("admit hung with Redis down");
    let refused = reply_of(refused);
    assert_eq!(refused, Reply::StoreUnavailable);
    assert_eq!(refused.status(), 503);
    let passed = tokio::time::timeout(bound, deliver(&pass, &body))
        .await
        .expect("admit hung with Redis down");
    let ticket = ticket_of(passed);
    assert!(!ticket.is_claimed(), "passed through without a claim");
    ticket.finish(200).await;

    // Redis is back: the same gate deduplicates again.
    server.restart();
    let ticket = eventually(Duration::from_secs(20), "reconnect", || async {
        match deliver(&reject, &body).await {
            Admission::Process { ticket, .. } => Some(ticket),
            Admission::Reply(Reply::StoreUnavailable) => None,
            Admission::Reply(reply) => panic!("replied {}", reply.status()),
        }
    })
    .await;
    assert!(ticket.is_claimed());
    ticket.finish(200).await;
    assert_eq!(
        reply_of(deliver(&reject, &body).await),
        Reply::AlreadyProcessed
    );
}

/// The request is dropped (the client went away) while its ticket is finishing and the
/// store's connection is being re-established (Redis closed it, then stalls): the store
/// call goes on in the background, so the event is remembered as done and the next copy
/// is answered 200, not refused with 409 for the whole lease (issue 19).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_dropped_while_finishing_still_completes() {
    let Some(server) = RedisServer::start("a_ticket_dropped_while_finishing_still_completes")
    else {
        return;
    };
    let [gate, _] = replicas(&server, Duration::from_secs(60), OnStoreError::Reject).await;
    let other = body("evt_meanwhile");
    let body = body("evt_dropped_finish");
    let ticket = ticket_of(deliver(&gate, &body).await);

    // Redis drops the store's connection, then stalls (SIGSTOP, as a host swapping or a
    // VM paused would): the manager's reconnection waits for it.
    let mut redis = super::inspector(&server).await;
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("SKIPME")
        .arg("yes")
        .arg("TYPE")
        .arg("normal")
        .query_async::<i64>(&mut redis)
        .await
        .expect("CLIENT KILL");
    server.pause();
    // The next call finds the connection gone (503) and starts the reconnection.
    let meanwhile = reply_of(deliver(&gate, &other).await);
    assert_eq!(meanwhile.status(), 503, "{}", meanwhile.reason());

    // The handler answered 200; the request is dropped while the ticket is finishing.
    let finished = tokio::time::timeout(Duration::from_millis(300), ticket.finish(200)).await;
    assert!(
        finished.is_err(),
        "the store answered during the pause: nothing was tested"
    );
    server.resume();

    // Copies until one is answered as a duplicate: the 409s (and 503s while Redis
    // reconnects) must stop well before the 60 s lease.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut refused = Vec::new();
    while std::time::Instant::now() < deadline {
        match deliver(&gate, &body).await {
            Admission::Reply(reply) if reply.status() == 200 => {
                eprintln!("refused before the duplicate: {refused:?}");
                return;
            }
            Admission::Reply(reply) => refused.push(reply.status()),
            Admission::Process { verified, .. } => {
                panic!("{} processed again", verified.event_id)
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "not remembered as done within 10 s: {} copies refused ({:?}..)",
        refused.len(),
        &refused[..refused.len().min(5)]
    );
}
