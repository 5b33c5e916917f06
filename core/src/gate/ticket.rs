//! The dedup claim of a request whose handler runs, and how it ends.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dedup::{Claim, DedupStore};
use crate::observe::{Handled, HandlerEnd, Observer, Outcome, StoreOperation};

/// The dedup claim of a request whose handler is running.
///
/// [`finish`](Self::finish) it with the handler's status. A ticket dropped without being
/// finished (the handler panicked, the client went away, a timeout fired) abandons its
/// claim, so the sender's retry is processed: an event is only remembered as done once
/// its handler answered 2xx.
///
/// It also carries the delivery's `tracing` [span](Self::span), and reports the
/// handler's outcome to the gate's [`Observer`] when it is finished or dropped.
#[must_use = "finish the ticket with the handler's status, or the event is retried"]
pub struct Ticket<D: DedupStore> {
    claim: Option<Held<D>>,
    observed: Option<Observed>,
    span: tracing::Span,
    reported: bool,
}

pub(super) struct Held<D> {
    pub(super) store: Arc<D>,
    pub(super) key: String,
    pub(super) claim: Claim,
}

/// The observer of a ticket's handler, and when the handler started.
pub(super) struct Observed {
    pub(super) observer: Arc<dyn Observer>,
    pub(super) started: Instant,
    pub(super) store_error: bool,
}

/// Records an outcome on a delivery's span. (A disabled span would still look the
/// fields up by name: skip it.)
pub(super) fn record(span: &tracing::Span, outcome: Outcome) {
    if span.is_disabled() {
        return;
    }
    span.record("outcome", outcome.as_str());
    span.record("reason", outcome.reason());
}

impl<D: DedupStore> Ticket<D> {
    pub(super) fn new(
        claim: Option<Held<D>>,
        observed: Option<Observed>,
        span: tracing::Span,
    ) -> Self {
        Self {
            claim,
            observed,
            span,
            reported: false,
        }
    }

    /// Whether this request holds a dedup claim (false without dedup, or when the store
    /// failed and [`OnStoreError::PassThrough`](crate::OnStoreError::PassThrough) let it
    /// through).
    pub fn is_claimed(&self) -> bool {
        self.claim.is_some()
    }

    /// The delivery's span (`webhook`, at INFO), with the event id, delivery id, event
    /// type and matched secret as fields; `outcome` and `reason` are recorded when the
    /// ticket is finished. Adapters run the handler inside it, so the handler's own logs
    /// and spans are its children.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Completes the claim when `status` is 2xx, abandons it otherwise.
    pub async fn finish(self, status: u16) {
        self.end(HandlerEnd::Status(status)).await;
    }

    /// The handler succeeded: remember the event as done.
    pub async fn succeeded(self) {
        self.end(HandlerEnd::Succeeded).await;
    }

    /// The handler failed: free the claim so the sender's retry is processed.
    pub async fn failed(self) {
        self.end(HandlerEnd::Failed).await;
    }

    /// The handler panicked and the adapter caught it: free the claim, as
    /// [`failed`](Self::failed) does, and report it as a panic.
    pub async fn panicked(self) {
        self.end(HandlerEnd::Panicked).await;
    }

    /// Ends the ticket of a request that no handler runs for here, because a durable
    /// [`Sink`](crate::Sink) took it over: reports `outcome` to the span and the observer
    /// instead of a handler's end, and completes the claim (`success`: the sink holds the
    /// event) or frees it (the sink failed: the sender's retry must be stored).
    pub(super) async fn hand_over(mut self, outcome: Outcome, success: bool) {
        self.reported = true;
        record(&self.span, outcome);
        let observed = self.observed.take();
        if let Some(held) = self.claim.take() {
            let observer = observed.as_ref().map(|o| Arc::clone(&o.observer));
            let started = observer.as_ref().map(|_| Instant::now());
            settle(held, success, observer, started).await;
        }
        if let Some(observed) = observed {
            observed.observer.outcome(outcome);
        }
    }

    async fn end(mut self, end: HandlerEnd) {
        // The handler's end is the store call's start: one clock read for both.
        let ended = self.observed.as_ref().map(|_| Instant::now());
        let handler = self
            .observed
            .as_ref()
            .zip(ended)
            .map(|(o, now)| now - o.started);
        if let Some(held) = self.claim.take() {
            let observer = self.observed.as_ref().map(|o| Arc::clone(&o.observer));
            settle(held, end.is_success(), observer, ended).await;
        }
        self.report(end, handler);
    }

    /// Reports the handler's end to the span and the observer, once.
    fn report(&mut self, end: HandlerEnd, duration: Option<Duration>) {
        self.reported = true;
        if self.observed.is_none() && self.span.is_disabled() {
            return;
        }
        let observed = self.observed.take();
        let outcome = Outcome::Handled(Handled {
            end,
            duration: duration.unwrap_or_default(),
            store_error: observed.as_ref().is_some_and(|o| o.store_error),
        });
        record(&self.span, outcome);
        if let Some(observed) = observed {
            observed.observer.outcome(outcome);
        }
    }
}

/// Completes (`success`) or abandons a claim, and reports the store call to `observer`.
///
/// The claim has left its ticket, so a dropped ticket can no longer free it: the call
/// must run to its end even if the request is dropped meanwhile (the client went away
/// while Redis was reconnecting), or retries would get 409 until the lease ends. So it
/// is polled once here, which is all a store that answers at once (the in-memory one)
/// needs, and otherwise finishes on a task of the current tokio runtime that this waits
/// for and that outlives this future. Without a runtime it is simply awaited.
async fn settle<D: DedupStore>(
    held: Held<D>,
    success: bool,
    observer: Option<Arc<dyn Observer>>,
    started: Option<Instant>,
) {
    let mut call = Box::pin(async move {
        let (operation, result) = if success {
            // On failure the handler did its work and the sender gets its 2xx; only
            // the memory of it is lost, and the claim expires after its lease.
            let result = held.store.complete(&held.key, held.claim).await;
            if let Err(error) = &result {
                tracing::error!(%error, key = held.key, "could not mark a processed webhook as done");
            }
            (StoreOperation::Complete, result)
        } else {
            tracing::info!(
                key = held.key,
                "webhook handler failed; the event stays retryable"
            );
            let result = held.store.abandon(&held.key, held.claim).await;
            if let Err(error) = &result {
                tracing::warn!(%error, key = held.key, "could not free a dedup claim; it expires after its lease");
            }
            (StoreOperation::Abandon, result)
        };
        if let (Some(observer), Some(started)) = (observer, started) {
            observer.store(operation, started.elapsed(), result.is_ok());
            observer.claim_ended();
        }
    });
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(call.as_mut().poll(cx))).await;
    if first.is_ready() {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        // A panic in the store call is the store's: it ends the task, not the request.
        Ok(runtime) => {
            let _ = runtime.spawn(call).await;
        }
        Err(_) => call.await,
    }
}

impl<D: DedupStore> Drop for Ticket<D> {
    fn drop(&mut self) {
        if let Some(held) = self.claim.take() {
            tracing::warn!(
                key = held.key,
                "webhook handler did not finish (panic, timeout or client gone); the event stays retryable"
            );
            held.store.abandon_detached(held.key, held.claim);
            if let Some(observed) = &self.observed {
                observed.observer.claim_ended();
            }
        }
        if !self.reported {
            let handler = self.observed.as_ref().map(|o| o.started.elapsed());
            self.report(HandlerEnd::Dropped, handler);
        }
    }
}

impl<D: DedupStore> fmt::Debug for Ticket<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("key", &self.claim.as_ref().map(|h| &h.key))
            .finish()
    }
}
