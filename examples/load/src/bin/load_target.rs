//! The load test's server: one framework, two routes doing the same work on the same
//! body, so their difference is what the middleware costs.
//!
//! - `POST /bare` reads the body and answers 204;
//! - `POST /verified` does the same behind `WebhookVerify` with the default in-memory
//!   dedup store (moka);
//! - `POST /verified-redis`, when a Redis URL is given, the same with a `RedisStore`.
//!
//! ```text
//! load_target axum|actix 127.0.0.1:8401 [redis://127.0.0.1:6379/]
//! ```
//!
//! One worker thread, so the load generator gets the other core. Driven by
//! `examples/load/run.sh`.

use std::net::SocketAddr;

use mapping_webhooks::{Gate, RedisStore};
use mapping_webhooks_examples::DEV_SECRET;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let framework = args.next().unwrap_or_default();
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:8401".into())
        .parse()
        .map_err(std::io::Error::other)?;
    let redis = args.next();
    match framework.as_str() {
        "axum" => axum_app::run(addr, redis),
        "actix" => actix_app::run(addr, redis),
        other => Err(std::io::Error::other(format!(
            "usage: load_target axum|actix ADDR [REDIS_URL] (got {other:?})"
        ))),
    }
}

/// A Redis store for the third route, namespaced per run so runs never see each
/// other's events.
/// The gate of the Redis routes: the development secret and a Redis store.
async fn redis_gate(url: &str) -> std::io::Result<Gate<RedisStore>> {
    let store = RedisStore::builder(url)
        .prefix(format!("load:{}:", std::process::id()))
        .build()
        .await
        .map_err(std::io::Error::other)?;
    Gate::builder()
        .secret(DEV_SECRET)
        .dedup(store)
        .build()
        .map_err(std::io::Error::other)
}

mod axum_app {
    use std::net::SocketAddr;

    use axum::Router;
    use axum::body::Bytes;
    use axum::http::StatusCode;
    use axum::routing::post;
    use mapping_webhooks_tower::WebhookVerify;

    use super::{DEV_SECRET, redis_gate};

    async fn read(body: Bytes) -> StatusCode {
        std::hint::black_box(body);
        StatusCode::NO_CONTENT
    }

    pub(super) fn run(addr: SocketAddr, redis: Option<String>) -> std::io::Result<()> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?
            .block_on(async {
                let mut app = Router::new().route("/bare", post(read)).route(
                    "/verified",
                    post(read).layer(WebhookVerify::new(DEV_SECRET)),
                );
                if let Some(url) = redis {
                    let layer = WebhookVerify::from_gate(redis_gate(&url).await?);
                    app = app.route("/verified-redis", post(read).layer(layer));
                }
                let listener = tokio::net::TcpListener::bind(addr).await?;
                println!("axum listening on {addr}");
                axum::serve(listener, app).await
            })
    }
}

mod actix_app {
    use std::net::SocketAddr;

    use actix_web::{App, HttpResponse, HttpServer, web};
    use mapping_webhooks_actix::WebhookVerify;

    use super::{DEV_SECRET, redis_gate};

    async fn read(body: web::Bytes) -> HttpResponse {
        std::hint::black_box(body);
        HttpResponse::NoContent().finish()
    }

    pub(super) fn run(addr: SocketAddr, redis: Option<String>) -> std::io::Result<()> {
        // One middleware (one store) shared by every worker, as a real app builds it.
        let verify = WebhookVerify::new(DEV_SECRET);
        actix_web::rt::System::new().block_on(async move {
            let with_redis = match redis {
                Some(url) => Some(WebhookVerify::from_gate(redis_gate(&url).await?)),
                None => None,
            };
            let server = HttpServer::new(move || {
                let mut app = App::new().route("/bare", web::post().to(read)).service(
                    web::resource("/verified")
                        .wrap(verify.clone())
                        .route(web::post().to(read)),
                );
                if let Some(layer) = &with_redis {
                    app = app.service(
                        web::resource("/verified-redis")
                            .wrap(layer.clone())
                            .route(web::post().to(read)),
                    );
                }
                app
            })
            .workers(1)
            .h1_allow_half_closed(false)
            .bind(addr)?;
            println!("actix listening on {addr}");
            server.run().await
        })
    }
}
