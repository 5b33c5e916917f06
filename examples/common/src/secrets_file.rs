//! The receivers' secrets file (`MAPPING_WEBHOOK_SECRET_FILE`): one secret per line, the
//! current one first, then previous ones; blank lines are ignored.
//!
//! The receivers load it at startup and then [watch](SecretsFile::watch) it: the file is checked every
//! second (its size, modification time and inode, so an atomic replace is seen) and
//! re-read at once on `SIGHUP`. A changed file is applied with [`Secrets::set`], so
//! requests in flight finish with the secrets they started with and the next one uses
//! the new ones, with no restart and no change to the dedup store. A file that cannot be
//! read, or holds no secret, keeps the secrets already loaded, and says why in the log.
//!
//! [`PendingWrite`] replaces the file atomically (a temporary file in the same folder,
//! synced, then renamed over it), as the `rotate` command does.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use mapping_webhooks::{Secret, Secrets};
use zeroize::Zeroizing;

/// How often [`SecretsFile::watch`] looks at the file when `MAPPING_WEBHOOK_SECRET_FILE_POLL_SECS` is
/// not set.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The secrets a file holds: the current one, then the previous ones.
#[derive(Debug)]
pub struct FileSecrets {
    /// The first line.
    pub current: Secret,
    /// The other lines, in order.
    pub previous: Vec<Secret>,
}

/// Parses a secrets file's text.
///
/// # Errors
///
/// A message (never containing a secret) when the text holds no secret.
pub fn parse(text: &str) -> Result<FileSecrets, String> {
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| Secret::new(line).map_err(|e| e.to_string()));
    let current = lines
        .next()
        .ok_or_else(|| "the file holds no secret (only blank lines, or nothing)".to_owned())??;
    let previous = lines.collect::<Result<_, _>>()?;
    Ok(FileSecrets { current, previous })
}

/// Reads and parses the secrets file at `path`. Its bytes are zeroized once parsed.
///
/// # Errors
///
/// A message naming the file when it cannot be read, is not UTF-8, or holds no secret.
pub fn read(path: &Path) -> Result<FileSecrets, String> {
    let bytes =
        Zeroizing::new(fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?);
    let text =
        std::str::from_utf8(&bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))?;
    parse(text).map_err(|e| format!("{}: {e}", path.display()))
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
    /// what it loaded so that [`watch`](Self::watch) applies only later changes.
    ///
    /// # Errors
    ///
    /// As [`read`].
    pub fn load(path: &Path) -> Result<(Self, Secrets), String> {
        // Before reading: a change made while reading is then seen by the first poll.
        let seen = fingerprint(path);
        let text = read_text(path)?;
        let file = parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let secrets = Secrets::new(file.current.clone());
        secrets.set(file.current, file.previous);
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
    /// A file whose text did not change is not applied again, so a previous secret that
    /// expired stays expired when the file is merely touched. A file that cannot be read
    /// or holds no secret keeps the secrets already loaded; the reason is logged once per
    /// change of the file (and on every `SIGHUP`).
    pub fn watch(
        self,
        secrets: Secrets,
        poll: Option<Duration>,
    ) -> impl Future<Output = ()> + Send + 'static {
        #[cfg(unix)]
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(signal) => Some(signal),
            Err(error) => {
                tracing::warn!(
                    "cannot listen for SIGHUP ({error}); the secrets file is only polled"
                );
                None
            }
        };
        let Self {
            path,
            mut seen,
            mut applied,
        } = self;
        async move {
            loop {
                #[cfg(unix)]
                let signalled = async {
                    match &mut hangup {
                        Some(signal) => signal.recv().await,
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let signalled = std::future::pending::<Option<()>>();
                let forced = tokio::select! {
                    () = async {
                        match poll {
                            Some(every) => tokio::time::sleep(every).await,
                            None => std::future::pending().await,
                        }
                    } => false,
                    Some(()) = signalled => true,
                };
                let now = fingerprint(&path);
                if !forced && now == seen {
                    continue;
                }
                seen = now;
                if forced {
                    tracing::info!("SIGHUP: re-reading the secrets file {}", path.display());
                }
                let text = match read_text(&path) {
                    Ok(text) => text,
                    Err(why) => {
                        keep(&secrets, &why);
                        continue;
                    }
                };
                if applied.as_ref() == Some(&text) {
                    if forced {
                        tracing::info!(secrets = ?secrets.masked(), "the secrets file is unchanged");
                    }
                    continue;
                }
                match parse(&text) {
                    Ok(file) => {
                        secrets.set(file.current, file.previous);
                        tracing::info!(
                            secrets = ?secrets.masked(),
                            "reloaded the secrets file {}",
                            path.display()
                        );
                        applied = Some(text);
                    }
                    Err(why) => keep(&secrets, &format!("{}: {why}", path.display())),
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

fn read_text(path: &Path) -> Result<Zeroizing<String>, String> {
    let bytes = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    String::from_utf8(bytes).map(Zeroizing::new).map_err(|e| {
        // Zeroize the bytes that were not text too.
        drop(Zeroizing::new(e.into_bytes()));
        format!("{} is not UTF-8 text", path.display())
    })
}

/// A replacement of a file, prepared before its content is known: the temporary file
/// next to it is created at once, so a folder the process cannot write to fails before
/// anything irreversible (such as asking the API for a new secret) is done.
/// [`commit`](Self::commit) writes, syncs and renames it over the file; dropping it
/// uncommitted removes it.
#[derive(Debug)]
pub struct PendingWrite {
    path: PathBuf,
    temp: PathBuf,
    file: Option<File>,
}

impl PendingWrite {
    /// Creates the temporary file (readable by the owner only, on Unix).
    ///
    /// # Errors
    ///
    /// When the temporary file cannot be created.
    pub fn create(path: &Path) -> io::Result<Self> {
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".{}.tmp", std::process::id()));
        let temp = path.with_file_name(temp_name);
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&temp)?;
        Ok(Self {
            path: path.to_owned(),
            temp,
            file: Some(file),
        })
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
        fs::rename(&self.temp, &self.path)?;
        // Make the rename itself durable (best effort: not every platform can sync a
        // folder).
        if let Some(dir) = self.path.parent() {
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
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.temp);
        }
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
        for empty in ["", "\n\n", "  \r\n \t\n"] {
            let e = parse(empty).unwrap_err();
            assert!(e.contains("no secret"), "{e}");
        }
    }

    #[test]
    fn an_unreadable_file_is_named_and_no_secret_is_shown() {
        let e = read(Path::new("/nonexistent/secrets")).unwrap_err();
        assert!(e.contains("/nonexistent/secrets"), "{e}");
        let dir = std::env::temp_dir().join(format!("secrets-file-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad");
        fs::write(&path, b"whsec_\xff\xfe_0123456789abcdef").unwrap();
        let e = read(&path).unwrap_err();
        assert!(e.contains("not UTF-8") && !e.contains("0123"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pending_writes_replace_the_file_or_leave_it_alone() {
        let dir = std::env::temp_dir().join(format!("secrets-write-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secrets");
        fs::write(&path, "whsec_old\n").unwrap();
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
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
