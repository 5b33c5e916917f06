//! What a request is answered when no handler runs for it.

use super::{RETRY_AFTER_SECS, TENANT_RETRY_AFTER_SECS};
use crate::VerifyError;

/// An answer given without running the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// The request was refused (4xx).
    Refused(VerifyError),
    /// The event was already processed: 200, so the sender stops retrying. Answered with
    /// the body [`DUPLICATE_REASON`](crate::DUPLICATE_REASON) and the header
    /// [`DUPLICATE_HEADER`](crate::DUPLICATE_HEADER), as every receiver answers a duplicate.
    AlreadyProcessed,
    /// Another copy of the event is being processed: 409 with `Retry-After`, so the
    /// sender retries and finds it done (or free again, if that copy failed).
    InFlight,
    /// The dedup store could not answer: 503, so the sender retries later.
    StoreUnavailable,
    /// No tenant key in the request, or no such tenant: 404, as for a route that does
    /// not exist (the sender's docs tell the operator to check the URL's path).
    UnknownTenant,
    /// The tenant's secrets could not be looked up (the resolver failed or panicked):
    /// 503 with `Retry-After` (10 s), so the sender retries later.
    TenantLookupFailed,
    /// The tenant's secrets lookup took longer than its
    /// [timeout](crate::Tenants::lookup_timeout): 503 with `Retry-After`.
    TenantLookupTimedOut,
    /// As many secrets lookups as [allowed](crate::Tenants::max_concurrent_lookups)
    /// were running: 503 with `Retry-After`, at once.
    TenantLookupsBusy,
    /// Stored and committed by a durable [`Sink`](crate::Sink) (the inbox), which
    /// processes it later: 202.
    Queued,
    /// The durable [`Sink`](crate::Sink) could not store it: 503, so the sender retries.
    SinkUnavailable,
}

impl Reply {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Refused(e) => e.status(),
            Self::AlreadyProcessed => 200,
            Self::InFlight => 409,
            Self::Queued => 202,
            Self::StoreUnavailable
            | Self::SinkUnavailable
            | Self::TenantLookupFailed
            | Self::TenantLookupTimedOut
            | Self::TenantLookupsBusy => 503,
            Self::UnknownTenant => 404,
        }
    }

    /// A short reason for the response body, safe to send to the client.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Refused(e) => e.reason(),
            Self::AlreadyProcessed => crate::DUPLICATE_REASON,
            Self::InFlight => "event is being processed; retry later",
            Self::StoreUnavailable => "deduplication store unavailable; retry later",
            Self::UnknownTenant => "not found",
            Self::TenantLookupFailed => "secrets lookup unavailable; retry later",
            Self::TenantLookupTimedOut => "secrets lookup timed out; retry later",
            Self::TenantLookupsBusy => "too many secrets lookups at once; retry later",
            Self::Queued => "accepted",
            Self::SinkUnavailable => "inbox database unavailable; retry later",
        }
    }

    /// A short machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Refused(e) => e.code(),
            Self::AlreadyProcessed => "duplicate",
            Self::InFlight => "in_flight",
            Self::StoreUnavailable => "store_unavailable",
            Self::UnknownTenant => "not_found",
            Self::TenantLookupFailed => "secrets_unavailable",
            Self::TenantLookupTimedOut => "secrets_timeout",
            Self::TenantLookupsBusy => "secrets_busy",
            Self::Queued => "accepted",
            Self::SinkUnavailable => "inbox_unavailable",
        }
    }

    /// Seconds for a `Retry-After` header, where one belongs.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::InFlight => Some(RETRY_AFTER_SECS),
            Self::TenantLookupFailed | Self::TenantLookupTimedOut | Self::TenantLookupsBusy => {
                Some(TENANT_RETRY_AFTER_SECS)
            }
            _ => None,
        }
    }

    /// Whether this answers a copy of an event already received: the response then
    /// carries [`DUPLICATE_HEADER`](crate::DUPLICATE_HEADER)`: true`.
    pub fn is_duplicate(&self) -> bool {
        matches!(self, Self::AlreadyProcessed)
    }

    /// The refusal, when this is one.
    pub fn error(&self) -> Option<&VerifyError> {
        match self {
            Self::Refused(e) => Some(e),
            _ => None,
        }
    }

    /// A JSON body: `{"status":…,"code":"…","reason":"…"}`.
    pub fn to_json(&self) -> String {
        // The code and reason are fixed ASCII strings without quotes or backslashes.
        format!(
            r#"{{"status":{},"code":"{}","reason":"{}"}}"#,
            self.status(),
            self.code(),
            self.reason()
        )
    }
}
