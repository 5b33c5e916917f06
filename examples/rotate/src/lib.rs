//! Rotates a delivery destination's signing secret, as an operator does, and rewrites the
//! receivers' secrets file so they take the new secret without a restart.
//!
//! ```text
//! MAPPING_API_TOKEN=... cargo run -p rotate -- \
//!     --destination dest_01HZ... --secret-file /etc/mapping/webhook-secrets
//!
//!   --destination ID     the delivery destination (required)
//!   --secret-file PATH   the receivers' secrets file (default $MAPPING_WEBHOOK_SECRET_FILE)
//!   --api URL            the API's base URL (default https://api.mapping.travel)
//!   --ca-cert FILE       also trust the certificate authorities in this PEM file
//!                        (a proxy with a private CA; default: the system's only)
//! ```
//!
//! 1. Takes the lock beside the secrets file (`.<name>.lock`, created exclusively: a
//!    second `rotate` of the same file fails while one runs, before calling the API)
//!    and creates the temporary file next to it with the file's owner, group and mode,
//!    so a folder it cannot write to, or a file it could not give back to its owner,
//!    fails before the irreversible step. Through a symbolic link, the link's target is
//!    the file written (the link stays).
//! 2. Reads the secrets file: its first line is the secret in use, kept as the previous
//!    one.
//! 3. Calls `POST {api}/api/v1/delivery-destinations/{id}/rotate-secret` with
//!    `Authorization: Bearer $MAPPING_API_TOKEN` (an environment variable, so the token
//!    is not in the process list or the shell history).
//! 4. Reads the new secret from the response's `signingSecret` field. **Assumption:** the
//!    documentation shows that field only in the create response and says the rotate
//!    response "returns the new secret in plaintext once"; this reads it under the same
//!    name. A response without it is an error that names the fields it did have (never
//!    their values).
//! 5. Writes the file atomically (temporary file, synced, renamed over it): the new
//!    secret, then the old one with `expires=` ten minutes from now. Receivers watching
//!    the file reload it within two or three seconds; the old secret stops being
//!    accepted at that time, also in a receiver started later.
//!
//! Only masked secrets are printed, but for one case: the new secret exists only in the
//! response, so if writing the file fails after the call, it is printed once on stderr
//! with what to do with it, rather than lost.
//!
//! The command is [`run`], here so that tests can run the same code in-process;
//! `src/main.rs` calls it with the process's arguments, environment and output. The
//! real API is HTTPS-only: the default `https` feature reaches it through rustls; the
//! tests point `--api` at a local stand-in, over plain HTTP and over TLS.

use std::borrow::Cow;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use mapping_webhooks::secrets_file::{self, PendingWrite};
use mapping_webhooks::{DEFAULT_PREVIOUS_EXPIRY, Secret};
use mapping_webhooks_examples::client::{check_url, describe, http_client};
use serde::Deserialize;
use zeroize::Zeroizing;

const USAGE: &str = "usage: MAPPING_API_TOKEN=... rotate --destination ID [--secret-file PATH] \
[--api URL] [--ca-cert FILE]";
const DEFAULT_API: &str = "https://api.mapping.travel";

#[derive(Debug)]
struct Options {
    api: String,
    destination: String,
    secret_file: PathBuf,
    ca_cert: Option<PathBuf>,
}

fn parse(
    args: impl IntoIterator<Item = String>,
    var: impl Fn(&str) -> Option<String>,
) -> Result<Options, String> {
    let mut api = DEFAULT_API.to_owned();
    let mut ca_cert = None;
    let mut destination = None;
    let mut secret_file = var("MAPPING_WEBHOOK_SECRET_FILE").filter(|v| !v.trim().is_empty());
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg, None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--api" => api = value("--api")?,
            "--destination" => destination = Some(value("--destination")?),
            "--secret-file" => secret_file = Some(value("--secret-file")?),
            "--ca-cert" => ca_cert = Some(PathBuf::from(value("--ca-cert")?)),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    check_url("--api", &api)?;
    let destination = destination.ok_or_else(|| format!("--destination is required\n{USAGE}"))?;
    // The id goes into the URL's path: keep it to the characters ids are made of.
    if destination.is_empty()
        || !destination
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(format!(
            "--destination {destination:?} is not a destination id such as dest_01HZ..."
        ));
    }
    let secret_file = secret_file.map(PathBuf::from).ok_or_else(|| {
        format!("--secret-file or MAPPING_WEBHOOK_SECRET_FILE is required\n{USAGE}")
    })?;
    Ok(Options {
        api: api.trim_end_matches('/').to_owned(),
        destination,
        secret_file,
        ca_cert,
    })
}

/// The part of the rotate response this reads (see the module docs for the assumption).
#[derive(Deserialize)]
struct RotateResponse<'a> {
    #[serde(rename = "signingSecret", borrow)]
    signing_secret: Option<Cow<'a, str>>,
}

async fn rotate(
    options: &Options,
    token: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), String> {
    let http = http_client(Duration::from_secs(30), options.ca_cert.as_deref())
        .map_err(|e| format!("{e}; nothing was rotated"))?;
    // 1. The lock and the temporary file, before anything irreversible; then 2. the
    // secret in use, read under the lock.
    let path = &options.secret_file;
    let pending = PendingWrite::create(path).map_err(|e| {
        format!(
            "cannot write next to {} ({e}); nothing was rotated",
            path.display()
        )
    })?;
    let old = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the secrets file {}: {e}", path.display()))?,
    );
    let old_current = secrets_file::current_text(&old).map_err(|e| {
        format!(
            "{}: {e}; nothing to keep as the previous one, nothing was rotated",
            path.display()
        )
    })?;
    let old_masked = Secret::new(old_current)
        .map_err(|e| e.to_string())?
        .masked();

    // 2. The call.
    let url = format!(
        "{}/api/v1/delivery-destinations/{}/rotate-secret",
        options.api, options.destination
    );
    let response = http
        .post(&url)
        .bearer_auth(token)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| {
            format!(
                "POST {url} failed: {}; nothing was rotated (or check the dashboard)",
                describe(&e)
            )
        })?;
    let status = response.status();
    let body = Zeroizing::new(
        response
            .bytes()
            .await
            .map_err(|e| format!("POST {url}: reading the answer failed: {e}"))?
            .to_vec(),
    );
    if !status.is_success() {
        // The body of a refusal carries no secret, but print only its start.
        let text = String::from_utf8_lossy(&body);
        let text: String = text.chars().take(200).collect();
        return Err(format!(
            "POST {url} answered {status}: {text}; nothing was rotated"
        ));
    }

    // 3. The new secret.
    let parsed: RotateResponse<'_> = serde_json::from_slice(&body).map_err(|e| {
        format!("POST {url} answered {status}, but not with a JSON object ({e}). The secret may have been rotated: check the dashboard, and rotate again")
    })?;
    let Some(new) = parsed.signing_secret else {
        let fields: Vec<String> =
            serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&body)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
        return Err(format!(
            "POST {url} answered {status} without a signingSecret field (fields: {fields:?}). \
             The secret was probably rotated: rotate again once this tool reads the right field"
        ));
    };
    let new = Zeroizing::new(new.into_owned());
    let new_secret = Secret::new(new.as_str()).map_err(|e| format!("the new secret: {e}"))?;
    if !new.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "the new secret contains white space or a character other than printable \
             ASCII, which a secrets file line cannot hold; rotate again"
                .to_owned(),
        );
    }

    // 5. The file: new current, old previous until its deadline.
    let expires = secrets_file::format_time(std::time::SystemTime::now() + DEFAULT_PREVIOUS_EXPIRY);
    let previous = Zeroizing::new(format!("{old_current} expires={expires}"));
    if let Err(e) = pending.commit(&[new.as_str(), previous.as_str()]) {
        // The new secret exists nowhere else: show it, once, rather than lose it.
        let _ = writeln!(
            err,
            "The secret WAS rotated, but writing {path} failed: {e}.\n\
             The new secret, shown this once (it is saved nowhere else):\n\n    {new}\n\n\
             Make it the first line of {path} (keep the old secret's line after it, ending \
             with \" expires={expires}\"), by hand or once the file can be written; the \
             receivers reload the file by themselves. Until then they refuse deliveries \
             signed with the new secret only (the sender also signs with the old one for \
             about five minutes). Or rotate again.",
            path = path.display(),
            new = new.as_str(),
        );
        return Err(format!(
            "writing {} failed after the rotation (see above)",
            path.display()
        ));
    }
    let _ = writeln!(
        out,
        "rotated {}: current {} (new), previous {} (expires {expires})",
        options.destination,
        new_secret.masked(),
        old_masked
    );
    let _ = writeln!(out, "wrote {}", path.display());
    Ok(())
}

/// The `rotate` command: `args` without the program's name, `var` reads the environment
/// (`MAPPING_API_TOKEN`, `MAPPING_WEBHOOK_SECRET_FILE`), and what it prints goes to `out`
/// and `err`. Returns the exit status: 0 when rotated and written, 1 on an error, 2 on a
/// usage mistake.
///
/// Runs on a runtime of its own: call it from outside any tokio runtime.
pub fn run(
    args: Vec<String>,
    var: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let options = match parse(args, var) {
        Ok(options) => options,
        Err(message) => {
            let _ = writeln!(err, "{message}");
            return 2;
        }
    };
    let Some(token) = var("MAPPING_API_TOKEN")
        .filter(|t| !t.trim().is_empty())
        .map(Zeroizing::new)
    else {
        let _ = writeln!(
            err,
            "MAPPING_API_TOKEN is not set: the API's bearer token\n{USAGE}"
        );
        return 2;
    };
    // The file's format is the receivers': check it parses the same way.
    if let Err(error) = secrets_file::read(&options.secret_file) {
        let _ = writeln!(err, "{error}");
        return 1;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(rotate(&options, &token, out, err)) {
        Ok(()) => 0,
        Err(message) => {
            let _ = writeln!(err, "{message}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parses_flags_and_the_environment() {
        let o = parse(
            args(&["--destination", "dest_1", "--api=http://127.0.0.1:9/"]),
            |name| (name == "MAPPING_WEBHOOK_SECRET_FILE").then(|| "/tmp/s".to_owned()),
        )
        .unwrap();
        assert_eq!(o.api, "http://127.0.0.1:9");
        assert_eq!(o.secret_file, PathBuf::from("/tmp/s"));
        for bad in [
            &["--api", "http://x"][..],
            &["--destination", "../admin"],
            &["--destination", "d", "--what"],
        ] {
            assert!(
                parse(args(bad), |_| Some("/tmp/s".into())).is_err(),
                "{bad:?}"
            );
        }
        assert!(parse(args(&["--destination", "d"]), |_| None).is_err());
    }
}
