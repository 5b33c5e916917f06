//! An axum app receiving Mapping.Travel webhooks on `POST /hooks/mapping`.
//!
//! ```text
//! MAPPING_WEBHOOK_SECRET=whsec_... cargo run -p mapping-webhooks-examples --bin axum_receiver
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
//! default: when set, Prometheus metrics are served there on `GET /metrics`). Each
//! processed event prints one JSON line on stdout; logs go to stderr. Ctrl-C or SIGTERM
//! stops it gracefully: it stops accepting and finishes the requests in progress.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use mapping_webhooks_examples::{
    METRICS_PATH, METRICS_UPKEEP, ReceiverConfig, WEBHOOK_PATH, init_tracing, print_event,
    shutdown_signal,
};
use mapping_webhooks_tower::{Event, VerifiedEvent, WebhookVerify};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

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
    init_tracing();
    let config = match ReceiverConfig::from_env() {
        Ok(config) => config,
        Err(message) => {
            tracing::error!("{message}");
            return ExitCode::FAILURE;
        }
    };
    config.warn_if_dev_secret();
    let gate = match config.gate() {
        Ok((gate, secrets_file)) => {
            // Reloads the secrets file, if any, while the server runs.
            config.watch_secrets_file(secrets_file, gate.secrets());
            config.observe(gate)
        }
        Err(error) => Err(error),
    };
    let (gate, metrics) = match gate {
        Ok(observed) => observed,
        Err(error) => {
            tracing::error!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let layer = WebhookVerify::from_gate(gate);
    let app = Router::new()
        .route(WEBHOOK_PATH, post(on_event))
        .layer(layer);

    let listener = match tokio::net::TcpListener::bind(config.bind_addr).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!("cannot listen on {}: {error}", config.bind_addr);
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        "receiving webhooks on http://{}{WEBHOOK_PATH}",
        config.bind_addr
    );
    if let (Some(handle), Some(addr)) = (metrics, config.metrics_addr) {
        // Its own listener, served like the webhooks (header timeout, connection cap).
        let listener = match TcpListener::bind(addr).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!("cannot listen on {addr}: {error}");
                return ExitCode::FAILURE;
            }
        };
        let upkeep = handle.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(METRICS_UPKEEP);
            loop {
                every.tick().await;
                upkeep.run_upkeep();
            }
        });
        let metrics = Router::new().route(
            METRICS_PATH,
            get(move || std::future::ready(handle.render())),
        );
        let config = config.clone();
        tokio::spawn(async move {
            serve(listener, metrics, &config, std::future::pending()).await;
        });
        tracing::info!("serving metrics on http://{addr}{METRICS_PATH}");
    }
    serve(listener, app, &config, shutdown_signal()).await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// Serves `app` with hyper directly, as `axum::serve` sets no timer: without one, hyper
/// has no header timeout, and slow or idle clients hold their connections for ever.
///
/// - A client has `config.header_timeout` to send a request's headers, on a new
///   connection and, from the end of the last response, on a kept-alive one: an idle
///   connection is closed after that long too. (The body has the layer's read timeout.)
/// - At most `config.max_connections` connections are open at once; the next clients
///   wait in the listen queue until one closes.
/// - On `shutdown`, it stops accepting, closes idle connections, and waits for the
///   requests in progress.
async fn serve(
    listener: TcpListener,
    app: Router,
    config: &ReceiverConfig,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout);
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A slot first, then a connection: past the cap, clients wait in the kernel's
        // queue instead of taking file descriptors.
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = async {
                let slot = slots.clone().acquire_owned().await.expect("never closed");
                (slot, listener.accept().await)
            } => accepted,
        };
        let (stream, slot) = match accepted {
            (slot, Ok((stream, _peer))) => (stream, slot),
            (_, Err(error)) => {
                // Out of file descriptors, or a connection reset before it was accepted:
                // wait a little rather than spin.
                tracing::warn!("accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // Errors are the client's (a header timeout, a reset): nothing to do.
            if let Err(error) = connection.await {
                tracing::debug!("connection closed: {error}");
            }
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!("shutting down: finishing the requests in progress");
    graceful.shutdown().await;
}
