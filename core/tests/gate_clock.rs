//! `Gate::clock` drives the default store's leases and TTLs, not only the signature
//! window; a store passed with `dedup` keeps its own clock.

use std::time::Duration;

use mapping_webhooks::{
    Admission, Clock, DedupStore, Gate, ManualClock, MemoryStore, Reply, Secret, Signer,
    UnsignedHeaders,
};

const SECRET: &str = "whsec_gate_clock_test_0123456789";
const NOW: u64 = 1_717_250_400;
const BODY: &[u8] = br#"{"id":"del_1","eventId":"evt_1","type":"mapping.completed","data":{}}"#;

/// Admits `BODY` signed at the clock's current time.
async fn admit<D: DedupStore>(gate: &Gate<D>, clock: &ManualClock) -> Admission<D> {
    let header = Signer::new(Secret::new(SECRET).unwrap()).sign(BODY, clock.now_secs());
    gate.admit([header.as_bytes()], UnsignedHeaders::default(), BODY)
        .await
}

fn replied<D: DedupStore>(admission: &Admission<D>) -> Option<&Reply> {
    match admission {
        Admission::Reply(reply) => Some(reply),
        Admission::Process { .. } => None,
    }
}

#[tokio::test]
async fn the_clock_drives_the_default_store_s_lease_and_ttl() {
    let clock = ManualClock::at_secs(NOW);
    let gate = Gate::builder()
        .secret(SECRET)
        .clock(clock.clone())
        .build()
        .unwrap();

    // A claim that is never finished holds the event for its lease (5 minutes)...
    let held = admit(&gate, &clock).await;
    assert!(replied(&held).is_none());
    assert_eq!(replied(&admit(&gate, &clock).await), Some(&Reply::InFlight));
    // ...measured on the manual clock: past it, a retry takes the claim over.
    clock.advance(Duration::from_secs(5 * 60 + 1));
    let Admission::Process { ticket, .. } = admit(&gate, &clock).await else {
        panic!("the lease did not follow the manual clock");
    };
    ticket.finish(200).await;
    assert_eq!(
        replied(&admit(&gate, &clock).await),
        Some(&Reply::AlreadyProcessed)
    );
    // A done event is remembered for the TTL (24 h) of the manual clock, then forgotten.
    clock.advance(Duration::from_secs(24 * 3600 + 1));
    assert!(replied(&admit(&gate, &clock).await).is_none());
    drop(held);
}

#[tokio::test]
async fn a_store_passed_with_dedup_keeps_its_own_clock() {
    let clock = ManualClock::at_secs(NOW);
    let gate = Gate::builder()
        .secret(SECRET)
        .dedup(MemoryStore::new())
        .clock(clock.clone())
        .build()
        .unwrap();
    let held = admit(&gate, &clock).await;
    assert!(replied(&held).is_none());
    clock.advance(Duration::from_secs(5 * 60 + 1));
    // The store's monotonic clock has not moved: the claim still holds.
    assert_eq!(replied(&admit(&gate, &clock).await), Some(&Reply::InFlight));
    drop(held);
}

#[tokio::test]
async fn without_dedup_stays_without_a_store_after_clock() {
    let clock = ManualClock::at_secs(NOW);
    let gate = Gate::builder()
        .secret(SECRET)
        .without_dedup()
        .clock(clock.clone())
        .build()
        .unwrap();
    for _ in 0..2 {
        let Admission::Process { ticket, .. } = admit(&gate, &clock).await else {
            panic!("deduplicated without a store");
        };
        assert!(!ticket.is_claimed());
    }
}
