//! An actix-web app receiving Mapping.Travel webhooks on `POST /hooks/mapping`.
//!
//! ```text
//! MAPPING_WEBHOOK_SECRET=whsec_... cargo run -p actix-receiver
//! ```
//!
//! The same configuration and output as `axum-receiver`, so the same `sender` drives
//! both: `MAPPING_WEBHOOK_SECRET` (without it, the public development secret is used,
//! and said so loudly, but only on a loopback address: anywhere else the receiver
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

use std::num::NonZeroUsize;
use std::process::ExitCode;
use std::time::Duration;

use actix_web::http::KeepAlive;
use actix_web::{App, HttpResponse, HttpServer, web};
use mapping_webhooks_actix::{
    Event, Gate, MemoryStore, MetricsObserver, RedisStore, VerifiedEvent, WebhookVerify,
};
use mapping_webhooks_examples::{
    METRICS_PATH, METRICS_UPKEEP, ReceiverConfig, ReceiverStore, SharedStore, WEBHOOK_PATH,
    print_event, shutdown_signal,
};
use metrics_exporter_prometheus::PrometheusHandle;

/// Runs once per event, for every subscribed type (duplicates are answered by the
/// middleware). Answer 2xx only once the work is done: anything else makes the sender
/// retry, and the middleware lets the retry in.
async fn on_event(event: VerifiedEvent<Event>) -> HttpResponse {
    match &event.envelope.data {
        Event::MappingCompleted(_job) => { /* e.g. fetch the export file */ }
        Event::MappingErrorResolved(_resolved) => { /* e.g. clear an alert */ }
        // A type this receiver does not know yet: acknowledged, or it would be retried.
        _other => {}
    }
    print_event(&event.verified, &event.envelope.api_version);
    HttpResponse::NoContent().finish()
}

#[actix_web::main]
async fn main() -> ExitCode {
    let Some(config) = ReceiverConfig::start() else {
        return ExitCode::FAILURE;
    };
    match run(config).await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
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
    // The gate: every option in one place; built once, and cloned into every worker.
    let mut gate = Gate::builder().secrets(secrets).dedup(store);
    if metrics.is_some() {
        gate = gate.observer(MetricsObserver::new());
    }
    let verify = WebhookVerify::from_gate(gate.build().map_err(|e| e.to_string())?);
    if let (Some(handle), Some(addr)) = (metrics, config.metrics_addr) {
        serve_metrics(handle, addr, &config)
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        tracing::info!("serving metrics on http://{addr}{METRICS_PATH}");
    }

    // actix counts connections per worker: share the cap among them.
    let workers = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    // Built once and cloned into every worker: the clones share one dedup store.
    let server = HttpServer::new(move || {
        App::new()
            .service(
                web::resource(WEBHOOK_PATH)
                    .wrap(verify.clone())
                    .route(web::post().to(on_event)),
            )
            // Liveness, unsigned: the middleware wraps the webhook route only.
            .route("/healthz", web::get().to(|| async { "ok" }))
    })
    // A sender that gave up (after 30 s) closes the connection: cancel its handler so
    // the event is freed for the retry at once.
    .h1_allow_half_closed(false)
    // Slow clients: a request's headers within the header timeout. actix-http applies it
    // to a connection's first request only: once a byte of a second request arrives on a
    // kept-alive connection, no timer is left, so a client trickling that second head
    // would hold the connection for ever. Hence one request per connection, which keeps
    // no idle connection either: a new connection per delivery costs little. (The body
    // has the middleware's read timeout.)
    .client_request_timeout(config.header_timeout)
    .keep_alive(KeepAlive::Disabled)
    // A client that does not read our closing: dropped after a second.
    .client_disconnect_timeout(Duration::from_secs(1))
    // At most max_connections open at once: past it, clients wait in the listen queue.
    .workers(workers)
    .max_connections(config.max_connections.div_ceil(workers))
    // Ctrl-C and SIGTERM both stop it gracefully (actix-web's own handling makes Ctrl-C
    // a forced stop that drops the requests in progress).
    .shutdown_signal(shutdown_signal())
    .bind(config.bind_addr);
    let server = server.map_err(|e| format!("cannot listen on {}: {e}", config.bind_addr))?;
    tracing::info!(
        "receiving webhooks on http://{}{WEBHOOK_PATH}",
        config.bind_addr
    );
    server
        .run()
        .await
        .map_err(|e| format!("server failed: {e}"))
}

/// Serves `GET /metrics` on its own listener (one worker, the same header timeout),
/// and runs the recorder's upkeep; both on the current actix system.
fn serve_metrics(
    handle: PrometheusHandle,
    addr: std::net::SocketAddr,
    config: &ReceiverConfig,
) -> std::io::Result<()> {
    let upkeep = handle.clone();
    actix_web::rt::spawn(async move {
        let mut every = actix_web::rt::time::interval(METRICS_UPKEEP);
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    let server = HttpServer::new(move || {
        let handle = handle.clone();
        App::new().route(
            METRICS_PATH,
            web::get().to(move || {
                let body = handle.render();
                async move {
                    HttpResponse::Ok()
                        .content_type("text/plain; version=0.0.4")
                        .body(body)
                }
            }),
        )
    })
    .workers(1)
    // The webhook server handles the signals; this one ends with the process.
    .disable_signals()
    .client_request_timeout(config.header_timeout)
    .keep_alive(KeepAlive::Disabled)
    .bind(addr)?
    .run();
    actix_web::rt::spawn(server);
    Ok(())
}
