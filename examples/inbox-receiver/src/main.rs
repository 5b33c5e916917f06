//! A receiver that stores each delivery in a durable inbox, answers at once, and
//! processes it in a background worker.
//!
//! ```text
//! cargo run -p inbox-receiver
//! cargo run -p sender
//! ```
//!
//! Configured like the other receivers (`MAPPING_WEBHOOK_SECRET`,
//! `MAPPING_WEBHOOK_SECRET_PREVIOUS` or `MAPPING_WEBHOOK_SECRET_FILE`, reloaded while it
//! runs; `BIND_ADDR`/`PORT`, `HEADER_TIMEOUT_SECS`, `MAX_CONNECTIONS`, `RUST_LOG`,
//! `METRICS_ADDR`, where the worker's metrics are served too), plus:
//! - `DATABASE_URL`: `sqlite://webhooks.db` (in the working directory) by default, or a
//!   `postgres://user:password@host/db` URL (the password is never logged);
//! - `INBOX_WORKER=off`: accept and store only, process nothing (to process elsewhere,
//!   or to see deliveries wait in the inbox);
//! - the worker's settings, in whole seconds or a count: `INBOX_LEASE_SECS` (how long a
//!   claim holds a delivery before another worker may take it over, default 300; the
//!   handler's timeout is kept below it: at most 120 s and four fifths of the lease),
//!   `INBOX_BACKOFF_SECS` (the wait before the first retry, default 30, doubling up to
//!   an hour), `INBOX_MAX_ATTEMPTS` (attempts before a delivery is dead, default 10).
//!   A value that is not a positive whole number stops the receiver with a message;
//! - the forwarding gateway: with `FORWARD_URL` (an `http://` URL) set, the worker POSTs
//!   each verified delivery's raw body to it instead of printing it, signed for the
//!   internal hop in the Standard Webhooks form with `FORWARD_SECRET` (required then; a
//!   `whsec_` + base64 secret): `webhook-id` is the event id (the same on every retry,
//!   what the internal service deduplicates on), `webhook-timestamp` the time of the
//!   attempt, `webhook-signature` `v1,<base64>`, plus `webhook-event-type` (the event
//!   type, in the Standard Webhooks header family rather than an `X-` header) and
//!   `Content-Type: application/json`. `FORWARD_TIMEOUT_SECS` (default 10) bounds each
//!   request and must stay below the handler's timeout (four fifths of the lease, at
//!   most 120 s). A 2xx marks the delivery done; any other status, a timeout or a
//!   connection error leaves it to the inbox's retries, dead state and replay
//!   (at-least-once).
//!
//! The worker prints the same JSON line per processed event as the other receivers, on
//! stdout; logs go to stderr. Ctrl-C or SIGTERM stops accepting, lets running handlers
//! finish, and exits.

use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post, post_service};
use mapping_webhooks::Secret;
use mapping_webhooks::scheme::Scheme;
use mapping_webhooks_examples::{ReceiverConfig, WEBHOOK_PATH, print_event, shutdown_signal};
use mapping_webhooks_inbox::{DEFAULT_HANDLER_TIMEOUT, Delivery, Inbox, Worker, WorkerMetrics};
use mapping_webhooks_tower::{
    Event, Gate, MetricsObserver, VerifiedEvent, WebhookVerify, worker_handler,
};

/// The default database: a file in the working directory.
const DEFAULT_DATABASE_URL: &str = "sqlite://webhooks.db";

/// The handler, written as for an inline route: the worker runs it with each stored
/// delivery. Here it prints the event line; a real one imports the export file. Anything
/// but a 2xx makes the worker retry it later.
async fn on_event(event: VerifiedEvent<Event>) -> StatusCode {
    print_event(&event.verified, &event.envelope.api_version);
    StatusCode::NO_CONTENT
}

/// A positive whole number from the environment variable `name`, if it is set.
fn env_count(name: &str) -> Result<Option<u64>, String> {
    match std::env::var(name) {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Ok(value) if value.trim().is_empty() => Ok(None),
        Ok(value) => match value.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(format!(
                "{name} must be a positive whole number, not {value:?}"
            )),
        },
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(format!("{name} must be a positive whole number"))
        }
    }
}

/// The default of `FORWARD_TIMEOUT_SECS`.
const DEFAULT_FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// The forwarding gateway's settings: where to, the internal hop's secret, the timeout
/// of each request, and the client (one connection pool for every attempt).
#[derive(Clone)]
struct Forward {
    url: String,
    secret: Secret,
    timeout: Duration,
    client: reqwest::Client,
}

impl Forward {
    /// `FORWARD_URL`, `FORWARD_SECRET` and `FORWARD_TIMEOUT_SECS`; `None` without a
    /// `FORWARD_URL`. `handler_timeout` is the worker's: the request's must stay below.
    fn from_env(handler_timeout: Duration) -> Result<Option<Self>, String> {
        let Some(url) = std::env::var("FORWARD_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())
        else {
            return Ok(None);
        };
        let url = url.trim().to_owned();
        if !url.starts_with("http://") || url.parse::<axum::http::Uri>().is_err() {
            return Err(format!(
                "FORWARD_URL must be an http:// URL (an internal hop, no TLS), not {url:?}"
            ));
        }
        let secret = std::env::var("FORWARD_SECRET")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .ok_or("FORWARD_URL is set: FORWARD_SECRET (a whsec_ secret) is required")?;
        let secret = Secret::new(secret.trim()).map_err(|e| format!("FORWARD_SECRET: {e}"))?;
        // A secret the Standard Webhooks scheme cannot use (not whsec_ and base64).
        Scheme::Standard
            .sign(&secret, "check", 0, b"")
            .map_err(|_| "FORWARD_SECRET must be whsec_ followed by base64".to_owned())?;
        let timeout =
            env_count("FORWARD_TIMEOUT_SECS")?.map_or(DEFAULT_FORWARD_TIMEOUT, Duration::from_secs);
        if timeout >= handler_timeout {
            return Err(format!(
                "FORWARD_TIMEOUT_SECS ({} s) must be below the handler's timeout ({} s, \
                 four fifths of INBOX_LEASE_SECS, at most 120 s)",
                timeout.as_secs(),
                handler_timeout.as_secs()
            ));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build the forwarding client: {e}"))?;
        Ok(Some(Self {
            url,
            secret,
            timeout,
            client,
        }))
    }

    /// Forwards one delivery: `Ok` on a 2xx, an error (so a retry) otherwise.
    async fn send(&self, delivery: Delivery) -> Result<(), String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let event_id = &delivery.envelope.event_id;
        let headers = Scheme::Standard
            .sign(&self.secret, event_id, now, &delivery.body)
            .map_err(|e| e.to_string())?;
        let mut request = self
            .client
            .post(&self.url)
            .timeout(self.timeout)
            .header("content-type", "application/json")
            .header("webhook-event-type", delivery.envelope.event_type.as_str());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request
            .body(delivery.body.clone())
            .send()
            .await
            .map_err(|e| format!("forwarding {event_id} failed: {e}"))?;
        let status = response.status();
        if status.is_success() {
            tracing::info!("forwarded {event_id} (attempt {})", delivery.attempt);
            Ok(())
        } else {
            Err(format!(
                "forwarding {event_id}: the target answered {status}"
            ))
        }
    }
}

/// The worker's settings from `INBOX_LEASE_SECS`, `INBOX_BACKOFF_SECS` and
/// `INBOX_MAX_ATTEMPTS`, each left at its default when unset.
fn worker_settings(mut worker: Worker) -> Result<Worker, String> {
    if let Some(secs) = env_count("INBOX_LEASE_SECS")? {
        let lease = Duration::from_secs(secs);
        // The handler is stopped before its lease ends, or a slow one would run twice.
        worker = worker
            .lease(lease)
            .handler_timeout(DEFAULT_HANDLER_TIMEOUT.min(lease.mul_f64(0.8)));
    }
    if let Some(secs) = env_count("INBOX_BACKOFF_SECS")? {
        let first = Duration::from_secs(secs);
        worker = worker.backoff(first, first.max(Duration::from_secs(60 * 60)));
    }
    if let Some(n) = env_count("INBOX_MAX_ATTEMPTS")? {
        let n = u32::try_from(n).map_err(|_| "INBOX_MAX_ATTEMPTS is too large".to_owned())?;
        worker = worker.max_attempts(n);
    }
    Ok(worker)
}

#[tokio::main]
async fn main() -> ExitCode {
    let Some(config) = ReceiverConfig::start() else {
        return ExitCode::FAILURE;
    };
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: ReceiverConfig) -> Result<(), String> {
    let url = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
    // The secrets: MAPPING_WEBHOOK_SECRET (and _PREVIOUS), or MAPPING_WEBHOOK_SECRET_FILE,
    // which is watched and applied to the same handle while the server runs.
    let (secrets, secrets_file) = config.secrets()?;
    config.watch_secrets_file(secrets_file, &secrets);
    // METRICS_ADDR: the recorder before the observers, which register their series.
    let metrics = config.install_metrics()?;
    // The gate: every option in one place. No dedup store in front of the inbox: it
    // deduplicates durably on its own.
    let mut gate = Gate::builder().secrets(secrets).without_dedup();
    if metrics.is_some() {
        gate = gate.observer(MetricsObserver::new());
    }
    let gate = gate.build().map_err(|e| e.to_string())?;
    // FORWARD_URL: checked before anything opens or listens. The request's timeout
    // stays below the handler's (four fifths of the lease, at most 120 s).
    let handler_timeout = env_count("INBOX_LEASE_SECS")?.map_or(DEFAULT_HANDLER_TIMEOUT, |s| {
        DEFAULT_HANDLER_TIMEOUT.min(Duration::from_secs(s).mul_f64(0.8))
    });
    let forward = Forward::from_env(handler_timeout)?;
    // The inbox: database settings only.
    let inbox = Inbox::builder()
        .connect(&url)
        .await
        .map_err(|e| format!("cannot open the inbox: {e}"))?;
    let listener = tokio::net::TcpListener::bind(config.bind_addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.bind_addr))?;

    // The worker runs the handler written for an inline route.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = if std::env::var("INBOX_WORKER").as_deref() == Ok("off") {
        tracing::info!("INBOX_WORKER=off: storing deliveries, processing none");
        None
    } else {
        let mut stopped = stopped.clone();
        let mut worker = match forward {
            Some(forward) => {
                tracing::info!("forwarding each delivery to {}", forward.url);
                inbox.worker(move |delivery| {
                    let forward = forward.clone();
                    async move { forward.send(delivery).await }
                })
            }
            None => inbox.worker(worker_handler(post(on_event).with_state(()))),
        }
        .shutdown_timeout(Duration::from_secs(10));
        worker = worker_settings(worker)?;
        if metrics.is_some() {
            worker = worker.observer(WorkerMetrics::new());
        }
        Some(tokio::spawn(worker.run_until(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        })))
    };

    // The route stores each verified delivery and answers once it is committed; the
    // readiness route asks the database.
    let ready = inbox.clone();
    let app = Router::new()
        .route_service(
            WEBHOOK_PATH,
            post_service(WebhookVerify::from_gate(gate).inbox(inbox.clone())),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let inbox = ready.clone();
                async move {
                    match inbox.ping().await {
                        Ok(()) => (StatusCode::OK, "ready"),
                        Err(_) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "inbox database unavailable",
                        ),
                    }
                }
            }),
        );
    tracing::info!(
        "receiving webhooks on http://{}{WEBHOOK_PATH} into the inbox",
        config.bind_addr
    );
    if let Some(handle) = metrics {
        config.serve_metrics(handle).await?;
    }
    // The header timeout, the connection cap and the graceful shutdown that
    // axum::serve leaves out (the tower crate's `serve` feature).
    mapping_webhooks_tower::serve(listener, app)
        .header_timeout(config.header_timeout)
        .max_connections(config.max_connections)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| format!("serving failed: {e}"))?;
    let _ = stop.send(true);
    if let Some(worker) = worker {
        match worker.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!("the worker stopped: {error}"),
            Err(error) => tracing::error!("the worker failed: {error}"),
        }
    }
    // Closing the pool checkpoints SQLite's write-ahead log into the database file.
    inbox.close().await;
    Ok(())
}
