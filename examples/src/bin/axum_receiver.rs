//! An axum app receiving Mapping.Travel webhooks on `POST /hooks/mapping`.
//!
//! ```text
//! MAPPING_WEBHOOK_SECRET=whsec_... cargo run -p mapping-webhooks-examples --bin axum_receiver
//! ```
//!
//! Environment: `MAPPING_WEBHOOK_SECRET` (without it, the public development secret is
//! used, and said so loudly, but only on a loopback address: anywhere else the receiver
//! refuses to start), `MAPPING_WEBHOOK_SECRET_PREVIOUS` (during a rotation),
//! `BIND_ADDR` (default `127.0.0.1:3000`; `PORT` alone binds `0.0.0.0:$PORT`), `RUST_LOG`
//! (default `info`), `HEADER_TIMEOUT_SECS` (default 5: the time allowed for a request's
//! headers), `MAX_CONNECTIONS` (default 512 open at once). Each processed event prints
//! one JSON line on stdout; logs go to stderr.

use std::process::ExitCode;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use mapping_webhooks_examples::{
    ReceiverConfig, WEBHOOK_PATH, init_tracing, print_event, serve_axum,
};
use mapping_webhooks_tower::{VerifiedEvent, WebhookVerify};

/// Runs once per event (duplicates are answered by the layer). Answer 2xx only once the
/// work is done: anything else makes the sender retry, and the layer lets the retry in.
async fn on_event(event: VerifiedEvent) -> StatusCode {
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
    let layer = match config.gate() {
        Ok(gate) => WebhookVerify::from_gate(gate),
        Err(error) => {
            tracing::error!("{error}");
            return ExitCode::FAILURE;
        }
    };
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
    serve_axum(listener, app, &config, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    ExitCode::SUCCESS
}
