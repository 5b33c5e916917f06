//! The `inbox` operator tool of `inbox-receiver`, run as a process against the
//! receiver's database: it refuses to purge acknowledged work that was never processed
//! without `--force`, refuses a database that does not exist instead of creating an
//! empty one, and refuses an absurd `prune --days`.

use std::path::Path;
use std::process::{Command, Output};
use std::thread;
use std::time::Duration;

use crate::inbox_crash::{deliver, free_port, postgres, start, temp_dir};

/// Runs `tool` with `args` in `dir`, on `url` (or the default `sqlite://webhooks.db`).
fn run(tool: &str, dir: &Path, url: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(tool);
    command
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("MAPPING_WEBHOOK_SECRET");
    if let Some(url) = url {
        command.env("DATABASE_URL", url);
    }
    command.output().expect("run the inbox tool")
}

fn said(output: &Output) -> String {
    format!(
        "exit {:?}; stdout: {}; stderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The count of `state` that `inbox counts` prints.
fn count(tool: &str, dir: &Path, state: &str) -> u64 {
    let output = run(tool, dir, None, &["counts"]);
    assert!(output.status.success(), "{}", said(&output));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{state}\t"))?.parse().ok())
        .unwrap_or_else(|| panic!("no {state} count: {}", said(&output)))
}

/// `purge --state pending` and `purge ID` of a pending delivery are refused without
/// `--force`, with the count they would delete; nothing is deleted.
pub fn purge_of_pending_work_needs_force(receiver: &str, tool: &str) {
    let dir = temp_dir("tool-purge");
    let addr = format!("127.0.0.1:{}", free_port());
    let accepted = start(receiver, &dir, &addr, None, false);
    for i in 0..3 {
        assert_eq!(deliver(&addr, &format!("evt_tool_purge_{i}")), 202);
    }
    drop(accepted);

    // `show` and `list` name each delivery's scheme and tenant.
    let shown = run(tool, &dir, None, &["show", "1"]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.status.success() && text.contains("\nscheme: mapping\ntenant: -\n"),
        "{}",
        said(&shown)
    );
    let listed = run(tool, &dir, None, &["list", "pending"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success()
            && text.starts_with("id\tstate\tattempts\tscheme\ttenant\t")
            && text
                .lines()
                .skip(1)
                .all(|row| row.contains("\tmapping\t-\t")),
        "{}",
        said(&listed)
    );

    let refused = run(tool, &dir, None, &["purge", "--state", "pending"]);
    assert_eq!(refused.status.code(), Some(1), "{}", said(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("3 pending deliveries") && stderr.contains("--force"),
        "{}",
        said(&refused)
    );
    assert_eq!(count(tool, &dir, "pending"), 3, "nothing deleted");

    let one = run(tool, &dir, None, &["purge", "1"]);
    assert_eq!(one.status.code(), Some(1), "{}", said(&one));
    assert_eq!(count(tool, &dir, "pending"), 2 + 1, "nothing deleted");

    // Done and dead deliveries need no force (none here).
    let dead = run(tool, &dir, None, &["purge", "--state", "dead"]);
    assert!(dead.status.success(), "{}", said(&dead));

    let forced = run(
        tool,
        &dir,
        None,
        &["purge", "--state", "pending", "--force"],
    );
    assert!(forced.status.success(), "{}", said(&forced));
    assert_eq!(String::from_utf8_lossy(&forced.stdout).trim(), "3 purged");
    assert_eq!(count(tool, &dir, "pending"), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A wrong working directory, a mistyped SQLite path, a Postgres database without the
/// inbox: an error (exit 1), and no database or table created.
pub fn a_database_that_does_not_exist_is_refused(tool: &str) {
    let dir = temp_dir("tool-missing");
    for url in [
        None,
        Some(format!("sqlite://{}", dir.join("typo.db").display())),
    ] {
        let output = run(tool, &dir, url.as_deref(), &["counts"]);
        assert_eq!(output.status.code(), Some(1), "{url:?}: {}", said(&output));
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("no inbox"),
            "{url:?}: {}",
            said(&output)
        );
    }
    let created: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert!(created.is_empty(), "files created: {created:?}");
    let _ = std::fs::remove_dir_all(&dir);

    let Some(pg) = postgres::PostgresServer::start("inbox_tool_missing") else {
        return;
    };
    let dir = temp_dir("tool-missing-pg");
    // Twice: had the first run created the schema, the second would find it.
    for _ in 0..2 {
        let output = run(tool, &dir, Some(&pg.url()), &["counts"]);
        assert_eq!(output.status.code(), Some(1), "{}", said(&output));
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("no inbox"),
            "{}",
            said(&output)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `prune --days N` with `N · 86400` past `u64`: refused with a reason (not a panic,
/// not a wrapped, near-zero retention); done deliveries kept.
pub fn prune_refuses_absurd_days(receiver: &str, tool: &str) {
    let dir = temp_dir("tool-prune");
    let addr = format!("127.0.0.1:{}", free_port());
    let processing = start(receiver, &dir, &addr, None, true);
    for i in 0..2 {
        assert_eq!(deliver(&addr, &format!("evt_tool_prune_{i}")), 202);
    }
    // Both marked done (the tool reads the database while the receiver runs).
    let mut done = 0;
    for _ in 0..300 {
        done = count(tool, &dir, "done");
        if done == 2 {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(done, 2, "the receiver processes both deliveries");
    drop(processing);

    // 213503982334602 · 86400 is 2^64 + 61184: it wrapped to 17 hours.
    for days in ["213503982334602", "36501"] {
        let output = run(tool, &dir, None, &["prune", "--days", days]);
        assert_eq!(output.status.code(), Some(1), "{days}: {}", said(&output));
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("--days"),
            "{days}: {}",
            said(&output)
        );
    }
    let kept = run(tool, &dir, None, &["prune", "--days", "36500"]);
    assert!(kept.status.success(), "{}", said(&kept));
    assert_eq!(count(tool, &dir, "done"), 2, "done deliveries kept");
    let _ = std::fs::remove_dir_all(&dir);
}
