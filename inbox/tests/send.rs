//! Every public future of the inbox is `Send`: each is spawned on a multi-threaded
//! runtime (`tokio::spawn` needs `Send`), against a real SQLite file. This file not
//! compiling is the failure.

mod support;

use std::time::Duration;

use mapping_webhooks::{Clock, SystemClock};
use mapping_webhooks_inbox::{Acceptance, Delivery, Inbox, State, UnsignedHeaders};
use support::{Backend, SECRET, TestDb, envelope, sign};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_public_future_is_send() {
    let db = TestDb::open(Backend::Sqlite, "send").unwrap();
    let url = db.url.clone();
    let inbox =
        tokio::spawn(async move { Inbox::builder(SECRET).expect("secret").connect(&url).await })
            .await
            .unwrap()
            .expect("connect");
    let pool = inbox.db().clone();
    let again =
        tokio::spawn(async move { Inbox::builder(SECRET).expect("secret").pool(pool).await })
            .await
            .unwrap()
            .expect("pool");

    let body = envelope("evt_send", "del_send");
    let header = sign(SECRET, &body, SystemClock.now_secs());
    let (i, b, h) = (inbox.clone(), body.clone(), header.clone());
    let answer = tokio::spawn(async move {
        i.accept([h.as_bytes()], UnsignedHeaders::default(), &b)
            .await
    })
    .await
    .unwrap();
    let Acceptance::Stored { id } = answer else {
        panic!("{answer:?}")
    };
    let (i, b, h) = (inbox.clone(), body.clone(), header.clone());
    let answer = tokio::spawn(async move {
        let head = i
            .check_head([h.as_bytes()], None, UnsignedHeaders::default())
            .expect("head");
        i.accept_checked(head, h.as_bytes(), UnsignedHeaders::default(), &b)
            .await
    })
    .await
    .unwrap();
    assert_eq!(answer, Acceptance::Duplicate);

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
    assert!(spawned!(i => i.reverify(id)).is_ok());
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
