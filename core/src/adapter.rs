//! For adapter authors: the request pipeline a framework adapter drives, and the pieces
//! every adapter shares (the typed payload's refusal, the event-type table). An app never
//! needs these; the adapter crates do not re-export them.
//!
//! An adapter implements [`RequestHead`] over its request, opens the pipeline with
//! [`Gate::intake`](crate::Gate::intake), pushes the body's chunks within
//! [`Intake::read_timeout`], and either runs the handler with what
//! [`Intake::admit`] hands back (then [`Ticket::finish`]es it with the handler's status),
//! or stores the request with [`Intake::admit_into`]. Every [`Reply`](crate::Reply) it
//! gets is answered as it is: the adapter only turns it into its framework's response.

mod declare;

#[doc(hidden)]
pub use declare::__private;

use std::collections::HashMap;
use std::fmt;

pub use crate::dedup::{Begin, Claim};
pub use crate::gate::{Admitted, Intake, RequestHead, Ticket};
use crate::{Envelope, FromEventData, PayloadError, Verified};

/// Why a verified body was not handed to a handler taking a typed payload.
#[derive(Debug)]
#[non_exhaustive]
pub enum PayloadRefusal {
    /// The event is of another type than the handler takes: acknowledged (200) without
    /// running it, since a refusal would be retried until the delivery is dead.
    OtherEventType {
        /// The event type the handler's payload type belongs to.
        expected: &'static str,
        /// The event's type.
        event_type: String,
    },
    /// The payload does not match the handler's type: 422, and the event stays retryable
    /// (a fixed handler takes the sender's retry).
    InvalidPayload(serde_json::Error),
}

impl PayloadRefusal {
    /// The HTTP status to answer with: 200 for another event type, 422 for a payload
    /// that does not match.
    pub fn status(&self) -> u16 {
        match self {
            Self::OtherEventType { .. } => 200,
            Self::InvalidPayload(_) => 422,
        }
    }
}

impl fmt::Display for PayloadRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OtherEventType {
                expected,
                event_type,
            } => __private::other_event_type(f, expected, event_type),
            Self::InvalidPayload(e) => __private::invalid_payload(f, e),
        }
    }
}

impl std::error::Error for PayloadRefusal {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::OtherEventType { .. } => None,
            Self::InvalidPayload(e) => Some(e),
        }
    }
}

/// Parses a verified body as the envelope a handler takes, logging a refusal as every
/// adapter does.
///
/// # Errors
///
/// [`PayloadRefusal::OtherEventType`] for an event of another type than `T`'s,
/// [`PayloadRefusal::InvalidPayload`] for a payload that does not match `T`.
pub fn read_payload<T: FromEventData>(
    verified: &Verified,
    body: &[u8],
) -> Result<Envelope<T>, PayloadRefusal> {
    match Envelope::from_verified_body(body) {
        Ok(envelope) => Ok(envelope),
        Err(PayloadError::OtherType {
            expected,
            event_type,
        }) => {
            tracing::warn!(
                event_type,
                expected,
                event_id = verified.event_id,
                "webhook event type not taken by this handler; acknowledged (200) without running it. Take VerifiedEvent<Event> or use an EventRouter to handle every subscribed type"
            );
            Err(PayloadRefusal::OtherEventType {
                expected,
                event_type,
            })
        }
        Err(error) => {
            tracing::warn!(
                %error,
                event_id = verified.event_id,
                delivery_id = verified.delivery_id,
                "verified webhook payload does not match the handler's type; answered 422, the event stays retryable"
            );
            Err(PayloadRefusal::InvalidPayload(match error {
                PayloadError::Invalid(e) => e,
                other => serde::de::Error::custom(other),
            }))
        }
    }
}

/// The table behind an `EventRouter`: a handler per event type, and an optional fallback.
///
/// ```
/// use mapping_webhooks::Verified;
/// use mapping_webhooks::adapter::{EventTable, Route};
///
/// let mut table = EventTable::new();
/// table.insert("mapping.completed", "on_completed");
/// let verified = Verified::new("evt_1", "mapping.completed", "del_1", 1_717_250_400);
/// assert!(matches!(table.route(&verified), Route::Handler(&"on_completed")));
/// let other = Verified::new("evt_2", "mapping.other", "del_2", 1_717_250_400);
/// assert!(matches!(table.route(&other), Route::Unrouted(_)));
/// ```
#[derive(Clone)]
pub struct EventTable<H> {
    routes: HashMap<String, H>,
    fallback: Option<H>,
}

/// Where [`EventTable::route`] sends an event.
#[derive(Debug)]
pub enum Route<'a, H> {
    /// To this handler.
    Handler(&'a H),
    /// Nowhere: answer 200 with this reason (it was logged), so the sender does not retry
    /// an event the app does not handle.
    Unrouted(String),
}

impl<H> Default for EventTable<H> {
    fn default() -> Self {
        Self::new()
    }
}

impl<H> EventTable<H> {
    /// An empty table: every event is unrouted.
    pub fn new() -> Self {
        Self {
            routes: HashMap::new(),
            fallback: None,
        }
    }

    /// Routes `event_type` to `handler`.
    ///
    /// # Panics
    ///
    /// When `event_type` has a handler already: two handlers for one type is a mistake
    /// in the app's setup, found when it is built.
    pub fn insert(&mut self, event_type: impl Into<String>, handler: H) {
        let event_type = event_type.into();
        assert!(
            !self.routes.contains_key(&event_type),
            "EventRouter: event type {event_type:?} already has a handler"
        );
        self.routes.insert(event_type, handler);
    }

    /// Routes every event type without a handler of its own to `handler`.
    pub fn set_fallback(&mut self, handler: H) {
        self.fallback = Some(handler);
    }

    /// The event types with a handler, in no order.
    pub fn event_types(&self) -> impl Iterator<Item = &str> {
        self.routes.keys().map(String::as_str)
    }

    /// Where `verified`'s event goes.
    pub fn route(&self, verified: &Verified) -> Route<'_, H> {
        if let Some(handler) = self
            .routes
            .get(&verified.event_type)
            .or(self.fallback.as_ref())
        {
            return Route::Handler(handler);
        }
        tracing::info!(
            event_type = verified.event_type,
            event_id = verified.event_id,
            "no handler for this webhook event type; acknowledged (200) so the sender does not retry it"
        );
        Route::Unrouted(format!(
            "no handler for event type {:?}; acknowledged",
            verified.event_type
        ))
    }
}

impl<H> fmt::Debug for EventTable<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut types: Vec<&str> = self.event_types().collect();
        types.sort_unstable();
        f.debug_struct("EventTable")
            .field("types", &types)
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}
