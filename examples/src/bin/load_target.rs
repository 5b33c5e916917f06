//! The load test's server: one framework, two routes doing the same work on the same
//! body, so their difference is what the middleware costs.
//!
//! - `POST /bare` reads the body and answers 204;
//! - `POST /verified` does the same behind `WebhookVerify` with the default in-memory
//!   dedup store (moka).
//!
//! ```text
//! load_target axum|actix 127.0.0.1:8401
//! ```
//!
//! One worker thread, so the load generator gets the other core. Driven by
//! `examples/load/run.sh`.

use std::net::SocketAddr;

use mapping_webhooks_examples::DEV_SECRET;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let framework = args.next().unwrap_or_default();
    let addr: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:8401".into())
        .parse()
        .map_err(std::io::Error::other)?;
    match framework.as_str() {
        "axum" => axum_app::run(addr),
        "actix" => actix_app::run(addr),
        other => Err(std::io::Error::other(format!(
            "usage: load_target axum|actix ADDR (got {other:?})"
        ))),
    }
}

mod axum_app {
    use std::net::SocketAddr;

    use axum::Router;
    use axum::body::Bytes;
    use axum::http::StatusCode;
    use axum::routing::post;
    use mapping_webhooks_tower::WebhookVerify;

    use super::DEV_SECRET;

    async fn read(body: Bytes) -> StatusCode {
        std::hint::black_box(body);
        StatusCode::NO_CONTENT
    }

    pub(super) fn run(addr: SocketAddr) -> std::io::Result<()> {
        let app = Router::new().route("/bare", post(read)).route(
            "/verified",
            post(read).layer(WebhookVerify::new(DEV_SECRET)),
        );
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?
            .block_on(async {
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

    use super::DEV_SECRET;

    async fn read(body: web::Bytes) -> HttpResponse {
        std::hint::black_box(body);
        HttpResponse::NoContent().finish()
    }

    pub(super) fn run(addr: SocketAddr) -> std::io::Result<()> {
        // One middleware (one store) shared by every worker, as a real app builds it.
        let verify = WebhookVerify::new(DEV_SECRET);
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                App::new().route("/bare", web::post().to(read)).service(
                    web::resource("/verified")
                        .wrap(verify.clone())
                        .route(web::post().to(read)),
                )
            })
            .workers(1)
            .h1_allow_half_closed(false)
            .bind(addr)?;
            println!("actix listening on {addr}");
            server.run().await
        })
    }
}
