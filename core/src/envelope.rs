//! The JSON envelope every delivery carries, and typed payloads for known events.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The event type sent when a mapping job completes.
pub const MAPPING_COMPLETED: &str = "mapping.completed";

/// One delivery's body.
///
/// `data` is any `T: Deserialize`: [`serde_json::Value`] by default, [`MappingCompleted`]
/// when a route only receives that event, or your own type. Deserialise it from the
/// verified bytes only (the middleware crates do this for you).
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

/// A payload by event type. The sender adds events over time, so a type this crate does
/// not know is kept as [`Event::Other`] rather than refused: refusing it would make the
/// sender retry it until it is marked dead.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// `mapping.completed`.
    MappingCompleted(MappingCompleted),
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
            _ => Self::Other { event_type, data },
        })
    }

    /// The event type.
    pub fn event_type(&self) -> &str {
        match self {
            Self::MappingCompleted(_) => MAPPING_COMPLETED,
            Self::Other { event_type, .. } => event_type,
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
        let body = BODY.replace("mapping.completed", "mapping.error.resolved");
        let env: Envelope = serde_json::from_str(&body).unwrap();
        let event = env.into_event().unwrap();
        assert_eq!(event.event_type(), "mapping.error.resolved");
        assert!(matches!(event, Event::Other { ref data, .. } if data["rowCount"] == 4821));
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
