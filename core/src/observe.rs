//! Watching what the gate decides: an [`Observer`] hears each request's [`Outcome`]
//! exactly once, and how long verification, the store and the handler took.
//!
//! Set one with [`GateBuilder::observer`](crate::GateBuilder::observer). Every method has a no-op default, so implement only what you need;
//! a closure taking an [`Outcome`] is an observer too:
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//! use mapping_webhooks::{Gate, Outcome, Secret};
//!
//! let refused = Arc::new(AtomicUsize::new(0));
//! let counter = Arc::clone(&refused);
//! let gate = Gate::builder().secret("whsec_test").observer(move |outcome: Outcome| {
//!     if let Outcome::Refused(refusal) = outcome {
//!         counter.fetch_add(1, Ordering::Relaxed);
//!         eprintln!("refused: {}", refusal.as_str());
//!     }
//! }).build()?;
//! # Ok::<(), mapping_webhooks::ConfigError>(())
//! ```
//!
//! Without an observer the gate reads no clock and calls nothing: observing costs only
//! when it is asked for. With the `metrics` feature, `MetricsObserver`
//! records everything with the `metrics` facade.
//!
//! When each outcome is reported:
//! - a refusal, a duplicate, a copy in flight and a store failure answered 503: when the
//!   gate decides it, before the adapter answers;
//! - a request whose handler ran: when its [`Ticket`](crate::adapter::Ticket) is finished, or
//!   dropped unfinished (the handler panicked, the client went away, a timeout fired).

use std::fmt;
use std::time::Duration;

use crate::{MatchedSecret, VerifyError};

/// Hears what the gate decides. Every method has a no-op default.
///
/// Methods are called on the request's task, so keep them short: update a counter,
/// never block. None of the values carries a secret, a signature or an event id.
pub trait Observer: Send + Sync + 'static {
    /// Each request's outcome, exactly once.
    fn outcome(&self, outcome: Outcome) {
        let _ = outcome;
    }

    /// A body's signature was checked and, if it matched, its envelope read: how long
    /// that took, and which secret matched (`None` when none did).
    fn verification(&self, duration: Duration, secret: Option<MatchedSecret>) {
        let _ = (duration, secret);
    }

    /// A dedup store call returned: which one, how long it took, and whether it
    /// succeeded. (The abandon that a dropped ticket spawns in the background is not
    /// timed.)
    fn store(&self, operation: StoreOperation, duration: Duration, ok: bool) {
        let _ = (operation, duration, ok);
    }

    /// A request took a dedup claim: its handler is about to run. Each is followed by
    /// one [`claim_ended`](Self::claim_ended), so the difference is the claims in flight.
    fn claim_started(&self) {}

    /// A claim taken by [`claim_started`](Self::claim_started) was completed or
    /// abandoned.
    fn claim_ended(&self) {}
}

impl<F> Observer for F
where
    F: Fn(Outcome) + Send + Sync + 'static,
{
    fn outcome(&self, outcome: Outcome) {
        self(outcome);
    }
}

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The handler ran; how it ended and how long it took.
    Handled(Handled),
    /// The event was already processed: answered 200 without the handler.
    Duplicate,
    /// Another copy of the event was being processed: answered 409.
    InFlight,
    /// The dedup store failed and the request was answered 503. (With
    /// [`OnStoreError::PassThrough`](crate::OnStoreError) the handler runs instead, and
    /// the outcome is [`Handled`](Self::Handled) with
    /// [`store_error`](Handled::store_error) set.)
    StoreUnavailable,
    /// The request was refused (4xx) before the handler.
    Refused(Refusal),
    /// Verified and stored for later processing (the durable inbox answered 202): no
    /// handler ran in the request; the inbox's worker reports its attempts on its own.
    Queued,
}

impl Outcome {
    /// A stable, low-cardinality name: `processed` (the handler answered 2xx),
    /// `handler_failed` (any other status, an error, a panic or a dropped future),
    /// `duplicate`, `in_flight`, `refused`, `store_error` (answered 503, or passed
    /// through to the handler), or `queued` (stored by the durable inbox for its worker).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Handled(h) if h.store_error => "store_error",
            Self::Handled(h) if h.end.is_success() => "processed",
            Self::Handled(_) => "handler_failed",
            Self::Duplicate => "duplicate",
            Self::InFlight => "in_flight",
            Self::StoreUnavailable => "store_error",
            Self::Refused(_) => "refused",
            Self::Queued => "queued",
        }
    }

    /// A stable, low-cardinality reason within [`as_str`](Self::as_str): the
    /// [`Refusal`] for `refused`; `store_unavailable` or `passed_through` for
    /// `store_error`; the status class (`2xx` … `5xx`, `1xx`), `error`, `panicked` or
    /// `dropped` for a handler; `stored` for `queued`; `already_processed` and
    /// `in_flight` otherwise.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Handled(h) if h.store_error => "passed_through",
            Self::Handled(h) => h.end.as_str(),
            Self::Duplicate => "already_processed",
            Self::InFlight => "in_flight",
            Self::StoreUnavailable => "store_unavailable",
            Self::Refused(r) => r.as_str(),
            Self::Queued => "stored",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.as_str(), self.reason())
    }
}

/// How a handler that ran ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Handled {
    /// How it ended.
    pub end: HandlerEnd,
    /// From the gate's admission to the ticket's finish (or drop).
    pub duration: Duration,
    /// The store failed and [`OnStoreError::PassThrough`](crate::OnStoreError) ran the
    /// handler without deduplication.
    pub store_error: bool,
}

/// How a handler ended, as its [`Ticket`](crate::adapter::Ticket) was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandlerEnd {
    /// [`Ticket::finish`](crate::adapter::Ticket::finish) with this status (2xx completed the
    /// event).
    Status(u16),
    /// [`Ticket::succeeded`](crate::adapter::Ticket::succeeded), without a status.
    Succeeded,
    /// [`Ticket::failed`](crate::adapter::Ticket::failed): the handler returned an error.
    Failed,
    /// [`Ticket::panicked`](crate::adapter::Ticket::panicked): the adapter caught a panic.
    Panicked,
    /// The ticket was dropped unfinished: a panic that unwound through the adapter, a
    /// client that went away, a timeout.
    Dropped,
}

impl HandlerEnd {
    /// Whether the event was completed (a 2xx status, or `succeeded`).
    pub fn is_success(&self) -> bool {
        match self {
            Self::Status(status) => (200..300).contains(status),
            Self::Succeeded => true,
            Self::Failed | Self::Panicked | Self::Dropped => false,
        }
    }

    /// `1xx` … `5xx` (`2xx` for `succeeded`; `other` for a status outside 100–599),
    /// `error`, `panicked` or `dropped`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Status(100..=199) => "1xx",
            Self::Status(200..=299) | Self::Succeeded => "2xx",
            Self::Status(300..=399) => "3xx",
            Self::Status(400..=499) => "4xx",
            Self::Status(500..=599) => "5xx",
            Self::Status(_) => "other",
            Self::Failed => "error",
            Self::Panicked => "panicked",
            Self::Dropped => "dropped",
        }
    }
}

/// Why a request was refused: one value per kind of [`VerifyError`], with a body read
/// that timed out told apart from one that broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// No `X-Webhook-Signature` header.
    MissingHeader,
    /// More than one.
    RepeatedHeader,
    /// One that does not parse.
    MalformedHeader,
    /// A timestamp older than the tolerance.
    TimestampTooOld,
    /// A timestamp further ahead than the tolerance.
    TimestampInFuture,
    /// No signature matches a secret.
    SignatureMismatch,
    /// Signed, but not an envelope.
    NotAnEnvelope,
    /// Larger than the body limit (declared or while streaming).
    BodyTooLarge,
    /// The body did not arrive within the read timeout.
    ReadTimeout,
    /// The body's transfer broke.
    BodyRead,
    /// A gate for many tenants found no tenant key, or the resolver does not know it (404).
    UnknownTenant,
    /// A gate for many tenants could not look the tenant's secrets up (503).
    TenantLookupFailed,
}

impl Refusal {
    /// The refusal for `error`.
    pub fn of(error: &VerifyError) -> Self {
        match error {
            VerifyError::MissingHeader | VerifyError::MissingSchemeHeader { .. } => {
                Self::MissingHeader
            }
            VerifyError::RepeatedHeader | VerifyError::RepeatedSchemeHeader { .. } => {
                Self::RepeatedHeader
            }
            VerifyError::MalformedHeader(_) | VerifyError::MalformedSchemeHeader { .. } => {
                Self::MalformedHeader
            }
            VerifyError::TimestampTooOld { .. } => Self::TimestampTooOld,
            VerifyError::TimestampInFuture { .. } => Self::TimestampInFuture,
            VerifyError::SignatureMismatch => Self::SignatureMismatch,
            VerifyError::NotAnEnvelope(_) | VerifyError::MissingEventId { .. } => {
                Self::NotAnEnvelope
            }
            VerifyError::BodyTooLarge { .. } => Self::BodyTooLarge,
            VerifyError::BodyRead { timed_out: true } => Self::ReadTimeout,
            VerifyError::BodyRead { timed_out: false } => Self::BodyRead,
        }
    }

    /// Every refusal, in the order the checks run.
    pub const ALL: [Self; 12] = [
        Self::BodyTooLarge,
        Self::MissingHeader,
        Self::RepeatedHeader,
        Self::MalformedHeader,
        Self::TimestampTooOld,
        Self::TimestampInFuture,
        Self::ReadTimeout,
        Self::BodyRead,
        Self::UnknownTenant,
        Self::TenantLookupFailed,
        Self::SignatureMismatch,
        Self::NotAnEnvelope,
    ];

    /// A stable snake-case name (the [`VerifyError::code`], with `read_timeout` for a
    /// read that timed out).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::MissingHeader => "missing_header",
            Self::RepeatedHeader => "repeated_header",
            Self::MalformedHeader => "malformed_header",
            Self::TimestampTooOld => "timestamp_too_old",
            Self::TimestampInFuture => "timestamp_in_future",
            Self::SignatureMismatch => "signature_mismatch",
            Self::NotAnEnvelope => "not_an_envelope",
            Self::BodyTooLarge => "body_too_large",
            Self::ReadTimeout => "read_timeout",
            Self::BodyRead => "body_read",
            Self::UnknownTenant => "unknown_tenant",
            Self::TenantLookupFailed => "tenant_lookup_failed",
        }
    }
}

/// A dedup store call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreOperation {
    /// [`DedupStore::begin`](crate::DedupStore::begin): claim the event.
    Begin,
    /// [`DedupStore::complete`](crate::DedupStore::complete): remember it as done.
    Complete,
    /// [`DedupStore::abandon`](crate::DedupStore::abandon): free the claim.
    Abandon,
}

impl StoreOperation {
    /// Every operation.
    pub const ALL: [Self; 3] = [Self::Begin, Self::Complete, Self::Abandon];

    /// `begin`, `complete` or `abandon`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Begin => "begin",
            Self::Complete => "complete",
            Self::Abandon => "abandon",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::adapter::Ticket;
    use crate::{
        Admission, Begin, Claim, DedupStore, Gate, ManualClock, MemoryStore, OnStoreError, Secret,
        Signer, StoreError, UnsignedHeaders,
    };

    const SECRET: &str = "whsec_observe_test_0123456789abcdef";
    const PREVIOUS: &str = "whsec_observe_previous_0123456789abcdef";
    const NOW: u64 = 1_717_250_400;

    /// Everything an observer heard, in order.
    #[derive(Debug, Clone, PartialEq)]
    enum Heard {
        Outcome(Outcome),
        Verification(Option<MatchedSecret>),
        Store(StoreOperation, bool),
        ClaimStarted,
        ClaimEnded,
    }

    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Heard>>>);

    impl Recorder {
        /// Takes what was heard since the last call, with durations checked and dropped.
        fn take(&self) -> Vec<Heard> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    impl Observer for Recorder {
        fn outcome(&self, outcome: Outcome) {
            self.0.lock().unwrap().push(Heard::Outcome(outcome));
        }
        fn verification(&self, _duration: Duration, secret: Option<MatchedSecret>) {
            self.0.lock().unwrap().push(Heard::Verification(secret));
        }
        fn store(&self, operation: StoreOperation, _duration: Duration, ok: bool) {
            self.0.lock().unwrap().push(Heard::Store(operation, ok));
        }
        fn claim_started(&self) {
            self.0.lock().unwrap().push(Heard::ClaimStarted);
        }
        fn claim_ended(&self) {
            self.0.lock().unwrap().push(Heard::ClaimEnded);
        }
    }

    /// A memory store whose `begin` can be made to fail.
    #[derive(Default)]
    struct Flaky {
        inner: MemoryStore,
        fail: bool,
    }

    impl DedupStore for Flaky {
        async fn begin(&self, key: &str) -> Result<Begin, StoreError> {
            if self.fail {
                return Err(StoreError::backend("down"));
            }
            self.inner.begin(key).await
        }
        async fn complete(&self, key: &str, claim: Claim) -> Result<(), StoreError> {
            self.inner.complete(key, claim).await
        }
        async fn abandon(&self, key: &str, claim: Claim) -> Result<(), StoreError> {
            self.inner.abandon(key, claim).await
        }
    }

    /// Ends a ticket one way.
    type Finish = fn(Ticket<Flaky>) -> std::pin::Pin<Box<dyn Future<Output = ()>>>;

    fn body(event_id: &str) -> Vec<u8> {
        format!(r#"{{"id":"del_1","eventId":"{event_id}","type":"mapping.completed","data":{{}}}}"#)
            .into_bytes()
    }

    fn sign(secret: &str, body: &[u8], t: u64) -> String {
        Signer::new(Secret::new(secret).unwrap()).sign(body, t)
    }

    fn builder(recorder: &Recorder, store: Flaky) -> crate::GateBuilder<Flaky> {
        Gate::builder()
            .secret(SECRET)
            .previous_secret(PREVIOUS)
            .clock(ManualClock::at_secs(NOW))
            .observer(recorder.clone())
            .dedup(store)
    }

    fn gate(recorder: &Recorder, store: Flaky) -> Gate<Flaky> {
        builder(recorder, store).build().unwrap()
    }

    async fn admit<D: DedupStore>(gate: &Gate<D>, secret: &str, body: &[u8]) -> Admission<D> {
        let header = sign(secret, body, NOW);
        gate.admit([header.as_bytes()], UnsignedHeaders::default(), body)
            .await
    }

    fn ticket<D: DedupStore>(admission: Admission<D>) -> Ticket<D> {
        match admission {
            Admission::Process { ticket, .. } => ticket,
            Admission::Reply(r) => panic!("replied {}", r.status()),
        }
    }

    fn handled(end: HandlerEnd, store_error: bool) -> impl Fn(&Heard) -> bool {
        move |heard| matches!(heard, Heard::Outcome(Outcome::Handled(h)) if h.end == end && h.store_error == store_error)
    }

    /// One outcome per request, and it is the last thing heard for it.
    fn only_outcome(heard: &[Heard]) -> Outcome {
        let outcomes: Vec<_> = heard
            .iter()
            .filter_map(|h| match h {
                Heard::Outcome(o) => Some(*o),
                _ => None,
            })
            .collect();
        assert_eq!(outcomes.len(), 1, "{heard:?}");
        assert!(matches!(heard.last(), Some(Heard::Outcome(_))), "{heard:?}");
        outcomes[0]
    }

    #[tokio::test]
    async fn every_refusal_is_reported_once_with_its_reason() {
        let recorder = Recorder::default();
        let gate = builder(&recorder, Flaky::default())
            .body_limit(1000)
            .build()
            .unwrap();
        let u = UnsignedHeaders::default();
        let b = body("evt_refused");
        let good = sign(SECRET, &b, NOW);
        let tol = crate::DEFAULT_TOLERANCE.as_secs();
        let stale = sign(SECRET, &b, NOW - tol - 1);
        let early = sign(SECRET, &b, NOW + tol + 1);

        let heads = [
            (vec![], Some(1001), Refusal::BodyTooLarge),
            (vec![], None, Refusal::MissingHeader),
            (
                vec![good.as_bytes(), good.as_bytes()],
                None,
                Refusal::RepeatedHeader,
            ),
            (vec![b"t=soon"], None, Refusal::MalformedHeader),
            (vec![stale.as_bytes()], None, Refusal::TimestampTooOld),
            (vec![early.as_bytes()], None, Refusal::TimestampInFuture),
        ];
        for (headers, length, refusal) in heads {
            assert!(gate.check_head(headers, length, u).is_err());
            assert_eq!(recorder.take(), [Heard::Outcome(Outcome::Refused(refusal))]);
        }
        let none: [&[u8]; 0] = [];
        let _ = gate.admit(none, u, &b).await;
        assert_eq!(
            recorder.take(),
            [Heard::Outcome(Outcome::Refused(Refusal::MissingHeader))]
        );

        // Found by an adapter while reading the body.
        for (error, refusal) in [
            (
                VerifyError::BodyTooLarge { limit: 1000 },
                Refusal::BodyTooLarge,
            ),
            (
                VerifyError::BodyRead { timed_out: true },
                Refusal::ReadTimeout,
            ),
            (
                VerifyError::BodyRead { timed_out: false },
                Refusal::BodyRead,
            ),
        ] {
            let reply = gate.refuse(error, u);
            assert_eq!(recorder.take(), [Heard::Outcome(Outcome::Refused(refusal))]);
            let outcome = Outcome::Refused(refusal);
            assert_eq!(
                (outcome.as_str(), outcome.reason()),
                ("refused", refusal.as_str())
            );
            assert_eq!(reply.status() == 408, refusal == Refusal::ReadTimeout);
        }

        // Found with the body: verification is timed, the store never touched.
        let forged = sign("whsec_attacker", &b, NOW);
        let _ = gate.admit([forged.as_bytes()], u, &b).await;
        assert_eq!(
            recorder.take(),
            [
                Heard::Verification(None),
                Heard::Outcome(Outcome::Refused(Refusal::SignatureMismatch))
            ]
        );
        let _ = admit(&gate, SECRET, br#"{"eventId":1}"#).await;
        assert_eq!(
            recorder.take(),
            [
                Heard::Verification(Some(MatchedSecret::Current)),
                Heard::Outcome(Outcome::Refused(Refusal::NotAnEnvelope))
            ]
        );
    }

    #[tokio::test]
    async fn every_handled_outcome_is_reported_once() {
        let recorder = Recorder::default();
        let gate = gate(&recorder, Flaky::default());
        let b = body("evt_handled");

        // A 500, an error, a caught panic and a drop each abandon the claim.
        let ends: [(HandlerEnd, Finish); 4] = [
            (HandlerEnd::Status(500), |t| Box::pin(t.finish(500))),
            (HandlerEnd::Failed, |t| Box::pin(t.failed())),
            (HandlerEnd::Panicked, |t| Box::pin(t.panicked())),
            (HandlerEnd::Dropped, |t| {
                drop(t);
                Box::pin(async {})
            }),
        ];
        for (end, finish) in ends {
            let t = ticket(admit(&gate, SECRET, &b).await);
            assert_eq!(
                recorder.take(),
                [
                    Heard::Verification(Some(MatchedSecret::Current)),
                    Heard::Store(StoreOperation::Begin, true),
                    Heard::ClaimStarted,
                ]
            );
            finish(t).await;
            let heard = recorder.take();
            let outcome = only_outcome(&heard);
            assert!(handled(end, false)(&heard[heard.len() - 1]), "{heard:?}");
            assert_eq!(outcome.as_str(), "handler_failed");
            assert_eq!(outcome.reason(), end.as_str());
            assert!(heard.contains(&Heard::ClaimEnded), "{heard:?}");
            if end != HandlerEnd::Dropped {
                // A dropped ticket's abandon runs in the background, untimed.
                assert!(heard.contains(&Heard::Store(StoreOperation::Abandon, true)));
            }
            // Let a detached abandon run before the next copy.
            tokio::task::yield_now().await;
        }

        // A 2xx completes; the copy in flight before and the duplicate after are reported.
        let t = ticket(admit(&gate, SECRET, &b).await);
        recorder.take();
        let _ = admit(&gate, SECRET, &b).await;
        assert_eq!(only_outcome(&recorder.take()), Outcome::InFlight);
        t.finish(204).await;
        let heard = recorder.take();
        assert_eq!(
            heard[..2],
            [
                Heard::Store(StoreOperation::Complete, true),
                Heard::ClaimEnded
            ]
        );
        let outcome = only_outcome(&heard);
        assert_eq!((outcome.as_str(), outcome.reason()), ("processed", "2xx"));
        let _ = admit(&gate, SECRET, &b).await;
        let heard = recorder.take();
        assert_eq!(only_outcome(&heard), Outcome::Duplicate);
        assert!(!heard.contains(&Heard::ClaimStarted));

        // The previous secret is named.
        let t = ticket(admit(&gate, PREVIOUS, &body("evt_prev")).await);
        t.succeeded().await;
        let heard = recorder.take();
        assert_eq!(
            heard[0],
            Heard::Verification(Some(MatchedSecret::Previous(0)))
        );
        assert!(handled(HandlerEnd::Succeeded, false)(heard.last().unwrap()));
    }

    #[tokio::test]
    async fn store_errors_are_reported_once_whether_answered_or_passed_through() {
        let recorder = Recorder::default();
        let failing = || Flaky {
            fail: true,
            ..Flaky::default()
        };
        let gate = gate(&recorder, failing());
        let _ = admit(&gate, SECRET, &body("evt_down")).await;
        let heard = recorder.take();
        assert!(heard.contains(&Heard::Store(StoreOperation::Begin, false)));
        let outcome = only_outcome(&heard);
        assert_eq!(outcome, Outcome::StoreUnavailable);
        assert_eq!(
            (outcome.as_str(), outcome.reason()),
            ("store_error", "store_unavailable")
        );

        let gate = builder(&recorder, failing())
            .on_store_error(OnStoreError::PassThrough)
            .build()
            .unwrap();
        let t = ticket(admit(&gate, SECRET, &body("evt_down")).await);
        assert!(!t.is_claimed());
        t.finish(200).await;
        let heard = recorder.take();
        assert!(!heard.contains(&Heard::ClaimStarted), "no claim was taken");
        let outcome = only_outcome(&heard);
        assert!(handled(HandlerEnd::Status(200), true)(
            heard.last().unwrap()
        ));
        assert_eq!(
            (outcome.as_str(), outcome.reason()),
            ("store_error", "passed_through")
        );

        // Without dedup: handled, no store call, no claim.
        let gate = builder(&recorder, Flaky::default())
            .without_dedup()
            .build()
            .unwrap();
        let t = ticket(admit(&gate, SECRET, &body("evt_nodedup")).await);
        drop(t);
        let heard = recorder.take();
        assert_eq!(heard.len(), 2, "{heard:?}");
        assert!(handled(HandlerEnd::Dropped, false)(&heard[1]));
    }

    /// A sink answering as it is told: stored, stored before, or failed.
    struct Told(std::sync::Mutex<Vec<Result<crate::Stored, &'static str>>>);

    impl crate::Sink for Told {
        async fn store(
            &self,
            _: crate::SinkDelivery<'_>,
        ) -> Result<crate::Stored, Box<dyn std::error::Error + Send + Sync>> {
            Ok(self.0.lock().unwrap().remove(0)?)
        }
    }

    #[tokio::test]
    async fn a_delivery_stored_in_a_sink_reports_that_outcome_once() {
        let recorder = Recorder::default();
        let gate = builder(&recorder, Flaky::default())
            .without_dedup()
            .build()
            .unwrap();
        let sink = Told(Mutex::new(vec![
            Ok(crate::Stored::New),
            Ok(crate::Stored::AlreadyStored),
            Err("disk full"),
        ]));
        let b = body("evt_queued");
        for (outcome, status) in [
            (Outcome::Queued, 202),
            (Outcome::Duplicate, 200),
            (Outcome::StoreUnavailable, 503),
        ] {
            let header = sign(SECRET, &b, NOW);
            let reply = gate
                .admit_into(&sink, [header.as_bytes()], UnsignedHeaders::default(), &b)
                .await;
            assert_eq!(reply.status(), status);
            assert_eq!(
                recorder.take(),
                [
                    Heard::Verification(Some(MatchedSecret::Current)),
                    Heard::Outcome(outcome)
                ]
            );
        }
        assert_eq!(
            (Outcome::Queued.as_str(), Outcome::Queued.reason()),
            ("queued", "stored")
        );

        // With a claim held: a failed store frees it (the retry is stored), a stored
        // delivery completes it (the next copy is a duplicate without a store call).
        let gate = self::gate(&recorder, Flaky::default());
        let sink = Told(Mutex::new(vec![Err("disk full"), Ok(crate::Stored::New)]));
        let b = body("evt_claimed");
        let mut replies = Vec::new();
        for _ in 0..3 {
            let header = sign(SECRET, &b, NOW);
            let reply = gate
                .admit_into(&sink, [header.as_bytes()], UnsignedHeaders::default(), &b)
                .await;
            replies.push(reply.status());
        }
        assert_eq!(replies, [503, 202, 200]);
        let heard = recorder.take();
        let ended = heard.iter().filter(|h| **h == Heard::ClaimEnded).count();
        assert_eq!(ended, 2, "{heard:?}");
        assert!(sink.0.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn claims_in_flight_rise_and_fall() {
        let recorder = Recorder::default();
        let gate = gate(&recorder, Flaky::default());
        let tickets: Vec<_> = (0..3)
            .map(|i| body(&format!("evt_claim_{i}")))
            .collect::<Vec<_>>();
        let mut held = Vec::new();
        for b in &tickets {
            held.push(ticket(admit(&gate, SECRET, b).await));
        }
        let in_flight = |heard: &[Heard]| {
            heard.iter().filter(|h| **h == Heard::ClaimStarted).count() as i64
                - heard.iter().filter(|h| **h == Heard::ClaimEnded).count() as i64
        };
        let mut heard = recorder.take();
        assert_eq!(in_flight(&heard), 3);
        let mut held = held.into_iter();
        held.next().unwrap().finish(200).await;
        drop(held.next());
        held.next().unwrap().finish(503).await;
        heard.extend(recorder.take());
        assert_eq!(in_flight(&heard), 0);
    }

    #[tokio::test]
    async fn a_closure_hears_outcomes_and_handled_durations_are_measured() {
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&outcomes);
        let gate = Gate::builder()
            .secret(SECRET)
            .clock(ManualClock::at_secs(NOW))
            .observer(move |o: Outcome| sink.lock().unwrap().push(o))
            .build()
            .unwrap();
        let t = ticket(admit(&gate, SECRET, &body("evt_closure")).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
        t.finish(200).await;
        let outcomes = outcomes.lock().unwrap();
        let [Outcome::Handled(h)] = outcomes.as_slice() else {
            panic!("{outcomes:?}")
        };
        assert!(h.duration >= Duration::from_millis(20), "{h:?}");
    }

    #[test]
    fn names_are_stable_and_distinct() {
        let names: std::collections::HashSet<_> =
            Refusal::ALL.iter().map(Refusal::as_str).collect();
        assert_eq!(names.len(), Refusal::ALL.len());
        assert!(Refusal::ALL.contains(&Refusal::of(&VerifyError::SignatureMismatch)));
        assert_eq!(HandlerEnd::Status(404).as_str(), "4xx");
        assert_eq!(HandlerEnd::Status(42).as_str(), "other");
        assert!(!HandlerEnd::Status(302).is_success());
    }
}
