//! The secrets-file watcher over real files: a change is applied once it stays the same,
//! a file that holds no secret or cannot be read keeps the secrets already loaded (and
//! the next good file is still applied), and `SIGHUP` applies the file at once.
#![cfg(feature = "secrets-file")]

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use mapping_webhooks::Secret;
use mapping_webhooks::Secrets;
use mapping_webhooks::secrets_file::SecretsFile;

const A: &str = "whsec_aaaa_0123456789abcdef01234567aaaa";
const B: &str = "whsec_bbbb_0123456789abcdef01234567bbbb";
const C: &str = "whsec_cccc_0123456789abcdef01234567cccc";

/// The poll interval of these tests: short, so the three polls a change waits for take
/// a fraction of a second.
const POLL: Duration = Duration::from_millis(20);

fn masked(secret: &str) -> String {
    Secret::new(secret).unwrap().masked()
}

/// A folder of its own for one test.
fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("secrets-file-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits (at most five seconds) until the current secret is `secret`; returns whether it
/// became so.
async fn current_becomes(secrets: &Secrets, secret: &str) -> bool {
    for _ in 0..500 {
        if secrets.masked()[0] == masked(secret) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_applied_and_a_bad_or_missing_file_keeps_the_loaded_secrets() {
    let dir = folder("watch");
    let path = dir.join("secrets");
    fs::write(&path, format!("{A}\n")).unwrap();
    let (file, secrets) = SecretsFile::load(&path).unwrap();
    assert_eq!(secrets.masked(), [masked(A)]);
    let watcher = tokio::spawn(file.watch(secrets.clone(), Some(POLL)));

    // A new current secret, the old one kept as a previous one.
    fs::write(&path, format!("{B}\n{A} expires=4102444800\n")).unwrap();
    assert!(current_becomes(&secrets, B).await, "{:?}", secrets.masked());
    assert_eq!(secrets.masked(), [masked(B), masked(A)]);

    // A file that holds no secret, then a missing file: the secrets stay. Each is then
    // followed by a good file, which is applied: the watcher went on.
    let mut current = B;
    for (bad, next) in [(Some("\n\n"), C), (None, B)] {
        match bad {
            Some(text) => fs::write(&path, text).unwrap(),
            None => fs::remove_file(&path).unwrap(),
        }
        // Ten polls: more than the three a change waits for.
        tokio::time::sleep(POLL * 10).await;
        assert_eq!(
            secrets.masked()[0],
            masked(current),
            "a bad file ({bad:?}) changed the secrets"
        );
        fs::write(&path, format!("{next}\n")).unwrap();
        assert!(
            current_becomes(&secrets, next).await,
            "after a bad file ({bad:?}), a good one was not applied: {:?}",
            secrets.masked()
        );
        current = next;
    }
    watcher.abort();
    fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_the_file_at_once_without_polling() {
    let dir = folder("sighup");
    let path = dir.join("secrets");
    fs::write(&path, format!("{A}\n")).unwrap();
    let (file, secrets) = SecretsFile::load(&path).unwrap();
    // No poll: only a signal re-reads the file. SIGHUP is taken over here.
    let watcher = tokio::spawn(file.watch(secrets.clone(), None));
    fs::write(&path, format!("{C}\n")).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(secrets.masked(), [masked(A)], "applied without a signal");

    let status = Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(current_becomes(&secrets, C).await, "{:?}", secrets.masked());
    // The old current secret stays accepted as a previous one.
    assert_eq!(secrets.masked(), [masked(C), masked(A)]);
    watcher.abort();
    fs::remove_dir_all(&dir).unwrap();
}
