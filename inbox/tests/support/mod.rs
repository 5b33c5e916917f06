//! A real database per test: SQLite in a temporary file, or a Postgres server started
//! for the test (skipped loudly without the binaries unless Postgres is required).

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::time::Duration;

use mapping_webhooks::ManualClock;
use mapping_webhooks_conformance::postgres::{PostgresServer, remove_sqlite, temp_sqlite_path};
use mapping_webhooks_conformance::{SECRET, envelope, sign};
use mapping_webhooks_inbox::{Acceptance, Inbox, UnsignedHeaders};

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
