//! An axum app receiving Mapping.Travel webhooks on `POST /hooks/mapping`.
//!
//! ```text
//! MAPPING_WEBHOOK_SECRET=whsec_... cargo run -p axum-receiver
//! ```
//!
//! Environment: `MAPPING_WEBHOOK_SECRET` (without it, the public development secret is
//! used, and said so loudly, but only on a loopback address: anywhere else the receiver
//! refuses to start), `MAPPING_WEBHOOK_SECRET_PREVIOUS` (during a rotation), or
//! `MAPPING_WEBHOOK_SECRET_FILE` (one secret per line, the current one first; reloaded
//! when it changes, checked every `MAPPING_WEBHOOK_SECRET_FILE_POLL_SECS` (default 1),
//! and on `SIGHUP`),
//! `BIND_ADDR` (default `127.0.0.1:3000`; `PORT` alone binds `0.0.0.0:$PORT`), `RUST_LOG`
//! (default `info`), `HEADER_TIMEOUT_SECS` (default 5: the time allowed for a request's
//! headers), `MAX_CONNECTIONS` (default 512 open at once), `METRICS_ADDR` (unset by
//! default: when set, Prometheus metrics are served there on `GET /metrics`),
//! `REDIS_URL` (one Redis, `redis://` or `rediss://`) or `REDIS_CLUSTER_URLS` (a Redis
//! Cluster's nodes, comma-separated): the dedup store every replica shares (unset: in
//! memory, for one process). Each
//! processed event prints one JSON line on stdout; logs go to stderr. Ctrl-C or SIGTERM
//! stops it gracefully: it stops accepting and finishes the requests in progress.

use std::process::ExitCode;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use mapping_webhooks_examples::{
    ReceiverConfig, ReceiverStore, SharedStore, WEBHOOK_PATH, print_event, shutdown_signal,
};
use mapping_webhooks_tower::{
    Event, Gate, MemoryStore, MetricsObserver, RedisStore, VerifiedEvent, WebhookVerify,
};

/// Runs once per event, for every subscribed type (duplicates are answered by the layer).
/// Answer 2xx only once the work is done: anything else makes the sender retry, and the
/// layer lets the retry in.
async fn on_event(event: VerifiedEvent<Event>) -> StatusCode {
    match &event.envelope.data {
        Event::MappingCompleted(_job) => { /* e.g. fetch the export file */ }
        Event::MappingErrorResolved(_resolved) => { /* e.g. clear an alert */ }
        // A type this receiver does not know yet: acknowledged, or it would be retried.
        _other => {}
    }
    print_event(&event.verified, &event.envelope.api_version);
    StatusCode::NO_CONTENT
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
    // The secrets: MAPPING_WEBHOOK_SECRET (and _PREVIOUS), or MAPPING_WEBHOOK_SECRET_FILE,
    // which is watched and applied to the same handle while the server runs.
    let (secrets, secrets_file) = config.secrets()?;
    config.watch_secrets_file(secrets_file, &secrets);
    // METRICS_ADDR: the Prometheus recorder first, then the observer, which registers its
    // series with it.
    let metrics = config.install_metrics()?;
    // The dedup store: shared in Redis when several replicas receive (REDIS_URL, or
    // REDIS_CLUSTER_URLS for a cluster), else the bounded in-memory one. Built here, so a
    // wrong URL or password stops the receiver at startup.
    let store = match config.shared_store.clone() {
        Some(SharedStore::Redis(url)) => RedisStore::builder(url)
            .build()
            .await
            .map(ReceiverStore::Redis),
        Some(SharedStore::RedisCluster(urls)) => RedisStore::cluster_builder(urls)
            .build()
            .await
            .map(ReceiverStore::Redis),
        None => Ok(ReceiverStore::Memory(MemoryStore::new())),
    };
    let store = store.map_err(|e| format!("cannot use the Redis store: {e}"))?;
    // The gate: every option in one place.
    let mut gate = Gate::builder().secrets(secrets).dedup(store);
    if metrics.is_some() {
        gate = gate.observer(MetricsObserver::new());
    }
    let gate = gate.build().map_err(|e| e.to_string())?;
    // The layer on the webhook route only; liveness and readiness stay unsigned.
    let app = Router::new()
        .route(WEBHOOK_PATH, post(on_event))
        .layer(WebhookVerify::from_gate(gate))
        .route("/healthz", get(|| async { "ok" }));

    let listener = tokio::net::TcpListener::bind(config.bind_addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.bind_addr))?;
    tracing::info!(
        "receiving webhooks on http://{}{WEBHOOK_PATH}",
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
    tracing::info!("stopped");
    Ok(())
}
