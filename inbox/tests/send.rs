//! Every public future of the inbox is `Send`: each is spawned on a multi-threaded
//! runtime (`tokio::spawn` needs `Send`), against a real SQLite file. This file not
//! compiling is the failure.

mod support;

use std::time::Duration;

use mapping_webhooks::{Clock, SystemClock};
use mapping_webhooks::{Gate, Reply};
use mapping_webhooks_inbox::{Delivery, Inbox, State, UnsignedHeaders};
use support::{Backend, SECRET, TestDb, envelope, sign};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_public_future_is_send() {
    let db = TestDb::open(Backend::Sqlite, "send").unwrap();
    let url = db.url.clone();
    let inbox = tokio::spawn(async move { Inbox::builder().connect(&url).await })
        .await
        .unwrap()
        .expect("connect");
    let pool = inbox.db().clone();
    let again = tokio::spawn(async move { Inbox::builder().pool(pool).await })
        .await
        .unwrap()
        .expect("pool");

    let body = envelope("evt_send", "del_send");
    let header = sign(SECRET, &body, SystemClock.now_secs());
    let gate = Gate::builder()
        .secret(SECRET)
        .without_dedup()
        .build()
        .unwrap();
    let (i, b, h, g) = (inbox.clone(), body.clone(), header.clone(), gate.clone());
    let answer = tokio::spawn(async move {
        g.admit_into(&i, [h.as_bytes()], UnsignedHeaders::default(), &b)
            .await
    })
    .await
    .unwrap();
    assert_eq!(answer, Reply::Queued);
    let id = inbox.find("evt_send").await.unwrap().unwrap().info.id;
    let (i, b, h, g) = (inbox.clone(), body.clone(), header.clone(), gate.clone());
    let answer = tokio::spawn(async move {
        g.admit_into(&i, [h.as_bytes()], UnsignedHeaders::default(), &b)
            .await
    })
    .await
    .unwrap();
    assert_eq!(answer, Reply::AlreadyProcessed);

    macro_rules! spawned {
        ($inbox:ident => $call:expr) => {{
            let $inbox = inbox.clone();
            tokio::spawn(async move { $call.await }).await.unwrap()
        }};
    }
    assert_eq!(
        spawned!(i => i.list(State::Pending, 0, 10)).unwrap().len(),
        1
    );
    assert_eq!(spawned!(i => i.counts()).unwrap()[&State::Pending], 1);
    assert_eq!(spawned!(i => i.show(id)).unwrap().info.id, id);
    assert!(spawned!(i => i.find("evt_send")).unwrap().is_some());
    let secrets = gate.secrets().clone();
    assert!(spawned!(i => i.reverify(id, &secrets)).is_ok());
    assert!(spawned!(i => i.replay(id)).unwrap());
    assert_eq!(spawned!(i => i.replay_dead()).unwrap(), 0);
    assert_eq!(spawned!(i => i.prune(Duration::from_secs(1))).unwrap(), 0);
    assert_eq!(spawned!(i => i.purge_state(State::Dead)).unwrap(), 0);

    let worker = inbox.worker(|_d: Delivery| async { Ok::<(), String>(()) });
    assert_eq!(
        tokio::spawn(async move { worker.run_once().await })
            .await
            .unwrap()
            .unwrap(),
        1
    );
    let worker = inbox.worker(|_d: Delivery| async { Ok::<(), String>(()) });
    tokio::spawn(worker.run_until(std::future::ready(())))
        .await
        .unwrap()
        .unwrap();
    let worker = inbox.worker(|_d: Delivery| async { Ok::<(), String>(()) });
    tokio::spawn(worker.run()).abort();
    assert!(spawned!(i => i.purge(id)).unwrap());
    spawned!(i => i.close());
    drop(again);
}
