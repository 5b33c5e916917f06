//! The JSON envelope every delivery carries, and typed payloads for known events.

use std::any::TypeId;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The event type sent when a mapping job completes.
pub const MAPPING_COMPLETED: &str = "mapping.completed";

/// The event type sent when a mapping job's error was resolved.
pub const MAPPING_ERROR_RESOLVED: &str = "mapping.error.resolved";

/// One delivery's body.
///
/// `data` is [`serde_json::Value`] by default; [`Event`] for every event type, typed by
/// its `type` (through [`from_verified_body`](Envelope::from_verified_body)); a payload
/// such as [`MappingCompleted`] for one event type; or your own type. Deserialise it from
/// the verified bytes only (the middleware crates do this for you).
///
/// ```
/// use mapping_webhooks::{Envelope, MappingCompleted};
///
/// let body = br#"{"id":"del_1","eventId":"evt_1","type":"mapping.completed",
///   "apiVersion":"2026-06-01","createdAt":"2026-06-07T12:01:00Z",
///   "data":{"mappingJobId":"job_1","status":"COMPLETED","rowCount":4821,"exportFileId":"ef_1"}}"#;
/// let envelope: Envelope<MappingCompleted> = serde_json::from_slice(body)?;
/// assert_eq!(envelope.event_id, "evt_1");
/// assert_eq!(envelope.data.row_count, 4821);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Envelope<T = Value> {
    /// The delivery attempt's id (`del_…`): new on every retry, so never a dedup key.
    #[serde(default)]
    pub id: String,
    /// The event's id (`evt_…`): the same on every retry; deduplicate on this.
    pub event_id: String,
    /// The event type, such as `mapping.completed`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The payload schema's version, such as `2026-06-01`.
    #[serde(default)]
    pub api_version: String,
    /// When the event was created, as an RFC 3339 string.
    #[serde(default)]
    pub created_at: String,
    /// The event's payload.
    pub data: T,
}

impl<T> Envelope<T> {
    /// An envelope, for tests and the example sender.
    pub fn new(
        id: impl Into<String>,
        event_id: impl Into<String>,
        event_type: impl Into<String>,
        data: T,
    ) -> Self {
        Self {
            id: id.into(),
            event_id: event_id.into(),
            event_type: event_type.into(),
            api_version: String::new(),
            created_at: String::new(),
            data,
        }
    }

    /// Sets `apiVersion` and `createdAt`.
    #[must_use]
    pub fn with_meta(
        mut self,
        api_version: impl Into<String>,
        created_at: impl Into<String>,
    ) -> Self {
        self.api_version = api_version.into();
        self.created_at = created_at.into();
        self
    }
}

impl<T: FromEventData> Envelope<T> {
    /// Parses a verified body, with its `data` as `T`: what the adapters' `VerifiedEvent<T>`
    /// extractors do.
    ///
    /// - `T` = [`Event`] takes every event type: known types are typed, others are kept
    ///   as [`Event::Other`].
    /// - `T` = a payload of this crate ([`MappingCompleted`], [`MappingErrorResolved`])
    ///   takes only its own event type: another type is [`PayloadError::OtherType`], which
    ///   the adapters acknowledge (2xx) without running the handler, so a route written
    ///   for one event never makes the sender retry another one until it is dead.
    /// - Any other `T` (`serde_json::Value`, your own type) takes any type whose `data`
    ///   parses as `T`.
    ///
    /// ```
    /// use mapping_webhooks::{Envelope, Event, MappingCompleted, PayloadError};
    ///
    /// let body = br#"{"id":"del_1","eventId":"evt_1","type":"mapping.error.resolved","data":{}}"#;
    /// let event = Envelope::<Event>::from_verified_body(body)?;
    /// assert!(matches!(event.data, Event::MappingErrorResolved(_)));
    /// let refused = Envelope::<MappingCompleted>::from_verified_body(body).unwrap_err();
    /// assert!(matches!(refused, PayloadError::OtherType { .. }));
    /// # Ok::<(), PayloadError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`PayloadError::OtherType`] as above; [`PayloadError::Invalid`] when the body or
    /// its `data` does not match (a known type with a payload of another shape included).
    pub fn from_verified_body(body: &[u8]) -> Result<Self, PayloadError> {
        T::parse_envelope(body)
    }
}

impl Envelope<Value> {
    /// The payload as a typed [`Event`], keeping types this crate does not know yet.
    ///
    /// # Errors
    ///
    /// When the type is known but its payload does not match the documented shape.
    pub fn into_event(self) -> Result<Event, serde_json::Error> {
        Event::from_parts(self.event_type, self.data)
    }
}

/// The payload of `mapping.completed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct MappingCompleted {
    /// The mapping job that completed (`job_…`).
    pub mapping_job_id: String,
    /// The job's final status, such as `COMPLETED`.
    pub status: String,
    /// How many rows the job produced.
    pub row_count: u64,
    /// The exported file (`ef_…`), when the job produced one.
    #[serde(default)]
    pub export_file_id: Option<String>,
}

impl MappingCompleted {
    /// A payload, for tests and the example sender.
    pub fn new(
        mapping_job_id: impl Into<String>,
        status: impl Into<String>,
        row_count: u64,
        export_file_id: Option<String>,
    ) -> Self {
        Self {
            mapping_job_id: mapping_job_id.into(),
            status: status.into(),
            row_count,
            export_file_id,
        }
    }
}

/// The payload of `mapping.error.resolved`.
///
/// The sender does not document this payload yet, so it is kept whole, as JSON: read
/// what you need from [`data`](Self::data). Fields will be added here once documented
/// (the struct is `#[non_exhaustive]`, so that is not a breaking change). Any JSON
/// value parses, so this payload never makes a delivery fail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
#[non_exhaustive]
pub struct MappingErrorResolved {
    /// The payload as the sender sent it.
    pub data: Value,
}

impl MappingErrorResolved {
    /// A payload, for tests and the example sender.
    pub fn new(data: Value) -> Self {
        Self { data }
    }
}

/// A payload type that belongs to one event type, so it can be routed by type: the
/// adapters' `EventRouter::on::<P>(handler)` runs `handler` for `P::EVENT_TYPE` only.
///
/// Implemented for this crate's payloads; implement it for your own type to route an
/// event type this crate does not know yet:
///
/// ```
/// use mapping_webhooks::EventPayload;
///
/// #[derive(serde::Deserialize)]
/// struct ExportExpired { export_file_id: String }
///
/// impl EventPayload for ExportExpired {
///     const EVENT_TYPE: &'static str = "export.expired";
/// }
/// ```
pub trait EventPayload: DeserializeOwned + Send + 'static {
    /// The event type whose `data` this is, such as `mapping.completed`.
    const EVENT_TYPE: &'static str;
}

impl EventPayload for MappingCompleted {
    const EVENT_TYPE: &'static str = MAPPING_COMPLETED;
}

impl EventPayload for MappingErrorResolved {
    const EVENT_TYPE: &'static str = MAPPING_ERROR_RESOLVED;
}

/// What a verified body's `data` can be parsed into by
/// [`Envelope::from_verified_body`] (and so by the adapters' `VerifiedEvent<T>`): any
/// `DeserializeOwned` type, or [`Event`].
///
/// You never implement it: the blanket implementation covers your own types.
pub trait FromEventData: Sized + 'static {
    /// Parses `body` as an envelope with this `data`; see
    /// [`Envelope::from_verified_body`] for the rules.
    ///
    /// # Errors
    ///
    /// See [`Envelope::from_verified_body`].
    fn parse_envelope(body: &[u8]) -> Result<Envelope<Self>, PayloadError>;
}

impl<T: DeserializeOwned + 'static> FromEventData for T {
    fn parse_envelope(body: &[u8]) -> Result<Envelope<Self>, PayloadError> {
        if let Some(expected) = own_event_type::<T>() {
            // Read the type first: a payload of another event must not be parsed as this
            // one (it may fit by accident) nor refused as invalid (which the sender retries).
            #[derive(Deserialize)]
            struct Head {
                #[serde(rename = "type")]
                event_type: String,
            }
            let head: Head = serde_json::from_slice(body).map_err(PayloadError::Invalid)?;
            if head.event_type != expected {
                return Err(PayloadError::OtherType {
                    expected,
                    event_type: head.event_type,
                });
            }
        }
        serde_json::from_slice(body).map_err(PayloadError::Invalid)
    }
}

/// The event type of this crate's own payload types (no specialisation on stable Rust:
/// the blanket implementation above recognises them by `TypeId`).
fn own_event_type<T: 'static>() -> Option<&'static str> {
    let id = TypeId::of::<T>();
    if id == TypeId::of::<MappingCompleted>() {
        Some(MAPPING_COMPLETED)
    } else if id == TypeId::of::<MappingErrorResolved>() {
        Some(MAPPING_ERROR_RESOLVED)
    } else {
        None
    }
}

impl FromEventData for Event {
    fn parse_envelope(body: &[u8]) -> Result<Envelope<Self>, PayloadError> {
        let envelope: Envelope<Value> =
            serde_json::from_slice(body).map_err(PayloadError::Invalid)?;
        let Envelope {
            id,
            event_id,
            event_type,
            api_version,
            created_at,
            data,
        } = envelope;
        let data = Event::from_parts(event_type.clone(), data).map_err(PayloadError::Invalid)?;
        Ok(Envelope {
            id,
            event_id,
            event_type,
            api_version,
            created_at,
            data,
        })
    }
}

/// Why a verified body could not be parsed as the `Envelope<T>` a handler asked for.
#[derive(Debug)]
#[non_exhaustive]
pub enum PayloadError {
    /// The event is of another type than the payload type asked for (see
    /// [`Envelope::from_verified_body`]). Acknowledge it: it is not an error of the
    /// sender's, and a refusal would be retried until the delivery is dead.
    OtherType {
        /// The event type the payload type belongs to.
        expected: &'static str,
        /// The event's type.
        event_type: String,
    },
    /// The body or its `data` does not match the type asked for.
    Invalid(serde_json::Error),
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OtherType {
                expected,
                event_type,
            } => write!(
                f,
                "event type {event_type:?} is not {expected:?}, the only type this handler takes"
            ),
            Self::Invalid(e) => write!(f, "webhook payload does not match the expected type: {e}"),
        }
    }
}

impl std::error::Error for PayloadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::OtherType { .. } => None,
            Self::Invalid(e) => Some(e),
        }
    }
}

/// A payload by event type. The sender adds events over time, so a type this crate does
/// not know is kept as [`Event::Other`] rather than refused: refusing it would make the
/// sender retry it until it is marked dead.
///
/// The adapters' `VerifiedEvent<Event>` gives it to a handler that takes every event:
///
/// ```
/// use mapping_webhooks::{Envelope, Event};
///
/// fn handle(envelope: Envelope<Event>) {
///     match envelope.data {
///         Event::MappingCompleted(job) => println!("{} rows", job.row_count),
///         Event::MappingErrorResolved(resolved) => println!("resolved: {}", resolved.data),
///         other => println!("{} not handled; acknowledged", other.event_type()),
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// `mapping.completed`.
    MappingCompleted(MappingCompleted),
    /// `mapping.error.resolved`.
    MappingErrorResolved(MappingErrorResolved),
    /// Any other event type, with its payload untouched.
    Other {
        /// The event type.
        event_type: String,
        /// The payload.
        data: Value,
    },
}

impl Event {
    /// Types `data` by `event_type`.
    ///
    /// # Errors
    ///
    /// When the type is known but its payload does not match the documented shape.
    pub fn from_parts(event_type: String, data: Value) -> Result<Self, serde_json::Error> {
        Ok(match event_type.as_str() {
            MAPPING_COMPLETED => Self::MappingCompleted(serde_json::from_value(data)?),
            MAPPING_ERROR_RESOLVED => Self::MappingErrorResolved(MappingErrorResolved { data }),
            _ => Self::Other { event_type, data },
        })
    }

    /// The event type.
    #[must_use]
    pub fn event_type(&self) -> &str {
        match self {
            Self::MappingCompleted(_) => MAPPING_COMPLETED,
            Self::MappingErrorResolved(_) => MAPPING_ERROR_RESOLVED,
            Self::Other { event_type, .. } => event_type,
        }
    }
}

/// Serialises the payload alone (the envelope's `data`), so an `Envelope<Event>` has the
/// wire form: for tests and the example sender.
impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::MappingCompleted(job) => job.serialize(serializer),
            Self::MappingErrorResolved(resolved) => resolved.serialize(serializer),
            Self::Other { data, .. } => data.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"{"id":"del_01HZ1A2B3C4D5E6F7G8H9J0K","eventId":"evt_01HZ","type":"mapping.completed","apiVersion":"2026-06-01","createdAt":"2026-06-07T12:01:00Z","data":{"mappingJobId":"job_01HZ","status":"COMPLETED","rowCount":4821,"exportFileId":"ef_01HZ"}}"#;

    #[test]
    fn parses_the_documented_example() {
        let env: Envelope<MappingCompleted> = serde_json::from_str(BODY).unwrap();
        assert_eq!(env.id, "del_01HZ1A2B3C4D5E6F7G8H9J0K");
        assert_eq!(env.event_id, "evt_01HZ");
        assert_eq!(env.api_version, "2026-06-01");
        assert_eq!(env.created_at, "2026-06-07T12:01:00Z");
        assert_eq!(
            env.data,
            MappingCompleted::new("job_01HZ", "COMPLETED", 4821, Some("ef_01HZ".into()))
        );
    }

    #[test]
    fn serialises_with_the_wire_names() {
        let env: Envelope = serde_json::from_str(BODY).unwrap();
        let back: Value = serde_json::to_value(&env).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(BODY).unwrap());
    }

    #[test]
    fn typed_event_by_type() {
        let env: Envelope = serde_json::from_str(BODY).unwrap();
        let event = env.into_event().unwrap();
        assert_eq!(event.event_type(), MAPPING_COMPLETED);
        assert!(matches!(event, Event::MappingCompleted(ref m) if m.row_count == 4821));
    }

    #[test]
    fn unknown_types_are_kept() {
        let body = BODY.replace("mapping.completed", "mapping.future.event");
        let env: Envelope = serde_json::from_str(&body).unwrap();
        let event = env.into_event().unwrap();
        assert_eq!(event.event_type(), "mapping.future.event");
        assert!(matches!(event, Event::Other { ref data, .. } if data["rowCount"] == 4821));
    }

    #[test]
    fn error_resolved_is_typed_and_keeps_any_payload() {
        let body = BODY.replace("mapping.completed", MAPPING_ERROR_RESOLVED);
        let env: Envelope = serde_json::from_str(&body).unwrap();
        let event = env.into_event().unwrap();
        assert_eq!(event.event_type(), MAPPING_ERROR_RESOLVED);
        assert!(matches!(event, Event::MappingErrorResolved(ref r) if r.data["rowCount"] == 4821));
        let odd = Envelope::new(
            "d",
            "e",
            MAPPING_ERROR_RESOLVED,
            serde_json::json!([1, "x"]),
        );
        assert!(odd.into_event().is_ok());
    }

    #[test]
    fn an_event_envelope_serialises_to_the_wire_form() {
        let env = Envelope::<Event>::from_verified_body(BODY.as_bytes()).unwrap();
        let back: Value = serde_json::to_value(&env).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(BODY).unwrap());
    }

    #[test]
    fn from_verified_body_as_event_takes_every_type() {
        let env = Envelope::<Event>::from_verified_body(BODY.as_bytes()).unwrap();
        assert_eq!(env.event_id, "evt_01HZ");
        assert!(matches!(env.data, Event::MappingCompleted(ref m) if m.row_count == 4821));
        let other = BODY.replace("mapping.completed", "mapping.future.event");
        let env = Envelope::<Event>::from_verified_body(other.as_bytes()).unwrap();
        assert_eq!(env.data.event_type(), "mapping.future.event");
        let bad = BODY.replace("4821", "\"many\"");
        assert!(matches!(
            Envelope::<Event>::from_verified_body(bad.as_bytes()),
            Err(PayloadError::Invalid(_))
        ));
    }

    #[test]
    fn a_duplicate_data_key_is_invalid_for_every_payload_type() {
        let body = br#"{"eventId":"e","type":"x.y","data":{},"data":{}}"#;
        assert!(matches!(
            Envelope::<Event>::from_verified_body(body),
            Err(PayloadError::Invalid(_))
        ));
        assert!(matches!(
            Envelope::<Value>::from_verified_body(body),
            Err(PayloadError::Invalid(_))
        ));
    }

    #[test]
    fn an_own_payload_type_takes_only_its_event_type() {
        // The data would parse as MappingCompleted: the type alone must refuse it.
        let resolved = BODY.replace("mapping.completed", MAPPING_ERROR_RESOLVED);
        let err =
            Envelope::<MappingCompleted>::from_verified_body(resolved.as_bytes()).unwrap_err();
        assert!(
            matches!(err, PayloadError::OtherType { expected: MAPPING_COMPLETED, ref event_type } if event_type == MAPPING_ERROR_RESOLVED),
            "{err:?}"
        );
        let err =
            Envelope::<MappingErrorResolved>::from_verified_body(BODY.as_bytes()).unwrap_err();
        assert!(matches!(err, PayloadError::OtherType { .. }), "{err:?}");
        assert!(Envelope::<MappingErrorResolved>::from_verified_body(resolved.as_bytes()).is_ok());
        assert!(Envelope::<MappingCompleted>::from_verified_body(BODY.as_bytes()).is_ok());
        // Value and the user's own types take any type.
        assert!(Envelope::<Value>::from_verified_body(resolved.as_bytes()).is_ok());
    }

    #[test]
    fn known_type_with_wrong_payload_is_an_error() {
        let env = Envelope::new(
            "d",
            "e",
            MAPPING_COMPLETED,
            serde_json::json!({"rowCount": "x"}),
        );
        assert!(env.into_event().is_err());
    }
}
