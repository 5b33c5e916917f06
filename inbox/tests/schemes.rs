//! Every signature scheme through the inbox, on both databases: stored with its signed
//! headers, verified again by `reverify` long after its window, and handed to a worker's
//! handler as the scheme's event.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mapping_webhooks::adapter::RequestHead;
use mapping_webhooks::scheme::Scheme;
use mapping_webhooks::{Gate, ManualClock, Reply, Secret, Secrets};
use mapping_webhooks_inbox::{Delivery, Inbox, State};
use support::{Backend, T0, TestDb, deliver_stored, envelope, eventually};

on_both!(
    every_scheme_is_stored_reverified_and_handed_to_the_worker,
    a_row_stored_before_schemes_reads_as_mapping_travel,
);

/// `whsec_` and base64: usable by every scheme.
const SCHEME_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A request head holding the headers a scheme's sender sent.
struct Head(Vec<(&'static str, String)>);

impl RequestHead for Head {
    fn header_values<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_bytes())
    }

    fn path(&self) -> &str {
        "/inbox"
    }

    fn host(&self) -> Option<&str> {
        None
    }
}

/// A body the scheme's sender could send, with `id` where the scheme reads it, and the
/// event type the scheme reads for it.
fn body(scheme: Scheme, id: &str) -> (Vec<u8>, &'static str) {
    match scheme {
        Scheme::Mapping => (envelope(id, "del_1"), "mapping.completed"),
        Scheme::Stripe => (
            format!(r#"{{"id":"{id}","object":"event","type":"invoice.paid"}}"#).into_bytes(),
            "invoice.paid",
        ),
        Scheme::Slack => (
            format!(r#"{{"event_id":"{id}","type":"event_callback"}}"#).into_bytes(),
            "event_callback",
        ),
        // The id is a header; GitHub's and Shopify's type headers are not sent here.
        _ => (format!(r#"{{"ref":"{id}"}}"#).into_bytes(), ""),
    }
}

async fn store(inbox: &Inbox, clock: &ManualClock, scheme: Scheme, id: &str) -> Reply {
    let gate = Gate::builder()
        .scheme(scheme)
        .secret(SCHEME_SECRET)
        .clock(clock.clone())
        .without_dedup()
        .build()
        .expect("gate");
    let (body, _) = body(scheme, id);
    let head = Head(
        scheme
            .sign(&Secret::new(SCHEME_SECRET).unwrap(), id, T0, &body)
            .unwrap(),
    );
    let mut intake = match gate.intake(&head).await {
        Ok(intake) => intake,
        Err(reply) => return reply,
    };
    intake.push(bytes::Bytes::from(body)).unwrap();
    intake.admit_into(inbox).await
}

async fn every_scheme_is_stored_reverified_and_handed_to_the_worker(backend: Backend) {
    let Some(db) = TestDb::open(backend, "schemes") else {
        return;
    };
    let clock = ManualClock::at_secs(T0);
    let inbox = db.inbox(&clock).await;
    let ids: Vec<(Scheme, String)> = Scheme::ALL
        .into_iter()
        .map(|s| (s, format!("evt_{}_{}", s.name(), std::process::id())))
        .collect();
    for (scheme, id) in &ids {
        let reply = store(&inbox, &clock, *scheme, id).await;
        assert_eq!(reply, Reply::Queued, "{scheme}: {}", reply.reason());
        assert_eq!(
            store(&inbox, &clock, *scheme, id).await,
            Reply::AlreadyProcessed,
            "{scheme}: the same event again"
        );
    }
    // Long after every window, each stored row verifies again by its own scheme.
    clock.advance(Duration::from_secs(90 * 24 * 3600));
    let secrets = Secrets::new(Secret::new(SCHEME_SECRET).unwrap());
    let other = Secrets::new(Secret::new("whsec_c3RyYW5nZXJfc3RyYW5nZXJfc3RyYW5nZXI=").unwrap());
    for (scheme, id) in &ids {
        let stored = inbox.find(id).await.unwrap().expect("stored");
        assert_eq!(stored.info.scheme, *scheme);
        let verified = inbox
            .reverify(stored.info.id, &secrets)
            .await
            .unwrap_or_else(|e| panic!("{scheme}: {e}"));
        assert_eq!(
            (
                verified.scheme,
                verified.event_id.as_str(),
                verified.event_type.as_str()
            ),
            (*scheme, id.as_str(), body(*scheme, id).1),
        );
        assert_eq!(verified.signed_at(), scheme.has_timestamp().then_some(T0));
        assert!(
            inbox.reverify(stored.info.id, &other).await.is_err(),
            "{scheme}: another secret does not verify it"
        );
    }
    // The worker hands each to the handler as that scheme's event, with its raw body.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let worker = inbox
        .worker(move |d: Delivery| {
            let verified = d.verified();
            record.lock().unwrap().push((
                d.scheme,
                verified.scheme,
                verified.event_id.clone(),
                verified.event_type.clone(),
                d.body().to_vec(),
            ));
            async { Ok::<(), String>(()) }
        })
        .poll_interval(Duration::from_millis(50));
    let task = tokio::spawn(worker.run());
    let n = u64::try_from(ids.len()).unwrap();
    eventually("every scheme's delivery done", || {
        let inbox = inbox.clone();
        async move { inbox.counts().await.unwrap().get(&State::Done) == Some(&n) }
    })
    .await;
    task.abort();
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_by_key(|s| s.2.clone());
    let mut expected: Vec<_> = ids
        .iter()
        .map(|(scheme, id)| {
            let (body, event_type) = body(*scheme, id);
            (*scheme, *scheme, id.clone(), event_type.to_owned(), body)
        })
        .collect();
    expected.sort_by_key(|s| s.2.clone());
    assert_eq!(seen, expected, "each handled once, as its scheme's event");
}

/// Runs `sql` on the inbox's database.
async fn exec(inbox: &Inbox, sql: &str) {
    match inbox.db() {
        mapping_webhooks_inbox::Db::Sqlite(pool) => {
            sqlx::query(sql).execute(pool).await.unwrap();
        }
        mapping_webhooks_inbox::Db::Postgres(pool) => {
            sqlx::query(sql).execute(pool).await.unwrap();
        }
        _ => unreachable!(),
    }
}

async fn a_row_stored_before_schemes_reads_as_mapping_travel(backend: Backend) {
    let Some(db) = TestDb::open(backend, "schemes_upgrade") else {
        return;
    };
    let clock = ManualClock::at_secs(T0);
    let inbox = db.inbox(&clock).await;
    let id = deliver_stored(&inbox, &clock, "evt_before_schemes").await;
    // Back to the schema before the scheme column: the row as an older version stored it.
    let version = match backend {
        Backend::Sqlite => 4,
        Backend::Postgres => 5,
    };
    exec(
        &inbox,
        "ALTER TABLE mapping_webhooks_inbox DROP COLUMN scheme",
    )
    .await;
    exec(
        &inbox,
        &format!("DELETE FROM mapping_webhooks_inbox_migrations WHERE version = {version}"),
    )
    .await;
    inbox.close().await;
    // Opened again: upgraded, and the old row is Mapping.Travel's.
    let inbox = db.inbox(&clock).await;
    let stored = inbox.show(id).await.unwrap();
    assert_eq!(stored.info.scheme, Scheme::Mapping);
    let secrets = support::gate(&clock).secrets().clone();
    let verified = inbox.reverify(id, &secrets).await.unwrap();
    assert_eq!(
        (verified.scheme, verified.event_id.as_str()),
        (Scheme::Mapping, "evt_before_schemes")
    );
}
