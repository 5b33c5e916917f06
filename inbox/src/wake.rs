//! Waking an idle worker when a delivery is stored: at once in this process (the
//! inbox's `Notify`), and on Postgres from any process (`LISTEN`/`NOTIFY`); polling
//! stays the fallback when a notification is lost.

use crate::Inbox;

/// The channel the Postgres trigger of migration 3 notifies on each statement that
/// stores new deliveries; its payload is the namespace's first
/// [`PAYLOAD_CHARS`] characters.
#[cfg(feature = "postgres")]
const CHANNEL: &str = "mapping_webhooks_inbox";
#[cfg(feature = "postgres")]
const PAYLOAD_CHARS: usize = 200;

/// Listens while it lives (stops the listening task when dropped).
pub(crate) struct Listening(Option<tokio::task::JoinHandle<()>>);

impl Drop for Listening {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

impl Inbox {
    /// On Postgres, starts a task that `LISTEN`s for new deliveries stored in this
    /// inbox's namespace, by any process, and wakes this inbox's workers; it holds one of
    /// the pool's connections while it runs. Nothing on SQLite, where only this process
    /// writes and its own commits wake its workers.
    pub(crate) fn listen(&self) -> Listening {
        match &self.shared.db {
            #[cfg(feature = "postgres")]
            crate::Db::Postgres(pool) => {
                let (pool, inbox) = (pool.clone(), self.clone());
                Listening(Some(tokio::spawn(async move {
                    listen_postgres(&pool, &inbox).await;
                })))
            }
            #[allow(unreachable_patterns)]
            _ => Listening(None),
        }
    }

    /// Wakes one idle worker of this inbox (a permit is kept if none is waiting).
    pub(crate) fn wake(&self) {
        self.shared.accepted.notify_one();
    }
}

#[cfg(feature = "postgres")]
async fn listen_postgres(pool: &sqlx::PgPool, inbox: &Inbox) {
    use std::time::Duration;

    use sqlx::postgres::PgListener;

    let ours: String = inbox.namespace().chars().take(PAYLOAD_CHARS).collect();
    let mut listener = loop {
        let listening = async {
            let mut listener = PgListener::connect_with(pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        match listening.await {
            Ok(listener) => break listener,
            Err(error) => {
                tracing::debug!(%error, "inbox worker cannot LISTEN yet; polling meanwhile");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    // Anything stored before the LISTEN took effect is found by the first claim.
    inbox.wake();
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                if notification.payload() == ours {
                    inbox.wake();
                }
            }
            // The connection was lost (reconnected on the next call): notifications
            // may have been missed meanwhile, so look now.
            Ok(None) => inbox.wake(),
            Err(error) => {
                tracing::debug!(%error, "inbox worker lost its LISTEN connection; polling meanwhile");
                tokio::time::sleep(Duration::from_secs(1)).await;
                inbox.wake();
            }
        }
    }
}
