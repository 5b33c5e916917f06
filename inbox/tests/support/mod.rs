//! A real database per test: SQLite in a temporary file, or a Postgres server started
//! for the test (skipped loudly without the binaries unless Postgres is required).

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::time::Duration;

use mapping_webhooks::{Gate, ManualClock, Reply, Secret, Signer};
use mapping_webhooks_inbox::{Inbox, UnsignedHeaders};

pub mod postgres;

use postgres::{PostgresServer, remove_sqlite, temp_sqlite_path};

/// The secret every test signs with.
pub const SECRET: &str = "whsec_inbox_current_0123456789abcdef";
/// The previous secret of the rotation test.
pub const PREVIOUS_SECRET: &str = "whsec_inbox_previous_0123456789abcdef";

/// `X-Webhook-Signature` for `body` at `timestamp` with `secret`.
pub fn sign(secret: &str, body: &[u8], timestamp: u64) -> String {
    Signer::new(Secret::new(secret).expect("test secret")).sign(body, timestamp)
}

/// A delivery body for `event_id` in the documented shape, with uncommon spacing so any
/// re-serialisation would show.
pub fn envelope(event_id: &str, delivery_id: &str) -> Vec<u8> {
    format!(
        "{{ \"type\" : \"mapping.completed\", \"eventId\":\"{event_id}\",\n  \"id\":\"{delivery_id}\", \
         \"apiVersion\":\"2026-06-01\", \"createdAt\":\"2026-06-07T12:01:00Z\",\n  \"data\": {{\"rowCount\": 4821, \
         \"mappingJobId\":\"job_01HZ\",   \"status\":\"COMPLETED\", \"exportFileId\":\"ef_01HZ\"}} }}"
    )
    .into_bytes()
}

/// The start of every test's manual clock.
pub const T0: u64 = 1_800_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database for one test, removed when dropped.
pub struct TestDb {
    pub url: String,
    pub pg: Option<PostgresServer>,
    sqlite: Option<PathBuf>,
}

impl TestDb {
    pub fn open(backend: Backend, test: &str) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let path = temp_sqlite_path(test);
                Some(Self {
                    url: format!("sqlite://{}", path.display()),
                    pg: None,
                    sqlite: Some(path),
                })
            }
            Backend::Postgres => {
                let pg = PostgresServer::start(test)?;
                Some(Self {
                    url: pg.url(),
                    pg: Some(pg),
                    sqlite: None,
                })
            }
        }
    }

    /// An inbox on this database, on `clock`.
    pub async fn inbox(&self, clock: &ManualClock) -> Inbox {
        Inbox::builder()
            .clock(clock.clone())
            .acquire_timeout(Duration::from_secs(2))
            .connect(&self.url)
            .await
            .expect("connect to the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(path) = &self.sqlite {
            remove_sqlite(path);
        }
    }
}

/// The gate in front of every test's inbox: [`SECRET`], on `clock`, without a dedup
/// store of its own (the inbox's table is the dedup).
pub fn gate(clock: &ManualClock) -> Gate {
    Gate::builder()
        .secret(SECRET)
        .clock(clock.clone())
        .without_dedup()
        .build()
        .expect("test gate")
}

/// What the gate answers for `body` with the signature headers `headers`, stored in `inbox`.
pub async fn accept<'h>(
    inbox: &Inbox,
    clock: &ManualClock,
    headers: impl IntoIterator<Item = &'h [u8]>,
    body: &[u8],
) -> Reply {
    gate(clock)
        .admit_into(inbox, headers, UnsignedHeaders::default(), body)
        .await
}

/// Accepts `event_id` signed at the clock's time.
pub async fn deliver(inbox: &Inbox, clock: &ManualClock, event_id: &str) -> Reply {
    use mapping_webhooks::Clock;
    let body = envelope(event_id, &format!("del_{event_id}"));
    let header = sign(SECRET, &body, clock.now_secs());
    accept(inbox, clock, [header.as_bytes()], &body).await
}

/// The id of `event_id` in `inbox`, once `reply` said it was stored (202).
pub async fn stored_id(inbox: &Inbox, reply: Reply, event_id: &str) -> i64 {
    assert_eq!(reply, Reply::Queued, "{event_id} not stored");
    inbox
        .find(event_id)
        .await
        .expect("find")
        .expect("a stored row for a 202")
        .info
        .id
}

/// Accepts `event_id` (as [`deliver`]), which must be stored: its id.
pub async fn deliver_stored(inbox: &Inbox, clock: &ManualClock, event_id: &str) -> i64 {
    let reply = deliver(inbox, clock, event_id).await;
    stored_id(inbox, reply, event_id).await
}

/// Polls `condition` every 20 ms for at most 60 s.
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..3000 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Runs each case against SQLite and against Postgres.
#[macro_export]
macro_rules! on_both {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::support::Backend::Sqlite).await;
                }
            )*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::support::Backend::Postgres).await;
                }
            )*
        }
    };
}

/// A request head as an adapter hands it to [`Gate::intake`]: the signature header, the
/// path (the tenant key of a gate whose tenants are taken from the path) and a declared
/// length.
#[derive(Debug, Clone)]
pub struct TestHead {
    pub signature: String,
    pub path: String,
    pub content_length: Option<u64>,
}

impl TestHead {
    /// A request signed with `signature`, at `/hooks`.
    pub fn signed(signature: &str) -> Self {
        Self {
            signature: signature.to_owned(),
            path: "/hooks".to_owned(),
            content_length: None,
        }
    }

    /// The same request at `path`.
    pub fn at(mut self, path: &str) -> Self {
        self.path = path.to_owned();
        self
    }

    /// The same request declaring `length` bytes of body.
    pub fn content_length(mut self, length: u64) -> Self {
        self.content_length = Some(length);
        self
    }
}

impl mapping_webhooks::adapter::RequestHead for TestHead {
    fn header_values<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> {
        (name == mapping_webhooks::SIGNATURE_HEADER)
            .then_some(self.signature.as_bytes())
            .into_iter()
    }

    fn path(&self) -> &str {
        &self.path
    }

    fn host(&self) -> Option<&str> {
        None
    }

    fn content_length(&self) -> Option<u64> {
        self.content_length
    }
}

/// What `gate` answers for `body` sent as `head` (the adapter's pipeline: head, body,
/// then the inbox as the sink).
pub async fn admit_head<D: mapping_webhooks::DedupStore>(
    gate: &Gate<D>,
    inbox: &Inbox,
    head: &TestHead,
    body: &[u8],
) -> Reply {
    let mut intake = match gate.intake(head).await {
        Ok(intake) => intake,
        Err(reply) => return reply,
    };
    if let Err(reply) = intake.push(bytes::Bytes::copy_from_slice(body)) {
        return reply;
    }
    intake.admit_into(inbox).await
}
