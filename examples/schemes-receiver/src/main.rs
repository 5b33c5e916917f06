//! One axum app receiving signed webhooks from several senders: `POST /hooks/{scheme}`
//! for each scheme whose secret is set, one [`Gate`] (its own scheme, secrets and dedup)
//! per route, all behind the same `mapping-webhooks-tower` layer.
//!
//! ```text
//! STRIPE_WEBHOOK_SECRET=whsec_... GITHUB_WEBHOOK_SECRET=... cargo run -p schemes-receiver
//! cargo run -p sender -- --scheme stripe --secret whsec_...
//! ```
//!
//! | route | variable | the secret as the provider shows it |
//! |---|---|---|
//! | `/hooks/standard` | `STANDARD_WEBHOOK_SECRET` and/or `STANDARD_WEBHOOK_PUBLIC_KEY` | `whsec_<base64>`; `whpk_<base64>` checks `v1a` (ed25519) signatures, so the receiver holds no signing secret |
//! | `/hooks/svix` | `SVIX_WEBHOOK_SECRET` | `whsec_<base64>` |
//! | `/hooks/stripe` | `STRIPE_WEBHOOK_SECRET` | the endpoint's `whsec_…` |
//! | `/hooks/github` | `GITHUB_WEBHOOK_SECRET` | the webhook's secret |
//! | `/hooks/shopify` | `SHOPIFY_WEBHOOK_SECRET` | the app's client secret |
//! | `/hooks/slack` | `SLACK_SIGNING_SECRET` | the app's signing secret |
//! | `/hooks/mapping` | `MAPPING_WEBHOOK_SECRET` (as the other receivers) | `whsec_…` |
//!
//! `/hooks/mapping` is configured as in the other example receivers (`ReceiverConfig`):
//! always served; without `MAPPING_WEBHOOK_SECRET` (or `MAPPING_WEBHOOK_SECRET_FILE`),
//! with the public development secret, and then only on a loopback address. So on a
//! public address set `MAPPING_WEBHOOK_SECRET` too. Also `BIND_ADDR` (default
//! `127.0.0.1:3000`; `PORT` alone binds `0.0.0.0:$PORT`), `HEADER_TIMEOUT_SECS`,
//! `MAX_CONNECTIONS`, `RUST_LOG`.
//!
//! Answers: 400 for a missing or malformed signature header, 401 for a signature that
//! does not match or a stale timestamp, 200 with `X-Webhook-Duplicate: true` for an event
//! already processed, 204 once processed. Each processed delivery prints one JSON line
//! on stdout, with its `scheme` and `id` (the dedup id); logs go to stderr.
//!
//! Slack's `url_verification` (sent once when the request URL is set) is answered with
//! its `challenge`, after the signature check; it has no event id, so it is never
//! deduplicated (and no line is printed: it is no event).
//!
//! GitHub and Shopify sign neither their id header nor a timestamp: a captured body
//! replayed with a new `X-GitHub-Delivery` / `X-Shopify-Event-Id` is processed again
//! (see the core's `scheme` module docs). Their routes keep dedup entries for 7 days
//! rather than the default 24 h, as GitHub redelivers by hand days later.

use std::process::ExitCode;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Extension;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use mapping_webhooks::scheme::Scheme;
use mapping_webhooks::{Gate, MemoryStore, Secret, Secrets, Verified};
use mapping_webhooks_examples::{ReceiverConfig, print_line, shutdown_signal};
use mapping_webhooks_tower::WebhookVerify;

/// How long the routes of the schemes without a signed timestamp (GitHub, Shopify)
/// remember an event id: dedup is their only replay guard.
const UNTIMED_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Each scheme other than Mapping.Travel's, with the variables holding its secrets.
const SCHEMES: [(Scheme, &[&str]); 6] = [
    (
        Scheme::Standard,
        &["STANDARD_WEBHOOK_SECRET", "STANDARD_WEBHOOK_PUBLIC_KEY"],
    ),
    (Scheme::Svix, &["SVIX_WEBHOOK_SECRET"]),
    (Scheme::Stripe, &["STRIPE_WEBHOOK_SECRET"]),
    (Scheme::GitHub, &["GITHUB_WEBHOOK_SECRET"]),
    (Scheme::Shopify, &["SHOPIFY_WEBHOOK_SECRET"]),
    (Scheme::Slack, &["SLACK_SIGNING_SECRET"]),
];

/// The line printed for a processed delivery.
fn delivery_line(verified: &Verified) -> String {
    serde_json::json!({
        "scheme": verified.scheme.name(),
        "id": verified.event_id,
        "type": verified.event_type,
        "deliveryId": verified.delivery_id,
        "signedAt": verified.signed_at(),
        "secret": verified.secret.to_string(),
    })
    .to_string()
}

/// Runs once per event on every route (duplicates are answered by the layer). Answer
/// 2xx only once the work is done: anything else makes the sender retry.
async fn on_delivery(Extension(verified): Extension<Verified>, body: Bytes) -> Response {
    if verified.scheme == Scheme::Slack && verified.event_type == "url_verification" {
        return slack_challenge(&body);
    }
    // The body is the verified raw bytes: parse it as the provider documents (`Json<T>`
    // works here too).
    print_line(&delivery_line(&verified));
    StatusCode::NO_CONTENT.into_response()
}

/// Slack's handshake: `{"challenge": ..}` echoed. The layer has checked its signature.
fn slack_challenge(body: &[u8]) -> Response {
    let challenge = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("challenge")?.as_str().map(str::to_owned));
    match challenge {
        Some(challenge) => Json(serde_json::json!({ "challenge": challenge })).into_response(),
        None => (
            StatusCode::BAD_REQUEST,
            "url_verification without a string `challenge`",
        )
            .into_response(),
    }
}

/// The secrets of `scheme` from `vars`, or `None` when none is set.
fn scheme_secrets(
    var: &impl Fn(&str) -> Option<String>,
    names: &[&str],
) -> Result<Option<Secrets>, String> {
    let mut secrets = Vec::new();
    for name in names {
        if let Some(value) = var(name) {
            secrets.push(Secret::new(value.trim()).map_err(|e| format!("{name}: {e}"))?);
        }
    }
    let mut secrets = secrets.into_iter();
    Ok(secrets
        .next()
        .map(|first| Secrets::with_previous(first, secrets)))
}

/// One gate per scheme whose secret is set, then Mapping.Travel's.
fn gates(
    config: &ReceiverConfig,
    var: impl Fn(&str) -> Option<String>,
) -> Result<Vec<Gate>, String> {
    let mut gates = Vec::new();
    for (scheme, names) in SCHEMES {
        let Some(secrets) = scheme_secrets(&var, names)? else {
            continue;
        };
        let mut gate = Gate::builder().scheme(scheme).secrets(secrets);
        if !scheme.has_timestamp() {
            let store = MemoryStore::builder().time_to_live(UNTIMED_TTL).build();
            gate = gate.dedup(store.map_err(|e| e.to_string())?);
        }
        // A Standard Webhooks secret that is not `whsec_` and base64 is refused here.
        gates.push(
            gate.build()
                .map_err(|e| format!("{}: {e}", names.join(" or ")))?,
        );
    }
    let (secrets, secrets_file) = config.secrets()?;
    config.watch_secrets_file(secrets_file, &secrets);
    gates.push(Gate::from_secrets(secrets));
    Ok(gates)
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
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let mut app = Router::new();
    let mut routes = Vec::new();
    for gate in gates(&config, var)? {
        // One route, one gate: its scheme, its secrets, its own dedup store.
        let path = format!("/hooks/{}", gate.scheme());
        app = app.route(
            &path,
            post(on_delivery).layer(WebhookVerify::from_gate(gate)),
        );
        routes.push(path);
    }
    let app = app.route("/healthz", get(|| async { "ok" }));

    let listener = tokio::net::TcpListener::bind(config.bind_addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.bind_addr))?;
    tracing::info!(
        "receiving webhooks on http://{} at {}",
        config.bind_addr,
        routes.join(", ")
    );
    mapping_webhooks_tower::serve(listener, app)
        .header_timeout(config.header_timeout)
        .max_connections(config.max_connections)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| format!("serving failed: {e}"))?;
    tracing::info!("stopped");
    Ok(())
}
