//! The signing secret, kept out of logs and zeroed on drop.

use std::fmt;

use zeroize::Zeroizing;

use crate::ConfigError;

/// A webhook signing secret, exactly as Mapping.Travel showed it.
///
/// The secret is used as the raw bytes of that string, `whsec_` prefix included: do not
/// strip the prefix or decode the rest. Its memory is zeroed when it is dropped, and
/// [`Debug`](fmt::Debug) shows it masked the way the dashboard does (`whsec_••••3a0e`).
///
/// ```
/// use mapping_webhooks::Secret;
///
/// let secret = Secret::new("whsec_e1c5d3a0b2f4c6d8e0f2a4b6c8d0e2f4a6b83a0e").unwrap();
/// assert_eq!(format!("{secret:?}"), "Secret(whsec_••••3a0e)");
/// assert!(Secret::new("").is_err());
/// ```
#[derive(Clone)]
pub struct Secret {
    bytes: Zeroizing<Vec<u8>>,
}

impl Secret {
    /// Wraps a secret.
    ///
    /// # Errors
    ///
    /// [`ConfigError::EmptySecret`] when the secret is empty or only white space: an
    /// empty key would make every signature trivially forgeable by anyone who guesses it.
    pub fn new(secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let bytes = secret.as_ref();
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ConfigError::EmptySecret);
        }
        Ok(Self {
            bytes: Zeroizing::new(bytes.to_vec()),
        })
    }

    /// The raw bytes used as the HMAC key.
    pub(crate) fn expose(&self) -> &[u8] {
        &self.bytes
    }

    /// The masked form shown by `Debug`: the `whsec_` prefix (if any) and the last four
    /// characters when the secret is long enough that they reveal nothing useful.
    pub fn masked(&self) -> String {
        mask(&self.bytes)
    }
}

pub(crate) fn mask(bytes: &[u8]) -> String {
    let prefix = if bytes.starts_with(b"whsec_") {
        "whsec_"
    } else {
        ""
    };
    // Show the tail only when at least 16 bytes stay hidden.
    if bytes.len() >= prefix.len() + 4 + 16 && bytes.is_ascii() {
        let tail = std::str::from_utf8(&bytes[bytes.len() - 4..]).unwrap_or("");
        format!("{prefix}••••{tail}")
    } else {
        format!("{prefix}••••")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.masked())
    }
}

impl TryFrom<&str> for Secret {
    type Error = ConfigError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl TryFrom<String> for Secret {
    type Error = ConfigError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let value = Zeroizing::new(value);
        Self::new(value.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_masks_the_secret() {
        let s = Secret::new("whsec_0123456789abcdef0123456789abcdef").unwrap();
        let shown = format!("{s:?} {}", s.masked());
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
        assert!(shown.contains("whsec_••••cdef"), "{shown}");
    }

    #[test]
    fn short_secrets_show_no_tail() {
        let s = Secret::new("whsec_short").unwrap();
        assert_eq!(s.masked(), "whsec_••••");
        let s = Secret::new("tiny").unwrap();
        assert_eq!(format!("{s:?}"), "Secret(••••)");
    }

    #[test]
    fn empty_and_blank_secrets_are_refused() {
        assert_eq!(Secret::new("").unwrap_err(), ConfigError::EmptySecret);
        assert_eq!(Secret::new("  \n").unwrap_err(), ConfigError::EmptySecret);
    }
}
