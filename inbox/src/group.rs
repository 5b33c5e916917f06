//! Group commit on the accept path: deliveries stored within a short window share one
//! multi-row `INSERT … ON CONFLICT DO NOTHING RETURNING` and one commit.
//!
//! Each request still hears back only once its own row is committed: [`Stored::New`]
//! for the first request of an event in a committed batch, [`Stored::AlreadyStored`]
//! when the event's row exists (stored before, or by an earlier request of the same
//! batch, in the same commit), and an error for every request of a batch whose commit
//! failed (the gate answers 503 to each, the sender retries). Nobody is answered before
//! the commit, so a failed commit answers 202 to nobody.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mapping_webhooks::Stored;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use crate::db::Db;

/// The default window: how long the first request of a batch waits for others.
pub(crate) const DEFAULT_WINDOW: Duration = Duration::from_millis(2);
/// The most rows one statement stores (10 bound values each, far below both databases'
/// limits on bound values).
const MAX_ROWS: usize = 256;
/// The most body bytes one statement carries: a batch of large bodies is stored in
/// several statements of at most this much (each its own commit), so a statement's
/// size stays bounded whatever the body limit.
const MAX_BYTES: usize = 4 << 20;
/// How many batches may be committing at once (on SQLite they take turns on the
/// write lock).
const MAX_COMMITTING: usize = 8;

/// One verified delivery's row, owned, on its way to a batch.
pub(crate) struct Row {
    pub(crate) tenant: String,
    pub(crate) event_id: String,
    pub(crate) event_type: String,
    pub(crate) delivery_id: String,
    pub(crate) signed_at: i64,
    pub(crate) secret: String,
    pub(crate) signature: String,
    pub(crate) scheme: &'static str,
    pub(crate) body: Vec<u8>,
    pub(crate) received_at: i64,
}

struct Pending {
    row: Row,
    reply: oneshot::Sender<Result<Stored, GroupCommitError>>,
}

/// A batch's statement or commit failed (none of its rows was stored), or the
/// batching task stopped before it answered (its runtime shut down).
#[derive(Debug, Clone)]
pub(crate) struct GroupCommitError(Option<Arc<sqlx::Error>>);

impl std::fmt::Display for GroupCommitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(error) => write!(
                f,
                "the inbox could not commit the batch this delivery was in (nothing of it was stored): {error}"
            ),
            None => f.write_str(
                "the inbox's batching task stopped before it answered; if the delivery was stored, the sender's retry is answered 200",
            ),
        }
    }
}

impl std::error::Error for GroupCommitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.as_deref().map(|e| e as _)
    }
}

/// The batching task's queue, started on the first delivery (in the runtime storing it)
/// and again if that runtime went away.
pub(crate) struct GroupCommit {
    window: Duration,
    queue: Mutex<Option<mpsc::UnboundedSender<Pending>>>,
}

impl GroupCommit {
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            window,
            queue: Mutex::new(None),
        }
    }

    pub(crate) fn window(&self) -> Duration {
        self.window
    }

    /// Stores `row` with whatever else arrives within the window; answers once the
    /// batch's commit returned.
    pub(crate) async fn store(
        &self,
        db: &Db,
        namespace: &str,
        row: Row,
    ) -> Result<Stored, GroupCommitError> {
        let (reply, answer) = oneshot::channel();
        let mut pending = Pending { row, reply };
        // At most twice: a queue whose task is gone (its runtime shut down) is replaced.
        for _ in 0..2 {
            let queue = {
                let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                queue
                    .get_or_insert_with(|| start(db.clone(), namespace.to_owned(), self.window))
                    .clone()
            };
            match queue.send(pending) {
                Ok(()) => {
                    return answer.await.unwrap_or(Err(GroupCommitError(None)));
                }
                Err(mpsc::error::SendError(back)) => {
                    pending = back;
                    let mut current = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                    if current.as_ref().is_some_and(|q| q.same_channel(&queue)) {
                        *current = None;
                    }
                }
            }
        }
        Err(GroupCommitError(None))
    }
}

fn start(db: Db, namespace: String, window: Duration) -> mpsc::UnboundedSender<Pending> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(gather(db, namespace, window, rx));
    tx
}

/// Gathers batches: the first request, then whatever arrives within the window (up to
/// [`MAX_ROWS`]); each batch commits in a task of its own, so the next one gathers
/// while it commits.
async fn gather(
    db: Db,
    namespace: String,
    window: Duration,
    mut rx: mpsc::UnboundedReceiver<Pending>,
) {
    let committing = Arc::new(Semaphore::new(MAX_COMMITTING));
    let namespace: Arc<str> = namespace.into();
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_ROWS);
    loop {
        if rx.recv_many(&mut batch, MAX_ROWS).await == 0 {
            return;
        }
        let deadline = Instant::now() + window;
        while batch.len() < MAX_ROWS {
            let room = MAX_ROWS - batch.len();
            match tokio::time::timeout_at(deadline, rx.recv_many(&mut batch, room)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let Ok(permit) = Arc::clone(&committing).acquire_owned().await else {
            return;
        };
        // Requests that arrived while waiting for a free commit join this batch.
        if batch.len() < MAX_ROWS {
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
                if batch.len() == MAX_ROWS {
                    break;
                }
            }
        }
        let rows = std::mem::replace(&mut batch, Vec::with_capacity(MAX_ROWS));
        let (db, namespace) = (db.clone(), Arc::clone(&namespace));
        tokio::spawn(async move {
            for rows in split_by_size(rows) {
                commit(&db, &namespace, rows).await;
            }
            drop(permit);
        });
    }
}

/// Splits a batch into runs of at most [`MAX_BYTES`] of bodies (at least one row
/// each), in order.
fn split_by_size(batch: Vec<Pending>) -> Vec<Vec<Pending>> {
    let mut out: Vec<Vec<Pending>> = Vec::new();
    let mut bytes = 0;
    for pending in batch {
        let size = pending.row.body.len();
        match out.last_mut() {
            Some(last) if bytes + size <= MAX_BYTES => {
                bytes += size;
                last.push(pending);
            }
            _ => {
                bytes = size;
                out.push(vec![pending]);
            }
        }
    }
    out
}

/// SQLite's statement for `n` rows (SQLite has no arrays to bind; preparing one is cheap).
#[cfg(feature = "sqlite")]
fn sqlite_insert(n: usize) -> String {
    let values: Vec<String> = (0..n)
        .map(|i| {
            let b = 2 + i * 10;
            format!(
                "($1, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, 'pending', 0, ${})",
                b,
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7,
                b + 8,
                b + 9,
                b + 9
            )
        })
        .collect();
    format!(
        "INSERT INTO mapping_webhooks_inbox \
         (namespace, tenant, event_id, event_type, delivery_id, signed_at, secret, signature, \
          scheme, body, received_at, state, attempts, due_at) \
         VALUES {} \
         ON CONFLICT (namespace, tenant, event_id) DO NOTHING RETURNING tenant, event_id",
        values.join(", ")
    )
}

/// Postgres's statement for any number of rows, one array per column; the rows are
/// inserted in the arrays' order.
#[cfg(feature = "postgres")]
const POSTGRES_INSERT: &str = "INSERT INTO mapping_webhooks_inbox \
     (namespace, tenant, event_id, event_type, delivery_id, signed_at, secret, signature, \
      scheme, body, received_at, state, attempts, due_at) \
     SELECT $1, r.tenant, r.event_id, r.event_type, r.delivery_id, r.signed_at, r.secret, \
       r.signature, r.scheme, r.body, r.received_at, 'pending', 0, r.received_at \
     FROM UNNEST($2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::BIGINT[], $7::TEXT[], \
       $8::TEXT[], $9::TEXT[], $10::BYTEA[], $11::BIGINT[]) WITH ORDINALITY \
       AS r(tenant, event_id, event_type, delivery_id, signed_at, secret, signature, scheme, \
         body, received_at, n) \
     ORDER BY r.n \
     ON CONFLICT (namespace, tenant, event_id) DO NOTHING RETURNING tenant, event_id";

/// Stores one batch in one statement (one transaction) and answers each request.
async fn commit(db: &Db, namespace: &str, batch: Vec<Pending>) {
    // Each event once in the statement; a second request for it in the same batch is
    // its duplicate, answered once the first one's row is committed.
    let mut keys = HashSet::with_capacity(batch.len());
    let mut rows: Vec<&Row> = batch
        .iter()
        .map(|p| &p.row)
        .filter(|r| keys.insert((r.tenant.as_str(), r.event_id.as_str())))
        .collect();
    // In key order: batches committing at once then take the rows they share in one
    // order, so one waits for the other's commit instead of both deadlocking (Postgres
    // aborts one, and every request in it would be answered 503).
    rows.sort_unstable_by(|a, b| (&a.tenant, &a.event_id).cmp(&(&b.tenant, &b.event_id)));
    // `fetch_all`: stepped to its end, so a failed commit (SQLite in autocommit commits
    // when the statement completes) is an error, not a lost one.
    let stored: Result<Vec<(String, String)>, sqlx::Error> = match db {
        #[cfg(feature = "sqlite")]
        Db::Sqlite(pool) => {
            let sql = sqlite_insert(rows.len());
            let mut query = sqlx::query_as(&sql).bind(namespace);
            for row in &rows {
                query = query
                    .bind(&row.tenant)
                    .bind(&row.event_id)
                    .bind(&row.event_type)
                    .bind(&row.delivery_id)
                    .bind(row.signed_at)
                    .bind(&row.secret)
                    .bind(&row.signature)
                    .bind(row.scheme)
                    .bind(&row.body)
                    .bind(row.received_at);
            }
            query.fetch_all(pool).await
        }
        // One statement text whatever the batch's size (one column per array, in key
        // order), so it is prepared and planned once per connection, not once per size.
        #[cfg(feature = "postgres")]
        Db::Postgres(pool) => {
            macro_rules! column {
                ($field:ident) => {
                    rows.iter().map(|r| &r.$field).collect::<Vec<_>>()
                };
            }
            sqlx::query_as(POSTGRES_INSERT)
                .bind(namespace)
                .bind(column!(tenant))
                .bind(column!(event_id))
                .bind(column!(event_type))
                .bind(column!(delivery_id))
                .bind(rows.iter().map(|r| r.signed_at).collect::<Vec<_>>())
                .bind(column!(secret))
                .bind(column!(signature))
                .bind(rows.iter().map(|r| r.scheme).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.body.as_slice()).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.received_at).collect::<Vec<_>>())
                .fetch_all(pool)
                .await
        }
    };
    drop(rows);
    match stored {
        Ok(new) => {
            let mut new: HashSet<(String, String)> = new.into_iter().collect();
            for pending in batch {
                let key = (pending.row.tenant, pending.row.event_id);
                let stored = if new.remove(&key) {
                    Stored::New
                } else {
                    Stored::AlreadyStored
                };
                let _ = pending.reply.send(Ok(stored));
            }
        }
        Err(error) => {
            // Each request's error is logged once, by the gate that answers it 503.
            tracing::debug!(
                %error,
                rows = batch.len(),
                "the inbox could not commit a batch of deliveries"
            );
            let error = GroupCommitError(Some(Arc::new(error)));
            for pending in batch {
                let _ = pending.reply.send(Err(error.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(event_id: &str, size: usize) -> Pending {
        let (reply, _) = oneshot::channel();
        Pending {
            row: Row {
                tenant: String::new(),
                event_id: event_id.to_owned(),
                event_type: "mapping.completed".to_owned(),
                delivery_id: "del".to_owned(),
                signed_at: 0,
                secret: "current".to_owned(),
                signature: String::new(),
                scheme: "mapping",
                body: vec![b'x'; size],
                received_at: 0,
            },
            reply,
        }
    }

    #[test]
    fn a_batch_of_large_bodies_is_split_in_order_and_bounded() {
        let sizes = [MAX_BYTES / 2, MAX_BYTES / 2, 1, MAX_BYTES + 1, 10, 20];
        let batch = sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| pending(&i.to_string(), size))
            .collect();
        let runs: Vec<Vec<String>> = split_by_size(batch)
            .into_iter()
            .map(|run| run.into_iter().map(|p| p.row.event_id).collect())
            .collect();
        // An oversized body is a run of its own; the others fill runs up to the bound.
        assert_eq!(runs, [vec!["0", "1"], vec!["2"], vec!["3"], vec!["4", "5"]]);
    }
}
