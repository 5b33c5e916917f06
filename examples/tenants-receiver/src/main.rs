//! One endpoint for many Mapping.Travel accounts (tenants), with actix-web:
//! `POST /hooks/mapping/{tenant}`, each tenant's secrets looked up in a file.
//!
//! ```text
//! MAPPING_WEBHOOK_TENANTS_FILE=tenants.txt cargo run -p tenants-receiver
//! ```
//!
//! The file has one line per tenant: its key, then its current secret, then any previous
//! ones, separated by white space; blank lines and lines starting with `#` are ignored:
//!
//! ```text
//! # tenant   current secret           previous secrets...
//! acme       whsec_e1c5d3a0b2f4...
//! globex     whsec_91aa07c3d5e6...    whsec_0b7d2e4f6a8c...
//! ```
//!
//! The file stands in for a database. It is read once at start (a file that cannot be
//! read, or a malformed line, stops the receiver there) and again on `SIGHUP`, which
//! also forgets every cached answer, so an edit applies at once (a file that cannot be
//! read then is logged, and the tenants read before are kept). A lookup reads the table
//! in memory, never the file: requests for made-up tenants cost no file access. The
//! middleware caches each tenant found for `MAPPING_WEBHOOK_TENANTS_TTL_SECS` (default
//! 60), and "no such tenant" for 5 s. An unknown tenant is answered 404 before the body
//! is read. Each processed event prints one JSON line on stdout, with its `tenant`. Also
//! `BIND_ADDR` (default `127.0.0.1:3000`), `RUST_LOG`, and `REDIS_URL` (one Redis,
//! `redis://` or `rediss://`) or `REDIS_CLUSTER_URLS` (a Redis Cluster's nodes,
//! comma-separated): the dedup store every replica shares (unset: in memory).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use actix_web::http::KeepAlive;
use actix_web::{App, HttpResponse, HttpServer, web};
use mapping_webhooks::{DEFAULT_TENANT_CAPACITY, DEFAULT_TENANT_TTL, MemoryStore, RedisStore};
use mapping_webhooks_actix::{
    Gate, ResolveError, Secret, Secrets, Tenant, TenantFrom, Tenants, VerifiedEvent, WebhookVerify,
};
use mapping_webhooks_examples::{
    DEFAULT_BIND_ADDR, ReceiverStore, SharedStore, init_tracing, print_event,
};
use zeroize::Zeroizing;

/// The route; the tenant is its third path segment.
const ROUTE: &str = "/hooks/mapping/{tenant}";

async fn on_event(event: VerifiedEvent) -> HttpResponse {
    print_event(&event.verified, &event.envelope.api_version);
    HttpResponse::NoContent().finish()
}

/// The tenants read from the file, by key.
type Table = HashMap<String, Tenant>;

/// Reads the tenants file: one tenant per line, its key then its secrets.
fn load(path: &Path) -> Result<Table, String> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
    );
    let mut table = Table::new();
    for (number, line) in text.lines().map(str::trim).enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |what: &str| format!("{} line {}: {what}", path.display(), number + 1);
        let mut fields = line.split_whitespace();
        let (Some(key), Some(current)) = (fields.next(), fields.next()) else {
            return Err(at("a tenant without a secret"));
        };
        let secret = |s: &str| Secret::new(s).map_err(|e| at(&e.to_string()));
        let previous = fields.map(secret).collect::<Result<Vec<_>, _>>()?;
        let secrets = Secrets::with_previous(secret(current)?, previous);
        table.insert(key.to_owned(), Tenant::new(key, secrets));
    }
    Ok(table)
}

#[actix_web::main]
async fn main() -> ExitCode {
    init_tracing();
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let Some(path) = var("MAPPING_WEBHOOK_TENANTS_FILE").map(PathBuf::from) else {
        tracing::error!("set MAPPING_WEBHOOK_TENANTS_FILE to the tenants file (see --help)");
        return ExitCode::FAILURE;
    };
    let ttl = match var("MAPPING_WEBHOOK_TENANTS_TTL_SECS").map(|v| v.trim().parse::<u64>()) {
        None => DEFAULT_TENANT_TTL,
        Some(Ok(secs)) if secs > 0 => Duration::from_secs(secs),
        Some(_) => {
            tracing::error!("MAPPING_WEBHOOK_TENANTS_TTL_SECS is not a whole number of at least 1");
            return ExitCode::FAILURE;
        }
    };
    let bind = var("BIND_ADDR").unwrap_or_else(|| DEFAULT_BIND_ADDR.to_owned());
    let table = match load(&path) {
        Ok(table) => Arc::new(RwLock::new(Arc::new(table))),
        Err(error) => {
            tracing::error!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let read = table.clone();
    let tenants = Tenants::with_cache(
        move |key: String| {
            // The table in memory: a lookup never touches the file.
            let table = Arc::clone(&read.read().unwrap_or_else(PoisonError::into_inner));
            async move { Ok::<_, ResolveError>(table.get(&key).cloned()) }
        },
        DEFAULT_TENANT_CAPACITY,
        ttl,
    );
    // SIGHUP: read the file again and forget the cached answers, so an edit applies at
    // once.
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hangup) => {
            let tenants = tenants.clone();
            let path = path.clone();
            actix_web::rt::spawn(async move {
                while hangup.recv().await.is_some() {
                    match load(&path) {
                        Ok(fresh) => {
                            let count = fresh.len();
                            *table.write().unwrap_or_else(PoisonError::into_inner) =
                                Arc::new(fresh);
                            tenants.invalidate_all();
                            tracing::info!(
                                tenants = count,
                                "SIGHUP: read the tenants file again; forgot the cached tenants"
                            );
                        }
                        Err(error) => tracing::error!(
                            "SIGHUP: {error}; still serving the tenants read before"
                        ),
                    }
                }
            });
        }
        Err(error) => tracing::warn!("cannot listen for SIGHUP: {error}"),
    }

    // The dedup store: shared in Redis when several replicas receive (REDIS_URL, or
    // REDIS_CLUSTER_URLS for a cluster), else the bounded in-memory one. Its keys hold
    // the tenant, so tenants never share one.
    let store = match SharedStore::from_env() {
        Ok(Some(SharedStore::Redis(url))) => RedisStore::builder(url)
            .build()
            .await
            .map(ReceiverStore::Redis),
        Ok(Some(SharedStore::RedisCluster(urls))) => RedisStore::cluster_builder(urls)
            .build()
            .await
            .map(ReceiverStore::Redis),
        Ok(None) => Ok(ReceiverStore::Memory(MemoryStore::new())),
        Err(message) => {
            tracing::error!("{message}");
            return ExitCode::FAILURE;
        }
    };
    let store = match store {
        Ok(store) => store,
        Err(error) => {
            tracing::error!("cannot use the Redis store: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The gate: the tenants, their key the path's third segment.
    let gate = Gate::builder()
        .tenants(tenants, TenantFrom::PathSegment(2))
        .dedup(store)
        .build();
    let verify = match gate {
        Ok(gate) => WebhookVerify::from_gate(gate),
        Err(error) => {
            tracing::error!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let server = HttpServer::new(move || {
        App::new()
            .service(
                web::resource(ROUTE)
                    .wrap(verify.clone())
                    .route(web::post().to(on_event)),
            )
            .route("/healthz", web::get().to(|| async { "ok" }))
    })
    // As in actix-receiver: cancel a handler whose sender gave up, time out slow heads.
    .h1_allow_half_closed(false)
    .client_request_timeout(Duration::from_secs(5))
    .keep_alive(KeepAlive::Disabled)
    .bind(&bind);
    let server = match server {
        Ok(server) => server,
        Err(error) => {
            tracing::error!("cannot listen on {bind}: {error}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        "receiving webhooks on http://{bind}/hooks/mapping/{{tenant}}, tenants from {}",
        path.display()
    );
    match server.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("server failed: {error}");
            ExitCode::FAILURE
        }
    }
}
