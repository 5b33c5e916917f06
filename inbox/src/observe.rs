//! Watching the worker: a [`WorkerObserver`] hears how each attempt ended and how long
//! it took, how long a delivery waited from its acceptance until it was done, and the
//! inbox's deliveries by state.
//!
//! The accept path is observed with the core's [`Observer`](mapping_webhooks::Observer),
//! set on the gate in front of the inbox
//! ([`GateBuilder::observer`](mapping_webhooks::GateBuilder::observer)); the worker, which runs
//! later and elsewhere, with this one ([`Worker::observer`](crate::Worker::observer)).
//! Every method has a no-op default; a closure taking an [`Attempt`] is an observer too.
//! With the `metrics` feature, `WorkerMetrics` records them all
//! with the `metrics` facade.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use crate::State;

/// Hears what a [`Worker`](crate::Worker) does. Every method has a no-op default.
///
/// Methods are called on the worker's tasks: keep them short (update a counter, never
/// block). None of the values carries an id, an event or an error message.
pub trait WorkerObserver: Send + Sync + 'static {
    /// One attempt ended and its result was recorded (or could not be).
    fn attempt(&self, attempt: Attempt) {
        let _ = attempt;
    }

    /// A delivery was marked done: how long after it was accepted, on the inbox's
    /// clock. For a replayed delivery, that is since it was first accepted.
    fn processed(&self, lag: Duration) {
        let _ = lag;
    }

    /// The inbox's deliveries in each state (every state, zero included), read by a
    /// running worker ([`run`](crate::Worker::run), [`run_until`](crate::Worker::run_until))
    /// at most once every [`STATES_EVERY`](crate::STATES_EVERY), and only when it has an
    /// observer. Every worker of the inbox reads the same numbers. `namespace` is the
    /// inbox's ([`Inbox::namespace`](crate::Inbox::namespace), empty for none): the
    /// counts are that namespace's only, so keep them apart by it.
    fn states(&self, namespace: &str, counts: &HashMap<State, u64>) {
        let _ = (namespace, counts);
    }
}

impl<F> WorkerObserver for F
where
    F: Fn(Attempt) + Send + Sync + 'static,
{
    fn attempt(&self, attempt: Attempt) {
        self(attempt);
    }
}

/// One attempt of a delivery's handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Attempt {
    /// How it ended.
    pub result: AttemptResult,
    /// From the claim to the record of its result (the handler, and the database
    /// writes around it).
    pub duration: Duration,
    /// Its number, from 1.
    pub number: u32,
}

/// How an attempt ended, as recorded in the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AttemptResult {
    /// The handler succeeded: the delivery is done.
    Done,
    /// The handler returned an error: a retry is scheduled after the backoff.
    Retry,
    /// The handler ran past its deadline and was stopped: retried after the lease.
    TimedOut,
    /// The handler panicked (or its task was cancelled): retried after the lease.
    Panicked,
    /// The last attempt failed (however it failed), or the stored body can never be
    /// processed: the delivery is dead until replayed.
    Dead,
    /// The result could not be recorded: the lease ran out and another worker holds the
    /// delivery, or the database failed. The delivery is claimed again after its lease.
    Unrecorded,
}

impl AttemptResult {
    /// Every result.
    pub const ALL: [Self; 6] = [
        Self::Done,
        Self::Retry,
        Self::TimedOut,
        Self::Panicked,
        Self::Dead,
        Self::Unrecorded,
    ];

    /// A stable, low-cardinality name: `done`, `retry`, `timed_out`, `panicked`, `dead`
    /// or `unrecorded`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Retry => "retry",
            Self::TimedOut => "timed_out",
            Self::Panicked => "panicked",
            Self::Dead => "dead",
            Self::Unrecorded => "unrecorded",
        }
    }
}

impl fmt::Display for AttemptResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
