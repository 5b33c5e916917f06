//! What the inbox holds: a delivery's state, its stored record, and what a handler gets.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use mapping_webhooks::scheme::Scheme;
use mapping_webhooks::{Envelope, Event, MatchedSecret, Verified};
use serde::de::DeserializeOwned;

/// Where a stored delivery is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Waiting for its first attempt or its next retry.
    Pending,
    /// Claimed by a worker, under a lease; claimed again if the lease runs out.
    Running,
    /// The handler succeeded. Pruned after the retention.
    Done,
    /// Failed on every attempt. Kept until replayed or purged.
    Dead,
}

impl State {
    /// Every state, in life order.
    pub const ALL: [State; 4] = [State::Pending, State::Running, State::Done, State::Dead];

    /// The name stored in the database and shown by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Done => "done",
            Self::Dead => "dead",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, UnknownState> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or(UnknownState)
    }
}

/// A state name that is not `pending`, `running`, `done` or `dead`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownState;

impl fmt::Display for UnknownState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the state must be pending, running, done or dead")
    }
}

impl std::error::Error for UnknownState {}

/// A stored delivery, without its body: what [`Inbox::list`](crate::Inbox::list) shows.
///
/// Times are milliseconds since the Unix epoch, by the inbox's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryInfo {
    /// The delivery's id in the inbox.
    pub id: i64,
    /// The tenant it was verified for (its canonical id), for a gate with tenants.
    pub tenant: Option<String>,
    /// The signature scheme that verified it ([`Scheme::Mapping`] for rows stored
    /// before the inbox stored other schemes).
    pub scheme: Scheme,
    /// The envelope's `eventId` (unique per namespace and tenant); another scheme's
    /// dedup id (see [`mapping_webhooks::scheme`]).
    pub event_id: String,
    /// The envelope's `type`.
    pub event_type: String,
    /// The envelope's `id` of the attempt that was stored (the first one accepted).
    pub delivery_id: String,
    /// The signed timestamp `t`, in seconds.
    pub signed_at: u64,
    /// Which secret matched: `current` or `previous[i]`.
    pub secret: String,
    /// When it was accepted.
    pub received_at_ms: i64,
    /// Its state.
    pub state: State,
    /// How many attempts were started.
    pub attempts: u32,
    /// Pending: when it is due. Running: when its lease runs out.
    pub due_at_ms: i64,
    /// The last failure, if any (kept after a replay, cleared when done).
    pub last_error: Option<String>,
    /// When it became done or dead.
    pub finished_at_ms: Option<i64>,
}

/// A stored delivery with the raw bytes and header it arrived with:
/// what [`Inbox::show`](crate::Inbox::show) returns.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredDelivery {
    /// Everything but the bytes.
    pub info: DeliveryInfo,
    /// The signed headers it was accepted with, as
    /// [`SinkDelivery::signed_headers`](mapping_webhooks::SinkDelivery) gave them: for
    /// Mapping.Travel (and Stripe) the signature header's value, for the other schemes
    /// one `name: value` line per header the scheme reads.
    pub signature: String,
    /// The raw body, exactly as signed.
    pub body: Vec<u8>,
}

impl fmt::Debug for StoredDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredDelivery")
            .field("info", &self.info)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// One attempt at one delivery, as a handler gets it.
#[derive(Clone)]
#[non_exhaustive]
pub struct Delivery {
    /// The delivery's id in the inbox.
    pub id: i64,
    /// This attempt's number: 1 for the first.
    pub attempt: u32,
    /// The signature scheme that verified it.
    pub scheme: Scheme,
    /// The envelope, parsed from the stored bytes (`data` untyped; see
    /// [`event`](Self::event) and [`parse`](Self::parse)). For another
    /// [`scheme`](Self::scheme) than Mapping.Travel's, whose body is the sender's own
    /// shape, it is made from what was verified: `event_id` the scheme's dedup id,
    /// `event_type` and `id` (the delivery id) as the scheme read them, `data` the
    /// whole body as JSON (`null` when it is not JSON); read the body itself with
    /// [`body`](Self::body).
    pub envelope: Envelope,
    /// Which secret matched when it was accepted.
    pub secret: String,
    /// The signed timestamp `t`, in seconds.
    pub signed_at: u64,
    /// When it was accepted, in milliseconds since the Unix epoch.
    pub received_at_ms: i64,
    /// The tenant it was verified for (its canonical id), for a gate with tenants.
    pub tenant: Option<String>,
    /// The raw body, exactly as signed (cheap to clone).
    pub body: Bytes,
}

impl Delivery {
    /// What the gate verified when the delivery was accepted, rebuilt from the stored
    /// row: the event id, type and delivery id (from the signed body), the signed
    /// timestamp, the secret that matched and the tenant. It is what an inline handler
    /// gets, so a handler written for the inline path (one that takes the
    /// [`Verified`] and the body, such as the adapters' `VerifiedEvent` or
    /// `EventRouter`) runs in the worker unchanged.
    ///
    /// A stored secret name this version does not know (not `current` nor
    /// `previous[i]`) reads as [`MatchedSecret::Current`].
    pub fn verified(&self) -> Verified {
        let mut verified = Verified::new(
            self.envelope.event_id.clone(),
            self.envelope.event_type.clone(),
            self.envelope.id.clone(),
            self.signed_at,
        )
        .with_secret(parse_secret(&self.secret).unwrap_or(MatchedSecret::Current));
        verified.tenant.clone_from(&self.tenant);
        verified.scheme = self.scheme;
        verified
    }

    /// The raw body, exactly as signed.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The payload typed by event type ([`Event::Other`] for types this crate does not
    /// know).
    ///
    /// # Errors
    ///
    /// When the type is known but its payload does not match the documented shape.
    pub fn event(&self) -> Result<Event, serde_json::Error> {
        self.envelope.clone().into_event()
    }

    /// The envelope with `data` parsed as `T`.
    ///
    /// # Errors
    ///
    /// When `data` does not match `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<Envelope<T>, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("id", &self.id)
            .field("attempt", &self.attempt)
            .field("scheme", &self.scheme)
            .field("event_id", &self.envelope.event_id)
            .field("event_type", &self.envelope.event_type)
            .field("tenant", &self.tenant)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// The stored name of a matched secret back as the value: `current`, `previous[i]`
/// (as [`MatchedSecret`]'s `Display` writes them).
pub(crate) fn parse_secret(stored: &str) -> Option<MatchedSecret> {
    if stored == "current" {
        return Some(MatchedSecret::Current);
    }
    let index = stored.strip_prefix("previous[")?.strip_suffix(']')?;
    index.parse().ok().map(MatchedSecret::Previous)
}

/// The stored tenant (`''` for none) as the API shows it.
pub(crate) fn tenant_from_column(stored: String) -> Option<String> {
    (!stored.is_empty()).then_some(stored)
}

/// The stored scheme name as the value (`mapping` for rows stored before schemes).
pub(crate) fn scheme_from_column(stored: String) -> Result<Scheme, sqlx::Error> {
    stored
        .parse()
        .map_err(|e: mapping_webhooks::scheme::UnknownScheme| sqlx::Error::Decode(Box::new(e)))
}

/// The columns of [`DeliveryInfo`], in a `SELECT`.
pub(crate) const INFO_COLUMNS: &str = "id, tenant, scheme, event_id, event_type, delivery_id, signed_at, \
     secret, received_at, state, attempts, due_at, last_error, finished_at";

/// Reads a [`DeliveryInfo`] from a row of [`INFO_COLUMNS`] (a macro: the row type is
/// the backend's).
macro_rules! info_from_row {
    ($row:expr) => {{
        use sqlx::Row as _;
        let row = $row;
        let state: String = row.try_get("state")?;
        $crate::delivery::DeliveryInfo {
            id: row.try_get("id")?,
            tenant: $crate::delivery::tenant_from_column(row.try_get("tenant")?),
            scheme: $crate::delivery::scheme_from_column(row.try_get("scheme")?)?,
            event_id: row.try_get("event_id")?,
            event_type: row.try_get("event_type")?,
            delivery_id: row.try_get("delivery_id")?,
            signed_at: u64::try_from(row.try_get::<i64, _>("signed_at")?).unwrap_or(0),
            secret: row.try_get("secret")?,
            received_at_ms: row.try_get("received_at")?,
            state: state
                .parse()
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
            due_at_ms: row.try_get("due_at")?,
            last_error: row.try_get("last_error")?,
            finished_at_ms: row.try_get("finished_at")?,
        }
    }};
}
pub(crate) use info_from_row;

#[cfg(test)]
mod tests {
    use mapping_webhooks::MatchedSecret;

    use super::parse_secret;

    #[test]
    fn a_stored_secret_name_reads_back_as_it_was_written() {
        for secret in [
            MatchedSecret::Current,
            MatchedSecret::Previous(0),
            MatchedSecret::Previous(12),
        ] {
            assert_eq!(parse_secret(&secret.to_string()), Some(secret));
        }
        for unknown in [
            "",
            "previous",
            "previous[]",
            "previous[x]",
            "previous[1",
            "next",
        ] {
            assert_eq!(parse_secret(unknown), None, "{unknown}");
        }
    }
}
