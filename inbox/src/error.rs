//! What can go wrong outside a request: configuration, the database, an unknown id.

use std::fmt;

use mapping_webhooks::VerifyError;

/// An error from the inbox's API (building it, the worker, the operations).
///
/// No variant ever shows a secret or the database URL's password: a database error is
/// shown through sqlx's message, which names the failure, never the URL.
#[derive(Debug)]
#[non_exhaustive]
pub enum InboxError {
    /// A setting is out of range, or the URL names a database this build does not
    /// support (see the crate's features).
    Config(String),
    /// The database failed or could not be reached.
    Database(sqlx::Error),
    /// No delivery with this id in the inbox's namespace.
    NotFound(i64),
    /// There is no inbox at the URL (opened with
    /// [`existing_only`](crate::InboxBuilder::existing_only)): the SQLite file does not
    /// exist, or the database has no inbox schema. Check the URL (a relative SQLite path
    /// is relative to the working directory).
    NoInbox,
    /// A stored delivery no longer verifies against its stored signature header (the
    /// secret was changed since, or the row was altered).
    Verify(VerifyError),
}

impl InboxError {
    pub(crate) fn config(why: impl Into<String>) -> Self {
        Self::Config(why.into())
    }
}

impl fmt::Display for InboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(why) => write!(f, "inbox configuration: {why}"),
            Self::Database(e) => write!(f, "inbox database: {e}"),
            Self::NotFound(id) => write!(f, "no delivery {id} in this inbox"),
            Self::NoInbox => f.write_str(
                "no inbox at this database URL (no such SQLite file, or no inbox tables in the database); \
                 check DATABASE_URL and, for a relative SQLite path, the working directory",
            ),
            Self::Verify(e) => write!(f, "the stored delivery does not verify: {e}"),
        }
    }
}

impl std::error::Error for InboxError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Database(e) => Some(e),
            Self::Verify(e) => Some(e),
            _ => None,
        }
    }
}

impl From<sqlx::Error> for InboxError {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(e)
    }
}
