//! A secrets file, reloaded while the server runs: one secret per line, the current one
//! first, then previous ones; blank lines are ignored. (Cargo feature `secrets-file`.)
//!
//! ```text
//! whsec_e1c5d3a0b2f4...
//! whsec_9b7c41d0a3e2... expires=2026-12-02T22:10:00Z
//! ```
//!
//! A previous secret's line may end with `expires=` and a UTC time
//! (`YYYY-MM-DDTHH:MM:SSZ`) or a number of seconds since 1970: from then on it is no
//! longer accepted, whenever the receiver (re)starts or reloads the file. The example
//! `rotate` command writes it. A previous secret without one expires
//! [ten minutes](crate::DEFAULT_PREVIOUS_EXPIRY) after the file's last
//! modification (never later than a deadline the running receiver already holds for it),
//! so an old secret left in the file is not accepted again at every restart; editing the
//! file gives such a line ten more minutes, so give it a deadline or remove it. A file
//! of plain lines, as before deadlines existed, still loads.
//!
//! A secret is printable ASCII (letters, digits, punctuation: the sender's secrets are
//! `whsec_` and hex digits), so white space separates a secret from what follows it. A
//! byte order mark at the start of the file (as some Windows editors write) is skipped;
//! any other character a secret cannot hold (a control character, a non-ASCII one such
//! as a byte order mark elsewhere or a non-breaking space) makes the file refused, with
//! its line and the character's code named, never the secret
//! ([`SecretsFileError::Character`]).
//!
//! A receiver [loads](SecretsFile::load) it at startup and then [watches](SecretsFile::watch)
//! it: the file is checked every second (its size, modification time and inode, so an
//! atomic replace is seen), and a change is applied once the next two checks find the
//! file the same, so a file being written in place is not applied half-written. `SIGHUP`
//! re-reads and applies it at once (the operator says it is complete). A changed file is
//! applied with [`Secrets::replace`], so requests in flight finish with the secrets they
//! started with and the next one uses the new ones, with no restart and no change to the
//! dedup store; a current secret missing from the new file stays accepted as a previous
//! one for ten minutes. A file that cannot be read, or holds no secret or a bad line,
//! keeps the secrets already loaded, and says why in the log; one that cannot be read is
//! tried again at every check, so fixing its permissions is enough.
//!
//! [`PendingWrite`] replaces the file atomically (a temporary file in the same folder,
//! with the file's owner, group and mode, synced, then renamed over it; through a
//! symbolic link, the link's target is replaced), one writer at a time, as the example
//! `rotate` command does.
//!
//! # Example
//!
//! Load the file at startup, hand its [`Secrets`] to the gate, and keep watching it:
//!
//! ```no_run
//! use std::path::Path;
//!
//! use mapping_webhooks::Gate;
//! use mapping_webhooks::secrets_file::{DEFAULT_POLL_INTERVAL, SecretsFile};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let (file, secrets) = SecretsFile::load(Path::new("/etc/receiver/webhook-secrets"))?;
//! let gate = Gate::from_secrets(secrets.clone());
//! // Polled every second and re-read on SIGHUP until the task is dropped.
//! tokio::spawn(file.watch(secrets, Some(DEFAULT_POLL_INTERVAL)));
//! // ... serve requests through `gate` ...
//! # drop(gate);
//! # Ok(())
//! # }
//! ```
//!
//! The text alone, as [`parse`] reads it; an error names the line and never the secret:
//!
//! ```
//! use mapping_webhooks::secrets_file::{self, SecretsFileError};
//!
//! let file = secrets_file::parse(
//!     "whsec_new_0123456789abcdef0123\n\
//!      whsec_old_0123456789abcdef0123 expires=2026-12-02T22:10:00Z\n",
//! )?;
//! assert_eq!(file.current.masked(), "whsec_••••0123");
//! assert_eq!(file.previous.len(), 1);
//!
//! let error = secrets_file::parse("whsec_new_0123456789abcdef0123\u{7}\n").unwrap_err();
//! assert!(matches!(error, SecretsFileError::Character { line: 1, .. }));
//! assert_eq!(
//!     error.to_string(),
//!     "line 1: character 31 of the secret is a control character (U+0007), which a secret \
//!      cannot hold (secrets are printable ASCII, such as whsec_ and hex digits)"
//! );
//! # Ok::<(), SecretsFileError>(())
//! ```

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zeroize::Zeroizing;

use crate::{ConfigError, Expiry, Secret, Secrets};

/// How often the example receivers [watch](SecretsFile::watch) the file by default: every
/// second.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How many polls in a row must see a change the same before it is applied: the one that
/// noticed it and two more, so the file stayed unchanged for at least two intervals.
const STABLE_POLLS: u32 = 3;

/// The longest `expires=` value an error shows: a UTC time's length. A longer one may be
/// a secret pasted on the wrong line.
const MAX_SHOWN_EXPIRES: usize = 20;

/// The secrets a file holds: the current one, then the previous ones.
#[derive(Debug)]
pub struct FileSecrets {
    /// The first line.
    pub current: Secret,
    /// The other lines, in order.
    pub previous: Vec<PreviousSecret>,
}

/// A previous secret's line.
#[derive(Debug)]
pub struct PreviousSecret {
    /// The secret.
    pub secret: Secret,
    /// Its `expires=` time, if the line has one.
    pub expires: Option<SystemTime>,
}

/// Why a secrets file was not loaded (or not reloaded: the secrets already loaded are
/// kept).
///
/// `Display` names the file (when the error came from one: [`parse`] knows no path), the
/// line and, for a bad character, its code: never a secret, nor any part of one. The
/// `path` of the variants that come from the text is `None` from [`parse`] and the
/// file's path from [`read`] and [`SecretsFile::load`].
#[derive(Debug)]
#[non_exhaustive]
pub enum SecretsFileError {
    /// The file cannot be opened or read (missing, no permission, a folder...).
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The file's bytes are not UTF-8 text.
    NotUtf8 {
        /// The file.
        path: PathBuf,
    },
    /// The file holds only blank lines, or nothing.
    NoSecret {
        /// The file, if known.
        path: Option<PathBuf>,
    },
    /// A secret holds a character a secret cannot have: a control character or a
    /// non-ASCII one (a byte order mark after the start, a non-breaking space...).
    Character {
        /// The file, if known.
        path: Option<PathBuf>,
        /// The line, from 1.
        line: usize,
        /// The character's position in the secret, from 1.
        position: usize,
        /// The character's code point (`U+0007` is 7).
        code: u32,
    },
    /// Text other than one `expires=<time>` follows the secret on its line.
    TextAfterSecret {
        /// The file, if known.
        path: Option<PathBuf>,
        /// The line, from 1.
        line: usize,
    },
    /// An `expires=` value is neither a UTC time such as `2026-12-02T22:10:00Z` nor a
    /// number of seconds since 1970.
    Expires {
        /// The file, if known.
        path: Option<PathBuf>,
        /// The line, from 1.
        line: usize,
        /// The text after `expires=`, when it is no longer than a UTC time (20
        /// characters); a longer one is not kept, in case it is a secret pasted on the
        /// wrong line.
        value: Option<String>,
    },
    /// The first secret (the current one) has an `expires=`: only previous secrets expire.
    CurrentExpires {
        /// The file, if known.
        path: Option<PathBuf>,
        /// The line, from 1.
        line: usize,
    },
    /// A secret the core refuses ([`Secret::new`]).
    Secret {
        /// The file, if known.
        path: Option<PathBuf>,
        /// The line, from 1.
        line: usize,
        /// Why.
        error: ConfigError,
    },
}

impl SecretsFileError {
    /// The file, when the error came from one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Unreadable { path, .. } | Self::NotUtf8 { path } => Some(path),
            Self::NoSecret { path }
            | Self::Character { path, .. }
            | Self::TextAfterSecret { path, .. }
            | Self::Expires { path, .. }
            | Self::CurrentExpires { path, .. }
            | Self::Secret { path, .. } => path.as_deref(),
        }
    }

    /// The line (from 1), when the error is about one.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Character { line, .. }
            | Self::TextAfterSecret { line, .. }
            | Self::Expires { line, .. }
            | Self::CurrentExpires { line, .. }
            | Self::Secret { line, .. } => Some(*line),
            Self::Unreadable { .. } | Self::NotUtf8 { .. } | Self::NoSecret { .. } => None,
        }
    }

    /// The same error, naming `file`.
    fn in_file(mut self, file: &Path) -> Self {
        match &mut self {
            Self::NoSecret { path }
            | Self::Character { path, .. }
            | Self::TextAfterSecret { path, .. }
            | Self::Expires { path, .. }
            | Self::CurrentExpires { path, .. }
            | Self::Secret { path, .. } => *path = Some(file.to_owned()),
            Self::Unreadable { .. } | Self::NotUtf8 { .. } => {}
        }
        self
    }
}

impl fmt::Display for SecretsFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreadable { path, source } => {
                return write!(f, "cannot read {}: {source}", path.display());
            }
            Self::NotUtf8 { path } => return write!(f, "{} is not UTF-8 text", path.display()),
            _ => {}
        }
        if let Some(path) = self.path() {
            write!(f, "{}: ", path.display())?;
        }
        if let Some(line) = self.line() {
            write!(f, "line {line}: ")?;
        }
        match self {
            Self::Unreadable { .. } | Self::NotUtf8 { .. } => Ok(()),
            Self::NoSecret { .. } => {
                f.write_str("the file holds no secret (only blank lines, or nothing)")
            }
            Self::Character { position, code, .. } => write!(
                f,
                "character {position} of the secret is {}, which a secret cannot hold \
                 (secrets are printable ASCII, such as whsec_ and hex digits)",
                describe(*code)
            ),
            Self::TextAfterSecret { .. } => f.write_str(
                "unexpected text after the secret (a secret cannot hold white space; only \
                 one expires=<time> may follow it)",
            ),
            Self::Expires { value, .. } => {
                match value {
                    Some(value) => write!(f, "expires={value:?}")?,
                    None => f.write_str("the text after expires= (not shown: too long)")?,
                }
                f.write_str(
                    " is not a UTC time such as 2026-12-02T22:10:00Z, nor a number of \
                     seconds since 1970",
                )
            }
            Self::CurrentExpires { .. } => f.write_str(
                "the current secret (the first one) cannot expire; expires= belongs on a \
                 previous secret's line",
            ),
            Self::Secret { error, .. } => fmt::Display::fmt(error, f),
        }
    }
}

impl std::error::Error for SecretsFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unreadable { source, .. } => Some(source),
            Self::Secret { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Parses a secrets file's text.
///
/// # Errors
///
/// A [`SecretsFileError`] (whose `path` is `None`) when the text holds no secret, or a
/// line holds a character a secret cannot have, text after the secret other than one
/// `expires=`, an `expires=` that is not a time, or the current secret has one.
pub fn parse(text: &str) -> Result<FileSecrets, SecretsFileError> {
    let mut current = None;
    let mut previous = Vec::new();
    for (line, secret, expires) in lines(text)? {
        if current.is_none() {
            if expires.is_some() {
                return Err(SecretsFileError::CurrentExpires { path: None, line });
            }
            current = Some(secret);
        } else {
            previous.push(PreviousSecret { secret, expires });
        }
    }
    let current = current.ok_or(SecretsFileError::NoSecret { path: None })?;
    Ok(FileSecrets { current, previous })
}

/// The current secret's text in a secrets file's text (its first secret), once the whole
/// text [parses](parse): what the example `rotate` command keeps as the previous secret.
///
/// # Errors
///
/// As [`parse`].
pub fn current_text(text: &str) -> Result<&str, SecretsFileError> {
    parse(text)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines()
        .find_map(|line| line.split_ascii_whitespace().next())
        .ok_or(SecretsFileError::NoSecret { path: None })
}

/// Each secret's line: its number, the secret, its `expires=` time.
fn lines(text: &str) -> Result<Vec<(usize, Secret, Option<SystemTime>)>, SecretsFileError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut found = Vec::new();
    for (index, line_text) in text.lines().enumerate() {
        let line = index + 1;
        let mut words = line_text.split_ascii_whitespace();
        let Some(secret) = words.next() else {
            continue;
        };
        if let Some((at, c)) = secret
            .chars()
            .enumerate()
            .find(|(_, c)| !c.is_ascii_graphic())
        {
            return Err(SecretsFileError::Character {
                path: None,
                line,
                position: at + 1,
                code: u32::from(c),
            });
        }
        let mut expires = None;
        for word in words {
            match word.strip_prefix("expires=") {
                Some(value) if expires.is_none() => {
                    expires = Some(parse_time(value).ok_or_else(|| SecretsFileError::Expires {
                        path: None,
                        line,
                        value: (value.len() <= MAX_SHOWN_EXPIRES).then(|| value.to_owned()),
                    })?);
                }
                _ => return Err(SecretsFileError::TextAfterSecret { path: None, line }),
            }
        }
        let secret = Secret::new(secret).map_err(|error| SecretsFileError::Secret {
            path: None,
            line,
            error,
        })?;
        found.push((line, secret, expires));
    }
    Ok(found)
}

fn describe(code: u32) -> String {
    let name = format!("U+{code:04X}");
    match char::from_u32(code) {
        Some('\u{feff}') => format!("a byte order mark ({name})"),
        Some(c) if c.is_control() => format!("a control character ({name})"),
        Some(c) if c.is_whitespace() => format!("a non-ASCII space ({name})"),
        _ => format!("the non-ASCII character {name}"),
    }
}

/// `t` as the UTC time a secrets file's `expires=` holds: `2026-12-02T22:10:00Z`.
pub fn format_time(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX);
    let (year, month, day) = civil_from_days(days);
    let rest = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// An `expires=` value: `YYYY-MM-DDTHH:MM:SSZ` (UTC), or whole seconds since 1970.
pub fn parse_time(value: &str) -> Option<SystemTime> {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return UNIX_EPOCH.checked_add(Duration::from_secs(value.parse().ok()?));
    }
    let b = value.as_bytes();
    let shape = b.len() == 20
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'Z',
            _ => c.is_ascii_digit(),
        });
    if !shape {
        return None;
    }
    let number = |range: std::ops::Range<usize>| value[range].parse::<u32>().ok();
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if year < 1970 || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(i64::from(year), month, day);
    // A day that does not exist (2026-02-30) does not come back the same.
    if !(1..=12).contains(&month) || civil_from_days(days) != (i64::from(year), month, day) {
        return None;
    }
    let secs = u64::try_from(days).ok()? * 86_400
        + u64::from(hour) * 3600
        + u64::from(minute) * 60
        + u64::from(second);
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// Days since 1970-01-01 of a date in the proleptic Gregorian calendar.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day counted from 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = u32::try_from(day_of_year - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Reads and parses the secrets file at `path`. Its bytes are zeroized once parsed.
///
/// # Errors
///
/// A [`SecretsFileError`] naming the file when it cannot be read, is not UTF-8, or does
/// not [parse].
pub fn read(path: &Path) -> Result<FileSecrets, SecretsFileError> {
    let (text, _) = read_text(path)?;
    parse(&text).map_err(|e| e.in_file(path))
}

/// Gives `secrets` what `file` holds: a previous secret until its `expires=` time, or
/// without one, the default expiry after `modified` (the file's modification time).
fn apply(secrets: &Secrets, file: FileSecrets, modified: SystemTime) {
    let previous = file.previous.into_iter().map(|p| {
        let expiry = p.expires.map_or(Expiry::After(modified), Expiry::At);
        (p.secret, expiry)
    });
    secrets.replace(file.current, previous);
}

/// A loaded secrets file, ready to be [watched](Self::watch).
#[derive(Debug)]
pub struct SecretsFile {
    path: PathBuf,
    seen: Option<Fingerprint>,
    applied: Option<Zeroizing<String>>,
}

impl SecretsFile {
    /// Loads the secrets file at `path` into a new [`Secrets`] handle, and remembers
    /// what it loaded so that [`watch`](Self::watch) applies only later changes. A
    /// previous secret whose `expires=` time has passed is not loaded.
    ///
    /// # Errors
    ///
    /// As [`read`].
    pub fn load(path: &Path) -> Result<(Self, Secrets), SecretsFileError> {
        // Before reading: a change made while reading is then seen by the first poll.
        let seen = fingerprint(path);
        let (text, modified) = read_text(path)?;
        let file = parse(&text).map_err(|e| e.in_file(path))?;
        let secrets = Secrets::new(file.current.clone());
        apply(&secrets, file, modified);
        let loaded = Self {
            path: path.to_owned(),
            seen,
            applied: Some(text),
        };
        Ok((loaded, secrets))
    }
}

/// What [`SecretsFile::watch`] compares to notice a change without reading the file: its size,
/// modification time and (on Unix) inode, which an atomic replace changes.
type Fingerprint = (u64, Option<SystemTime>, u64);

fn fingerprint(path: &Path) -> Option<Fingerprint> {
    let meta = fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some((meta.len(), meta.modified().ok(), inode))
}

impl SecretsFile {
    /// Watches the secrets file and applies every change to `secrets`: every `poll` (none:
    /// only on a signal), and at once on `SIGHUP`. The returned future runs until it is
    /// dropped; spawn it. `SIGHUP` is taken over here, when this is called (so a signal
    /// sent once the server listens cannot end the process), which needs a tokio runtime.
    ///
    /// A change seen by a poll is applied once the next two polls find the file
    /// unchanged (same size, modification time, inode and text; two to three seconds at
    /// the default interval), so a file written in place, with a pause shorter than two
    /// intervals, is not applied half-written; `SIGHUP` applies the file as it is, at once. A file whose
    /// text did not change is not applied again, so a previous secret that expired stays
    /// expired when the file is merely touched. A file that cannot be read or does not
    /// parse keeps the secrets already loaded; the reason is logged once (and on every
    /// `SIGHUP`), and a file that cannot be read is tried again at every poll, so fixing
    /// its permissions is noticed without another change.
    pub fn watch(
        self,
        secrets: Secrets,
        poll: Option<Duration>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let mut hangup = Hangup::listen();
        let Self {
            path,
            mut seen,
            mut applied,
        } = self;
        async move {
            // A change seen by earlier polls, and how many saw it the same.
            let mut pending: Option<(Option<Fingerprint>, Zeroizing<String>, u32)> = None;
            // Why the last read failed: tried again at every poll, logged once.
            let mut failed: Option<String> = None;
            loop {
                let forced = {
                    let mut sleep = pin!(async {
                        match poll {
                            Some(every) => tokio::time::sleep(every).await,
                            None => std::future::pending().await,
                        }
                    });
                    std::future::poll_fn(|cx| {
                        if hangup.poll(cx).is_ready() {
                            Poll::Ready(true)
                        } else {
                            sleep.as_mut().poll(cx).map(|()| false)
                        }
                    })
                    .await
                };
                let now = fingerprint(&path);
                if !forced && failed.is_none() && pending.is_none() && now == seen {
                    continue;
                }
                seen = now;
                if forced {
                    tracing::info!("SIGHUP: re-reading the secrets file {}", path.display());
                }
                let (text, modified) = match read_text(&path) {
                    Ok(read) => read,
                    Err(why) => {
                        let why = why.to_string();
                        if forced || failed.as_ref() != Some(&why) {
                            keep(&secrets, &format!("{why} (tried again at every check)"));
                        }
                        failed = Some(why);
                        pending = None;
                        continue;
                    }
                };
                if failed.take().is_some() {
                    tracing::info!("the secrets file {} can be read again", path.display());
                }
                if applied.as_ref() == Some(&text) {
                    pending = None;
                    if forced {
                        tracing::info!(secrets = ?secrets.masked(), "the secrets file is unchanged");
                    }
                    continue;
                }
                let seen_by = match &pending {
                    Some((at, before, polls)) if *at == now && *before == text => polls + 1,
                    _ => 1,
                };
                if !forced && seen_by < STABLE_POLLS {
                    tracing::debug!(
                        "the secrets file {} changed; applied once it stays the same",
                        path.display()
                    );
                    pending = Some((now, text, seen_by));
                    continue;
                }
                pending = None;
                match parse(&text) {
                    Ok(file) => {
                        apply(&secrets, file, modified);
                        tracing::info!(
                            secrets = ?secrets.masked(),
                            "reloaded the secrets file {}",
                            path.display()
                        );
                        applied = Some(text);
                    }
                    Err(why) => keep(&secrets, &why.in_file(&path).to_string()),
                }
            }
        }
    }
}

fn keep(secrets: &Secrets, why: &str) {
    tracing::warn!(
        secrets = ?secrets.masked(),
        "{why}; keeping the secrets already loaded"
    );
}

/// The file's text (zeroized when dropped) and its modification time (now, if the
/// platform has none).
fn read_text(path: &Path) -> Result<(Zeroizing<String>, SystemTime), SecretsFileError> {
    let cannot = |source: io::Error| SecretsFileError::Unreadable {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    let modified = meta.modified().unwrap_or_else(|_| SystemTime::now());
    let size = usize::try_from(meta.len()).unwrap_or(0);
    let mut bytes = Zeroizing::new(Vec::with_capacity(size.saturating_add(1)));
    file.read_to_end(&mut bytes).map_err(cannot)?;
    let bytes = std::mem::take(&mut *bytes);
    let text = String::from_utf8(bytes).map(Zeroizing::new).map_err(|e| {
        // Zeroize the bytes that were not text too.
        drop(Zeroizing::new(e.into_bytes()));
        SecretsFileError::NotUtf8 {
            path: path.to_owned(),
        }
    })?;
    Ok((text, modified))
}

/// `SIGHUP`, where the platform has it: taken over when created, so a signal sent later
/// cannot end the process.
struct Hangup(#[cfg(unix)] Option<tokio::signal::unix::Signal>);

impl Hangup {
    fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::hangup()) {
                Ok(signal) => Self(Some(signal)),
                Err(error) => {
                    tracing::warn!(
                        "cannot listen for SIGHUP ({error}); the secrets file is only polled"
                    );
                    Self(None)
                }
            }
        }
        #[cfg(not(unix))]
        Self()
    }

    /// Ready once per signal received; never ready without a signal to listen to.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        #[cfg(unix)]
        if let Some(signal) = &mut self.0 {
            match signal.poll_recv(cx) {
                Poll::Ready(Some(())) => return Poll::Ready(()),
                Poll::Ready(None) => self.0 = None,
                Poll::Pending => {}
            }
        }
        #[cfg(not(unix))]
        let _ = cx;
        Poll::Pending
    }
}

/// A replacement of a file, prepared before its content is known: the lock and the
/// temporary file next to it are created at once, with the file's owner, group and mode,
/// so a folder the process cannot write to, a file it could not give back to its owner,
/// or another writer at work fails before anything irreversible (such as asking the API
/// for a new secret) is done. [`commit`](Self::commit) writes, syncs and renames it over
/// the file; dropping it uncommitted removes it. Either way the lock is released.
///
/// Through a symbolic link, the link's target is replaced (the link stays). The lock is
/// `.<name>.lock` beside that target, created exclusively: while it exists (another
/// writer runs, or one was killed: then remove it) [`create`](Self::create) fails.
#[derive(Debug)]
pub struct PendingWrite {
    target: PathBuf,
    temp: PathBuf,
    lock: PathBuf,
    file: Option<File>,
    committed: bool,
}

impl PendingWrite {
    /// Takes the lock and creates the temporary file: with the file's owner, group and
    /// mode when it exists, else readable by the owner only (on Unix).
    ///
    /// # Errors
    ///
    /// When the lock is taken ([`io::ErrorKind::AlreadyExists`]), or the temporary file
    /// cannot be created or given the file's owner and mode.
    pub fn create(path: &Path) -> io::Result<Self> {
        let target = match fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => fs::canonicalize(path)?,
            _ => path.to_owned(),
        };
        let name = target
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
        let beside = |suffix: &str| {
            let mut hidden = std::ffi::OsString::from(".");
            hidden.push(name);
            hidden.push(suffix);
            target.with_file_name(hidden)
        };
        let (temp, lock) = (
            beside(&format!(".{}.tmp", std::process::id())),
            beside(".lock"),
        );
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "{} exists: another rotation of this file is under way (or one \
                             was killed: then remove it)",
                            lock.display()
                        ),
                    )
                } else {
                    e
                }
            })?;
        // From here on, dropping it removes the lock (and the temporary file).
        let mut pending = Self {
            target,
            temp,
            lock,
            file: None,
            committed: false,
        };
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&pending.temp)?;
        pending.file = Some(file);
        #[cfg(unix)]
        if let Ok(meta) = fs::metadata(&pending.target) {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            let file = pending.file.as_ref().expect("just opened");
            std::os::unix::fs::fchown(file, Some(meta.uid()), Some(meta.gid())).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot give the new file the owner of {} (uid {}, gid {}): {e}; \
                         run as that user or as root",
                        pending.target.display(),
                        meta.uid(),
                        meta.gid()
                    ),
                )
            })?;
            file.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        }
        Ok(pending)
    }

    /// Writes `lines` (one per line), syncs, and renames the file into place.
    ///
    /// # Errors
    ///
    /// When writing, syncing or renaming fails; the original file is then unchanged.
    pub fn commit(mut self, lines: &[&str]) -> io::Result<()> {
        let mut file = self.file.take().expect("committed once");
        let mut text = Zeroizing::new(String::new());
        for line in lines {
            text.push_str(line);
            text.push('\n');
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&self.temp, &self.target)?;
        self.committed = true;
        // Make the rename itself durable (best effort: not every platform can sync a
        // folder).
        if let Some(dir) = self.target.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if let Ok(dir) = File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for PendingWrite {
    fn drop(&mut self) {
        self.file = None;
        if !self.committed {
            let _ = fs::remove_file(&self.temp);
        }
        let _ = fs::remove_file(&self.lock);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_current_then_previous_ignoring_blank_lines() {
        let file =
            parse("\n  whsec_new_0123456789abcdef0123  \r\n\n\twhsec_old_0123456789abcdef0123\n")
                .unwrap();
        assert_eq!(file.current.masked(), "whsec_••••0123");
        assert_eq!(file.previous.len(), 1);
        assert_eq!(file.previous[0].expires, None);
        for empty in ["", "\n\n", "  \r\n \t\n"] {
            let e = parse(empty).unwrap_err();
            assert!(
                matches!(e, SecretsFileError::NoSecret { path: None }),
                "{e:?}"
            );
            let e = e.to_string();
            assert!(e.contains("no secret"), "{e}");
        }
    }

    #[test]
    fn a_byte_order_mark_is_skipped_and_characters_a_secret_cannot_hold_are_refused() {
        const SECRET: &str = "whsec_e1c5d3a0b2f4e1c5d3a0b2f4";
        let bom = parse(&format!("\u{feff}{SECRET}\n")).unwrap();
        assert_eq!(
            Secrets::new(bom.current).masked(),
            Secrets::new(Secret::new(SECRET).unwrap()).masked()
        );
        assert!(bom.previous.is_empty());
        for (text, why) in [
            (
                format!("{SECRET}\n\u{feff}{SECRET}"),
                "line 2: character 1 of the secret is a byte order mark (U+FEFF)",
            ),
            (
                format!("{SECRET}\u{7}"),
                "line 1: character 31 of the secret is a control character (U+0007)",
            ),
            (
                format!("whsec_\u{a0}{SECRET}"),
                "a non-ASCII space (U+00A0)",
            ),
            (format!("whsec_é{SECRET}"), "the non-ASCII character U+00E9"),
            (
                format!("{SECRET} {SECRET}"),
                "line 1: unexpected text after the secret",
            ),
            (
                format!("{SECRET}\n{SECRET}x expires=soon"),
                "line 2: expires=\"soon\" is not",
            ),
            (
                format!("{SECRET}\n{SECRET}x expires=2026-02-30T00:00:00Z"),
                "is not a UTC time",
            ),
            (
                format!("{SECRET}\n{SECRET}x expires={SECRET}"),
                "line 2: the text after expires= (not shown: too long) is not a UTC time",
            ),
            (
                format!("{SECRET} expires=1"),
                "line 1: the current secret (the first one) cannot expire",
            ),
        ] {
            let e = parse(&text).unwrap_err();
            assert_eq!(e.path(), None);
            let debug = format!("{e:?}");
            let e = e.to_string();
            assert!(e.contains(why), "{e}");
            assert!(!e.contains("e1c5"), "a secret shown: {e}");
            assert!(!debug.contains("e1c5"), "a secret shown: {debug}");
        }
    }

    #[test]
    fn previous_secrets_carry_their_expiry_time() {
        let file = parse(
            "whsec_new_0123456789abcdef0123\n\
             whsec_old_0123456789abcdef0123   expires=2026-12-02T22:10:00Z\n\
             whsec_older_0123456789abcdef0123 expires=1700000000\n\
             whsec_oldest_0123456789abcdef0123\n",
        )
        .unwrap();
        let expires: Vec<_> = file.previous.iter().map(|p| p.expires).collect();
        let at = |secs| Some(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(expires, [at(1_796_249_400), at(1_700_000_000), None]);
        for (secs, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_796_249_400, "2026-12-02T22:10:00Z"),
            (4_107_542_399, "2100-02-28T23:59:59Z"),
        ] {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            assert_eq!(format_time(t), text);
            assert_eq!(parse_time(text), Some(t), "{text}");
        }
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-12-02T24:00:00Z",
            "2026-12-02 22:10:00Z",
            "2026-12-02T22:10:00+01:00",
            "-5",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_unreadable_file_is_named_and_no_secret_is_shown() {
        let e = read(Path::new("/nonexistent/secrets")).unwrap_err();
        assert!(
            matches!(&e, SecretsFileError::Unreadable { source, .. } if source.kind() == io::ErrorKind::NotFound),
            "{e:?}"
        );
        let e = e.to_string();
        assert!(e.contains("/nonexistent/secrets"), "{e}");
        let dir = std::env::temp_dir().join(format!("secrets-file-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad");
        fs::write(&path, b"whsec_\xff\xfe_0123456789abcdef").unwrap();
        let e = read(&path).unwrap_err();
        assert!(matches!(&e, SecretsFileError::NotUtf8 { .. }), "{e:?}");
        assert_eq!(e.path(), Some(path.as_path()));
        let e = e.to_string();
        assert!(e.contains("not UTF-8") && !e.contains("0123"), "{e}");
        // A line the text cannot hold, read from a file: the file and the line named.
        fs::write(&path, "whsec_0123456789abcdef\nwhsec_x\u{a0}y\n").unwrap();
        let e = read(&path).unwrap_err();
        assert_eq!((e.path(), e.line()), (Some(path.as_path()), Some(2)));
        assert_eq!(
            e.to_string(),
            format!(
                "{}: line 2: character 8 of the secret is a non-ASCII space (U+00A0), which a \
                 secret cannot hold (secrets are printable ASCII, such as whsec_ and hex digits)",
                path.display()
            )
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pending_writes_replace_the_file_or_leave_it_alone() {
        let dir = std::env::temp_dir().join(format!("secrets-write-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secrets");
        fs::write(&path, "whsec_old\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        }
        // Dropped uncommitted: the file is unchanged and no temporary file is left.
        drop(PendingWrite::create(&path).unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), "whsec_old\n");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        PendingWrite::create(&path)
            .unwrap()
            .commit(&["whsec_new", "whsec_old"])
            .unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "whsec_new\nwhsec_old\n");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // The original file's mode, not the temporary file's 0600.
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o640);
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
