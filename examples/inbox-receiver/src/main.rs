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
//!   or to see deliveries wait in the inbox).
//!
//! The worker prints the same JSON line per processed event as the other receivers, on
//! stdout; logs go to stderr. Ctrl-C or SIGTERM stops accepting, lets running handlers
//! finish, and exits.

use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::routing::post_service;
use mapping_webhooks_examples::{
    EventLine, ReceiverConfig, WEBHOOK_PATH, print_line, serve_axum, shutdown_signal,
};
use mapping_webhooks_inbox::{Delivery, Inbox, MetricsObserver, WorkerMetrics};
use mapping_webhooks_tower::InboxService;

/// The default database: a file in the working directory.
const DEFAULT_DATABASE_URL: &str = "sqlite://webhooks.db";

/// The handler: here it prints the event line. A real one imports the export file; an
/// error makes the worker retry it later.
async fn on_event(delivery: Delivery) -> Result<(), std::convert::Infallible> {
    let envelope = &delivery.envelope;
    let line = EventLine {
        event_id: &envelope.event_id,
        event_type: &envelope.event_type,
        delivery_id: &envelope.id,
        api_version: &envelope.api_version,
        signed_at: delivery.signed_at,
        secret: &delivery.secret,
    };
    print_line(&line.to_string());
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let Some(config) = ReceiverConfig::start() else {
        return ExitCode::FAILURE;
    };
    let url = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
    let (secrets, secrets_file) = match config.secrets() {
        Ok(secrets) => secrets,
        Err(error) => {
            tracing::error!("{error}");
            return ExitCode::FAILURE;
        }
    };
    // The recorder before the observers: they register their handles with it.
    let metrics = match config.install_metrics() {
        Ok(metrics) => metrics,
        Err(error) => {
            tracing::error!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let mut builder = Inbox::builder_from_secrets(secrets);
    if metrics.is_some() {
        builder = builder.observer(MetricsObserver::new());
    }
    let inbox = match builder.connect(&url).await {
        Ok(inbox) => inbox,
        Err(error) => {
            tracing::error!("cannot open the inbox: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Reloads the secrets file, if any, while the server runs.
    config.watch_secrets_file(secrets_file, inbox.secrets());
    let listener = match tokio::net::TcpListener::bind(config.bind_addr).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!("cannot listen on {}: {error}", config.bind_addr);
            return ExitCode::FAILURE;
        }
    };

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = if std::env::var("INBOX_WORKER").as_deref() == Ok("off") {
        tracing::info!("INBOX_WORKER=off: storing deliveries, processing none");
        None
    } else {
        let mut stopped = stopped.clone();
        let mut worker = inbox
            .worker(on_event)
            .shutdown_timeout(Duration::from_secs(10));
        if metrics.is_some() {
            worker = worker.observer(WorkerMetrics::new());
        }
        Some(tokio::spawn(worker.run_until(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        })))
    };

    let app =
        Router::new().route_service(WEBHOOK_PATH, post_service(InboxService::new(inbox.clone())));
    tracing::info!(
        "receiving webhooks on http://{}{WEBHOOK_PATH} into the inbox",
        config.bind_addr
    );
    if let Some(handle) = metrics
        && let Err(error) = config.serve_metrics(handle).await
    {
        tracing::error!("{error}");
        return ExitCode::FAILURE;
    }
    serve_axum(listener, app, &config, shutdown_signal()).await;
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
    ExitCode::SUCCESS
}
