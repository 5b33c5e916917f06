//! The HTTP client of the sender and `rotate` (feature `client`): `http://`, and with
//! the `https` feature `https://` through rustls (reqwest's own TLS), trusting the system's certificate
//! authorities plus any given with `--ca-cert`.

use std::path::Path;
use std::time::Duration;

/// An HTTP client that gives up after `timeout`, trusting `ca_cert` (a PEM file of one
/// or more certificate authorities) on top of the system's, for an endpoint behind a
/// private CA or a local TLS proxy.
///
/// # Errors
///
/// When `ca_cert` cannot be read or holds no certificate, or when it is given to a
/// build without the `https` feature.
pub fn http_client(timeout: Duration, ca_cert: Option<&Path>) -> Result<reqwest::Client, String> {
    let builder = reqwest::Client::builder().timeout(timeout);
    #[cfg(feature = "https")]
    let builder = match ca_cert {
        Some(path) => {
            let pem =
                std::fs::read(path).map_err(|e| format!("--ca-cert {}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|certs| !certs.is_empty())
                .ok_or_else(|| format!("--ca-cert {}: no PEM certificate in it", path.display()))?;
            builder.tls_certs_merge(certs)
        }
        None => builder,
    };
    #[cfg(not(feature = "https"))]
    if let Some(path) = ca_cert {
        return Err(format!(
            "--ca-cert {}: this build has no HTTPS (built without the `https` feature)",
            path.display()
        ));
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// `error` with its causes: reqwest's own message is generic ("error sending request"),
/// its sources say what happened (refused, a timeout, an unknown certificate issuer).
pub fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

/// Checks that `url` is one the client can reach: `http://`, or `https://` with the
/// `https` feature. `flag` names the option in the message.
///
/// # Errors
///
/// Another scheme, or `https://` in a build without the `https` feature, with what to do.
pub fn check_url(flag: &str, url: &str) -> Result<(), String> {
    let scheme = url
        .split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("http") => Ok(()),
        Some("https") if cfg!(feature = "https") => Ok(()),
        Some("https") => Err(format!(
            "{flag} {url:?}: this build has no HTTPS; build it with the `https` feature \
             (cargo run --features https …)"
        )),
        _ => Err(format!("{flag} {url:?}: give an http:// or https:// URL")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_http_or_https() {
        assert!(check_url("--url", "http://127.0.0.1:3000/hooks").is_ok());
        assert!(check_url("--url", "HTTP://127.0.0.1:3000/hooks").is_ok());
        assert_eq!(
            check_url("--url", "https://hooks.example.com/mapping").is_ok(),
            cfg!(feature = "https")
        );
        for bad in ["ftp://x", "127.0.0.1:3000/hooks", ""] {
            assert!(
                check_url("--url", bad).unwrap_err().contains("http://"),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let path = std::env::temp_dir().join(format!("ca-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate").unwrap();
        let error = http_client(Duration::from_secs(1), Some(&path)).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(error.contains("--ca-cert"), "{error}");
        let missing = http_client(Duration::from_secs(1), Some(Path::new("/nonexistent.pem")));
        assert!(missing.unwrap_err().contains("/nonexistent.pem"));
    }
}
