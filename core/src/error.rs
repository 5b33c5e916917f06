//! The errors a user matches on, each with the HTTP status an adapter answers with.

use std::fmt;
use std::time::Duration;

use crate::HeaderError;

/// Why a webhook request was refused.
///
/// Every variant maps to the status an adapter answers with ([`status`](Self::status)) and
/// a short reason that is safe to send back ([`reason`](Self::reason)): none ever carries
/// a secret or the expected signature.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// No `X-Webhook-Signature` header. (400)
    MissingHeader,
    /// More than one `X-Webhook-Signature` header: the sender sends one, so a second one
    /// is refused rather than guessed at. (400)
    RepeatedHeader,
    /// The header could not be parsed. (400)
    MalformedHeader(HeaderError),
    /// The timestamp is more than the tolerance in the past (a replay, or a very slow
    /// queue). (401)
    TimestampTooOld {
        /// The signed timestamp.
        timestamp: u64,
        /// The receiver's clock when it checked.
        now: u64,
    },
    /// The timestamp is more than the tolerance in the future (a skewed clock). (401)
    TimestampInFuture {
        /// The signed timestamp.
        timestamp: u64,
        /// The receiver's clock when it checked.
        now: u64,
    },
    /// No signature matches any secret: a wrong secret, a forged request, or a body
    /// that was changed (often by middleware that parsed and re-serialised JSON). (401)
    SignatureMismatch,
    /// The signature is valid but the body is not a webhook envelope with a string
    /// `eventId` and `type`. (400)
    NotAnEnvelope(String),
    /// The body is larger than the configured limit. (413)
    BodyTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The body could not be read: the client went away, sent it too slowly, or the
    /// transfer was broken. (400, or 408 for a timeout)
    BodyRead {
        /// Whether the read timed out.
        timed_out: bool,
    },
    /// A header another [`Scheme`](crate::scheme::Scheme) needs is missing (its
    /// signature, timestamp or id header). (400)
    MissingSchemeHeader {
        /// The header's name, lowercase.
        header: &'static str,
    },
    /// A header of another [`Scheme`](crate::scheme::Scheme) came more than once. (400)
    RepeatedSchemeHeader {
        /// The header's name, lowercase.
        header: &'static str,
    },
    /// A header of another [`Scheme`](crate::scheme::Scheme) is not in its form. (400)
    MalformedSchemeHeader {
        /// The header's name, lowercase.
        header: &'static str,
        /// What is wrong with it, such as `is not a unix time in whole seconds`.
        why: &'static str,
    },
    /// The signed body is JSON but has no event id where the scheme keeps it (Stripe's
    /// `id`, Slack's `event_id`). (400)
    MissingEventId {
        /// The field that was looked for.
        field: &'static str,
    },
}

impl VerifyError {
    /// The HTTP status an adapter answers with.
    pub fn status(&self) -> u16 {
        match self {
            Self::MissingHeader
            | Self::RepeatedHeader
            | Self::MalformedHeader(_)
            | Self::NotAnEnvelope(_)
            | Self::MissingSchemeHeader { .. }
            | Self::RepeatedSchemeHeader { .. }
            | Self::MalformedSchemeHeader { .. }
            | Self::MissingEventId { .. }
            | Self::BodyRead { timed_out: false } => 400,
            Self::BodyRead { timed_out: true } => 408,
            Self::TimestampTooOld { .. }
            | Self::TimestampInFuture { .. }
            | Self::SignatureMismatch => 401,
            Self::BodyTooLarge { .. } => 413,
        }
    }

    /// A short, stable reason, safe to send back to the client.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingHeader => "missing X-Webhook-Signature header",
            Self::RepeatedHeader => "more than one X-Webhook-Signature header",
            Self::MalformedHeader(e) => e.reason(),
            Self::TimestampTooOld { .. } => "signature timestamp is too old",
            Self::TimestampInFuture { .. } => "signature timestamp is in the future",
            Self::SignatureMismatch => "signature does not match",
            Self::NotAnEnvelope(_) => "body is not a webhook envelope with a string eventId",
            Self::BodyTooLarge { .. } => "body is larger than the limit",
            Self::BodyRead { timed_out: true } => "body was not received in time",
            Self::BodyRead { timed_out: false } => "body could not be read",
            Self::MissingSchemeHeader { .. } => "missing signature header",
            Self::RepeatedSchemeHeader { .. } => "more than one signature header",
            Self::MalformedSchemeHeader { .. } => "malformed signature header",
            Self::MissingEventId { .. } => "signed body has no event id",
        }
    }

    /// A short machine-readable name for the error, for JSON responses and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingHeader => "missing_header",
            Self::RepeatedHeader => "repeated_header",
            Self::MalformedHeader(_) => "malformed_header",
            Self::TimestampTooOld { .. } => "timestamp_too_old",
            Self::TimestampInFuture { .. } => "timestamp_in_future",
            Self::SignatureMismatch => "signature_mismatch",
            Self::NotAnEnvelope(_) => "not_an_envelope",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::BodyRead { .. } => "body_read",
            Self::MissingSchemeHeader { .. } => "missing_header",
            Self::RepeatedSchemeHeader { .. } => "repeated_header",
            Self::MalformedSchemeHeader { .. } => "malformed_header",
            Self::MissingEventId { .. } => "not_an_envelope",
        }
    }
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TimestampTooOld { timestamp, now } => write!(
                f,
                "signature timestamp {timestamp} is {}s older than now ({now}): a replay, or check the server's clock",
                now.saturating_sub(*timestamp)
            ),
            Self::TimestampInFuture { timestamp, now } => write!(
                f,
                "signature timestamp {timestamp} is {}s ahead of now ({now}): check the server's clock",
                timestamp.saturating_sub(*now)
            ),
            Self::SignatureMismatch => f.write_str(
                "signature does not match: check the secret, and verify the raw body before any JSON parsing",
            ),
            Self::NotAnEnvelope(why) => write!(f, "{}: {why}", self.reason()),
            Self::BodyTooLarge { limit } => write!(f, "body is larger than the {limit}-byte limit"),
            Self::MissingSchemeHeader { header } => write!(f, "missing {header} header"),
            Self::RepeatedSchemeHeader { header } => {
                write!(f, "more than one {header} header")
            }
            Self::MalformedSchemeHeader { header, why } => write!(f, "the {header} header {why}"),
            Self::MissingEventId { field } => {
                write!(f, "signed body has no string {field:?}: is this the right scheme?")
            }
            other => f.write_str(other.reason()),
        }
    }
}

impl std::error::Error for VerifyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::MalformedHeader(e) => Some(e),
            _ => None,
        }
    }
}

impl From<HeaderError> for VerifyError {
    fn from(e: HeaderError) -> Self {
        Self::MalformedHeader(e)
    }
}

/// A configuration mistake, reported when the verifier or middleware is built rather
/// than at the first request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The secret is empty or blank (often an unset environment variable).
    EmptySecret,
    /// The body limit is zero.
    ZeroBodyLimit,
    /// The read timeout is zero: no body could ever be read.
    ZeroReadTimeout,
    /// A [`GateBuilder`](crate::GateBuilder) was given no secret, secrets handle or tenants.
    MissingSecret,
    /// A dedup store's lease is outside [`LEASE_RANGE`](crate::LEASE_RANGE): a zero lease
    /// would let concurrent copies each claim the event, a huge one cannot be stored.
    Lease(Duration),
    /// A dedup store's time to live is outside [`TTL_RANGE`](crate::TTL_RANGE): a zero
    /// TTL would forget processed events at once, a huge one cannot be stored.
    TimeToLive(Duration),
    /// A memory store's capacity is zero: it could remember no event.
    ZeroCapacity,
    /// A secret is not one the scheme can use: Standard Webhooks and Svix take `whsec_`
    /// and base64 (or, with the `ed25519` feature, a `whpk_` public key).
    SecretNotForScheme(crate::scheme::Scheme),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, got, range) = match self {
            Self::EmptySecret => {
                return f.write_str(
                    "the webhook signing secret is empty: is its environment variable set?",
                );
            }
            Self::ZeroBodyLimit => return f.write_str("the body limit must be at least one byte"),
            Self::ZeroReadTimeout => {
                return f.write_str("the read timeout must be longer than zero");
            }
            Self::MissingSecret => {
                return f.write_str(
                    "no webhook signing secret was given: set a secret, a secrets handle or tenants",
                );
            }
            Self::ZeroCapacity => {
                return f.write_str("the dedup store's capacity must be at least one event");
            }
            Self::SecretNotForScheme(scheme) => {
                return write!(
                    f,
                    "a {scheme} webhook secret must be whsec_ followed by base64 (or, with the ed25519 feature, a whpk_ public key)"
                );
            }
            Self::Lease(got) => ("lease", got, &crate::LEASE_RANGE),
            Self::TimeToLive(got) => ("time to live", got, &crate::TTL_RANGE),
        };
        write!(
            f,
            "the dedup store's {name} must be between {:?} and {:?}, not {got:?}",
            range.start(),
            range.end()
        )
    }
}

impl std::error::Error for ConfigError {}
