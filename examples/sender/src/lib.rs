//! Signs a webhook envelope the way Mapping.Travel does and POSTs it, like the
//! dashboard's Test button. With no arguments it targets the example receiver with the
//! development secret. `sender --help` lists the options (see [`HELP`]).
//!
//! ```text
//! cargo run -p sender -- [OPTIONS]
//! ```
//!
//! The command is [`run`], here so that tests can run the same code in-process;
//! `src/main.rs` calls it with the process's arguments, environment and output.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mapping_webhooks::scheme::Scheme;
use mapping_webhooks::{
    DELIVERY_HEADER, DUPLICATE_HEADER, EVENT_HEADER, Envelope, MAPPING_COMPLETED, MappingCompleted,
    SIGNATURE_HEADER, Secret, Signer,
};
use mapping_webhooks_examples::client::{check_url, describe, http_client};
use mapping_webhooks_examples::{DEFAULT_BIND_ADDR, DEV_SECRET, WEBHOOK_PATH};
use serde_json::Value;

/// The sender's retry schedule after the first attempt: 1 m, 5 m, 30 m (4 attempts).
const RETRY_AFTER_SECS: [u64; 3] = [60, 5 * 60, 30 * 60];
/// The sender waits this long for an answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

const USAGE: &str = "usage: sender [--url URL] [--secret SECRET] [--scheme NAME] [--event TYPE] \
[--event-id ID] [--copies N] [--timestamp-offset SECS] [--retry] [--time-scale F] [--ca-cert FILE] \
(--help for details)";

/// What `--help` prints.
pub const HELP: &str = "\
Signs a webhook like Mapping.Travel does and POSTs it, like the dashboard's Test button.

usage: cargo run -p sender -- [OPTIONS]

Options (each also as --flag=value):
  --url URL                Where to POST: http://, or https:// such as your deployed
                           endpoint (the real sender posts only to https://).
                           [default: http://127.0.0.1:3000/hooks/mapping]
  --ca-cert FILE           Also trusts the certificate authorities in this PEM file,
                           for an https:// endpoint with a private or self-signed
                           certificate. [default: the system's authorities only]
  --secret SECRET          The signing secret, the whole whsec_... string.
                           [default: $MAPPING_WEBHOOK_SECRET, else the public
                           development secret the example receivers use]
  --scheme NAME            Signs as another sender does instead: standard (Standard
                           Webhooks), svix, stripe, github, shopify or slack, with
                           that provider's headers and its event id (in a header, or
                           in the body: Stripe's id, Slack's event_id); --secret is
                           then that provider's secret (Standard Webhooks and Svix:
                           whsec_ and base64). [default: mapping; with another
                           scheme the default URL ends /hooks/NAME]
  --event TYPE             The event type: mapping.completed (with the documented
                           payload), mapping.error.resolved or any other (with {} as
                           data). [default: mapping.completed]
  --event-id ID            The eventId. Reuse one to see deduplication.
                           [default: a new evt_... id]
  --copies N               Sends N copies of the event at once, each a delivery with
                           its own id. [default: 1]
  --timestamp-offset SECS  Shifts the signed timestamp by SECS seconds: -400 is stale,
                           400 is in the future (both refused, 401). [default: 0]
  --retry                  On a failure, retries after 1 m, 5 m and 30 m, as the real
                           sender does (4 attempts in all).
  --time-scale F           Divides those waits by F (60: 1 s, 5 s, 30 s). [default: 1]
  -h, --help               Prints this help.

HTTPS needs the `https` feature (rustls), off by default to keep the quick
start's build short: cargo run -p sender --features https -- --url https://...

Each attempt prints its status and the receiver's answer. A copy ends as:
  processed    a 2xx from the handler;
  duplicate    200 with X-Webhook-Duplicate: true (the receiver had already
               processed or stored this event): the handler did not run again;
  in flight    409: another copy was being processed at that moment (the real
               sender retries it later, and it is then a duplicate);
  failed       anything else, or no answer.

Exit status: 0 when every copy is processed, duplicate or in flight, at most one was
processed, and an in-flight copy's twin was processed in this run (so --copies 5 on a
new event exits 0 with one processed, the rest duplicates or in flight); 1 otherwise;
2 for a usage error.
";

struct Options {
    url: String,
    /// Whether `--url` was given (else it follows `--scheme`).
    url_given: bool,
    scheme: Scheme,
    secret: String,
    event: String,
    event_id: String,
    copies: usize,
    timestamp_offset: i64,
    retry: bool,
    time_scale: f64,
    ca_cert: Option<PathBuf>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("url", &self.url)
            .field("event", &self.event)
            .field("event_id", &self.event_id)
            .field("copies", &self.copies)
            .finish_non_exhaustive()
    }
}

/// What the command line asks for.
#[derive(Debug)]
enum Command {
    Send(Options),
    Help,
}

fn parse(
    args: impl IntoIterator<Item = String>,
    var: impl Fn(&str) -> Option<String>,
) -> Result<Command, String> {
    let mut options = Options {
        url: format!("http://{DEFAULT_BIND_ADDR}{WEBHOOK_PATH}"),
        url_given: false,
        scheme: Scheme::Mapping,
        secret: var("MAPPING_WEBHOOK_SECRET")
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| DEV_SECRET.to_owned()),
        event: MAPPING_COMPLETED.to_owned(),
        event_id: new_id("evt"),
        copies: 1,
        timestamp_offset: 0,
        retry: false,
        time_scale: 1.0,
        ca_cert: None,
    };
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
            "--url" => {
                options.url = value("--url")?;
                options.url_given = true;
            }
            "--scheme" => {
                options.scheme = value("--scheme")?
                    .parse()
                    .map_err(|e| format!("--scheme: {e}"))?;
            }
            "--secret" => options.secret = value("--secret")?,
            "--event" => options.event = value("--event")?,
            "--event-id" => options.event_id = value("--event-id")?,
            "--copies" => {
                options.copies = value("--copies")?
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or("--copies needs a number of at least 1")?;
            }
            "--timestamp-offset" => {
                options.timestamp_offset = value("--timestamp-offset")?
                    .parse()
                    .map_err(|_| "--timestamp-offset needs whole seconds, such as -400")?;
            }
            "--retry" => options.retry = true,
            "--time-scale" => {
                options.time_scale = value("--time-scale")?
                    .parse()
                    .ok()
                    .filter(|f: &f64| f.is_finite() && *f > 0.0)
                    .ok_or("--time-scale needs a positive number, such as 60")?;
            }
            "--ca-cert" => options.ca_cert = Some(PathBuf::from(value("--ca-cert")?)),
            "-h" | "--help" => return Ok(Command::Help),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if !options.url_given && options.scheme != Scheme::Mapping {
        options.url = format!("http://{DEFAULT_BIND_ADDR}/hooks/{}", options.scheme);
    }
    check_url("--url", &options.url)?;
    Ok(Command::Send(options))
}

/// How one copy ended, from its last attempt's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// A 2xx from the handler.
    Processed,
    /// 200 with `X-Webhook-Duplicate: true`, as every receiver answers a copy of an
    /// event it already processed (inline) or stored (the inbox): the handler did not
    /// run again.
    Duplicate,
    /// 409: another copy was being processed.
    InFlight,
    /// Any other answer, or none.
    Failed,
}

impl Outcome {
    fn of(status: u16, duplicate: bool) -> Self {
        match status {
            200 if duplicate => Self::Duplicate,
            200..=299 => Self::Processed,
            409 => Self::InFlight,
            _ => Self::Failed,
        }
    }
}

/// The copies' outcomes, as a line to print and whether the run succeeded (see [`HELP`]).
fn summarise(outcomes: &[Outcome]) -> (String, bool) {
    let count = |o: Outcome| outcomes.iter().filter(|x| **x == o).count();
    let (processed, duplicate, in_flight, failed) = (
        count(Outcome::Processed),
        count(Outcome::Duplicate),
        count(Outcome::InFlight),
        count(Outcome::Failed),
    );
    let ok = failed == 0 && processed <= 1 && (in_flight == 0 || processed == 1);
    let mut line = format!(
        "{} cop{}: {processed} processed, {duplicate} duplicate, {in_flight} in flight (409: \
         another copy was being processed), {failed} failed",
        outcomes.len(),
        if outcomes.len() == 1 { "y" } else { "ies" },
    );
    if processed > 1 {
        line.push_str(": more than one copy was processed, deduplication did not work");
    } else if in_flight > 0 && processed == 0 {
        line.push_str(": no copy of this run was processed");
    }
    (line, ok)
}

/// The `sender` command: `args` without the program's name, `var` reads the
/// environment (`MAPPING_WEBHOOK_SECRET`), and what it prints goes to `out` and `err`.
/// Returns the exit status (see [`HELP`]): 0, 1, or 2 for a usage error.
///
/// Runs on a runtime of its own: call it from outside any tokio runtime.
pub fn run(
    args: Vec<String>,
    var: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let options = match parse(args, var) {
        Ok(Command::Send(options)) => options,
        Ok(Command::Help) => {
            let _ = write!(out, "{HELP}");
            return 0;
        }
        Err(message) => {
            let _ = writeln!(err, "{message}");
            return 2;
        }
    };
    let secret = match Secret::new(&options.secret) {
        Ok(secret) => secret,
        Err(error) => {
            let _ = writeln!(err, "--secret: {error}");
            return 2;
        }
    };
    // A secret the scheme cannot sign with (Standard Webhooks' is base64) is a usage
    // error, found before anything is sent.
    if let Err(error) = options.scheme.sign(&secret, "probe", 0, b"") {
        let _ = writeln!(err, "--secret: {error}");
        return 2;
    }
    let signer = Signer::new(secret.clone());
    let http = match http_client(ANSWER_TIMEOUT, options.ca_cert.as_deref()) {
        Ok(http) => http,
        Err(error) => {
            let _ = writeln!(err, "{error}");
            return 2;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let ok = runtime.block_on(send(options, (signer, secret), http, out));
    u8::from(!ok)
}

/// Sends the copies, printing each attempt's line on `out` as it comes, then the
/// summary; says whether the run succeeded.
async fn send(
    options: Options,
    signer: (Signer, Secret),
    http: reqwest::Client,
    out: &mut dyn Write,
) -> bool {
    let _ = writeln!(
        out,
        "sending {}{} ({}) to {}{}",
        if options.scheme == Scheme::Mapping {
            String::new()
        } else {
            format!("a {} webhook, ", options.scheme)
        },
        options.event,
        options.event_id,
        options.url,
        if options.copies > 1 {
            format!(", {} copies in parallel", options.copies)
        } else {
            String::new()
        }
    );
    let options = std::sync::Arc::new(options);
    let created_at = rfc3339(now_secs());
    // The copies run in parallel and send their lines here, printed as they come.
    let (lines, mut printed) = tokio::sync::mpsc::unbounded_channel();
    let mut copies = Vec::with_capacity(options.copies);
    for copy in 1..=options.copies {
        let (options, signer, http, created_at, lines) = (
            options.clone(),
            signer.clone(),
            http.clone(),
            created_at.clone(),
            lines.clone(),
        );
        copies.push(tokio::spawn(async move {
            deliver(&options, &signer, &http, &created_at, copy, &lines).await
        }));
    }
    drop(lines);
    while let Some(line) = printed.recv().await {
        let _ = writeln!(out, "{line}");
    }
    let mut outcomes = Vec::with_capacity(options.copies);
    for copy in copies {
        outcomes.push(copy.await.unwrap_or(Outcome::Failed));
    }
    let (summary, ok) = summarise(&outcomes);
    let _ = writeln!(out, "{summary}");
    ok
}

/// Delivers one copy, retrying on the sender's schedule if asked, and says how it ended.
/// Its lines go to `lines`.
async fn deliver(
    options: &Options,
    (signer, secret): &(Signer, Secret),
    http: &reqwest::Client,
    created_at: &str,
    copy: usize,
    lines: &tokio::sync::mpsc::UnboundedSender<String>,
) -> Outcome {
    let attempts = if options.retry {
        1 + RETRY_AFTER_SECS.len()
    } else {
        1
    };
    let data = if options.event == MAPPING_COMPLETED {
        serde_json::to_value(MappingCompleted::new(
            "job_example",
            "COMPLETED",
            4821,
            Some("ef_example".to_owned()),
        ))
        .expect("a payload serialises")
    } else {
        Value::Object(serde_json::Map::new())
    };
    let mut outcome = Outcome::Failed;
    for attempt in 1..=attempts {
        if attempt > 1 {
            let wait =
                Duration::from_secs(RETRY_AFTER_SECS[attempt - 2]).div_f64(options.time_scale);
            let _ = lines.send(format!("copy {copy}: retrying in {wait:.1?}"));
            tokio::time::sleep(wait).await;
        }
        // Each attempt is a new delivery with a new id; the eventId stays.
        let delivery_id = new_id("del");
        let envelope = Envelope::new(
            &delivery_id,
            &options.event_id,
            &options.event,
            data.clone(),
        )
        .with_meta("2026-06-01", created_at);
        let timestamp = now_secs().saturating_add_signed(options.timestamp_offset);
        let mut request = http
            .post(&options.url)
            .header("content-type", "application/json");
        let body = if options.scheme == Scheme::Mapping {
            let body = serde_json::to_vec(&envelope).expect("an envelope serialises");
            request = request
                .header(SIGNATURE_HEADER, signer.sign(&body, timestamp))
                .header(EVENT_HEADER, &options.event)
                .header(DELIVERY_HEADER, &delivery_id);
            body
        } else {
            let body = scheme_body(options, &data);
            let headers = options
                .scheme
                .sign(secret, &options.event_id, timestamp, &body)
                .expect("the secret was checked");
            for (name, value) in headers {
                request = request.header(name, value);
            }
            body
        };
        let started = Instant::now();
        let sent = request.body(body).send().await;
        let took = started.elapsed();
        let label = format!("copy {copy} attempt {attempt}/{attempts} {delivery_id}");
        match sent {
            Ok(response) => {
                let status = response.status();
                let duplicate = response
                    .headers()
                    .get(DUPLICATE_HEADER)
                    .is_some_and(|v| v == "true");
                let text = response.text().await.unwrap_or_default();
                let text: String = text.trim().chars().take(200).collect();
                outcome = Outcome::of(status.as_u16(), duplicate);
                let what = match outcome {
                    Outcome::Processed => "processed",
                    Outcome::Duplicate => "duplicate",
                    Outcome::InFlight => "in flight",
                    Outcome::Failed => "failed",
                };
                let _ = lines.send(format!("{label}: {status} ({took:.0?}) {what}: {text}"));
                if status.is_success() {
                    return outcome;
                }
            }
            Err(error) => {
                let why = describe(&error);
                let _ = lines.send(format!("{label}: no answer ({took:.0?}): {why}"));
                outcome = Outcome::Failed;
            }
        }
    }
    outcome
}

/// The body another scheme's sender would send: its event id where the scheme keeps it
/// in the body (Stripe's `id`, Slack's `event_id`; the others carry it in a header).
fn scheme_body(options: &Options, data: &Value) -> Vec<u8> {
    let body = match options.scheme {
        Scheme::Stripe => serde_json::json!({
            "id": options.event_id, "object": "event", "type": options.event, "data": {"object": data},
        }),
        Scheme::Slack => serde_json::json!({
            "token": "sender", "event_id": options.event_id, "type": "event_callback",
            "event": {"type": options.event},
        }),
        _ => serde_json::json!({"type": options.event, "data": data}),
    };
    serde_json::to_vec(&body).expect("a body serialises")
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A fresh id such as `evt_18f3c2a9d01b4e07`: the time and a counter, unique enough for
/// test deliveries.
fn new_id(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{prefix}_{:016x}",
        nanos ^ (u64::from(std::process::id()) << 40) ^ n
    )
}

/// `secs` as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Options, String> {
        match parse(list.iter().map(|s| (*s).to_owned()), |_| None)? {
            Command::Send(options) => Ok(options),
            Command::Help => Err("help".to_owned()),
        }
    }

    #[test]
    fn help_describes_every_flag() {
        assert!(matches!(
            parse(["--help".to_owned()], |_| None),
            Ok(Command::Help)
        ));
        assert!(matches!(
            parse(["-h".to_owned()], |_| None),
            Ok(Command::Help)
        ));
        // Every flag the parser takes (read from its own source) is in the help.
        let source = include_str!("lib.rs");
        let parser = &source[source.find("match flag.as_str()").unwrap()..];
        let parser = &parser[..parser.find("other =>").unwrap()];
        let flags: Vec<&str> = parser
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|s| s.starts_with('-') && !s.contains(' '))
            .collect();
        assert!(flags.len() >= 10, "{flags:?}");
        for flag in flags {
            assert!(HELP.contains(flag), "--help does not describe {flag}");
        }
    }

    #[test]
    fn outcomes_follow_the_receiver_s_answers() {
        assert_eq!(Outcome::of(204, false), Outcome::Processed);
        assert_eq!(Outcome::of(200, false), Outcome::Processed);
        assert_eq!(Outcome::of(200, true), Outcome::Duplicate);
        assert_eq!(Outcome::of(409, false), Outcome::InFlight);
        assert_eq!(Outcome::of(401, false), Outcome::Failed);
    }

    #[test]
    fn copies_succeed_when_exactly_one_ran() {
        use Outcome::{Duplicate, Failed, InFlight, Processed};
        // The README's --copies 5: one processed, the rest duplicates or in flight.
        let (line, ok) = summarise(&[Processed, InFlight, Duplicate, InFlight, Duplicate]);
        assert!(ok, "{line}");
        assert!(
            line.contains("1 processed, 2 duplicate, 2 in flight"),
            "{line}"
        );
        // The same event again: all duplicates.
        assert!(summarise(&[Duplicate, Duplicate]).1);
        assert!(summarise(&[Processed]).1);
        // Processed twice, a failure, or only in-flight copies: not what dedup promises.
        assert!(!summarise(&[Processed, Processed]).1);
        assert!(!summarise(&[Processed, Failed]).1);
        assert!(!summarise(&[InFlight]).1);
        assert!(!summarise(&[InFlight, Duplicate]).1);
    }

    #[test]
    fn defaults_target_the_example_receiver() {
        let o = args(&[]).unwrap();
        assert_eq!(o.url, "http://127.0.0.1:3000/hooks/mapping");
        assert_eq!(o.event, "mapping.completed");
        assert!(o.event_id.starts_with("evt_"));
        assert_eq!((o.copies, o.timestamp_offset, o.retry), (1, 0, false));
    }

    #[test]
    fn flags_in_both_spellings() {
        let o = args(&[
            "--copies=3",
            "--timestamp-offset",
            "-400",
            "--event-id",
            "evt_x",
            "--retry",
            "--time-scale",
            "60",
        ])
        .unwrap();
        assert_eq!((o.copies, o.timestamp_offset, o.retry), (3, -400, true));
        assert_eq!(o.event_id, "evt_x");
        assert!((o.time_scale - 60.0).abs() < f64::EPSILON);
    }

    #[test]
    fn mistakes_are_explained() {
        assert!(args(&["--copies", "0"]).unwrap_err().contains("--copies"));
        assert!(args(&["--bogus"]).unwrap_err().contains("unknown"));
        assert!(args(&["--url", "ftp://x"]).unwrap_err().contains("http://"));
        // https:// is taken when the build has HTTPS, and explained when it has not.
        let https = args(&["--url", "https://hooks.example.com/mapping"]);
        assert_eq!(https.is_ok(), cfg!(feature = "https"), "{https:?}");
        if let Err(e) = https {
            assert!(e.contains("https"), "{e}");
        }
        assert!(args(&["--secret"]).unwrap_err().contains("needs a value"));
    }

    #[test]
    fn formats_utc_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_717_250_400), "2024-06-01T14:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
