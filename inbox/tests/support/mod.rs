//! A real database per test: SQLite in a temporary file, or a Postgres server started
//! for the test (skipped loudly without the binaries unless Postgres is required).

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::time::Duration;

use mapping_webhooks::{ManualClock, Secret, Signer};
use mapping_webhooks_inbox::{Acceptance, Inbox, UnsignedHeaders};

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
        Inbox::builder(SECRET)
            .expect("secret")
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

/// Accepts `event_id` signed at the clock's time.
pub async fn deliver(inbox: &Inbox, clock: &ManualClock, event_id: &str) -> Acceptance {
    use mapping_webhooks::Clock;
    let body = envelope(event_id, &format!("del_{event_id}"));
    let header = sign(SECRET, &body, clock.now_secs());
    inbox
        .accept([header.as_bytes()], UnsignedHeaders::default(), &body)
        .await
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
