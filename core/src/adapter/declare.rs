//! The types every adapter declares alike, written once: each adapter invokes these
//! macros to declare its own `VerifiedEvent<T>` and `VerifiedEventRejection` (its own,
//! so it can implement its framework's extractor and response traits on them) and its
//! `testing::SignedRequest`, then adds only its framework's glue.

/// What the declared types name, reachable from the adapter crates through `$crate`.
#[doc(hidden)]
pub mod __private {
    pub use serde::Serialize;
    pub use serde::de::Error as DeError;
    pub use serde_json::{Error as JsonError, Value};
    pub use tracing::error;

    /// The message of a typed handler given another event type, for every adapter's
    /// rejection and for [`PayloadRefusal`](crate::adapter::PayloadRefusal): one text.
    pub fn other_event_type(
        f: &mut std::fmt::Formatter<'_>,
        expected: &str,
        event_type: &str,
    ) -> std::fmt::Result {
        write!(
            f,
            "event type {event_type:?} acknowledged without running the handler, which takes only {expected:?}"
        )
    }

    /// The message of a payload that does not match the handler's type.
    pub fn invalid_payload(f: &mut std::fmt::Formatter<'_>, error: &JsonError) -> std::fmt::Result {
        write!(
            f,
            "webhook payload does not match the expected type: {error}"
        )
    }
}

/// Declares `VerifiedEvent<T = serde_json::Value>` (the envelope, with `data` parsed as
/// `T` from the verified bytes, and the [`Verified`](crate::Verified) metadata) and its
/// rejection enum, for an adapter crate.
///
/// ```ignore
/// mapping_webhooks::declare_verified_event! {
///     /// The adapter's own docs for the extractor, with its framework's example.
///     pub struct VerifiedEvent;
///     /// The adapter's own docs for the rejection.
///     pub enum VerifiedEventRejection;
///     crate = "mapping_webhooks_tower",
///     status = http::StatusCode,
///     missing_layer = "VerifiedEvent needs the WebhookVerify layer on this route: …",
/// }
/// ```
///
/// The adapter then implements its extractor with `VerifiedEvent::from_request_parts(
/// verified, &body)`, or `VerifiedEventRejection::missing_layer(path)` when the request
/// did not pass through its middleware, and its response trait with
/// `VerifiedEventRejection::status` and `Display`.
#[macro_export]
macro_rules! declare_verified_event {
    (
        $(#[$event_meta:meta])*
        pub struct $event:ident;
        $(#[$rejection_meta:meta])*
        pub enum $rejection:ident;
        crate = $krate:literal,
        status = $status:ty,
        missing_layer = $missing:literal $(,)?
    ) => {
        $(#[$event_meta])*
        #[derive(Debug, Clone)]
        #[non_exhaustive]
        pub struct $event<T = $crate::adapter::__private::Value> {
            /// The envelope, parsed from the verified bytes.
            pub envelope: $crate::Envelope<T>,
            /// What the adapter verified: the signed timestamp, which secret matched, and
            /// the event id, type and delivery id from the signed body.
            pub verified: $crate::Verified,
        }

        impl<T> $event<T> {
            /// An event from its parts, for tests of a handler (only the adapter's
            /// extractor means the request was verified).
            pub fn new(envelope: $crate::Envelope<T>, verified: $crate::Verified) -> Self {
                Self { envelope, verified }
            }

            /// An event as the adapter would give it for `envelope`, signed now with the
            /// current secret: for unit tests of a handler.
            ///
            /// ```
            #[doc = concat!("use ", $krate, "::{Envelope, MAPPING_COMPLETED, MappingCompleted, VerifiedEvent};")]
            ///
            /// let job = MappingCompleted::new("job_1", "COMPLETED", 4821, None);
            /// let event = VerifiedEvent::from_envelope(Envelope::new("del_1", "evt_1", MAPPING_COMPLETED, job));
            /// assert_eq!(event.verified.event_id, "evt_1");
            /// assert_eq!(event.envelope.data.row_count, 4821);
            /// ```
            pub fn from_envelope(envelope: $crate::Envelope<T>) -> Self {
                use $crate::Clock as _;
                let verified = $crate::Verified::new(
                    envelope.event_id.clone(),
                    envelope.event_type.clone(),
                    envelope.id.clone(),
                    $crate::SystemClock.now_secs(),
                );
                Self { envelope, verified }
            }

            /// The envelope and the verified metadata.
            pub fn into_parts(self) -> ($crate::Envelope<T>, $crate::Verified) {
                (self.envelope, self.verified)
            }
        }

        impl<T: $crate::FromEventData> $event<T> {
            /// The event for a verified body, or why the handler does not run (logged).
            pub(crate) fn from_request_parts(
                verified: $crate::Verified,
                body: &[u8],
            ) -> Result<Self, $rejection> {
                let envelope = $crate::adapter::read_payload(&verified, body)?;
                Ok(Self { envelope, verified })
            }
        }

        $(#[$rejection_meta])*
        #[derive(Debug)]
        #[non_exhaustive]
        pub enum $rejection {
            /// The route does not pass through [`WebhookVerify`](crate::WebhookVerify):
            /// the app is misconfigured. (500)
            MissingLayer,
            /// The event is of another type than the one the handler's payload type
            /// belongs to. (200: acknowledged, so the sender does not retry an event
            /// nobody here handles)
            OtherEventType {
                /// The type the handler takes.
                expected: &'static str,
                /// The event's type.
                event_type: String,
            },
            /// The verified envelope's payload does not match the handler's type (422, so
            /// the sender retries it and eventually marks it dead); take
            /// [`Event`](crate::Event) or `serde_json::Value` to accept any payload.
            InvalidPayload($crate::adapter::__private::JsonError),
        }

        impl $rejection {
            /// The rejection of a request that did not pass through the adapter (logged
            /// as an error naming the path).
            pub(crate) fn missing_layer(path: &str) -> Self {
                $crate::adapter::__private::error!(
                    path,
                    "VerifiedEvent used on a route without WebhookVerify; refused with 500"
                );
                Self::MissingLayer
            }

            /// The status it answers with.
            pub fn status(&self) -> $status {
                match self {
                    Self::MissingLayer => <$status>::INTERNAL_SERVER_ERROR,
                    Self::OtherEventType { .. } => <$status>::OK,
                    Self::InvalidPayload(_) => <$status>::UNPROCESSABLE_ENTITY,
                }
            }
        }

        impl ::std::fmt::Display for $rejection {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                match self {
                    Self::MissingLayer => f.write_str($missing),
                    Self::OtherEventType {
                        expected,
                        event_type,
                    } => $crate::adapter::__private::other_event_type(f, expected, event_type),
                    Self::InvalidPayload(e) => $crate::adapter::__private::invalid_payload(f, e),
                }
            }
        }

        impl ::std::error::Error for $rejection {
            fn source(&self) -> Option<&(dyn ::std::error::Error + 'static)> {
                match self {
                    Self::MissingLayer | Self::OtherEventType { .. } => None,
                    Self::InvalidPayload(e) => Some(e),
                }
            }
        }

        impl From<$crate::adapter::PayloadRefusal> for $rejection {
            fn from(refusal: $crate::adapter::PayloadRefusal) -> Self {
                match refusal {
                    $crate::adapter::PayloadRefusal::OtherEventType {
                        expected,
                        event_type,
                    } => Self::OtherEventType {
                        expected,
                        event_type,
                    },
                    $crate::adapter::PayloadRefusal::InvalidPayload(e) => Self::InvalidPayload(e),
                    // A refusal a later core may add: 422, saying why.
                    other => Self::InvalidPayload(
                        <$crate::adapter::__private::JsonError as $crate::adapter::__private::DeError>::custom(other),
                    ),
                }
            }
        }
    };
}

/// Declares `SignedRequest`, a [`SignedDelivery`](crate::SignedDelivery) and the path to
/// post it to, with its builder (`new`, `from_body`, `uri`, `signed_at`, `signature`),
/// for an adapter crate's `testing` module; the adapter adds only its framework's
/// `build()`, reading the private fields `delivery` and `uri`.
///
/// ```ignore
/// mapping_webhooks::declare_signed_request! {
///     /// The adapter's docs, naming what `build` gives.
///     pub struct SignedRequest;
/// }
/// ```
#[macro_export]
macro_rules! declare_signed_request {
    ($(#[$meta:meta])* pub struct $name:ident; ) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        #[must_use]
        pub struct $name {
            delivery: $crate::SignedDelivery,
            uri: String,
        }

        impl $name {
            /// A request carrying `envelope`, signed with `secret` (the whole `whsec_…`
            /// string).
            ///
            /// # Panics
            ///
            /// When `secret` is empty or blank, or `envelope` cannot be serialised.
            pub fn new<T: $crate::adapter::__private::Serialize>(
                envelope: &$crate::Envelope<T>,
                secret: impl AsRef<[u8]>,
            ) -> Self {
                Self::from($crate::SignedDelivery::new(envelope, secret))
            }

            /// A request carrying exactly `body` (malformed JSON included), signed with
            /// `secret`.
            ///
            /// # Panics
            ///
            /// When `secret` is empty or blank.
            pub fn from_body(body: impl Into<String>, secret: impl AsRef<[u8]>) -> Self {
                Self::from($crate::SignedDelivery::from_body(body, secret))
            }

            /// The path (and query) to post to (default `/`).
            pub fn uri(mut self, uri: impl Into<String>) -> Self {
                self.uri = uri.into();
                self
            }

            /// Signs at `timestamp` (Unix seconds) instead of now: pair it with a
            /// [`ManualClock`](crate::ManualClock) given to
            /// [`GateBuilder::clock`](crate::GateBuilder::clock).
            pub fn signed_at(mut self, timestamp: u64) -> Self {
                self.delivery = self.delivery.signed_at(timestamp);
                self
            }

            /// The `X-Webhook-Signature` value this request will carry.
            pub fn signature(&self) -> String {
                self.delivery.signature()
            }
        }

        /// A request for the delivery, posted to `/` until `uri` says otherwise.
        impl From<$crate::SignedDelivery> for $name {
            fn from(delivery: $crate::SignedDelivery) -> Self {
                Self {
                    delivery,
                    uri: "/".to_owned(),
                }
            }
        }
    };
}
