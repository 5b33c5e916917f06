//! Operate the inbox of `inbox-receiver`: list, show, replay, purge, re-verify.
//!
//! ```text
//! cargo run -p inbox-receiver --bin inbox -- counts
//! cargo run -p inbox-receiver --bin inbox -- list dead [--after ID] [--limit N]
//! cargo run -p inbox-receiver --bin inbox -- show ID
//! cargo run -p inbox-receiver --bin inbox -- replay ID | replay --dead
//! cargo run -p inbox-receiver --bin inbox -- purge ID | purge --state dead [--force]
//! cargo run -p inbox-receiver --bin inbox -- prune [--days 30]
//! cargo run -p inbox-receiver --bin inbox -- reverify ID
//! ```
//!
//! `purge` deletes done and dead deliveries. A pending delivery was acknowledged to the
//! sender (2xx) and never processed: the sender will not send it again, so deleting it
//! loses the event. `purge` refuses it, saying how many it would delete, unless
//! `--force` is given (running ones are never purged: a worker holds them).
//!
//! `DATABASE_URL` (default `sqlite://webhooks.db`) names the inbox, which must exist:
//! the tool creates no database and no tables (a wrong URL or working directory is an
//! error, not an empty inbox). `reverify` needs
//! the secrets as the receiver has them: `MAPPING_WEBHOOK_SECRET_FILE`, or
//! `MAPPING_WEBHOOK_SECRET` (and `MAPPING_WEBHOOK_SECRET_PREVIOUS`). Exits 0 on success, 1 on an error, 2 on a usage mistake.

use std::process::ExitCode;
use std::time::Duration;

use std::path::Path;

use mapping_webhooks::secrets_file::SecretsFile;
use mapping_webhooks_examples::DEV_SECRET;
use mapping_webhooks_inbox::{DeliveryInfo, Inbox, Secret, Secrets, State};

const USAGE: &str = "usage: inbox counts | list STATE [--after ID] [--limit N] | show ID | \
                     replay ID | replay --dead | purge ID [--force] | \
                     purge --state STATE [--force] | prune [--days N] | reverify ID";

/// The largest `prune --days`: a hundred years.
const MAX_DAYS: u64 = 36_500;

/// The receiver's secrets: from its secrets file, else from the environment.
fn secrets() -> Result<Secrets, String> {
    if let Some(path) = std::env::var_os("MAPPING_WEBHOOK_SECRET_FILE").filter(|p| !p.is_empty()) {
        return SecretsFile::load(Path::new(&path))
            .map(|(_, secrets)| secrets)
            .map_err(|e| e.to_string());
    }
    let secret = std::env::var("MAPPING_WEBHOOK_SECRET")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEV_SECRET.to_owned());
    let current = Secret::new(secret).map_err(|e| e.to_string())?;
    let previous = std::env::var("MAPPING_WEBHOOK_SECRET_PREVIOUS").ok();
    let previous = previous.map(Secret::new).transpose();
    let previous = previous.map_err(|e| e.to_string())?;
    Ok(Secrets::with_previous(current, previous))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "sqlite://webhooks.db".to_owned());
    let secrets = match secrets() {
        Ok(secrets) => secrets,
        Err(error) => return fail(&error),
    };
    let inbox = match Inbox::builder().existing_only().connect(&url).await {
        Ok(inbox) => inbox,
        Err(error) => return fail(&format!("cannot open the inbox: {error}")),
    };
    match run(&inbox, &secrets, &args).await {
        Ok(Some(output)) => {
            println!("{output}");
            ExitCode::SUCCESS
        }
        Ok(None) => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
        Err(error) => fail(&error),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("inbox: {message}");
    ExitCode::FAILURE
}

/// Runs one command; `Ok(None)` for a usage mistake.
async fn run(inbox: &Inbox, secrets: &Secrets, args: &[String]) -> Result<Option<String>, String> {
    let force = args.iter().any(|a| a == "--force");
    let args: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--force")
        .collect();
    let flag = |name: &str| -> Option<&str> {
        args.iter()
            .position(|a| *a == name)
            .and_then(|i| args.get(i + 1).copied())
    };
    let id = |s: &str| {
        s.parse::<i64>()
            .map_err(|_| format!("{s:?} is not a delivery id"))
    };
    let e = |e: mapping_webhooks_inbox::InboxError| e.to_string();
    Ok(Some(match args.as_slice() {
        ["counts"] => {
            let counts = inbox.counts().await.map_err(e)?;
            State::ALL
                .iter()
                .map(|s| format!("{s}\t{}", counts.get(s).copied().unwrap_or(0)))
                .collect::<Vec<_>>()
                .join("\n")
        }
        ["list", state, ..] => {
            let state: State = state
                .parse()
                .map_err(|e: mapping_webhooks_inbox::UnknownState| e.to_string())?;
            let after = flag("--after").map(id).transpose()?.unwrap_or(0);
            let limit = match flag("--limit") {
                Some(n) => n
                    .parse()
                    .map_err(|_| format!("--limit {n:?} is not a number"))?,
                None => 50,
            };
            let rows = inbox.list(state, after, limit).await.map_err(e)?;
            let mut out =
                String::from("id\tstate\tattempts\tscheme\ttenant\ttype\teventId\tlast error");
            for row in &rows {
                out.push('\n');
                out.push_str(&summary(row));
            }
            out
        }
        ["show", n] => {
            let stored = inbox.show(id(n)?).await.map_err(e)?;
            let i = &stored.info;
            format!(
                "id: {}\nevent: {} ({})\nscheme: {}\ntenant: {}\ndelivery: {}\n\
                 state: {} after {} attempt(s)\n\
                 due/lease until (ms): {}\nreceived at (ms): {}\nsigned at: {} with the {} secret\n\
                 last error: {}\nsignature: {}\nbody ({} bytes):\n{}",
                i.id,
                i.event_id,
                i.event_type,
                i.scheme,
                i.tenant.as_deref().unwrap_or("-"),
                i.delivery_id,
                i.state,
                i.attempts,
                i.due_at_ms,
                i.received_at_ms,
                i.signed_at,
                i.secret,
                i.last_error.as_deref().unwrap_or("-"),
                stored.signature,
                stored.body.len(),
                String::from_utf8_lossy(&stored.body)
            )
        }
        ["replay", "--dead"] => format!("{} replayed", inbox.replay_dead().await.map_err(e)?),
        ["replay", n] => match inbox.replay(id(n)?).await.map_err(e)? {
            true => format!("{n} replayed"),
            false => return Err(format!("{n} is running; try again when its attempt ends")),
        },
        ["purge", "--state", state] => {
            let state: State = state
                .parse()
                .map_err(|e: mapping_webhooks_inbox::UnknownState| e.to_string())?;
            if state == State::Pending && !force {
                let n = inbox
                    .counts()
                    .await
                    .map_err(e)?
                    .get(&state)
                    .copied()
                    .unwrap_or(0);
                return Err(unprocessed(&format!("{n} pending deliveries")));
            }
            format!("{} purged", inbox.purge_state(state).await.map_err(e)?)
        }
        ["purge", n] => {
            let n = id(n)?;
            if !force && inbox.show(n).await.map_err(e)?.info.state == State::Pending {
                return Err(unprocessed(&format!("delivery {n} (pending)")));
            }
            match inbox.purge(n).await.map_err(e)? {
                true => format!("{n} purged"),
                false => return Err(format!("{n} is running; try again when its attempt ends")),
            }
        }
        ["prune", ..] => {
            let days: u64 = match flag("--days") {
                Some(d) => d
                    .parse()
                    .map_err(|_| format!("--days {d:?} is not a number"))?,
                None => 30,
            };
            // Checked: `days * 86400` overflowed (a panic, or in a release build a
            // wrapped, near-zero retention that pruned everything done).
            if days > MAX_DAYS {
                return Err(format!(
                    "--days {days} is more than {MAX_DAYS} (a hundred years); to keep every done delivery, prune nothing"
                ));
            }
            let n = inbox
                .prune(Duration::from_secs(days * 24 * 3600))
                .await
                .map_err(e)?;
            format!("{n} done deliveries older than {days} days pruned")
        }
        ["reverify", n] => {
            let verified = inbox.reverify(id(n)?, secrets).await.map_err(e)?;
            format!(
                "{n} verifies: {} signed at {} with the {} secret",
                verified.event_id, verified.timestamp, verified.secret
            )
        }
        _ => return Ok(None),
    }))
}

/// The refusal to purge work that was acknowledged and never processed.
fn unprocessed(what: &str) -> String {
    format!(
        "refusing to purge {what}: they were acknowledged to the sender and never processed, \
         and the sender will not send them again; add --force to delete them anyway"
    )
}

fn summary(row: &DeliveryInfo) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
        row.id,
        row.state,
        row.attempts,
        row.scheme,
        row.tenant.as_deref().unwrap_or("-"),
        row.event_type,
        row.event_id,
        row.last_error.as_deref().unwrap_or("-")
    )
}
