//! The conformance suite against actix-web with `mapping-webhooks-actix`, built the way
//! the crate's docs show: `web::resource(..).wrap(WebhookVerify::new(..))` on each
//! webhook route, the server with `h1_allow_half_closed(false)`.

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, HttpServer, web};
use bytes::Bytes;
use mapping_webhooks::{DedupStore, MappingCompleted, Verified};
use mapping_webhooks_actix::{Event, EventRouter, Gate, VerifiedEvent, WebhookVerify};
use mapping_webhooks_conformance::{
    App, AppSpec, HANDLER_COMPLETED, HANDLER_RESOLVED, Probe, ROUTE_ANY, ROUTE_EVENTS, ROUTE_HOOKS,
    ROUTE_JSON, ROUTE_TENANT_KEY, ROUTE_TENANTS, ROUTE_TYPED, ROUTE_UNLAYERED, conformance_suite,
};
use serde_json::value::RawValue;

fn respond(code: u16) -> HttpResponse {
    HttpResponse::new(StatusCode::from_u16(code).expect("a valid status"))
}

async fn spawn_actix_app(spec: AppSpec) -> App {
    let verify = WebhookVerify::from_gate(spec.gate());
    let tenants = spec.tenants_gate().map(WebhookVerify::from_gate);
    let (url, handle) = serve(spec.probe.clone(), verify, tenants).await;
    // actix-http answers `Expect: 100-continue` before any middleware runs, and
    // actix-web's `HttpServer` offers no way to change its expect service.
    App::new(url, StopOnDrop(handle)).server_sends_continue()
}

/// Serves the app on 127.0.0.1:0 from its own thread: actix-web runs its own runtime
/// (a `System`) and worker threads, separate from the test's tokio runtime.
async fn serve<D: DedupStore>(
    probe: Probe,
    verify: WebhookVerify<D>,
    tenants: Option<WebhookVerify>,
) -> (String, ServerHandle) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                actix_web::App::new()
                    .app_data(web::Data::new(probe.clone()))
                    .service(
                        web::resource(ROUTE_HOOKS)
                            .wrap(verify.clone())
                            .route(web::post().to(hooks)),
                    )
                    .service(
                        web::resource(ROUTE_JSON)
                            .wrap(verify.clone())
                            .route(web::post().to(json)),
                    )
                    .service(
                        web::resource(ROUTE_TYPED)
                            .wrap(verify.clone())
                            .route(web::post().to(typed)),
                    )
                    .service(web::resource(ROUTE_UNLAYERED).route(web::post().to(unlayered)))
                    .service(
                        web::resource(ROUTE_ANY)
                            .wrap(verify.clone())
                            .route(web::post().to(any)),
                    )
                    .service(
                        web::resource(ROUTE_EVENTS)
                            .wrap(verify.clone())
                            .route(web::post().to(events(probe.clone()))),
                    )
                    .configure(|config| {
                        if let Some(tenants) = &tenants {
                            config.service(
                                web::resource(format!("{ROUTE_TENANTS}/{{tenant}}"))
                                    .wrap(tenants.clone())
                                    .route(web::post().to(tenant_hook)),
                            );
                            // The same tenants, the key from the matched path parameter.
                            let keyed = tenants.clone().tenant_key(|req| {
                                req.match_info().get("tenant").map(str::to_owned)
                            });
                            config.service(
                                web::resource(format!("{ROUTE_TENANT_KEY}/{{tenant}}"))
                                    .wrap(keyed)
                                    .route(web::post().to(tenant_key_hook)),
                            );
                        }
                    })
            })
            .workers(2)
            .disable_signals()
            .h1_allow_half_closed(false)
            .listen(listener)
            .unwrap()
            .run();
            tx.send(server.handle()).unwrap();
            server.await
        })
    });
    (url, rx.await.unwrap())
}

async fn hooks(
    probe: web::Data<Probe>,
    meta: web::ReqData<Verified>,
    body: web::Bytes,
) -> HttpResponse {
    let body = Bytes::copy_from_slice(&body);
    respond(
        probe
            .handle(ROUTE_HOOKS, Some(meta.into_inner()), body)
            .await,
    )
}

async fn tenant_hook(
    probe: web::Data<Probe>,
    meta: web::ReqData<Verified>,
    body: web::Bytes,
) -> HttpResponse {
    let body = Bytes::copy_from_slice(&body);
    respond(
        probe
            .handle(ROUTE_TENANTS, Some(meta.into_inner()), body)
            .await,
    )
}

async fn tenant_key_hook(
    probe: web::Data<Probe>,
    meta: web::ReqData<Verified>,
    body: web::Bytes,
) -> HttpResponse {
    let body = Bytes::copy_from_slice(&body);
    respond(
        probe
            .handle(ROUTE_TENANT_KEY, Some(meta.into_inner()), body)
            .await,
    )
}

async fn json(
    probe: web::Data<Probe>,
    meta: web::ReqData<Verified>,
    raw: web::Json<Box<RawValue>>,
) -> HttpResponse {
    let body = Bytes::copy_from_slice(raw.get().as_bytes());
    respond(
        probe
            .handle(ROUTE_JSON, Some(meta.into_inner()), body)
            .await,
    )
}

async fn typed(probe: web::Data<Probe>, event: VerifiedEvent<MappingCompleted>) -> HttpResponse {
    let (envelope, meta) = event.into_parts();
    let body = Bytes::from(serde_json::to_vec(&envelope).unwrap());
    respond(probe.handle(ROUTE_TYPED, Some(meta), body).await)
}

async fn any(probe: web::Data<Probe>, event: VerifiedEvent<Event>) -> HttpResponse {
    let (envelope, meta) = event.into_parts();
    let body = Bytes::from(serde_json::to_vec(&envelope).unwrap());
    respond(probe.handle(ROUTE_ANY, Some(meta), body).await)
}

/// The documented router: a typed handler, a handler by type name with `web::Data`.
fn events(probe: Probe) -> EventRouter {
    EventRouter::new()
        .on(move |event: VerifiedEvent<MappingCompleted>| {
            let probe = probe.clone();
            async move {
                let (envelope, meta) = event.into_parts();
                let body = Bytes::from(serde_json::to_vec(&envelope).unwrap());
                respond(probe.handle(HANDLER_COMPLETED, Some(meta), body).await)
            }
        })
        .on_type("mapping.error.resolved", resolved)
}

async fn resolved(probe: web::Data<Probe>, event: VerifiedEvent) -> HttpResponse {
    let (envelope, meta) = event.into_parts();
    let body = Bytes::from(serde_json::to_vec(&envelope).unwrap());
    respond(probe.handle(HANDLER_RESOLVED, Some(meta), body).await)
}

async fn unlayered(
    probe: web::Data<Probe>,
    event: VerifiedEvent<MappingCompleted>,
) -> HttpResponse {
    let (envelope, meta) = event.into_parts();
    let body = Bytes::from(serde_json::to_vec(&envelope).unwrap());
    respond(probe.handle(ROUTE_UNLAYERED, Some(meta), body).await)
}

/// Stops the server (and so its thread) when the case ends.
struct StopOnDrop(ServerHandle);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        // `stop` sends the command at once; its future only waits for the completion.
        drop(self.0.stop(false));
    }
}

conformance_suite!(spawn_actix_app);

/// The inbox endpoint, mounted with `WebhookVerify::inbox` as its docs show, at the
/// inbox route and under it with a tenant segment.
async fn spawn_actix_inbox(gate: Gate, inbox: mapping_webhooks_inbox::Inbox) -> App {
    use mapping_webhooks_conformance::inbox_cases::ROUTE_INBOX;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                let verify = WebhookVerify::from_gate(gate.clone());
                actix_web::App::new()
                    .service(verify.clone().inbox(ROUTE_INBOX, inbox.clone()))
                    .service(verify.inbox(&format!("{ROUTE_INBOX}/{{tenant}}"), inbox.clone()))
            })
            .workers(2)
            .disable_signals()
            .h1_allow_half_closed(false)
            .listen(listener)
            .unwrap()
            .run();
            tx.send(server.handle()).unwrap();
            server.await
        })
    });
    App::new(url, StopOnDrop(rx.await.unwrap()))
}

mapping_webhooks_conformance::inbox_suite!(spawn_actix_inbox);
