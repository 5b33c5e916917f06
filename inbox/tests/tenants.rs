//! The inbox behind a gate with tenants, the schema upgrade that made room for them, and
//! one handler model: what a worker's handler gets is what the gate verified inline.
//! Against real databases: SQLite in a temporary file and a Postgres server started by
//! the test.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use mapping_webhooks::adapter::read_payload;
use mapping_webhooks::{
    Clock, Gate, ManualClock, MappingCompleted, MatchedSecret, Reply, ResolveError, Secret,
    Secrets, Tenant, TenantFrom, Tenants, Verified,
};
use mapping_webhooks_inbox::{Delivery, Inbox, InboxError, State};
use support::{
    Backend, PREVIOUS_SECRET, SECRET, T0, TestDb, TestHead, admit_head, deliver, deliver_stored,
    envelope, sign,
};

on_both!(
    two_tenants_with_one_event_id_are_each_stored_and_processed_once,
    an_inbox_of_the_old_schema_opens_with_every_row_kept_and_processes_them,
    a_worker_handler_gets_what_the_gate_verified_inline,
);

const ACME: &str = "whsec_tenant_acme_0123456789abcdef";
const GLOBEX: &str = "whsec_tenant_globex_0123456789abcdef";

fn secrets(secret: &str) -> Secrets {
    Secrets::new(Secret::new(secret).unwrap())
}

/// A gate for the tenants `acme` and `globex`, taken from the path `/hooks/{tenant}`.
fn tenant_gate(clock: &ManualClock) -> Gate {
    let tenants = Tenants::new(|key: String| async move {
        let secret = match key.as_str() {
            "acme" => ACME,
            "globex" => GLOBEX,
            _ => return Ok::<_, ResolveError>(None),
        };
        Ok(Some(Tenant::new(key, secrets(secret))))
    });
    Gate::builder()
        .tenants(tenants, TenantFrom::PathSegment(1))
        .clock(clock.clone())
        .without_dedup()
        .build()
        .unwrap()
}

/// `event_id` as tenant `tenant` sends it, signed with `key`, through the gate's pipeline.
async fn send(
    gate: &Gate,
    inbox: &Inbox,
    tenant: &str,
    key: &str,
    event_id: &str,
    delivery_id: &str,
) -> Reply {
    let body = envelope(event_id, delivery_id);
    let head = TestHead::signed(&sign(key, &body, T0)).at(&format!("/hooks/{tenant}"));
    admit_head(gate, inbox, &head, &body).await
}

/// How many runs each (tenant, event id) had.
type Runs = BTreeMap<(Option<String>, String), usize>;

/// What a handler got: the verified metadata, the body and the payload's row count.
type Got = Vec<(Verified, Vec<u8>, u64)>;

/// Runs the worker until nothing is due; returns what each attempt's handler saw.
async fn process_all(inbox: &Inbox) -> Runs {
    let seen: Arc<Mutex<Runs>> = Arc::default();
    let record = seen.clone();
    let worker = inbox.worker(move |d: Delivery| {
        let verified = d.verified();
        *record
            .lock()
            .unwrap()
            .entry((verified.tenant, verified.event_id))
            .or_default() += 1;
        async { Ok::<(), String>(()) }
    });
    for _ in 0..10 {
        if worker.run_once().await.unwrap() == 0 {
            break;
        }
    }
    seen.lock().unwrap().clone()
}

async fn two_tenants_with_one_event_id_are_each_stored_and_processed_once(backend: Backend) {
    let Some(db) = TestDb::open(backend, "tenants_same_event") else {
        return;
    };
    let clock = ManualClock::at_secs(T0);
    let inbox = db.inbox(&clock).await;
    let gate = tenant_gate(&clock);

    let answers = [
        send(&gate, &inbox, "acme", ACME, "evt_shared", "del_a1").await,
        send(&gate, &inbox, "globex", GLOBEX, "evt_shared", "del_g1").await,
        // acme's retry of the same event: a duplicate of acme's, not a new row.
        send(&gate, &inbox, "acme", ACME, "evt_shared", "del_a2").await,
        // globex's signature on acme's URL: refused, nothing stored.
        send(&gate, &inbox, "acme", GLOBEX, "evt_forged", "del_f").await,
        // A tenant that does not exist: 404.
        send(&gate, &inbox, "initech", ACME, "evt_unknown", "del_u").await,
    ];
    let statuses: Vec<u16> = answers.iter().map(Reply::status).collect();
    assert_eq!(statuses, [202, 202, 200, 401, 404], "{answers:?}");
    assert!(answers[2].is_duplicate());

    let rows = inbox.list(State::Pending, 0, 10).await.unwrap();
    let stored: Vec<(Option<&str>, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r.tenant.as_deref(),
                r.event_id.as_str(),
                r.delivery_id.as_str(),
            )
        })
        .collect();
    assert_eq!(
        stored,
        [
            (Some("acme"), "evt_shared", "del_a1"),
            (Some("globex"), "evt_shared", "del_g1"),
        ],
        "one row per tenant, the first copy of each"
    );

    // Each is processed once, and the handler sees its tenant.
    let seen = process_all(&inbox).await;
    assert_eq!(
        seen,
        BTreeMap::from([
            ((Some("acme".to_owned()), "evt_shared".to_owned()), 1),
            ((Some("globex".to_owned()), "evt_shared".to_owned()), 1),
        ])
    );
    assert_eq!(
        inbox.counts().await.unwrap(),
        std::collections::HashMap::from([(State::Done, 2)])
    );

    // Re-verifying a tenant's row takes that tenant's secrets, and carries the tenant.
    let acme_row = rows[0].id;
    let verified = inbox.reverify(acme_row, &secrets(ACME)).await.unwrap();
    assert_eq!(verified.tenant.as_deref(), Some("acme"));
    assert!(matches!(
        inbox.reverify(acme_row, &secrets(GLOBEX)).await,
        Err(InboxError::Verify(_))
    ));
    // Still a duplicate once processed.
    assert_eq!(
        send(&gate, &inbox, "globex", GLOBEX, "evt_shared", "del_g2").await,
        Reply::AlreadyProcessed
    );
}

/// The rows an inbox of the first schema (migration 0001 only) held.
const OLD_EVENTS: [&str; 4] = ["evt_old_1", "evt_old_2", "evt_old_done", "evt_old_gone"];

/// The INSERT of the inbox before tenants, as it stored a delivery.
const OLD_INSERT: &str = "INSERT INTO mapping_webhooks_inbox \
     (namespace, event_id, event_type, delivery_id, signed_at, secret, signature, body, \
      received_at, state, attempts, due_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', 0, $9) \
     ON CONFLICT (namespace, event_id) DO NOTHING RETURNING id";

/// Makes the database as the inbox before tenants left it: the 0001 schema, its
/// migrations table saying so, and rows stored its way (one done; the newest deleted,
/// so its id is above every id kept). Returns the ids, in [`OLD_EVENTS`]' order.
async fn make_old_inbox(db: &TestDb, backend: Backend) -> Vec<i64> {
    macro_rules! on_old_schema {
        ($pool:expr, $schema:expr) => {{
            let pool = $pool;
            sqlx::raw_sql($schema).execute(&pool).await.unwrap();
            sqlx::raw_sql(
                "CREATE TABLE mapping_webhooks_inbox_migrations (version BIGINT PRIMARY KEY); \
                 INSERT INTO mapping_webhooks_inbox_migrations (version) VALUES (1);",
            )
            .execute(&pool)
            .await
            .unwrap();
            let mut ids = Vec::new();
            for event_id in OLD_EVENTS {
                let body = envelope(event_id, &format!("del_{event_id}"));
                let id: i64 = sqlx::query_scalar(OLD_INSERT)
                    .bind("")
                    .bind(event_id)
                    .bind("mapping.completed")
                    .bind(format!("del_{event_id}"))
                    .bind(i64::try_from(T0).unwrap())
                    .bind("current")
                    .bind(sign(SECRET, &body, T0))
                    .bind(body)
                    .bind(i64::try_from(T0 * 1000).unwrap())
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                ids.push(id);
            }
            sqlx::query(
                "UPDATE mapping_webhooks_inbox SET state = 'done', finished_at = due_at \
                 WHERE event_id = 'evt_old_done'",
            )
            .execute(&pool)
            .await
            .unwrap();
            sqlx::query("DELETE FROM mapping_webhooks_inbox WHERE event_id = 'evt_old_gone'")
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
            ids
        }};
    }
    match backend {
        Backend::Sqlite => {
            use std::str::FromStr;
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(&db.url)
                .unwrap()
                .create_if_missing(true);
            on_old_schema!(
                sqlx::SqlitePool::connect_with(options).await.unwrap(),
                include_str!("../migrations/sqlite/0001_inbox.sql")
            )
        }
        Backend::Postgres => on_old_schema!(
            sqlx::PgPool::connect(&db.url).await.unwrap(),
            include_str!("../migrations/postgres/0001_inbox.sql")
        ),
    }
}

async fn an_inbox_of_the_old_schema_opens_with_every_row_kept_and_processes_them(backend: Backend) {
    let Some(db) = TestDb::open(backend, "old_schema") else {
        return;
    };
    let ids = make_old_inbox(&db, backend).await;
    let clock = ManualClock::at_secs(T0);
    let inbox = db.inbox(&clock).await;

    // Every row kept, with its id and bytes, as no tenant's.
    let mut kept = Vec::new();
    for state in [State::Pending, State::Done] {
        for info in inbox.list(state, 0, 10).await.unwrap() {
            kept.push((info.id, info.event_id.clone(), info.tenant.clone(), state));
        }
    }
    assert_eq!(
        kept,
        [
            (ids[0], "evt_old_1".to_owned(), None, State::Pending),
            (ids[1], "evt_old_2".to_owned(), None, State::Pending),
            (ids[2], "evt_old_done".to_owned(), None, State::Done),
        ]
    );
    let shown = inbox.show(ids[0]).await.unwrap();
    assert_eq!(shown.body, envelope("evt_old_1", "del_evt_old_1"));
    let gate = support::gate(&clock);
    assert_eq!(
        inbox
            .reverify(ids[0], gate.secrets())
            .await
            .unwrap()
            .event_id,
        "evt_old_1"
    );

    // A new delivery gets an id never given before (not the deleted row's; first, as
    // a refused insert may take an id too)...
    let new = deliver_stored(&inbox, &clock, "evt_new").await;
    assert!(new > ids[3], "new id {new}, deleted row's {}", ids[3]);
    // ...the old uniqueness still holds for deliveries without a tenant...
    assert_eq!(
        deliver(&inbox, &clock, "evt_old_1").await,
        Reply::AlreadyProcessed
    );
    // ...and a tenant may send an event id stored before tenants.
    let tenants = tenant_gate(&clock);
    assert_eq!(
        send(&tenants, &inbox, "acme", ACME, "evt_old_2", "del_t").await,
        Reply::Queued
    );

    // The old rows are processed like the new ones, each once.
    let seen = process_all(&inbox).await;
    let key = |tenant: Option<&str>, event: &str| (tenant.map(str::to_owned), event.to_owned());
    assert_eq!(
        seen,
        BTreeMap::from([
            (key(None, "evt_new"), 1),
            (key(None, "evt_old_1"), 1),
            (key(None, "evt_old_2"), 1),
            (key(Some("acme"), "evt_old_2"), 1),
        ])
    );

    // The indexes are there after the rebuild (SQLite) or the change (Postgres): the
    // state index of 0001 (its due index, replaced by the claim's, is dropped by a
    // later migration; the claim's index aside).
    let indexes: Vec<String> = match inbox.db() {
        mapping_webhooks_inbox::Db::Sqlite(pool) => sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'index' \
             AND tbl_name = 'mapping_webhooks_inbox' AND name NOT LIKE 'sqlite_%' \
             AND name <> 'mapping_webhooks_inbox_claim' ORDER BY name",
        )
        .fetch_all(pool)
        .await
        .unwrap(),
        mapping_webhooks_inbox::Db::Postgres(pool) => sqlx::query_scalar(
            "SELECT indexname::text FROM pg_indexes WHERE tablename = 'mapping_webhooks_inbox' \
             AND indexname NOT LIKE '%_key' AND indexname NOT LIKE '%_pkey' \
             AND indexname <> 'mapping_webhooks_inbox_claim' ORDER BY indexname",
        )
        .fetch_all(pool)
        .await
        .unwrap(),
        _ => unreachable!(),
    };
    assert_eq!(indexes, ["mapping_webhooks_inbox_state"]);

    // Opening it again migrates nothing twice.
    drop(inbox);
    let again = db.inbox(&clock).await;
    assert_eq!(
        again.counts().await.unwrap(),
        std::collections::HashMap::from([(State::Done, 5)])
    );
}

async fn a_worker_handler_gets_what_the_gate_verified_inline(backend: Backend) {
    let Some(db) = TestDb::open(backend, "handler_model") else {
        return;
    };
    let clock = ManualClock::at_secs(T0);
    let inbox = db.inbox(&clock).await;
    let gate = Gate::builder()
        .secret(SECRET)
        .previous_secret(PREVIOUS_SECRET)
        .clock(clock.clone())
        .without_dedup()
        .build()
        .unwrap();
    let tenants = tenant_gate(&clock);

    // Two deliveries, and what the same gates verify for them inline.
    let body = envelope("evt_model", "del_model");
    let plain = TestHead::signed(&sign(PREVIOUS_SECRET, &body, clock.now_secs()));
    let acme_body = envelope("evt_model_acme", "del_model_acme");
    let acme = TestHead::signed(&sign(ACME, &acme_body, T0)).at("/hooks/acme");
    let mut inline: Vec<(Verified, Vec<u8>)> = Vec::new();
    for (gate, head, body) in [(&gate, &plain, &body), (&tenants, &acme, &acme_body)] {
        let mut intake = gate.intake(head).await.unwrap();
        intake.push(body.clone().into()).unwrap();
        let admitted = intake.admit().await.unwrap();
        inline.push((admitted.verified, admitted.body.to_vec()));
        assert_eq!(admit_head(gate, &inbox, head, body).await, Reply::Queued);
    }
    assert_eq!(inline[0].0.secret, MatchedSecret::Previous(0));
    assert_eq!(inline[1].0.tenant.as_deref(), Some("acme"));

    // The worker's handler gets the same Verified and the same bytes, and the inline
    // path's payload reader takes them.
    let got: Arc<Mutex<Got>> = Arc::default();
    let record = got.clone();
    let worker = inbox.worker(move |d: Delivery| {
        let verified = d.verified();
        let payload = read_payload::<MappingCompleted>(&verified, &d.body);
        let row_count = payload.map(|e| e.data.row_count);
        record
            .lock()
            .unwrap()
            .push((verified, d.body.to_vec(), row_count.unwrap_or(0)));
        async { Ok::<(), String>(()) }
    });
    assert_eq!(worker.run_once().await.unwrap(), 2);
    // The worker runs its claimed deliveries concurrently: compare in event order.
    let mut got = got.lock().unwrap().clone();
    got.sort_by(|a, b| a.0.event_id.cmp(&b.0.event_id));
    let expected: Got = inline
        .into_iter()
        .map(|(verified, body)| (verified, body, 4821))
        .collect();
    assert_eq!(got, expected);
}
